//! Cascaded domains: a parent access point that child access points register with (see
//! `docs/cascade.md`).
//!
//! - Parent (`--federation-listen`): serves the federation protocol over HTTPS with mutual
//!   TLS, accepts children its ChildDomains name, tracks their catalogs and liveness, writes
//!   the ChildDomain status, and adds their cameras to `GET /api/v1/cameras`.
//! - Child (`--federation-uplink`): registers with the parent of every ParentDomain and pushes
//!   the shared cameras (full, then deltas) and keepalives.
//!
//! The protocol's rules live in [`state`] (pure, unit tested); [`parent`] and [`uplink`] are
//! the I/O around them.

pub mod parent;
pub mod protocol;
pub mod state;
pub mod tls;
pub mod tunnel;
pub mod uplink;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use futures::StreamExt;
use serde_json::Value;
use tracing::info;

use crate::auth::User;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Parent: serve the federation protocol (HTTPS, client certificates required) here.
    #[arg(long, requires_all = ["federation_cert", "federation_key", "federation_client_ca"])]
    pub federation_listen: Option<SocketAddr>,
    /// Parent: the federation listener's certificate (PEM).
    #[arg(long)]
    pub federation_cert: Option<PathBuf>,
    /// Parent: its private key (PEM).
    #[arg(long)]
    pub federation_key: Option<PathBuf>,
    /// Parent: the CA that signs children's client certificates (PEM).
    #[arg(long)]
    pub federation_client_ca: Option<PathBuf>,
    /// Parent: the namespace of the ChildDomains (default: all namespaces).
    #[arg(long)]
    pub federation_namespace: Option<String>,
    /// Parent: how often children send keepalives.
    #[arg(long, default_value_t = 2000)]
    pub federation_keepalive_ms: u64,
    /// Parent: a child silent this long is offline (with its cameras).
    #[arg(long, default_value_t = 8000)]
    pub federation_timeout_ms: u64,
    /// Child: register with the parent of every ParentDomain and share its cameras.
    #[arg(long)]
    pub federation_uplink: bool,
}

/// The running federation parts of an access point.
pub struct Federation {
    parent: Option<Arc<parent::Parent>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Child: the routes a parent's tunnelled requests are answered by (set once the access
    /// point's state exists; the uplinks open their tunnels after that).
    tunnel_app: Arc<OnceLock<axum::Router>>,
}

