//! Kubernetes mode: the recorder pod's view of the cluster.
//!
//! * Reads its RecorderPool (storage, segment length, buffer size, lease timing) and the S3
//!   credentials Secret once at start-up (pool changes take effect when the pod restarts).
//! * Watches the Cameras labelled `vigil.dev/recorder=<pod>` in its namespace and hands the
//!   supervisor the desired camera set after every change.
//! * Renews the Lease `<pod>` every `lease.renewSeconds` with server-side apply; the operator
//!   declares the recorder failed when it expires.
//! * Writes the fields of each Camera's status that recorders own — `measuredBitrateKbps`,
//!   `lastSegmentTime`, the `Recording` and `Degraded` conditions — with server-side apply under
//!   the field manager all recorders share ([`CameraStatusWriter::Recorder`]), so the recorder
//!   that takes a camera over owns what the previous one wrote, and nobody else's fields are
//!   touched. Written on change (a condition flipping, the first segment, the bitrate moving by
//!   more than [`BITRATE_CHANGE_PERCENT`] %) and otherwise at most every [`ROUTINE_INTERVAL`]:
//!   the API server's load grows with events, not with time × cameras ([`status_write_due`]).
//! * Creates the Backfills for the holes it finds (see [`crate::holes`]): on taking a camera
//!   over, from where the store's footage ends to its own first footage; when a lost stream
//!   comes back, the gap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use object_store::ObjectStore;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use vigil_api::labels::RECORDER_KIND_LABEL;
use vigil_api::{
    BackfillReason, Camera, CameraConditionReason, CameraConditionType, CameraStatusWriter,
    Condition, ConditionStatus, LeaseTiming, POOL_LABEL, RECORDER_LABEL, RecordingMode,
    RtspTransport, camera_status_apply_body, set_condition,
};

use crate::camera::SecretReader;
use crate::error::{Error, Result};
use crate::status::{CameraReport, CameraState, StatusBoard};
use vigil_config::{CameraConfig, CredentialSource, Transport, validate_segment_seconds};
use vigil_store::StorageConfig;
use vigil_store::holes::{self, Hole, Reported};
use vigil_store::intervals::Interval;
use vigil_store::layout::CameraId;

/// Longest time between two writes of a camera's routine figures (bitrate, last segment time).
pub const ROUTINE_INTERVAL: Duration = Duration::from_secs(300);
/// A bitrate that moved by more than this (percent of the last written one) is written at once:
/// placement counts it.
pub const BITRATE_CHANGE_PERCENT: u32 = 20;
/// How often the status loop looks for changes, new gaps and new cameras.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Holes kept waiting for their Backfill while the API server refuses (older ones remain as gap
/// records in the store, and the audit finds them).
const MAX_PENDING_HOLES: usize = 100;
/// Store listings tried for a take-over hole before leaving it to the audit.
const TAKEOVER_ATTEMPTS: u32 = 10;
/// For the Lease, this recorder's own object.
const FIELD_MANAGER: &str = "vigil-recorder";

/// The recorder's identity and client.
pub struct K8s {
    pub client: Client,
    pub namespace: String,
    pub pod: String,
    pub pool: String,
    pub pod_uid: Option<String>,
    pub lease: LeaseTiming,
    /// Latest Camera objects from the watch, for status merges.
    cameras: Mutex<BTreeMap<String, Camera>>,
}

/// Settings the RecorderPool decides.
pub struct PoolSettings {
    pub storage: StorageConfig,
    pub prefix: String,
    pub segment_seconds: u32,
    pub buffer_max_bytes: u64,
}

fn env(name: &str) -> Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::Config(format!(
                "{name} is not set (pass it from the downward API in Kubernetes mode)"
            ))
        })
}

