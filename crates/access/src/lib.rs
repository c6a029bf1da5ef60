//! The access point (`vigil-access serve`): the query and playback server. It reads the store directly (no
//! database): listings give the recorded intervals, stored segments are served as HLS and
//! concatenated into MP4 exports.
//!
//! ```text
//! GET /api/v1/cameras
//! GET /api/v1/cameras/{ns}/{name}/recordings?start=&end=
//! GET /api/v1/cameras/{ns}/{name}/index.m3u8?start=[&end=]      (no end: EVENT, live edge)
//! GET /api/v1/cameras/{ns}/{name}/segments/{start}-{end}-{origin}/init.mp4
//! GET /api/v1/cameras/{ns}/{name}/segments/{start}-{end}-{origin}/media.m4s?base=
//! GET /api/v1/cameras/{ns}/{name}/export.mp4?start=&end=        (Range supported)
//! GET / (web page), /healthz, /readyz, /metrics
//! ```
//!
//! Times are Unix milliseconds or RFC 3339.

pub mod auth;
pub mod error;
pub mod export;
pub mod hls;
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
}

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
        let user = self.user(headers).await?;
        let id = CameraId::new(ns, name).map_err(|e| bad(e.to_string()))?;
        if let (Some(a), Some(u)) = (&self.0.auth, &user)
            && !a.allowed(u, &id).await?
        {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("not allowed to get cameras/recordings of {id}"),
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
        Ok(axum::Json(json!({"cameras": out})).into_response())
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
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/cameras", get(list_cameras))
        .route(&format!("{cam}/recordings"), get(recordings))
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
    let store = vigil_store::backend::build(&storage)?;
    Ok(AppState(Arc::new(Inner {
        catalog: Catalog::new(store, &prefix),
        cameras,
        auth: if a.no_auth {
            None
        } else {
            client.map(Authorizer::new)
        },
        max_range_ms: i64::from(a.max_range_hours.max(1)) * 3_600_000,
        live_window_ms: i64::from(a.live_window_seconds.max(10)) * 1000,
        metrics: Metrics::new(),
        camera_cache: Mutex::new(None),
        ready: AtomicBool::new(true),
    })))
}

/// `vigil-access serve`.
pub async fn run(a: ServeArgs) -> Result<()> {
    let st = state(&a).await?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| Error::Http(format!("cannot listen on {}: {e}", a.listen)))?;
    info!(listen = %a.listen, "serving");
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
    axum::serve(listener, router(st))
        .with_graceful_shutdown(shutdown)
        .await
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
