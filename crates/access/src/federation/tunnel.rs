//! The proxy tunnel: how a parent reaches a child's recordings without dialling it.
//!
//! The child already dials the parent (mutual TLS, `uplink`). Over one more such connection it
//! asks `POST /federation/v1/tunnel` with `Upgrade: vigil-tunnel`; the parent answers 101 and
//! the roles swap: on that connection the parent is the HTTP/2 client and the child the server.
//! A parent's user asking for a remote camera's playlist, segments or export is served by a
//! request the parent sends down the child's tunnel, answered by the child's own playback
//! routes and streamed back; nothing is copied, and a child behind NAT needs no inbound port.
//!
//! Trust: the parent knows the tunnel's child by its client certificate (as for `register`),
//! checks its user's rights on the ChildDomain, and that the camera is in the child's catalog.
//! The child checks every request again against what its ParentDomain shares (the camera
//! selector and the rights), whatever the parent says: a parent can never read more than it
//! was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use futures::StreamExt;
use futures::future::BoxFuture;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceExt;
use tracing::{debug, info, warn};
use vigil_api::Right;

use super::protocol::{MAX_NAME, MAX_PATH};

/// The `Upgrade` protocol name of the tunnel.
pub const PROTOCOL: &str = "vigil-tunnel";
/// The path the child asks for the tunnel on (federation listener).
pub const PATH: &str = "/federation/v1/tunnel";
/// Header naming the parent's user a proxied request is made for (for the child's logs).
pub const USER_HEADER: &str = "x-vigil-parent-user";
/// On a tunnelled request: the domain path below the receiving domain (`<child>:<grandchild>…`)
/// for a camera it passes on from its own children; absent for its own cameras.
pub const VIA_HEADER: &str = "x-vigil-via";

/// What a proxied request asks for: the camera and the right it needs. `rest` is the part of
/// the path after `/api/v1/cameras/{ns}/{name}/`. `None`: not something a parent may ask.
pub fn right_for(rest: &str) -> Option<Right> {
    let rest = rest.trim_start_matches('/');
    match rest {
        "recordings" | "events" | "index.m3u8" => Some(Right::Playback),
        "export.mp4" => Some(Right::Export),
        "live.frames" => Some(Right::Live),
        _ => {
            let mut parts = rest.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some("segments"), Some(seg), Some("init.mp4" | "media.m4s"), None)
                    if !seg.is_empty() =>
                {
                    Some(Right::Playback)
                }
                _ => None,
            }
        }
    }
}

/// Splits a tunnel request path `/api/v1/cameras/{ns}/{name}/{rest}` into its parts.
pub fn parse_camera_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/api/v1/cameras/")?;
    let mut it = rest.splitn(3, '/');
    let (ns, name, rest) = (it.next()?, it.next()?, it.next()?);
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name, rest))
}

// ---- parent side

/// The tunnels children hold open, by child identity.
#[derive(Default)]
pub struct Tunnels {
    inner: Mutex<HashMap<String, (u64, SendRequest<Body>)>>,
    next: std::sync::atomic::AtomicU64,
    /// Proxied requests whose answer is still being streamed, by child identity: the "active
    /// sessions" an unregister without `force` must not cut.
    in_flight: Arc<Mutex<HashMap<String, usize>>>,
}

/// Counts one proxied answer as in flight until its body is dropped (sent or abandoned).
struct InFlight {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    identity: String,
}

impl InFlight {
    fn new(counts: Arc<Mutex<HashMap<String, usize>>>, identity: &str) -> Self {
        *counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(identity.to_string())
            .or_default() += 1;
        InFlight {
            counts,
            identity: identity.to_string(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.identity) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.identity);
            }
        }
    }
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, SendRequest<Body>)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proxied answers to child `identity` still being streamed.
    pub fn in_flight(&self, identity: &str) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(identity)
            .copied()
            .unwrap_or(0)
    }

    pub fn is_open(&self, identity: &str) -> bool {
        self.lock()
            .get(identity)
            .is_some_and(|(_, s)| !s.is_closed())
    }

    /// Takes over an upgraded connection from child `identity` as its tunnel (replacing an
    /// older one) and drives it until it ends.
    pub async fn run<I>(self: Arc<Self>, identity: String, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (send, conn) =
            match hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await {
                Ok(x) => x,
                Err(e) => {
                    warn!(identity = %identity, error = %e, "tunnel handshake failed");
                    return;
                }
            };
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().insert(identity.clone(), (id, send));
        info!(identity = %identity, "child tunnel open");
        if let Err(e) = conn.await {
            debug!(identity = %identity, error = %e, "tunnel connection ended");
        }
        let mut m = self.lock();
        if m.get(&identity).is_some_and(|(i, _)| *i == id) {
            m.remove(&identity);
        }
        info!(identity = %identity, "child tunnel closed");
    }

    /// Sends `req` down child `identity`'s tunnel and returns its answer, streamed.
    pub async fn forward(
        &self,
        identity: &str,
        req: Request<Body>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let send = self.lock().get(identity).map(|(_, s)| s.clone());
        let mut send = send.ok_or((
            StatusCode::BAD_GATEWAY,
            "the child domain has no tunnel open".to_string(),
        ))?;
        let unreachable = |e: hyper::Error| {
            (
                StatusCode::BAD_GATEWAY,
                format!("the child domain did not answer: {e}"),
            )
        };
        let guard = InFlight::new(self.in_flight.clone(), identity);
        send.ready().await.map_err(unreachable)?;
        let resp = send.send_request(req).await.map_err(unreachable)?;
        // The answer counts as an active session until its body is dropped.
        Ok(resp.map(|b| {
            Body::from_stream(Body::new(b).into_data_stream().map(move |chunk| {
                let _counted = &guard;
                chunk
            }))
        }))
    }
}