impl Drop for Federation {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn read(p: &Option<PathBuf>, what: &str) -> Result<Vec<u8>> {
    let p = p
        .as_ref()
        .ok_or_else(|| Error::Config(format!("--federation-{what} is required")))?;
    std::fs::read(p).map_err(|e| Error::io("reading", p, e))
}

impl Federation {
    /// Starts what the arguments ask for (nothing: `None`). `client` is the access point's
    /// API client if it has one; `check_users`: whether users are authenticated (then their
    /// rights on remote cameras are checked with SubjectAccessReviews).
    pub async fn start(
        a: &Args,
        client: Option<kube::Client>,
        check_users: bool,
    ) -> Result<Option<Self>> {
        if a.federation_listen.is_none() && !a.federation_uplink {
            return Ok(None);
        }
        let client = match client {
            Some(c) => c,
            None => {
                vigil_api::install_crypto_provider();
                kube::Client::try_default().await.map_err(|e| {
                    Error::Config(format!("federation needs the Kubernetes API: {e}"))
                })?
            }
        };
        let mut tasks = vec![];
        let mut parent = None;
        let tunnel_app = Arc::new(OnceLock::new());
        if let Some(addr) = a.federation_listen {
            let cfg = tls::server_config(
                &read(&a.federation_cert, "cert")?,
                &read(&a.federation_key, "key")?,
                &read(&a.federation_client_ca, "client-ca")?,
            )?;
            let p = Arc::new(parent::Parent::new(
                client.clone(),
                a.federation_namespace.clone(),
                a.federation_keepalive_ms.max(100),
                a.federation_timeout_ms.max(a.federation_keepalive_ms * 2),
                check_users,
            ));
            let listener = tls::TlsListener::bind(addr, cfg).await?;
            info!(listen = %addr, "federation listener (mutual TLS)");
            let app = parent::router(p.clone()).into_make_service_with_connect_info::<tls::Peer>();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "federation listener stopped");
                }
            }));
            tasks.push(tokio::spawn(parent::status_loop(p.clone())));
            parent = Some(p);
        }
        if a.federation_uplink {
            let local = uplink::Local {
                tunnel_app: tunnel_app.clone(),
                parent: parent.clone(),
            };
            tasks.push(tokio::spawn(uplink::supervise(client, local)));
        }
        Ok(Some(Federation {
            parent,
            tasks,
            tunnel_app,
        }))
    }

    /// Child: the routes that answer a parent's tunnelled requests (the playback routes of a
    /// state without user authentication; `tunnel.rs` bounds what they are asked).
    pub fn set_tunnel_app(&self, app: axum::Router) {
        let _ = self.tunnel_app.set(app);
    }

    /// Parent: a user's request for a remote camera, served through its child's tunnel.
    pub async fn proxy(
        &self,
        user: Option<&User>,
        dns: &str,
        domain: &str,
        cam: parent::RemoteRequest<'_>,
    ) -> std::result::Result<axum::response::Response, (axum::http::StatusCode, String)> {
        match &self.parent {
            Some(p) => p.proxy(user, dns, domain, cam).await,
            None => Err((
                axum::http::StatusCode::NOT_FOUND,
                "this access point has no child domains".into(),
            )),
        }
    }

    /// Parent: live view of a child domain's camera `ns/name` for a user who may (the `live`
    /// right, checked now and by every domain on the way on every opening): the opener of its
    /// frames through the child's tunnel, and its first opening (so that a camera that cannot
    /// be watched is refused at once, not after the WebRTC session is up).
    pub async fn remote_live(
        &self,
        user: Option<&User>,
        dns: &str,
        domain: &str,
        ns: &str,
        name: &str,
    ) -> std::result::Result<(crate::live::Opener, crate::live::Opened), (StatusCode, String)> {
        let p = self.parent.clone().ok_or((
            StatusCode::NOT_FOUND,
            "this access point has no child domains".to_string(),
        ))?;
        let (child, via) = p
            .authorize(user, dns, domain, vigil_api::Right::Live)
            .await?;
        let target = Arc::new(RemoteLive {
            parent: p,
            dns: dns.to_string(),
            child,
            via,
            ns: ns.to_string(),
            name: name.to_string(),
            user: user.map(|u| u.name.clone()),
        });
        let first = target.open().await?;
        let open: crate::live::Opener = Arc::new(move || {
            let t = target.clone();
            Box::pin(async move {
                t.open()
                    .await
                    .map_err(|(code, msg)| Error::Live(format!("{code}: {msg}")))
            })
        });
        Ok((open, first))
    }

    /// Remote cameras for `GET /api/v1/cameras` (none unless this is a parent).
    pub async fn remote_cameras(&self, user: Option<&User>) -> Result<Vec<Value>> {
        match &self.parent {
            Some(p) => p.remote_cameras(user).await,
            None => Ok(vec![]),
        }
    }
}

/// A child domain's camera a parent user watches live.
struct RemoteLive {
    parent: Arc<parent::Parent>,
    dns: String,
    child: String,
    via: Vec<String>,
    ns: String,
    name: String,
    user: Option<String>,
}

impl RemoteLive {
    /// Its frames, through the child's tunnel (the child sends them on if the camera is
    /// further down).
    async fn open(&self) -> std::result::Result<crate::live::Opened, (StatusCode, String)> {
        let req = parent::RemoteRequest {
            ns: &self.ns,
            name: &self.name,
            rest: "live.frames",
            query: None,
        };
        let resp = self
            .parent
            .onward(
                &self.dns,
                &self.child,
                &self.via,
                vigil_api::Right::Live,
                req,
                self.user.as_deref(),
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            // The refusal's JSON message, bounded.
            let body = axum::body::to_bytes(resp.into_body(), 4096)
                .await
                .unwrap_or_default();
            let msg = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("the child domain answered {status}"));
            return Err((status, msg));
        }
        let mut from = vec![self.child.clone()];
        from.extend(self.via.iter().cloned());
        Ok(crate::live::Opened {
            from: format!("domain {}/{}", self.dns, from.join(":")),
            body: resp
                .into_body()
                .into_data_stream()
                .map(|r| r.map_err(|e| Error::Live(format!("child domain: {e}"))))
                .boxed(),
        })
    }
}
