//! The RecorderPool reconciler, in five steps:
//!
//! 1. **observe** ([`observe`]): the pool's recorders (pods, Leases and when the operator saw
//!    each Lease change), cameras and Secret names, from the watch caches: no API request;
//! 2. **decide** ([`decide`], pure): recorder health, placement, which cameras move and which
//!    open a failover outage, which recorders failed, when to look again;
//! 3. **build** ([`operator_status`] per camera, [`pool_status`], pure): the statuses wanted;
//! 4. **apply**: the recorder workload (only when it changed), camera labels and statuses (only
//!    when they differ), closed outages handed to Backfills, Events;
//! 5. **status**: the pool's status, written only when it differs.
//!
//! A quiet pool therefore writes nothing. It runs on changes of the pool, its recorder pods, its
//! cameras (what placement reads, see `camera_placement_fingerprint`) and new or revived
//! Leases, and otherwise at the first moment a Lease could expire or a schedule window turn.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use chrono::{DateTime, Timelike, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{info, warn};

use super::camera_status::{
    self, CameraFacts, carry_forward, differs, failover_record, failover_recorded, operator_status,
};
use super::{AppliedWorkload, Context, FIELD_MANAGER, children, lease_version, publish};
use crate::error::{Error, Result};
use crate::liveness::{
    LeaseObservation, PodObservation, RecorderHealth, RecorderObservation, recorder_health,
};
use crate::metrics::ControllerKind;
use crate::placement::{
    self, MoveReason, Placement, PlacementCamera, PlacementInput, PlacementRecorder, RebalanceRule,
};
use vigil_api::labels::INCOMING_RECORDER_LABEL;
use vigil_api::schedule::{next_manual_turn, should_record};
use vigil_api::validation;
use vigil_api::{
    Camera, Condition, ConditionStatus, POOL_LABEL, PoolBalance, RECORDER_LABEL, RecorderPool,
    RecorderPoolStatus, RecorderState, RecordingMode, set_condition,
};

/// Label a recorder puts on its Lease: `pod` when it runs as a pod (so a missing pod means the
/// recorder is gone), `process` when it runs outside Kubernetes.
pub use vigil_api::labels::RECORDER_KIND_LABEL;
/// Leases of recorders without cameras, not seen changing for this long, are deleted.
const LEASE_GC_AFTER: Duration = Duration::from_secs(300);
/// Woken this much after a Lease's expiry instant, so the expiry is past when it runs.
const EXPIRY_SLACK: Duration = Duration::from_millis(20);

pub async fn reconcile(pool: Arc<RecorderPool>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.count_reconcile(ControllerKind::RecorderPool);
    let ns = pool.namespace().ok_or(Error::MissingNamespace {
        kind: "RecorderPool",
    })?;
    let now = Utc::now();

    let errors = validation::validate_pool(&pool.spec);
    if !errors.is_empty() {
        let status = invalid_pool_status(&pool, &validation::describe(&errors));
        if pool.status.as_ref() != Some(&status) {
            apply_pool_status(&ctx, &pool, &ns, status).await?;
        }
        return Ok(Action::await_change());
    }

    // The workload is applied when it changed; a failure here must not delay failover: it is
    // reported and placement goes on with the recorders that exist.
    let workload_error = apply_workload(&ctx, &pool, &ns).await.err();
    if let Some(e) = &workload_error {
        warn!(pool = %pool.name_any(), namespace = %ns, error = %e, "could not apply the recorder workload");
    }

    let world = observe(&ctx, &pool, &ns, Instant::now());
    delete_stale_leases(&ctx, &ns, &world.stale_leases).await;

    let started = WallInstant::now();
    let plan = decide(&pool, &world, now, Instant::now());
    ctx.metrics
        .placement_seconds
        .observe(started.elapsed().as_secs_f64());

    let states = apply_cameras(&ctx, &pool, &ns, &world, &plan, now).await?;
    ctx.note_balance_moves(
        &ObjectRef::from_obj(pool.as_ref()),
        plan.balance_moves,
        Instant::now(),
    );
    for (state, count) in &states {
        ctx.metrics
            .cameras
            .get_or_create(&crate::metrics::StateLabels {
                pool: format!("{ns}/{}", pool.name_any()),
                state: state.clone(),
            })
            .set(*count);
    }
    for h in &plan.failed_now {
        warn!(recorder = %h.name, reason = %h.reason, pool = %pool.name_any(), "recorder failed; its cameras were moved");
        ctx.metrics.failovers.inc();
        publish(
            &ctx,
            pool.as_ref(),
            EventType::Warning,
            "RecorderFailed",
            format!(
                "recorder {} failed ({}); its cameras were moved",
                h.name, h.reason
            ),
        )
        .await;
    }

    let handovers = plan
        .labels
        .values()
        .filter(|l| l.incoming.is_some())
        .count();
    let status = pool_status(
        &pool,
        &plan.health,
        world.cameras.len(),
        &plan.placed,
        handovers as u32,
        workload_error.map(|e| e.to_string()),
    );
    if pool_status_differs(pool.status.as_ref(), &status) {
        apply_pool_status(&ctx, &pool, &ns, status).await?;
    }
    Ok(Action::requeue(
        plan.next_check.map_or(ctx.resync, |d| d.min(ctx.resync)),
    ))
}

/// What [`observe`] found about one pool.
#[derive(Debug, Default)]
pub struct PoolWorld {
    pub recorders: Vec<RecorderObservation>,
    /// The pool's cameras, by name.
    pub cameras: Vec<Arc<Camera>>,
    /// Names of the Secrets of the pool's namespace.
    pub secrets: BTreeSet<String>,
    /// Leases of recorders gone for minutes that no camera names any more.
    pub stale_leases: Vec<String>,
    /// Rebalancing moves the pool may still start now (`maxMovesPerMinute`).
    pub balance_moves_left: usize,
}

