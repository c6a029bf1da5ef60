//! The media crate's one error type. Messages never carry credentials: RTSP errors are built
//! from text that went through `vigil_api::redact` first.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The camera's address is refused by the pool's `cameraNetworks` policy; no connection
    /// was made. `host` is from the spec, shortened.
    #[error("camera address {host} ({addr}) is not allowed: {refusal}; no connection was made")]
    AddressNotAllowed {
        host: String,
        addr: std::net::IpAddr,
        refusal: vigil_api::netpolicy::Refusal,
    },

    /// Talking to a camera (RTSP, ONVIF) failed. The text is already redacted.
    #[error("camera: {0}")]
    Rtsp(String),

    /// The camera does not offer this operation (a SOAP `ActionNotSupported` fault or the
    /// like): not a fault worth a retry. The text is already redacted.
    #[error("camera does not support {op}: {detail}")]
    Unsupported { op: &'static str, detail: String },

    /// The camera sent something that cannot be stored (unsupported codec, no keyframe).
    #[error("stream: {0}")]
    Stream(String),

    /// An MP4 file is damaged or not what was expected.
    #[error("mp4: {0}")]
    Mp4(String),

    /// A live frame stream (recorder → access point) or an H.264 structure in it is malformed.
    #[error("live: {0}")]
    Live(#[from] crate::live::LiveError),
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
