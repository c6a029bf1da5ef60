//! Kubernetes mode: the recorder pod's view of the cluster.
//!
//! * Reads its RecorderPool (storage, segment length, buffer size, lease timing) and the S3
//!   credentials Secret once at start-up (pool changes take effect when the pod restarts).
//! * Watches the Cameras labelled `vigil.dev/recorder=<pod>` (its own) and
//!   `vigil.dev/incoming-recorder=<pod>` (planned moves to it: recorded alongside the owner
//!   until the handover completes) in its namespace and hands the supervisor the desired camera
//!   set after every change. A camera whose handover completes moves from one set to the other
//!   in one step, so it keeps recording.
//! * Make-before-break: as the incoming recorder, reports `status.handoverReady: <pod>` once its
//!   first footage of the camera is on disk, and finds no take-over hole (the owner records
//!   meanwhile).
//! * Draining (after SIGTERM): says so on its Lease (`vigil.dev/draining: "true"`), so the
//!   operator moves its cameras off make-before-break.
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
use std::sync::atomic::{AtomicBool, Ordering};
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
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vigil_api::labels::{
    DRAINING_ANNOTATION, INCOMING_RECORDER_LABEL, LIVE_ADDRESS_ANNOTATION, RECORDER_KIND_LABEL,
};
use vigil_api::netpolicy::{AddressPolicy, CLUSTER_NETWORKS_ENV, ClusterNetworks};
use vigil_api::{
    Backfill, BackfillReason, Camera, CameraConditionReason, CameraConditionType,
    CameraStatusWriter, Condition, ConditionStatus, LeaseTiming, POOL_LABEL, RECORDER_LABEL,
    RecordingMode, RtspTransport, camera_status_apply_body, set_condition,
};

use crate::camera::SecretReader;
use crate::error::{Error, Result};
use crate::status::{CameraReport, CameraState, StatusBoard};
use crate::windows::{CameraWindows, Window, WindowBoard};
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
    /// After SIGTERM, how long to keep recording while the cameras are taken over.
    pub drain_timeout: Duration,
    /// Latest Camera objects from the watch, for status merges.
    cameras: Mutex<BTreeMap<String, Camera>>,
    /// Set on SIGTERM: the Lease says so from the next renewal on.
    draining: AtomicBool,
    /// Renews the Lease at once (the draining flag should not wait for the next tick).
    renew_now: Notify,
    /// Where the access point reads this recorder's live frames (published on the Lease as
    /// `vigil.dev/live-address`); `None` when live view is off.
    pub live_address: Option<String>,
}

impl K8s {
    /// Marks this recorder as draining and renews its Lease at once to say so.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.renew_now.notify_one();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Settings the RecorderPool decides.
pub struct PoolSettings {
    pub storage: StorageConfig,
    pub prefix: String,
    pub segment_seconds: u32,
    pub buffer_max_bytes: u64,
    /// `spec.cameraNetworks` with the cluster's networks from the environment.
    pub address_policy: AddressPolicy,
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
    let cluster = ClusterNetworks::from_env()
        .map_err(|e| Error::Config(format!("{CLUSTER_NETWORKS_ENV}: {e}")))?;
    let address_policy = AddressPolicy::new(&spec.camera_networks, &cluster)
        .map_err(|e| Error::Config(format!("spec.cameraNetworks: {e}")))?;
    let settings = PoolSettings {
        address_policy,
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
            drain_timeout: Duration::from_secs(60),
            cameras: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            renew_now: Notify::new(),
            live_address: None,
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
    let rec = &cam.spec.recording;
    // Mode Off is recorded only for a manual window (through a gate without pre- or
    // post-time); kept a minute past the window's end so that the gate closes and the window's
    // record is written even if the operator releases the camera at once.
    let manual_only = rec.mode == RecordingMode::Off;
    if manual_only
        && rec
            .manual
            .as_ref()
            .is_none_or(|m| m.end + chrono::TimeDelta::seconds(60) < Utc::now())
    {
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
    let events = if rec.mode == RecordingMode::Event {
        let url = rec
            .onvif_events_url
            .clone()
            .or_else(|| {
                cam.spec
                    .edge_storage
                    .as_ref()
                    .and_then(|e| e.onvif.as_ref())
                    .map(|o| o.device_url.clone())
            })
            .ok_or_else(|| {
                Error::Config(format!(
                    "camera {id}: mode Event needs onvifEventsUrl or edgeStorage.onvif"
                ))
            })?;
        Some(vigil_config::EventMode::new(
            &id,
            &url,
            rec.pre_seconds,
            rec.post_seconds,
        )?)
    } else {
        None
    };
    let mut c = CameraConfig::new(id, &cam.spec.source.url, credentials, transport, true)?;
    c.events = events;
    c.manual_only = manual_only;
    if let Some(site) = &cam.spec.site {
        // Through the site link (`vigil_config::site_link_from_env`, set by the operator when
        // the chart runs the rendezvous service); without one the camera fails to connect with
        // a clear error instead of being dialled directly.
        c.transport = vigil_config::Transport::Tcp;
        c.site = Some(site.clone());
    }
    Ok(Some(c))
}

/// Why this recorder records a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `vigil.dev/recorder=<pod>`.
    Owner,
    /// `vigil.dev/incoming-recorder=<pod>`: a planned move to this recorder.
    Incoming,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Owner => RECORDER_LABEL,
            Role::Incoming => INCOMING_RECORDER_LABEL,
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Owner => Role::Incoming,
            Role::Incoming => Role::Owner,
        }
    }

    fn holds(self, cam: &Camera, pod: &str) -> bool {
        cam.labels().get(self.label()).map(String::as_str) == Some(pod)
    }
}

/// The cameras one watch (one role) delivered.
#[derive(Default)]
struct WatchedSet {
    init: Option<BTreeMap<String, Camera>>,
    cameras: BTreeMap<String, Camera>,
    synced: bool,
}

