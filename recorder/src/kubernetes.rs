//! Kubernetes mode: the recorder pod's view of the cluster.
//!
//! * Reads its RecorderPool (storage, segment length, buffer size, lease timing) and the S3
//!   credentials Secret once at start-up (pool changes take effect when the pod restarts).
//! * Watches the Cameras labelled `vigil.dev/recorder=<pod>` in its namespace and hands the
//!   supervisor the desired camera set after every change.
//! * Renews the Lease `<pod>` every `lease.renewSeconds` with server-side apply; the operator
//!   declares the recorder failed when it expires.
//! * Patches each Camera's status at most every `STATUS_INTERVAL` — except changes the operator
//!   acts on (an outage opened, closed or appended; the `Recording` condition flipping), which go
//!   out within `URGENT_CHECK_INTERVAL`, so a failover's Backfill starts seconds after the new
//!   recorder's first segment instead of up to 15 s later. The fields recorders own
//!   (`measuredBitrateKbps`, `lastSegmentTime`, the `Recording` condition; see the operator's
//!   `controller/camera_status.rs`), plus new outages appended to the operator's list. `state` is
//!   derived by the operator from the `Recording` condition and not written here, so that two
//!   writers never fight over it. The patch is a JSON merge patch on the status subresource
//!   carrying `metadata.resourceVersion`, so the lists it rewrites (conditions, outages) never
//!   overwrite the operator's concurrent changes: a conflict is retried next round.

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
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use vigil_api::labels::RECORDER_KIND_LABEL;
use vigil_api::{
    BackfillReason, Camera, Condition, ConditionStatus, LeaseTiming, Outage, POOL_LABEL,
    RECORDER_LABEL, RecordingMode, RtspTransport, set_condition,
};

use crate::camera::SecretReader;
use crate::error::{Error, Result};
use crate::status::{CameraReport, CameraState, StatusBoard};
use vigil_config::{CameraConfig, CredentialSource, Transport, validate_segment_seconds};
use vigil_store::StorageConfig;
use vigil_store::gaps::{GapReason, GapRecord};
use vigil_store::intervals::{DEFAULT_TOLERANCE_MS, Interval};
use vigil_store::layout::CameraId;

/// Minimum time between two routine status patches of one camera (bitrate, last segment time).
pub const STATUS_INTERVAL: Duration = Duration::from_secs(15);
/// How often the status loop looks for changes the operator acts on at once (see [`StatusPatch::urgent`]).
pub const URGENT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Outages kept in a Camera's status; older ones remain as gap records in the store.
const MAX_OUTAGES: usize = 100;
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
    match r.state {
        CameraState::Recording => Condition::new(
            "Recording",
            ConditionStatus::True,
            "Streaming",
            format!("recording on {}", r.codec.as_deref().unwrap_or("video")),
            generation,
        ),
        CameraState::Connecting if r.segments == 0 && r.last_error.is_none() => Condition::new(
            "Recording",
            ConditionStatus::False,
            "Connecting",
            "connecting to the camera",
            generation,
        ),
        _ => Condition::new(
            "Recording",
            ConditionStatus::False,
            "StreamLost",
            r.last_error
                .clone()
                .unwrap_or_else(|| "no footage from the camera".into()),
            generation,
        ),
    }
}

/// A gap as an outage for the operator (which turns outages into Backfills).
pub fn outage(g: &GapRecord, pod: &str) -> Option<Outage> {
    let start = DateTime::from_timestamp_millis(g.start_ms)?;
    let end = DateTime::from_timestamp_millis(g.end_ms)?;
    let (reason, recorder) = match g.reason {
        GapReason::RecorderRestart => (BackfillReason::RecorderFailure, Some(pod.to_string())),
        _ => (BackfillReason::StreamLoss, None),
    };
    Some(Outage {
        start,
        end: Some(end),
        reason,
        recorder,
    })
}

/// Where the footage in the store that covers `start_ms` ends: the end of the stored interval
/// (merged, see [`vigil_store::intervals::merge`]) containing `start_ms`, if one does. An
/// open failover outage starts at the failed recorder's last lease renewal minus one segment, a
/// safe guess; everything up to this point is in fact stored, so the outage can start here.
pub fn stored_until(start_ms: i64, stored: &[Interval]) -> Option<i64> {
    stored
        .iter()
        .find(|iv| iv.start <= start_ms + DEFAULT_TOLERANCE_MS && iv.end > start_ms)
        .map(|iv| iv.end)
}

