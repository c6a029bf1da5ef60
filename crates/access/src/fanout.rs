//! One upstream per camera at this access point, shared by every viewer of it: WebRTC
//! sessions (`live.rs`), the camera's LL-HLS window (`llhls.rs`) and a parent domain's
//! tunnelled `live.frames` requests all read the same [`Feed`].
//!
//! A feed is a task reading the camera's frames from the recorder holding it
//! (`live::read_upstream`: opened again 300 ms after it ends, following camera moves) and
//! publishing them into a bounded broadcast ring. It keeps the latest GOP (from the last
//! keyframe, [`Gop`]) so that a new viewer starts on a keyframe at once instead of waiting for
//! the camera's next one.
//!
//! Slow viewers cannot hurt the feed or the others: publishing never waits; a viewer that
//! falls more than the ring behind loses frames and resumes at the next keyframe
//! ([`Viewer::next`]). Memory per viewer is its position in the shared ring (frames are
//! reference-counted `Bytes`, never copied per viewer).
//!
//! Who holds a feed is counted by [`FeedHandle`]s (taken under the table's lock); a feed whose
//! last handle went away stops after [`LINGER`] (a viewer switching cameras and back, or a
//! page reload, finds it still running).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};
use tracing::{debug, info};

use crate::live::{Opener, Upstreamed};
use vigil_media::live::{Frame, Message, Params};
use vigil_store::layout::CameraId;

/// Frames the broadcast ring holds: how far a viewer may fall behind before it loses frames
/// (about 5 s at 25 fps).
pub const RING: usize = 128;
/// A GOP longer than this (frames or bytes) is not kept: new viewers then wait for the next
/// keyframe instead.
pub const GOP_MAX_FRAMES: usize = 600;
pub const GOP_MAX_BYTES: usize = 24 << 20;
/// A feed without viewers stops after this long.
pub const LINGER: Duration = Duration::from_secs(10);
/// Most cameras with a feed at once.
const MAX_FEEDS: usize = 256;
/// Frames queued between the upstream reader and the feed's publisher.
const READ_QUEUE: usize = 64;

/// What a feed publishes.
#[derive(Clone, Debug)]
pub enum Item {
    Params(Arc<Params>),
    Frame(Frame),
    /// A new upstream (recorder restarted, camera moved): a new RTP time base; it starts with
    /// its parameters and a keyframe.
    Restart,
    /// Frames were lost before the feed (its reader fell behind): resume on a keyframe.
    Gap,
}

/// The latest GOP of a camera, from its last keyframe, and its parameters. Pure.
#[derive(Default, Debug)]
pub struct Gop {
    params: Option<Arc<Params>>,
    frames: Vec<Frame>,
    bytes: usize,
    /// The GOP grew past its bounds: not kept until the next keyframe.
    overflowed: bool,
}

impl Gop {
    /// New parameters; false when they are the ones already known (nothing to publish).
    pub fn params(&mut self, p: &Arc<Params>) -> bool {
        if self.params.as_deref() == Some(&**p) {
            return false;
        }
        self.params = Some(p.clone());
        true
    }

    pub fn frame(&mut self, f: &Frame) {
        if f.key {
            self.frames.clear();
            self.bytes = 0;
            self.overflowed = false;
        }
        if self.overflowed || (self.frames.is_empty() && !f.key) {
            return;
        }
        if self.frames.len() >= GOP_MAX_FRAMES || self.bytes + f.data.len() > GOP_MAX_BYTES {
            self.frames.clear();
            self.bytes = 0;
            self.overflowed = true;
        } else {
            self.bytes += f.data.len();
            self.frames.push(f.clone());
        }
    }

    /// A new upstream: its frames are on another RTP time base, so the cached ones are
    /// dropped (the parameters stay: the new upstream repeats them).
    pub fn restart(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.overflowed = false;
    }

    /// What a new viewer gets first: the parameters and the cached GOP (starting on its
    /// keyframe).
    pub fn backlog(&self) -> VecDeque<Item> {
        let mut b = VecDeque::with_capacity(self.frames.len() + 1);
        if let Some(p) = &self.params {
            b.push_back(Item::Params(p.clone()));
        }
        b.extend(self.frames.iter().cloned().map(Item::Frame));
        b
    }

    pub fn frames(&self) -> usize {
        self.frames.len()
    }
}

