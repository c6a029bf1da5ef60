//! The access point's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments, file or RecorderPool are unusable.
    #[error("configuration: {0}")]
    Config(String),

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A stored segment is damaged or not what was expected.
    #[error("mp4: {0}")]
    Mp4(String),

    /// Reading the store directly (segments, init sections).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),

    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),

    #[error("HTTP server: {0}")]
    Http(String),

    /// Listing the catalog, the pool's storage target.
    #[error(transparent)]
    Catalog(#[from] vigil_store::Error),

    #[error(transparent)]
    Media(#[from] vigil_media::Error),

    #[error(transparent)]
    FileConfig(#[from] vigil_config::Error),

    /// Cascaded domains: TLS material, the federation listener.
    #[error("federation: {0}")]
    Federation(String),
    /// A viewer's request is malformed (an SDP offer that cannot be accepted).
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The API server dropped a field written to a Camera (its CRD predates the field).
    #[error(
        "the API server dropped spec.recording.{0}: the Camera CRD is older than this access point"
    )]
    CrdOutdated(&'static str),

    /// Live view: WebRTC, or the recorder's live stream.
    #[error("live: {0}")]
    Live(String),
}

impl Error {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
