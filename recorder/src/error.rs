//! The crate's one error type.
//!
//! Messages must never carry credentials: RTSP errors are built from text that went through
//! `redact` first, and URLs are only ever shown redacted.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (file, flags, environment, RecorderPool) is unusable.
    #[error("configuration: {0}")]
    Config(String),

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Talking to a camera failed. The text is already redacted.
    #[error("camera: {0}")]
    Rtsp(String),

    /// The camera made the session exceed a receive limit (message, header or frame size) and
    /// the session was closed. The text is the recorder's own, never the camera's bytes.
    #[error("camera: {0}")]
    LimitExceeded(String),

    /// A session panicked (a bug in the RTSP client or a parser it uses, reached with what the
    /// camera sent); the camera's task survives it.
    #[error("camera: the session failed inside the RTSP client (a bug, see the log)")]
    SessionPanicked,

    /// The camera sent something the recorder cannot store (unsupported codec, no keyframe).
    #[error("stream: {0}")]
    Stream(String),

    #[error("object store: {0}")]
    Store(#[from] object_store::Error),

    #[error("object key: {0}")]
    Layout(String),

    /// A buffered segment file is damaged beyond recovery.
    #[error("mp4: {0}")]
    Mp4(String),

    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),

    #[error("Kubernetes watch: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),

    #[error("HTTP server: {0}")]
    Http(String),

    /// Key layout, catalog listing, storage target.
    #[error(transparent)]
    Catalog(#[from] vigil_store::Error),

    /// MP4 writing, segmenting, camera protocols.
    #[error(transparent)]
    Media(#[from] vigil_media::Error),

    #[error(transparent)]
    FileConfig(#[from] vigil_config::Error),
}

impl Error {
    /// The camera's address is refused by the pool's `cameraNetworks`; nothing was connected.
    pub fn is_address_refused(&self) -> bool {
        matches!(
            self,
            Error::Media(vigil_media::Error::AddressNotAllowed { .. })
        )
    }

    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use vigil_store::error::chain;
