use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, CredentialsSecretRef, TimeWindow};

/// A camera Vigil records. The operator assigns it to a recorder of its pool by labelling it
/// `vigil.dev/recorder=<pod>`; that recorder pulls the RTSP stream into the pool's storage.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vigil.dev",
    version = "v1alpha1",
    kind = "Camera",
    plural = "cameras",
    shortname = "cam",
    category = "vigil",
    namespaced,
    status = "CameraStatus",
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.pool"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.recording.mode"}"#,
    printcolumn = r#"{"name":"Recorder","type":"string","jsonPath":".status.recorder"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Kbps","type":"integer","jsonPath":".status.measuredBitrateKbps"}"#,
    printcolumn = r#"{"name":"Coverage","type":"string","jsonPath":".status.coverage.percent"}"#,
    printcolumn = r#"{"name":"Last Segment","type":"date","jsonPath":".status.lastSegmentTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CameraSpec {
    /// Where the live stream comes from.
    pub source: CameraSource,
    /// Secret holding the camera's user name and password. Never put credentials in the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<CredentialsSecretRef>,
    /// Expected bitrate of the stream in kbit/s, used for placement until a recorder has
    /// measured the real one. Must be greater than 0.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub expected_bitrate_kbps: u32,
    /// Name of the RecorderPool (same namespace) that records this camera.
    #[schemars(length(min = 1, max = 63))]
    pub pool: String,
    /// When to record.
    #[serde(default)]
    pub recording: RecordingSpec,
    /// How long footage is kept.
    #[serde(default)]
    pub retention: RetentionSpec,
    /// The camera's own recording (SD card / NAS), used to backfill gaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_storage: Option<EdgeStorage>,
    /// Create a Backfill automatically for every hole found in this camera's footage (a failed
    /// recorder, a lost stream, the coverage audit). Default true.
    #[serde(default = "default_true")]
    pub auto_backfill: bool,
    /// The remote site (a `Site` in the same namespace) whose gateway reaches this camera; the
    /// URL keeps the camera's address on the site's LAN. Unset: the recorder dials it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub site: Option<String>,
}

fn default_true() -> bool {
    true
}

/// The live RTSP source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CameraSource {
    /// RTSP URL of the live stream, `rtsp://` or `rtsps://`, without credentials.
    #[schemars(regex(pattern = r"^rtsps?://[^\s/]+(/\S*)?$"), length(max = 2048))]
    pub url: String,
    /// RTP transport. TCP (interleaved) survives NAT and loss best; default `Tcp`.
    #[serde(default)]
    pub transport: RtspTransport,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RtspTransport {
    #[default]
    Tcp,
    Udp,
}

/// Recording mode and, for `Scheduled`, the weekly windows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSpec {
    /// `Continuous` (default), `Scheduled` (only inside `schedule`), `Event` (around events:
    /// `preSeconds`, `postSeconds`), or `Off`.
    #[serde(default)]
    pub mode: RecordingMode,
    /// Weekly windows for `Scheduled` mode (at most 168, one per hour of the week).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 168))]
    pub schedule: Vec<ScheduleWindow>,
    /// IANA time zone the schedule is written in, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// `Event` mode: seconds recorded before an event (kept in memory as whole GOPs), 0–300.
    /// Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 300))]
    pub pre_seconds: Option<u32>,
    /// `Event` mode: seconds recorded after an event ends, 0–3600. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub post_seconds: Option<u32>,
    /// `Event` mode: the ONVIF device whose event service (PullPoint) is subscribed to.
    /// Default: `edgeStorage.onvif.deviceUrl`. Credentials are the camera's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://\S+$"), length(max = 2048))]
    pub onvif_events_url: Option<String>,
    /// Manual recording: record from `start` to `end` whatever the mode (`Off` included). Set
    /// by the access point (`POST .../manual-recording`; a stop moves `end` to the stop time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<RecordingWindow>,
    /// The latest event posted by another system (`POST .../events`): in `Event` mode it opens
    /// the gate like an ONVIF event (`start − preSeconds` to `end + postSeconds`). Set by the
    /// access point, which merges an overlapping event into the running one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_event: Option<RecordingWindow>,
}

/// A time window asked for by a user or another system (manual recording, external event).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordingWindow {
    pub start: DateTime<Utc>,
    /// After `start`, at most `MAX_WINDOW_SECONDS` later.
    pub end: DateTime<Utc>,
    /// Who asked: the user name (manual) or the posting system's `source` (external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub by: Option<String>,
}