/// Connects to the API server and reads the pool.
pub async fn connect() -> Result<(K8s, PoolSettings)> {
    vigil_api::install_crypto_provider();
    let namespace = env("POD_NAMESPACE")?;
    let pod = env("POD_NAME")?;
    let pool_name = env("POOL_NAME")?;
    let pod_uid = std::env::var("POD_UID").ok().filter(|v| !v.is_empty());
    let client = Client::try_default().await?;
    let (pool, storage, prefix) =
        vigil_store::pool_store::get_pool_storage(&client, &namespace, &pool_name).await?;
    let spec = pool.spec;
    let settings = PoolSettings {
        storage,
        prefix,
        segment_seconds: validate_segment_seconds(spec.segment_seconds)?,
        buffer_max_bytes: u64::from(spec.local_buffer_mib) << 20,
    };
    info!(namespace = %namespace, pod = %pod, pool = %pool_name, "Kubernetes mode");
    Ok((
        K8s {
            client,
            namespace,
            pod,
            pool: pool_name,
            pod_uid,
            lease: spec.lease,
            cameras: Mutex::new(BTreeMap::new()),
        },
        settings,
    ))
}

/// Reads camera credentials at every connection attempt.
pub fn secret_reader(client: Client) -> SecretReader {
    Arc::new(move |ns, name, uk, pk| {
        let client = client.clone();
        Box::pin(async move {
            Ok(vigil_store::pool_store::read_secret(&client, &ns, &name, &uk, &pk).await?)
        })
    })
}

/// The camera a Camera object describes, or why it cannot be recorded.
pub fn camera_config(cam: &Camera) -> Result<Option<CameraConfig>> {
    let ns = cam.namespace().unwrap_or_default();
    let id = CameraId::new(&ns, &cam.name_any())?;
    if cam.spec.recording.mode == RecordingMode::Off {
        return Ok(None);
    }
    let credentials = match &cam.spec.credentials_secret_ref {
        None => CredentialSource::None,
        Some(r) => CredentialSource::Secret {
            name: r.name.clone(),
            username_key: r.username_key().to_string(),
            password_key: r.password_key().to_string(),
        },
    };
    let transport = match cam.spec.source.transport {
        RtspTransport::Tcp => Transport::Tcp,
        RtspTransport::Udp => Transport::Udp,
    };
    Ok(CameraConfig::new(id, &cam.spec.source.url, credentials, transport, true).map(Some)?)
}

/// Watches this pod's Cameras and sends the full desired set after every change.
pub async fn watch_cameras(k: Arc<K8s>, tx: mpsc::Sender<Vec<CameraConfig>>) {
    let api: Api<Camera> = Api::namespaced(k.client.clone(), &k.namespace);
    let cfg = watcher::Config::default().labels(&format!("{RECORDER_LABEL}={}", k.pod));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut init: Option<BTreeMap<String, Camera>> = None;
    let mut synced = false;
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(Event::Init) => {
                init = Some(BTreeMap::new());
                false
            }
            Ok(Event::InitApply(c)) => {
                if let Some(m) = &mut init {
                    m.insert(c.name_any(), c);
                }
                false
            }
            Ok(Event::InitDone) => {
                if let Some(m) = init.take() {
                    *lock(&k.cameras) = m;
                }
                synced = true;
                true
            }
            Ok(Event::Apply(c)) => {
                lock(&k.cameras).insert(c.name_any(), c);
                true
            }
            Ok(Event::Delete(c)) => {
                lock(&k.cameras).remove(&c.name_any());
                true
            }
            Err(e) => {
                warn!(error = %e, "Camera watch error; retrying");
                false
            }
        };
        if !(changed && synced) {
            continue;
        }
        let desired: Vec<CameraConfig> = lock(&k.cameras)
            .values()
            .filter_map(|c| match camera_config(c) {
                Ok(cfg) => cfg,
                Err(e) => {
                    warn!(camera = %c.name_any(), error = %e, "cannot record this camera");
                    None
                }
            })
            .collect();
        if tx.send(desired).await.is_err() {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The Lease this recorder renews, as a server-side-apply body.
pub fn lease_body(k: &K8s, acquired: DateTime<Utc>, now: DateTime<Utc>) -> serde_json::Value {
    // The operator lists Leases by pool, and tells a pod recorder (gone when its pod is gone)
    // from one running elsewhere by the kind label.
    let kind = if k.pod_uid.is_some() {
        "pod"
    } else {
        "process"
    };
    let mut meta = json!({
        "name": k.pod,
        "namespace": k.namespace,
        "labels": { POOL_LABEL: k.pool, RECORDER_KIND_LABEL: kind },
    });
    if let Some(uid) = &k.pod_uid {
        // Owned by the pod, so that the Lease goes away with it.
        meta["ownerReferences"] = json!([{
            "apiVersion": "v1",
            "kind": "Pod",
            "name": k.pod,
            "uid": uid,
        }]);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": k.pod,
            "leaseDurationSeconds": k.lease.duration_seconds,
            "acquireTime": micro_time(acquired),
            "renewTime": micro_time(now),
        }
    })
}