// ---- child side

/// What a ParentDomain lets its parent read: checked on every tunnelled request.
pub trait Share: Send + Sync + 'static {
    /// Whether the camera `ns/name` is shared, and `right` given.
    fn allows(&self, ns: &str, name: &str, right: Right) -> bool;

    /// A request for a camera of one of this domain's children (`req.via[0]` names the
    /// ChildDomain): `None` unless this domain passes that child on and shares `req.right`;
    /// otherwise the answer of sending it on.
    fn onward(&self, req: Onward) -> Option<BoxFuture<'static, OnwardResult>> {
        let _ = req;
        None
    }
}

/// The answer of a request sent on to a child domain, or why not.
pub type OnwardResult = Result<Response<Body>, (StatusCode, String)>;

/// A tunnelled request for a camera below a child of the receiving domain.
#[derive(Clone, Debug)]
pub struct Onward {
    pub via: Vec<String>,
    pub ns: String,
    pub name: String,
    pub rest: String,
    pub query: Option<String>,
    pub right: Right,
    pub user: Option<String>,
}

/// Answers one tunnelled request: refused unless it is a GET (or HEAD) of something the share
/// allows; otherwise served by `app` (the child's playback routes, without user auth: the
/// parent authenticated its user, the share bounds what it may ask).
pub async fn answer(app: Router, share: &dyn Share, req: Request<Body>) -> Response<Body> {
    let refuse = |code: StatusCode, msg: &str| {
        let mut r = Response::new(Body::from(serde_json::json!({ "error": msg }).to_string()));
        *r.status_mut() = code;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET through the tunnel",
        );
    }
    let path = req.uri().path().to_string();
    let Some((ns, name, rest)) = parse_camera_path(&path) else {
        return refuse(StatusCode::NOT_FOUND, "not a camera path");
    };
    let Some(right) = right_for(rest) else {
        return refuse(StatusCode::NOT_FOUND, "not offered through the tunnel");
    };
    let user = req
        .headers()
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(via) = req.headers().get(VIA_HEADER) {
        let via: Vec<String> = via
            .to_str()
            .unwrap_or_default()
            .split(':')
            .map(str::to_string)
            .collect();
        let sane = |p: &String| !p.is_empty() && p.len() <= MAX_NAME;
        if via.len() > MAX_PATH || !via.iter().all(sane) {
            return refuse(StatusCode::BAD_REQUEST, "bad domain path");
        }
        let onward = Onward {
            via,
            ns: ns.to_string(),
            name: name.to_string(),
            rest: rest.to_string(),
            query: req.uri().query().map(str::to_string),
            right,
            user: user.clone(),
        };
        debug!(path = %path, via = %onward.via.join(":"), "tunnelled request sent on");
        return match share.onward(onward) {
            None => refuse(StatusCode::FORBIDDEN, "not passed on to the parent"),
            Some(f) => f.await.unwrap_or_else(|(code, msg)| refuse(code, &msg)),
        };
    }
    if !share.allows(ns, name, right) {
        warn!(camera = %format!("{ns}/{name}"), right = right.as_str(),
              user = user.as_deref().unwrap_or("?"),
              "parent asked for what is not shared");
        return refuse(StatusCode::FORBIDDEN, "not shared with the parent");
    }
    debug!(path = %path, user = user.as_deref().unwrap_or("?"), "tunnelled request");
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

