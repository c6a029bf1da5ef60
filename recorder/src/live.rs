//! The live tap: the recorder that records a camera offers its frames inside the cluster, so
//! that viewers never cost a second RTSP session on the camera.
//!
//! Each camera has a [`Feed`]: the camera task publishes every video access unit into it (a
//! reference-counted copy, no parsing), the feed keeps the current GOP so that a new viewer
//! starts on a keyframe at once, and fans frames out through a bounded broadcast ring.
//! `GET /live/{namespace}/{name}` (bearer token from `VIGIL_LIVE_TOKEN_FILE`, see
//! [`LiveHub::from_env`]) streams them in the framing of [`vigil_media::live`].
//!
//! Slow viewers cannot hurt recording or other viewers: publishing never waits; a viewer that
//! falls more than the ring behind loses frames and is resumed at the next keyframe
//! ([`Viewer`]), and one that keeps falling behind is disconnected. Memory per viewer is the
//! HTTP response's one pending chunk; the ring and the GOP are shared and bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use vigil_media::live::{CONTENT_TYPE, Frame, Message, Params};
use vigil_store::layout::CameraId;

/// Frames the broadcast ring holds: how far a viewer may fall behind before it loses frames
/// (about 5 s at 25 fps).
const RING: usize = 128;
/// A GOP longer than this (frames or bytes) is not kept: new viewers then wait for the next
/// keyframe instead.
const GOP_MAX_FRAMES: usize = 600;
const GOP_MAX_BYTES: usize = 24 << 20;
/// A viewer that fell behind this many times is disconnected.
const MAX_LAGS: u32 = 5;
/// A stream without a frame for this long ends (the camera moved or stopped): the access
/// point then looks for the recorder that has it now.
const IDLE: Duration = Duration::from_secs(8);

#[derive(Clone, Debug)]
pub enum Item {
    Params(Arc<Params>),
    Frame(Frame),
}

impl Item {
    fn encode(&self) -> Vec<u8> {
        match self {
            Item::Params(p) => Message::Params((**p).clone()).encode(),
            Item::Frame(f) => Message::Frame(f.clone()).encode(),
        }
    }
}

#[derive(Default)]
struct Gop {
    params: Option<Arc<Params>>,
    frames: Vec<Frame>,
    bytes: usize,
    /// The GOP grew past its bounds: not kept until the next keyframe.
    overflowed: bool,
}

/// One camera's live frames.
pub struct Feed {
    gop: Mutex<Gop>,
    tx: broadcast::Sender<Item>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            gop: Mutex::new(Gop::default()),
            tx: broadcast::channel(RING).0,
        }
    }
}

impl Feed {
    /// New decoder configuration (codec string and `avcC`/`hvcC`).
    pub fn params(&self, codec: &str, extra: &[u8]) {
        let p = Arc::new(Params {
            codec: codec.to_string(),
            extra: Bytes::copy_from_slice(extra),
        });
        let Ok(mut g) = self.gop.lock() else { return };
        if g.params.as_deref() == Some(&*p) {
            return;
        }
        g.params = Some(p.clone());
        let _ = self.tx.send(Item::Params(p));
    }

    /// One access unit (MP4 form: 4-byte NAL lengths). Never waits.
    pub fn frame(&self, ts: i64, key: bool, wall_ms: i64, data: &[u8]) {
        let f = Frame {
            key,
            ts,
            wall_ms,
            data: Bytes::copy_from_slice(data),
        };
        let Ok(mut g) = self.gop.lock() else { return };
        if key {
            g.frames.clear();
            g.bytes = 0;
            g.overflowed = false;
        }
        if !g.overflowed && (!g.frames.is_empty() || key) {
            if g.frames.len() >= GOP_MAX_FRAMES || g.bytes + f.data.len() > GOP_MAX_BYTES {
                g.frames.clear();
                g.bytes = 0;
                g.overflowed = true;
            } else {
                g.bytes += f.data.len();
                g.frames.push(f.clone());
            }
        }
        // Sent under the lock, so that a subscriber sees each frame exactly once.
        let _ = self.tx.send(Item::Frame(f));
    }

    /// A new viewer: the parameters and the current GOP (starting on its keyframe), then
    /// everything published after.
    pub fn subscribe(&self) -> Viewer {
        let g = self.gop.lock().unwrap_or_else(|e| e.into_inner());
        let mut backlog = Vec::with_capacity(g.frames.len() + 1);
        if let Some(p) = &g.params {
            backlog.push(Item::Params(p.clone()));
        }
        backlog.extend(g.frames.iter().cloned().map(Item::Frame));
        let rx = self.tx.subscribe();
        Viewer {
            backlog: backlog.into(),
            // Without a cached GOP the viewer waits for a keyframe.
            need_key: g.frames.is_empty(),
            rx,
            lags: 0,
            dropped: 0,
        }
    }

