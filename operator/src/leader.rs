//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator replicas can run
//! and only one acts. Updates carry the resourceVersion read, so two standbys can never both win.
//!
//! Clocks of different nodes disagree, so no replica compares the Lease's `renewTime` with its
//! own clock (as client-go's leader election): a standby notes on its own monotonic clock when it
//! *saw* the Lease change and takes it over only once it has seen no change for the Lease's
//! duration (a standby that just started gives the holder one full duration). The leader renews
//! every duration/4 and, if it has not renewed successfully within its renew deadline (2/3 of
//! the duration, counted from the start of the last successful renewal, which precedes the write
//! any standby can see), it stops acting by ending the process: it has stopped before a standby
//! may take over, and a restart as standby is the simple, safe answer to stale state.

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::liveness::{LeaseObservations, LeaseVersion};

pub struct LeaderElection {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    duration: Duration,
    renew: Duration,
    renew_deadline: Duration,
    /// When this replica saw the leader Lease change, on its own clock.
    observed: Mutex<LeaseObservations>,
}

/// What a standby may do with the leader Lease it just read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// Held by another replica that has been seen renewing within the duration.
    Wait,
    /// Nobody holds it (released, or never renewed), or its holder has not been seen renewing
    /// for the duration.
    Take,
}

/// Decides whether a standby may take the Lease over at `now`: only the instant it last saw the
/// Lease change on its own clock counts, never the holder's `renewTime`.
pub fn takeover(held: bool, last_change: Instant, now: Instant, duration: Duration) -> Takeover {
    if !held || now >= last_change + duration {
        Takeover::Take
    } else {
        Takeover::Wait
    }
}

/// Converts a Kubernetes MicroTime to chrono.
pub fn micro_time_to_chrono(t: &MicroTime) -> Option<chrono::DateTime<Utc>> {
    chrono::DateTime::from_timestamp_millis(t.0.as_millisecond())
}