/// A Camera status merge patch.
#[derive(Debug)]
pub struct StatusPatch {
    pub body: serde_json::Value,
    /// Whether it carries something the operator acts on at once: a change to the outages
    /// (closing a failover outage starts its Backfill) or a flip of the `Recording` condition's
    /// status (the camera's state). Bitrate and last segment time can wait.
    pub urgent: bool,
}

/// The merge patch for one camera, or `None` if nothing changed. `outage_starts` moves the
/// start of open outages (old start → new start; see [`stored_until`]).
pub fn status_patch(
    cam: &Camera,
    r: &CameraReport,
    new_gaps: &[GapRecord],
    pod: &str,
    outage_starts: &BTreeMap<DateTime<Utc>, DateTime<Utc>>,
) -> Option<StatusPatch> {
    let old = cam.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.clone();
    set_condition(
        &mut conditions,
        recording_condition(r, cam.metadata.generation),
    );
    // Kubernetes 1.20 turns an empty string into null in a merge patch and the schema refuses
    // it; other writers avoid empty messages too, this keeps a stray one from blocking us.
    for c in conditions.iter_mut().filter(|c| c.message.is_empty()) {
        c.message = c.reason.clone();
    }
    let mut outages = old.outages.clone();
    for o in outages.iter_mut().filter(|o| o.end.is_none()) {
        if let Some(start) = outage_starts.get(&o.start) {
            o.start = (*start).max(o.start);
        }
    }
    // An open outage (the operator saw this camera's previous recorder fail) ends where this
    // recorder's footage begins.
    if let Some(first) = r
        .first_segment_start_ms
        .and_then(DateTime::from_timestamp_millis)
    {
        for o in outages
            .iter_mut()
            .filter(|o| o.end.is_none() && o.start < first)
        {
            o.end = Some(first);
        }
    }
    // Start-up gaps (assignment to first frame) are inside the operator's own failover outage,
    // or precede any footage of a new camera: no backfill needed.
    for g in new_gaps.iter().filter(|g| g.reason != GapReason::Startup) {
        if let Some(o) = outage(g, pod)
            && !outages.iter().any(|x| x.start == o.start && x.end == o.end)
        {
            outages.push(o);
        }
    }
    if outages.len() > MAX_OUTAGES {
        outages.drain(..outages.len() - MAX_OUTAGES);
    }
    let last = r
        .last_segment_end_ms
        .and_then(DateTime::from_timestamp_millis);
    let unchanged = old.measured_bitrate_kbps == r.bitrate_kbps.or(old.measured_bitrate_kbps)
        && (last.is_none() || old.last_segment_time == last)
        && old.conditions == conditions
        && old.outages == outages;
    if unchanged {
        return None;
    }
    let mut status = json!({ "conditions": conditions });
    if let Some(k) = r.bitrate_kbps {
        status["measuredBitrateKbps"] = json!(k);
    }
    if let Some(t) = last {
        status["lastSegmentTime"] = json!(t.to_rfc3339_opts(SecondsFormat::Millis, true));
    }
    if outages != old.outages {
        status["outages"] = serde_json::to_value(&outages).ok()?;
    }
    let recording = |cs: &[Condition]| cs.iter().find(|c| c.type_ == "Recording").map(|c| c.status);
    Some(StatusPatch {
        body: json!({
            "metadata": { "resourceVersion": cam.resource_version() },
            "status": status,
        }),
        urgent: outages != old.outages || recording(&conditions) != recording(&old.conditions),
    })
}

/// The store the recorder uploads to, and its key prefix.
pub type StoreRef = (Arc<dyn ObjectStore>, String);

/// Where the camera's stored footage that covers `start` ends (see [`stored_until`]); `None` if
/// nothing stored covers it or the store cannot be listed (the outage then keeps its start).
async fn stored_footage_until(
    (store, prefix): &StoreRef,
    camera: &CameraId,
    start: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let from = start.timestamp_millis();
    let window = Interval::new(from, Utc::now().timestamp_millis());
    match vigil_store::catalog::covered(store.as_ref(), prefix, camera, window).await {
        Ok(stored) => {
            let until = stored_until(from, &stored)?;
            info!(camera = %camera, outage_start = %start, stored_until_ms = until,
                "failover outage starts where the store's footage ends");
            DateTime::from_timestamp_millis(until)
        }
        Err(e) => {
            warn!(camera = %camera, error = %e, "cannot list the store to place an outage's start");
            None
        }
    }
}

