//! The store crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage target (file, RecorderPool, Secret) is unusable.
    #[error("configuration: {0}")]
    Config(String),

    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("object store: {0}")]
    Store(#[from] object_store::Error),

    /// A key or camera identity that does not follow the layout.
    #[error("object key: {0}")]
    Layout(String),

    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),

    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
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

/// The error and all its sources on one line, for logs: library errors often keep the useful
/// part ("connection refused") in a source.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
