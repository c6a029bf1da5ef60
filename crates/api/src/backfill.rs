use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, TimeWindow};

/// A window of one camera's footage to fetch from the camera's edge storage into the store.
/// The operator creates one for every outage; a user can create one by hand to re-fetch a window.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "Backfill",
    plural = "backfills",
    shortname = "bf",
    category = "vigil",
    namespaced,
    status = "BackfillStatus",
    printcolumn = r#"{"name":"Camera","type":"string","jsonPath":".spec.camera"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Recovered s","type":"number","jsonPath":".status.secondsRecovered"}"#,
    printcolumn = r#"{"name":"Lost s","type":"number","jsonPath":".status.secondsLost"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackfillSpec {
    /// Name of the Camera (same namespace).
    #[schemars(length(min = 1, max = 253))]
    pub camera: String,
    /// The window to fill. `end` must be after `start`.
    pub window: TimeWindow,
    /// Why the window is missing.
    #[serde(default)]
    pub reason: BackfillReason,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackfillReason {
    RecorderFailure,
    StreamLoss,
    Audit,
    #[default]
    Manual,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackfillPhase {
    /// Waiting for a slot (one backfill per camera, pool concurrency cap).
    Pending,
    Running,
    /// The whole window is in the store.
    Succeeded,
    /// Finished, but some seconds could not be recovered (listed in `stillMissing`).
    PartiallyRecovered,
    /// Nothing could be recovered (no edge storage, camera unreachable after all retries).
    Failed,
}

/// Progress and outcome of a backfill, honest to the second.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackfillPhase>,
    /// The Job doing the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Seconds of the window missing from the store before the backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_missing_before: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_recovered: Option<f64>,
    /// Seconds still missing after the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_lost: Option<f64>,
    /// Intervals still missing after the last attempt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub still_missing: Vec<TimeWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Progress as text for `kubectl get`, e.g. `42%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Keyed by `type`, so the operator and a recorder can each apply their own conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
