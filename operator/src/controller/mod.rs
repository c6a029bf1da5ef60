//! The operator's controllers: one reconcile per resource, run by kube-runtime `Controller`s.

pub mod backfill;
pub mod camera;
pub mod camera_status;
pub mod children;
pub mod pool;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::error::Error;
use crate::liveness::{LeaseKey, LeaseObservations, LeaseVersion};
use crate::metrics::Metrics;
use children::RecorderSettings;
use vigil_api::{Backfill, Camera, POOL_LABEL, RecorderPool};

/// The one field manager for everything the operator applies.
pub const FIELD_MANAGER: &str = "vigil-operator";

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub events: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: RecorderSettings,
    /// How often a pool is re-checked without any change (lease expiry is time, not an event).
    pub resync: Duration,
    /// Only watch this namespace (a namespace-scoped install); None: all namespaces.
    pub watch_namespace: Option<String>,
    /// `policy/v1` or `policy/v1beta1`, whichever the cluster serves; None: no budgets.
    pub pdb_api_version: Option<String>,
    /// `batch/v1` or `batch/v1beta1` CronJob, whichever the cluster serves; None: no retention jobs.
    pub cron_job_api_version: Option<String>,
    /// Consecutive failures per object, for exponential backoff.
    failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
    /// When this operator saw each recorder Lease change, on its own clock (see `liveness`).
    leases: std::sync::Mutex<LeaseObservations>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: RecorderSettings,
        resync: Duration,
    ) -> Self {
        let events = Recorder::new(
            client.clone(),
            Reporter {
                controller: "vigil-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            events,
            metrics,
            settings,
            resync,
            watch_namespace: None,
            pdb_api_version: None,
            cron_job_api_version: None,
            failures: Default::default(),
            leases: Default::default(),
        }
    }

    /// Notes a recorder Lease as seen at `now`; returns when it last changed (see `liveness`).
    pub fn observe_lease(
        &self,
        key: LeaseKey,
        version: LeaseVersion,
        now: tokio::time::Instant,
    ) -> tokio::time::Instant {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(key, version, now)
    }

    /// Forgets a deleted recorder Lease.
    pub fn forget_lease(&self, key: &LeaseKey) {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(key);
    }
}

/// Failed reconciles are retried with per-object exponential backoff: 1 s, 2 s, 4 s … 60 s.
fn error_policy<K: kube::Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    );
    let failures = {
        let mut map = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff_delay(failures);
    warn!(object = %key, %error, failures, retry_in = ?delay, "reconcile failed");
    ctx.metrics.count_failure(&K::kind(&()));
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based).
pub fn backoff_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Forgets the failures of an object after a successful reconcile.
pub fn reset_backoff<K: kube::Resource<DynamicType = ()>>(ctx: &Context, object: &K) {
    let key = format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    );
    ctx.failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
}

/// Which PodDisruptionBudget API the cluster serves.
pub async fn discover_pdb_api(client: &Client) -> Option<String> {
    discover(client, "policy", "poddisruptionbudgets").await
}

/// Which CronJob API the cluster serves (batch/v1 from Kubernetes 1.21).
pub async fn discover_cron_job_api(client: &Client) -> Option<String> {
    discover(client, "batch", "cronjobs").await
}

async fn discover(client: &Client, group: &str, resource: &str) -> Option<String> {
    for version in ["v1", "v1beta1"] {
        if let Ok(list) = client
            .list_api_group_resources(&format!("{group}/{version}"))
            .await
            && list.resources.iter().any(|r| r.name == resource)
        {
            return Some(format!("{group}/{version}"));
        }
    }
    None
}

/// An Api over one namespace or all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the RecorderPool and Camera controllers until SIGTERM.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let pools = Controller::new(
        scoped::<RecorderPool>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default(),
    )
    .owns(
        scoped::<Deployment>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default().labels("app.kubernetes.io/managed-by=vigil-operator"),
    )
    .watches(
        scoped::<Camera>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default(),
        |camera| {
            Some(ObjectRef::<RecorderPool>::new(&camera.spec.pool).within(&camera.namespace()?))
        },
    )
    .watches(
        scoped::<Pod>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default().labels(POOL_LABEL),
        |pod| {
            let pool = pod.labels().get(POOL_LABEL)?.clone();
            Some(ObjectRef::<RecorderPool>::new(&pool).within(&pod.namespace()?))
        },
    )
    .shutdown_on_signal()
    .run(pool::reconcile, error_policy, ctx.clone())
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "pool reconcile result");
        }
    });
    let backfills = Controller::new(
        scoped::<Backfill>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default(),
    )
    .owns(
        scoped::<Job>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default().labels(backfill::BACKFILL_LABEL),
    )
    .shutdown_on_signal()
    .run(backfill::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    let cameras = Controller::new(
        scoped::<Camera>(&client, ctx.watch_namespace.as_deref()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(camera::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    info!("controllers running");
    futures::join!(pools, cameras, backfills);
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let d: Vec<u64> = (1..=9).map(|n| super::backoff_delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
