//! The access point (`vigil-access serve`): the query and playback server. It reads the store directly (no
//! database): listings give the recorded intervals, stored segments are served as HLS and
//! concatenated into MP4 exports.
//!
//! ```text
//! GET /api/v1/cameras          ({"cameras": [...], "manualRecording": <Kubernetes mode>})
//! GET /api/v1/cameras/{ns}/{name}/recordings?start=&end=
//! GET /api/v1/cameras/{ns}/{name}/index.m3u8?start=[&end=]      (no end: EVENT, live edge)
//! GET /api/v1/cameras/{ns}/{name}/segments/{start}-{end}-{origin}/init.mp4
//! GET /api/v1/cameras/{ns}/{name}/segments/{start}-{end}-{origin}/media.m4s?base=
//! GET /api/v1/cameras/{ns}/{name}/export.mp4?start=&end=        (Range supported)
//! POST /api/v1/cameras/{ns}/{name}/whep    (SDP offer → answer: live over WebRTC, `live.rs`)
//! DELETE /api/v1/live/sessions/{id}
//! GET /api/v1/cameras/{ns}/{name}/llhls/{index.m3u8,init-N.mp4,M.mp4,M.P.mp4}  (LL-HLS live, `llhls.rs`)
//! GET|POST|DELETE /api/v1/cameras/{ns}/{name}/manual-recording   (manual recording, `triggers.rs`)
//! POST /api/v1/cameras/{ns}/{name}/events   (an event from another system, `triggers.rs`)
//! GET / (recordings page), /live.html (live grid), /camera.html?camera= (a camera: live beside
//!     its timeline), /healthz, /readyz, /metrics
//! ```
//!
//! Times are Unix milliseconds or RFC 3339.

pub mod auth;
pub mod error;
pub mod export;
pub mod fanout;
pub mod federation;
pub mod hls;
pub mod icetcp;
pub mod live;
pub mod llhls;
pub mod triggers;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::Uri;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::error::{Error, Result};
use auth::Authorizer;
use vigil_config::{FileConfig, Overrides};
use vigil_media::fmp4;
use vigil_store::catalog::Catalog;
use vigil_store::error::chain;
use vigil_store::events::EventType;
use vigil_store::intervals::Interval;
use vigil_store::layout::{CameraId, Origin, SegmentKey};
use vigil_store::playlist;
use vigil_store::pool_store as pool;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Storage from a recorder config file (its `storage:` section; cameras are ignored:
    /// the store's directories are the camera list).
    #[arg(long, conflicts_with = "pool", required_unless_present = "pool")]
    pub config: Option<PathBuf>,
    /// Kubernetes mode: storage from this RecorderPool (`namespace/name`) and its credentials
    /// Secret, cameras from the API.
    #[arg(long)]
    pub pool: Option<String>,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Serve without authentication (local use). Otherwise every API request needs a bearer
    /// token that the API server accepts (TokenReview) and that may `get cameras/recordings`
    /// of the camera (SubjectAccessReview).
    #[arg(long)]
    pub no_auth: bool,
    /// Longest time range one request may cover.
    #[arg(long, default_value_t = 24)]
    pub max_range_hours: u32,
    /// `index.m3u8` without `start` follows the live edge from this many seconds ago.
    #[arg(long, default_value_t = 300)]
    pub live_window_seconds: u32,
    #[command(flatten)]
    pub federation: federation::Args,
    /// Live view in file mode: the recorder's HTTP address (the one recorder of every camera),
    /// e.g. `http://127.0.0.1:9090`. In Kubernetes mode (`--pool`) the recorder holding each
    /// camera is found by itself (the Camera's `vigil.dev/recorder` label, that recorder's
    /// Lease annotation `vigil.dev/live-address`).
    #[arg(long, requires = "live_token_file")]
    pub live_recorder: Option<url::Url>,
    /// File holding the bearer token of the recorders' `/live` endpoint (their
    /// `VIGIL_LIVE_TOKEN_FILE`). Live view is on when it is given (with `--pool` or
    /// `--live-recorder`).
    #[arg(long, env = "VIGIL_LIVE_TOKEN_FILE")]
    pub live_token_file: Option<PathBuf>,
    /// The one UDP port of WebRTC (ICE-lite) for every viewer.
    #[arg(long, default_value = "0.0.0.0:8189")]
    pub webrtc_udp: SocketAddr,
    /// The address browsers reach the UDP port at (the candidate in the SDP answer); needed
    /// when `--webrtc-udp` listens on every address.
    #[arg(long, env = "VIGIL_WEBRTC_CANDIDATE_IP")]
    pub webrtc_candidate_ip: Option<std::net::IpAddr>,
    /// ICE-TCP fallback on the HTTP port (`--listen`): answers also carry a passive TCP
    /// candidate there, and connections to it are told apart from HTTP by their first bytes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub webrtc_ice_tcp: bool,
    /// The port browsers reach the HTTP port at, put in the ICE-TCP candidate (a Service or
    /// LoadBalancer port in front of `--listen`); default: the port of `--listen`.
    #[arg(long, env = "VIGIL_WEBRTC_TCP_PORT")]
    pub webrtc_tcp_port: Option<u16>,
    /// Leave the UDP candidate out of answers, so browsers must use ICE-TCP (for tests).
    #[arg(long, hide = true)]
    pub webrtc_tcp_only: bool,
}

