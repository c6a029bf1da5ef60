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
/// On a Camera during a planned move (make-before-break): the recorder taking it over. That
/// recorder records the camera alongside its owner (`vigil.dev/recorder`) until the operator,
/// having seen `status.handoverReady` name it (its first keyframe is recorded), makes it the
/// owner and removes this label.
pub const INCOMING_RECORDER_LABEL: &str = "vigil.dev/incoming-recorder";
/// On a recorder's Lease: `"true"` once the recorder got SIGTERM and is draining. It keeps
/// recording its cameras until each has been taken over; the operator places nothing on it and
/// moves its cameras off make-before-break.
pub const DRAINING_ANNOTATION: &str = "vigil.dev/draining";
/// On a recorder's Lease: the base URL of its live tap (`GET /live/{namespace}/{name}`, bearer
/// token), e.g. `http://10.42.0.7:9090`. Present only when the recorder serves live view. The
/// access point follows a Camera's `vigil.dev/recorder` label to this Lease to find where to
/// read the camera's live frames.
pub const LIVE_ADDRESS_ANNOTATION: &str = "vigil.dev/live-address";
/// In a RecorderPool's namespace: the Secret (key `token`) holding the bearer token of the
/// recorders' live tap, shared with the access point. The operator mounts it (optional) into
/// every recorder pod; without it live view is off.
pub const LIVE_TOKEN_SECRET: &str = "vigil-live-token";
