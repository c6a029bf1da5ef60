//! The child side: for every ParentDomain, register with the parent, push the shared catalog
//! (full, then deltas), send keepalives; register again after any failure. Local recording
//! never depends on any of this (it runs in the recorders, not here).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};
use vigil_api::{Camera, CameraSelector, CameraState, Condition, ConditionStatus, ParentDomain};

use super::protocol::{
    CameraRef, CatalogPush, Keepalive, Register, Registered, RemoteCamera, Unregister,
};
use super::state::{MAX_DELTAS, diff};
use super::tls::client_config;
use super::tunnel;

/// Largest response read from a parent.
const MAX_REPLY: usize = 1 << 20;
/// How often the shared catalog is compared with what the parent has.
const CATALOG_TICK: Duration = Duration::from_millis(500);

/// The cameras a ParentDomain shares, as the parent gets them: selected by label, online when
/// recording. Sorted by key.
pub fn shared_cameras<'a>(
    cams: impl IntoIterator<Item = &'a Camera>,
    sel: &CameraSelector,
) -> Vec<RemoteCamera> {
    let mut out: Vec<RemoteCamera> = cams
        .into_iter()
        .filter(|c| sel.matches(c.labels()))
        .filter_map(|c| {
            Some(RemoteCamera {
                namespace: c.namespace()?,
                name: c.name_any(),
                path: vec![],
                online: c
                    .status
                    .as_ref()
                    .is_some_and(|s| s.state == Some(CameraState::Recording)),
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.path, &a.namespace, &a.name).cmp(&(&b.path, &b.namespace, &b.name)));
    out
}

#[derive(Debug)]
enum Fail {
    /// The parent answered with this status.
    Status(u16, String),
    /// No answer (connection, TLS, timeout) or a bad one.
    Net(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Status(c, m) => write!(f, "parent answered {c}: {m}"),
            Fail::Net(m) => write!(f, "{m}"),
        }
    }
}

#[derive(Clone)]
struct Link {
    http: reqwest::Client,
    base: String,
    session: u64,
    /// Set when the ParentDomain is deleted: the tunnel refuses new requests from then on.
    withdrawn: Arc<AtomicBool>,
}

impl Link {
    async fn unregister(&self, force: bool) -> Result<serde_json::Value, Fail> {
        let body = Unregister {
            session: self.session,
            force,
        };
        post(&self.http, &self.base, "unregister", &body).await
    }
}

async fn post<T: Serialize, R: DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    verb: &str,
    body: &T,
) -> Result<R, Fail> {
    let body = serde_json::to_vec(body).map_err(|e| Fail::Net(e.to_string()))?;
    let mut resp = http
        .post(format!("{base}/federation/v1/{verb}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| Fail::Net(format!("{verb}: {e}")))?;
    let status = resp.status();
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Fail::Net(format!("{verb}: {e}")))?
    {
        if buf.len() + chunk.len() > MAX_REPLY {
            return Err(Fail::Net(format!("{verb}: reply too large")));
        }
        buf.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&buf)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(Fail::Status(status.as_u16(), msg));
    }
    serde_json::from_slice(&buf).map_err(|e| Fail::Net(format!("{verb}: bad reply: {e}")))
}

async fn write_status(
    client: &kube::Client,
    pd: &ParentDomain,
    registered: Result<&str, &str>,
    shared: Option<usize>,
    keepalive: Option<chrono::DateTime<chrono::Utc>>,
) {
    let (Some(ns), name) = (pd.namespace(), pd.name_any()) else {
        return;
    };
    let cond = match registered {
        Ok(m) => Condition::new(
            "Registered",
            ConditionStatus::True,
            "Registered",
            m,
            pd.metadata.generation,
        ),
        Err(m) => Condition::new(
            "Registered",
            ConditionStatus::False,
            "ParentUnreachable",
            m,
            pd.metadata.generation,
        ),
    };
    let mut status = json!({"conditions": [cond]});
    if let Some(s) = shared {
        status["sharedCameras"] = json!(s);
    }
    if let Some(k) = keepalive {
        status["lastKeepalive"] = json!(k);
    }
    let api: Api<ParentDomain> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
    {
        warn!(parentdomain = %name, error = %e, "writing ParentDomain status");
    }
}

fn secret_key<'a>(s: &'a Secret, k: &str) -> Result<&'a [u8], Fail> {
    s.data
        .as_ref()
        .and_then(|d| d.get(k))
        .map(|b| b.0.as_slice())
        .ok_or_else(|| Fail::Net(format!("credentials Secret has no {k}")))
}