/// What the WHEP handler waits for before answering: the camera's codec, or a sign that
/// the upstream cannot be opened now.
#[derive(Clone, Default, Debug)]
struct Status {
    params: Option<Arc<Params>>,
    restarts: u64,
}

/// One camera's shared live frames.
pub struct Feed {
    gop: Mutex<Gop>,
    tx: broadcast::Sender<Item>,
    status: watch::Sender<Status>,
    /// Live [`FeedHandle`]s.
    holders: AtomicUsize,
}

impl Feed {
    /// A feed whose ring holds `ring` items.
    pub fn new(ring: usize) -> Self {
        Feed {
            gop: Mutex::new(Gop::default()),
            tx: broadcast::channel(ring.max(1)).0,
            status: watch::channel(Status::default()).0,
            holders: AtomicUsize::new(0),
        }
    }

    /// Publishes what the upstream reader read. Never waits.
    pub fn publish(&self, u: Upstreamed) {
        let Ok(mut g) = self.gop.lock() else { return };
        // Sent under the lock, so that a subscriber sees each item exactly once.
        match u {
            Upstreamed::Params(p) => {
                let p = Arc::new(p);
                if g.params(&p) {
                    self.status.send_modify(|s| s.params = Some(p.clone()));
                    let _ = self.tx.send(Item::Params(p));
                }
            }
            Upstreamed::Frame(f) => {
                g.frame(&f);
                let _ = self.tx.send(Item::Frame(f));
            }
            // The reader's own queue overflowed: the cached GOP has a hole.
            Upstreamed::Gap => {
                g.restart();
                let _ = self.tx.send(Item::Gap);
            }
            Upstreamed::Restart => {
                g.restart();
                self.status.send_modify(|s| s.restarts += 1);
                let _ = self.tx.send(Item::Restart);
            }
        }
    }

    /// A new viewer: the parameters and the cached GOP, then everything published after.
    pub fn subscribe(&self) -> Viewer {
        let g = self.gop.lock().unwrap_or_else(|e| e.into_inner());
        let backlog = g.backlog();
        let rx = self.tx.subscribe();
        Viewer {
            // Without a cached GOP the viewer waits for a keyframe.
            need_key: g.frames() == 0,
            backlog,
            rx,
            dropped: 0,
        }
    }

    /// The camera's parameters: at once if known, else when they come, or `None` when the
    /// upstream ended or failed first, or after `wait`.
    pub async fn params(&self, wait: Duration) -> Option<Arc<Params>> {
        let mut rx = self.status.subscribe();
        let restarts = rx.borrow().restarts;
        let r = tokio::time::timeout(
            wait,
            rx.wait_for(|s| s.params.is_some() || s.restarts > restarts),
        )
        .await;
        match r {
            Ok(Ok(s)) => s.params.clone(),
            _ => None,
        }
    }

