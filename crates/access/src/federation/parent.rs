//! The parent side: the federation listener (mutual TLS), the registry behind it, the
//! ChildDomain status writer, and the remote cameras for `GET /api/v1/cameras`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{info, warn};
use vigil_api::{ChildDomain, Condition, ConditionStatus, Right};

use super::protocol::{
    CatalogAck, CatalogPush, Keepalive, MAX_BODY, MAX_PATH, Register, Registered, RemoteCamera,
    Unregister,
};
use super::state::{Refusal, Registry, StatusView, admit, status_due};
use super::tls::Peer;
use super::tunnel::{self, Tunnels};
use crate::auth::User;
use crate::error::Result;

/// How long a user's rights on a child domain are cached.
const RIGHTS_TTL: Duration = Duration::from_secs(30);
const RIGHTS_MAX: usize = 10_000;
/// The ChildDomain status' `lastKeepalive` is refreshed at least this often while online.
const STATUS_REFRESH_MS: u64 = 10_000;

/// A user's rights per child domain: (user and groups, namespace, name) -> (when, rights).
type RightsCache = HashMap<(String, String, String), (Instant, Vec<Right>)>;

pub struct Parent {
    client: kube::Client,
    reg: Mutex<Registry>,
    started: Instant,
    pub keepalive_ms: u64,
    pub timeout_ms: u64,
    check_users: bool,
    rights: Mutex<RightsCache>,
    /// Children's proxy tunnels (see `tunnel.rs`).
    pub tunnels: Arc<Tunnels>,
    /// The ChildDomains, from a watch (a registration looks its identity up here instead of
    /// listing every ChildDomain from the API server: 1,000 children registering would
    /// otherwise list 1,000 objects each).
    children: reflector::Store<ChildDomain>,
    children_watch: tokio::task::JoinHandle<()>,
}

impl Drop for Parent {
    fn drop(&mut self) {
        self.children_watch.abort();
    }
}