#[derive(Clone)]
enum CameraSource {
    Store,
    Pool {
        client: kube::Client,
        namespace: String,
        name: String,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    code: String,
}

struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    export_bytes: Counter,
    media_bytes: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("vigil_playback");
        let m = Metrics {
            requests: Family::default(),
            export_bytes: Counter::default(),
            media_bytes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "HTTP requests by route and status",
            m.requests.clone(),
        );
        registry.register(
            "export_planned_bytes",
            "Bytes of export responses started (Content-Length)",
            m.export_bytes.clone(),
        );
        registry.register(
            "media_bytes",
            "Bytes of HLS init and media segments served",
            m.media_bytes.clone(),
        );
        Metrics { registry, ..m }
    }
}

struct Inner {
    catalog: Catalog,
    cameras: CameraSource,
    auth: Option<Authorizer>,
    max_range_ms: i64,
    live_window_ms: i64,
    metrics: Metrics,
    camera_cache: Mutex<Option<(Instant, Vec<CameraId>)>>,
    ready: AtomicBool,
    federation: Option<federation::Federation>,
    /// This domain's recorders' live frames (for WHEP viewers and for a parent's tunnelled
    /// `live.frames` requests).
    live: Option<live::Upstream>,
    webrtc: Option<Arc<live::WebRtc>>,
    writes: triggers::RateLimit,
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// An API error: status and a message for the JSON body (never credentials or internals).
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.0,
            axum::Json(json!({"error": self.1, "status": self.0.as_u16()})),
        )
            .into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

impl From<vigil_store::Error> for ApiError {
    fn from(e: vigil_store::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<vigil_media::Error> for ApiError {
    fn from(e: vigil_media::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        warn!(error = %chain(&e), "request failed");
        match e {
            Error::Store(object_store::Error::NotFound { .. }) => {
                ApiError(StatusCode::NOT_FOUND, "no such recording".into())
            }
            Error::Catalog(vigil_store::Error::Store(object_store::Error::NotFound { .. })) => {
                ApiError(StatusCode::NOT_FOUND, "no such recording".into())
            }
            Error::Store(_) | Error::Catalog(vigil_store::Error::Store(_)) => {
                ApiError(StatusCode::BAD_GATEWAY, "object store error".into())
            }
            Error::Kube(_) => ApiError(StatusCode::BAD_GATEWAY, "Kubernetes API error".into()),
            e @ Error::CrdOutdated(_) => ApiError(StatusCode::BAD_GATEWAY, e.to_string()),
            _ => ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
        }
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

/// Unix milliseconds or RFC 3339.
pub fn parse_time(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("time {s:?} is out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("time {s:?} is neither Unix milliseconds nor RFC 3339"))
}

/// Validates a requested window: `end` after `start`, not longer than `max_ms`.
pub fn window(start: i64, end: i64, max_ms: i64) -> std::result::Result<Interval, String> {
    if end <= start {
        return Err(format!("end ({end}) must be after start ({start})"));
    }
    if end - start > max_ms {
        return Err(format!(
            "range of {} s is longer than the maximum of {} s",
            (end - start) / 1000,
            max_ms / 1000
        ));
    }
    if start < 0 {
        return Err("start is before 1970".into());
    }
    Ok(Interval::new(start, end))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

struct RangeQuery {
    start: Option<String>,
    end: Option<String>,
}

/// Query parameters (axum's `Query` extractor needs a feature the workspace does not enable).
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn range_query(uri: &Uri) -> RangeQuery {
    RangeQuery {
        start: query_param(uri, "start").filter(|s| !s.is_empty()),
        end: query_param(uri, "end").filter(|s| !s.is_empty()),
    }
}

impl AppState {
    async fn known_cameras(&self) -> Result<Vec<CameraId>> {
        let mut cache = self.0.camera_cache.lock().await;
        if let Some((t, c)) = cache.as_ref()
            && t.elapsed() < Duration::from_secs(10)
        {
            return Ok(c.clone());
        }
        let cams = match &self.0.cameras {
            CameraSource::Store => self.0.catalog.cameras().await?,
            CameraSource::Pool {
                client,
                namespace,
                name,
            } => pool::cameras(client, namespace, name)
                .await?
                .into_iter()
                .map(|(c, _)| c)
                .collect(),
        };
        *cache = Some((Instant::now(), cams.clone()));
        Ok(cams)
    }

    async fn user(&self, headers: &HeaderMap) -> ApiResult<Option<auth::User>> {
        let Some(a) = &self.0.auth else {
            return Ok(None);
        };
        let token = auth::bearer(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "bearer token required".into()))?;
        match a.authenticate(token).await? {
            Some(u) => Ok(Some(u)),
            None => Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "token not accepted".into(),
            )),
        }
    }

    /// Authenticates, checks the camera exists, authorises. Unknown and forbidden cameras
    /// are told apart only for users who may see the camera list anyway (404 after auth).
    async fn camera(&self, headers: &HeaderMap, ns: &str, name: &str) -> ApiResult<CameraId> {
        self.camera_for(headers, ns, name, auth::Permission::Recordings)
            .await
    }

    async fn camera_for(
        &self,
        headers: &HeaderMap,
        ns: &str,
        name: &str,
        what: auth::Permission,
    ) -> ApiResult<CameraId> {
        let user = self.user(headers).await?;
        let id = CameraId::new(ns, name).map_err(|e| bad(e.to_string()))?;
        if let (Some(a), Some(u)) = (&self.0.auth, &user)
            && !a.allowed_to(u, &id, what).await?
        {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("not allowed to get cameras/{} of {id}", what.subresource()),
            ));
        }
        if !self.known_cameras().await?.contains(&id) {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown camera {id}"),
            ));
        }
        Ok(id)
    }

    fn window(&self, q: &RangeQuery, default_len_ms: i64) -> ApiResult<Interval> {
        let end = match &q.end {
            Some(e) => parse_time(e).map_err(bad)?,
            None => now_ms(),
        };
        let start = match &q.start {
            Some(s) => parse_time(s).map_err(bad)?,
            None => end - default_len_ms,
        };
        window(start, end, self.0.max_range_ms).map_err(bad)
    }

    fn count(&self, route: &str, code: StatusCode) {
        self.0
            .metrics
            .requests
            .get_or_create(&RouteLabels {
                route: route.into(),
                code: code.as_u16().to_string(),
            })
            .inc();
    }
}