/// Renews the Lease every `renewSeconds` until `stop`.
pub async fn lease_loop(k: Arc<K8s>, mut stop: watch::Receiver<bool>) {
    let api: Api<Lease> = Api::namespaced(k.client.clone(), &k.namespace);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let acquired = Utc::now();
    let every = Duration::from_secs(u64::from(k.lease.renew_seconds.max(1)));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let body = lease_body(&k, acquired, Utc::now());
        // A renewal slower than the renew interval is as good as a failed one.
        match tokio::time::timeout(every, api.patch(&k.pod, &pp, &Patch::Apply(body))).await {
            Ok(Ok(_)) => {
                if failing {
                    info!("Lease renewed again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!(error = %e, "cannot renew the Lease");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    warn!("Lease renewal timed out");
                }
                failing = true;
            }
        }
    }
}

fn recording_condition(r: &CameraReport, generation: Option<i64>) -> Condition {
    use CameraConditionReason as R;
    let recording = CameraConditionType::Recording.as_str();
    match r.state {
        CameraState::Recording => Condition::new(
            recording,
            ConditionStatus::True,
            R::Streaming.as_str(),
            format!("recording on {}", r.codec.as_deref().unwrap_or("video")),
            generation,
        ),
        CameraState::Connecting if r.segments == 0 && r.last_error.is_none() => Condition::new(
            recording,
            ConditionStatus::False,
            R::Connecting.as_str(),
            "connecting to the camera",
            generation,
        ),
        _ => Condition::new(
            recording,
            ConditionStatus::False,
            R::StreamLost.as_str(),
            r.last_error
                .clone()
                .unwrap_or_else(|| "no footage from the camera".into()),
            generation,
        ),
    }
}

/// `Degraded` follows `Recording`: true while the stream is lost (not while still connecting).
fn degraded_condition(recording: &Condition, generation: Option<i64>) -> Condition {
    let degraded = CameraConditionType::Degraded.as_str();
    if recording.status == ConditionStatus::False
        && recording.reason == CameraConditionReason::StreamLost.as_str()
    {
        Condition::new(
            degraded,
            ConditionStatus::True,
            &recording.reason,
            recording.message.clone(),
            generation,
        )
    } else {
        Condition::new(
            degraded,
            ConditionStatus::False,
            CameraConditionReason::AsExpected.as_str(),
            "",
            generation,
        )
    }
}

/// The recorder-owned fields of a Camera's status, as applied. Absent figures are carried over
/// from the camera's status: an apply without a field this manager owns would remove it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecorderCameraStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured_bitrate_kbps: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_segment_time: Option<DateTime<Utc>>,
    /// `Recording` and `Degraded`.
    pub conditions: Vec<Condition>,
}