/// Applies one watch event of `role` to `sets`; true when the desired set may have changed.
/// Pure. A deletion whose camera carries labels naming this recorder in the other role (a
/// handover completing: incoming becomes owner; the caller reads the camera's current labels)
/// puts it straight into the other set, so it is never missing from the union between the two
/// watches' events.
fn apply_event(
    sets: &mut BTreeMap<&'static str, WatchedSet>,
    role: Role,
    ev: Event<Camera>,
    pod: &str,
) -> bool {
    let key = role.label();
    let set = sets.entry(key).or_default();
    match ev {
        Event::Init => {
            set.init = Some(BTreeMap::new());
            false
        }
        Event::InitApply(c) => {
            if let Some(m) = &mut set.init {
                m.insert(c.name_any(), c);
            }
            false
        }
        Event::InitDone => {
            if let Some(m) = set.init.take() {
                set.cameras = m;
            }
            set.synced = true;
            true
        }
        Event::Apply(c) => {
            set.cameras.insert(c.name_any(), c);
            true
        }
        Event::Delete(c) => {
            set.cameras.remove(&c.name_any());
            let other = role.other();
            if !role.holds(&c, pod) && other.holds(&c, pod) {
                sets.entry(other.label())
                    .or_default()
                    .cameras
                    .insert(c.name_any(), c);
            }
            true
        }
    }
}

/// Watches this pod's Cameras (owned and incoming) and sends the full desired set after every
/// change, once both watches have listed.
/// The manual and external windows of a camera (`crate::windows`).
pub fn camera_windows(cam: &Camera) -> CameraWindows {
    CameraWindows {
        manual: cam.spec.recording.manual.as_ref().map(Window::of),
        external: cam.spec.recording.external_event.as_ref().map(Window::of),
    }
}