fn counted(s: &AppState, route: &str, r: ApiResult<Response>) -> Response {
    let resp = r.unwrap_or_else(|e| e.into_response());
    s.count(route, resp.status());
    resp
}

async fn list_cameras(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let user = s.user(&headers).await?;
        let mut out = Vec::new();
        for c in s.known_cameras().await? {
            if let (Some(a), Some(u)) = (&s.0.auth, &user)
                && !a.allowed(u, &c).await?
            {
                continue;
            }
            out.push(json!({"namespace": c.namespace, "name": c.name}));
        }
        if let Some(f) = &s.0.federation {
            out.extend(f.remote_cameras(user.as_ref()).await?);
        }
        // Whether manual recording exists here (Kubernetes mode), so that the page does not
        // ask for it where it would be refused with 501.
        let manual = matches!(s.0.cameras, CameraSource::Pool { .. });
        Ok(axum::Json(json!({"cameras": out, "manualRecording": manual})).into_response())
    }
    .await;
    counted(&s, "cameras", r)
}

async fn recordings(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = range_query(&uri);
    let r = async {
        let cam = s.camera(&headers, &ns, &name).await?;
        let w = s.window(&q, 24 * 3_600_000)?;
        let segs = s.0.catalog.segments(&cam, w).await?;
        let cov = playlist::coverage(&segs, w);
        let bytes: u64 = segs.iter().map(|(_, b)| b).sum();
        let count = |o| segs.iter().filter(|(k, _)| k.origin == o).count();
        Ok(axum::Json(json!({
            "camera": {"namespace": cam.namespace, "name": cam.name},
            "startMs": w.start,
            "endMs": w.end,
            "live": cov.live,
            "backfill": cov.backfill,
            "recorded": cov.recorded,
            "holes": cov.holes,
            "recordedMs": cov.recorded_ms,
            "bytes": bytes,
            "segments": {"live": count(Origin::Live), "backfill": count(Origin::Backfill)},
        }))
        .into_response())
    }
    .await;
    counted(&s, "recordings", r)
}

/// Most events one query returns (the earliest); `truncated` says when there were more.
const MAX_EVENTS: usize = 10_000;

async fn events(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = range_query(&uri);
    let kind = query_param(&uri, "type").filter(|t| !t.is_empty());
    let r = async {
        let cam = s.camera(&headers, &ns, &name).await?;
        let w = s.window(&q, 24 * 3_600_000)?;
        let kind = kind
            .map(|t| t.parse::<EventType>())
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let store = s.0.catalog.store.clone();
        let mut items = vigil_store::events::query(
            store.as_ref(),
            &s.0.catalog.prefix,
            &cam,
            w.start,
            w.end,
            kind,
            MAX_EVENTS + 1,
        )
        .await?;
        let truncated = items.len() > MAX_EVENTS;
        items.truncate(MAX_EVENTS);
        Ok(axum::Json(json!({
            "camera": {"namespace": cam.namespace, "name": cam.name},
            "startMs": w.start,
            "endMs": w.end,
            "events": items,
            "truncated": truncated,
        }))
        .into_response())
    }
    .await;
    counted(&s, "events", r)
}

async fn playlist(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = range_query(&uri);
    let r = async {
        let cam = s.camera(&headers, &ns, &name).await?;
        if q.start.is_none() && q.end.is_none() {
            // A live playlist must keep its first segment (media sequence 0) across reloads:
            // pin the start once by redirecting.
            let start = now_ms() - s.0.live_window_ms;
            return Ok((
                StatusCode::FOUND,
                [(header::LOCATION, format!("index.m3u8?start={start}"))],
            )
                .into_response());
        }
        let kind = if q.end.is_some() {
            hls::Kind::Vod
        } else {
            hls::Kind::Event
        };
        let w = s.window(&q, s.0.live_window_ms)?;
        let segs = s.0.catalog.segments(&cam, w).await?;
        let (runs, _) = playlist::playlist(segs, w);
        let base = runs
            .first()
            .and_then(|r| r.items.first())
            .map(|(k, _)| k.start_ms)
            .unwrap_or(w.start);
        if runs.is_empty() && kind == hls::Kind::Vod {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "no footage in this range".into(),
            ));
        }
        Ok((
            [
                (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            hls::playlist(&runs, kind, base),
        )
            .into_response())
    }
    .await;
    counted(&s, "playlist", r)
}

