//! The recorder's side: opens a byte stream to a camera at a site. The recorder authenticates
//! with a token for its namespace (from a file, e.g. a mounted Secret, in this slice). Two paths
//! are raced for each stream (`docs/sites.md`): the relay, and the LAN path, for which the
//! recorder listens (only while it opens the stream) and offers its addresses, its certificate
//! and a per-stream secret through the rendezvous service; the gateway decides which path the
//! stream takes and sends `Connected` on that one only.

use std::path::Path as FsPath;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::lan::{self, LanIdentity, Path};
use crate::proto::{self, GatewayLine, Hello, LanHello, LanOffer, Reply, Token};

/// A stream to a site's camera: read and write it as the camera's TCP connection.
pub enum SiteStream {
    /// The relay over TCP (TLS), the fallback.
    Relay(tokio_rustls::client::TlsStream<TcpStream>),
    Lan(tokio_rustls::server::TlsStream<TcpStream>),
    Direct(Box<crate::direct::QuicStream>),
    /// The relay over UDP: QUIC end to end, the rendezvous forwarding datagrams.
    RelayUdp(Box<crate::direct::QuicStream>),
}

impl SiteStream {
    /// The path this stream took.
    pub fn path(&self) -> Path {
        match self {
            SiteStream::Relay(_) | SiteStream::RelayUdp(_) => Path::Relay,
            SiteStream::Lan(_) => Path::Lan,
            SiteStream::Direct(_) => Path::Direct,
        }
    }

    /// What carries it: `tcp` (TLS over TCP) or `udp` (QUIC).
    pub fn transport(&self) -> &'static str {
        match self {
            SiteStream::Relay(_) | SiteStream::Lan(_) => "tcp",
            SiteStream::Direct(_) | SiteStream::RelayUdp(_) => "udp",
        }
    }
}

impl std::fmt::Debug for SiteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SiteStream({} over {})", self.path(), self.transport())
    }
}

impl AsyncRead for SiteStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SiteStream::Relay(s) => Pin::new(s).poll_read(cx, buf),
            SiteStream::Lan(s) => Pin::new(s).poll_read(cx, buf),
            SiteStream::Direct(s) | SiteStream::RelayUdp(s) => {
                Pin::new(s.as_mut()).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for SiteStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SiteStream::Relay(s) => Pin::new(s).poll_write(cx, buf),
            SiteStream::Lan(s) => Pin::new(s).poll_write(cx, buf),
            SiteStream::Direct(s) | SiteStream::RelayUdp(s) => {
                Pin::new(s.as_mut()).poll_write(cx, buf)
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SiteStream::Relay(s) => Pin::new(s).poll_flush(cx),
            SiteStream::Lan(s) => Pin::new(s).poll_flush(cx),
            SiteStream::Direct(s) | SiteStream::RelayUdp(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SiteStream::Relay(s) => Pin::new(s).poll_shutdown(cx),
            SiteStream::Lan(s) => Pin::new(s).poll_shutdown(cx),
            SiteStream::Direct(s) | SiteStream::RelayUdp(s) => {
                Pin::new(s.as_mut()).poll_shutdown(cx)
            }
        }
    }
}

/// How long a LAN connection may take for TLS and its hello.
const LAN_HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// How a recorder reaches the rendezvous service.
#[derive(Clone)]
pub struct SiteLink {
    pub rendezvous: String,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub namespace: String,
    pub token: Token,
    /// The LAN and direct paths and the relay over UDP: this recorder's certificate for them;
    /// `None`: the relay over TCP only.
    pub lan: Option<Arc<LanIdentity>>,
    /// Whether the direct (hole-punched) path is offered (with `lan`).
    pub direct: bool,
    /// Whether the relay over UDP is asked for (with `lan`).
    pub relay_udp: bool,
}

impl std::fmt::Debug for SiteLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteLink")
            .field("rendezvous", &self.rendezvous)
            .field("namespace", &self.namespace)
            .field("lan", &self.lan.is_some())
            .field("direct", &self.direct)
            .field("relay_udp", &self.relay_udp)
            .finish_non_exhaustive()
    }
}

impl SiteLink {
    /// A link with the LAN and direct paths on (see [`SiteLink::relay_only`]).
    pub fn from_files(
        rendezvous: &str,
        server_name: &str,
        ca_file: &FsPath,
        token_file: &FsPath,
        namespace: &str,
    ) -> Result<Self> {
        Ok(SiteLink {
            rendezvous: rendezvous.to_string(),
            server_name: crate::tls::server_name(server_name)?,
            tls: crate::tls::client_config(ca_file)?,
            namespace: namespace.to_string(),
            token: Token::from_file(token_file)?,
            lan: Some(Arc::new(LanIdentity::generate()?)),
            direct: true,
            relay_udp: true,
        })
    }

    /// The same link with the LAN and direct paths and the relay over UDP off: every stream goes
    /// through the relay over TCP.
    pub fn relay_only(mut self) -> Self {
        self.lan = None;
        self
    }

    /// The same link without the direct path (the LAN path and both relays stay).
    pub fn without_direct(mut self) -> Self {
        self.direct = false;
        self
    }