/// Longest manual recording or external event window (24 h).
pub const MAX_WINDOW_SECONDS: i64 = 86_400;

impl RecordingWindow {
    /// `now` is inside the window.
    pub fn covers(&self, now: DateTime<Utc>) -> bool {
        self.start <= now && now < self.end
    }
}

/// Default `preSeconds` and `postSeconds` of `Event` mode.
pub const DEFAULT_PRE_SECONDS: u32 = 10;
pub const DEFAULT_POST_SECONDS: u32 = 10;
pub const MAX_PRE_SECONDS: u32 = 300;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RecordingMode {
    #[default]
    Continuous,
    Scheduled,
    /// Only around events (ONVIF motion), with `preSeconds` before and `postSeconds` after.
    Event,
    Off,
}

/// A weekly recording window, e.g. Mon–Fri 08:00–18:00.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleWindow {
    /// Days the window applies to.
    #[schemars(length(min = 1, max = 7))]
    pub days: Vec<Weekday>,
    /// Start time of day, `HH:MM` (24 h).
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"), length(max = 5))]
    pub start: String,
    /// End time of day, `HH:MM` (24 h), or `24:00`. Must be after `start`.
    #[schemars(
        regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"),
        length(max = 5)
    )]
    pub end: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// How long footage is kept before the operator deletes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Days to keep footage, at least 1. Default 30.
    #[schemars(range(min = 1, max = 36500))]
    pub days: u32,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        RetentionSpec { days: 30 }
    }
}

/// The camera's own recording. Set exactly one of `onvif` or `rtspPlayback`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeStorage {
    /// ONVIF Profile G: Recording Search + Replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onvif: Option<OnvifEdgeStorage>,
    /// A vendor RTSP playback URL with `{start}` and `{end}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtsp_playback: Option<RtspPlaybackEdgeStorage>,
}

/// ONVIF Profile G edge storage. Credentials are the camera's (`credentialsSecretRef`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnvifEdgeStorage {
    /// ONVIF device service URL, e.g. `http://camera:80/onvif/device_service`.
    #[schemars(regex(pattern = r"^https?://\S+$"), length(max = 2048))]
    pub device_url: String,
    /// Recording token to replay; default: the first recording whose source matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub recording_token: Option<String>,
    /// How an `https://` device URL's certificate is checked. Default: against the system's
    /// trust store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OnvifTls>,
}

/// TLS verification for a camera's ONVIF services. Cameras mostly present self-signed
/// certificates: name the CA that signed it (or the certificate itself), or, knowingly, skip
/// verification.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnvifTls {
    /// A key of a Secret (same namespace) holding PEM certificates to trust instead of the
    /// system's roots; the host name is still checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Accept any certificate: the traffic is encrypted, but anyone on the path can pose as
    /// the camera. Not together with `caSecretRef`.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Default `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

impl SecretKeyRef {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("ca.crt")
    }
}

/// Vendor RTSP playback (Hikvision `…/Streaming/tracks/101?starttime={start}&endtime={end}`,
/// Dahua `…/cam/playback?channel=1&starttime={start}&endtime={end}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RtspPlaybackEdgeStorage {
    /// URL template containing `{start}` and `{end}`.
    #[schemars(
        regex(pattern = r"^rtsps?://\S*\{start\}\S*\{end\}\S*$"),
        length(max = 2048)
    )]
    pub url_template: String,
    /// How `{start}`/`{end}` are written: `Hikvision` (`20260102T030405Z`), `Dahua`
    /// (`2026_01_02_03_04_05`), or `Rfc3339`. Default `Hikvision`.
    #[serde(default)]
    pub time_format: PlaybackTimeFormat,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PlaybackTimeFormat {
    #[default]
    Hikvision,
    Dahua,
    Rfc3339,
}