/// What this recorder would write for `cam` now, from its report `r`. Transition times are
/// kept from the camera's status when a condition's status did not change.
pub fn recorder_status(cam: &Camera, r: &CameraReport) -> RecorderCameraStatus {
    let old = cam.status.clone().unwrap_or_default();
    let generation = cam.metadata.generation;
    let own: Vec<&str> = CameraStatusWriter::Recorder
        .condition_types()
        .iter()
        .map(|t| t.as_str())
        .collect();
    let mut conditions: Vec<Condition> = old
        .conditions
        .iter()
        .filter(|c| own.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    let recording = recording_condition(r, generation);
    set_condition(&mut conditions, degraded_condition(&recording, generation));
    set_condition(&mut conditions, recording);
    // Recording first, for people reading the YAML.
    conditions.sort_by_key(|c| c.type_ != CameraConditionType::Recording.as_str());
    RecorderCameraStatus {
        measured_bitrate_kbps: r.bitrate_kbps.or(old.measured_bitrate_kbps),
        last_segment_time: r
            .last_segment_end_ms
            .and_then(DateTime::from_timestamp_millis)
            .or(old.last_segment_time),
        conditions,
    }
}

/// Why a status write is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteReason {
    /// Nothing written for this camera yet by this recorder.
    First,
    /// A condition's status or reason changed (the operator derives the camera's state from it).
    ConditionChanged,
    /// The first segment: proof for the operator that the camera records here.
    FirstSegment,
    /// The bitrate moved by more than [`BITRATE_CHANGE_PERCENT`] % (placement counts it).
    BitrateMoved,
    /// Routine figures, at most every [`ROUTINE_INTERVAL`].
    Routine,
}

/// Whether to write `next` now, given what this recorder last wrote for the camera (`last`,
/// `since_last` ago). Pure: the whole on-change policy.
pub fn status_write_due(
    last: Option<&RecorderCameraStatus>,
    next: &RecorderCameraStatus,
    since_last: Duration,
) -> Option<WriteReason> {
    let Some(last) = last else {
        return Some(WriteReason::First);
    };
    let keys = |s: &RecorderCameraStatus| {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status, c.reason.clone()))
            .collect::<Vec<_>>()
    };
    if keys(last) != keys(next) {
        return Some(WriteReason::ConditionChanged);
    }
    if last.last_segment_time.is_none() && next.last_segment_time.is_some() {
        return Some(WriteReason::FirstSegment);
    }
    match (last.measured_bitrate_kbps, next.measured_bitrate_kbps) {
        (None, Some(_)) => return Some(WriteReason::BitrateMoved),
        (Some(old), Some(new))
            if u64::from(old.abs_diff(new)) * 100
                > u64::from(old) * u64::from(BITRATE_CHANGE_PERCENT) =>
        {
            return Some(WriteReason::BitrateMoved);
        }
        _ => {}
    }
    let messages = |s: &RecorderCameraStatus| {
        s.conditions
            .iter()
            .map(|c| c.message.clone())
            .collect::<Vec<_>>()
    };
    let changed = last.measured_bitrate_kbps != next.measured_bitrate_kbps
        || last.last_segment_time != next.last_segment_time
        || messages(last) != messages(next);
    (changed && since_last >= ROUTINE_INTERVAL).then_some(WriteReason::Routine)
}

/// The store the recorder uploads to, and its key prefix.
pub type StoreRef = (Arc<dyn ObjectStore>, String);

/// The hole this recorder finds on taking `cam` over, its first footage starting at `first_ms`
/// (see [`holes::takeover_hole`]). `Err` when the store cannot be listed.
async fn find_takeover_hole(
    (store, prefix): &StoreRef,
    camera: &CameraId,
    cam: &Camera,
    first_ms: i64,
    segment_seconds: u32,
) -> Result<Option<Interval>> {
    let from = holes::lookback_start(cam, first_ms, segment_seconds);
    let stored = vigil_store::catalog::covered(
        store.as_ref(),
        prefix,
        camera,
        Interval::new(from, first_ms + 1),
    )
    .await?;
    let safe = holes::pending_failover(cam).map(|f| f.footage_safe_until.timestamp_millis());
    Ok(holes::takeover_hole(first_ms, &stored, safe))
}

/// The take-over check of one camera: not done yet, or done for this first footage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takeover {
    Done,
    Failed(u32),
}