    pub fn viewers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// What a viewer gets next.
#[derive(Debug)]
pub enum Next {
    Item(Item),
    /// Fell behind too often: disconnect.
    TooSlow,
    /// The feed is gone.
    Closed,
}

/// One viewer's position in a feed.
pub struct Viewer {
    backlog: std::collections::VecDeque<Item>,
    rx: broadcast::Receiver<Item>,
    need_key: bool,
    lags: u32,
    /// Frames this viewer lost by falling behind.
    pub dropped: u64,
}

impl Viewer {
    pub async fn next(&mut self) -> Next {
        if let Some(i) = self.backlog.pop_front() {
            return Next::Item(i);
        }
        loop {
            match self.rx.recv().await {
                Ok(Item::Frame(f)) if self.need_key && !f.key => self.dropped += 1,
                Ok(i) => {
                    if matches!(&i, Item::Frame(_)) {
                        self.need_key = false;
                    }
                    return Next::Item(i);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.dropped += n;
                    self.lags += 1;
                    self.need_key = true;
                    if self.lags >= MAX_LAGS {
                        return Next::TooSlow;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return Next::Closed,
            }
        }
    }
}

/// Every camera's feed, and who may read them.
#[derive(Default)]
pub struct LiveHub {
    feeds: Mutex<HashMap<CameraId, Arc<Feed>>>,
    token: Option<String>,
}

impl LiveHub {
    /// The live endpoint is served only with a token: `VIGIL_LIVE_TOKEN_FILE` names a file
    /// holding it (a mounted Secret). Without it the endpoint answers 404.
    pub fn from_env() -> Self {
        let token = std::env::var_os("VIGIL_LIVE_TOKEN_FILE").and_then(|p| {
            match std::fs::read_to_string(&p) {
                Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                Ok(_) => {
                    warn!("VIGIL_LIVE_TOKEN_FILE is empty: live view disabled");
                    None
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The optional Secret is not there: live view is simply off.
                    info!("no live token (VIGIL_LIVE_TOKEN_FILE absent): live view off");
                    None
                }
                Err(e) => {
                    warn!(error = %e, "cannot read VIGIL_LIVE_TOKEN_FILE: live view disabled");
                    None
                }
            }
        });
        if token.is_some() {
            info!("live view enabled: GET /live/{{namespace}}/{{name}}");
        }
        LiveHub {
            feeds: Mutex::default(),
            token,
        }
    }

    /// Whether `/live` is served (a token was configured).
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    pub fn with_token(token: &str) -> Self {
        LiveHub {
            feeds: Mutex::default(),
            token: Some(token.to_string()),
        }
    }

    /// The feed of a camera (created on first use; kept while the process runs).
    pub fn feed(&self, cam: &CameraId) -> Arc<Feed> {
        let mut m = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(cam.clone()).or_default().clone()
    }

    fn existing(&self, cam: &CameraId) -> Option<Arc<Feed>> {
        let m = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        m.get(cam).cloned()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(want) = &self.token else {
            return false;
        };
        let got = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        constant_time_eq(got.as_bytes(), want.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The base URL this recorder's live tap is reached at from inside the cluster, published on its
/// Lease (Kubernetes mode): `explicit` (`VIGIL_LIVE_ADDRESS`) as given, else the pod's IP
/// (`POD_IP`, downward API) with the HTTP port, else the listen address itself unless it is a
/// wildcard (a recorder running as a process on loopback). `None`: nobody could reach it.
pub fn advertised_address(
    listen: std::net::SocketAddr,
    pod_ip: Option<&str>,
    explicit: Option<&str>,
) -> Option<String> {
    if let Some(e) = explicit.map(str::trim).filter(|e| !e.is_empty()) {
        return Some(e.trim_end_matches('/').to_string());
    }
    let ip = match pod_ip.and_then(|p| p.trim().parse::<std::net::IpAddr>().ok()) {
        Some(ip) => ip,
        None if !listen.ip().is_unspecified() => listen.ip(),
        None => return None,
    };
    Some(format!(
        "http://{}",
        std::net::SocketAddr::new(ip, listen.port())
    ))
}

/// `GET /live/{namespace}/{name}`.
pub async fn serve(
    State(hub): State<Arc<LiveHub>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if hub.token.is_none() {
        return (StatusCode::NOT_FOUND, "live view is not enabled\n").into_response();
    }
    if !hub.authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "bearer token required\n",
        )
            .into_response();
    }
    let Ok(cam) = CameraId::new(&ns, &name) else {
        return (StatusCode::BAD_REQUEST, "bad camera name\n").into_response();
    };
    let Some(feed) = hub.existing(&cam) else {
        return (StatusCode::NOT_FOUND, "camera not recorded here\n").into_response();
    };
    let viewer = feed.subscribe();
    debug!(camera = %cam, viewers = feed.viewers(), "live viewer");
    let stream = futures::stream::unfold((viewer, cam), |(mut v, cam)| async move {
        match tokio::time::timeout(IDLE, v.next()).await {
            Ok(Next::Item(i)) => Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(i.encode())),
                (v, cam),
            )),
            Ok(Next::TooSlow) => {
                warn!(camera = %cam, dropped = v.dropped, "live viewer too slow: disconnected");
                None
            }
            Ok(Next::Closed) | Err(_) => None,
        }
    });
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses() {
        let wild: std::net::SocketAddr = "0.0.0.0:9090".parse().unwrap();
        let lo: std::net::SocketAddr = "127.0.0.1:9191".parse().unwrap();
        assert_eq!(
            advertised_address(wild, Some("10.42.0.7"), None).as_deref(),
            Some("http://10.42.0.7:9090")
        );
        assert_eq!(
            advertised_address(wild, Some("fd00::7"), None).as_deref(),
            Some("http://[fd00::7]:9090")
        );
        assert_eq!(advertised_address(wild, None, None), None);
        assert_eq!(advertised_address(wild, Some("not-an-ip"), None), None);
        assert_eq!(
            advertised_address(lo, None, None).as_deref(),
            Some("http://127.0.0.1:9191")
        );
        assert_eq!(
            advertised_address(wild, Some("10.42.0.7"), Some("http://rec-0.rec:9090/")).as_deref(),
            Some("http://rec-0.rec:9090")
        );
    }