/// The current time as a Kubernetes MicroTime.
pub fn micro_time_now() -> MicroTime {
    let now = Utc::now();
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(now.timestamp_micros())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

impl LeaderElection {
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            duration,
            renew: duration / 4,
            renew_deadline: duration * 2 / 3,
            observed: Mutex::new(LeaseObservations::default()),
        }
    }

    fn key(&self) -> (String, String) {
        (String::new(), self.lease_name.clone())
    }

    /// Notes the Lease as read now; returns when it last changed, on this replica's clock.
    fn observe(&self, lease: &Lease) -> Instant {
        let spec = lease.spec.as_ref();
        let version = LeaseVersion {
            renew_time: spec
                .and_then(|s| s.renew_time.as_ref())
                .and_then(micro_time_to_chrono),
            resource_version: lease.metadata.resource_version.clone(),
        };
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(self.key(), version, Instant::now())
    }

    /// Tries once to take or keep the Lease. `Ok(Ok(()))` when this replica holds it afterwards,
    /// `Ok(Err(holder))` when another replica does.
    async fn try_acquire(&self) -> Result<Result<(), String>> {
        let now = micro_time_now();
        let spec = |transitions: i32| LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now.clone()),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        match self.api.get_opt(&self.lease_name).await? {
            None => {
                let mut lease = Lease {
                    spec: Some(spec(0)),
                    ..Default::default()
                };
                lease.metadata.name = Some(self.lease_name.clone());
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Ok(())),
                    // Another replica won the race.
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Err("another replica".into())),
                    Err(e) => Err(e.into()),
                }
            }
            Some(mut lease) => {
                let last_change = self.observe(&lease);
                let current = lease.spec.clone().unwrap_or_default();
                let holder = current.holder_identity.clone().unwrap_or_default();
                let mine = holder == self.identity;
                if !mine {
                    let held = !holder.is_empty() && current.renew_time.is_some();
                    // The holder's own duration counts (it may run with other settings).
                    let duration = current
                        .lease_duration_seconds
                        .and_then(|s| u64::try_from(s).ok())
                        .map_or(self.duration, Duration::from_secs);
                    if takeover(held, last_change, Instant::now(), duration) == Takeover::Wait {
                        return Ok(Err(holder));
                    }
                }
                let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
                let mut next = spec(transitions);
                if mine {
                    next.acquire_time = current.acquire_time.clone();
                } else {
                    info!(previous = %holder, "taking over the leader lease");
                }
                lease.spec = Some(next);
                // `replace` sends the resourceVersion we read: a concurrent change makes it fail.
                match self
                    .api
                    .replace(&lease.name_any(), &PostParams::default(), &lease)
                    .await
                {
                    Ok(written) => {
                        self.observe(&written);
                        Ok(Ok(()))
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Err(holder)),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Gives the Lease up (on shutdown), so a standby takes over at once instead of waiting for
    /// it to expire. Best effort: a failure only means the standby waits the lease duration.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.lease_name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(identity = %self.identity, "released the leader lease"),
            Err(e) => warn!(error = %e, "could not release the leader lease"),
        }
    }

    /// Waits until this replica leads; returns when the winning attempt started (the renew
    /// deadline counts from there).
    pub async fn acquire(&self) -> Instant {
        loop {
            let started = Instant::now();
            match tokio::time::timeout(self.renew_deadline, self.try_acquire()).await {
                Ok(Ok(Ok(()))) => {
                    info!(identity = %self.identity, lease = %self.lease_name, "became leader");
                    return started;
                }
                Ok(Ok(Err(_))) => {}
                Ok(Err(e)) => warn!(error = %e, "leader election attempt failed"),
                Err(_) => warn!("leader election attempt timed out"),
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    /// Renews every duration/4 from `acquired_at` on; returns (the caller must stop acting) when
    /// another replica holds the Lease or no renewal succeeded within the renew deadline.
    pub async fn keep(&self, acquired_at: Instant) -> Error {
        let mut renewed_at = acquired_at;
        let mut last_error: Option<String> = None;
        let mut next_attempt = acquired_at + self.renew;
        loop {
            let deadline = renewed_at + self.renew_deadline;
            tokio::time::sleep_until(next_attempt.min(deadline)).await;
            let started = Instant::now();
            if started >= deadline {
                return self.deadline_missed(last_error);
            }
            match tokio::time::timeout_at(deadline, self.try_acquire()).await {
                Ok(Ok(Ok(()))) => {
                    renewed_at = started;
                    last_error = None;
                    next_attempt = started + self.renew;
                }
                Ok(Ok(Err(holder))) => return Error::LeadershipLost { holder },
                Ok(Err(e)) => {
                    warn!(error = %e, "leader lease renewal failed");
                    last_error = Some(e.to_string());
                    // Retry sooner than the renew period: the deadline is near.
                    next_attempt = Instant::now() + self.renew / 2;
                }
                Err(_) => return self.deadline_missed(last_error),
            }
        }
    }

    fn deadline_missed(&self, last_error: Option<String>) -> Error {
        Error::LeaderRenewDeadline {
            deadline: self.renew_deadline,
            last_error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_waits_a_full_duration_after_the_last_change_it_saw() {
        let d = Duration::from_secs(15);
        let seen = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(takeover(true, seen, seen, d), Takeover::Wait);
        assert_eq!(takeover(true, seen, seen + d - ms(1), d), Takeover::Wait);
        assert_eq!(takeover(true, seen, seen + d, d), Takeover::Take);
        // Released (or never renewed): at once.
        assert_eq!(takeover(false, seen, seen, d), Takeover::Take);
    }

    #[test]
    fn leader_stops_before_any_standby_may_take_over() {
        for secs in [1u64, 3, 5, 15, 60] {
            let d = Duration::from_secs(secs);
            let renew = d / 4;
            let deadline = d * 2 / 3;
            assert!(renew < deadline, "at least one retry within the deadline");
            // The standby's clock starts no earlier than the write, which the leader's renew
            // deadline counts from (the request's start): it stops a third of d earlier.
            assert!(
                deadline + d / 4 <= d,
                "{secs} s: margin for request latency"
            );
        }
    }
}