/// Reads the pool's recorders, cameras and Secret names from the watch caches, noting each
/// Lease as seen at `now` (its change may not have reached the Lease watch's handler yet).
pub fn observe(ctx: &Context, pool: &RecorderPool, ns: &str, now: Instant) -> PoolWorld {
    let name = pool.name_any();
    let in_pool = |labels: &BTreeMap<String, String>| labels.get(POOL_LABEL) == Some(&name);
    let pods: Vec<Arc<Pod>> = ctx
        .caches
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns) && in_pool(p.labels()))
        .collect();
    let leases: Vec<Arc<Lease>> = ctx
        .caches
        .leases
        .state()
        .into_iter()
        .filter(|l| l.namespace().as_deref() == Some(ns) && in_pool(l.labels()))
        .collect();
    let in_namespace: Vec<Arc<Camera>> = ctx
        .caches
        .cameras
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(ns))
        .collect();
    let labelled: BTreeSet<String> = in_namespace
        .iter()
        .filter_map(|c| c.labels().get(RECORDER_LABEL).cloned())
        .collect();
    let mut cameras: Vec<Arc<Camera>> = in_namespace
        .into_iter()
        .filter(|c| c.spec.pool == name)
        .collect();
    cameras.sort_by_key(|c| c.name_any());
    let secrets = ctx
        .caches
        .secrets
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns))
        .map(|s| s.name_any())
        .collect();
    let seen: Vec<(Arc<Lease>, Instant)> = leases
        .into_iter()
        .map(|l| {
            let changed = ctx.observe_lease((ns.to_string(), l.name_any()), lease_version(&l), now);
            (l, changed)
        })
        .collect();
    let (recorders, stale_leases) = recorder_observations(&pods, &seen, &labelled, now);
    let balance_moves_left = ctx.balance_moves_left(
        &ObjectRef::from_obj(pool),
        pool.spec.placement.rebalance.max_moves_per_minute,
        now,
    );
    PoolWorld {
        recorders,
        cameras,
        secrets,
        stale_leases,
        balance_moves_left,
    }
}

/// Joins pods and Leases (with when each Lease last changed) into one observation per
/// recorder; also names the Leases to delete: no pod, unchanged for [`LEASE_GC_AFTER`], and no
/// camera labelled with them. Pure.
pub fn recorder_observations(
    pods: &[Arc<Pod>],
    leases: &[(Arc<Lease>, Instant)],
    labelled: &BTreeSet<String>,
    now: Instant,
) -> (Vec<RecorderObservation>, Vec<String>) {
    let mut observations: BTreeMap<String, RecorderObservation> = BTreeMap::new();
    for pod in pods {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        observations.insert(
            pod.name_any(),
            RecorderObservation {
                name: pod.name_any(),
                lease: None,
                pod: Some(PodObservation {
                    exists: true,
                    terminating: pod.metadata.deletion_timestamp.is_some(),
                    ready,
                }),
            },
        );
    }
    let mut stale = vec![];
    for (lease, last_change) in leases {
        let renewed = lease_version(lease).renew_time;
        let runs_as_pod =
            lease.labels().get(RECORDER_KIND_LABEL).map(String::as_str) == Some("pod");
        let entry = observations
            .entry(lease.name_any())
            .or_insert_with(|| RecorderObservation {
                name: lease.name_any(),
                lease: None,
                // A pod recorder whose pod is gone: deleted.
                pod: runs_as_pod.then_some(PodObservation {
                    exists: false,
                    terminating: false,
                    ready: false,
                }),
            });
        entry.lease = Some(LeaseObservation {
            last_change: *last_change,
            renewed,
            draining: super::lease_draining(lease),
        });
        let pod_gone = entry.pod.as_ref().is_none_or(|p| !p.exists);
        if pod_gone
            && now.saturating_duration_since(*last_change) > LEASE_GC_AFTER
            && !labelled.contains(&lease.name_any())
        {
            stale.push(lease.name_any());
        }
    }
    for name in &stale {
        observations.remove(name);
    }
    (observations.into_values().collect(), stale)
}

async fn delete_stale_leases(ctx: &Context, ns: &str, stale: &[String]) {
    let api = Api::<Lease>::namespaced(ctx.client.clone(), ns);
    for name in stale {
        info!(lease = %name, "deleting the lease of a recorder gone for minutes");
        ctx.metrics.count_write("lease");
        let _ = api.delete(name, &DeleteParams::default()).await;
        ctx.forget_lease(&(ns.to_string(), name.clone()));
    }
}

/// What [`decide`] concluded for one pool.
#[derive(Debug)]
pub struct PoolPlan {
    pub health: Vec<RecorderHealth>,
    pub placed: Placement,
    /// Per camera (by name): what its status is computed from.
    pub facts: BTreeMap<String, CameraFacts>,
    /// Recorders found failed whose cameras this plan moves.
    pub failed_now: Vec<RecorderHealth>,
    /// Per camera (by name): its recorder labels after this reconcile.
    pub labels: BTreeMap<String, CameraLabels>,
    /// Rebalancing moves this plan starts (for the rate limit).
    pub balance_moves: usize,
    /// The first moment something can change by time alone (a Lease expiring, a schedule
    /// window turning), from now.
    pub next_check: Option<Duration>,
}

