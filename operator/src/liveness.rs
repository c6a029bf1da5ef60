//! Is a recorder alive? A pure decision from what the API server says about its Lease and pod.
//!
//! A recorder is healthy when its Lease was renewed within the pool's lease duration and, if it
//! runs as a pod, that pod exists, is not being deleted and is Ready. Recorders may also run
//! outside Kubernetes (a process with a kubeconfig, e.g. on an edge box): then only the Lease
//! counts. Each of the three signals alone is enough to declare a recorder failed, so a deleted
//! pod fails over at once instead of waiting for its Lease to expire.

use chrono::{DateTime, Utc};

/// What the API server says about one recorder.
#[derive(Clone, Debug, PartialEq)]
pub struct RecorderObservation {
    /// Recorder name (pod name, also the Lease name).
    pub name: String,
    /// Last renewal of its Lease; None when it has no Lease (yet).
    pub lease_renewed: Option<DateTime<Utc>>,
    /// Its pod, when it runs as one (the Lease says so, or a pod of the pool has its name).
    pub pod: Option<PodObservation>,
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
    pub lease_renewed: Option<DateTime<Utc>>,
}

/// Decides whether `recorder` is healthy at `now` with leases of `lease_duration_seconds`.
pub fn recorder_health(
    recorder: &RecorderObservation,
    now: DateTime<Utc>,
    lease_duration_seconds: u32,
) -> RecorderHealth {
    let verdict = |healthy: bool, reason: String| RecorderHealth {
        name: recorder.name.clone(),
        healthy,
        reason,
        lease_renewed: recorder.lease_renewed,
    };
    if let Some(pod) = &recorder.pod {
        if !pod.exists {
            return verdict(false, "pod deleted".into());
        }
        if pod.terminating {
            return verdict(false, "pod terminating".into());
        }
        if !pod.ready {
            return verdict(false, "pod not ready".into());
        }
    }
    match recorder.lease_renewed {
        None => verdict(false, "no lease yet".into()),
        Some(renewed) => {
            let age_ms = (now - renewed).num_milliseconds();
            if age_ms > i64::from(lease_duration_seconds) * 1000 {
                verdict(
                    false,
                    format!(
                        "lease expired {:.1} s ago",
                        age_ms as f64 / 1000.0 - f64::from(lease_duration_seconds)
                    ),
                )
            } else {
                verdict(true, String::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn obs(
        renewed_ago_ms: Option<i64>,
        pod: Option<(bool, bool, bool)>,
    ) -> (RecorderObservation, DateTime<Utc>) {
        let now = Utc::now();
        (
            RecorderObservation {
                name: "rec-a".into(),
                lease_renewed: renewed_ago_ms.map(|ms| now - Duration::milliseconds(ms)),
                pod: pod.map(|(exists, terminating, ready)| PodObservation {
                    exists,
                    terminating,
                    ready,
                }),
            },
            now,
        )
    }

    #[test]
    fn fresh_lease_and_ready_pod_is_healthy() {
        let (o, now) = obs(Some(900), Some((true, false, true)));
        assert!(recorder_health(&o, now, 4).healthy);
        // A recorder outside Kubernetes: the lease alone decides.
        let (o, now) = obs(Some(3999), None);
        assert!(recorder_health(&o, now, 4).healthy);
    }

    #[test]
    fn each_signal_alone_fails_the_recorder() {
        let cases = [
            (obs(Some(4001), Some((true, false, true))), "lease expired"),
            (obs(Some(100), Some((false, false, false))), "pod deleted"),
            (obs(Some(100), Some((true, true, true))), "pod terminating"),
            (obs(Some(100), Some((true, false, false))), "pod not ready"),
            (obs(None, None), "no lease"),
        ];
        for ((o, now), reason) in cases {
            let h = recorder_health(&o, now, 4);
            assert!(!h.healthy, "{reason}");
            assert!(h.reason.starts_with(reason), "{} vs {reason}", h.reason);
        }
    }
}