fn segment_key(cam: &CameraId, seg: &str) -> ApiResult<SegmentKey> {
    let bad_seg = || bad(format!("segment {seg:?} is not <start>-<end>-<origin>"));
    let mut it = seg.splitn(3, '-');
    let (Some(a), Some(b), Some(o)) = (it.next(), it.next(), it.next()) else {
        return Err(bad_seg());
    };
    let (a, b): (i64, i64) = (
        a.parse().map_err(|_| bad_seg())?,
        b.parse().map_err(|_| bad_seg())?,
    );
    let o: Origin = o.parse().map_err(|_| bad_seg())?;
    SegmentKey::new(cam.clone(), a, b, o).map_err(|_| bad_seg())
}

/// The init part of a stored segment and its track timescales. Reads the head of the object
/// (the init is about a kilobyte), the whole object only if the init is unusually large.
async fn read_init(
    s: &AppState,
    key: &SegmentKey,
) -> ApiResult<(Bytes, std::collections::BTreeMap<u32, u32>)> {
    let path = s.0.catalog.path(key);
    let mut head =
        s.0.catalog
            .store
            .get_opts(
                &path,
                GetOptions {
                    range: Some(GetRange::Bounded(0..65_536)),
                    ..Default::default()
                },
            )
            .await
            .map_err(Error::from)?
            .bytes()
            .await
            .map_err(Error::from)?;
    let init_len = |d: &[u8]| -> Option<usize> {
        let mut pos = 0;
        while let Some((fourcc, _, len)) = fmp4::box_header(&d[pos..]) {
            if &fourcc == b"moof" {
                return Some(pos);
            }
            pos += usize::try_from(len).ok()?;
            if len == 0 || pos > d.len() {
                return None;
            }
        }
        None
    };
    let n = match init_len(&head) {
        Some(n) => n,
        None => {
            head =
                s.0.catalog
                    .store
                    .get(&path)
                    .await
                    .map_err(Error::from)?
                    .bytes()
                    .await
                    .map_err(Error::from)?;
            init_len(&head).unwrap_or(head.len())
        }
    };
    let init = head.slice(..n);
    let ts = fmp4::timescales(&init)?;
    Ok((init, ts))
}

async fn init_segment(
    State(s): State<AppState>,
    UrlPath((ns, name, seg)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let cam = s.camera(&headers, &ns, &name).await?;
        let key = segment_key(&cam, &seg)?;
        let (init, _) = read_init(&s, &key).await?;
        s.0.metrics.media_bytes.inc_by(init.len() as u64);
        Ok((
            [
                (header::CONTENT_TYPE, "video/mp4"),
                (header::CACHE_CONTROL, "max-age=86400"),
            ],
            init,
        )
            .into_response())
    }
    .await;
    counted(&s, "init", r)
}

async fn media_segment(
    State(s): State<AppState>,
    UrlPath((ns, name, seg)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let cam = s.camera(&headers, &ns, &name).await?;
        let key = segment_key(&cam, &seg)?;
        let (init, ts) = read_init(&s, &key).await?;
        let base = query_param(&uri, "base")
            .map(|b| {
                b.parse::<i64>()
                    .map_err(|_| bad("base must be Unix milliseconds"))
            })
            .transpose()?
            .unwrap_or(key.start_ms);
        let shifts: export::Shifts = ts
            .iter()
            .map(|(&id, &t)| (id, fmp4::ms_to_ticks(key.start_ms - base, t)))
            .collect();
        // Buffered: the whole segment is needed to fit its samples to its key span (a few MB).
        let g =
            s.0.catalog
                .store
                .get_opts(
                    &s.0.catalog.path(&key),
                    GetOptions {
                        range: Some(GetRange::Offset(init.len() as u64)),
                        ..Default::default()
                    },
                )
                .await
                .map_err(Error::from)?;
        let mut media = g.bytes().await.map_err(Error::from)?.to_vec();
        let start: std::collections::BTreeMap<u32, u64> = shifts
            .iter()
            .map(|(&id, &sh)| (id, sh.max(0) as u64))
            .collect();
        let span: std::collections::BTreeMap<u32, u64> = ts
            .iter()
            .map(|(&id, &t)| {
                let ticks = fmp4::ms_to_ticks(key.end_ms - key.start_ms, t);
                (id, ticks.max(0) as u64)
            })
            .collect();
        fmp4::retime(&mut media, &start, &span)?;
        s.0.metrics.media_bytes.inc_by(media.len() as u64);
        Ok((
            [
                (header::CONTENT_TYPE, "video/iso.segment"),
                (header::CACHE_CONTROL, "max-age=86400"),
            ],
            media,
        )
            .into_response())
    }
    .await;
    counted(&s, "media", r)
}