/// Judges the recorders, places the cameras, and says which cameras open a failover outage.
/// Pure: `now` is the wall clock (schedules, outage times), `instant` the monotonic one
/// (liveness).
pub fn decide(
    pool: &RecorderPool,
    world: &PoolWorld,
    now: DateTime<Utc>,
    instant: Instant,
) -> PoolPlan {
    let name = pool.name_any();
    let duration = Duration::from_secs(u64::from(pool.spec.lease.duration_seconds));
    let health: Vec<RecorderHealth> = world
        .recorders
        .iter()
        .map(|o| recorder_health(o, instant, duration))
        .collect();
    let health_by_name: BTreeMap<&str, &RecorderHealth> =
        health.iter().map(|h| (h.name.as_str(), h)).collect();

    let mut facts: BTreeMap<String, CameraFacts> = BTreeMap::new();
    let mut input = PlacementInput {
        pool: name.clone(),
        cameras: vec![],
        recorders: health
            .iter()
            .map(|h| PlacementRecorder {
                id: h.name.clone(),
                capacity_kbps: pool.spec.capacity_kbps,
                healthy: h.healthy,
                draining: h.draining,
            })
            .collect(),
        failover_headroom_percent: pool.spec.failover_headroom_percent,
    };
    for camera in &world.cameras {
        let errors = validation::validate_camera(&camera.spec);
        let f = CameraFacts {
            invalid: (!errors.is_empty()).then(|| validation::describe(&errors)),
            wanted: should_record(&camera.spec.recording, now),
            secret_missing: camera
                .spec
                .credentials_secret_ref
                .as_ref()
                .filter(|r| !world.secrets.contains(&r.name))
                .map(|r| r.name.clone()),
            ..Default::default()
        };
        if f.invalid.is_none() && f.wanted {
            input.cameras.push(PlacementCamera {
                id: camera.name_any(),
                bitrate_kbps: placement::placement_bitrate_kbps(
                    camera.status.as_ref().and_then(|s| s.measured_bitrate_kbps),
                    camera.spec.expected_bitrate_kbps,
                ),
                current_recorder: placement_current(camera, &health_by_name),
                pool: name.clone(),
            });
        }
        facts.insert(camera.name_any(), f);
    }

    let mut placed = placement::place(&input);
    let rebalance = &pool.spec.placement.rebalance;
    if rebalance.enabled {
        placement::rebalance(
            &input,
            &mut placed,
            &RebalanceRule {
                threshold: f64::from(rebalance.threshold_percent) / 100.0,
                max_moves: world.balance_moves_left,
            },
        );
    }
    let balance_moves = placed
        .moves
        .iter()
        .filter(|m| m.reason == MoveReason::Balance)
        .count();
    let mut labels: BTreeMap<String, CameraLabels> = BTreeMap::new();
    for u in &placed.unplaced {
        if let Some(f) = facts.get_mut(&u.camera) {
            f.unplaced = Some((
                u.reason.as_str().to_string(),
                format!(
                    "no recorder of pool {name} can take {} kbit/s ({})",
                    u.bitrate_kbps,
                    u.reason.as_str()
                ),
            ));
        }
    }
    for camera in &world.cameras {
        let cam_name = camera.name_any();
        let Some(f) = facts.get_mut(&cam_name) else {
            continue;
        };
        let old = camera.labels().get(RECORDER_LABEL);
        let owner_alive = old
            .and_then(|o| health_by_name.get(o.as_str()))
            .is_some_and(|h| h.healthy);
        let next = handover_step(
            &CameraLabels::of(camera),
            camera
                .status
                .as_ref()
                .and_then(|s| s.handover_ready.as_deref()),
            placed.assignments.get(&cam_name).map(String::as_str),
            owner_alive,
        );
        f.recorder = next.owner.clone();
        f.handed_over = next.owner.is_some()
            && next.owner.as_ref() != old
            && CameraLabels::of(camera).incoming == next.owner;
        labels.insert(cam_name.clone(), next);
        // The camera leaves a recorder that failed: record the failover (unless it is recorded
        // already); the recorder taking the camera over finds the hole and backfills it.
        if let Some(old_recorder) = old
            && f.recorder.as_ref() != Some(old_recorder)
            && health_by_name
                .get(old_recorder.as_str())
                .is_none_or(|h| !h.healthy)
            && !failover_recorded(camera, old_recorder)
        {
            let renewed = health_by_name
                .get(old_recorder.as_str())
                .and_then(|h| h.lease_renewed);
            f.failover = Some(carry_forward(
                camera,
                failover_record(old_recorder, renewed, pool.spec.segment_seconds, now),
            ));
        }
    }
    let failed_now: Vec<RecorderHealth> = health
        .iter()
        .filter(|h| {
            !h.healthy
                && (placed.moves.iter().any(|m| {
                    m.reason == MoveReason::RecorderLost && m.from.as_deref() == Some(&h.name)
                }) || facts
                    .values()
                    .any(|f| f.failover.as_ref().is_some_and(|r| r.from == h.name)))
        })
        .cloned()
        .collect();
    let lease_expiry = health
        .iter()
        .filter_map(|h| h.expires_at)
        .min()
        .map(|at| at.saturating_duration_since(instant) + EXPIRY_SLACK);
    let schedule_turn = world
        .cameras
        .iter()
        .any(|c| c.spec.recording.mode == RecordingMode::Scheduled)
        .then(|| until_next_minute(now));
    // A manual recording window starting or ending: place or release the camera then.
    let manual_turn = world
        .cameras
        .iter()
        .filter_map(|c| next_manual_turn(&c.spec.recording, now))
        .min()
        .map(|t| (t - now).to_std().unwrap_or_default() + Duration::from_millis(100));
    // Uneven beyond the threshold with the rate limit spent: look again when it allows more.
    let balance_wait = (rebalance.enabled
        && world.balance_moves_left == 0
        && balance_percent(&placed) > rebalance.threshold_percent)
        .then_some(BALANCE_RETRY);
    let next_check = [lease_expiry, schedule_turn, manual_turn, balance_wait]
        .into_iter()
        .flatten()
        .min();
    PoolPlan {
        health,
        placed,
        facts,
        failed_now,
        labels,
        balance_moves,
        next_check,
    }
}

/// How often a pool whose rebalancing is held back by its rate limit looks again.
const BALANCE_RETRY: Duration = Duration::from_secs(10);

/// A camera's recorder labels: its owner (`vigil.dev/recorder`) and, during a planned move, the
/// recorder taking it over (`vigil.dev/incoming-recorder`). Both record it meanwhile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CameraLabels {
    pub owner: Option<String>,
    pub incoming: Option<String>,
}

impl CameraLabels {
    pub fn of(camera: &Camera) -> Self {
        CameraLabels {
            owner: camera.labels().get(RECORDER_LABEL).cloned(),
            incoming: camera.labels().get(INCOMING_RECORDER_LABEL).cloned(),
        }
    }
}

/// The recorder placement should count a camera on: the incoming one of a handover under way
/// while it can take cameras (so the move is not planned again), else the owner.
fn placement_current(camera: &Camera, health: &BTreeMap<&str, &RecorderHealth>) -> Option<String> {
    let labels = CameraLabels::of(camera);
    labels
        .incoming
        .filter(|i| {
            health
                .get(i.as_str())
                .is_some_and(|h| h.healthy && !h.draining)
        })
        .or(labels.owner)
}

/// The next labels of a camera, from its labels now, the recorder its `status.handoverReady`
/// names (`ready`), where placement put it (`destination`), and whether its owner is alive
/// (healthy, draining or not). Pure: the whole make-before-break protocol.
///
/// - unplaced: no owner, no handover;
/// - new (no owner), failed owner, or staying: the owner is the destination at once, and any
///   handover under way is dropped (a failover is not planned: nobody records it meanwhile);
/// - a live owner and another destination (a planned move: drain, rebalance): the destination
///   becomes the incoming recorder; once it has reported its first footage (`ready` names
///   it), it becomes the owner and the old owner lets go.
pub fn handover_step(
    now: &CameraLabels,
    ready: Option<&str>,
    destination: Option<&str>,
    owner_alive: bool,
) -> CameraLabels {
    let settled = |owner: Option<&str>| CameraLabels {
        owner: owner.map(str::to_string),
        incoming: None,
    };
    let Some(destination) = destination else {
        return settled(None);
    };
    match now.owner.as_deref() {
        None => settled(Some(destination)),
        Some(owner) if owner == destination || !owner_alive => settled(Some(destination)),
        Some(owner) => {
            if now.incoming.as_deref() == Some(destination) && ready == Some(destination) {
                settled(Some(destination))
            } else {
                CameraLabels {
                    owner: Some(owner.to_string()),
                    incoming: Some(destination.to_string()),
                }
            }
        }
    }
}

/// `max / ideal` of the eligible recorders, percent, rounded (100 when empty).
fn balance_percent(placed: &Placement) -> u32 {
    let eligible: Vec<placement::RecorderLoad> = placed
        .loads
        .iter()
        .filter(|l| !l.draining)
        .cloned()
        .collect();
    let b = placement::load_balance(&eligible);
    (b.max_over_ideal * 100.0).round() as u32
}

