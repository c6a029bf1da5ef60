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
use tracing::debug;

use crate::error::{Error, Result};
use crate::lan::{self, LanIdentity, Path};
use crate::proto::{self, GatewayLine, Hello, LanHello, LanOffer, Reply, Token};

/// A stream to a site's camera: read and write it as the camera's TCP connection.
pub enum SiteStream {
    Relay(tokio_rustls::client::TlsStream<TcpStream>),
    Lan(tokio_rustls::server::TlsStream<TcpStream>),
}

impl SiteStream {
    /// The path this stream took.
    pub fn path(&self) -> Path {
        match self {
            SiteStream::Relay(_) => Path::Relay,
            SiteStream::Lan(_) => Path::Lan,
        }
    }
}

impl std::fmt::Debug for SiteStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SiteStream({})", self.path())
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
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SiteStream::Relay(s) => Pin::new(s).poll_flush(cx),
            SiteStream::Lan(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SiteStream::Relay(s) => Pin::new(s).poll_shutdown(cx),
            SiteStream::Lan(s) => Pin::new(s).poll_shutdown(cx),
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
    /// The LAN path: this recorder's certificate for it; `None` turns the LAN path off.
    pub lan: Option<Arc<LanIdentity>>,
}

impl std::fmt::Debug for SiteLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteLink")
            .field("rendezvous", &self.rendezvous)
            .field("namespace", &self.namespace)
            .field("lan", &self.lan.is_some())
            .finish_non_exhaustive()
    }
}

impl SiteLink {
    /// A link with the LAN path on (see [`SiteLink::without_lan`]).
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
        })
    }

    /// The same link with the LAN path off: every stream goes through the relay.
    pub fn without_lan(mut self) -> Self {
        self.lan = None;
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
        tokio::time::timeout(timeout, self.open_inner(site, host, port, timeout))
            .await
            .map_err(|_| Error::Timeout("opening a stream through the site"))?
    }

    async fn open_inner(
        &self,
        site: &str,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<SiteStream> {
        // The LAN offer: a listener for this stream only, on every interface.
        let mut offer = LanOffer::default();
        let mut lan_wait = None;
        if let Some(id) = &self.lan {
            let nets = lan::local_networks();
            if !nets.is_empty() {
                match TcpListener::bind("0.0.0.0:0").await {
                    Ok(l) => {
                        let secret = lan::random_secret()?;
                        let port = l.local_addr().map_err(|e| Error::io("LAN listener", e))?;
                        offer = LanOffer {
                            lan: lan::candidates(&nets, port.port()),
                            lan_cert: Some(id.cert_hex.clone()),
                            lan_secret: Some(secret.clone()),
                        };
                        let acceptor = tokio_rustls::TlsAcceptor::from(id.server.clone());
                        lan_wait = Some(tokio::spawn(accept_lan(l, acceptor, secret)));
                    }
                    Err(e) => debug!(error = %e, "no LAN listener; relay only"),
                }
            }
        }
        // Aborts the LAN listener however this function ends.
        struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<SiteStream>>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                if let Some(h) = &self.0 {
                    h.abort();
                }
            }
        }
        let mut lan_wait = AbortOnDrop(lan_wait);
        let relay = async {
            let mut conn =
                crate::tls::connect(&self.rendezvous, &self.server_name, &self.tls, timeout)
                    .await?;
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
            let reply = proto::recv::<Reply, _>(&mut conn).await?;
            Ok::<_, Error>((conn, reply))
        };
        let lan_done = async {
            match lan_wait.0.as_mut() {
                Some(h) => h
                    .await
                    .unwrap_or_else(|e| Err(Error::Protocol(format!("task: {e}")))),
                None => std::future::pending().await,
            }
        };
        tokio::pin!(lan_done);
        tokio::select! {
            r = relay => {
                let (conn, reply) = r?;
                match reply {
                    Reply::Open => Ok(SiteStream::Relay(conn)),
                    Reply::Elsewhere { path } if path == Path::Lan.as_str() => lan_done.await,
                    Reply::Elsewhere { path } => Err(Error::Protocol(format!("the stream went to an unknown path {path}"))),
                    Reply::Refused { reason } => Err(Error::Refused(reason)),
                    Reply::Welcome { .. } => Err(Error::Protocol("unexpected welcome".into())),
                }
            }
            r = &mut lan_done => r,
        }
    }
}

/// Waits on the LAN listener for the gateway: TLS, the stream's secret, then `Connected` (the
/// stream) or `Failed` (the camera could not be dialled). Anyone else is dropped; a connection
/// the gateway closes (it chose the relay) is forgotten. Never returns otherwise.
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
                    let hello = tokio::time::timeout(LAN_HELLO_TIMEOUT, async {
                        let mut c = acceptor.accept(tcp).await.map_err(|e| Error::Tls(e.to_string()))?;
                        let h: LanHello = proto::recv(&mut c).await?;
                        Ok::<_, Error>((c, h))
                    }).await;
                    let (mut c, h) = match hello {
                        Ok(Ok(x)) => x,
                        Ok(Err(e)) => { debug!(%peer, error = %e, "LAN connection dropped"); return Ok(None) }
                        Err(_) => return Ok(None),
                    };
                    if !h.secret.matches(&secret) {
                        debug!(%peer, "LAN connection with a wrong secret dropped");
                        return Ok(None);
                    }
                    match proto::recv::<GatewayLine, _>(&mut c).await {
                        Ok(GatewayLine::Connected) => Ok(Some(SiteStream::Lan(c))),
                        Ok(GatewayLine::Failed { reason }) => Err(Error::Refused(reason)),
                        _ => Ok(None),
                    }
                });
            }
            Some(r) = set.join_next(), if !set.is_empty() => match r {
                Ok(Ok(Some(s))) => return Ok(s),
                Ok(Err(e)) => return Err(e),
                _ => {}
            },
        }
    }
}
