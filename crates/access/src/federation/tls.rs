//! Mutual TLS for the federation listener and the child's client (rustls, ring).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::error::{Error, Result};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Federation(format!("{what}: {e}"))
}

/// Certificates from PEM text (never logged).
pub fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let v = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(what, e))?;
    if v.is_empty() {
        return Err(tls_err(what, "no certificate in PEM"));
    }
    Ok(v)
}

pub fn key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| tls_err(what, e))
}

fn roots(ca: &[u8], what: &str) -> Result<RootCertStore> {
    let mut r = RootCertStore::empty();
    for c in certs(ca, what)? {
        r.add(c).map_err(|e| tls_err(what, e))?;
    }
    Ok(r)
}

/// The parent's listener: its server certificate, and client certificates required, signed
/// by `client_ca`.
pub fn server_config(cert: &[u8], key_pem: &[u8], client_ca: &[u8]) -> Result<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(client_ca, "client CA")?),
        provider(),
    )
    .build()
    .map_err(|e| tls_err("client verifier", e))?;
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(cert, "server certificate")?,
            key(key_pem, "server key")?,
        )
        .map_err(|e| tls_err("server certificate", e))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(c)
}

/// The child's client: the parent's CA and our client certificate.
pub fn client_config(ca: &[u8], cert: &[u8], key_pem: &[u8]) -> Result<ClientConfig> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS versions", e))?
        .with_root_certificates(roots(ca, "parent CA")?)
        .with_client_auth_cert(
            certs(cert, "client certificate")?,
            key(key_pem, "client key")?,
        )
        .map_err(|e| tls_err("client certificate", e))
}

/// The common name of a certificate's subject.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = c.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Who is at the other end of a federation connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client certificate's common name (verified against the client CA by rustls).
    pub identity: Option<String>,
}

/// A TLS listener for axum: handshakes run in their own tasks (a slow peer delays nobody) and
/// finished connections queue in a bounded channel.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl TlsListener {
    pub async fn bind(addr: SocketAddr, config: ServerConfig) -> Result<Self> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Http(format!("cannot listen on {addr}: {e}")))?;
        let local = tcp
            .local_addr()
            .map_err(|e| Error::Http(format!("listener address: {e}")))?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let handshakes = Arc::new(tokio::sync::Semaphore::new(256));
            loop {
                let (sock, addr) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "federation accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    continue; // too many handshakes at once: drop the connection
                };
                let (acceptor, conns) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let hs =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await;
                    drop(permit);
                    match hs {
                        Ok(Ok(tls)) => {
                            let identity = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| common_name(c));
                            let _ = conns.send((tls, Peer { addr, identity })).await;
                        }
                        Ok(Err(e)) => debug!(peer = %addr, error = %e, "federation TLS handshake"),
                        Err(_) => debug!(peer = %addr, "federation TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            identity: None,
        })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        s.remote_addr().clone()
    }
}