impl Parent {
    pub fn new(
        client: kube::Client,
        namespace: Option<String>,
        keepalive_ms: u64,
        timeout_ms: u64,
        check_users: bool,
    ) -> Self {
        // Sessions start at a value unlikely to repeat across restarts, so a child holding a
        // session of a previous parent process is told to register again.
        let first = Utc::now().timestamp_millis().unsigned_abs() << 8;
        let api: Api<ChildDomain> = match &namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let (children, writer) = reflector::store();
        let children_watch = tokio::spawn(
            reflector::reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .applied_objects()
                .for_each(|_| futures::future::ready(())),
        );
        Parent {
            client,
            reg: Mutex::new(Registry::new(first)),
            started: Instant::now(),
            keepalive_ms,
            timeout_ms,
            check_users,
            rights: Mutex::new(HashMap::new()),
            tunnels: Arc::new(Tunnels::default()),
            children,
            children_watch,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn reg(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The ChildDomains, from the watch cache (waits up to 5 s for its first listing: a
    /// registration is refused, and retried by the child, rather than left hanging while the
    /// API server is unreachable).
    async fn child_domains(&self) -> Result<Vec<Arc<ChildDomain>>> {
        tokio::time::timeout(Duration::from_secs(5), self.children.wait_until_ready())
            .await
            .map_err(|_| crate::error::Error::Config("ChildDomain watch: no listing yet".into()))?
            .map_err(|e| crate::error::Error::Config(format!("ChildDomain watch: {e}")))?;
        Ok(self.children.state())
    }

    /// Which of `child.rights` the user may use, by SubjectAccessReview: verb = the right
    /// (`live`, `playback`, `export`) on `childdomains/<name>` in the ChildDomain's namespace.
    async fn user_rights(
        &self,
        user: &User,
        ns: &str,
        name: &str,
        offered: &[Right],
    ) -> Result<Vec<Right>> {
        let key = (
            format!("{}\u{0}{:?}", user.name, user.groups),
            ns.to_string(),
            name.to_string(),
        );
        if let Ok(m) = self.rights.lock()
            && let Some((t, r)) = m.get(&key)
            && t.elapsed() < RIGHTS_TTL
        {
            return Ok(r.clone());
        }
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let mut out = vec![];
        for r in Right::ALL {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.name.clone()),
                    uid: user.uid.clone(),
                    groups: Some(user.groups.clone()),
                    extra: Some(user.extra.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(ns.to_string()),
                        verb: Some(r.as_str().into()),
                        group: Some(vigil_api::GROUP.into()),
                        resource: Some("childdomains".into()),
                        name: Some(name.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let s = api.create(&PostParams::default(), &review).await?;
            if s.status.is_some_and(|s| s.allowed) {
                out.push(r);
            }
        }
        if let Ok(mut m) = self.rights.lock() {
            if m.len() >= RIGHTS_MAX {
                m.clear();
            }
            m.insert(key, (Instant::now(), out.clone()));
        }
        Ok(vigil_api::intersect(offered, &out))
    }

    /// The remote cameras this user may see, as `GET /api/v1/cameras` lists them: each with
    /// its domain path, whether it is online (its child too) and the user's rights on it.
    pub async fn remote_cameras(&self, user: Option<&User>) -> Result<Vec<Value>> {
        struct Snap {
            ns: String,
            name: String,
            display: Option<String>,
            online: bool,
            rights: Vec<Right>,
            cams: Vec<(super::protocol::CameraRef, bool)>,
        }
        let snaps: Vec<Snap> = {
            let reg = self.reg();
            reg.children()
                .filter(|c| c.reason != "Unregistered")
                .map(|c| Snap {
                    ns: c.admission.namespace.clone(),
                    name: c.admission.name.clone(),
                    display: c.display_name.clone(),
                    online: c.online,
                    rights: c.rights.clone(),
                    cams: c.cameras.iter().map(|(k, v)| (k.clone(), *v)).collect(),
                })
                .collect()
        };
        let mut out = vec![];
        for s in snaps {
            let rights = match (self.check_users, user) {
                (true, Some(u)) => self.user_rights(u, &s.ns, &s.name, &s.rights).await?,
                (true, None) => vec![],
                (false, _) => s.rights.clone(),
            };
            if rights.is_empty() {
                continue;
            }
            for (k, online) in s.cams {
                let mut path = vec![s.name.clone()];
                path.extend(k.path.iter().cloned());
                out.push(json!({
                    "namespace": k.namespace,
                    "name": k.name,
                    "remote": true,
                    "domain": s.name,
                    "domainNamespace": s.ns,
                    "domainDisplayName": s.display,
                    "domainPath": path,
                    "domainOnline": s.online,
                    "online": s.online && online,
                    "rights": rights.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                }));
            }
        }
        Ok(out)
    }

    /// Serves a parent user's request for remote camera `ns/name` of ChildDomain
    /// `dns/domain` through that child's tunnel: `rest` (and `query`) as the child's playback
    /// API names them. `domain` may go deeper, `<child>:<grandchild>:…` (the camera's domain
    /// path joined by `:`), for a camera the child passes on from its own children. Checks the
    /// right the request needs (the user's, within what the child shares and the parent
    /// accepts) and that the camera is in the child's catalog under that path.
    pub async fn proxy(
        &self,
        user: Option<&User>,
        dns: &str,
        domain: &str,
        cam: RemoteRequest<'_>,
    ) -> std::result::Result<Response, (StatusCode, String)> {
        let right = tunnel::right_for(cam.rest).ok_or((
            StatusCode::NOT_FOUND,
            "not offered for remote cameras".to_string(),
        ))?;
        let (child, via) = self.authorize(user, dns, domain, right).await?;
        self.onward(dns, &child, &via, right, cam, user.map(|u| u.name.as_str()))
            .await
    }

    /// Whether a parent user may use `right` on the cameras of `dns/domain` (`<child>[:…]`):
    /// the user's rights, within what the child shares and this parent accepts. The child and
    /// the rest of the path below it.
    pub async fn authorize(
        &self,
        user: Option<&User>,
        dns: &str,
        domain: &str,
        right: Right,
    ) -> std::result::Result<(String, Vec<String>), (StatusCode, String)> {
        let mut path = domain.split(':');
        let child = path.next().unwrap_or_default();
        let via: Vec<String> = path.map(str::to_string).collect();
        let offered = self
            .reg()
            .children()
            .find(|c| c.admission.namespace == dns && c.admission.name == child)
            .map(|c| c.rights.clone())
            .ok_or((
                StatusCode::NOT_FOUND,
                format!("no child domain {dns}/{child}"),
            ))?;
        let rights = match (self.check_users, user) {
            (true, Some(u)) => self
                .user_rights(u, dns, child, &offered)
                .await
                .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
            (true, None) => vec![],
            (false, _) => offered,
        };
        if !rights.contains(&right) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("no {} right on childdomains/{child}", right.as_str()),
            ));
        }
        Ok((child.to_string(), via))
    }

    /// Sends a checked request for camera `cam` (under `via` below ChildDomain `dns/child`)
    /// down that child's tunnel, if the child shares `right`, lists the camera and is online.
    /// Used for this parent's users (after their own rights are checked, `proxy`) and for
    /// requests that came down this domain's own tunnel for a camera it passes on (the caller
    /// checked its share, `uplink.rs`).
    pub async fn onward(
        &self,
        dns: &str,
        child: &str,
        via: &[String],
        right: Right,
        cam: RemoteRequest<'_>,
        parent_user: Option<&str>,
    ) -> std::result::Result<Response, (StatusCode, String)> {
        let found = {
            let reg = self.reg();
            reg.children()
                .find(|c| c.admission.namespace == dns && c.admission.name == child)
                .map(|c| {
                    let has = c.cameras.keys().any(|k| {
                        k.path.as_slice() == via && k.namespace == cam.ns && k.name == cam.name
                    });
                    (c.identity.clone(), c.rights.clone(), c.online, has)
                })
        };
        let (identity, offered, online, has) = found.ok_or((
            StatusCode::NOT_FOUND,
            format!("no child domain {dns}/{child}"),
        ))?;
        if !offered.contains(&right) {
            return Err((
                StatusCode::FORBIDDEN,
                format!("{child} does not share the {} right", right.as_str()),
            ));
        }
        if !has {
            return Err((
                StatusCode::NOT_FOUND,
                format!("{child} shares no camera {}/{}", cam.ns, cam.name),
            ));
        }
        if !online {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("child domain {child} is offline"),
            ));
        }
        let uri = match cam.query {
            Some(q) => format!("/api/v1/cameras/{}/{}/{}?{q}", cam.ns, cam.name, cam.rest),
            None => format!("/api/v1/cameras/{}/{}/{}", cam.ns, cam.name, cam.rest),
        };
        let mut req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        if let Some(u) = parent_user
            && let Ok(v) = axum::http::HeaderValue::from_str(u)
        {
            req.headers_mut().insert(tunnel::USER_HEADER, v);
        }
        if !via.is_empty()
            && let Ok(v) = axum::http::HeaderValue::from_str(&via.join(":"))
        {
            req.headers_mut().insert(tunnel::VIA_HEADER, v);
        }
        self.tunnels.forward(&identity, req).await
    }