fn holes_header(holes: &[Interval]) -> String {
    holes
        .iter()
        .map(|h| format!("{}-{}", h.start, h.end))
        .collect::<Vec<_>>()
        .join(",")
}

async fn export_mp4(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let q = range_query(&uri);
    let r = async {
        let cam = s.camera(&headers, &ns, &name).await?;
        if q.start.is_none() || q.end.is_none() {
            return Err(bad("export needs start and end"));
        }
        let w = s.window(&q, 0)?;
        let Some(plan) = export::plan(&s.0.catalog, &cam, w).await? else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "no footage in this range".into(),
            ));
        };
        let total = plan.total;
        let range = match export::parse_range(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            total,
        ) {
            Ok(r) => r,
            Err(()) => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{total}"))],
                )
                    .into_response());
            }
        };
        info!(camera = %cam, start = plan.start_ms, end = plan.end_ms, segments = plan.segments,
              bytes = total, holes = plan.holes.len(), "export");
        let mut h = vec![
            (header::CONTENT_TYPE, "video/mp4".to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}-{}-{}.mp4\"",
                    cam.name, plan.start_ms, plan.end_ms
                ),
            ),
            (
                header::HeaderName::from_static("vigil-holes"),
                holes_header(&plan.holes),
            ),
            (
                header::HeaderName::from_static("vigil-start-ms"),
                plan.start_ms.to_string(),
            ),
            (
                header::HeaderName::from_static("vigil-end-ms"),
                plan.end_ms.to_string(),
            ),
        ];
        let (status, r) = match range {
            Some(r) => {
                h.push((
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{total}", r.start, r.end - 1),
                ));
                (StatusCode::PARTIAL_CONTENT, r)
            }
            None => (StatusCode::OK, 0..total),
        };
        h.push((header::CONTENT_LENGTH, (r.end - r.start).to_string()));
        s.0.metrics.export_bytes.inc_by(r.end - r.start);
        let mut resp = Response::builder().status(status);
        for (k, v) in h {
            resp = resp.header(k, v);
        }
        let rx = export::stream(s.0.catalog.store.clone(), plan, r);
        resp.body(Body::from_stream(rx))
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }
    .await;
    counted(&s, "export", r)
}

/// A remote camera of a child domain (`GET /api/v1/domains/{dns}/{domain}/cameras/{ns}/{name}/
/// {rest}`, `rest` as for a local camera: `index.m3u8`, `segments/...`, `recordings`,
/// `events`, `export.mp4`), served through the child's tunnel (docs/cascade.md).
async fn remote_camera(
    State(s): State<AppState>,
    UrlPath((dns, domain, ns, name, rest)): UrlPath<(String, String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let user = s.user(&headers).await?;
        let f =
            s.0.federation
                .as_ref()
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no child domains here".into()))?;
        let cam = federation::parent::RemoteRequest {
            ns: &ns,
            name: &name,
            rest: &rest,
            query: uri.query(),
        };
        f.proxy(user.as_ref(), &dns, &domain, cam)
            .await
            .map_err(|(code, msg)| ApiError(code, msg))
    }
    .await;
    counted(&s, "remote", r)
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &s.0.metrics.registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `POST .../whep`: a WHEP offer (`application/sdp`) for the camera's live picture; answers
/// 201 with the SDP answer and the session's address in `Location`.
async fn whep(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let cam = s
            .camera_for(&headers, &ns, &name, auth::Permission::Live)
            .await?;
        let (Some(rtc), Some(up)) = (&s.0.webrtc, &s.0.live) else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                "live view is not configured (--live-token-file)".into(),
            ));
        };
        let offer = sdp_offer(&body)?;
        // The camera's shared feed (one upstream per camera at this access point).
        let feed = up
            .hold(&cam)
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        // WebRTC passes H.264 only: an H.265 camera is refused at once (the page plays it over
        // LL-HLS). Known at once when the feed runs; else when its upstream first answers (or
        // fails: not reachable now, the session reads the feed when it comes back).
        if let Some(p) = feed.feed().params(live::CODEC_PEEK).await
            && !p.is_h264()
        {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("camera {cam} sends {}: WebRTC passes H.264 only; use LL-HLS (llhls/index.m3u8)", p.codec),
            ));
        }
        whep_answer(rtc.offer(cam.to_string(), live::Source::Shared(feed), offer))
    }
    .await;
    counted(&s, "whep", r)
}

/// The body of a WHEP request: an SDP offer of at most 64 KiB.
fn sdp_offer(body: &Bytes) -> ApiResult<&str> {
    if body.len() > 64 * 1024 {
        return Err(bad("SDP offer too large"));
    }
    std::str::from_utf8(body).map_err(|_| bad("SDP offer is not UTF-8"))
}

/// 201 with the SDP answer and the session's address, or why not.
fn whep_answer(r: Result<(String, String)>) -> ApiResult<Response> {
    let (answer, id) = r.map_err(|e| match e {
        Error::BadRequest(m) => bad(m),
        Error::Live(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m),
        e => e.into(),
    })?;
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, format!("/api/v1/live/sessions/{id}")),
        ],
        answer,
    )
        .into_response())
}

