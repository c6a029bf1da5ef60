//! TLS for every tunnel connection: the rendezvous service presents a certificate; gateways
//! and recorders trust only the CA in their configuration (pinned, not the system store).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, Result};

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rendezvous service's TLS configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// A client that trusts only the CA certificates in `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?
    {
        let c = c.map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate", ca.display())));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The name the rendezvous certificate must carry.
pub fn server_name(name: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(name.to_string())
        .map_err(|_| Error::Config(format!("not a valid TLS server name: {name}")))
}

/// Connects to the rendezvous service and completes the TLS handshake, within `timeout`.
pub async fn connect(
    addr: &str,
    name: &ServerName<'static>,
    cfg: &Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    tokio::time::timeout(timeout, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| Error::io(format!("connecting to the rendezvous service {addr}"), e))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| Error::Tls(format!("handshake with {addr}: {e}")))
    })
    .await
    .map_err(|_| Error::Timeout("connecting to the rendezvous service"))?
}