    /// The cameras this domain passes on to its own parent from the ChildDomains `children`
    /// (namespace, name): each with the path `[<child>, …its path]`, online while both the
    /// child and the camera are. Paths longer than the protocol allows are left out.
    pub fn passed_on(&self, children: &[(String, String)]) -> Vec<RemoteCamera> {
        let reg = self.reg();
        let mut out = vec![];
        for c in reg.children().filter(|c| {
            c.reason != "Unregistered"
                && children
                    .iter()
                    .any(|(ns, n)| *ns == c.admission.namespace && *n == c.admission.name)
        }) {
            for (k, online) in &c.cameras {
                if k.path.len() + 1 > MAX_PATH {
                    continue;
                }
                let mut path = vec![c.admission.name.clone()];
                path.extend(k.path.iter().cloned());
                out.push(RemoteCamera {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                    path,
                    online: c.online && *online,
                });
            }
        }
        out
    }
}

/// What a proxied request asks of a remote camera: `ns/name`, the playback route `rest` and
/// its query.
#[derive(Clone, Copy, Debug)]
pub struct RemoteRequest<'a> {
    pub ns: &'a str,
    pub name: &'a str,
    pub rest: &'a str,
    pub query: Option<&'a str>,
}

struct Reply(StatusCode, Value);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