    /// Viewers reading it now.
    pub fn viewers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// What a viewer reads next.
#[derive(Debug)]
pub enum Next {
    Params(Arc<Params>),
    Frame(Frame),
    /// Frames were lost (the viewer fell more than the ring behind): what follows starts on a
    /// keyframe.
    Gap,
    /// A new upstream: a new RTP time base, starting on a keyframe.
    Restart,
}

/// One viewer's position in a feed.
pub struct Viewer {
    backlog: VecDeque<Item>,
    rx: broadcast::Receiver<Item>,
    need_key: bool,
    /// Frames this viewer lost by falling behind (or skipped waiting for a keyframe).
    pub dropped: u64,
}

impl Viewer {
    /// The next item; `None` when the feed is gone.
    pub async fn next(&mut self) -> Option<Next> {
        if let Some(i) = self.backlog.pop_front() {
            return Some(self.deliver(i));
        }
        loop {
            match self.rx.recv().await {
                Ok(Item::Frame(f)) if self.need_key && !f.key => self.dropped += 1,
                Ok(i) => return Some(self.deliver(i)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.dropped += n;
                    self.need_key = true;
                    return Some(Next::Gap);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn deliver(&mut self, i: Item) -> Next {
        match i {
            Item::Params(p) => Next::Params(p),
            Item::Frame(f) => {
                self.need_key = false;
                Next::Frame(f)
            }
            Item::Restart => {
                self.need_key = true;
                Next::Restart
            }
            Item::Gap => {
                self.need_key = true;
                Next::Gap
            }
        }
    }
}

/// A hold on a camera's feed (a viewer, an LL-HLS window): the feed runs while one exists, and
/// [`LINGER`] after the last one is dropped.
pub struct FeedHandle {
    feed: Arc<Feed>,
}

impl FeedHandle {
    pub fn subscribe(&self) -> Viewer {
        self.feed.subscribe()
    }

    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }
}

impl Drop for FeedHandle {
    fn drop(&mut self) {
        self.feed.holders.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every camera's feed at this access point.
pub struct Feeds {
    feeds: Mutex<HashMap<CameraId, Arc<Feed>>>,
    /// How long a feed runs on without holders ([`LINGER`]).
    linger: Duration,
}

impl Feeds {
    pub fn new() -> Arc<Self> {
        Self::with_linger(LINGER)
    }

    pub fn with_linger(linger: Duration) -> Arc<Self> {
        Arc::new(Feeds {
            feeds: Mutex::default(),
            linger,
        })
    }

    /// Cameras with a running feed.
    pub fn len(&self) -> usize {
        self.feeds.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A hold on `cam`'s feed, started if needed (reading the frames `open` gives).
    pub fn hold(
        self: &Arc<Self>,
        cam: &CameraId,
        open: impl FnOnce() -> Opener,
    ) -> Result<FeedHandle, String> {
        let mut m = self
            .feeds
            .lock()
            .map_err(|_| "feed table poisoned".to_string())?;
        if let Some(f) = m.get(cam) {
            f.holders.fetch_add(1, Ordering::AcqRel);
            return Ok(FeedHandle { feed: f.clone() });
        }
        if m.len() >= MAX_FEEDS {
            return Err("too many cameras watched live".into());
        }
        let feed = Arc::new(Feed::new(RING));
        feed.holders.fetch_add(1, Ordering::AcqRel);
        m.insert(cam.clone(), feed.clone());
        info!(camera = %cam, "live feed started");
        tokio::spawn(self.clone().run(cam.clone(), feed.clone(), open()));
        Ok(FeedHandle { feed })
    }

    /// Reads the camera's frames (one upstream, reopened when it ends) into its feed until
    /// nobody held it for its linger time.
    async fn run(self: Arc<Self>, cam: CameraId, feed: Arc<Feed>, open: Opener) {
        let (tx, mut rx) = mpsc::channel(READ_QUEUE);
        let reader = tokio::spawn(crate::live::read_upstream(open, None, cam.to_string(), tx));
        let mut check = tokio::time::interval(
            (self.linger / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        );
        let mut unheld_since: Option<Instant> = None;
        let mut frames = 0u64;
        loop {
            tokio::select! {
                u = rx.recv() => {
                    let Some(u) = u else { break };
                    frames += u64::from(matches!(u, Upstreamed::Frame(_)));
                    feed.publish(u);
                }
                _ = check.tick() => {
                    let Ok(mut m) = self.feeds.lock() else { break };
                    // Decided under the table's lock, where holds are taken.
                    if feed.holders.load(Ordering::Acquire) > 0 {
                        unheld_since = None;
                    } else if unheld_since.get_or_insert_with(Instant::now).elapsed() >= self.linger {
                        if m.get(&cam).is_some_and(|x| Arc::ptr_eq(x, &feed)) {
                            m.remove(&cam);
                        }
                        break;
                    }
                }
            }
        }
        reader.abort();
        debug!(camera = %cam, frames, "live feed read");
        info!(camera = %cam, "live feed stopped (no viewer)");
    }
}

/// A feed as bytes of the recorders' wire format (`vigil_media::live`): parameters and the
/// cached GOP, then live frames, ending at the first gap or new upstream (the reader opens it
/// again and starts on a keyframe, with the new time base).
pub fn wire_stream(
    feed: FeedHandle,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> + Send {
    let viewer = feed.subscribe();
    futures::stream::unfold(Some((feed, viewer)), |st| async move {
        let (feed, mut v) = st?;
        let m = match v.next().await? {
            Next::Params(p) => Message::Params((*p).clone()),
            Next::Frame(f) => Message::Frame(f),
            Next::Gap | Next::Restart => return None,
        };
        Some((Ok(bytes::Bytes::from(m.encode())), Some((feed, v))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(key: bool, ts: i64, size: usize) -> Frame {
        Frame {
            key,
            ts,
            wall_ms: ts,
            data: Bytes::from(vec![0u8; size]),
        }
    }

    fn params(codec: &str) -> Params {
        Params {
            codec: codec.into(),
            extra: Bytes::from_static(b"\x01"),
        }
    }

    fn ts_of(n: Option<Next>) -> (bool, i64) {
        match n {
            Some(Next::Frame(f)) => (f.key, f.ts),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn gop_keeps_frames_from_the_last_keyframe() {
        let mut g = Gop::default();
        // Frames before any keyframe are not kept.
        g.frame(&frame(false, 0, 10));
        assert_eq!(g.frames(), 0);
        g.frame(&frame(true, 1, 10));
        g.frame(&frame(false, 2, 10));
        assert_eq!(g.frames(), 2);
        g.frame(&frame(true, 3, 10));
        g.frame(&frame(false, 4, 10));
        let ts: Vec<i64> = g
            .backlog()
            .into_iter()
            .filter_map(|i| match i {
                Item::Frame(f) => Some(f.ts),
                _ => None,
            })
            .collect();
        assert_eq!(ts, [3, 4]);
        // Parameters come first; the same ones again are not news.
        assert!(g.params(&Arc::new(params("avc1.64001f"))));
        assert!(!g.params(&Arc::new(params("avc1.64001f"))));
        assert!(matches!(g.backlog().front(), Some(Item::Params(_))));
        // A new upstream: other RTP times, the cache is dropped, the parameters stay.
        g.restart();
        assert_eq!(g.frames(), 0);
        assert_eq!(g.backlog().len(), 1);
    }

    #[test]
    fn an_oversized_gop_is_not_kept_until_the_next_keyframe() {
        let mut g = Gop::default();
        g.frame(&frame(true, 0, GOP_MAX_BYTES - 10));
        g.frame(&frame(false, 1, 100));
        assert_eq!(g.frames(), 0);
        g.frame(&frame(false, 2, 1));
        assert_eq!(g.frames(), 0);
        g.frame(&frame(true, 3, 1));
        assert_eq!(g.frames(), 1);
    }

    #[tokio::test]
    async fn a_new_viewer_starts_on_the_cached_keyframe() {
        let feed = Feed::new(16);
        feed.publish(Upstreamed::Params(params("avc1.64001f")));
        for (k, t) in [(true, 0), (false, 1), (false, 2)] {
            feed.publish(Upstreamed::Frame(frame(k, t, 10)));
        }
        let mut v = feed.subscribe();
        assert!(matches!(v.next().await, Some(Next::Params(_))));
        assert_eq!(ts_of(v.next().await), (true, 0));
        assert_eq!(ts_of(v.next().await), (false, 1));
        assert_eq!(ts_of(v.next().await), (false, 2));
        feed.publish(Upstreamed::Frame(frame(false, 3, 10)));
        assert_eq!(ts_of(v.next().await), (false, 3));
        assert_eq!(feed.viewers(), 1);
        // The codec is known at once.
        assert!(feed.params(Duration::ZERO).await.is_some());
    }

    #[tokio::test]
    async fn a_viewer_without_a_cached_gop_waits_for_a_keyframe() {
        let feed = Feed::new(16);
        feed.publish(Upstreamed::Frame(frame(false, 0, 10)));
        let mut v = feed.subscribe();
        feed.publish(Upstreamed::Frame(frame(false, 1, 10)));
        feed.publish(Upstreamed::Frame(frame(true, 2, 10)));
        assert_eq!(ts_of(v.next().await), (true, 2));
        assert_eq!(v.dropped, 1);
    }

    #[tokio::test]
    async fn a_slow_viewer_skips_to_the_next_keyframe_and_the_others_get_everything() {
        let feed = Feed::new(4);
        feed.publish(Upstreamed::Frame(frame(true, 0, 10)));
        let mut slow = feed.subscribe();
        let mut fast = feed.subscribe();
        assert_eq!(ts_of(slow.next().await), (true, 0));
        assert_eq!(ts_of(fast.next().await), (true, 0));
        // 10 deltas, a keyframe and two deltas: the slow viewer reads nothing meanwhile, the
        // fast one keeps up. Publishing never waits for the slow one.
        for t in 1..=13 {
            feed.publish(Upstreamed::Frame(frame(t == 11, t, 10)));
            assert_eq!(ts_of(fast.next().await), (t == 11, t));
        }
        // The slow viewer lost frames: a gap, then the keyframe, not a delta.
        assert!(matches!(slow.next().await, Some(Next::Gap)));
        assert_eq!(ts_of(slow.next().await), (true, 11));
        assert_eq!(ts_of(slow.next().await), (false, 12));
        assert!(slow.dropped >= 9, "dropped {}", slow.dropped);
        assert_eq!(fast.dropped, 0);
    }

    #[tokio::test]
    async fn a_restart_is_passed_on_and_the_next_viewer_waits_for_the_new_keyframe() {
        let feed = Feed::new(16);
        feed.publish(Upstreamed::Frame(frame(true, 0, 10)));
        let mut v = feed.subscribe();
        assert_eq!(ts_of(v.next().await), (true, 0));
        feed.publish(Upstreamed::Restart);
        feed.publish(Upstreamed::Frame(frame(false, 900, 10)));
        feed.publish(Upstreamed::Frame(frame(true, 901, 10)));
        assert!(matches!(v.next().await, Some(Next::Restart)));
        assert_eq!(ts_of(v.next().await), (true, 901));
        let mut late = feed.subscribe();
        assert_eq!(ts_of(late.next().await), (true, 901));
    }

    #[tokio::test]
    async fn waiting_for_the_codec_ends_when_the_upstream_fails() {
        let feed = Arc::new(Feed::new(16));
        let f = feed.clone();
        let waiter = tokio::spawn(async move { f.params(Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        feed.publish(Upstreamed::Restart);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("returned at the failure")
            .expect("task");
        assert!(got.is_none());
        assert!(feed.params(Duration::from_millis(10)).await.is_none());
    }

    #[tokio::test]
    async fn feeds_are_shared_per_camera_and_stop_after_the_last_holder() {
        let linger = Duration::from_millis(400);
        let feeds = Feeds::with_linger(linger);
        let opened = Arc::new(AtomicUsize::new(0));
        let o = opened.clone();
        let open: Opener = Arc::new(move || {
            o.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Err(crate::error::Error::Live("no recorder".into())) })
        });
        let cam = CameraId::new("site-a", "door").unwrap();
        let a = feeds.hold(&cam, || open.clone()).unwrap();
        let b = feeds
            .hold(&cam, || panic!("a second upstream for the same camera"))
            .unwrap();
        assert!(Arc::ptr_eq(a.feed(), b.feed()));
        assert_eq!(feeds.len(), 1);
        drop((a, b));
        tokio::time::sleep(linger / 4).await;
        assert_eq!(feeds.len(), 1, "stopped before its linger time");
        // Held again meanwhile: the same feed, and the linger time starts over.
        let c = feeds.hold(&cam, || panic!("restarted")).unwrap();
        tokio::time::sleep(linger * 2).await;
        assert_eq!(feeds.len(), 1, "stopped while held");
        drop(c);
        tokio::time::sleep(linger * 3).await;
        assert_eq!(feeds.len(), 0, "still running without holders");
        assert!(opened.load(Ordering::SeqCst) >= 1);
    }

    #[tokio::test]
    async fn the_wire_stream_starts_on_the_cached_gop_and_ends_at_a_restart() {
        use futures::StreamExt;
        use vigil_media::live::Decoder;
        let feeds = Feeds::new();
        let cam = CameraId::new("site-a", "door").unwrap();
        let open: Opener = Arc::new(|| Box::pin(std::future::pending()));
        let h = feeds.hold(&cam, || open).unwrap();
        let feed = h.feed().clone();
        feed.publish(Upstreamed::Params(params("avc1.64001f")));
        feed.publish(Upstreamed::Frame(frame(false, 0, 3)));
        feed.publish(Upstreamed::Frame(frame(true, 1, 3)));
        feed.publish(Upstreamed::Frame(frame(false, 2, 3)));
        let mut s = Box::pin(wire_stream(h));
        let mut dec = Decoder::default();
        let mut got = Vec::new();
        for _ in 0..3 {
            let Some(Ok(b)) = s.next().await else {
                panic!("ended early")
            };
            dec.push(&b);
            got.push(dec.next_message().unwrap().unwrap());
        }
        assert!(matches!(&got[0], Message::Params(p) if p.codec == "avc1.64001f"));
        assert!(matches!(&got[1], Message::Frame(f) if f.key && f.ts == 1));
        assert!(matches!(&got[2], Message::Frame(f) if !f.key && f.ts == 2));
        feed.publish(Upstreamed::Restart);
        assert!(s.next().await.is_none());
    }
}