/// Serves the parent's requests on an upgraded connection until it ends.
pub async fn serve(
    io: reqwest::Upgraded,
    app: Router,
    share: Arc<dyn Share>,
) -> Result<(), hyper::Error> {
    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        let share = share.clone();
        async move {
            Ok::<_, std::convert::Infallible>(answer(app, share.as_ref(), req.map(Body::new)).await)
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_by_path() {
        assert_eq!(right_for("index.m3u8"), Some(Right::Playback));
        assert_eq!(right_for("recordings"), Some(Right::Playback));
        assert_eq!(right_for("events"), Some(Right::Playback));
        assert_eq!(
            right_for("segments/1700000000000-1700000004000-live/media.m4s"),
            Some(Right::Playback)
        );
        assert_eq!(right_for("segments/x/init.mp4"), Some(Right::Playback));
        assert_eq!(right_for("export.mp4"), Some(Right::Export));
        assert_eq!(right_for("live.frames"), Some(Right::Live));
        // Not through the tunnel: WHEP (the parent runs its own WebRTC session and reads
        // `live.frames` through the tunnel), anything else.
        assert_eq!(right_for("whep"), None);
        assert_eq!(right_for("segments//media.m4s"), None);
        assert_eq!(right_for("segments/x/media.m4s/more"), None);
        assert_eq!(right_for("../../metrics"), None);
    }

    #[test]
    fn camera_paths() {
        assert_eq!(
            parse_camera_path("/api/v1/cameras/site/door/index.m3u8"),
            Some(("site", "door", "index.m3u8"))
        );
        assert_eq!(
            parse_camera_path("/api/v1/cameras/site/door/segments/a/media.m4s"),
            Some(("site", "door", "segments/a/media.m4s"))
        );
        assert_eq!(parse_camera_path("/api/v1/cameras/site/door"), None);
        assert_eq!(parse_camera_path("/metrics"), None);
        assert_eq!(parse_camera_path("/api/v1/cameras//door/x"), None);
    }

    struct OnlyDoorPlayback;
    impl Share for OnlyDoorPlayback {
        fn allows(&self, ns: &str, name: &str, right: Right) -> bool {
            ns == "site" && name == "door" && right == Right::Playback
        }
    }

    #[tokio::test]
    async fn the_child_refuses_what_it_does_not_share() {
        let app = Router::new().route(
            "/api/v1/cameras/{ns}/{name}/index.m3u8",
            axum::routing::get(|| async { "#EXTM3U\n" }),
        );
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        let code = |r: Response<Body>| r.status();
        assert_eq!(
            code(
                answer(
                    app.clone(),
                    &OnlyDoorPlayback,
                    get("/api/v1/cameras/site/door/index.m3u8")
                )
                .await
            ),
            StatusCode::OK
        );
        assert_eq!(
            code(
                answer(
                    app.clone(),
                    &OnlyDoorPlayback,
                    get("/api/v1/cameras/site/yard/index.m3u8")
                )
                .await
            ),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            code(
                answer(
                    app.clone(),
                    &OnlyDoorPlayback,
                    get("/api/v1/cameras/site/door/export.mp4")
                )
                .await
            ),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            code(answer(app.clone(), &OnlyDoorPlayback, get("/metrics")).await),
            StatusCode::NOT_FOUND
        );
        let post = Request::post("/api/v1/cameras/site/door/index.m3u8")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            code(answer(app, &OnlyDoorPlayback, post).await),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    /// A proxied answer counts as an active session while its body is being read, and stops
    /// counting when it is dropped: over a real HTTP/2 connection (the tunnel's roles: this
    /// side the client, the "child" serving an answer that streams a chunk every 50 ms).
    #[tokio::test]
    async fn an_answer_in_flight_is_counted_until_dropped() {
        let (parent_io, child_io) = tokio::io::duplex(64 * 1024);
        let slow = Router::new().route(
            "/api/v1/cameras/{ns}/{name}/export.mp4",
            axum::routing::get(|| async {
                let chunks = futures::stream::unfold(0u32, |n| async move {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Some((Ok::<_, std::io::Error>(vec![b'x'; 1024]), n + 1))
                });
                Body::from_stream(chunks)
            }),
        );
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let app = slow.clone();
            async move {
                let r = app.oneshot(req.map(Body::new)).await;
                Ok::<_, std::convert::Infallible>(match r {
                    Ok(r) => r,
                    Err(e) => match e {},
                })
            }
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(child_io), svc),
        );
        let tunnels = Arc::new(Tunnels::default());
        tokio::spawn(
            tunnels
                .clone()
                .run("site-a".to_string(), TokioIo::new(parent_io)),
        );
        for _ in 0..100 {
            if tunnels.is_open("site-a") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(tunnels.in_flight("site-a"), 0);
        let get = || {
            Request::get("/api/v1/cameras/site/door/export.mp4")
                .body(Body::empty())
                .unwrap()
        };
        let resp = tunnels.forward("site-a", get()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut data = resp.into_body().into_data_stream();
        let first = data.next().await.expect("a chunk").expect("data");
        assert_eq!(first.len(), 1024);
        assert_eq!(tunnels.in_flight("site-a"), 1, "one answer streaming");
        let second = tunnels.forward("site-a", get()).await.unwrap();
        assert_eq!(tunnels.in_flight("site-a"), 2);
        drop(data);
        assert_eq!(tunnels.in_flight("site-a"), 1, "the dropped one is done");
        drop(second);
        assert_eq!(tunnels.in_flight("site-a"), 0);
        assert_eq!(tunnels.in_flight("other"), 0);
    }
}
