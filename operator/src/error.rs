use thiserror::Error;

/// Every error the operator crate returns.
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("in-cluster config: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0}")]
    Check(String),
    /// Another replica holds the leader Lease now.
    #[error("leadership lost: {holder} holds the leader lease")]
    LeadershipLost { holder: String },
    /// The leader could not renew its Lease within the renew deadline, so it must stop acting
    /// before a standby may take over.
    #[error("could not renew the leader lease within the renew deadline of {deadline:?}{}", last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    LeaderRenewDeadline {
        deadline: std::time::Duration,
        last_error: Option<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