/// `windows`: where the held cameras' manual and external windows are published (their
/// changes reach the camera tasks without restarting them).
pub async fn watch_cameras(
    k: Arc<K8s>,
    tx: mpsc::Sender<Vec<CameraConfig>>,
    windows: Option<Arc<watch::Sender<WindowBoard>>>,
) {
    let api: Api<Camera> = Api::namespaced(k.client.clone(), &k.namespace);
    let watch = |role: Role| {
        let cfg = watcher::Config::default().labels(&format!("{}={}", role.label(), k.pod));
        watcher::watcher(api.clone(), cfg)
            .default_backoff()
            .map(move |ev| (role, ev))
            .boxed()
    };
    let mut stream = futures::stream::select(watch(Role::Owner), watch(Role::Incoming));
    let mut sets: BTreeMap<&'static str, WatchedSet> = BTreeMap::new();
    while let Some((role, ev)) = stream.next().await {
        let changed = match ev {
            // The API server reports a camera leaving a label-selected watch with its state
            // before the change, so a handover completing (incoming → owner) looks like a
            // deletion. Read the camera once to tell: if it is now ours as owner, it moves
            // between the sets without stopping.
            Ok(Event::Delete(c)) if role == Role::Incoming => {
                let current = match api.get_opt(&c.name_any()).await {
                    Ok(Some(fresh)) => fresh,
                    Ok(None) => c,
                    Err(e) => {
                        warn!(camera = %c.name_any(), error = %e, "cannot read a camera that left the incoming watch");
                        c
                    }
                };
                apply_event(&mut sets, role, Event::Delete(current), &k.pod)
            }
            Ok(ev) => apply_event(&mut sets, role, ev, &k.pod),
            Err(e) => {
                warn!(error = %e, ?role, "Camera watch error; retrying");
                false
            }
        };
        let synced = [Role::Owner, Role::Incoming]
            .iter()
            .all(|r| sets.get(r.label()).is_some_and(|s| s.synced));
        if !(changed && synced) {
            continue;
        }
        let union: BTreeMap<String, Camera> = sets
            .values()
            .flat_map(|s| s.cameras.iter().map(|(n, c)| (n.clone(), c.clone())))
            .collect();
        let desired: Vec<CameraConfig> = union
            .values()
            .filter_map(|c| match camera_config(c) {
                Ok(cfg) => cfg,
                Err(e) => {
                    warn!(camera = %c.name_any(), error = %e, "cannot record this camera");
                    None
                }
            })
            .collect();
        if let Some(w) = &windows {
            let board: WindowBoard = union
                .values()
                .filter_map(|c| {
                    let id = CameraId::new(&c.namespace().unwrap_or_default(), &c.name_any());
                    Some((id.ok()?, camera_windows(c)))
                })
                .filter(|(_, w)| *w != CameraWindows::default())
                .collect();
            w.send_if_modified(|b| {
                let changed = *b != board;
                *b = board;
                changed
            });
        }
        *lock(&k.cameras) = union;
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
    let mut annotations = serde_json::Map::new();
    if k.is_draining() {
        annotations.insert(DRAINING_ANNOTATION.into(), "true".into());
    }
    if let Some(a) = &k.live_address {
        annotations.insert(LIVE_ADDRESS_ANNOTATION.into(), a.clone().into());
    }
    if !annotations.is_empty() {
        meta["annotations"] = annotations.into();
    }
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
            _ = k.renew_now.notified() => {}
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
        CameraState::Quarantined => Condition::new(
            recording,
            ConditionStatus::False,
            R::Quarantined.as_str(),
            r.last_error
                .clone()
                .unwrap_or_else(|| "quarantined: receive limits exceeded".into()),
            generation,
        ),
        CameraState::Connecting if r.segments == 0 && r.last_error.is_none() => Condition::new(
            recording,
            ConditionStatus::False,
            R::Connecting.as_str(),
            "connecting to the camera",
            generation,
        ),
        _ if r.address_refused => Condition::new(
            recording,
            ConditionStatus::False,
            R::AddressNotAllowed.as_str(),
            r.last_error
                .clone()
                .unwrap_or_else(|| "the camera's address is not allowed".into()),
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

/// `EventSubscription` (Event mode only): whether events can arrive.
fn event_condition(r: &CameraReport, generation: Option<i64>) -> Option<Condition> {
    let e = r.event_source.as_ref()?;
    let t = CameraConditionType::EventSubscription.as_str();
    let since = DateTime::from_timestamp_millis(e.since_ms)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default();
    Some(if e.subscribed {
        Condition::new(
            t,
            ConditionStatus::True,
            CameraConditionReason::Subscribed.as_str(),
            format!("ONVIF PullPoint subscription since {since}"),
            generation,
        )
    } else {
        Condition::new(
            t,
            ConditionStatus::False,
            CameraConditionReason::SubscriptionStale.as_str(),
            match &e.last_error {
                Some(err) => format!("no event subscription since {since}: {err}"),
                None => "subscribing to the camera's events".to_string(),
            },
            generation,
        )
    })
}

/// `Degraded` follows `Recording`: true while the stream is lost or the camera quarantined (not
/// while still connecting).
fn degraded_condition(recording: &Condition, generation: Option<i64>) -> Condition {
    let degraded = CameraConditionType::Degraded.as_str();
    let lost = [
        CameraConditionReason::StreamLost.as_str(),
        CameraConditionReason::AddressNotAllowed.as_str(),
        CameraConditionReason::Quarantined.as_str(),
    ];
    if recording.status == ConditionStatus::False && lost.contains(&recording.reason.as_str()) {
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
    /// During a planned move: the incoming recorder, once it has footage (see
    /// [`handover_ready`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover_ready: Option<String>,
    /// `Recording` and `Degraded`.
    pub conditions: Vec<Condition>,
    /// This recorder has finished a segment of the camera. Not written: `lastSegmentTime` may
    /// still be the previous recorder's (carried over), so it cannot tell that this one records.
    #[serde(skip)]
    pub own_segment: bool,
}

/// `status.handoverReady` as recorder `me` writes it for `cam` with its report `r`. The
/// incoming recorder names itself once its first footage is on disk; while a handover is under
/// way any recorder carries the value over (the recorders share one field manager, so an apply
/// without it would remove it); without a handover it is dropped. A stale value can only name
/// the camera's owner, never an incoming recorder, so it cannot complete a later handover.
pub fn handover_ready(cam: &Camera, r: &CameraReport, me: &str) -> Option<String> {
    let incoming = cam.labels().get(INCOMING_RECORDER_LABEL)?;
    if incoming == me && r.first_footage_ms.is_some() {
        return Some(me.to_string());
    }
    cam.status.as_ref().and_then(|s| s.handover_ready.clone())
}

/// Whether the `handoverReady` naming this recorder (`me`), which it wrote, is missing from the
/// camera's status as last seen (`cam`): the outgoing owner's apply, made from a view of the
/// camera older than that write, removed it (the recorders share one field manager). Then it
/// is written again; else the incoming recorder, having written it once, never would, and the
/// planned move would hang until the owner's drain timed out.
pub fn handover_ready_lost(cam: &Camera, next: &RecorderCameraStatus, me: &str) -> bool {
    next.handover_ready.as_deref() == Some(me)
        && cam
            .status
            .as_ref()
            .and_then(|s| s.handover_ready.as_deref())
            != Some(me)
}

/// What this recorder would write for `cam` now, from its report `r`. Transition times are
/// kept from the camera's status when a condition's status did not change.
pub fn recorder_status(cam: &Camera, r: &CameraReport, me: &str) -> RecorderCameraStatus {
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
    let event_type = CameraConditionType::EventSubscription.as_str();
    match event_condition(r, generation) {
        Some(c) => set_condition(&mut conditions, c),
        None => conditions.retain(|c| c.type_ != event_type),
    }
    // Recording first, for people reading the YAML.
    conditions.sort_by_key(|c| c.type_ != CameraConditionType::Recording.as_str());
    RecorderCameraStatus {
        measured_bitrate_kbps: r.bitrate_kbps.or(old.measured_bitrate_kbps),
        last_segment_time: r
            .last_segment_end_ms
            .and_then(DateTime::from_timestamp_millis)
            .or(old.last_segment_time),
        handover_ready: handover_ready(cam, r, me),
        conditions,
        own_segment: r.last_segment_end_ms.is_some(),
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
    /// `handoverReady` changed: a planned move can complete (or its value is dropped).
    Handover,
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
    if last.handover_ready != next.handover_ready {
        return Some(WriteReason::Handover);
    }
    if !last.own_segment && next.own_segment {
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
/// (see [`holes::takeover_hole`]), from the failover's safe point if `failover_safe_point` and
/// one is on record. `Err` when the store cannot be listed.
async fn find_takeover_hole(
    (store, prefix): &StoreRef,
    camera: &CameraId,
    cam: &Camera,
    first_ms: i64,
    segment_seconds: u32,
    failover_safe_point: bool,
) -> Result<Option<Interval>> {
    let from = holes::lookback_start(cam, first_ms, segment_seconds);
    let stored = vigil_store::catalog::covered(
        store.as_ref(),
        prefix,
        camera,
        Interval::new(from, first_ms + 1),
    )
    .await?;
    let safe = holes::pending_failover(cam)
        .filter(|_| failover_safe_point)
        .map(|f| f.footage_safe_until.timestamp_millis());
    Ok(holes::takeover_hole(first_ms, &stored, safe))
}

/// The parts of a take-over hole that no Backfill of the camera covers yet (a recorder killed
/// after reporting its own take-over hole left a Backfill for its start; see
/// [`holes::unreported`]).
async fn unreported_parts(client: &Client, cam: &Camera, hole: Interval) -> Result<Vec<Interval>> {
    let ns = cam.namespace().unwrap_or_default();
    let backfills = Api::<Backfill>::namespaced(client.clone(), &ns)
        .list(&kube::api::ListParams::default())
        .await?
        .items;
    Ok(holes::unreported(
        hole,
        &holes::backfill_windows(&cam.name_any(), &backfills),
    ))
}

/// The start of this recorder's first footage of a camera once the take-over check may run.
///
/// Normally that is when its first segment is stored: a recorder that handed the camera over
/// in order may still be uploading its last segment, and checking earlier would report that as
/// a hole. After a failover the previous recorder is dead and nothing more of it will arrive, so
/// the check runs as soon as the first fragment is durable: waiting a whole segment left a
/// window in which a second kill (of this recorder, before its first segment) lost the report
/// of the first hole — the next recorder only looks from the latest failover on (issue 18).
fn takeover_check_from(r: &CameraReport, cam: &Camera) -> Option<i64> {
    r.first_segment_start_ms.or_else(|| {
        r.first_footage_ms
            .filter(|_| holes::pending_failover(cam).is_some())
    })
}

/// The take-over check of one camera: not done yet, or done for this first footage.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Takeover {
    Done,
    /// The store could not be listed (or the Backfills read) this many times.
    Failed(u32),
    /// Came by a planned move and found a hole: the recorder that handed the camera over may
    /// still be uploading it. Looked again every round while that recorder lives.
    AwaitingOwner {
        owner: OwnerSeen,
        since: Instant,
    },
}

/// A recorder that handed a camera over and whose footage is awaited: how its Lease was last
/// seen. Judged by observed change on this recorder's clock, as the operator judges Leases,
/// so that clock skew between nodes does not matter.
#[derive(Clone, Debug, PartialEq, Eq)]
struct OwnerSeen {
    /// The Lease's resourceVersion: any renewal changes it.
    version: String,
    /// When this recorder first saw that version.
    at: Instant,
}

/// Whether the recorder that handed a camera over is alive, from its Lease now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OwnerVerdict {
    Alive(OwnerSeen),
    Gone,
}

/// Longest wait for a living previous owner to upload what it recorded before the handover
/// (it may be riding out a store outage); after that the hole is reported anyway: a second
/// counted twice beats a hole never reported.
const MAX_OWNER_WAIT: Duration = Duration::from_secs(600);

/// Judges the previous owner from its Lease's version now (`None`: no Lease, its pod is gone)
/// and how it was seen before: gone when its Lease is missing or has not changed for longer
/// than a lease lasts.
fn judge_owner(
    before: Option<&OwnerSeen>,
    version_now: Option<&str>,
    now: Instant,
    lease_duration: Duration,
) -> OwnerVerdict {
    let Some(version) = version_now else {
        return OwnerVerdict::Gone;
    };
    match before {
        Some(seen) if seen.version == version => {
            if now.duration_since(seen.at) > lease_duration {
                OwnerVerdict::Gone
            } else {
                OwnerVerdict::Alive(seen.clone())
            }
        }
        _ => OwnerVerdict::Alive(OwnerSeen {
            version: version.to_string(),
            at: now,
        }),
    }
}

/// Whether a camera this recorder was the incoming recorder of came by a completed planned
/// move from `owner`, rather than by a failover: no failover is on record for this assignment,
/// or the one on record moved the camera away from another recorder (the camera failed over to
/// `owner`, which then handed it on: the hole before `owner`'s footage is `owner`'s to report,
/// and reporting it here too counted it twice).
fn handed_over(cam: &Camera, owner: Option<&str>) -> bool {
    match holes::pending_failover(cam) {
        None => true,
        Some(f) => owner.is_some_and(|o| o != f.from),
    }
}

/// One round of the take-over check of one camera.
struct TakeoverCheck<'a> {
    store: &'a StoreRef,
    camera: &'a CameraId,
    cam: &'a Camera,
    /// Start of this recorder's first footage of the camera.
    first_ms: i64,
    segment_seconds: u32,
    /// `Some` when the camera came by a planned move: the recorder that handed it over (if
    /// known).
    handed_over_by: Option<Option<&'a str>>,
}

impl TakeoverCheck<'_> {
    /// Looks for the hole before this recorder's first footage; returns the next state and the
    /// windows to report.
    ///
    /// After a failover the hole is reported at once: the dead recorder uploads nothing more.
    /// After a planned move a hole is normally the owner's last segment still on its way; but
    /// an owner killed before uploading it (its spool lost with its pod) leaves a real hole
    /// that nobody else reports. So a hole found after a planned move is reported once the
    /// owner is gone (its Lease deleted or no longer renewed) and the hole is still there.
    async fn run(&self, k: &K8s, state: Option<Takeover>) -> (Takeover, Vec<Interval>) {
        let attempts = match state {
            Some(Takeover::Failed(n)) => n,
            _ => 0,
        };
        // After a planned move the hole is judged from the footage stored before this
        // recorder's (the owner's last segment ends it), not from a failover's safe point.
        let failover_safe_point = self.handed_over_by.is_none();
        let hole = match find_takeover_hole(
            self.store,
            self.camera,
            self.cam,
            self.first_ms,
            self.segment_seconds,
            failover_safe_point,
        )
        .await
        {
            Ok(hole) => hole,
            Err(e) if attempts + 1 >= TAKEOVER_ATTEMPTS => {
                warn!(camera = %self.camera, error = %e,
                          "cannot list the store to find the take-over hole; leaving it to the audit");
                return (Takeover::Done, Vec::new());
            }
            Err(e) => {
                debug!(camera = %self.camera, error = %e, "cannot list the store yet");
                return (Takeover::Failed(attempts + 1), Vec::new());
            }
        };
        let Some(hole) = hole else {
            return (Takeover::Done, Vec::new());
        };
        if let Some(owner) = self.handed_over_by {
            let now = Instant::now();
            let (before, since) = match &state {
                Some(Takeover::AwaitingOwner { owner, since }) => (Some(owner), *since),
                _ => (None, now),
            };
            let version = match owner {
                Some(pod) => match lease_version(k, pod).await {
                    Ok(v) => v,
                    Err(e) => {
                        debug!(camera = %self.camera, error = %e, "cannot read the previous owner's Lease yet");
                        return (state.unwrap_or(Takeover::Failed(0)), Vec::new());
                    }
                },
                None => None,
            };
            let lease = Duration::from_secs(u64::from(k.lease.duration_seconds));
            match judge_owner(before, version.as_deref(), now, lease) {
                OwnerVerdict::Alive(seen) if now.duration_since(since) < MAX_OWNER_WAIT => {
                    return (Takeover::AwaitingOwner { owner: seen, since }, Vec::new());
                }
                verdict => {
                    warn!(camera = %self.camera, previous_owner = owner.unwrap_or("?"),
                          gone = matches!(verdict, OwnerVerdict::Gone),
                          start_ms = hole.start, end_ms = hole.end,
                          "footage before the handover never reached the store; reporting the hole");
                }
            }
        }
        match unreported_parts(&k.client, self.cam, hole).await {
            Ok(parts) => (Takeover::Done, parts),
            // Out of attempts: the whole hole (a second counted twice beats a hole never
            // reported).
            Err(e) if attempts + 1 >= TAKEOVER_ATTEMPTS => {
                warn!(camera = %self.camera, error = %e,
                      "cannot list Backfills; reporting the whole take-over hole");
                (Takeover::Done, vec![hole])
            }
            Err(e) => {
                debug!(camera = %self.camera, error = %e, "cannot list Backfills yet");
                (Takeover::Failed(attempts + 1), Vec::new())
            }
        }
    }
}

/// The resourceVersion of recorder `pod`'s Lease; `None` when there is none.
async fn lease_version(k: &K8s, pod: &str) -> Result<Option<String>> {
    let api: Api<Lease> = Api::namespaced(k.client.clone(), &k.namespace);
    Ok(api
        .get_opt(pod)
        .await?
        .and_then(|l| l.metadata.resource_version))
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
    // Cameras this recorder was (or is) the incoming recorder of, while it records them,
    // with the recorder that owned them then (the one handing them over).
    let mut planned: BTreeMap<String, Option<String>> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = tokio::time::Instant::now();
        let reports = board.snapshot();
        written.retain(|camera, _| reports.iter().any(|r| &r.camera == camera));
        takeovers.retain(|(camera, _), _| reports.iter().any(|r| &r.camera == camera));
        planned.retain(|camera, _| reports.iter().any(|r| &r.camera == camera));
        for r in reports {
            let Ok(id) = CameraId::new(&r.namespace, &r.camera) else {
                continue;
            };
            let Some(cam) = lock(&k.cameras).get(&r.camera).cloned() else {
                continue;
            };

            // Holes: the take-over hole once per first footage, stream losses as they close.
            if cam.labels().get(INCOMING_RECORDER_LABEL) == Some(&k.pod) {
                // While incoming, the camera's owner is the recorder handing it over.
                let owner = cam.labels().get(RECORDER_LABEL).cloned();
                planned.insert(r.camera.clone(), owner);
            }
            if let Some(first) = takeover_check_from(&r, &cam) {
                let key = (r.camera.clone(), first);
                let state = takeovers.get(&key).cloned();
                if !matches!(state, Some(Takeover::Done)) {
                    // Came by a planned move (no failover on record for this assignment): the
                    // owner recorded until this recorder had footage, and its last segment may
                    // still be on its way to the store.
                    let handed_over_by = match planned.get(&r.camera) {
                        Some(owner) if handed_over(&cam, owner.as_deref()) => {
                            Some(owner.as_deref())
                        }
                        _ => None,
                    };
                    let check = TakeoverCheck {
                        store: &store,
                        camera: &id,
                        cam: &cam,
                        first_ms: first,
                        segment_seconds,
                        handed_over_by,
                    };
                    let (next, holes) = check.run(&k, state).await;
                    pending.extend(holes.into_iter().map(|window| Hole {
                        camera: r.camera.clone(),
                        window,
                        reason: BackfillReason::RecorderFailure,
                    }));
                    takeovers.insert(key, next);
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

            let next = recorder_status(&cam, &r, &k.pod);
            let last = written.get(&r.camera);
            let due = status_write_due(
                last.map(|(s, _)| s),
                &next,
                last.map_or(Duration::MAX, |(_, t)| now.duration_since(*t)),
            );
            let Some(why) = due.or_else(|| {
                handover_ready_lost(&cam, &next, &k.pod).then_some(WriteReason::Handover)
            }) else {
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
                site: None,
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
            first_footage_ms: Some(1_700_000_000_000),
            segments: 3,
            sessions: 1,
            reconnects: 0,
            last_error: None,
            address_refused: false,
            open_gap_since_ms: None,
            gaps: vec![],
            event_source: None,
            unreported_gaps: vec![],
        }
    }

    #[test]
    fn a_stale_event_subscription_is_a_condition() {
        use crate::event_source::EventSourceReport;
        let cam = camera();
        let mut r = report(CameraState::Recording);
        let none = recorder_status(&cam, &r, "rec-0");
        assert!(find_condition(&none.conditions, "EventSubscription").is_none());
        r.event_source = Some(EventSourceReport {
            subscribed: false,
            since_ms: 1_700_000_000_000,
            last_error: Some("ONVIF PullMessages: HTTP 400".into()),
            ..Default::default()
        });
        let stale = recorder_status(&cam, &r, "rec-0");
        let c = find_condition(&stale.conditions, "EventSubscription").expect("condition");
        assert_eq!(c.status, ConditionStatus::False);
        assert_eq!(c.reason, "SubscriptionStale");
        assert!(
            c.message
                .contains("since 2023-11-14T22:13:20Z: ONVIF PullMessages"),
            "{}",
            c.message
        );
        // A flip is a status write.
        r.event_source.as_mut().unwrap().subscribed = true;
        let ok = recorder_status(&cam, &r, "rec-0");
        assert_eq!(
            status_write_due(Some(&stale), &ok, Duration::from_secs(1)),
            Some(WriteReason::ConditionChanged)
        );
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
        let s = recorder_status(&cam, &report(CameraState::Recording), "rec-a");
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
    fn a_move_after_a_failover_is_the_handing_owners_to_report() {
        let mut c = camera();
        // No failover on record: a planned move.
        assert!(handed_over(&c, Some("rec-4")));
        assert!(handed_over(&c, None));
        let at = chrono::Utc::now();
        c.status = Some(vigil_api::CameraStatus {
            assigned_at: Some(at),
            failover: Some(vigil_api::Failover {
                from: "rec-1".into(),
                at,
                footage_safe_until: at - chrono::Duration::seconds(6),
            }),
            ..Default::default()
        });
        // rec-1 failed, the camera went to rec-4, which handed it here: rec-4's hole.
        assert!(handed_over(&c, Some("rec-4")));
        // The owner handing over is the one that failed (died mid-move): a failover here.
        assert!(!handed_over(&c, Some("rec-1")));
        // Unknown owner: judged as after a failover.
        assert!(!handed_over(&c, None));
    }

    #[test]
    fn a_previous_owner_is_gone_when_its_lease_is_missing_or_stops_changing() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(2);
        // No Lease at all (the pod was deleted, its Lease with it).
        assert_eq!(judge_owner(None, None, t0, lease), OwnerVerdict::Gone);
        // First sight: alive, from now.
        let seen = match judge_owner(None, Some("10"), t0, lease) {
            OwnerVerdict::Alive(s) => s,
            v => panic!("{v:?}"),
        };
        assert_eq!(seen.version, "10");
        // Unchanged within a lease: still alive, first sight kept.
        let later = t0 + Duration::from_millis(1_500);
        assert_eq!(
            judge_owner(Some(&seen), Some("10"), later, lease),
            OwnerVerdict::Alive(seen.clone())
        );
        // Renewed: alive, seen again from now.
        assert_eq!(
            judge_owner(Some(&seen), Some("11"), later, lease),
            OwnerVerdict::Alive(OwnerSeen {
                version: "11".into(),
                at: later
            })
        );
        // Unchanged for longer than a lease: gone (killed, its Lease left behind).
        assert_eq!(
            judge_owner(
                Some(&seen),
                Some("10"),
                t0 + Duration::from_millis(2_001),
                lease
            ),
            OwnerVerdict::Gone
        );
        // Deleted after being seen: gone.
        assert_eq!(
            judge_owner(Some(&seen), None, later, lease),
            OwnerVerdict::Gone
        );
    }

    #[test]
    fn stream_loss_is_degraded_connecting_is_not() {
        let cam = camera();
        let mut lost = report(CameraState::Reconnecting);
        lost.last_error = Some("connection refused".into());
        let s = recorder_status(&cam, &lost, "rec-a");
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
        let s = recorder_status(&cam, &connecting, "rec-a");
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
    fn a_quarantined_camera_is_degraded_with_a_short_message() {
        let cam = camera();
        let mut r = report(CameraState::Quarantined);
        r.last_error = Some("quarantined for 30 s: 3 sessions exceeded the receive limits".into());
        let s = recorder_status(&cam, &r, "rec-a");
        for t in ["Recording", "Degraded"] {
            let c = find_condition(&s.conditions, t).expect(t);
            assert_eq!(c.reason, "Quarantined", "{t}");
            assert!(c.message.starts_with("quarantined for 30 s"), "{t}");
        }
        assert_eq!(
            find_condition(&s.conditions, "Degraded").map(|c| c.status),
            Some(ConditionStatus::True)
        );
    }

    #[test]
    fn writes_on_change_and_routine_figures_every_few_minutes() {
        let cam = camera();
        let second = Duration::from_secs(1);
        let first = recorder_status(&cam, &report(CameraState::Recording), "rec-a");
        assert_eq!(
            status_write_due(None, &first, Duration::ZERO),
            Some(WriteReason::First)
        );
        let cam = applied(cam, &first);

        // A new segment and a slightly different bitrate: routine, not before 5 minutes.
        let mut r = report(CameraState::Recording);
        r.bitrate_kbps = Some(4500);
        r.last_segment_end_ms = Some(1_700_000_020_000);
        let next = recorder_status(&cam, &r, "rec-a");
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
        let same = recorder_status(&cam, &report(CameraState::Recording), "rec-a");
        assert_eq!(
            status_write_due(Some(&first), &same, 10 * ROUTINE_INTERVAL),
            None
        );

        // The bitrate moved by more than 20 %: at once (placement counts it).
        r.bitrate_kbps = Some(5000);
        let moved = recorder_status(&cam, &r, "rec-a");
        assert_eq!(
            status_write_due(Some(&first), &moved, second),
            Some(WriteReason::BitrateMoved)
        );

        // The stream is lost: the conditions flip, at once.
        let lost = recorder_status(&cam, &report(CameraState::Reconnecting), "rec-a");
        assert_eq!(
            status_write_due(Some(&first), &lost, second),
            Some(WriteReason::ConditionChanged)
        );
        // A new error message while still lost is routine.
        let lost_cam = applied(cam.clone(), &lost);
        let mut r = report(CameraState::Reconnecting);
        r.last_error = Some("timed out".into());
        let lost_again = recorder_status(&lost_cam, &r, "rec-a");
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
        let c0 = recorder_status(&camera(), &connecting, "rec-a");
        assert_eq!(c0.last_segment_time, None);
        let mut started = connecting.clone();
        started.state = CameraState::Recording;
        started.last_segment_end_ms = Some(1_700_000_010_000);
        let c1 = recorder_status(&applied(camera(), &c0), &started, "rec-a");
        assert_eq!(
            status_write_due(Some(&c0), &c1, second),
            Some(WriteReason::ConditionChanged)
        );
    }

    /// After a failover the take-over check runs at the first durable fragment; otherwise only
    /// once the first segment is stored (the previous recorder may still be uploading).
    #[test]
    fn takeover_check_runs_at_first_footage_only_after_a_failover() {
        let mut streaming = report(CameraState::Recording);
        streaming.first_segment_start_ms = None;
        streaming.last_segment_end_ms = None;
        let moved = camera();
        assert_eq!(takeover_check_from(&streaming, &moved), None);

        let mut failed_over = camera();
        let status = failed_over.status.get_or_insert_with(Default::default);
        status.assigned_at = Some(DateTime::from_timestamp_millis(1_699_999_990_000).unwrap());
        status.last_segment_time = None;
        status.failover = Some(vigil_api::Failover {
            from: "rec-0".into(),
            at: DateTime::from_timestamp_millis(1_699_999_995_000).unwrap(),
            footage_safe_until: DateTime::from_timestamp_millis(1_699_999_980_000).unwrap(),
        });
        assert_eq!(
            takeover_check_from(&streaming, &failed_over),
            Some(1_700_000_000_000)
        );
        // Once the first segment is stored, that is the start either way.
        assert_eq!(
            takeover_check_from(&report(CameraState::Recording), &moved),
            Some(1_700_000_000_000)
        );
    }

    /// A camera taken over from another recorder: its status already says Recording, with the
    /// previous recorder's lastSegmentTime and bitrate. This recorder's first write changes
    /// nothing; its first own segment must still be written at once, or the operator never
    /// sees the camera recording here (it stayed `Scheduled` for minutes under churn).
    #[test]
    fn first_own_segment_is_written_at_once_after_a_takeover() {
        let second = Duration::from_secs(1);
        let mut streaming = report(CameraState::Recording);
        streaming.last_segment_end_ms = None;
        streaming.first_segment_start_ms = None;
        let previous = recorder_status(&camera(), &report(CameraState::Recording), "rec-a");
        let taken_over = applied(camera(), &previous);
        let first = recorder_status(&taken_over, &streaming, "rec-b");
        assert_eq!(
            first.last_segment_time, previous.last_segment_time,
            "carried over"
        );
        assert!(!first.own_segment);
        let mut segment = streaming.clone();
        segment.last_segment_end_ms = Some(1_700_000_020_000);
        let next = recorder_status(&applied(taken_over, &first), &segment, "rec-b");
        assert_eq!(
            status_write_due(Some(&first), &next, second),
            Some(WriteReason::FirstSegment)
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
        let s = recorder_status(&cam, &r, "rec-a");
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

    #[test]
    fn an_off_camera_is_recorded_through_a_gate_only_for_its_manual_window() {
        let mut cam = camera();
        cam.spec.recording.mode = RecordingMode::Off;
        let now = Utc::now();
        cam.spec.recording.manual = Some(vigil_api::RecordingWindow {
            start: now - chrono::TimeDelta::seconds(10),
            end: now + chrono::TimeDelta::seconds(10),
            by: Some("alice".into()),
        });
        let cfg = camera_config(&cam).expect("config").expect("recorded");
        assert!(cfg.manual_only);
        assert_eq!(
            camera_windows(&cam).manual.map(|w| w.by),
            Some(Some("alice".into()))
        );
        // Long over: not recorded.
        cam.spec.recording.manual = Some(vigil_api::RecordingWindow {
            start: now - chrono::TimeDelta::seconds(200),
            end: now - chrono::TimeDelta::seconds(100),
            by: None,
        });
        assert_eq!(camera_config(&cam).expect("config"), None);
        // Continuous cameras are not gated by a manual window.
        cam.spec.recording.mode = RecordingMode::Continuous;
        let cfg = camera_config(&cam).expect("config").expect("recorded");
        assert!(!cfg.manual_only);
    }

    fn labelled(owner: Option<&str>, incoming: Option<&str>) -> Camera {
        let mut c = camera();
        let labels = c.labels_mut();
        if let Some(o) = owner {
            labels.insert(RECORDER_LABEL.into(), o.into());
        }
        if let Some(i) = incoming {
            labels.insert(INCOMING_RECORDER_LABEL.into(), i.into());
        }
        c
    }

    fn union(sets: &BTreeMap<&'static str, WatchedSet>) -> Vec<String> {
        let all: std::collections::BTreeSet<String> = sets
            .values()
            .flat_map(|s| s.cameras.keys().cloned())
            .collect();
        all.into_iter().collect()
    }

    /// The handover completing (incoming → owner) in either order of the two watches' events
    /// never leaves the camera out of the desired set; the old owner's copy leaves for good.
    #[test]
    fn a_completed_handover_keeps_the_camera_in_the_set() {
        for owner_first in [true, false] {
            let mut sets = BTreeMap::new();
            for role in [Role::Owner, Role::Incoming] {
                apply_event(&mut sets, role, Event::Init, "rec-b");
                apply_event(&mut sets, role, Event::InitDone, "rec-b");
            }
            apply_event(
                &mut sets,
                Role::Incoming,
                Event::Apply(labelled(Some("rec-a"), Some("rec-b"))),
                "rec-b",
            );
            assert_eq!(union(&sets), ["door"]);
            let done = labelled(Some("rec-b"), None);
            let events = [
                (Role::Owner, Event::Apply(done.clone())),
                (Role::Incoming, Event::Delete(done.clone())),
            ];
            let order: Vec<usize> = if owner_first { vec![0, 1] } else { vec![1, 0] };
            for i in order {
                let (role, ev) = events[i].clone();
                apply_event(&mut sets, role, ev, "rec-b");
                assert_eq!(union(&sets), ["door"], "owner first: {owner_first}");
            }
        }
        // The old owner: the camera leaves its owner watch with labels naming another recorder.
        let mut sets = BTreeMap::new();
        apply_event(
            &mut sets,
            Role::Owner,
            Event::Apply(labelled(Some("rec-a"), Some("rec-b"))),
            "rec-a",
        );
        apply_event(
            &mut sets,
            Role::Owner,
            Event::Delete(labelled(Some("rec-b"), None)),
            "rec-a",
        );
        assert!(union(&sets).is_empty());
        // A camera deleted while incoming is gone.
        let mut sets = BTreeMap::new();
        let moving = labelled(Some("rec-a"), Some("rec-b"));
        apply_event(
            &mut sets,
            Role::Incoming,
            Event::Apply(moving.clone()),
            "rec-b",
        );
        apply_event(&mut sets, Role::Incoming, Event::Delete(moving), "rec-b");
        assert!(union(&sets).is_empty());
    }

    #[test]
    fn the_incoming_recorder_reports_ready_once_it_has_footage() {
        let mut r = report(CameraState::Recording);
        r.first_footage_ms = None;
        let moving = labelled(Some("rec-a"), Some("rec-b"));
        assert_eq!(handover_ready(&moving, &r, "rec-b"), None, "no footage yet");
        r.first_footage_ms = Some(1_700_000_000_000);
        assert_eq!(
            handover_ready(&moving, &r, "rec-b").as_deref(),
            Some("rec-b")
        );
        let s = recorder_status(&moving, &r, "rec-b");
        let body = camera_status_apply_body("door", &s);
        assert_eq!(body["status"]["handoverReady"], "rec-b");
        // The owner, writing meanwhile, carries the value over (one shared field manager).
        let mut seen = moving.clone();
        seen.status = Some(vigil_api::CameraStatus {
            handover_ready: Some("rec-b".into()),
            ..Default::default()
        });
        assert_eq!(handover_ready(&seen, &r, "rec-a").as_deref(), Some("rec-b"));
        // Handover done: dropped.
        let mut done = labelled(Some("rec-b"), None);
        done.status = seen.status.clone();
        assert_eq!(handover_ready(&done, &r, "rec-b"), None);
        assert_eq!(
            status_write_due(
                Some(&recorder_status(&seen, &r, "rec-b")),
                &recorder_status(&done, &r, "rec-b"),
                Duration::from_secs(1)
            ),
            Some(WriteReason::Handover)
        );
    }

    #[test]
    fn a_handover_ready_removed_by_the_owner_is_written_again() {
        let mut r = report(CameraState::Recording);
        r.first_footage_ms = Some(1_700_000_000_000);
        let moving = labelled(Some("rec-a"), Some("rec-b"));
        let mine = recorder_status(&moving, &r, "rec-b");
        // As written, and seen back: nothing more to do.
        let mut seen = moving.clone();
        seen.status = Some(vigil_api::CameraStatus {
            handover_ready: Some("rec-b".into()),
            ..Default::default()
        });
        assert!(!handover_ready_lost(&seen, &mine, "rec-b"));
        assert_eq!(
            status_write_due(
                Some(&mine),
                &recorder_status(&seen, &r, "rec-b"),
                Duration::ZERO
            ),
            None
        );
        // The owner's apply, made before it saw the value, removed it: written again, though
        // this recorder's last write had it.
        let next = recorder_status(&moving, &r, "rec-b");
        assert_eq!(status_write_due(Some(&mine), &next, Duration::ZERO), None);
        assert!(handover_ready_lost(&moving, &next, "rec-b"));
        // The owner never rewrites it for the incoming recorder; nor does anyone without
        // footage, or after the handover.
        assert!(!handover_ready_lost(
            &moving,
            &recorder_status(&moving, &r, "rec-a"),
            "rec-a"
        ));
        r.first_footage_ms = None;
        assert!(!handover_ready_lost(
            &moving,
            &recorder_status(&moving, &r, "rec-b"),
            "rec-b"
        ));
        let done = labelled(Some("rec-b"), None);
        assert!(!handover_ready_lost(
            &done,
            &recorder_status(&done, &r, "rec-b"),
            "rec-b"
        ));
    }

    #[tokio::test]
    async fn a_draining_lease_says_so() {
        vigil_api::install_crypto_provider();
        let k = K8s {
            client: Client::try_from(kube::Config::new(
                "http://127.0.0.1:1".parse().expect("url"),
            ))
            .expect("client"),
            namespace: "site".into(),
            pod: "rec-a".into(),
            pool: "main".into(),
            pod_uid: None,
            lease: LeaseTiming::default(),
            drain_timeout: Duration::from_secs(60),
            cameras: Mutex::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
            renew_now: Notify::new(),
            live_address: None,
        };
        let now = Utc::now();
        assert!(
            lease_body(&k, now, now)["metadata"]
                .get("annotations")
                .is_none()
        );
        k.start_draining();
        assert_eq!(
            lease_body(&k, now, now)["metadata"]["annotations"][DRAINING_ANNOTATION],
            "true"
        );
        // A recorder serving live view says where, next to the draining flag.
        let mut k = k;
        k.live_address = Some("http://10.42.0.7:9090".into());
        let body = lease_body(&k, now, now);
        assert_eq!(
            body["metadata"]["annotations"][LIVE_ADDRESS_ANNOTATION],
            "http://10.42.0.7:9090"
        );
        assert_eq!(body["metadata"]["annotations"][DRAINING_ANNOTATION], "true");
    }
}
