//! Moves finished objects from the local buffer to the store, oldest first per camera.
//!
//! Up to `concurrency` uploads run at once, at most one per camera, so a camera's objects
//! reach the store in time order and a slow or huge upload of one camera does not hold back
//! the others. A failed upload puts the object back and pauses all uploads with capped
//! exponential backoff (a store outage affects every camera alike); ingest never waits for
//! uploads, it only fills the buffer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::metrics::{CamLabels, Metrics};
use crate::spool::Spool;
use vigil_media::backoff::Backoff;
use vigil_store::layout::ObjectKey;

pub struct Uploader {
    pub store: Arc<dyn ObjectStore>,
    pub spool: Arc<Spool>,
    pub metrics: Arc<Metrics>,
    pub prefix: String,
    pub concurrency: usize,
    /// For a local store: its root. Objects are then moved with `rename` (no copy) when the
    /// buffer is on the same file system.
    pub local_root: Option<std::path::PathBuf>,
}

impl Uploader {
    /// Runs until `stop` turns true, then keeps going until the buffer is empty or `deadline`
    /// (set when stopping) passes.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<Option<Instant>>) {
        let mut backoff =
            Backoff::with_random_seed(Duration::from_millis(500), Duration::from_secs(5));
        let mut tasks: JoinSet<(ObjectKey, Result<u64>, Duration)> = JoinSet::new();
        let mut paused_until: Option<tokio::time::Instant> = None;
        loop {
            let deadline = *stop.borrow();
            if let Some(d) = deadline {
                let (waiting, _) = self.spool.waiting();
                if waiting == 0 && tasks.is_empty() {
                    info!("buffer empty; uploader done");
                    return;
                }
                if Instant::now() >= d {
                    let (n, bytes) = self.spool.waiting();
                    warn!(
                        objects = n,
                        bytes, "shutdown timeout: leaving objects in the buffer for the next start"
                    );
                    return;
                }
            }
            let paused = paused_until.is_some_and(|t| tokio::time::Instant::now() < t);
            if !paused {
                let free = self.concurrency.saturating_sub(tasks.len());
                for key in self.spool.claim(free) {
                    let me = self.clone();
                    tasks.spawn(async move {
                        let t0 = Instant::now();
                        let r = me.upload(&key).await;
                        (key, r, t0.elapsed())
                    });
                }
            }
            let sleep_until = match (paused_until, deadline) {
                (Some(p), _) if paused => p,
                (_, Some(_)) => tokio::time::Instant::now() + Duration::from_millis(200),
                _ => tokio::time::Instant::now() + Duration::from_secs(3600),
            };
            tokio::select! {
                Some(res) = tasks.join_next(), if !tasks.is_empty() => {
                    match res {
                        Ok((key, Ok(bytes), took)) => {
                            backoff.reset();
                            paused_until = None;
                            self.metrics.upload_seconds.observe(took.as_secs_f64());
                            let labels = CamLabels::from(key.camera());
                            self.metrics.bytes_out.get_or_create(&labels).inc_by(bytes);
                            if matches!(key, ObjectKey::Segment(_)) {
                                self.metrics.segments_uploaded.get_or_create(&labels).inc();
                            }
                            debug!(key = %key.relative(), bytes, ms = took.as_millis() as u64, "uploaded");
                            let spool = self.spool.clone();
                            let _ = tokio::task::spawn_blocking(move || spool.done_blocking(&key)).await;
                        }
                        Ok((key, Err(e), _)) => {
                            self.metrics.upload_errors.inc();
                            self.spool.release(&key);
                            let d = backoff.next_delay();
                            paused_until = Some(tokio::time::Instant::now() + d);
                            let e = crate::error::chain(&e);
                            warn!(key = %key.relative(), error = %e, retry_in_ms = d.as_millis() as u64, "upload failed; keeping it in the buffer");
                        }
                        Err(e) => warn!(error = %e, "upload task failed"),
                    }
                }
                _ = self.spool.changed() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep_until(sleep_until) => {}
            }
        }
    }

    async fn upload(&self, key: &ObjectKey) -> Result<u64> {
        let path = self.spool.path_of(key);
        if let Some(root) = &self.local_root {
            let dst = root.join(key.to_key(&self.prefix));
            let src = path.clone();
            let moved = tokio::task::spawn_blocking(move || move_file(&src, &dst))
                .await
                .map_err(|e| Error::Stream(format!("file task failed: {e}")))??;
            if let Some(len) = moved {
                return Ok(len);
            }
        }
        let data = tokio::fs::read(&path)
            .await
            .map_err(|e| Error::io("reading buffered object", &path, e))?;
        let len = data.len() as u64;
        let loc = StorePath::from(key.to_key(&self.prefix));
        self.store.put(&loc, payload_in_chunks(data)).await?;
        Ok(len)
    }
}

/// Size of the pieces an upload body is handed to the HTTP client in.
const UPLOAD_CHUNK_BYTES: usize = 256 << 10;

/// The object as a payload of zero-copy slices. Over TLS, hyper cannot write vectored and
/// copies each body chunk into its own write buffer: one 5 MB chunk meant a second copy of the
/// segment per concurrent upload (measured: 4.4 MiB more private memory per upload over https).
fn payload_in_chunks(data: Vec<u8>) -> PutPayload {
    let data = Bytes::from(data);
    (0..data.len())
        .step_by(UPLOAD_CHUNK_BYTES)
        .map(|at| data.slice(at..(at + UPLOAD_CHUNK_BYTES).min(data.len())))
        .collect()
}

/// Moves a buffered object into a local store by renaming it (durably: the store directory is
/// fsync'd). `None` if the two are on different file systems and the object must be copied.
fn move_file(src: &std::path::Path, dst: &std::path::Path) -> Result<Option<u64>> {
    let len = std::fs::metadata(src)
        .map_err(|e| Error::io("reading buffered object", src, e))?
        .len();
    let Some(dir) = dst.parent() else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    match std::fs::rename(src, dst) {
        Ok(()) => {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("syncing directory", dir, e))?;
            Ok(Some(len))
        }
        Err(e) if e.raw_os_error() == Some(18) => Ok(None), // EXDEV
        Err(e) => Err(Error::io("moving into the store", dst, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_chunks_cover_the_object_without_copies() {
        let data: Vec<u8> = (0..(UPLOAD_CHUNK_BYTES * 2 + 7)).map(|i| i as u8).collect();
        let expect = data.clone();
        let p = payload_in_chunks(data);
        let chunks: Vec<_> = p.iter().collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].len(), 7);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(joined, expect);
        assert_eq!(payload_in_chunks(Vec::new()).content_length(), 0);
    }
}