fn refusal(r: Refusal) -> Reply {
    let (code, msg) = match &r {
        Refusal::UnknownIdentity => (StatusCode::FORBIDDEN, "unknown identity".to_string()),
        Refusal::NoSession => (StatusCode::NOT_FOUND, "no such session: register".into()),
        Refusal::Resync { expected } => (
            StatusCode::CONFLICT,
            format!("catalog message lost (expected seq {expected}): send the full catalog"),
        ),
        Refusal::TooManyCameras { max } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {max} cameras"),
        ),
        Refusal::Invalid(m) => (StatusCode::BAD_REQUEST, m.clone()),
        Refusal::Busy { sessions } => (
            StatusCode::CONFLICT,
            format!("{sessions} active sessions; unregister with force to cut them"),
        ),
    };
    Reply(code, json!({"error": msg}))
}

fn identity(peer: &Peer) -> std::result::Result<String, Reply> {
    peer.identity.clone().ok_or(Reply(
        StatusCode::UNAUTHORIZED,
        json!({"error": "client certificate without a common name"}),
    ))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> std::result::Result<T, Reply> {
    serde_json::from_slice(body)
        .map_err(|e| Reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})))
}

fn ok<T: Serialize>(v: &T) -> Reply {
    Reply(
        StatusCode::OK,
        serde_json::to_value(v).unwrap_or(Value::Null),
    )
}

type P = State<Arc<Parent>>;
type C = ConnectInfo<Peer>;

async fn register(State(p): P, ConnectInfo(peer): C, body: Bytes) -> Reply {
    let r = async {
        let id = identity(&peer)?;
        let msg: Register = parse(&body)?;
        let children = p.child_domains().await.map_err(|e| {
            warn!(error = %e, "listing ChildDomains");
            Reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "parent API unavailable"}),
            )
        })?;
        let adm = admit(children.iter().map(|c| c.as_ref()), &id);
        let name = adm.as_ref().map(|a| a.name.clone());
        let now = p.now_ms();
        let session = p
            .reg()
            .register(&id, adm, msg.display_name, &msg.rights, now)
            .map_err(|e| {
                warn!(identity = %id, peer = %peer.addr, reason = ?e, "registration refused");
                refusal(e)
            })?;
        info!(identity = %id, peer = %peer.addr, session, "child registered");
        Ok(ok(&Registered {
            session,
            keepalive_ms: p.keepalive_ms,
            timeout_ms: p.timeout_ms,
            domain: name.unwrap_or_default(),
        }))
    }
    .await;
    r.unwrap_or_else(|e| e)
}

async fn keepalive(State(p): P, ConnectInfo(peer): C, body: Bytes) -> Reply {
    let r = (|| {
        let id = identity(&peer)?;
        let msg: Keepalive = parse(&body)?;
        let now = p.now_ms();
        p.reg().keepalive(&id, msg.session, now).map_err(refusal)?;
        Ok(Reply(StatusCode::OK, json!({})))
    })();
    r.unwrap_or_else(|e| e)
}

async fn catalog(State(p): P, ConnectInfo(peer): C, body: Bytes) -> Reply {
    let r = (|| {
        let id = identity(&peer)?;
        let msg: CatalogPush = parse(&body)?;
        let seq = msg.seq;
        let full = msg.full.is_some();
        let now = p.now_ms();
        let cameras = p.reg().catalog(&id, msg, now).map_err(refusal)?;
        if full {
            info!(identity = %id, cameras, bytes = body.len(), "full catalog");
        }
        Ok(ok(&CatalogAck { seq, cameras }))
    })();
    r.unwrap_or_else(|e| e)
}

async fn unregister(State(p): P, ConnectInfo(peer): C, body: Bytes) -> Reply {
    let r = (|| {
        let id = identity(&peer)?;
        let msg: Unregister = parse(&body)?;
        let now = p.now_ms();
        let active = p.tunnels.in_flight(&id);
        p.reg()
            .unregister(&id, msg.session, msg.force, active, now)
            .map_err(refusal)?;
        info!(identity = %id, "child unregistered");
        Ok(Reply(StatusCode::OK, json!({})))
    })();
    r.unwrap_or_else(|e| e)
}

