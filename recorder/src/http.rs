//! `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/status` (JSON of every camera) and
//! `/live/{namespace}/{name}` (a camera's live frames for the access point, token required).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::status::StatusBoard;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub spool: Arc<Spool>,
    /// True once the cameras are started; false again while shutting down.
    pub ready: Arc<AtomicBool>,
    pub recorder: String,
    pub live: Arc<crate::live::LiveHub>,
}

pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Http(format!("cannot listen on {listen}: {e}")))
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let live = Router::new()
        .route("/live/{ns}/{name}", get(crate::live::serve))
        .with_state(state.live.clone());
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
        .merge(live);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Http(e.to_string()))
}

async fn readyz(State(s): State<HttpState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn status(State(s): State<HttpState>) -> Response {
    let (objects, bytes) = s.spool.waiting();
    axum::Json(json!({
        "recorder": s.recorder,
        "ready": s.ready.load(Ordering::Relaxed),
        "buffer": {
            "objects": objects,
            "bytes": bytes,
            "uploading": s.spool.in_flight(),
        },
        "cameras": s.status.snapshot(),
    }))
    .into_response()
}
