//! Labels Vigil puts on Kubernetes objects. One spelling each, used by every writer and reader.

/// On a Camera: the recorder pod that records it. Set by the operator; a recorder watches only
/// the Cameras carrying its own name.
pub const RECORDER_LABEL: &str = "vigil.dev/recorder";
/// On recorder pods, Leases, Jobs and CronJobs: the RecorderPool they belong to.
pub const POOL_LABEL: &str = "vigil.dev/pool";
/// On a recorder's Lease: what kind of recorder renews it (`pod` for recorder pods; absent for
/// recorders running as plain processes, which have no pod to check).
pub const RECORDER_KIND_LABEL: &str = "vigil.dev/recorder-kind";
/// On a Backfill's Job and its pods: the Backfill.
pub const BACKFILL_LABEL: &str = "vigil.dev/backfill";
/// On Backfills and their Jobs: the Camera.
pub const CAMERA_LABEL: &str = "vigil.dev/camera";
