//! Is a recorder alive? A pure decision from what the operator has seen of its Lease and pod.
//!
//! A recorder is healthy when the operator saw its Lease change within the pool's lease
//! duration and, if it runs as a pod, that pod exists, is not being deleted and is Ready.
//! Recorders may also run outside Kubernetes (a process with a kubeconfig, e.g. on an edge box):
//! then only the Lease counts. Each of the three signals alone is enough to declare a recorder
//! failed, so a deleted pod fails over at once instead of waiting for its Lease to expire.
//!
//! The Lease's `renewTime` is written with the recorder node's clock, which may be seconds off
//! the operator's. So, as client-go's leader election does, the operator never compares that
//! timestamp with its own clock: it notes, on its own monotonic clock, the instant it *observed*
//! the Lease change (a new `renewTime` or `resourceVersion`), and a recorder is dead when no
//! change has been observed for the lease duration. A Lease first seen (at operator start-up)
//! counts as observed then, so every recorder gets one full duration to prove it renews.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// What distinguishes one write of a Lease from the previous one.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LeaseVersion {
    /// `spec.renewTime` as written (the writer's clock; compared for equality only).
    pub renew_time: Option<DateTime<Utc>>,
    pub resource_version: Option<String>,
}

/// When this process last saw each Lease change, on its own monotonic clock.
#[derive(Debug, Default)]
pub struct LeaseObservations {
    seen: HashMap<LeaseKey, (LeaseVersion, Instant)>,
}

/// A Lease by namespace and name.
pub type LeaseKey = (String, String);

impl LeaseObservations {
    /// Notes that the Lease `key` looks like `version` at `now`; returns the instant it last
    /// changed. A Lease not seen before counts as changed `now`.
    pub fn observe(&mut self, key: LeaseKey, version: LeaseVersion, now: Instant) -> Instant {
        match self.seen.get_mut(&key) {
            Some((seen, changed_at)) => {
                if *seen != version {
                    *seen = version;
                    *changed_at = now;
                }
                *changed_at
            }
            None => {
                self.seen.insert(key, (version, now));
                now
            }
        }
    }

    /// The instant the Lease `key` was last seen changing, if it was ever seen.
    pub fn last_change(&self, key: &LeaseKey) -> Option<Instant> {
        self.seen.get(key).map(|(_, at)| *at)
    }

    /// Forgets a deleted Lease (a recreated one starts a new observation).
    pub fn forget(&mut self, key: &LeaseKey) {
        self.seen.remove(key);
    }
}

/// What the operator knows about one recorder.
#[derive(Clone, Debug, PartialEq)]
pub struct RecorderObservation {
    /// Recorder name (pod name, also the Lease name).
    pub name: String,
    /// Its Lease; None when it has none (yet).
    pub lease: Option<LeaseObservation>,
    /// Its pod, when it runs as one (the Lease says so, or a pod of the pool has its name).
    pub pod: Option<PodObservation>,
}

/// One recorder's Lease as the operator saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseObservation {
    /// When the operator last saw the Lease change (its own monotonic clock).
    pub last_change: Instant,
    /// `renewTime` as the recorder wrote it (the recorder's clock): for status and for where an
    /// outage starts, never for deciding liveness. None when the Lease carries none.
    pub renewed: Option<DateTime<Utc>>,
    /// The recorder announced on its Lease that it is draining (`vigil.dev/draining`).
    pub draining: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodObservation {
    /// The pod object exists.
    pub exists: bool,
    pub terminating: bool,
    pub ready: bool,
}

/// The verdict on one recorder.
#[derive(Clone, Debug, PartialEq)]
pub struct RecorderHealth {
    pub name: String,
    pub healthy: bool,
    /// Why it is not healthy, for status and Events; empty when healthy.
    pub reason: String,
    /// `renewTime` of its Lease as written by the recorder (informational).
    pub lease_renewed: Option<DateTime<Utc>>,
    /// When a healthy recorder's Lease expires unless it is seen changing again: the next
    /// moment this verdict can change by time alone. None when unhealthy or without a Lease.
    pub expires_at: Option<Instant>,
    /// When the operator last saw its Lease change.
    pub lease_changed_at: Option<Instant>,
    /// Healthy but shutting down (its Lease says so, or its pod is terminating): it records its
    /// cameras until each has been taken over, and gets no new ones.
    pub draining: bool,
}

