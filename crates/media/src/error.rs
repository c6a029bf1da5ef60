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

    /// Talking to a camera (RTSP, ONVIF) failed. The text is already redacted.
    #[error("camera: {0}")]
    Rtsp(String),

    /// The camera sent something that cannot be stored (unsupported codec, no keyframe).
    #[error("stream: {0}")]
    Stream(String),

    /// An MP4 file is damaged or not what was expected.
    #[error("mp4: {0}")]
    Mp4(String),
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