/// `POST /api/v1/domains/{dns}/{domain}/cameras/{ns}/{name}/whep`: live view of a child
/// domain's camera. The WebRTC session is this access point's; the frames come through the
/// child's tunnel (`live.frames`, one or more hops), opened again if the tunnel drops.
async fn remote_whep(
    State(s): State<AppState>,
    UrlPath((dns, domain, ns, name, rest)): UrlPath<(String, String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        if rest != "whep" {
            return Err(ApiError(StatusCode::METHOD_NOT_ALLOWED, "only GET".into()));
        }
        let user = s.user(&headers).await?;
        let f =
            s.0.federation
                .as_ref()
                .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "no child domains here".into()))?;
        let rtc = s.0.webrtc.as_ref().ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "live view is not configured (--webrtc-udp, --webrtc-candidate-ip)".into(),
            )
        })?;
        let offer = sdp_offer(&body)?;
        let (open, first) = f
            .remote_live(user.as_ref(), &dns, &domain, &ns, &name)
            .await
            .map_err(|(code, msg)| ApiError(code, msg))?;
        let label = format!("{dns}/{domain}:{ns}/{name}");
        // Per viewer: every opening is authorized for this user on every domain on the way.
        let source = live::Source::Own {
            open,
            first: Some(first),
        };
        whep_answer(rtc.offer(label, source, offer))
    }
    .await;
    counted(&s, "whep", r)
}

/// `GET .../live.frames`: the camera's live frames in the recorders' wire format
/// (`vigil_media::live`), from its shared feed (parameters and the cached GOP first); the
/// response ends when the feed's upstream changes (the camera moved, the recorder restarted)
/// or this reader fell behind, and the parent opens it again. What a parent domain's access point reads through the tunnel to serve its own
/// viewers (the same `live` permission as WHEP).
async fn live_frames(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let cam = s
            .camera_for(&headers, &ns, &name, auth::Permission::Live)
            .await?;
        let up = s.0.live.as_ref().ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "live view is not configured (--live-token-file)".into(),
            )
        })?;
        // From the camera's shared feed: the parent's viewers cost this domain's recorder
        // nothing more than one upstream per camera.
        let feed = up
            .hold(&cam)
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        if feed.feed().params(live::CODEC_PEEK).await.is_none() {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no live frames from the recorder of {cam} now"),
            ));
        }
        Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            axum::body::Body::from_stream(fanout::wire_stream(feed)),
        )
            .into_response())
    }
    .await;
    counted(&s, "live-frames", r)
}

/// `DELETE /api/v1/live/sessions/{id}`: ends a live session (the id is unguessable: it holds
/// the session's ICE user name fragment).
async fn whep_delete(
    State(s): State<AppState>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let r = async {
        s.user(&headers).await?;
        match &s.0.webrtc {
            Some(rtc) if rtc.close(&id) => Ok(StatusCode::OK.into_response()),
            _ => Err(ApiError(StatusCode::NOT_FOUND, "no such session".into())),
        }
    }
    .await;
    counted(&s, "whep", r)
}

/// The Camera API of a pool-mode access point (manual recording and posted events write to
/// the Camera object; a file-mode access point has none).
fn camera_api(s: &AppState, cam: &CameraId) -> ApiResult<kube::Api<vigil_api::Camera>> {
    match &s.0.cameras {
        CameraSource::Pool { client, .. } => {
            Ok(kube::Api::namespaced(client.clone(), &cam.namespace))
        }
        CameraSource::Store => Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            "manual recording and events need Kubernetes mode (--pool)".into(),
        )),
    }
}

fn rate_limited(s: &AppState, cam: &CameraId) -> ApiResult<()> {
    if s.0.writes.allow(cam, Instant::now()) {
        return Ok(());
    }
    Err(ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "at most one write per camera per {} s",
            triggers::MIN_WRITE_INTERVAL.as_secs()
        ),
    ))
}

fn user_name(u: &Option<auth::User>) -> String {
    u.as_ref()
        .map_or_else(|| "anonymous".to_string(), |u| u.name.clone())
}

/// `GET|POST|DELETE .../manual-recording`.
async fn manual_recording(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    method: axum::http::Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let what = if method == axum::http::Method::GET {
            auth::Permission::Recordings
        } else {
            auth::Permission::ManualRecording
        };
        let cam = s.camera_for(&headers, &ns, &name, what).await?;
        let api = camera_api(&s, &cam)?;
        let now = chrono::Utc::now();
        let window = if method == axum::http::Method::GET {
            let c = api.get(&cam.name).await.map_err(Error::from)?;
            c.spec.recording.manual.filter(|w| w.end > now)
        } else {
            rate_limited(&s, &cam)?;
            let user = user_name(&s.user(&headers).await?);
            let field = triggers::Field::Manual;
            let out = if method == axum::http::Method::POST {
                let d = triggers::manual_duration(query_param(&uri, "durationSeconds").as_deref())
                    .map_err(bad)?;
                triggers::update(&api, &cam.name, field, |c| {
                    Some(triggers::start_manual(field.of(c), now, d, &user))
                })
                .await
            } else {
                triggers::update(&api, &cam.name, field, |c| {
                    triggers::stop_manual(field.of(c), now)
                })
                .await
            };
            let Some((_, w)) = out? else {
                return Err(ApiError(
                    StatusCode::CONFLICT,
                    "no manual recording in progress".into(),
                ));
            };
            info!(camera = %cam, user = %user, start = w.start.timestamp_millis(),
                  end = w.end.timestamp_millis(), stop = (method == axum::http::Method::DELETE),
                  "manual recording");
            Some(w)
        };
        Ok(axum::Json(json!({
            "camera": {"namespace": cam.namespace, "name": cam.name},
            "manual": window.as_ref().map(triggers::window_json),
            "active": window.as_ref().is_some_and(|w| w.covers(now)),
        }))
        .into_response())
    }
    .await;
    counted(&s, "manual-recording", r)
}

