//! Vigil's integration and end-to-end tests run against whatever cluster `KUBECONFIG` points at:
//! the local control plane (`e2e/cluster/up.sh`, then `source /var/lib/vigil-cluster/env`) or a
//! kind cluster. Their fixtures are the shared test kit's (`vigil-testkit`); this crate adds the
//! failover rig its tests and benchmarks share.

pub mod frame_check;
pub mod llhls_viewer;
pub mod rig;

pub use vigil_testkit::k8s::*;
pub use vigil_testkit::{bin as built_binary, free_port, repo_root};

/// Real processes against the cluster: the camera simulator, the operator, recorders.
pub mod harness {
    pub use vigil_testkit::Sim as Simulator;
    pub use vigil_testkit::cluster::*;
    pub use vigil_testkit::free_port;
}
