//! The recorder's side: opens a byte stream to a camera at a site through the rendezvous
//! service's relay. The recorder authenticates with a token for its namespace (from a file,
//! e.g. a mounted Secret, in this slice).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::error::{Error, Result};
use crate::proto::{self, Hello, Reply, Token};

/// A stream to a site's camera: read and write it as the camera's TCP connection.
pub type SiteStream = tokio_rustls::client::TlsStream<TcpStream>;

/// How a recorder reaches the rendezvous service.
#[derive(Clone)]
pub struct SiteLink {
    pub rendezvous: String,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub namespace: String,
    pub token: Token,
}

impl std::fmt::Debug for SiteLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteLink")
            .field("rendezvous", &self.rendezvous)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl SiteLink {
    pub fn from_files(
        rendezvous: &str,
        server_name: &str,
        ca_file: &Path,
        token_file: &Path,
        namespace: &str,
    ) -> Result<Self> {
        Ok(SiteLink {
            rendezvous: rendezvous.to_string(),
            server_name: crate::tls::server_name(server_name)?,
            tls: crate::tls::client_config(ca_file)?,
            namespace: namespace.to_string(),
            token: Token::from_file(token_file)?,
        })
    }

    /// Opens a stream to `host:port` at `site` (the gateway checks the address against the
    /// site's camera networks and dials it). Within `timeout` in all.
    pub async fn open(
        &self,
        site: &str,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<SiteStream> {
        tokio::time::timeout(timeout, async {
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
                },
            )
            .await?;
            match proto::recv::<Reply, _>(&mut conn).await? {
                Reply::Open => Ok(conn),
                Reply::Refused { reason } => Err(Error::Refused(reason)),
                Reply::Welcome { .. } => Err(Error::Protocol("unexpected welcome".into())),
            }
        })
        .await
        .map_err(|_| Error::Timeout("opening a stream through the site"))?
    }
}
