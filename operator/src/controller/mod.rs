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

use crate::api::{Backfill, Camera, POOL_LABEL, RecorderPool};
use crate::error::Error;
use crate::metrics::Metrics;
use children::RecorderSettings;

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
        }
    }
}

/// Failed reconciles are retried with per-object backoff by the controller; this sets the base.
fn error_policy<K>(_object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(%error, "reconcile failed; retrying");
    ctx.metrics.count_failure("any");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the RecorderPool and Camera controllers until SIGTERM.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let pools = Controller::new(
        Api::<RecorderPool>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default().labels("app.kubernetes.io/managed-by=vigil-operator"),
    )
    .watches(
        Api::<Camera>::all(client.clone()),
        watcher::Config::default(),
        |camera| {
            Some(ObjectRef::<RecorderPool>::new(&camera.spec.pool).within(&camera.namespace()?))
        },
    )
    .watches(
        Api::<Pod>::all(client.clone()),
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
        Api::<Backfill>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<Job>::all(client.clone()),
        watcher::Config::default().labels(backfill::BACKFILL_LABEL),
    )
    .shutdown_on_signal()
    .run(backfill::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    let cameras = Controller::new(
        Api::<Camera>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(camera::reconcile, error_policy, ctx.clone())
    .for_each(|_| async {});
    info!("controllers running");
    futures::join!(pools, cameras, backfills);
}