/// What the cluster knows about a camera. Each field has one writer, which writes it with
/// server-side apply under its own field manager (`vigil-operator`, `vigil-recorder`,
/// `vigil-audit`): the operator
/// (`state`, `recorder`, `assignedAt`, `failover`, conditions `Scheduled` and `Invalid`), the
/// camera's recorder (`measuredBitrateKbps`, `lastSegmentTime`, conditions `Recording` and
/// `Degraded`; on change, routine figures every few minutes) and the pool's coverage audit
/// (`coverage`). Holes in the footage are not kept here: whoever finds one creates its Backfill.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CameraStatus {
    /// One word for `kubectl get`, derived by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CameraState>,
    /// The recorder pod that records this camera.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub recorder: Option<String>,
    /// When the camera was assigned to `recorder`. A planned move (make-before-break) keeps
    /// the time of the assignment before it: the camera recorded throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<DateTime<Utc>>,
    /// The last time the operator moved the camera off a failed recorder. The recorder that
    /// takes the camera over finds the hole from here and creates its Backfill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Bitrate measured by the recorder (smoothed), kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_bitrate_kbps: Option<u32>,
    /// End time of the newest segment written (updated every few minutes while recording).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment_time: Option<DateTime<Utc>>,
    /// During a planned move (label `vigil.dev/incoming-recorder`): the incoming recorder, once
    /// it has recorded the camera's first keyframe. The operator then makes it the owner and the
    /// old recorder lets go (make-before-break). Written by the recorders; a value naming any
    /// recorder but the incoming one means nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub handover_ready: Option<String>,
    /// Store coverage over the audit window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
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

/// The one word `kubectl get cameras` shows, derived by the operator from the spec, the
/// placement and the recorder's `Recording` condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CameraState {
    /// Wanted, but on no recorder (see the `Scheduled` condition for why).
    Pending,
    /// Assigned to a recorder that has not reported footage since.
    Scheduled,
    /// Its recorder reports footage since the assignment.
    Recording,
    /// Its recorder cannot get footage (see the `Recording` and `Degraded` conditions).
    Degraded,
    /// Recording mode `Off`, or outside its schedule.
    Off,
    /// The spec breaks a rule the schema cannot express (see the `Invalid` condition).
    Invalid,
}

impl CameraState {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Pending => "Pending",
            CameraState::Scheduled => "Scheduled",
            CameraState::Recording => "Recording",
            CameraState::Degraded => "Degraded",
            CameraState::Off => "Off",
            CameraState::Invalid => "Invalid",
        }
    }
}

/// The operator moved the camera off a failed recorder.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// The recorder that failed.
    #[schemars(length(max = 253))]
    pub from: String,
    /// When the operator moved the camera.
    pub at: DateTime<Utc>,
    /// Footage is known to be safe up to here: the failed recorder's last lease renewal minus
    /// one segment length (its unfinished segment died with it). The store may hold more.
    pub footage_safe_until: DateTime<Utc>,
}

/// The types of a Camera's conditions, and who writes each.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CameraConditionType {
    /// Operator: placed on a recorder (or why not).
    Scheduled,
    /// Operator: the spec is valid.
    Invalid,
    /// Recorder: footage is flowing.
    Recording,
    /// Recorder: the camera is assigned but its footage is not being recorded.
    Degraded,
    /// Recorder, `Event` mode only: the camera's event subscription works (True) or is stale
    /// (False: events are not arriving, so nothing would be recorded).
    EventSubscription,
}

impl CameraConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraConditionType::Scheduled => "Scheduled",
            CameraConditionType::Invalid => "Invalid",
            CameraConditionType::Recording => "Recording",
            CameraConditionType::Degraded => "Degraded",
            CameraConditionType::EventSubscription => "EventSubscription",
        }
    }
}

/// Reasons of a Camera's conditions. (Placement failures use the placement's own reason words,
/// e.g. `InsufficientCapacity`, `NoHealthyRecorder`.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CameraConditionReason {
    /// Scheduled=True.
    Assigned,
    /// Scheduled=False: recording mode Off or outside the schedule.
    NotScheduled,
    /// Scheduled=False: waiting for placement.
    Pending,
    /// Scheduled=False: the RecorderPool named in the spec does not exist.
    PoolNotFound,
    /// Scheduled=False, Invalid=True.
    InvalidSpec,
    /// Invalid=False.
    Valid,
    /// Recording=True.
    Streaming,
    /// Recording=False: connecting, or waiting for the first keyframe.
    Connecting,
    /// Recording=False, Degraded=True: the stream broke or cannot be opened.
    StreamLost,
    /// Recording=False, Degraded=True: the credentials Secret named in the spec is missing.
    SecretMissing,
    /// Recording=False, Degraded=True: the camera's address is refused by the pool's
    /// `cameraNetworks` policy (loopback, link-local, the cluster's networks, the API server,
    /// or not allowed); no connection was made.
    AddressNotAllowed,
    /// Recording=False, Degraded=True: the camera's sessions kept exceeding the recorder's
    /// receive limits (RTSP message, header or frame sizes); it is not contacted until the
    /// hold-off in the message has passed.
    Quarantined,
    /// Degraded=False.
    AsExpected,
    /// EventSubscription=True.
    Subscribed,
    /// EventSubscription=False: subscribing, or the subscription failed (camera restarted,
    /// unreachable, refused); the message says why and since when.
    SubscriptionStale,
}

