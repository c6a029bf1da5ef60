use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, CredentialsSecretRef};

/// A pool of recorder pods. Cameras name a pool; the operator spreads them over its recorders
/// by bitrate, keeping each recorder under `capacityKbps` minus the failover headroom.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "RecorderPool",
    plural = "recorderpools",
    shortname = "rp",
    category = "vigil",
    namespaced,
    status = "RecorderPoolStatus",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.readyRecorders"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyRecorders"}"#,
    printcolumn = r#"{"name":"Cameras","type":"integer","jsonPath":".status.cameras"}"#,
    printcolumn = r#"{"name":"Load Kbps","type":"integer","jsonPath":".status.loadKbps"}"#,
    printcolumn = r#"{"name":"Capacity Kbps","type":"integer","jsonPath":".status.capacityKbps"}"#,
    printcolumn = r#"{"name":"Unplaced","type":"integer","jsonPath":".status.unplaceableCount"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RecorderPoolSpec {
    /// Number of recorder pods.
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Ingest capacity of one recorder, kbit/s of camera streams.
    #[schemars(range(min = 1))]
    pub capacity_kbps: u32,
    /// Percentage of each recorder's capacity kept free in normal operation, so that the
    /// cameras of a failed recorder fit on the others. Default 20.
    #[serde(default = "default_headroom")]
    #[schemars(range(min = 0, max = 90))]
    pub failover_headroom_percent: u32,
    /// Where segments go.
    pub storage: StorageTarget,
    /// Segment length in seconds; segments are cut on the first keyframe after it. Default 10.
    #[serde(default = "default_segment_seconds")]
    #[schemars(range(min = 2, max = 600))]
    pub segment_seconds: u32,
    /// Local disk buffer for segments waiting for the store (S3 outage), MiB. Default 2048.
    #[serde(default = "default_buffer_mib")]
    #[schemars(range(min = 16))]
    pub local_buffer_mib: u32,
    /// Recorder liveness timing.
    #[serde(default)]
    pub lease: LeaseTiming,
    /// Limits for backfill Jobs of this pool.
    #[serde(default)]
    pub backfill: BackfillLimits,
    /// The periodic coverage audit of this pool's cameras.
    #[serde(default)]
    pub audit: AuditSpec,
    /// How cameras are spread over the recorders beyond the failover rules.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// Overrides for the recorder pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
    /// The networks this pool's cameras may be in, checked on the resolved address of every
    /// connection (live RTSP, ONVIF, replay, playback templates). Default: any unicast address
    /// except loopback, link-local (metadata services), the cluster's service and pod ranges and
    /// the API server, which are only reachable through an `allow` entry inside them.
    #[serde(default, skip_serializing_if = "CameraNetworks::is_empty")]
    pub camera_networks: CameraNetworks,
}

/// Address ranges (CIDR, e.g. `192.168.10.0/24`, `fd00::/8`, or one address) cameras may or
/// may not be in. `deny` wins over `allow`; an empty `allow` means any unicast address but the
/// protected ranges.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CameraNetworks {
    /// Ranges cameras may be in; empty: any unicast address but the protected ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 43)))]
    pub allow: Vec<String>,
    /// Ranges cameras must never be in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 43)))]
    pub deny: Vec<String>,
}

impl CameraNetworks {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

fn default_headroom() -> u32 {
    20
}
fn default_segment_seconds() -> u32 {
    10
}
fn default_buffer_mib() -> u32 {
    2048
}

/// The storage target. Set exactly one of `s3` or `local`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalStorage>,
}

/// An S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Storage {
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Endpoint URL for non-AWS stores (MinIO, Ceph RGW, ...). Empty for AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://\S+$"), length(max = 2048))]
    pub endpoint: Option<String>,
    /// Region. Default `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// Key prefix inside the bucket. Default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub prefix: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most non-AWS stores.
    #[serde(default)]
    pub path_style: bool,
    /// Secret with `accessKeyId` / `secretAccessKey` (keys overridable via usernameKey/passwordKey).
    pub credentials_secret_ref: CredentialsSecretRef,
}

/// A directory on a volume (embedded default, single-node setups).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalStorage {
    /// Absolute path inside the recorder pod.
    #[schemars(regex(pattern = r"^/\S*$"), length(max = 4096))]
    pub path: String,
    /// PersistentVolumeClaim mounted at `path`; without it, a hostPath is not created for you.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub claim_name: Option<String>,
}

/// How recorders prove they are alive.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseTiming {
    /// A recorder whose Lease was not renewed for this long is failed. Default 4.
    #[schemars(range(min = 2, max = 300))]
    pub duration_seconds: u32,
    /// How often recorders renew. Default 1.
    #[schemars(range(min = 1, max = 60))]
    pub renew_seconds: u32,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            duration_seconds: 4,
            renew_seconds: 1,
        }
    }
}