/// Aborts its task when dropped.
struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What this access point answers its parents with: its playback routes (for tunnelled
/// requests; set once its state exists) and, if it is a parent itself, its children (whose
/// cameras a ParentDomain's `passOn` passes on).
#[derive(Clone)]
pub struct Local {
    pub tunnel_app: Arc<OnceLock<axum::Router>>,
    pub parent: Option<Arc<super::parent::Parent>>,
}

/// What a ParentDomain shares, checked on every request its parent tunnels.
struct Shared {
    namespace: String,
    selector: CameraSelector,
    rights: Vec<vigil_api::Right>,
    cams: Store<Camera>,
    withdrawn: Arc<AtomicBool>,
    /// ChildDomains (namespace, name) whose cameras are passed on.
    pass_on: Vec<(String, String)>,
    parent: Option<Arc<super::parent::Parent>>,
}

impl tunnel::Share for Shared {
    fn allows(&self, ns: &str, name: &str, right: vigil_api::Right) -> bool {
        !self.withdrawn.load(Ordering::Relaxed)
            && ns == self.namespace
            && self.rights.contains(&right)
            && self
                .cams
                .get(&reflector::ObjectRef::new(name).within(ns))
                .is_some_and(|c| self.selector.matches(c.labels()))
    }

    fn onward(
        &self,
        req: tunnel::Onward,
    ) -> Option<futures::future::BoxFuture<'static, tunnel::OnwardResult>> {
        if self.withdrawn.load(Ordering::Relaxed) || !self.rights.contains(&req.right) {
            return None;
        }
        let parent = self.parent.clone()?;
        let (child, via) = req.via.split_first()?;
        let (dns, child) = self.pass_on.iter().find(|(_, n)| n == child)?.clone();
        let via = via.to_vec();
        Some(Box::pin(async move {
            let cam = super::parent::RemoteRequest {
                ns: &req.ns,
                name: &req.name,
                rest: &req.rest,
                query: req.query.as_deref(),
            };
            parent
                .onward(&dns, &child, &via, req.right, cam, req.user.as_deref())
                .await
        }))
    }
}

