//! The config crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration (file, flags, environment) is unusable.
    #[error("configuration: {0}")]
    Config(String),

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),

    /// A camera identity that does not follow the store's layout.
    #[error(transparent)]
    Store(#[from] vigil_store::Error),
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