/// Patches the status of every running camera: urgent changes within `URGENT_CHECK_INTERVAL`,
/// the rest at most every `STATUS_INTERVAL`.
pub async fn status_loop(
    k: Arc<K8s>,
    board: Arc<StatusBoard>,
    store: StoreRef,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Camera> = Api::namespaced(k.client.clone(), &k.namespace);
    let mut tick = tokio::time::interval(URGENT_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_patched: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    // Open outages already checked against the store: (camera, start) → where stored footage ends.
    let mut checked: BTreeMap<(String, DateTime<Utc>), Option<DateTime<Utc>>> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        let reports = board.snapshot();
        last_patched.retain(|camera, _| reports.iter().any(|r| &r.camera == camera));
        checked.retain(|(camera, _), _| reports.iter().any(|r| &r.camera == camera));
        for r in reports {
            let Ok(id) = CameraId::new(&r.namespace, &r.camera) else {
                continue;
            };
            let Some(cam) = lock(&k.cameras).get(&r.camera).cloned() else {
                continue;
            };
            let routine_due = last_patched
                .get(&r.camera)
                .is_none_or(|t| now.duration_since(*t) >= STATUS_INTERVAL);
            let mut outage_starts = BTreeMap::new();
            for o in cam.status.iter().flat_map(|s| &s.outages) {
                if o.end.is_some() || o.reason != BackfillReason::RecorderFailure {
                    continue;
                }
                let key = (r.camera.clone(), o.start);
                if !checked.contains_key(&key) {
                    let until = stored_footage_until(&store, &id, o.start).await;
                    checked.insert(key.clone(), until);
                }
                if let Some(Some(until)) = checked.get(&key) {
                    outage_starts.insert(o.start, *until);
                }
            }
            let gaps = board.take_unreported_gaps(&id);
            let Some(patch) = status_patch(&cam, &r, &gaps, &k.pod, &outage_starts) else {
                continue;
            };
            if !routine_due && !patch.urgent {
                board.requeue_gaps(&id, gaps);
                continue;
            }
            last_patched.insert(r.camera.clone(), now);
            match api
                .patch_status(
                    &r.camera,
                    &PatchParams::default(),
                    &Patch::Merge(&patch.body),
                )
                .await
            {
                Ok(updated) => {
                    debug!(camera = %id, "status patched");
                    // The watch will deliver it too; keeping it now avoids a needless conflict.
                    lock(&k.cameras).insert(r.camera.clone(), updated);
                }
                Err(e) => {
                    // A conflict means the operator wrote in between; the next round merges
                    // with the newer object from the watch.
                    debug!(camera = %id, error = %e, "status patch failed; retrying next round");
                    board.requeue_gaps(&id, gaps);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::{CameraSource, CameraSpec};

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

    #[test]
    fn failover_outage_starts_where_stored_footage_ends() {
        let stored = [Interval::new(1_000, 60_000), Interval::new(70_000, 80_000)];
        assert_eq!(stored_until(50_000, &stored), Some(60_000));
        assert_eq!(
            stored_until(1_050, &stored),
            Some(60_000),
            "within tolerance"
        );
        assert_eq!(stored_until(65_000, &stored), None, "already in a hole");
        assert_eq!(stored_until(500, &stored), None, "before any footage");
        // The open outage moves to where the footage ends; a closed one is left alone.
        let mut cam = camera();
        let old = DateTime::from_timestamp_millis(1_699_999_990_000).unwrap();
        let until = DateTime::from_timestamp_millis(1_699_999_994_500).unwrap();
        cam.status = Some(vigil_api::CameraStatus {
            outages: vec![Outage {
                start: old,
                end: None,
                reason: BackfillReason::RecorderFailure,
                recorder: Some("rec-old".into()),
            }],
            ..Default::default()
        });
        let mut r = report(CameraState::Connecting);
        r.first_segment_start_ms = None;
        let starts = BTreeMap::from([(old, until)]);
        let p = status_patch(&cam, &r, &[], "rec-0", &starts).unwrap();
        assert_eq!(
            p.body["status"]["outages"][0]["start"], "2023-11-14T22:13:14.500Z",
            "{}",
            p.body
        );
        assert!(
            p.body["status"]["outages"][0]["end"].is_null(),
            "{}",
            p.body
        );
        assert!(p.urgent);
    }

    #[test]
    fn urgent_only_for_outages_and_recording_flips() {
        let mut cam = camera();
        // First report of a recording camera: the Recording condition appears → urgent.
        let p = status_patch(
            &cam,
            &report(CameraState::Recording),
            &[],
            "rec-0",
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(p.urgent);
        // Once the object carries Recording=True, a new bitrate alone is routine.
        let mut status = cam.status.clone().unwrap_or_default();
        set_condition(
            &mut status.conditions,
            recording_condition(&report(CameraState::Recording), cam.metadata.generation),
        );
        cam.status = Some(status.clone());
        let mut faster = report(CameraState::Recording);
        faster.bitrate_kbps = Some(5000);
        let p = status_patch(&cam, &faster, &[], "rec-0", &BTreeMap::new()).unwrap();
        assert!(!p.urgent, "{}", p.body);
        // A stream loss flips the condition → urgent.
        let p = status_patch(
            &cam,
            &report(CameraState::Reconnecting),
            &[],
            "rec-0",
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(p.urgent, "{}", p.body);
        // An open failover outage closed by this recorder's first segment → urgent.
        status.outages.push(Outage {
            start: DateTime::from_timestamp_millis(1_699_999_990_000).unwrap(),
            end: None,
            reason: BackfillReason::RecorderFailure,
            recorder: Some("rec-old".into()),
        });
        cam.status = Some(status);
        let p = status_patch(&cam, &faster, &[], "rec-0", &BTreeMap::new()).unwrap();
        assert!(
            p.body["status"]["outages"][0]["end"].is_string(),
            "{}",
            p.body
        );
        assert!(p.urgent);
    }

    #[test]
    fn patch_carries_resource_version_and_condition() {
        let cam = camera();
        let g = GapRecord::new(
            &CameraId::new("site", "door").unwrap(),
            1_700_000_000_000,
            1_700_000_004_000,
            GapReason::StreamLost,
            "rec-0",
        );
        let startup = GapRecord::new(
            &CameraId::new("site", "door").unwrap(),
            1_699_999_000_000,
            1_699_999_001_000,
            GapReason::Startup,
            "rec-0",
        );
        let p = status_patch(
            &cam,
            &report(CameraState::Recording),
            &[startup, g],
            "rec-0",
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(p.body["metadata"]["resourceVersion"], "42");
        assert!(
            p.body["status"].get("state").is_none(),
            "state belongs to the operator"
        );
        assert_eq!(p.body["status"]["measuredBitrateKbps"], 4100);
        assert_eq!(
            p.body["status"]["lastSegmentTime"],
            "2023-11-14T22:13:30.000Z"
        );
        assert_eq!(p.body["status"]["conditions"][0]["type"], "Recording");
        assert_eq!(p.body["status"]["conditions"][0]["status"], "True");
        assert_eq!(p.body["status"]["outages"][0]["reason"], "StreamLoss");
        assert_eq!(
            p.body["status"]["outages"][0]["start"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            p.body["status"]["outages"][0]["end"],
            "2023-11-14T22:13:24Z"
        );
    }

    #[test]
    fn keeps_operator_conditions_and_skips_no_ops() {
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
        let r = report(CameraState::Recording);
        let p = status_patch(&cam, &r, &[], "rec-0", &BTreeMap::new()).unwrap();
        let conds = p.body["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        assert!(p.body["status"].get("outages").is_none());
        // Apply it and ask again: nothing to do.
        let mut applied = cam.clone();
        let s: vigil_api::CameraStatus = serde_json::from_value(p.body["status"].clone()).unwrap();
        applied.status = Some(s);
        assert!(status_patch(&applied, &r, &[], "rec-0", &BTreeMap::new()).is_none());
    }

    #[test]
    fn closes_open_outage_at_first_footage() {
        let mut cam = camera();
        let mut st = vigil_api::CameraStatus::default();
        st.outages.push(Outage {
            start: DateTime::from_timestamp_millis(1_699_999_990_000).unwrap(),
            end: None,
            reason: BackfillReason::RecorderFailure,
            recorder: Some("rec-1".into()),
        });
        cam.status = Some(st);
        let p = status_patch(
            &cam,
            &report(CameraState::Recording),
            &[],
            "rec-0",
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(
            p.body["status"]["outages"][0]["end"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(p.body["status"]["outages"][0]["recorder"], "rec-1");
    }

    #[test]
    fn off_cameras_are_not_recorded() {
        let mut cam = camera();
        assert!(camera_config(&cam).unwrap().is_some());
        cam.spec.recording.mode = RecordingMode::Off;
        assert!(camera_config(&cam).unwrap().is_none());
    }
}
