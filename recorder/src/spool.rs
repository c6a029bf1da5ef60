//! The local buffer ("spool"): every segment is written here first, fsync'd, and only removed
//! after the store confirmed the upload.
//!
//! ```text
//! <buffer-dir>/partial/<ns>/<camera>/<startMs>.<n>.part   segment being recorded (fsync per fragment)
//! <buffer-dir>/ready/<ns>/<camera>/<YYYY>/.../<key>.mp4   finished, waiting for upload
//! <buffer-dir>/ready/<ns>/<camera>/gaps/<start>-<end>.json
//! ```
//!
//! `ready/` mirrors the store layout below the prefix, so a restart re-reads its queue from the
//! file names alone. A `.part` file found at start-up is cut back to its last complete fragment
//! and finished (see `mp4::scan`). The byte limit applies to `ready/`; when a new segment does
//! not fit, the oldest footage not being uploaded right now is deleted and recorded as a
//! `buffer-overflow` gap (adjacent drops of one camera are merged into one gap record). Gap
//! records are never dropped: they are the accounting of what was lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::metrics::{CamLabels, Metrics};
use crate::status::StatusBoard;
use vigil_media::mp4;
use vigil_store::gaps::{GapReason, GapRecord};
use vigil_store::layout::{CameraId, GapKey, ObjectKey, Origin, SegmentKey};

// ---------------------------------------------------------------------------------------------
// Pure accounting.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    key: ObjectKey,
    bytes: u64,
}

/// Ordering key: start time first, so "oldest" is the smallest.
type Slot = (i64, CameraId, String);

/// A pending merged overflow gap of one camera.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OverflowGap {
    key: GapKey,
    dropped_bytes: u64,
}

/// What `SpoolIndex::admit` decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Segments to delete, oldest first, with their sizes.
    pub evicted: Vec<(SegmentKey, u64)>,
}

/// The buffer's bookkeeping: which objects wait, in which order, and how many bytes they hold.
#[derive(Clone, Debug)]
pub struct SpoolIndex {
    max_bytes: u64,
    total: u64,
    items: BTreeMap<Slot, Item>,
    in_flight: HashSet<String>,
    overflow: HashMap<CameraId, OverflowGap>,
}

fn slot(key: &ObjectKey) -> Slot {
    (key.start_ms(), key.camera().clone(), key.relative())
}