/// Limits on backfill Jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillLimits {
    /// Backfill Jobs of this pool running at once. Default 2.
    #[schemars(range(min = 1, max = 100))]
    pub max_concurrent: u32,
    /// Bandwidth cap per backfill Job, Mbit/s; 0 means no cap. Default 50.
    #[schemars(range(min = 0))]
    pub bandwidth_mbps: u32,
    /// Seconds to wait after an outage window ends before fetching it from the camera: cameras
    /// write their SD card in chunks (often 10 s or more) and index them with a delay, so an
    /// immediate fetch misses the window's tail. Default 15.
    #[serde(default = "default_edge_settle_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub edge_settle_seconds: u32,
}

fn default_edge_settle_seconds() -> u32 {
    15
}

impl Default for BackfillLimits {
    fn default() -> Self {
        BackfillLimits {
            max_concurrent: 2,
            bandwidth_mbps: 50,
            edge_settle_seconds: default_edge_settle_seconds(),
        }
    }
}

/// The coverage audit: a CronJob (`vigil-jobs audit --pool <ns>/<name>`) that lists each
/// camera's recent footage in the store, writes `status.coverage`, and creates a Backfill with
/// reason `Audit` for each hole that no Backfill accounts for yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditSpec {
    /// Run the audit. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Cron schedule of the audit (the CronJob's time zone, normally UTC). Default every 15
    /// minutes.
    #[serde(default = "default_audit_schedule")]
    #[schemars(length(min = 9, max = 100))]
    pub schedule: String,
    /// How far back each run looks, hours. Default 24.
    #[serde(default = "default_audit_window_hours")]
    #[schemars(range(min = 1, max = 720))]
    pub window_hours: u32,
}

fn default_true() -> bool {
    true
}
fn default_audit_schedule() -> String {
    "*/15 * * * *".into()
}
fn default_audit_window_hours() -> u32 {
    24
}

impl Default for AuditSpec {
    fn default() -> Self {
        AuditSpec {
            enabled: true,
            schedule: default_audit_schedule(),
            window_hours: default_audit_window_hours(),
        }
    }
}

/// Spreading cameras over the pool's recorders.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    #[serde(default)]
    pub rebalance: RebalanceSpec,
}

/// Moving cameras when load is uneven (a recorder joined, the pool started with cameras crowded
/// on the first ready recorder, measured bitrates drifted). Every such move is
/// make-before-break: the new recorder records the camera before the old one lets go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Rebalance at all. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Rebalance when the most loaded ready recorder carries more than this percent of the
    /// ideal load (total / ready recorders). Default 125.
    #[serde(default = "default_rebalance_threshold")]
    #[schemars(range(min = 100, max = 1000))]
    pub threshold_percent: u32,
    /// At most this many rebalancing moves start per minute. Default 6.
    #[serde(default = "default_rebalance_moves")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_moves_per_minute: u32,
}

fn default_rebalance_threshold() -> u32 {
    125
}
fn default_rebalance_moves() -> u32 {
    6
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        RebalanceSpec {
            enabled: true,
            threshold_percent: default_rebalance_threshold(),
            max_moves_per_minute: default_rebalance_moves(),
        }
    }
}

/// Overrides for the recorder pod template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Recorder image; default the operator's matching release image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_policy: Option<String>,
    /// CPU/memory requests and limits, as in a container's `resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
    pub resources: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 1024}
    ))]
    pub node_selector: Option<std::collections::BTreeMap<String, String>>,
    /// Tolerations, as in a pod spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("items" = {"type": "object", "x-kubernetes-preserve-unknown-fields": true}))]
    pub tolerations: Vec<serde_json::Value>,
}

/// What the operator knows about a pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderPoolStatus {
    /// Every recorder of the pool (at most 1000 replicas, twice that during a rollout).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4096))]
    pub recorders: Vec<RecorderState>,
    #[serde(default)]
    pub ready_recorders: i32,
    /// Cameras assigned to this pool.
    #[serde(default)]
    pub cameras: u32,
    /// Sum of the placed cameras' bitrates, kbit/s.
    #[serde(default)]
    pub load_kbps: u64,
    /// Sum of ready recorders' capacities, kbit/s.
    #[serde(default)]
    pub capacity_kbps: u64,
    /// Cameras that fit on no recorder, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(length(max = 253)))]
    pub unplaceable: Vec<String>,
    #[serde(default)]
    pub unplaceable_count: u32,
    /// How evenly the ready, not draining recorders are loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<PoolBalance>,
    /// Keyed by `type`, so the operator and a recorder can each apply their own conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"])
    )]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One recorder pod of a pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecorderState {
    /// Pod name.
    #[schemars(length(max = 253))]
    pub name: String,
    pub ready: bool,
    /// Last Lease renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renew: Option<DateTime<Utc>>,
    pub load_kbps: u64,
    pub cameras: u32,
    /// Shutting down: records its cameras until each has been taken over, gets no new ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// Load balance of a pool's ready recorders.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolBalance {
    /// Total load / ready recorders, kbit/s.
    pub ideal_kbps: u64,
    /// Load of the most loaded ready recorder, kbit/s.
    pub max_kbps: u64,
    /// `maxKbps / idealKbps` in percent (100 is perfect), rounded.
    pub max_over_ideal_percent: u32,
    /// Cameras being handed over right now (planned moves, make-before-break).
    #[serde(default)]
    pub handovers: u32,
}