/// Writes the status of every running camera on change (see [`status_write_due`]) and creates
/// the Backfills for the holes found.
pub async fn status_loop(
    k: Arc<K8s>,
    board: Arc<StatusBoard>,
    store: StoreRef,
    segment_seconds: u32,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Camera> = Api::namespaced(k.client.clone(), &k.namespace);
    let pp = PatchParams::apply(CameraStatusWriter::Recorder.field_manager()).force();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What this recorder last wrote per camera, and when.
    let mut written: BTreeMap<String, (RecorderCameraStatus, tokio::time::Instant)> =
        BTreeMap::new();
    // Take-over checks per (camera, start of this recorder's first footage of it).
    let mut takeovers: BTreeMap<(String, i64), Takeover> = BTreeMap::new();
    let mut pending: Vec<Hole> = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        let reports = board.snapshot();
        written.retain(|camera, _| reports.iter().any(|r| &r.camera == camera));
        takeovers.retain(|(camera, _), _| reports.iter().any(|r| &r.camera == camera));
        for r in reports {
            let Ok(id) = CameraId::new(&r.namespace, &r.camera) else {
                continue;
            };
            let Some(cam) = lock(&k.cameras).get(&r.camera).cloned() else {
                continue;
            };

            // Holes: the take-over hole once per first footage, stream losses as they close.
            if let Some(first) = r.first_segment_start_ms {
                let key = (r.camera.clone(), first);
                let state = takeovers.get(&key).copied();
                if !matches!(state, Some(Takeover::Done)) {
                    let attempts = match state {
                        Some(Takeover::Failed(n)) => n,
                        _ => 0,
                    };
                    match find_takeover_hole(&store, &id, &cam, first, segment_seconds).await {
                        Ok(hole) => {
                            if let Some(window) = hole {
                                pending.push(Hole {
                                    camera: r.camera.clone(),
                                    window,
                                    reason: BackfillReason::RecorderFailure,
                                });
                            }
                            takeovers.insert(key, Takeover::Done);
                        }
                        Err(e) if attempts + 1 >= TAKEOVER_ATTEMPTS => {
                            warn!(camera = %id, error = %e,
                                  "cannot list the store to find the take-over hole; leaving it to the audit");
                            takeovers.insert(key, Takeover::Done);
                        }
                        Err(e) => {
                            debug!(camera = %id, error = %e, "cannot list the store yet");
                            takeovers.insert(key, Takeover::Failed(attempts + 1));
                        }
                    }
                }
            }
            for g in board.take_unreported_gaps(&id) {
                if let Some(reason) = holes::gap_backfill_reason(g.reason) {
                    pending.push(Hole {
                        camera: r.camera.clone(),
                        window: Interval::new(g.start_ms, g.end_ms),
                        reason,
                    });
                }
            }

            let next = recorder_status(&cam, &r);
            let last = written.get(&r.camera);
            let Some(why) = status_write_due(
                last.map(|(s, _)| s),
                &next,
                last.map_or(Duration::MAX, |(_, t)| now.duration_since(*t)),
            ) else {
                continue;
            };
            match api
                .patch_status(
                    &r.camera,
                    &pp,
                    &Patch::Apply(camera_status_apply_body(&r.camera, &next)),
                )
                .await
            {
                Ok(updated) => {
                    debug!(camera = %id, ?why, "status written");
                    written.insert(r.camera.clone(), (next, now));
                    // The watch will deliver it too; keeping it now keeps transition times right.
                    lock(&k.cameras).insert(r.camera.clone(), updated);
                }
                Err(e) => {
                    debug!(camera = %id, error = %e, "status write failed; retrying next round")
                }
            }
        }
        report_pending_holes(&k, &mut pending).await;
    }
}

