//! The operator's Prometheus metrics and its `/metrics`, `/healthz`, `/readyz` endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// The operator's controllers. Each has one spelling as a metric label (the lowercase kind),
/// whether a reconcile is counted or its failure.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ControllerKind {
    RecorderPool,
    Camera,
    Backfill,
}

impl ControllerKind {
    /// The value of the `controller` label.
    pub fn label(self) -> &'static str {
        match self {
            ControllerKind::RecorderPool => "recorderpool",
            ControllerKind::Camera => "camera",
            ControllerKind::Backfill => "backfill",
        }
    }
}

/// The controller that reconciles a kind of object.
pub trait Reconciled {
    const CONTROLLER: ControllerKind;
}

impl Reconciled for vigil_api::RecorderPool {
    const CONTROLLER: ControllerKind = ControllerKind::RecorderPool;
}
impl Reconciled for vigil_api::Camera {
    const CONTROLLER: ControllerKind = ControllerKind::Camera;
}
impl Reconciled for vigil_api::Backfill {
    const CONTROLLER: ControllerKind = ControllerKind::Backfill;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// Lowercase kind of the object written (`camera`, `recorderpool`, `deployment`, …).
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub pool: String,
    pub state: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub reconcile_failures: Family<ControllerLabels, Counter>,
    /// Write requests (create, patch, delete) sent to the API server, by resource: a quiet
    /// cluster sends none.
    pub api_writes: Family<WriteLabels, Counter>,
    pub placement_seconds: Histogram,
    pub cameras: Family<StateLabels, Gauge>,
    pub failovers: Counter,
    /// From the failed recorder's last lease renewal to its cameras' reassignment.
    pub failover_detection_seconds: Histogram,
    pub camera_moves: Counter,
    pub is_leader: Gauge,
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("vigil_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let reconcile_failures = Family::<ControllerLabels, Counter>::default();
        let api_writes = Family::<WriteLabels, Counter>::default();
        let placement_seconds = Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]);
        let cameras = Family::<StateLabels, Gauge>::default();
        let failovers = Counter::default();
        let failover_detection_seconds =
            Histogram::new([0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0]);
        let camera_moves = Counter::default();
        let is_leader = Gauge::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed",
            reconcile_failures.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests sent to the API server (Events not counted)",
            api_writes.clone(),
        );
        registry.register(
            "placement_seconds",
            "Time to compute a pool's placement",
            placement_seconds.clone(),
        );
        registry.register("cameras", "Cameras by pool and state", cameras.clone());
        registry.register("failovers", "Recorders declared failed", failovers.clone());
        registry.register(
            "failover_detection_seconds",
            "From a failed recorder's last lease renewal to the reassignment of its cameras",
            failover_detection_seconds.clone(),
        );
        registry.register(
            "camera_moves",
            "Cameras moved between recorders",
            camera_moves.clone(),
        );
        registry.register(
            "is_leader",
            "1 while this replica is the active operator",
            is_leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            reconcile_failures,
            api_writes,
            placement_seconds,
            cameras,
            failovers,
            failover_detection_seconds,
            camera_moves,
            is_leader,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn count_reconcile(&self, controller: ControllerKind) {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.label().into(),
            })
            .inc();
    }
    pub fn count_failure(&self, controller: ControllerKind) {
        self.reconcile_failures
            .get_or_create(&ControllerLabels {
                controller: controller.label().into(),
            })
            .inc();
    }
    /// Counts one write request about to be sent.
    pub fn count_write(&self, resource: &str) {
        self.api_writes
            .get_or_create(&WriteLabels {
                resource: resource.into(),
            })
            .inc();
    }
}

/// `/metrics`, `/healthz` (the process runs) and `/readyz` (it reached the API server; a standby
/// replica is ready too, so a rollout is not blocked by leader election).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(metrics)
}

async fn render(State(metrics): State<Arc<Metrics>>) -> (StatusCode, String) {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &metrics.registry) {
        Ok(()) => (StatusCode::OK, out),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn ready(State(metrics): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
