use thiserror::Error;

/// Every error the operator crate returns. Callers match on the variant, never on the text.
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
    /// A namespaced object came without its namespace (a watch of the wrong scope).
    #[error("{kind} without namespace")]
    MissingNamespace { kind: &'static str },
    /// An object could not be turned into JSON.
    #[error("serializing: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// The pool's audit schedule is not one the CronJob API takes; the rest of the workload is
    /// applied and recording goes on.
    #[error("coverage-audit CronJob not applied: {0}")]
    AuditScheduleRefused(String),
    /// `doctor` found problems (each was printed).
    #[error("{failed} of {total} checks failed")]
    ChecksFailed { failed: usize, total: usize },
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
