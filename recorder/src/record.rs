//! `vigil-recorder record`: wires the buffer, the uploader, the camera tasks, the HTTP server
//! and (in Kubernetes mode) the Camera watch, the Lease and the status reporter together, and
//! shuts them down in order on SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::camera::{Ctx, SecretReader};
use crate::error::{Error, Result};
use crate::http::{self, HttpState};
use crate::kubernetes::{self, K8s};
use crate::metrics::Metrics;
use crate::spool::Spool;
use crate::status::StatusBoard;
use crate::supervisor::Supervisor;
use crate::uploader::Uploader;
use vigil_config::{CameraConfig, Settings};
use vigil_store::backend as store;
use vigil_store::layout::CameraId;

pub enum Source {
    /// A fixed camera list (file mode).
    File(Vec<CameraConfig>),
    /// Cameras labelled for this pod.
    Kubernetes(Box<K8s>),
}

pub async fn record(listen: SocketAddr, settings: Settings, source: Source) -> Result<()> {
    // Bind first: a second recorder started by mistake fails here, before touching the buffer.
    let listener = http::bind(listen).await?;
    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(StatusBoard::new());
    let (spool, recovered) = {
        let (dir, max, m, s, name) = (
            settings.buffer_dir.clone(),
            settings.buffer_max_bytes,
            metrics.clone(),
            status.clone(),
            settings.recorder_name.clone(),
        );
        tokio::task::spawn_blocking(move || Spool::open(&dir, max, m, s, &name))
            .await
            .map_err(|e| Error::Config(format!("opening the buffer failed: {e}")))??
    };
    let mut resume: HashMap<CameraId, i64> = HashMap::new();
    for r in &recovered {
        let e = resume.entry(r.key.camera.clone()).or_insert(r.key.end_ms);
        *e = (*e).max(r.key.end_ms);
    }
    let (waiting, bytes) = spool.waiting();
    info!(
        storage = %settings.storage.describe(),
        buffer = %settings.buffer_dir.display(),
        waiting,
        bytes,
        recovered = recovered.len(),
        segment_seconds = settings.segment_seconds,
        "starting recorder"
    );
    let object_store = store::build(&settings.storage)?;
    // The Kubernetes status loop lists the store to find where a camera's footage ends when it
    // takes the camera over.
    let store_ref = (object_store.clone(), settings.prefix.clone());
    let secrets: Option<SecretReader> = match &source {
        Source::Kubernetes(k) => Some(kubernetes::secret_reader(k.client.clone())),
        Source::File(_) => None,
    };
    let ctx = Arc::new(Ctx {
        settings: settings.clone(),
        spool: spool.clone(),
        metrics: metrics.clone(),
        status: status.clone(),
        secrets,
        live: Arc::new(crate::live::LiveHub::from_env()),
        windows: match &source {
            Source::Kubernetes(_) => Some(Arc::new(watch::channel(Default::default()).0)),
            Source::File(_) => None,
        },
    });

    let mut source = source;
    if let Source::Kubernetes(k) = &mut source
        && ctx.live.enabled()
    {
        let pod_ip = std::env::var("POD_IP").ok();
        let explicit = std::env::var("VIGIL_LIVE_ADDRESS").ok();
        k.live_address =
            crate::live::advertised_address(listen, pod_ip.as_deref(), explicit.as_deref());
        match &k.live_address {
            Some(a) => info!(address = %a, "live view: address published on the Lease"),
            None => warn!(
                "live view: no address to publish (listen on a wildcard address without POD_IP); the access point cannot find this recorder"
            ),
        }
    }

    let (upload_stop_tx, upload_stop_rx) = watch::channel(None::<Instant>);
    let uploader = Arc::new(Uploader {
        store: object_store,
        spool: spool.clone(),
        metrics: metrics.clone(),
        prefix: settings.prefix.clone(),
        concurrency: settings.upload_concurrency.max(1),
        local_root: match &settings.storage {
            vigil_store::StorageConfig::Local { path } => Some(path.clone()),
            _ => None,
        },
    });
    let upload_task = tokio::spawn(uploader.run(upload_stop_rx));

    let ready = Arc::new(AtomicBool::new(false));
    let (http_stop_tx, mut http_stop_rx) = watch::channel(false);
    info!(%listen, "serving /healthz /readyz /metrics /status");
    let http_task = tokio::spawn(http::serve(
        listener,
        HttpState {
            metrics: metrics.clone(),
            status: status.clone(),
            spool: spool.clone(),
            ready: ready.clone(),
            recorder: settings.recorder_name.clone(),
            live: ctx.live.clone(),
        },
        async move {
            let _ = http_stop_rx.wait_for(|s| *s).await;
        },
    ));

    let mut sigterm = signal(SignalKind::terminate())
        .map_err(|e| Error::Config(format!("cannot install SIGTERM handler: {e}")))?;
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| Error::Config(format!("cannot install SIGINT handler: {e}")))?;
    let mut supervisor = Supervisor::new(ctx.clone(), resume);
    // Background Kubernetes loops stop when this turns true.
    let (k8s_stop_tx, k8s_stop_rx) = watch::channel(false);
    let mut k8s_tasks = Vec::new();

    let result: Result<()> = match source {
        Source::File(cameras) => {
            supervisor.reconcile(cameras).await;
            ready.store(true, Ordering::Relaxed);
            tokio::select! {
                _ = sigterm.recv() => info!("SIGTERM: finishing segments and uploads"),
                _ = sigint.recv() => info!("SIGINT: finishing segments and uploads"),
            }
            Ok(())
        }
        Source::Kubernetes(k) => {
            let k: Arc<K8s> = Arc::from(k);
            k8s_tasks.push(tokio::spawn(kubernetes::lease_loop(
                k.clone(),
                k8s_stop_rx.clone(),
            )));
            k8s_tasks.push(tokio::spawn(kubernetes::status_loop(
                k.clone(),
                status.clone(),
                store_ref.clone(),
                settings.segment_seconds,
                k8s_stop_rx.clone(),
            )));
            let (tx, mut rx) = mpsc::channel::<Vec<CameraConfig>>(4);
            let watcher = tokio::spawn(kubernetes::watch_cameras(
                k.clone(),
                tx,
                ctx.windows.clone(),
            ));
            // Draining: SIGTERM came; recording goes on until every camera has been taken over
            // (the operator hands each to another recorder, make-before-break) or the deadline.
            // Readiness stays up meanwhile: a recorder that is not ready has failed.
            let mut drain_deadline: Option<tokio::time::Instant> = None;
            let r = loop {
                let deadline = async {
                    match drain_deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = sigterm.recv() => {
                        if drain_deadline.is_some() {
                            info!("second SIGTERM: stopping without waiting for the hand-over");
                            break Ok(());
                        }
                        if supervisor.cameras() == 0 {
                            info!("SIGTERM: no camera to hand over; finishing uploads");
                            break Ok(());
                        }
                        info!(cameras = supervisor.cameras(), timeout_s = k.drain_timeout.as_secs(),
                              "SIGTERM: draining; recording until every camera has been taken over");
                        k.start_draining();
                        drain_deadline = Some(tokio::time::Instant::now() + k.drain_timeout);
                    }
                    _ = sigint.recv() => { info!("SIGINT: finishing segments and uploads"); break Ok(()); }
                    _ = deadline => {
                        warn!(cameras = supervisor.cameras(),
                              "drain timeout: stopping with cameras not taken over (they fail over)");
                        break Ok(());
                    }
                    cams = rx.recv() => match cams {
                        Some(cams) => {
                            supervisor.reconcile(cams).await;
                            if drain_deadline.is_none() {
                                ready.store(true, Ordering::Relaxed);
                            } else if supervisor.cameras() == 0 {
                                info!("every camera has been taken over; finishing uploads");
                                break Ok(());
                            }
                        }
                        None => break Err(Error::Config("the Camera watch ended".into())),
                    }
                }
            };
            watcher.abort();
            r
        }
    };

    // Shutdown: stop taking traffic, save every camera's current segment, then upload for as
    // long as allowed. What is left stays in the buffer for the next start.
    ready.store(false, Ordering::Relaxed);
    supervisor.stop_all().await;
    let _ = k8s_stop_tx.send(true);
    for t in k8s_tasks {
        let _ = t.await;
    }
    let deadline = Instant::now() + settings.shutdown_timeout;
    let _ = upload_stop_tx.send(Some(deadline));
    if let Err(e) = upload_task.await {
        warn!(error = %e, "uploader ended abnormally");
    }
    let _ = http_stop_tx.send(true);
    match http_task.await {
        Ok(Err(e)) => error!(error = %e, "HTTP server failed"),
        Err(e) => error!(error = %e, "HTTP server task failed"),
        Ok(Ok(())) => {}
    }
    let (left, bytes) = spool.waiting();
    info!(left, bytes, "recorder stopped");
    result
}