/// `POST .../events`: an event from another system (analytics, access control).
async fn post_event(
    State(s): State<AppState>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = async {
        let cam = s
            .camera_for(&headers, &ns, &name, auth::Permission::PostEvents)
            .await?;
        let (d, source) = triggers::PostedEvent::parse(&body).map_err(bad)?;
        let api = camera_api(&s, &cam)?;
        rate_limited(&s, &cam)?;
        let now = chrono::Utc::now();
        let field = triggers::Field::ExternalEvent;
        let (c, w) = triggers::update(&api, &cam.name, field, |c| {
            Some(triggers::post_event(field.of(c), now, d, source.as_deref()))
        })
        .await?
        .ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "not written".into()))?;
        info!(camera = %cam, source = ?source, start = w.start.timestamp_millis(),
              end = w.end.timestamp_millis(), "external event");
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "camera": {"namespace": cam.namespace, "name": cam.name},
                "atMs": now.timestamp_millis(),
                "event": triggers::window_json(&w),
                // Only Event mode records around events; other modes keep the record only.
                "mode": c.spec.recording.mode,
            })),
        )
            .into_response())
    }
    .await;
    counted(&s, "post-event", r)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.0.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

pub fn router(state: AppState) -> Router {
    let cam = "/api/v1/cameras/{ns}/{name}";
    Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::app_js))
        .route("/hls.min.js", get(web::hls_js))
        .route("/live.html", get(web::live_html))
        .route("/live.js", get(web::live_js))
        .route("/common.js", get(web::common_js))
        .route("/camera.html", get(web::camera_html))
        .route("/camera.js", get(web::camera_js))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/cameras", get(list_cameras))
        .route(&format!("{cam}/recordings"), get(recordings))
        .route(&format!("{cam}/events"), get(events).post(post_event))
        .route(
            &format!("{cam}/manual-recording"),
            get(manual_recording)
                .post(manual_recording)
                .delete(manual_recording),
        )
        .route(&format!("{cam}/index.m3u8"), get(playlist))
        .route(
            &format!("{cam}/segments/{{seg}}/init.mp4"),
            get(init_segment),
        )
        .route(
            &format!("{cam}/segments/{{seg}}/media.m4s"),
            get(media_segment),
        )
        .route(&format!("{cam}/export.mp4"), get(export_mp4))
        .route(
            "/api/v1/domains/{dns}/{domain}/cameras/{ns}/{name}/{*rest}",
            get(remote_camera).post(remote_whep),
        )
        .route(&format!("{cam}/whep"), axum::routing::post(whep))
        .route(&format!("{cam}/live.frames"), get(live_frames))
        .route(&format!("{cam}/llhls/{{file}}"), get(llhls::serve))
        .route(
            "/api/v1/live/sessions/{id}",
            axum::routing::delete(whep_delete),
        )
        .with_state(state)
}