/// `POST /federation/v1/tunnel` with `Upgrade: vigil-tunnel`: a registered child offers its
/// proxy tunnel; after the 101 this side is the HTTP/2 client on the connection.
async fn open_tunnel(
    State(p): P,
    ConnectInfo(peer): C,
    req: axum::http::Request<axum::body::Body>,
) -> Response {
    let id = match identity(&peer) {
        Ok(id) => id,
        Err(r) => return r.into_response(),
    };
    let registered = p.reg().get(&id).is_some_and(|c| c.reason != "Unregistered");
    if !registered {
        warn!(identity = %id, peer = %peer.addr, "tunnel refused: not registered");
        return Reply(StatusCode::FORBIDDEN, json!({"error": "register first"})).into_response();
    }
    let wants = req
        .headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(tunnel::PROTOCOL));
    if !wants {
        return Reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "Upgrade: vigil-tunnel required"}),
        )
        .into_response();
    }
    let upgrade = hyper::upgrade::on(req);
    let tunnels = p.tunnels.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => tunnels.run(id, io).await,
            Err(e) => warn!(identity = %id, error = %e, "tunnel upgrade failed"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (axum::http::header::CONNECTION, "upgrade"),
            (axum::http::header::UPGRADE, tunnel::PROTOCOL),
        ],
    )
        .into_response()
}

pub fn router(p: Arc<Parent>) -> Router {
    Router::new()
        .route("/federation/v1/register", post(register))
        .route("/federation/v1/keepalive", post(keepalive))
        .route("/federation/v1/catalog", post(catalog))
        .route("/federation/v1/unregister", post(unregister))
        .route(tunnel::PATH, post(open_tunnel))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(p)
}

/// Every second: children silent for the timeout go offline; ChildDomain statuses that
/// changed are written. Every 10 s: children whose ChildDomain is gone are forgotten.
pub async fn status_loop(p: Arc<Parent>) {
    let mut written: HashMap<String, (StatusView, u64, DateTime<Utc>)> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let now = p.now_ms();
        let wall = Utc::now();
        type Due = (String, String, String, Option<i64>, StatusView, u64);
        let due: Vec<Due> = {
            let mut reg = p.reg();
            for id in reg.sweep(now, p.timeout_ms) {
                warn!(identity = %id, timeout_ms = p.timeout_ms, "child domain offline (no keepalive)");
            }
            reg.children()
                .filter_map(|c| {
                    let v = StatusView::of(c);
                    let w = written.get(&c.identity).map(|(v, s, _)| (v.clone(), *s));
                    status_due(w.as_ref(), &v, c.last_seen_ms, STATUS_REFRESH_MS).then(|| {
                        (
                            c.identity.clone(),
                            c.admission.namespace.clone(),
                            c.admission.name.clone(),
                            c.admission.generation,
                            v,
                            c.last_seen_ms,
                        )
                    })
                })
                .collect()
        };
        for (identity, ns, name, generation, v, seen) in due {
            let key = format!("{ns}/{name}");
            let transition = match written.get(&identity) {
                Some((old, _, t)) if old.online == v.online && old.reason == v.reason => *t,
                _ => wall,
            };
            let last_keepalive =
                wall - chrono::Duration::milliseconds(now.saturating_sub(seen) as i64);
            let mut cond = Condition::new(
                "Ready",
                if v.online {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                v.reason,
                match v.reason {
                    "Online" => "registered; keepalives arrive".to_string(),
                    "Offline" => format!("no keepalive for {} s", p.timeout_ms / 1000),
                    _ => "the child unregistered".to_string(),
                },
                generation,
            );
            cond.last_transition_time = transition;
            let status = json!({"status": {
                "conditions": [cond],
                "cameras": v.cameras,
                "camerasOnline": v.cameras_online,
                "lastKeepalive": last_keepalive,
                "displayName": v.display_name,
                "rights": v.rights,
            }});
            let api: Api<ChildDomain> = Api::namespaced(p.client.clone(), &ns);
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
            {
                Ok(_) => {
                    written.insert(identity, (v, seen, transition));
                }
                Err(e) => warn!(childdomain = %key, error = %e, "writing ChildDomain status"),
            }
        }
        if n.is_multiple_of(10) {
            match p.child_domains().await {
                Ok(children) => {
                    let ids: Vec<String> =
                        children.iter().map(|c| c.spec.identity.clone()).collect();
                    p.reg().retain(|id| ids.iter().any(|i| i == id));
                    written.retain(|id, _| ids.iter().any(|i| i == id));
                }
                Err(e) => warn!(error = %e, "listing ChildDomains"),
            }
        }
    }
}