/// Decides whether `recorder` is healthy at `now` (the operator's monotonic clock) with leases
/// of `lease_duration`.
pub fn recorder_health(
    recorder: &RecorderObservation,
    now: Instant,
    lease_duration: Duration,
) -> RecorderHealth {
    let verdict = |healthy: bool, reason: String, expires_at: Option<Instant>| RecorderHealth {
        name: recorder.name.clone(),
        healthy,
        reason,
        lease_renewed: recorder.lease.as_ref().and_then(|l| l.renewed),
        expires_at,
        lease_changed_at: recorder.lease.as_ref().map(|l| l.last_change),
        draining: healthy
            && (recorder.lease.as_ref().is_some_and(|l| l.draining)
                || recorder.pod.as_ref().is_some_and(|p| p.terminating)),
    };
    if let Some(pod) = &recorder.pod {
        if !pod.exists {
            return verdict(false, "pod deleted".into(), None);
        }
        // A terminating pod is draining, not failed: the recorder keeps recording (and its
        // Lease renewed, and the pod Ready) until its cameras have been taken over. If it
        // stops early, its readiness or its Lease says so.
        if !pod.ready {
            return verdict(false, "pod not ready".into(), None);
        }
    }
    let Some(lease) = &recorder.lease else {
        return verdict(false, "no lease yet".into(), None);
    };
    if lease.renewed.is_none() {
        // A Lease given up (holder released it) or never renewed.
        return verdict(false, "lease not held".into(), None);
    }
    let expires_at = lease.last_change + lease_duration;
    if now >= expires_at {
        let unchanged = now.saturating_duration_since(lease.last_change);
        verdict(
            false,
            format!(
                "lease not renewed for {:.1} s (duration {} s)",
                unchanged.as_secs_f64(),
                lease_duration.as_secs()
            ),
            None,
        )
    } else {
        verdict(true, String::new(), Some(expires_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DURATION: Duration = Duration::from_secs(4);

    fn recorder(
        changed_ago: Option<Duration>,
        pod: Option<(bool, bool, bool)>,
        now: Instant,
    ) -> RecorderObservation {
        RecorderObservation {
            name: "rec-a".into(),
            lease: changed_ago.map(|ago| LeaseObservation {
                last_change: now - ago,
                renewed: Some(Utc::now()),
                draining: false,
            }),
            pod: pod.map(|(exists, terminating, ready)| PodObservation {
                exists,
                terminating,
                ready,
            }),
        }
    }

    fn version(renew_ms: i64, rv: &str) -> LeaseVersion {
        LeaseVersion {
            renew_time: DateTime::from_timestamp_millis(renew_ms),
            resource_version: Some(rv.into()),
        }
    }

    #[test]
    fn recently_changed_lease_and_ready_pod_is_healthy() {
        let now = Instant::now();
        let o = recorder(
            Some(Duration::from_millis(900)),
            Some((true, false, true)),
            now,
        );
        let h = recorder_health(&o, now, DURATION);
        assert!(h.healthy);
        assert_eq!(h.expires_at, Some(now + Duration::from_millis(3100)));
        // A recorder outside Kubernetes: the lease alone decides.
        let o = recorder(Some(Duration::from_millis(3999)), None, now);
        assert!(recorder_health(&o, now, DURATION).healthy);
    }

    #[test]
    fn each_signal_alone_fails_the_recorder() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let cases = [
            (
                recorder(Some(ms(4000)), Some((true, false, true)), now),
                "lease not renewed",
            ),
            (
                recorder(Some(ms(100)), Some((false, false, false)), now),
                "pod deleted",
            ),
            (
                recorder(Some(ms(100)), Some((true, true, false)), now),
                "pod not ready",
            ),
            (
                recorder(Some(ms(100)), Some((true, false, false)), now),
                "pod not ready",
            ),
            (recorder(None, None, now), "no lease"),
        ];
        for (o, reason) in cases {
            let h = recorder_health(&o, now, DURATION);
            assert!(!h.healthy, "{reason}");
            assert!(h.reason.starts_with(reason), "{} vs {reason}", h.reason);
            assert_eq!(h.expires_at, None);
        }
    }

    #[test]
    fn a_terminating_pod_or_a_draining_lease_is_draining_not_failed() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let terminating = recorder(Some(ms(100)), Some((true, true, true)), now);
        let h = recorder_health(&terminating, now, DURATION);
        assert!(h.healthy && h.draining, "{h:?}");
        let mut process = recorder(Some(ms(100)), None, now);
        if let Some(l) = &mut process.lease {
            l.draining = true;
        }
        let h = recorder_health(&process, now, DURATION);
        assert!(h.healthy && h.draining, "{h:?}");
        // A draining recorder that stops renewing has failed like any other.
        let mut stopped = recorder(Some(ms(4000)), None, now);
        if let Some(l) = &mut stopped.lease {
            l.draining = true;
        }
        let h = recorder_health(&stopped, now, DURATION);
        assert!(!h.healthy && !h.draining, "{h:?}");
        let h = recorder_health(&recorder(Some(ms(100)), None, now), now, DURATION);
        assert!(h.healthy && !h.draining);
    }

    #[test]
    fn a_lease_first_seen_gets_a_full_duration() {
        let mut seen = LeaseObservations::default();
        let key = ("ns".to_string(), "rec-a".to_string());
        let start = Instant::now();
        // The recorder's clock says its last renewal was an hour ago: irrelevant.
        let stale_looking = version(Utc::now().timestamp_millis() - 3_600_000, "1");
        let changed = seen.observe(key.clone(), stale_looking, start);
        assert_eq!(changed, start);
        let o = RecorderObservation {
            name: "rec-a".into(),
            lease: Some(LeaseObservation {
                last_change: changed,
                renewed: Some(Utc::now()),
                draining: false,
            }),
            pod: None,
        };
        assert!(recorder_health(&o, start + DURATION - Duration::from_millis(1), DURATION).healthy);
        assert!(!recorder_health(&o, start + DURATION, DURATION).healthy);
    }

    /// The writer's clock may be ahead or behind by any amount: only seeing a change counts.
    #[test]
    fn skewed_renew_times_are_judged_by_observed_change() {
        for skew_ms in [10_000i64, -10_000, 3_600_000, -3_600_000] {
            let mut seen = LeaseObservations::default();
            let key = ("ns".to_string(), "rec-a".to_string());
            let t0 = Instant::now();
            let wall0 = Utc::now().timestamp_millis() + skew_ms;
            // Renewed every second for 20 s: always healthy.
            let mut last = t0;
            for i in 0..20u32 {
                let now = t0 + Duration::from_secs(u64::from(i));
                let v = version(wall0 + i64::from(i) * 1000, &i.to_string());
                last = seen.observe(key.clone(), v, now);
                let o = RecorderObservation {
                    name: "rec-a".into(),
                    lease: Some(LeaseObservation {
                        last_change: last,
                        renewed: Some(Utc::now()),
                        draining: false,
                    }),
                    pod: None,
                };
                assert!(
                    recorder_health(&o, now, DURATION).healthy,
                    "skew {skew_ms} ms"
                );
            }
            // Then it stops: the same version keeps being seen; dead exactly one duration later.
            let frozen = version(wall0 + 19_000, "19");
            for extra_ms in [500u64, 3_999, 4_000, 10_000] {
                let now = last + Duration::from_millis(extra_ms);
                let changed = seen.observe(key.clone(), frozen.clone(), now);
                assert_eq!(changed, last, "an unchanged Lease is not a renewal");
                let o = RecorderObservation {
                    name: "rec-a".into(),
                    lease: Some(LeaseObservation {
                        last_change: changed,
                        renewed: Some(Utc::now()),
                        draining: false,
                    }),
                    pod: None,
                };
                let healthy = recorder_health(&o, now, DURATION).healthy;
                assert_eq!(
                    healthy,
                    extra_ms < 4_000,
                    "skew {skew_ms} ms, +{extra_ms} ms"
                );
            }
        }
    }

    #[test]
    fn a_new_resource_version_alone_is_a_change_and_forget_restarts() {
        let mut seen = LeaseObservations::default();
        let key = ("ns".to_string(), "rec-a".to_string());
        let t0 = Instant::now();
        seen.observe(key.clone(), version(1000, "1"), t0);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(seen.observe(key.clone(), version(1000, "2"), t1), t1);
        assert_eq!(seen.last_change(&key), Some(t1));
        seen.forget(&key);
        assert_eq!(seen.last_change(&key), None);
        let t2 = t1 + Duration::from_secs(9);
        assert_eq!(seen.observe(key, version(1000, "2"), t2), t2);
    }

    #[test]
    fn a_released_lease_is_not_a_live_recorder() {
        let now = Instant::now();
        let o = RecorderObservation {
            name: "rec-a".into(),
            lease: Some(LeaseObservation {
                last_change: now,
                renewed: None,
                draining: false,
            }),
            pod: None,
        };
        let h = recorder_health(&o, now, DURATION);
        assert!(!h.healthy);
        assert_eq!(h.reason, "lease not held");
    }
}