    fn frames(feed: &Feed, from: i64, n: i64, gop: i64) {
        for i in from..from + n {
            feed.frame(i * 3600, i % gop == 0, 0, &[0, 0, 0, 1, i as u8]);
        }
    }

    async fn take(v: &mut Viewer, n: usize) -> Vec<Item> {
        let mut out = Vec::new();
        for _ in 0..n {
            match v.next().await {
                Next::Item(i) => out.push(i),
                other => panic!("{other:?}"),
            }
        }
        out
    }

    fn frame(i: &Item) -> &Frame {
        match i {
            Item::Frame(f) => f,
            Item::Params(_) => panic!("params"),
        }
    }

    #[tokio::test]
    async fn a_new_viewer_starts_on_the_cached_keyframe() {
        let feed = Feed::default();
        feed.params("avc1.64001f", &[1, 2]);
        frames(&feed, 0, 13, 10); // keyframes at 0 and 10
        let mut v = feed.subscribe();
        let got = take(&mut v, 4).await;
        assert!(matches!(&got[0], Item::Params(p) if p.codec == "avc1.64001f"));
        let ts: Vec<i64> = got[1..].iter().map(|i| frame(i).ts / 3600).collect();
        assert_eq!(ts, [10, 11, 12]);
        assert!(frame(&got[1]).key);
        frames(&feed, 13, 1, 10);
        assert_eq!(frame(&take(&mut v, 1).await[0]).ts / 3600, 13);
    }

    #[tokio::test]
    async fn a_viewer_without_a_cached_gop_waits_for_a_keyframe() {
        let feed = Feed::default();
        frames(&feed, 1, 5, 10); // no keyframe yet
        let mut v = feed.subscribe();
        frames(&feed, 6, 6, 10); // 6..=11, keyframe at 10
        let f = frame(&take(&mut v, 1).await[0]).clone();
        assert_eq!((f.ts / 3600, f.key), (10, true));
        assert_eq!(v.dropped, 4);
    }

    #[tokio::test]
    async fn a_slow_viewer_drops_to_keyframes_then_is_disconnected() {
        let feed = Feed::default();
        frames(&feed, 0, 1, 25);
        let mut slow = feed.subscribe();
        let mut fast = feed.subscribe();
        assert!(frame(&take(&mut slow, 1).await[0]).key);
        assert!(frame(&take(&mut fast, 1).await[0]).key);
        // The slow viewer reads nothing while far more than the ring is published; the fast
        // one keeps up.
        for i in 1..(RING as i64 * 3) {
            frames(&feed, i, 1, 25);
            assert_eq!(frame(&take(&mut fast, 1).await[0]).ts / 3600, i);
        }
        let f = frame(&take(&mut slow, 1).await[0]).clone();
        assert!(f.key, "resumed on a keyframe: {f:?}");
        assert!(slow.dropped > 0);
        // Memory stays bounded however far behind: the ring and the GOP only.
        assert!(feed.gop.lock().unwrap().frames.len() <= 25);
        // Falling behind again and again ends the viewer.
        let mut ended = false;
        for round in 0..MAX_LAGS as i64 + 1 {
            frames(&feed, 1000 + round * 1000, RING as i64 * 2, 25);
            if matches!(slow.next().await, Next::TooSlow) {
                ended = true;
                break;
            }
        }
        assert!(ended, "a viewer that never keeps up is disconnected");
    }

    #[tokio::test]
    async fn an_oversized_gop_is_not_kept() {
        let feed = Feed::default();
        frames(&feed, 0, GOP_MAX_FRAMES as i64 + 5, 100_000);
        assert!(feed.gop.lock().unwrap().frames.is_empty());
        frames(&feed, 100_000, 2, 100_000);
        assert_eq!(feed.gop.lock().unwrap().frames.len(), 2);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let hub = LiveHub::with_token("s3cret");
        let mut h = HeaderMap::new();
        assert!(!hub.authorized(&h));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!hub.authorized(&h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(hub.authorized(&h));
        assert!(!LiveHub::default().authorized(&h));
    }
}