/// Schedule windows start and end on whole minutes (`HH:MM` in the camera's time zone, whose
/// offsets are whole minutes today): the time until the next one, plus a little.
pub fn until_next_minute(now: DateTime<Utc>) -> Duration {
    let into_minute = Duration::from_secs(u64::from(now.second()))
        + Duration::from_nanos(u64::from(now.nanosecond() % 1_000_000_000));
    Duration::from_secs(60).saturating_sub(into_minute) + Duration::from_millis(100)
}

/// Moves cameras (label), writes their status when it differs, hands closed outages over to
/// Backfills and publishes an Event per move. Returns the number of cameras per state.
async fn apply_cameras(
    ctx: &Context,
    pool: &RecorderPool,
    ns: &str,
    world: &PoolWorld,
    plan: &PoolPlan,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, i64>> {
    let cameras_api: Api<Camera> = Api::namespaced(ctx.client.clone(), ns);
    let health_by_name: BTreeMap<&str, &RecorderHealth> =
        plan.health.iter().map(|h| (h.name.as_str(), h)).collect();
    let lost_moves: BTreeSet<&str> = plan
        .placed
        .moves
        .iter()
        .filter(|m| m.reason == MoveReason::RecorderLost)
        .map(|m| m.camera.as_str())
        .collect();
    let mut states: BTreeMap<String, i64> = BTreeMap::new();
    for camera in &world.cameras {
        let cam_name = camera.name_any();
        let Some(f) = plan.facts.get(&cam_name) else {
            continue;
        };
        let old = camera.labels().get(RECORDER_LABEL).cloned();
        if f.failover.is_some()
            && let Some(changed_at) = old
                .as_deref()
                .and_then(|r| health_by_name.get(r))
                .and_then(|h| h.lease_changed_at)
        {
            // Measured on the operator's own clock, from the last Lease change it saw.
            ctx.metrics
                .failover_detection_seconds
                .observe(changed_at.elapsed().as_secs_f64());
        }
        let new_status = operator_status(camera, f, now);
        *states
            .entry(new_status.state.as_str().to_string())
            .or_default() += 1;
        if differs(camera, &new_status) {
            ctx.metrics.count_write("camera");
            camera_status::apply(&cameras_api, camera, &new_status).await?;
        }
        let now_labels = CameraLabels::of(camera);
        let next_labels = plan.labels.get(&cam_name).cloned().unwrap_or_default();
        if now_labels != next_labels {
            let patch = serde_json::json!({"metadata": {"labels": {
                RECORDER_LABEL: next_labels.owner,
                INCOMING_RECORDER_LABEL: next_labels.incoming,
            }}});
            ctx.metrics.count_write("camera");
            cameras_api
                .patch(&cam_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        if now_labels.incoming != next_labels.incoming
            && let (Some(from), Some(to)) = (&next_labels.owner, &next_labels.incoming)
        {
            let note = format!("handing over from recorder {from} to {to} (make-before-break)");
            info!(camera = %cam_name, namespace = %ns, %note, pool = %pool.name_any(), "placement");
            publish(
                ctx,
                camera.as_ref(),
                EventType::Normal,
                "HandoverStarted",
                note,
            )
            .await;
        }
        if old != f.recorder {
            ctx.metrics.camera_moves.inc();
            let (reason, note) = match (&old, &f.recorder, lost_moves.contains(cam_name.as_str())) {
                (Some(from), Some(to), true) => {
                    let why = health_by_name
                        .get(from.as_str())
                        .map_or("recorder gone".to_string(), |h| h.reason.clone());
                    (
                        "Failover",
                        format!("moved from failed recorder {from} ({why}) to {to}"),
                    )
                }
                (Some(from), Some(to), false) if now_labels.incoming.as_ref() == Some(to) => (
                    "Moved",
                    format!("handed over from recorder {from} to {to} after its first footage"),
                ),
                (Some(from), Some(to), false) => {
                    ("Moved", format!("moved from recorder {from} to {to}"))
                }
                (None, Some(to), _) => ("Assigned", format!("assigned to recorder {to}")),
                (Some(from), None, _) => ("Unassigned", format!("removed from recorder {from}")),
                (None, None, _) => ("Unassigned", String::new()),
            };
            info!(camera = %cam_name, namespace = %ns, %note, pool = %pool.name_any(), "placement");
            publish(ctx, camera.as_ref(), EventType::Normal, reason, note).await;
        }
    }
    Ok(states)
}

/// The status of a pool whose spec is invalid.
pub fn invalid_pool_status(pool: &RecorderPool, message: &str) -> RecorderPoolStatus {
    let generation = pool.metadata.generation;
    let mut status = pool.status.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        Condition::new(
            "Available",
            ConditionStatus::False,
            "InvalidSpec",
            message,
            generation,
        ),
    );
    set_condition(
        &mut status.conditions,
        Condition::new(
            "Degraded",
            ConditionStatus::True,
            "InvalidSpec",
            message,
            generation,
        ),
    );
    status.observed_generation = generation;
    status
}

/// The pool's status after this reconcile. Pure.
pub fn pool_status(
    pool: &RecorderPool,
    health: &[RecorderHealth],
    cameras: usize,
    placed: &Placement,
    handovers: u32,
    workload_error: Option<String>,
) -> RecorderPoolStatus {
    let generation = pool.metadata.generation;
    let mut status = pool.status.clone().unwrap_or_default();
    let loads: BTreeMap<&str, &placement::RecorderLoad> = placed
        .loads
        .iter()
        .map(|l| (l.recorder.as_str(), l))
        .collect();
    status.recorders = health
        .iter()
        .map(|h| RecorderState {
            name: h.name.clone(),
            ready: h.healthy,
            last_renew: h.lease_renewed,
            load_kbps: loads.get(h.name.as_str()).map_or(0, |l| l.load_kbps),
            cameras: loads.get(h.name.as_str()).map_or(0, |l| l.cameras),
            draining: h.draining,
        })
        .collect();
    let eligible: Vec<placement::RecorderLoad> = placed
        .loads
        .iter()
        .filter(|l| l.healthy && !l.draining)
        .cloned()
        .collect();
    let balance = placement::load_balance(&eligible);
    status.balance = (balance.healthy_recorders > 0).then(|| PoolBalance {
        ideal_kbps: balance.ideal_kbps.round() as u64,
        max_kbps: balance.max_kbps,
        max_over_ideal_percent: balance_percent(placed),
        handovers,
    });
    status.ready_recorders = health.iter().filter(|h| h.healthy).count() as i32;
    status.cameras = cameras as u32;
    status.load_kbps = placed
        .loads
        .iter()
        .filter(|l| l.healthy)
        .map(|l| l.load_kbps)
        .sum();
    status.capacity_kbps = placed
        .loads
        .iter()
        .filter(|l| l.healthy)
        .map(|l| u64::from(l.capacity_kbps))
        .sum();
    status.unplaceable = placed.unplaced.iter().map(|u| u.camera.clone()).collect();
    status.unplaceable_count = placed.unplaced.len() as u32;
    status.observed_generation = generation;
    let unhealthy: Vec<String> = health
        .iter()
        .filter(|h| !h.healthy)
        .map(|h| format!("{} ({})", h.name, h.reason))
        .collect();
    let available = status.ready_recorders > 0 && placed.unplaced.is_empty();
    set_condition(
        &mut status.conditions,
        if available {
            Condition::new(
                "Available",
                ConditionStatus::True,
                "CamerasPlaced",
                format!("{} ready recorders", status.ready_recorders),
                generation,
            )
        } else if status.ready_recorders == 0 {
            Condition::new(
                "Available",
                ConditionStatus::False,
                "NoReadyRecorder",
                "no recorder of this pool is ready",
                generation,
            )
        } else {
            Condition::new(
                "Available",
                ConditionStatus::False,
                "CamerasUnplaced",
                format!(
                    "{} cameras fit on no recorder: add replicas or capacity",
                    placed.unplaced.len()
                ),
                generation,
            )
        },
    );
    set_condition(
        &mut status.conditions,
        if unhealthy.is_empty() && placed.unplaced.is_empty() {
            Condition::new(
                "Degraded",
                ConditionStatus::False,
                "AsExpected",
                "",
                generation,
            )
        } else if !unhealthy.is_empty() {
            Condition::new(
                "Degraded",
                ConditionStatus::True,
                "RecorderUnhealthy",
                unhealthy.join(", "),
                generation,
            )
        } else {
            Condition::new(
                "Degraded",
                ConditionStatus::True,
                "CamerasUnplaced",
                status.unplaceable.join(", "),
                generation,
            )
        },
    );
    set_condition(
        &mut status.conditions,
        match workload_error {
            Some(e) => Condition::new(
                "WorkloadApplied",
                ConditionStatus::False,
                "ApplyFailed",
                e,
                generation,
            ),
            None => Condition::new(
                "WorkloadApplied",
                ConditionStatus::True,
                "Applied",
                "",
                generation,
            ),
        },
    );
    let progressing = status.ready_recorders < pool.spec.replicas;
    set_condition(
        &mut status.conditions,
        Condition::new(
            "Progressing",
            if progressing {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            if progressing { "ScalingUp" } else { "Stable" },
            format!(
                "{} of {} recorders ready",
                status.ready_recorders, pool.spec.replicas
            ),
            generation,
        ),
    );
    status
}

/// True when writing `new` would change more than the recorders' `lastRenew` times: renewals
/// alone are not worth a write (they are time, not events), and they are refreshed whenever
/// something else is written.
pub fn pool_status_differs(old: Option<&RecorderPoolStatus>, new: &RecorderPoolStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    let without_renewals = |s: &RecorderPoolStatus| {
        let mut s = s.clone();
        for r in &mut s.recorders {
            r.last_renew = None;
        }
        s
    };
    without_renewals(old) != without_renewals(new)
}

/// The fingerprint of everything applied for `pool`: equal fingerprints, equal workloads.
pub fn workload_fingerprint(workload: &children::Workload) -> Result<u64> {
    let mut h = std::hash::DefaultHasher::new();
    serde_json::to_string(workload)
        .map_err(Error::Serialize)?
        .hash(&mut h);
    Ok(h.finish())
}

/// The pool's workload as the operator's settings and the cluster's APIs make it.
pub fn workload(ctx: &Context, pool: &RecorderPool) -> children::Workload {
    children::Workload::build(
        pool,
        &ctx.settings,
        ctx.cron_job_api_version.as_deref(),
        ctx.pdb_api_version.as_deref(),
    )
}

/// Applies the pool's recorder workload unless what was last applied is the same and the
/// Deployment has not been changed by anyone else since (see `run`'s Deployment watch).
async fn apply_workload(ctx: &Context, pool: &RecorderPool, ns: &str) -> Result<()> {
    let objects = workload(ctx, pool);
    let fingerprint = workload_fingerprint(&objects)?;
    let key = ObjectRef::from_obj(pool);
    if let Some(applied) = ctx.applied_workload(&key)
        && applied.fingerprint == fingerprint
    {
        return match applied.audit_refused {
            Some(message) => Err(Error::AuditScheduleRefused(message)),
            None => Ok(()),
        };
    }
    let name = children::workload_name(pool);
    apply(ctx, ns, &name, &objects.service_account).await?;
    apply(ctx, ns, &name, &objects.role).await?;
    apply(ctx, ns, &name, &objects.role_binding).await?;
    let deployment = apply(ctx, ns, &name, &objects.deployment).await?;
    apply(ctx, ns, &name, &objects.metrics_service).await?;
    if let Some(cj) = &objects.retention {
        apply_dynamic(ctx, ns, cj).await?;
    }
    if let Some(pdb) = &objects.disruption_budget {
        apply_dynamic(ctx, ns, pdb).await?;
    }
    // Last, so that a refused audit schedule (reported in WorkloadApplied like any apply error)
    // holds nothing else back.
    let errors = validation::validate_pool_audit(&pool.spec);
    let audit_refused = match &objects.audit {
        Some(_) if !errors.is_empty() => Some(validation::describe(&errors)),
        Some(cj) => {
            apply_dynamic(ctx, ns, cj).await?;
            None
        }
        None => None,
    };
    ctx.set_applied_workload(
        key,
        Some(AppliedWorkload {
            fingerprint,
            deployment_generation: deployment.metadata.generation,
            audit_refused: audit_refused.clone(),
        }),
    );
    match audit_refused {
        Some(message) => Err(Error::AuditScheduleRefused(message)),
        None => Ok(()),
    }
}

/// Server-side applies an object whose API version is only known at run time.
async fn apply_dynamic(ctx: &Context, ns: &str, object: &children::DynamicChild) -> Result<()> {
    let (group, version) = object
        .api_version
        .split_once('/')
        .unwrap_or(("", object.api_version.as_str()));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, &object.kind);
    let ar = kube::core::ApiResource::from_gvk(&gvk);
    ctx.metrics.count_write(&object.kind.to_lowercase());
    Api::<kube::core::DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar)
        .patch(
            &object.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object.body),
        )
        .await?;
    Ok(())
}