/// Builds the state from the arguments (connects to storage and, unless `--no-auth` in file
/// mode, to the API server).
pub async fn state(a: &ServeArgs) -> Result<AppState> {
    let (storage, prefix, cameras, client) = if let Some(p) = &a.pool {
        vigil_api::install_crypto_provider();
        let (ns, name) = pool::parse_ref(p)?;
        let client = kube::Client::try_default().await?;
        let (storage, prefix) = pool::storage(&client, &ns, &name).await?;
        (
            storage,
            prefix,
            CameraSource::Pool {
                client: client.clone(),
                namespace: ns,
                name,
            },
            Some(client),
        )
    } else {
        let path = a
            .config
            .as_ref()
            .ok_or_else(|| Error::Config("--config or --pool is required".into()))?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        let r = FileConfig::parse(&text)?.resolve(&Overrides::default())?;
        let client = if a.no_auth {
            None
        } else {
            vigil_api::install_crypto_provider();
            Some(kube::Client::try_default().await.map_err(|e| {
                Error::Config(format!(
                    "authentication needs the Kubernetes API ({e}); pass --no-auth for local use"
                ))
            })?)
        };
        (r.storage, r.prefix, CameraSource::Store, client)
    };
    info!(storage = %storage.describe(), auth = !a.no_auth, "playback server");
    let federation =
        federation::Federation::start(&a.federation, client.clone(), !a.no_auth).await?;
    let store = vigil_store::backend::build(&storage)?;
    let locator = match (&a.live_recorder, &cameras) {
        (Some(recorder), _) => Some(live::Locator::Fixed(recorder.clone())),
        (
            None,
            CameraSource::Pool {
                client, namespace, ..
            },
        ) => Some(live::Locator::Kubernetes {
            client: client.clone(),
            namespace: namespace.clone(),
        }),
        (None, CameraSource::Store) => None,
    };
    let live = match (locator, &a.live_token_file) {
        (Some(locator), Some(path)) => {
            let token = std::fs::read_to_string(path)
                .map_err(|e| Error::io("reading", path, e))?
                .trim()
                .to_string();
            if token.is_empty() {
                return Err(Error::Config(format!("{} is empty", path.display())));
            }
            Some(live::Upstream::new(locator, token)?)
        }
        _ => None,
    };
    // WebRTC for this domain's cameras, and for child domains' cameras on a parent (whose
    // WebRTC port must then be given: it may have no recorders of its own).
    let remote_live = a.federation.federation_listen.is_some()
        && (a.webrtc_candidate_ip.is_some() || !a.webrtc_udp.ip().is_unspecified());
    let webrtc = if live.is_some() || remote_live {
        Some(live::WebRtc::bind(a.webrtc_udp, a.webrtc_candidate_ip).await?)
    } else {
        if a.federation.federation_listen.is_some() {
            info!(
                "no live view of child domains' cameras: give --webrtc-candidate-ip or --webrtc-udp with an address"
            );
        }
        None
    };
    if let Some(f) = &federation
        && a.federation.federation_uplink
    {
        // What a parent's tunnelled requests are answered by: the same playback routes over
        // the same store, without user authentication (the child's share bounds what the
        // parent may ask; federation/tunnel.rs).
        let tunnel_state = Inner::new(
            a,
            store.clone(),
            &prefix,
            cameras.clone(),
            Serving {
                live: live.clone(),
                ..Serving::default()
            },
        );
        f.set_tunnel_app(router(AppState(Arc::new(tunnel_state))));
    }
    let auth = if a.no_auth {
        None
    } else {
        client.map(Authorizer::new)
    };
    let serving = Serving {
        auth,
        federation,
        live,
        webrtc,
    };
    Ok(AppState(Arc::new(Inner::new(
        a, store, &prefix, cameras, serving,
    ))))
}

/// What a state serves besides the store: user authentication, child domains, live frames and
/// WebRTC (the state answering a parent's tunnelled requests has only live frames).
#[derive(Default)]
struct Serving {
    auth: Option<Authorizer>,
    federation: Option<federation::Federation>,
    live: Option<live::Upstream>,
    webrtc: Option<Arc<live::WebRtc>>,
}

impl Inner {
    /// The state over `store`: the main one, or (no auth, federation or live) the one a
    /// parent's tunnelled requests are answered by.
    fn new(
        a: &ServeArgs,
        store: Arc<dyn object_store::ObjectStore>,
        prefix: &str,
        cameras: CameraSource,
        serving: Serving,
    ) -> Self {
        let Serving {
            auth,
            federation,
            live,
            webrtc,
        } = serving;
        Inner {
            catalog: Catalog::new(store, prefix),
            cameras,
            auth,
            max_range_ms: i64::from(a.max_range_hours.max(1)) * 3_600_000,
            live_window_ms: i64::from(a.live_window_seconds.max(10)) * 1000,
            metrics: Metrics::new(),
            camera_cache: Mutex::new(None),
            ready: AtomicBool::new(true),
            federation,
            live,
            webrtc,
            writes: triggers::RateLimit::default(),
        }
    }
}

/// `vigil-access serve`.
pub async fn run(a: ServeArgs) -> Result<()> {
    let st = state(&a).await?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| Error::Http(format!("cannot listen on {}: {e}", a.listen)))?;
    info!(listen = %a.listen, "serving");
    let rtc = st.0.webrtc.clone().filter(|_| a.webrtc_ice_tcp);
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match rtc {
        Some(rtc) => {
            let port = listener
                .local_addr()
                .map_err(|e| Error::Http(format!("listener: {e}")))?
                .port();
            rtc.enable_tcp(a.webrtc_tcp_port.unwrap_or(port), !a.webrtc_tcp_only);
            let http =
                icetcp::split(listener, rtc).map_err(|e| Error::Http(format!("listener: {e}")))?;
            axum::serve(http, router(st))
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router(st))
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .map_err(|e| Error::Http(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_windows() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert!(window(10, 5, 100).is_err());
        assert!(window(10, 10, 100).is_err());
        assert!(window(0, 101, 100).is_err());
        assert_eq!(window(0, 100, 100), Ok(Interval::new(0, 100)));
    }

    #[test]
    fn segment_names() {
        let c = CameraId::new("a", "b").unwrap();
        let k = segment_key(&c, "1000-2000-backfill").unwrap();
        assert_eq!(
            (k.start_ms, k.end_ms, k.origin),
            (1000, 2000, Origin::Backfill)
        );
        for bad in [
            "1000-2000",
            "x-2000-live",
            "2000-1000-live",
            "1-2-other",
            "1-2-live/x",
        ] {
            assert!(segment_key(&c, bad).is_err(), "{bad}");
        }
    }
}
