//! `vigil-gateway`: at the site, dials out only. Holds a control connection to the rendezvous
//! service; for each `Open` it dials the camera (only inside the site's camera networks, which
//! the rendezvous sends on every connect) and a data connection to the rendezvous, and splices.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::{info, warn};
use vigil_api::netpolicy::{AddressPolicy, ClusterNetworks};

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::proto::{self, Control, GatewayLine, Hello, Reply, Token};

/// Connect (TCP and TLS) timeout towards the rendezvous service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The control connection is dead when no ping came for this long (the service pings every 5 s).
pub const CONTROL_SILENCE: Duration = Duration::from_secs(12);
/// How long dialling a camera may take.
pub const CAMERA_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-direction buffer of a spliced stream.
pub const STREAM_BUFFER: usize = 64 * 1024;

#[derive(Clone)]
pub struct Gateway {
    pub rendezvous: String,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub namespace: String,
    pub site: String,
    pub token: Token,
}

impl Gateway {
    /// Runs forever: reconnects with jittered exponential backoff (0.25 s doubling to 4 s).
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
        let mut down_since: Option<Instant> = None;
        loop {
            let r = self.session(&mut backoff, &mut down_since).await;
            down_since.get_or_insert_with(Instant::now);
            let delay = backoff.next_delay();
            match r {
                Err(Error::Refused(reason)) => {
                    warn!(%reason, retry_in_ms = delay.as_millis() as u64, "the rendezvous service refused this gateway")
                }
                Err(e) => warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "tunnel down"),
                Ok(()) => warn!(retry_in_ms = delay.as_millis() as u64, "tunnel closed"),
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn session(&self, backoff: &mut Backoff, down_since: &mut Option<Instant>) -> Result<()> {
        let started = Instant::now();
        let mut conn = crate::tls::connect(
            &self.rendezvous,
            &self.server_name,
            &self.tls,
            CONNECT_TIMEOUT,
        )
        .await?;
        proto::send(
            &mut conn,
            &Hello::Gateway {
                namespace: self.namespace.clone(),
                site: self.site.clone(),
                token: self.token.clone(),
            },
        )
        .await?;
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, proto::recv::<Reply, _>(&mut conn))
            .await
            .map_err(|_| Error::Timeout("the rendezvous service's welcome"))??;
        let nets = match reply {
            Reply::Welcome { camera_networks } => camera_networks,
            Reply::Refused { reason } => return Err(Error::Refused(reason)),
            Reply::Open => return Err(Error::Protocol("unexpected reply".into())),
        };
        // The site's own LAN is what the gateway serves: only the cluster-range defaults of the
        // recorder's policy make no sense here, so no cluster networks are protected.
        let policy = Arc::new(
            AddressPolicy::new(&nets, &ClusterNetworks::default())
                .map_err(|e| Error::Config(format!("the site's cameraNetworks: {e}")))?,
        );
        backoff.reset();
        info!(
            connect_ms = started.elapsed().as_secs_f64() * 1e3,
            down_ms = down_since.take().map(|d| d.elapsed().as_millis() as u64),
            "tunnel up (relay)"
        );
        let (mut rd, mut wr) = tokio::io::split(conn);
        loop {
            let c = tokio::time::timeout(CONTROL_SILENCE, proto::recv::<Control, _>(&mut rd))
                .await
                .map_err(|_| Error::Timeout("waiting for the rendezvous service (no ping)"))??;
            match c {
                Control::Ping { seq } => proto::send(&mut wr, &GatewayLine::Pong { seq }).await?,
                Control::Open { stream, host, port } => {
                    let me = self.clone();
                    let policy = policy.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.open(&policy, stream, &host, port).await {
                            warn!(error = %e, "stream failed");
                        }
                    });
                }
            }
        }
    }

    /// One camera connection: dial the camera and the rendezvous at once, report, splice.
    async fn open(
        &self,
        policy: &AddressPolicy,
        stream: String,
        host: &str,
        port: u16,
    ) -> Result<()> {
        let (data, camera) = tokio::join!(
            crate::tls::connect(
                &self.rendezvous,
                &self.server_name,
                &self.tls,
                CONNECT_TIMEOUT
            ),
            dial_camera(policy, host, port)
        );
        let mut data = data?;
        proto::send(
            &mut data,
            &Hello::GatewayData {
                namespace: self.namespace.clone(),
                site: self.site.clone(),
                token: self.token.clone(),
                stream,
            },
        )
        .await?;
        let mut camera = match camera {
            Ok(c) => c,
            Err(e) => {
                let reason = e.to_string();
                proto::send(&mut data, &GatewayLine::Failed { reason }).await?;
                return Err(e);
            }
        };
        proto::send(&mut data, &GatewayLine::Connected).await?;
        tokio::io::copy_bidirectional_with_sizes(
            &mut data,
            &mut camera,
            STREAM_BUFFER,
            STREAM_BUFFER,
        )
        .await
        .map_err(|e| Error::io("relaying", e))?;
        Ok(())
    }
}

/// Resolves `host` once, checks every address against the site's camera networks, and
/// connects to the first allowed one.
pub async fn dial_camera(policy: &AddressPolicy, host: &str, port: u16) -> Result<TcpStream> {
    let addr = resolve(policy, host, port).await?;
    let s = tokio::time::timeout(CAMERA_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout("connecting to the camera"))?
        .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn resolve(policy: &AddressPolicy, host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(CAMERA_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::Timeout("name lookup"))?
            .map_err(|e| Error::io("name lookup", e))?
            .collect(),
    };
    choose(policy, addrs)
}

/// The first address the policy allows; the first refusal otherwise.
pub fn choose(
    policy: &AddressPolicy,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<SocketAddr> {
    let mut refused = None;
    for a in addrs {
        match policy.check(a.ip()) {
            Ok(()) => return Ok(a),
            Err(refusal) => {
                refused.get_or_insert(Error::AddressNotAllowed {
                    addr: a.ip(),
                    refusal,
                });
            }
        }
    }
    Err(refused.unwrap_or_else(|| Error::Refused("the name resolves to no address".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::CameraNetworks;

    #[tokio::test]
    async fn dials_only_inside_the_site_networks() {
        let p = AddressPolicy::new(
            &CameraNetworks {
                allow: vec!["192.168.50.0/24".into()],
                deny: vec!["192.168.50.1/32".into()],
            },
            &ClusterNetworks::default(),
        )
        .unwrap();
        assert!(choose(&p, ["192.168.50.2:554".parse().unwrap()]).is_ok());
        for refused in [
            "192.168.50.1:554",
            "192.168.51.2:554",
            "10.0.0.1:22",
            "127.0.0.1:554",
        ] {
            assert!(
                matches!(
                    choose(&p, [refused.parse().unwrap()]),
                    Err(Error::AddressNotAllowed { .. })
                ),
                "{refused}"
            );
        }
        // A name is resolved and checked too: localhost is loopback, not in the site's networks.
        assert!(matches!(
            dial_camera(&p, "localhost", 554).await,
            Err(Error::AddressNotAllowed { .. })
        ));
    }
}
