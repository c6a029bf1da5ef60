//! The jobs crate's one error type. Messages never carry credentials: camera errors are built
//! from text that went through `vigil_api::redact` first.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments, file, RecorderPool, Camera or Backfill are unusable.
    #[error("configuration: {0}")]
    Config(String),

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Talking to a camera's edge storage failed. The text is already redacted.
    #[error("camera: {0}")]
    Rtsp(String),

    /// The camera sent something that cannot be stored.
    #[error("stream: {0}")]
    Stream(String),

    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error(transparent)]
    Store(#[from] vigil_store::Error),

    #[error(transparent)]
    Media(#[from] vigil_media::Error),

    #[error(transparent)]
    FileConfig(#[from] vigil_config::Error),
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
