//! Leader election through a `coordination.k8s.io/v1` Lease, so two operator replicas can run
//! and only one acts. The holder renews every `renew`; a standby takes the Lease over once it
//! has not been renewed for `duration`. Updates carry the resourceVersion read, so two standbys
//! can never both win. A leader that fails to renew in time steps down by ending the process
//! (its controllers may hold stale state; a restart as standby is the simple, safe answer).

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::error::{Error, Result};

pub struct LeaderElection {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
    duration: Duration,
    renew: Duration,
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
        }
    }

    /// Tries once to take or keep the Lease. True when this replica holds it afterwards.
    pub async fn try_acquire(&self) -> Result<bool> {
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
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false), // another replica won
                    Err(e) => Err(e.into()),
                }
            }
            Some(mut lease) => {
                let current = lease.spec.clone().unwrap_or_default();
                let mine = current.holder_identity.as_deref() == Some(self.identity.as_str());
                let expired = current
                    .renew_time
                    .as_ref()
                    .and_then(micro_time_to_chrono)
                    .is_none_or(|renewed| {
                        let limit = current.lease_duration_seconds.unwrap_or(15) as i64 * 1000;
                        (Utc::now() - renewed).num_milliseconds() > limit
                    });
                if !mine && !expired {
                    return Ok(false);
                }
                let transitions = current.lease_transitions.unwrap_or(0) + i32::from(!mine);
                let mut next = spec(transitions);
                if mine {
                    next.acquire_time = current.acquire_time.clone();
                } else {
                    info!(previous = ?current.holder_identity, "taking over the leader lease");
                }
                lease.spec = Some(next);
                // `replace` sends the resourceVersion we read: a concurrent change makes it fail.
                match self
                    .api
                    .replace(&lease.name_any(), &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
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

    /// Waits until this replica leads.
    pub async fn acquire(&self) -> Result<()> {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    info!(identity = %self.identity, lease = %self.lease_name, "became leader");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease duration; then returns the error.
    pub async fn keep(&self) -> Error {
        let mut last_success = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew).await;
            match self.try_acquire().await {
                Ok(true) => last_success = tokio::time::Instant::now(),
                Ok(false) => return Error::Check("leadership lost to another replica".into()),
                Err(e) => {
                    warn!(error = %e, "leader lease renewal failed");
                    if last_success.elapsed() > self.duration {
                        return Error::Check(format!(
                            "could not renew the leader lease for {:?}: {e}",
                            self.duration
                        ));
                    }
                }
            }
        }
    }
}