    /// The same link without the relay over UDP (the relay over TCP stays).
    pub fn without_relay_udp(mut self) -> Self {
        self.relay_udp = false;
        self
    }

    /// Opens a stream to `host:port` at `site` (the gateway checks the address against the
    /// site's camera networks and dials it), on the path the gateway chose. Within `timeout`.
    pub async fn open(
        &self,
        site: &str,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<SiteStream> {
        let started = std::time::Instant::now();
        let s = tokio::time::timeout(timeout, self.open_inner(site, host, port, timeout))
            .await
            .map_err(|_| Error::Timeout("opening a stream through the site"))??;
        info!(%site, path = %s.path(), transport = s.transport(), open_ms = started.elapsed().as_secs_f64() * 1e3, "site stream open");
        Ok(s)
    }

    async fn open_inner(
        &self,
        site: &str,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<SiteStream> {
        let mut offer = LanOffer::default();
        let mut lan_wait = AbortOnDrop(None);
        let mut direct_wait = AbortOnDrop(None);
        let mut puncher = None;
        let mut relay_server = None;
        // One UDP socket for the direct path and the relay over UDP: its reflexive address and
        // how its NAT maps (a symmetric NAT: no direct offer, the relay over UDP still works).
        let direct_sock = async {
            match &self.lan {
                Some(_) if self.direct || self.relay_udp => {
                    let server = crate::direct::udp_server(&self.rendezvous).await?;
                    let sock = crate::direct::socket().await?;
                    let (refl, mapping) = crate::direct::reflexive_at(&sock, server).await?;
                    Ok::<_, Error>(Some((sock, refl, mapping, server)))
                }
                _ => Ok(None),
            }
        };
        let connect = crate::tls::connect(&self.rendezvous, &self.server_name, &self.tls, timeout);
        // Learning the reflexive address (one UDP round trip) overlaps the TLS handshake.
        let (conn, direct_sock) = tokio::join!(connect, direct_sock);
        let mut conn = conn?;
        if let Some(id) = &self.lan {
            let secret = lan::random_secret()?;
            offer.lan_cert = Some(id.cert_hex.clone());
            offer.lan_secret = Some(secret.clone());
            // The LAN offer: a listener for this stream only, on every interface.
            let nets = lan::local_networks();
            if !nets.is_empty() {
                match TcpListener::bind("0.0.0.0:0").await {
                    Ok(l) => {
                        let port = l.local_addr().map_err(|e| Error::io("LAN listener", e))?;
                        offer.lan = lan::candidates(&nets, port.port());
                        let acceptor = tokio_rustls::TlsAcceptor::from(id.server.clone());
                        lan_wait.0 = Some(tokio::spawn(accept_lan(l, acceptor, secret.clone())));
                    }
                    Err(e) => debug!(error = %e, "no LAN listener"),
                }
            }
            // The direct offer: QUIC on the socket whose reflexive address we learnt.
            match direct_sock {
                Ok(Some((sock, refl, mapping, server))) => {
                    let started = sock.into_std().and_then(|s| Ok((s.try_clone()?, s)));
                    match started {
                        Ok((clone, std_sock)) => {
                            let (cert, key) = id.cert_and_key();
                            match crate::direct::server_endpoint(std_sock, cert, key) {
                                Ok(ep) => {
                                    if self.direct && mapping != crate::direct::Mapping::Dependent {
                                        offer.reflexive = Some(refl);
                                    } else {
                                        debug!(?mapping, "no direct offer");
                                    }
                                    offer.relay_udp = self.relay_udp;
                                    relay_server = self.relay_udp.then_some(server);
                                    puncher = Some(clone);
                                    direct_wait.0 =
                                        Some(tokio::spawn(accept_direct(ep, secret, relay_server)));
                                }
                                Err(e) => debug!(error = %e, "no direct path"),
                            }
                        }
                        Err(e) => debug!(error = %e, "no direct path"),
                    }
                }
                Ok(None) => {}
                Err(e) => debug!(error = %e, "no direct path (no reflexive address)"),
            }
        }
        proto::send(
            &mut conn,
            &Hello::Recorder {
                namespace: self.namespace.clone(),
                token: self.token.clone(),
                site: site.to_string(),
                host: host.to_string(),
                port,
                lan: offer,
            },
        )
        .await?;
        let relay = async {
            loop {
                match proto::recv::<Reply, _>(&mut conn).await? {
                    Reply::Punch { reflexive } => match puncher.as_ref().map(|s| s.try_clone()) {
                        Some(Ok(sock)) => crate::direct::punch(sock, reflexive),
                        Some(Err(e)) => debug!(error = %e, "no punch"),
                        None => debug!("a punch without a direct offer; ignored"),
                    },
                    Reply::UdpRelay { pairing } => {
                        let id = crate::udprelay::parse_id(&pairing)
                            .ok_or_else(|| Error::Protocol("malformed pairing".into()))?;
                        match (puncher.as_ref().map(|s| s.try_clone()), relay_server) {
                            (Some(Ok(sock)), Some(server)) => {
                                crate::udprelay::register_recorder(sock, server, id)
                            }
                            _ => debug!("a UDP relay pairing without an offer; ignored"),
                        }
                    }
                    other => return Ok::<_, Error>(other),
                }
            }
        };
        let other_paths = async {
            tokio::select! {
                r = wait(&mut lan_wait) => r,
                r = wait(&mut direct_wait) => r,
            }
        };
        tokio::pin!(other_paths);
        tokio::select! {
            r = relay => {
                match r? {
                    Reply::Open => Ok(SiteStream::Relay(conn)),
                    Reply::Elsewhere { path } if Path::parse(&path).is_some() => other_paths.await,
                    Reply::Elsewhere { path } => Err(Error::Protocol(format!("the stream went to an unknown path {path}"))),
                    Reply::Refused { reason } => Err(Error::Refused(reason)),
                    Reply::Welcome { .. } | Reply::Punch { .. } | Reply::UdpRelay { .. } => Err(Error::Protocol("unexpected reply".into())),
                }
            }
            r = &mut other_paths => r,
        }
    }
}

/// Aborts a path's task however the open ends.
struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<SiteStream>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// The task's result; pending forever when there is no task.
async fn wait(t: &mut AbortOnDrop) -> Result<SiteStream> {
    match t.0.as_mut() {
        Some(h) => h
            .await
            .unwrap_or_else(|e| Err(Error::Protocol(format!("task: {e}")))),
        None => std::future::pending().await,
    }
}

/// Checks the gateway's hello on a LAN or direct connection (the stream's secret), then waits
/// for `Connected` (the stream) or `Failed` (the camera could not be dialled). `Ok(None)`: not
/// the gateway, or the gateway chose another path.
async fn gateway_hello<S: AsyncRead + AsyncWrite + Unpin>(
    mut c: S,
    secret: &Token,
) -> Result<Option<S>> {
    let h: LanHello = tokio::time::timeout(LAN_HELLO_TIMEOUT, proto::recv(&mut c))
        .await
        .map_err(|_| Error::Timeout("the gateway's hello"))??;
    if !h.secret.matches(secret) {
        debug!("a connection with a wrong secret dropped");
        return Ok(None);
    }
    match proto::recv::<GatewayLine, _>(&mut c).await {
        Ok(GatewayLine::Connected) => Ok(Some(c)),
        Ok(GatewayLine::Failed { reason }) => Err(Error::Refused(reason)),
        _ => Ok(None),
    }
}

/// Waits on this stream's QUIC endpoint for the gateway: the direct path, or the relay over UDP
/// (a connection from the rendezvous service's UDP address `relay`). Never returns but with the
/// stream or the gateway's `Failed`.
async fn accept_direct(
    ep: quinn::Endpoint,
    secret: Token,
    relay: Option<std::net::SocketAddr>,
) -> Result<SiteStream> {
    let mut set = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            inc = ep.accept() => {
                let Some(inc) = inc else { return std::future::pending().await };
                let secret = secret.clone();
                let ep = ep.clone();
                set.spawn(async move {
                    let conn = match tokio::time::timeout(crate::direct::HANDSHAKE_TIMEOUT, inc).await {
                        Ok(Ok(c)) => c,
                        _ => return Ok(None),
                    };
                    let Ok(Ok((send, recv))) = tokio::time::timeout(LAN_HELLO_TIMEOUT, conn.accept_bi()).await else {
                        return Ok(None);
                    };
                    let relayed = Some(conn.remote_address()) == relay;
                    let q = crate::direct::QuicStream { send, recv, conn, endpoint: ep };
                    Ok(gateway_hello(q, &secret).await?.map(|q| {
                        if relayed {
                            SiteStream::RelayUdp(Box::new(q))
                        } else {
                            SiteStream::Direct(Box::new(q))
                        }
                    }))
                });
            }
            Some(r) = set.join_next(), if !set.is_empty() => match r {
                Ok(Ok(Some(s))) => return Ok(s),
                Ok(Err(e @ Error::Refused(_))) => return Err(e),
                _ => {}
            },
        }
    }
}

/// Waits on the LAN listener for the gateway (TLS, then [`gateway_hello`]). Anyone else is
/// dropped. Never returns but with the stream or the gateway's `Failed`.
async fn accept_lan(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    secret: Token,
) -> Result<SiteStream> {
    let mut set = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            a = listener.accept() => {
                let Ok((tcp, peer)) = a else { continue };
                let acceptor = acceptor.clone();
                let secret = secret.clone();
                set.spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let c = match tokio::time::timeout(LAN_HELLO_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(c)) => c,
                        _ => { debug!(%peer, "LAN connection dropped"); return Ok(None) }
                    };
                    Ok(gateway_hello(c, &secret).await?.map(SiteStream::Lan))
                });
            }
            Some(r) = set.join_next(), if !set.is_empty() => match r {
                Ok(Ok(Some(s))) => return Ok(s),
                Ok(Err(e @ Error::Refused(_))) => return Err(e),
                _ => {}
            },
        }
    }
}
