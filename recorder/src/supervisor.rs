//! Starts and stops camera tasks as the set of assigned cameras changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::camera::{Ctx, run_camera};
use vigil_api::redact::redact_url;
use vigil_config::CameraConfig;
use vigil_store::layout::CameraId;

/// How long a stopping camera may take to save its last segment.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

struct Running {
    cfg: CameraConfig,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

pub struct Supervisor {
    ctx: Arc<Ctx>,
    running: HashMap<CameraId, Running>,
    /// End of footage recovered from the buffer at start-up, per camera: the first task of
    /// such a camera reports the restart gap from there.
    resume: HashMap<CameraId, i64>,
}

impl Supervisor {
    pub fn new(ctx: Arc<Ctx>, resume: HashMap<CameraId, i64>) -> Self {
        Supervisor {
            ctx,
            running: HashMap::new(),
            resume,
        }
    }

    pub fn cameras(&self) -> usize {
        self.running.len()
    }

    /// Makes the running set equal to `desired`: stops cameras that left or changed (a
    /// changed URL, credentials source or transport restarts the camera), starts new ones.
    pub async fn reconcile(&mut self, desired: Vec<CameraConfig>) {
        let want: HashMap<CameraId, CameraConfig> =
            desired.into_iter().map(|c| (c.id.clone(), c)).collect();
        let to_stop: Vec<CameraId> = self
            .running
            .iter()
            .filter(|(id, r)| want.get(*id) != Some(&r.cfg))
            .map(|(id, _)| id.clone())
            .collect();
        let mut stopping = Vec::new();
        for id in to_stop {
            if let Some(r) = self.running.remove(&id) {
                info!(camera = %id, "stopping camera");
                stopping.push(self.stop_one(id, r));
            }
        }
        futures::future::join_all(stopping).await;
        for (id, cfg) in want {
            if self.running.contains_key(&id) {
                continue;
            }
            info!(camera = %id, url = %redact_url(&cfg.url), "starting camera");
            self.ctx.status.add(&id, redact_url(&cfg.url));
            let (tx, rx) = watch::channel(false);
            let resume = self.resume.remove(&id);
            let handle = tokio::spawn(run_camera(cfg.clone(), self.ctx.clone(), rx, resume));
            self.running.insert(
                id,
                Running {
                    cfg,
                    stop: tx,
                    handle,
                },
            );
        }
        self.ctx.metrics.cameras.set(self.running.len() as i64);
    }

    fn stop_one(&self, id: CameraId, r: Running) -> impl Future<Output = ()> + use<> {
        let ctx = self.ctx.clone();
        async move {
            let _ = r.stop.send(true);
            let mut handle = r.handle;
            if tokio::time::timeout(STOP_TIMEOUT, &mut handle)
                .await
                .is_err()
            {
                warn!(camera = %id, "camera did not stop in time; aborting it");
                handle.abort();
            }
            ctx.status.remove(&id);
            ctx.metrics.forget_camera(&id);
        }
    }

    /// Stops every camera (each saves its current segment).
    pub async fn stop_all(&mut self) {
        let all: Vec<(CameraId, Running)> = self.running.drain().collect();
        let futs: Vec<_> = all
            .into_iter()
            .map(|(id, r)| self.stop_one(id, r))
            .collect();
        futures::future::join_all(futs).await;
        self.ctx.metrics.cameras.set(0);
    }
}