impl SpoolIndex {
    pub fn new(max_bytes: u64) -> Self {
        SpoolIndex {
            max_bytes,
            total: 0,
            items: BTreeMap::new(),
            in_flight: HashSet::new(),
            overflow: HashMap::new(),
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.total
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Adds an object and evicts the oldest evictable segments until the total fits. A gap
    /// record is never evicted; a segment being uploaded is not either (it is about to leave).
    pub fn admit(&mut self, key: ObjectKey, bytes: u64) -> Admission {
        let s = slot(&key);
        if let Some(old) = self.items.insert(s, Item { key, bytes }) {
            self.total -= old.bytes;
        }
        self.total += bytes;
        let mut adm = Admission::default();
        while self.total > self.max_bytes {
            let victim = self.items.iter().find_map(|(s, it)| match &it.key {
                ObjectKey::Segment(k) if !self.in_flight.contains(&s.2) => {
                    Some((s.clone(), k.clone()))
                }
                _ => None,
            });
            let Some((s, k)) = victim else { break };
            if let Some(it) = self.items.remove(&s) {
                self.total -= it.bytes;
                adm.evicted.push((k, it.bytes));
            }
        }
        adm
    }

    /// Removes an object (uploaded, or deleted).
    pub fn remove(&mut self, key: &ObjectKey) -> Option<u64> {
        let s = slot(key);
        self.in_flight.remove(&s.2);
        if let ObjectKey::Gap(g) = key
            && self.overflow.get(&g.camera).is_some_and(|o| &o.key == g)
        {
            self.overflow.remove(&g.camera);
        }
        let it = self.items.remove(&s)?;
        self.total -= it.bytes;
        Some(it.bytes)
    }

    /// Picks up to `n` objects to upload: the oldest of each camera that has nothing in flight,
    /// oldest cameras first. Keeps each camera's objects in time order in the store.
    pub fn claim(&mut self, n: usize) -> Vec<ObjectKey> {
        let mut seen: HashSet<&CameraId> = HashSet::new();
        let mut busy: HashSet<&CameraId> = HashSet::new();
        for (s, it) in &self.items {
            if self.in_flight.contains(&s.2) {
                busy.insert(it.key.camera());
            }
        }
        let mut out = Vec::new();
        for (s, it) in &self.items {
            if out.len() >= n {
                break;
            }
            let cam = it.key.camera();
            if !seen.insert(cam) || busy.contains(cam) {
                continue;
            }
            out.push((s.2.clone(), it.key.clone()));
        }
        out.into_iter()
            .map(|(rel, key)| {
                self.in_flight.insert(rel);
                key
            })
            .collect()
    }

    /// An upload failed; the object goes back to the queue.
    pub fn release(&mut self, key: &ObjectKey) {
        // A gap record whose upload failed is still only local, so it can keep growing.
        self.in_flight.remove(&key.relative());
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Accounts a dropped segment `[start, end)` as an overflow gap. If it continues the
    /// camera's previous overflow gap (which is not being uploaded), that gap grows instead:
    /// returns the old gap key to delete (if any), the new gap, and its total dropped bytes.
    pub fn overflow_gap(
        &mut self,
        dropped: &SegmentKey,
        bytes: u64,
    ) -> Result<(Option<GapKey>, GapKey, u64)> {
        let cam = &dropped.camera;
        let prev = self.overflow.get(cam).cloned().filter(|o| {
            o.key.end_ms == dropped.start_ms && !self.in_flight.contains(&o.key.relative())
        });
        let (old, start, total_bytes) = match prev {
            Some(o) => (Some(o.key.clone()), o.key.start_ms, o.dropped_bytes + bytes),
            None => (None, dropped.start_ms, bytes),
        };
        let key = GapKey::new(cam.clone(), start, dropped.end_ms)?;
        if let Some(o) = &old {
            self.remove(&ObjectKey::Gap(o.clone()));
        }
        self.overflow.insert(
            cam.clone(),
            OverflowGap {
                key: key.clone(),
                dropped_bytes: total_bytes,
            },
        );
        Ok((old, key, total_bytes))
    }

    /// Every waiting key, oldest first (for tests and status).
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.items.values().map(|i| i.key.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The directory.

/// A segment found half-written at start-up and finished.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub key: SegmentKey,
    pub bytes: u64,
}

pub struct Spool {
    ready: PathBuf,
    partial: PathBuf,
    index: Mutex<SpoolIndex>,
    notify: Notify,
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
    recorder: String,
    seq: AtomicU64,
    partial_bytes: AtomicU64,
    /// Serialises creating directories for new objects with removing empty ones after uploads;
    /// otherwise an upload can delete the directory a camera just created for its next object.
    dirs: Mutex<()>,
    /// Held (flock) for the life of the process.
    _lock: fs::File,
}

fn io<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, p, e)
}

/// fsync a directory so that a rename or create in it survives a power loss.
fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

impl Spool {
    /// Opens (creating) the buffer directory, re-reads the queue and finishes half-written
    /// segments. Blocking; call before the runtime gets busy.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        metrics: Arc<Metrics>,
        status: Arc<StatusBoard>,
        recorder: &str,
    ) -> Result<(Arc<Spool>, Vec<Recovered>)> {
        let ready = dir.join("ready");
        let partial = dir.join("partial");
        fs::create_dir_all(&ready).map_err(io("creating", &ready))?;
        fs::create_dir_all(&partial).map_err(io("creating", &partial))?;
        // Two recorders on one buffer would upload and delete each other's files.
        let lock_path = dir.join("lock");
        let lock = fs::File::create(&lock_path).map_err(io("creating", &lock_path))?;
        lock.try_lock().map_err(|_| {
            Error::Config(format!(
                "buffer directory {} is in use by another recorder",
                dir.display()
            ))
        })?;
        let spool = Arc::new(Spool {
            ready,
            partial,
            index: Mutex::new(SpoolIndex::new(max_bytes)),
            notify: Notify::new(),
            metrics,
            status,
            recorder: recorder.to_string(),
            seq: AtomicU64::new(0),
            partial_bytes: AtomicU64::new(0),
            dirs: Mutex::new(()),
            _lock: lock,
        });
        spool.metrics.buffer_max_bytes.set(max_bytes as i64);
        let mut found = Vec::new();
        walk(&spool.ready, &mut found)?;
        for path in found {
            let rel = match path.strip_prefix(&spool.ready) {
                Ok(r) => r.to_string_lossy().into_owned(),
                Err(_) => continue,
            };
            if rel.ends_with(".tmp") {
                // An object whose write never completed; its content is also in a .part or
                // was never acknowledged.
                let _ = fs::remove_file(&path);
                continue;
            }
            match ObjectKey::parse_relative(&rel) {
                Ok(key) => {
                    let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    spool.admit_blocking(key, bytes)?;
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring unknown file in buffer")
                }
            }
        }
        let recovered = spool.recover_partials()?;
        spool.update_gauges();
        Ok((spool, recovered))
    }

    fn recover_partials(self: &Arc<Self>) -> Result<Vec<Recovered>> {
        let mut found = Vec::new();
        walk(&self.partial, &mut found)?;
        let mut out = Vec::new();
        for path in found {
            match self.recover_one(&path) {
                Ok(Some(r)) => {
                    info!(key = %r.key.relative(), bytes = r.bytes, "recovered a segment cut short by a restart");
                    out.push(r);
                }
                Ok(None) => {
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot recover partial segment; deleting it");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(out)
    }

    fn recover_one(self: &Arc<Self>, path: &Path) -> Result<Option<Recovered>> {
        let rel = path
            .strip_prefix(&self.partial)
            .map_err(|_| Error::Mp4("partial file outside the buffer".into()))?;
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let [ns, cam, file] = &parts[..] else {
            return Ok(None);
        };
        let camera = CameraId::new(ns, cam)?;
        let Some(start_ms) = file
            .strip_suffix(".part")
            .and_then(|s| s.split('.').next())
            .and_then(|s| s.parse::<i64>().ok())
        else {
            return Ok(None);
        };
        let data = fs::read(path).map_err(io("reading", path))?;
        let scan = mp4::scan(&data);
        if scan.fragments == 0 || scan.video_duration == 0 {
            return Ok(None);
        }
        let end_ms = start_ms + (scan.video_duration as i64 * 1000 / 90_000).max(1);
        let key = SegmentKey::new(camera, start_ms, end_ms, Origin::Live)?;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io("opening", path))?;
        f.set_len(scan.valid_len).map_err(io("truncating", path))?;
        f.sync_all().map_err(io("syncing", path))?;
        self.commit_blocking(path, &ObjectKey::Segment(key.clone()), scan.valid_len)?;
        Ok(Some(Recovered {
            key,
            bytes: scan.valid_len,
        }))
    }

    /// A new path for a segment being recorded.
    pub fn partial_path(&self, camera: &CameraId, start_ms: i64) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.partial
            .join(&camera.namespace)
            .join(&camera.name)
            .join(format!("{start_ms}.{n}.part"))
    }

    /// Bytes of segments being recorded changed by `delta`.
    pub fn add_partial_bytes(&self, delta: i64) {
        if delta >= 0 {
            self.partial_bytes
                .fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.partial_bytes
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
        self.metrics
            .buffer_partial_bytes
            .set(self.partial_bytes.load(Ordering::Relaxed) as i64);
    }

    pub fn path_of(&self, key: &ObjectKey) -> PathBuf {
        self.ready.join(key.relative())
    }

    /// Moves a finished (already fsync'd) file into the queue. Blocking.
    pub fn commit_blocking(&self, from: &Path, key: &ObjectKey, bytes: u64) -> Result<()> {
        let to = self.path_of(key);
        let dir = to
            .parent()
            .ok_or_else(|| Error::Mp4("object path without parent".into()))?;
        {
            let _g = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            fs::create_dir_all(dir).map_err(io("creating", dir))?;
            fs::rename(from, &to).map_err(io("moving into buffer", &to))?;
        }
        sync_dir(dir)?;
        if let Some(p) = from.parent() {
            let _ = sync_dir(p);
        }
        self.admit_blocking(key.clone(), bytes)
    }

    /// Writes a gap record into the queue. Blocking.
    pub fn put_gap_blocking(&self, rec: &GapRecord) -> Result<()> {
        let key = rec.key().ok_or_else(|| {
            Error::Layout(format!("gap {}-{} is empty", rec.start_ms, rec.end_ms))
        })?;
        self.put_record_blocking(ObjectKey::Gap(key), &serde_json::to_vec_pretty(rec)?)
    }

    /// Writes an event record into the queue, like a gap record. Blocking.
    pub fn put_event_blocking(
        &self,
        key: &vigil_store::events::EventKey,
        rec: &vigil_store::events::EventRecord,
    ) -> Result<()> {
        self.put_record_blocking(
            ObjectKey::Event(key.clone()),
            &serde_json::to_vec_pretty(rec)?,
        )
    }

    /// Writes a small JSON record (gap, event) into the queue: synced, renamed into place and
    /// the directory synced, so that a crash leaves either the whole record or none.
    fn put_record_blocking(&self, okey: ObjectKey, body: &[u8]) -> Result<()> {
        let to = self.path_of(&okey);
        let tmp = to.with_extension("json.tmp");
        let dir = to
            .parent()
            .ok_or_else(|| Error::Mp4("object path without parent".into()))?;
        {
            let _g = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            fs::create_dir_all(dir).map_err(io("creating", dir))?;
            write_synced(&tmp, body)?;
            fs::rename(&tmp, &to).map_err(io("moving into buffer", &to))?;
        }
        sync_dir(dir)?;
        self.admit_blocking(okey, body.len() as u64)
    }

    fn admit_blocking(&self, key: ObjectKey, bytes: u64) -> Result<()> {
        let adm = self.lock().admit(key, bytes);
        for (seg, seg_bytes) in adm.evicted {
            let path = self.path_of(&ObjectKey::Segment(seg.clone()));
            if let Err(e) = fs::remove_file(&path) {
                warn!(path = %path.display(), error = %e, "cannot delete evicted segment");
            }
            {
                let _g = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
                remove_empty_parents(&path, &self.ready);
            }
            let labels = CamLabels::from(&seg.camera);
            self.metrics
                .dropped_bytes
                .get_or_create(&labels)
                .inc_by(seg_bytes);
            self.metrics.dropped_segments.get_or_create(&labels).inc();
            self.metrics.record_gap(
                &seg.camera,
                GapReason::BufferOverflow,
                (seg.end_ms - seg.start_ms) as f64 / 1000.0,
            );
            warn!(
                camera = %seg.camera,
                start_ms = seg.start_ms,
                end_ms = seg.end_ms,
                bytes = seg_bytes,
                "buffer full: dropped the oldest unsent segment"
            );
            let (old, gap_key, dropped) = self.lock().overflow_gap(&seg, seg_bytes)?;
            if let Some(old) = old {
                let p = self.path_of(&ObjectKey::Gap(old));
                let _ = fs::remove_file(&p);
            }
            let mut rec = GapRecord::new(
                &seg.camera,
                gap_key.start_ms,
                gap_key.end_ms,
                GapReason::BufferOverflow,
                &self.recorder,
            );
            rec.dropped_bytes = Some(dropped);
            self.status.gap(&rec);
            // Gap records are tiny and never evicted, so this recursion ends at once.
            self.put_gap_blocking(&rec)?;
        }
        self.update_gauges();
        self.notify.notify_one();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SpoolIndex> {
        // A panic while holding the lock leaves consistent data (every mutation is one
        // statement), so a poisoned lock is still usable.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_gauges(&self) {
        let (bytes, n) = {
            let i = self.lock();
            (i.total_bytes(), i.len())
        };
        self.metrics.buffer_bytes.set(bytes as i64);
        self.metrics.buffer_objects.set(n as i64);
    }

    /// Objects to upload next (marked in flight).
    pub fn claim(&self, n: usize) -> Vec<ObjectKey> {
        self.lock().claim(n)
    }

    pub fn release(&self, key: &ObjectKey) {
        self.lock().release(key);
        self.notify.notify_one();
    }

    /// The object is in the store: delete the local copy. Blocking.
    pub fn done_blocking(&self, key: &ObjectKey) {
        let path = self.path_of(key);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %path.display(), error = %e, "cannot delete uploaded object from buffer");
        }
        // The current hour's directory (and `gaps/`) will be needed again in a moment; only
        // older hours are pruned, which saves a mkdir/rmdir pair per segment.
        let hour_ms = 3_600_000;
        let current = crate::status::now_ms().div_euclid(hour_ms);
        if let ObjectKey::Segment(k) = key {
            let prune = if k.start_ms.div_euclid(hour_ms) < current {
                Some(path.clone())
            } else {
                // Tidy the previous hour, which may have been left behind.
                let prev = (current - 1) * hour_ms;
                SegmentKey::new(k.camera.clone(), prev, prev + 1, Origin::Live)
                    .ok()
                    .map(|p| self.path_of(&ObjectKey::Segment(p)))
            };
            if let Some(p) = prune {
                let _g = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
                remove_empty_parents(&p, &self.ready);
            }
        }
        self.lock().remove(key);
        self.update_gauges();
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn waiting(&self) -> (usize, u64) {
        let i = self.lock();
        (i.len(), i.total_bytes())
    }

    pub fn in_flight(&self) -> usize {
        self.lock().in_flight()
    }

    pub async fn changed(&self) {
        self.notify.notified().await
    }

    pub fn wake(&self) {
        self.notify.notify_one();
    }
}

/// Creates `path` with `body`, fsync'd.
pub fn write_synced(path: &Path, body: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let mut f = fs::File::create(path).map_err(io("creating", path))?;
    f.write_all(body).map_err(io("writing", path))?;
    f.sync_all().map_err(io("syncing", path))?;
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(io("listing", dir))?;
        let p = entry.path();
        let ft = entry.file_type().map_err(io("listing", &p))?;
        if ft.is_dir() {
            walk(&p, out)?;
        } else if ft.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Removes now-empty directories between `path` and `root` so that the hour directories of
/// uploaded footage do not pile up.
fn remove_empty_parents(path: &Path, root: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(cam: &str, start: i64, end: i64) -> ObjectKey {
        ObjectKey::Segment(
            SegmentKey::new(CameraId::new("ns", cam).unwrap(), start, end, Origin::Live).unwrap(),
        )
    }

    #[test]
    fn evicts_oldest_first_and_skips_in_flight() {
        let mut i = SpoolIndex::new(300);
        assert!(i.admit(seg("a", 0, 10), 100).evicted.is_empty());
        assert!(i.admit(seg("b", 5, 15), 100).evicted.is_empty());
        assert_eq!(i.claim(1), vec![seg("a", 0, 10)]);
        assert!(i.admit(seg("a", 10, 20), 100).evicted.is_empty());
        // Full: a/0 is being uploaded, so b/5 goes.
        let adm = i.admit(seg("b", 15, 25), 100);
        assert_eq!(adm.evicted.len(), 1);
        assert_eq!(adm.evicted[0].0.start_ms, 5);
        assert_eq!(i.total_bytes(), 300);
    }

    #[test]
    fn claims_in_camera_order() {
        let mut i = SpoolIndex::new(u64::MAX);
        i.admit(seg("a", 0, 10), 1);
        i.admit(seg("a", 10, 20), 1);
        i.admit(seg("b", 3, 13), 1);
        let c = i.claim(10);
        assert_eq!(c, vec![seg("a", 0, 10), seg("b", 3, 13)]);
        assert!(i.claim(10).is_empty(), "one in flight per camera");
        i.remove(&seg("a", 0, 10));
        assert_eq!(i.claim(10), vec![seg("a", 10, 20)]);
    }

    #[test]
    fn overflow_gaps_merge() {
        let mut i = SpoolIndex::new(u64::MAX);
        let a = |s, e| match seg("a", s, e) {
            ObjectKey::Segment(k) => k,
            _ => unreachable!(),
        };
        let (old, k1, b1) = i.overflow_gap(&a(0, 10), 5).unwrap();
        assert_eq!((old, k1.start_ms, k1.end_ms, b1), (None, 0, 10, 5));
        i.admit(ObjectKey::Gap(k1.clone()), 1);
        let (old, k2, b2) = i.overflow_gap(&a(10, 20), 7).unwrap();
        assert_eq!((old, k2.start_ms, k2.end_ms, b2), (Some(k1), 0, 20, 12));
        i.admit(ObjectKey::Gap(k2.clone()), 1);
        // Not adjacent: a new gap.
        let (old, k3, _) = i.overflow_gap(&a(30, 40), 1).unwrap();
        assert_eq!((old, k3.start_ms), (None, 30));
        assert_eq!(i.len(), 1);
    }

    proptest! {
        /// Bytes are conserved (admitted = waiting + evicted + removed), the limit holds
        /// whenever something evictable is left, and eviction always takes the oldest
        /// evictable segment.
        #[test]
        fn eviction_accounting(
            max in 1u64..5000,
            ops in proptest::collection::vec((0u8..4, 0usize..3, 1u64..1000), 1..200),
        ) {
            let mut i = SpoolIndex::new(max);
            let mut admitted = 0u64;
            let mut evicted = 0u64;
            let mut removed = 0u64;
            let mut t = 0i64;
            for (op, cam, bytes) in ops {
                let cam = ["a", "b", "c"][cam];
                match op {
                    0 | 1 => {
                        t += 10;
                        let oldest_before: Option<i64> = i.items.iter()
                            .filter(|(s, it)| matches!(it.key, ObjectKey::Segment(_)) && !i.in_flight.contains(&s.2))
                            .map(|(s, _)| s.0).min();
                        let adm = i.admit(seg(cam, t, t + 10), bytes);
                        admitted += bytes;
                        if let (Some(first), Some(oldest)) = (adm.evicted.first(), oldest_before) {
                            prop_assert_eq!(first.0.start_ms, oldest);
                        }
                        for w in adm.evicted.windows(2) {
                            prop_assert!(w[0].0.start_ms <= w[1].0.start_ms);
                        }
                        evicted += adm.evicted.iter().map(|e| e.1).sum::<u64>();
                        let evictable = i.items.iter().any(|(s, it)| matches!(it.key, ObjectKey::Segment(_)) && !i.in_flight.contains(&s.2));
                        prop_assert!(i.total_bytes() <= max || !evictable);
                    }
                    2 => { i.claim(2); }
                    _ => {
                        if let Some(k) = i.claim(1).pop() {
                            removed += i.remove(&k).unwrap_or(0);
                        }
                    }
                }
                prop_assert_eq!(admitted, i.total_bytes() + evicted + removed);
                prop_assert_eq!(i.total_bytes(), i.items.values().map(|x| x.bytes).sum::<u64>());
            }
        }
    }
}