impl CameraConditionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CameraConditionReason::Assigned => "Assigned",
            CameraConditionReason::NotScheduled => "NotScheduled",
            CameraConditionReason::Pending => "Pending",
            CameraConditionReason::PoolNotFound => "PoolNotFound",
            CameraConditionReason::InvalidSpec => "InvalidSpec",
            CameraConditionReason::Valid => "Valid",
            CameraConditionReason::Streaming => "Streaming",
            CameraConditionReason::Connecting => "Connecting",
            CameraConditionReason::StreamLost => "StreamLost",
            CameraConditionReason::SecretMissing => "SecretMissing",
            CameraConditionReason::AddressNotAllowed => "AddressNotAllowed",
            CameraConditionReason::Quarantined => "Quarantined",
            CameraConditionReason::AsExpected => "AsExpected",
            CameraConditionReason::Subscribed => "Subscribed",
            CameraConditionReason::SubscriptionStale => "SubscriptionStale",
        }
    }
}

/// The writers of a Camera's status, each with its own server-side-apply field manager, so
/// that each owns its fields and its own entries of the `conditions` map-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CameraStatusWriter {
    /// `state`, `recorder`, `assignedAt`, `failover`, conditions `Scheduled` and `Invalid`.
    Operator,
    /// `measuredBitrateKbps`, `lastSegmentTime`, `handoverReady`, conditions `Recording` and
    /// `Degraded`. One
    /// manager name shared by all recorders, so the recorder that takes a camera over takes
    /// over the fields the previous one wrote.
    Recorder,
    /// `coverage`.
    Audit,
}

impl CameraStatusWriter {
    /// The field manager name.
    pub fn field_manager(self) -> &'static str {
        match self {
            CameraStatusWriter::Operator => "vigil-operator",
            CameraStatusWriter::Recorder => "vigil-recorder",
            CameraStatusWriter::Audit => "vigil-audit",
        }
    }

    /// The condition types this writer owns.
    pub fn condition_types(self) -> &'static [CameraConditionType] {
        match self {
            CameraStatusWriter::Operator => {
                &[CameraConditionType::Scheduled, CameraConditionType::Invalid]
            }
            CameraStatusWriter::Recorder => &[
                CameraConditionType::Recording,
                CameraConditionType::Degraded,
                CameraConditionType::EventSubscription,
            ],
            CameraStatusWriter::Audit => &[],
        }
    }
}

/// A server-side-apply body for a Camera's status: the writer's own fields, nothing else.
pub fn camera_status_apply_body(name: &str, status: &impl Serialize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": format!("{}/{}", crate::GROUP, crate::VERSION),
        "kind": "Camera",
        "metadata": {"name": name},
        "status": status,
    })
}

/// How much of a recent window the store holds for a camera, written by the pool's coverage
/// audit (`vigil-jobs audit`). Only the time the camera should have been recording counts:
/// outside its schedule, before it existed and the last minutes (still being uploaded) do not.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    /// The window checked.
    pub window: TimeWindow,
    /// Percentage of the expected time present in the store, as text for `kubectl get`,
    /// rounded down (e.g. `99.98%`; `100.00%` only when nothing is missing), or `n/a` when the
    /// camera was not expected to record at all in the window.
    #[schemars(length(max = 16))]
    pub percent: String,
    /// Seconds of the window missing from the store.
    pub missing_seconds: f64,
    /// Seconds of the window the camera should have been recording.
    #[serde(default)]
    pub expected_seconds: f64,
    /// When the check ran.
    pub checked_at: DateTime<Utc>,
}

impl Default for TimeWindow {
    fn default() -> Self {
        let now = Utc::now();
        TimeWindow {
            start: now,
            end: now,
        }
    }
}
