use std::net::IpAddr;

use vigil_api::netpolicy::Refusal;

/// Everything that goes wrong in the site tunnel. Tokens never appear in these texts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    /// The other side (or this side's policy) refused: unknown or revoked site, a recorder not
    /// allowed for the site's namespace, a site not connected, an address outside the site's
    /// camera networks.
    #[error("refused: {0}")]
    Refused(String),
    #[error("{addr} is not in the site's camera networks: {refusal}")]
    AddressNotAllowed { addr: IpAddr, refusal: Refusal },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("{0} timed out")]
    Timeout(&'static str),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