/// Keeps a proxy tunnel to the parent open (see `tunnel.rs`): asks for it, serves the
/// parent's requests on it, asks again 1 s after it ends.
async fn keep_tunnel(
    tls: rustls::ClientConfig,
    base: String,
    app: Arc<OnceLock<axum::Router>>,
    share: Arc<Shared>,
) {
    // No overall timeout: the upgraded connection lives as long as the tunnel.
    let http = match reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            warn!(error = %e, "tunnel HTTP client");
            return;
        }
    };
    loop {
        if let Some(app) = app.get() {
            let r = http
                .post(format!("{base}{}", tunnel::PATH))
                .header(reqwest::header::CONNECTION, "upgrade")
                .header(reqwest::header::UPGRADE, tunnel::PROTOCOL)
                .send()
                .await;
            match r {
                Ok(resp) if resp.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS => {
                    match resp.upgrade().await {
                        Ok(io) => {
                            info!(parent = %base, "proxy tunnel open");
                            if let Err(e) = tunnel::serve(io, app.clone(), share.clone()).await {
                                warn!(parent = %base, error = %e, "proxy tunnel ended");
                            }
                        }
                        Err(e) => warn!(parent = %base, error = %e, "proxy tunnel upgrade"),
                    }
                }
                Ok(resp) => warn!(parent = %base, status = %resp.status(), "proxy tunnel refused"),
                Err(e) => warn!(parent = %base, error = %e, "proxy tunnel"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One session with the parent: register, push, keepalive until something fails.
async fn session(
    client: &kube::Client,
    pd: &ParentDomain,
    cams: &Store<Camera>,
    link: &Arc<Mutex<Option<Link>>>,
    local: &Local,
) -> Result<(), Fail> {
    let ns = pd.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get(&pd.spec.credentials_secret)
        .await
        .map_err(|e| Fail::Net(format!("credentials Secret: {e}")))?;
    let tls = client_config(
        secret_key(&secret, "ca.crt")?,
        secret_key(&secret, "tls.crt")?,
        secret_key(&secret, "tls.key")?,
    )
    .map_err(|e| Fail::Net(e.to_string()))?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| Fail::Net(format!("HTTP client: {e}")))?;
    let base = pd.spec.url.trim_end_matches('/').to_string();
    let reg: Registered = post(
        &http,
        &base,
        "register",
        &Register {
            display_name: pd.spec.display_name.clone(),
            rights: pd.spec.rights.clone(),
        },
    )
    .await?;
    info!(parent = %base, domain = %reg.domain, session = reg.session, "registered with parent");
    let withdrawn = Arc::new(AtomicBool::new(false));
    let l = Link {
        http: http.clone(),
        base: base.clone(),
        session: reg.session,
        withdrawn: withdrawn.clone(),
    };
    if let Ok(mut g) = link.lock() {
        *g = Some(l);
    }
    // The proxy tunnel lives as long as this session (dropped with it).
    let pass_on: Vec<(String, String)> = pd
        .spec
        .pass_on
        .iter()
        .map(|c| {
            (
                c.namespace.clone().unwrap_or_else(|| ns.clone()),
                c.name.clone(),
            )
        })
        .collect();
    let _tunnel = Abort(tokio::spawn(keep_tunnel(
        tls,
        base.clone(),
        local.tunnel_app.clone(),
        Arc::new(Shared {
            namespace: ns.clone(),
            selector: pd.spec.camera_selector.clone(),
            rights: pd.spec.rights.clone(),
            cams: cams.clone(),
            withdrawn,
            pass_on: pass_on.clone(),
            parent: local.parent.clone(),
        }),
    )));
    let keepalive = Duration::from_millis(reg.keepalive_ms.clamp(500, 60_000));
    let mut sent: Option<BTreeMap<CameraRef, RemoteCamera>> = None;
    let mut seq: u64 = 0;
    let mut last_msg = Instant::now();
    let mut last_status: Option<(usize, Instant)> = None;
    let mut tick = tokio::time::interval(CATALOG_TICK);
    loop {
        tick.tick().await;
        let state = cams.state();
        let mut now = shared_cameras(state.iter().map(|c| c.as_ref()), &pd.spec.camera_selector);
        // A middle domain passes on its children's cameras (three or more levels).
        if let Some(p) = &local.parent
            && !pass_on.is_empty()
        {
            now.extend(p.passed_on(&pass_on));
        }
        let map = || now.iter().map(|c| (c.key(), c.clone())).collect();
        match &sent {
            None => {
                seq += 1;
                post::<_, serde_json::Value>(
                    &http,
                    &base,
                    "catalog",
                    &CatalogPush {
                        session: reg.session,
                        seq,
                        full: Some(now.clone()),
                        deltas: vec![],
                    },
                )
                .await?;
                sent = Some(map());
                last_msg = Instant::now();
            }
            Some(s) => {
                let d = diff(s, &now);
                let mut resync = false;
                for chunk in d.chunks(MAX_DELTAS) {
                    seq += 1;
                    match post::<_, serde_json::Value>(
                        &http,
                        &base,
                        "catalog",
                        &CatalogPush {
                            session: reg.session,
                            seq,
                            full: None,
                            deltas: chunk.to_vec(),
                        },
                    )
                    .await
                    {
                        Ok(_) => last_msg = Instant::now(),
                        Err(Fail::Status(409, m)) => {
                            warn!(reason = %m, "parent asks for the full catalog");
                            resync = true;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                sent = if resync { None } else { Some(map()) };
            }
        }
        if last_msg.elapsed() >= keepalive {
            post::<_, serde_json::Value>(
                &http,
                &base,
                "keepalive",
                &Keepalive {
                    session: reg.session,
                },
            )
            .await?;
            last_msg = Instant::now();
        }
        let n = now.len();
        if last_status.is_none_or(|(m, t)| m != n || t.elapsed() >= Duration::from_secs(10)) {
            write_status(
                client,
                pd,
                Ok(&format!("registered as {}", reg.domain)),
                Some(n),
                Some(chrono::Utc::now()),
            )
            .await;
            last_status = Some((n, Instant::now()));
        }
    }
}

/// Runs one ParentDomain's link until aborted.
async fn uplink(
    client: kube::Client,
    pd: ParentDomain,
    link: Arc<Mutex<Option<Link>>>,
    local: Local,
) {
    let ns = pd.namespace().unwrap_or_default();
    let api: Api<Camera> = Api::namespaced(client.clone(), &ns);
    let (reader, writer) = reflector::store();
    let watch = tokio::spawn(
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects()
            .for_each(|_| futures::future::ready(())),
    );
    let _guard = Abort(watch);
    if reader.wait_until_ready().await.is_err() {
        warn!("camera watch ended before it was ready");
        return;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let e = match session(&client, &pd, &reader, &link, &local).await {
            Ok(()) => Fail::Net("session ended".into()),
            Err(e) => e,
        };
        warn!(parentdomain = %pd.name_any(), error = %e, "link to parent lost; registering again");
        write_status(&client, &pd, Err(&e.to_string()), None, None).await;
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
}

/// Starts and stops one link per ParentDomain (all namespaces), checking every 5 s. A deleted
/// or changed ParentDomain's session is unregistered.
pub async fn supervise(client: kube::Client, local: Local) {
    type Running = (tokio::task::JoinHandle<()>, Arc<Mutex<Option<Link>>>);
    let mut running: HashMap<(String, Option<i64>), Running> = HashMap::new();
    let api: Api<ParentDomain> = Api::all(client.clone());
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let mut want = HashMap::new();
                for pd in list.items {
                    let key = (pd.uid().unwrap_or_default(), pd.metadata.generation);
                    want.insert(key, pd);
                }
                let gone: Vec<_> = running
                    .keys()
                    .filter(|k| !want.contains_key(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    let Some((task, link)) = running.remove(&k) else {
                        continue;
                    };
                    let l = link.lock().ok().and_then(|g| g.clone());
                    let deleted = !want.keys().any(|(uid, _)| *uid == k.0);
                    match l {
                        // Deleted: the link (and its tunnel) lives on while the parent drains.
                        Some(l) if deleted => {
                            tokio::spawn(unregister_draining(l, task));
                        }
                        // Changed: the new generation's link registers again at once (and
                        // replaces this session at the parent).
                        Some(l) => {
                            task.abort();
                            l.withdrawn.store(true, Ordering::Relaxed);
                            if let Err(e) = l.unregister(false).await {
                                warn!(parent = %l.base, error = %e, "unregister");
                            }
                        }
                        None => task.abort(),
                    }
                }
                for (k, pd) in want {
                    if let std::collections::hash_map::Entry::Vacant(e) = running.entry(k) {
                        info!(parentdomain = %pd.name_any(), url = %pd.spec.url, "linking to parent");
                        let link = Arc::new(Mutex::new(None));
                        let task =
                            tokio::spawn(uplink(client.clone(), pd, link.clone(), local.clone()));
                        e.insert((task, link));
                    }
                }
            }
            Err(e) => warn!(error = %e, "listing ParentDomains"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// How long a deleted ParentDomain's link waits for the parent's users to finish what they are
/// watching or downloading through the tunnel before unregistering with `force`.
pub const UNREGISTER_DRAIN: Duration = Duration::from_secs(60);

/// Unregisters from a parent whose ParentDomain was deleted. The parent refuses (409) while
/// proxied answers are still streaming through the tunnel; the link — keepalives and the
/// tunnel, which now refuses new requests because the share is gone — stays up and the
/// unregister is asked again every 2 s, with `force` after [`UNREGISTER_DRAIN`]. Then the link
/// task (and its tunnel) ends.
async fn unregister_draining(l: Link, task: tokio::task::JoinHandle<()>) {
    l.withdrawn.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + UNREGISTER_DRAIN;
    loop {
        let force = tokio::time::Instant::now() >= deadline;
        match l.unregister(force).await {
            Ok(_) => {
                info!(parent = %l.base, forced = force, "unregistered");
                break;
            }
            Err(Fail::Status(409, msg)) if !force => {
                info!(parent = %l.base, reason = %msg, "parent has active sessions through this domain; unregistering when they end");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                warn!(parent = %l.base, error = %e, "unregister");
                break;
            }
        }
    }
    task.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::LabelValue;

    fn camera(name: &str, share: bool, state: Option<CameraState>) -> Camera {
        let mut c: Camera = serde_json::from_value(json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
            "metadata": {"name": name, "namespace": "site"},
            "spec": {"source": {"url": "rtsp://cam/"}, "pool": "p", "expectedBitrateKbps": 1000},
        }))
        .expect("camera");
        if share {
            c.labels_mut().insert("share".into(), "yes".into());
        }
        if let Some(s) = state {
            c.status = Some(serde_json::from_value(json!({ "state": s })).expect("status"));
        }
        c
    }

    #[test]
    fn shared_by_selector_online_when_recording() {
        let cams = [
            camera("b", true, Some(CameraState::Recording)),
            camera("a", true, Some(CameraState::Degraded)),
            camera("c", false, Some(CameraState::Recording)),
            camera("d", true, None),
        ];
        let mut sel = CameraSelector::default();
        sel.match_labels
            .insert("share".into(), LabelValue("yes".into()));
        let s = shared_cameras(cams.iter(), &sel);
        let got: Vec<_> = s.iter().map(|c| (c.name.as_str(), c.online)).collect();
        assert_eq!(got, vec![("a", false), ("b", true), ("d", false)]);
        assert_eq!(
            shared_cameras(cams.iter(), &CameraSelector::default()).len(),
            4
        );
    }
}