/// Creates the Backfills of `pending`, keeping those the API server refused for the next round.
async fn report_pending_holes(k: &K8s, pending: &mut Vec<Hole>) {
    let mut keep = Vec::new();
    for hole in pending.drain(..) {
        let Some(cam) = lock(&k.cameras).get(&hole.camera).cloned() else {
            // No longer ours (moved or deleted): the audit finds what is still missing.
            continue;
        };
        match holes::report_hole(&k.client, &cam, &hole).await {
            Ok(Reported::Existed(name)) => {
                debug!(camera = %hole.camera, backfill = %name, "hole reported already")
            }
            Ok(_) => {}
            Err(e) => {
                warn!(camera = %hole.camera, error = %e, "cannot create a Backfill; retrying");
                keep.push(hole);
            }
        }
    }
    if keep.len() > MAX_PENDING_HOLES {
        keep.drain(..keep.len() - MAX_PENDING_HOLES);
    }
    *pending = keep;
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::{CameraSource, CameraSpec, find_condition};

    fn camera() -> Camera {
        let mut c = Camera::new(
            "door",
            CameraSpec {
                source: CameraSource {
                    url: "rtsp://10.0.0.5/live".into(),
                    transport: RtspTransport::Tcp,
                },
                credentials_secret_ref: None,
                expected_bitrate_kbps: 4000,
                pool: "main".into(),
                recording: Default::default(),
                retention: Default::default(),
                edge_storage: None,
                auto_backfill: true,
            },
        );
        c.metadata.namespace = Some("site".into());
        c.metadata.resource_version = Some("42".into());
        c
    }

    fn report(state: CameraState) -> CameraReport {
        CameraReport {
            namespace: "site".into(),
            camera: "door".into(),
            url: "rtsp://10.0.0.5/live".into(),
            state,
            state_since_ms: 0,
            codec: Some("avc1.42c01f".into()),
            audio: None,
            bitrate_kbps: Some(4100),
            last_segment_end_ms: Some(1_700_000_010_000),
            first_segment_start_ms: Some(1_700_000_000_000),
            segments: 3,
            sessions: 1,
            reconnects: 0,
            last_error: None,
            open_gap_since_ms: None,
            gaps: vec![],
            unreported_gaps: vec![],
        }
    }

    /// The camera after the API server applied `s` for the recorder.
    fn applied(mut cam: Camera, s: &RecorderCameraStatus) -> Camera {
        let mut status = cam.status.take().unwrap_or_default();
        status
            .conditions
            .retain(|c| c.type_ != "Recording" && c.type_ != "Degraded");
        status.conditions.extend(s.conditions.iter().cloned());
        status.measured_bitrate_kbps = s.measured_bitrate_kbps;
        status.last_segment_time = s.last_segment_time;
        cam.status = Some(status);
        cam
    }

    #[test]
    fn apply_body_carries_only_the_recorders_fields() {
        let mut cam = camera();
        let mut st = vigil_api::CameraStatus::default();
        st.conditions.push(Condition::new(
            "Scheduled",
            ConditionStatus::True,
            "Assigned",
            "",
            None,
        ));
        cam.status = Some(st);
        let s = recorder_status(&cam, &report(CameraState::Recording));
        let body = camera_status_apply_body("door", &s);
        assert_eq!(body["kind"], "Camera");
        assert_eq!(body["metadata"]["name"], "door");
        assert!(
            body["metadata"].get("resourceVersion").is_none(),
            "no guard"
        );
        let status = body["status"].as_object().expect("status");
        let mut keys: Vec<&str> = status.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["conditions", "lastSegmentTime", "measuredBitrateKbps"]
        );
        assert_eq!(body["status"]["measuredBitrateKbps"], 4100);
        let conds = body["status"]["conditions"].as_array().expect("conditions");
        assert_eq!(conds.len(), 2, "{body}");
        assert_eq!(conds[0]["type"], "Recording");
        assert_eq!(conds[0]["status"], "True");
        assert_eq!(conds[1]["type"], "Degraded");
        assert_eq!(conds[1]["status"], "False");
        assert!(
            conds
                .iter()
                .all(|c| c["message"].as_str().is_some_and(|m| !m.is_empty())),
            "Kubernetes 1.20 turns an empty message into null: {body}"
        );
    }

    #[test]
    fn stream_loss_is_degraded_connecting_is_not() {
        let cam = camera();
        let mut lost = report(CameraState::Reconnecting);
        lost.last_error = Some("connection refused".into());
        let s = recorder_status(&cam, &lost);
        let degraded = find_condition(&s.conditions, "Degraded").expect("degraded");
        assert_eq!(
            (
                degraded.status,
                degraded.reason.as_str(),
                degraded.message.as_str()
            ),
            (ConditionStatus::True, "StreamLost", "connection refused")
        );
        let mut connecting = report(CameraState::Connecting);
        connecting.segments = 0;
        let s = recorder_status(&cam, &connecting);
        assert_eq!(
            find_condition(&s.conditions, "Recording").map(|c| c.reason.as_str()),
            Some("Connecting")
        );
        assert_eq!(
            find_condition(&s.conditions, "Degraded").map(|c| c.status),
            Some(ConditionStatus::False)
        );
    }

    #[test]
    fn writes_on_change_and_routine_figures_every_few_minutes() {
        let cam = camera();
        let second = Duration::from_secs(1);
        let first = recorder_status(&cam, &report(CameraState::Recording));
        assert_eq!(
            status_write_due(None, &first, Duration::ZERO),
            Some(WriteReason::First)
        );
        let cam = applied(cam, &first);

        // A new segment and a slightly different bitrate: routine, not before 5 minutes.
        let mut r = report(CameraState::Recording);
        r.bitrate_kbps = Some(4500);
        r.last_segment_end_ms = Some(1_700_000_020_000);
        let next = recorder_status(&cam, &r);
        assert_eq!(status_write_due(Some(&first), &next, 15 * second), None);
        assert_eq!(
            status_write_due(Some(&first), &next, ROUTINE_INTERVAL - second),
            None
        );
        assert_eq!(
            status_write_due(Some(&first), &next, ROUTINE_INTERVAL),
            Some(WriteReason::Routine)
        );
        // Nothing changed at all: nothing to write, however long ago.
        let same = recorder_status(&cam, &report(CameraState::Recording));
        assert_eq!(
            status_write_due(Some(&first), &same, 10 * ROUTINE_INTERVAL),
            None
        );

        // The bitrate moved by more than 20 %: at once (placement counts it).
        r.bitrate_kbps = Some(5000);
        let moved = recorder_status(&cam, &r);
        assert_eq!(
            status_write_due(Some(&first), &moved, second),
            Some(WriteReason::BitrateMoved)
        );

        // The stream is lost: the conditions flip, at once.
        let lost = recorder_status(&cam, &report(CameraState::Reconnecting));
        assert_eq!(
            status_write_due(Some(&first), &lost, second),
            Some(WriteReason::ConditionChanged)
        );
        // A new error message while still lost is routine.
        let lost_cam = applied(cam.clone(), &lost);
        let mut r = report(CameraState::Reconnecting);
        r.last_error = Some("timed out".into());
        let lost_again = recorder_status(&lost_cam, &r);
        assert_eq!(status_write_due(Some(&lost), &lost_again, second), None);
        assert_eq!(
            find_condition(&lost_again.conditions, "Recording").map(|c| c.last_transition_time),
            find_condition(&lost.conditions, "Recording").map(|c| c.last_transition_time),
            "the transition time stays"
        );

        // Connecting, then the first segment: at once (the operator's proof of recording).
        let mut connecting = report(CameraState::Connecting);
        connecting.segments = 0;
        connecting.last_segment_end_ms = None;
        connecting.first_segment_start_ms = None;
        let c0 = recorder_status(&camera(), &connecting);
        assert_eq!(c0.last_segment_time, None);
        let mut started = connecting.clone();
        started.state = CameraState::Recording;
        started.last_segment_end_ms = Some(1_700_000_010_000);
        let c1 = recorder_status(&applied(camera(), &c0), &started);
        assert_eq!(
            status_write_due(Some(&c0), &c1, second),
            Some(WriteReason::ConditionChanged)
        );
    }

    #[test]
    fn figures_missing_from_the_report_are_carried_over() {
        let mut cam = camera();
        cam.status = Some(vigil_api::CameraStatus {
            measured_bitrate_kbps: Some(3900),
            last_segment_time: DateTime::from_timestamp_millis(1_699_999_000_000),
            ..Default::default()
        });
        let mut r = report(CameraState::Connecting);
        r.bitrate_kbps = None;
        r.last_segment_end_ms = None;
        let s = recorder_status(&cam, &r);
        assert_eq!(s.measured_bitrate_kbps, Some(3900));
        assert_eq!(
            s.last_segment_time,
            DateTime::from_timestamp_millis(1_699_999_000_000)
        );
    }

    #[test]
    fn off_cameras_are_not_recorded() {
        let mut cam = camera();
        assert!(camera_config(&cam).unwrap().is_some());
        cam.spec.recording.mode = RecordingMode::Off;
        assert!(camera_config(&cam).unwrap().is_none());
    }
}