async fn apply<K>(ctx: &Context, ns: &str, name: &str, object: &K) -> Result<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let mut value = serde_json::to_value(object).map_err(Error::Serialize)?;
    // Server-side apply needs apiVersion and kind in the body.
    value["apiVersion"] = K::api_version(&Default::default()).into();
    value["kind"] = K::kind(&Default::default()).into();
    ctx.metrics
        .count_write(&K::kind(&Default::default()).to_lowercase());
    Ok(api
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await?)
}

async fn apply_pool_status(
    ctx: &Context,
    pool: &RecorderPool,
    ns: &str,
    status: RecorderPoolStatus,
) -> Result<()> {
    let patch = serde_json::json!({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
        "status": status,
    });
    ctx.metrics.count_write("recorderpool");
    Api::<RecorderPool>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            &pool.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::CacheWriters;
    use crate::controller::fixtures::{Expected, Objects, Script, context, mock_client, put};
    use serde_json::{Value, json};

    const NS: &str = "site";
    const CAMERAS: &str = "/apis/vigil.dev/v1alpha1/namespaces/site/cameras";
    const POOL_STATUS: &str = "/apis/vigil.dev/v1alpha1/namespaces/site/recorderpools/main/status";

    fn pool_json() -> Value {
        json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
            "metadata": {"name": "main", "namespace": NS, "uid": "pool-uid", "generation": 1},
            "spec": {"replicas": 0, "capacityKbps": 20000, "failoverHeadroomPercent": 20,
                     "segmentSeconds": 10, "storage": {"local": {"path": "/data"}},
                     "lease": {"durationSeconds": 4, "renewSeconds": 1}}
        })
    }

    fn camera_json(name: &str) -> Value {
        json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
            "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid"),
                         "generation": 1, "resourceVersion": "1"},
            "spec": {"source": {"url": format!("rtsp://cam/{name}")}, "expectedBitrateKbps": 1000,
                     "pool": "main"}
        })
    }

    fn lease(name: &str, version: u32) -> Lease {
        serde_json::from_value(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": version.to_string(),
                         "labels": {POOL_LABEL: "main", RECORDER_KIND_LABEL: "process"}},
            // A renewTime an hour in the past: only observed changes count.
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 4,
                     "renewTime": format!("2026-01-01T{:02}:00:00.000000Z", version % 24)}
        }))
        .expect("lease")
    }

    /// The mock API server's objects and the caches the reconcile reads, kept in step.
    struct Cluster {
        objects: Objects,
        writers: CacheWriters,
        ctx: Arc<Context>,
        script: Script,
    }

    impl Cluster {
        fn new(cameras: &[&str]) -> Cluster {
            let (client, script) = mock_client();
            let (ctx, writers) = context(client);
            let objects: Objects = Default::default();
            {
                let mut held = objects.lock().expect("objects");
                held.insert(
                    "/apis/vigil.dev/v1alpha1/namespaces/site/recorderpools/main".into(),
                    pool_json(),
                );
                for c in cameras {
                    held.insert(format!("{CAMERAS}/{c}"), camera_json(c));
                }
            }
            let mut cluster = Cluster {
                objects,
                writers,
                ctx,
                script,
            };
            cluster.sync();
            cluster
        }

        /// Puts the mock server's objects into the caches, as the watches would.
        fn sync(&mut self) {
            let held = self.objects.lock().expect("objects").clone();
            for (path, object) in held {
                if path.contains("/cameras/") {
                    put(
                        &mut self.writers.cameras,
                        serde_json::from_value::<Camera>(object).expect("camera"),
                    );
                } else if path.contains("/recorderpools/") {
                    put(
                        &mut self.writers.pools,
                        serde_json::from_value::<RecorderPool>(object).expect("pool"),
                    );
                }
            }
        }

        fn renew(&mut self, name: &str, version: u32) {
            put(&mut self.writers.leases, lease(name, version));
        }

        fn pool(&self) -> Arc<RecorderPool> {
            self.ctx
                .caches
                .pools
                .get(&ObjectRef::new("main").within(NS))
                .expect("pool cached")
        }

        fn camera(&self, name: &str) -> Camera {
            let held = self.objects.lock().expect("objects");
            serde_json::from_value(held[&format!("{CAMERAS}/{name}")].clone()).expect("camera")
        }

        async fn reconcile(&self) -> Action {
            reconcile(self.pool(), self.ctx.clone())
                .await
                .expect("reconcile")
        }
    }

    fn label_patch(to: &'static str) -> impl Fn(&Value) + Send + Sync + 'static {
        move |body: &Value| assert_eq!(body["metadata"]["labels"][RECORDER_LABEL], to, "{body}")
    }

    fn any(_: &Value) {}

    fn workload_applies(objects: &Objects) -> Vec<Expected> {
        [
            "/api/v1/namespaces/site/serviceaccounts/vigil-recorder-main",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/site/roles/vigil-recorder-main",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/site/rolebindings/vigil-recorder-main",
            "/apis/apps/v1/namespaces/site/deployments/vigil-recorder-main",
            "/api/v1/namespaces/site/services/vigil-recorder-main",
        ]
        .into_iter()
        .map(|path| Expected::patch(objects, path, any))
        .collect()
    }

    /// First reconcile: the workload, each camera's status and label, the pool's status, in
    /// this order. Second reconcile with nothing changed: no request at all.
    #[tokio::test]
    async fn a_quiet_pool_makes_no_write() {
        let mut cluster = Cluster::new(&["cam-0", "cam-1"]);
        cluster.renew("rec-a", 1);
        cluster.renew("rec-b", 1);
        let objects = cluster.objects.clone();
        let mut first = workload_applies(&objects);
        for (cam, to) in [("cam-0", "rec-a"), ("cam-1", "rec-b")] {
            first.push(Expected::patch(
                &objects,
                &format!("{CAMERAS}/{cam}/status"),
                move |body| {
                    assert_eq!(body["status"]["recorder"], to, "{body}");
                    // Server-side apply of the operator's own fields: no resourceVersion guard.
                    assert_eq!(body["kind"], "Camera", "{body}");
                    assert!(body["metadata"].get("resourceVersion").is_none(), "{body}");
                },
            ));
            first.push(Expected::patch(
                &objects,
                &format!("{CAMERAS}/{cam}"),
                label_patch(to),
            ));
        }
        first.push(Expected::patch(&objects, POOL_STATUS, |body| {
            assert_eq!(body["status"]["readyRecorders"], 2, "{body}");
        }));
        cluster.script.expect(first);
        cluster.reconcile().await;
        let seen = cluster.script.finish();
        assert_eq!(seen.requests.len(), 10, "{:?}", seen.requests);

        // Recorders renew, routine status arrives; nothing placement reads changes.
        cluster.sync();
        cluster.renew("rec-a", 2);
        cluster.renew("rec-b", 2);
        cluster.reconcile().await;
        let seen = cluster.script.finish();
        assert!(
            seen.requests.is_empty(),
            "writes on a quiet pool: {:?}",
            seen.requests
        );
        assert_eq!(seen.events, 0);
    }

    /// Two cameras and two live recorders, after the first reconcile placed them (the
    /// workloads, each camera's status and label, the pool status).
    async fn two_cameras_placed_on_two_recorders() -> Cluster {
        let mut cluster = Cluster::new(&["cam-0", "cam-1"]);
        cluster.renew("rec-a", 1);
        cluster.renew("rec-b", 1);
        let objects = cluster.objects.clone();
        let mut first = workload_applies(&objects);
        for cam in ["cam-0", "cam-1"] {
            first.push(Expected::patch(
                &objects,
                &format!("{CAMERAS}/{cam}/status"),
                any,
            ));
            first.push(Expected::patch(&objects, &format!("{CAMERAS}/{cam}"), any));
        }
        first.push(Expected::patch(&objects, POOL_STATUS, any));
        cluster.script.expect(first);
        cluster.reconcile().await;
        cluster.script.finish();
        cluster.sync();
        cluster
    }

    /// A recorder whose Lease has not been seen changing for the lease duration loses its
    /// camera to the other: status (with the outage), label, pool status — nothing else.
    #[tokio::test]
    async fn a_stale_lease_moves_the_camera_to_another_recorder() {
        let mut cluster = two_cameras_placed_on_two_recorders().await;
        let objects = cluster.objects.clone();
        assert_eq!(
            cluster
                .camera("cam-0")
                .labels()
                .get(RECORDER_LABEL)
                .map(String::as_str),
            Some("rec-a")
        );

        // rec-b renews, rec-a was last seen changing 5 s ago: dead.
        cluster.renew("rec-b", 2);
        let key = (NS.to_string(), "rec-a".to_string());
        let five_seconds_ago = Instant::now()
            .checked_sub(Duration::from_secs(5))
            .expect("the monotonic clock runs for more than 5 s");
        cluster.ctx.forget_lease(&key);
        cluster
            .ctx
            .observe_lease(key, lease_version(&lease("rec-a", 1)), five_seconds_ago);
        cluster.script.expect(vec![
            Expected::patch(&objects, &format!("{CAMERAS}/cam-0/status"), |body| {
                let status = &body["status"];
                assert_eq!(status["recorder"], "rec-b", "{body}");
                // The failover is recorded for the recorder taking over, which finds the hole.
                assert_eq!(status["failover"]["from"], "rec-a", "{body}");
                assert!(status["failover"]["footageSafeUntil"].is_string(), "{body}");
            }),
            Expected::patch(&objects, &format!("{CAMERAS}/cam-0"), label_patch("rec-b")),
            Expected::patch(&objects, POOL_STATUS, |body| {
                assert_eq!(body["status"]["readyRecorders"], 1, "{body}");
                let degraded = body["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Degraded"))
                    .cloned()
                    .expect("Degraded");
                assert_eq!(degraded["reason"], "RecorderUnhealthy");
            }),
        ]);
        cluster.reconcile().await;
        let seen = cluster.script.finish();
        assert_eq!(seen.requests.len(), 3, "{:?}", seen.requests);
        assert!(seen.events >= 1, "a Failover Event at least");
        let cam = cluster.camera("cam-0");
        assert_eq!(
            cam.status
                .as_ref()
                .and_then(|s| s.state)
                .map(|s| s.as_str()),
            Some("Scheduled")
        );
    }

    fn labels_of(body: &Value) -> (Value, Value) {
        let labels = &body["metadata"]["labels"];
        (
            labels[RECORDER_LABEL].clone(),
            labels[INCOMING_RECORDER_LABEL].clone(),
        )
    }

    /// A planned move, request by request: rec-a starts draining; cam-0 gets rec-b as its
    /// incoming recorder while rec-a keeps it (one label patch); nothing more happens until
    /// rec-b reports its first footage; then rec-b becomes the owner (status, then labels with
    /// the incoming label removed). No failover is recorded.
    #[tokio::test]
    async fn a_draining_recorder_hands_its_camera_over_make_before_break() {
        let mut cluster = two_cameras_placed_on_two_recorders().await;
        let objects = cluster.objects.clone();
        assert_eq!(
            CameraLabels::of(&cluster.camera("cam-0")).owner.as_deref(),
            Some("rec-a")
        );

        // SIGTERM: rec-a's next renewal says it drains.
        let mut draining = lease("rec-a", 2);
        draining
            .annotations_mut()
            .insert(vigil_api::labels::DRAINING_ANNOTATION.into(), "true".into());
        put(&mut cluster.writers.leases, draining);
        cluster.renew("rec-b", 2);
        cluster.script.expect(vec![
            Expected::patch(&objects, &format!("{CAMERAS}/cam-0"), |body| {
                assert_eq!(labels_of(body), (json!("rec-a"), json!("rec-b")), "{body}");
            }),
            Expected::patch(&objects, POOL_STATUS, |body| {
                let recorders = body["status"]["recorders"].as_array().expect("recorders");
                assert_eq!(recorders[0]["name"], "rec-a");
                assert_eq!(recorders[0]["draining"], true, "{body}");
                assert_eq!(body["status"]["balance"]["handovers"], 1, "{body}");
            }),
        ]);
        cluster.reconcile().await;
        let seen = cluster.script.finish();
        assert_eq!(seen.requests.len(), 2, "{:?}", seen.requests);
        cluster.sync();

        // rec-b records but has no footage yet: the owner keeps the camera, nothing is written.
        cluster.reconcile().await;
        let seen = cluster.script.finish();
        assert!(seen.requests.is_empty(), "{:?}", seen.requests);

        // rec-b's first keyframe is on its disk: it says so in the status (its field manager,
        // vigil-recorder); rec-b becomes the owner.
        {
            let mut held = objects.lock().expect("objects");
            let cam = held.get_mut(&format!("{CAMERAS}/cam-0")).expect("cam-0");
            cam["status"]["handoverReady"] = json!("rec-b");
        }
        cluster.sync();
        cluster.script.expect(vec![
            Expected::patch(&objects, &format!("{CAMERAS}/cam-0/status"), |body| {
                assert_eq!(body["status"]["recorder"], "rec-b", "{body}");
                assert!(body["status"]["assignedAt"].is_string(), "{body}");
                assert!(
                    body["status"].get("failover").is_none(),
                    "planned, not a failover: {body}"
                );
            }),
            Expected::patch(&objects, &format!("{CAMERAS}/cam-0"), |body| {
                assert_eq!(labels_of(body), (json!("rec-b"), Value::Null), "{body}");
                // The incoming label is removed, not left empty.
                assert!(
                    body["metadata"]["labels"]
                        .as_object()
                        .is_some_and(|l| l.contains_key(INCOMING_RECORDER_LABEL))
                );
            }),
            Expected::patch(&objects, POOL_STATUS, |body| {
                assert_eq!(body["status"]["balance"]["handovers"], 0, "{body}");
            }),
        ]);
        cluster.reconcile().await;
        let seen = cluster.script.finish();
        assert_eq!(seen.requests.len(), 3, "{:?}", seen.requests);
        let cam = cluster.camera("cam-0");
        assert_eq!(
            CameraLabels::of(&cam),
            CameraLabels {
                owner: Some("rec-b".into()),
                incoming: None
            }
        );
    }

    #[test]
    fn handover_steps() {
        let labels = |owner: Option<&str>, incoming: Option<&str>| CameraLabels {
            owner: owner.map(str::to_string),
            incoming: incoming.map(str::to_string),
        };
        let a = labels(Some("a"), None);
        // New camera, staying camera, unplaced camera.
        assert_eq!(
            handover_step(&labels(None, None), None, Some("b"), false),
            labels(Some("b"), None)
        );
        assert_eq!(handover_step(&a, None, Some("a"), true), a);
        assert_eq!(handover_step(&a, None, None, true), labels(None, None));
        // Planned: start, wait (ready names someone else), complete.
        let started = handover_step(&a, None, Some("b"), true);
        assert_eq!(started, labels(Some("a"), Some("b")));
        assert_eq!(handover_step(&started, Some("c"), Some("b"), true), started);
        assert_eq!(
            handover_step(&started, Some("b"), Some("b"), true),
            labels(Some("b"), None)
        );
        // The owner dies mid-handover: the incoming recorder takes it at once.
        assert_eq!(
            handover_step(&started, None, Some("b"), false),
            labels(Some("b"), None)
        );
        // Placement changed its mind (the incoming recorder drains): aborted or redirected.
        assert_eq!(handover_step(&started, None, Some("a"), true), a);
        assert_eq!(
            handover_step(&started, Some("b"), Some("c"), true),
            labels(Some("a"), Some("c"))
        );
    }

    #[test]
    fn the_pool_looks_again_when_the_first_lease_could_expire() {
        let pool: RecorderPool = serde_json::from_value(pool_json()).expect("pool");
        let now = Instant::now() + Duration::from_secs(100);
        let seen = |ago: u64| LeaseObservation {
            last_change: now - Duration::from_secs(ago),
            renewed: Utc::now().into(),
            draining: false,
        };
        let world = PoolWorld {
            recorders: vec![
                RecorderObservation {
                    name: "rec-a".into(),
                    lease: Some(seen(1)),
                    pod: None,
                },
                RecorderObservation {
                    name: "rec-b".into(),
                    lease: Some(seen(3)),
                    pod: None,
                },
                RecorderObservation {
                    name: "rec-c".into(),
                    lease: Some(seen(9)),
                    pod: None,
                },
            ],
            ..Default::default()
        };
        let plan = decide(&pool, &world, Utc::now(), now);
        // rec-b, seen 3 s ago with 4 s leases, is the first that can expire; rec-c has.
        assert_eq!(plan.next_check, Some(Duration::from_secs(1) + EXPIRY_SLACK));
        let healthy: Vec<bool> = plan.health.iter().map(|h| h.healthy).collect();
        assert_eq!(healthy, [true, true, false]);
        assert!(plan.failed_now.is_empty(), "rec-c had no camera to move");
    }

    #[test]
    fn an_off_camera_is_placed_for_its_manual_window_and_released_after() {
        let pool: RecorderPool = serde_json::from_value(pool_json()).expect("pool");
        let instant = Instant::now() + Duration::from_secs(100);
        let now = Utc::now();
        let mut cam = camera_json("door");
        cam["spec"]["recording"] = json!({"mode": "Off", "manual": {
            "start": (now - chrono::TimeDelta::seconds(5)).to_rfc3339(),
            "end": (now + chrono::TimeDelta::seconds(30)).to_rfc3339(), "by": "alice"}});
        let cam: Camera = serde_json::from_value(cam).expect("camera");
        let world = PoolWorld {
            recorders: vec![RecorderObservation {
                name: "rec-a".into(),
                lease: Some(LeaseObservation {
                    last_change: instant,
                    renewed: Utc::now().into(),
                    draining: false,
                }),
                pod: None,
            }],
            cameras: vec![cam.into()],
            ..Default::default()
        };
        let plan = decide(&pool, &world, now, instant);
        assert_eq!(
            plan.placed.assignments.get("door").map(String::as_str),
            Some("rec-a")
        );
        // The pool looks again when the window ends (the lease would expire later).
        let next = plan.next_check.expect("next check");
        assert!(next <= Duration::from_millis(30_100), "{next:?}");
        assert!(next > Duration::from_secs(3), "{next:?}");
        let after = decide(&pool, &world, now + chrono::TimeDelta::seconds(31), instant);
        assert!(!after.placed.assignments.contains_key("door"));
    }

    #[test]
    fn renewals_alone_are_not_a_status_change() {
        let mut old = RecorderPoolStatus {
            recorders: vec![RecorderState {
                name: "rec-a".into(),
                ready: true,
                last_renew: DateTime::from_timestamp(1_000, 0),
                load_kbps: 1000,
                cameras: 1,
                draining: false,
            }],
            ..Default::default()
        };
        let mut new = old.clone();
        new.recorders[0].last_renew = DateTime::from_timestamp(2_000, 0);
        assert!(!pool_status_differs(Some(&old), &new));
        new.recorders[0].ready = false;
        assert!(pool_status_differs(Some(&old), &new));
        old.recorders.clear();
        assert!(pool_status_differs(Some(&old), &new));
        assert!(pool_status_differs(None, &new));
    }

    #[test]
    fn schedules_wake_the_pool_on_the_next_minute() {
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:00:59.500Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(until_next_minute(t), Duration::from_millis(600));
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(until_next_minute(t), Duration::from_millis(60_100));
    }

    #[test]
    fn leases_of_recorders_gone_for_minutes_are_collected_unless_a_camera_names_them() {
        let now = Instant::now() + Duration::from_secs(1000);
        let gone = Arc::new(lease("rec-old", 1));
        let live = Arc::new(lease("rec-new", 1));
        let seen = vec![
            (gone, now - Duration::from_secs(301)),
            (live, now - Duration::from_secs(1)),
        ];
        let (recorders, stale) = recorder_observations(&[], &seen, &BTreeSet::new(), now);
        assert_eq!(stale, ["rec-old"]);
        assert_eq!(recorders.len(), 1);
        let named = BTreeSet::from(["rec-old".to_string()]);
        let (recorders, stale) = recorder_observations(&[], &seen, &named, now);
        assert!(stale.is_empty());
        assert_eq!(recorders.len(), 2);
    }
}
