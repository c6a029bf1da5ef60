//! The RecorderPool reconciler: validate → apply the recorder workload → observe recorder
//! health → place the pool's cameras → apply assignments and camera status → pool status.
//!
//! It runs on every change of the pool, its Deployment, its recorder pods or its cameras, and
//! at least every `Context::resync` so an expired Lease is noticed within about a second.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use super::camera_status::{
    self, CameraFacts, differs, failover_record, failover_recorded, operator_status,
};
use super::children;
use super::{Context, FIELD_MANAGER};
use crate::error::{Error, Result};
use crate::leader::micro_time_to_chrono;
use crate::liveness::{PodObservation, RecorderHealth, RecorderObservation, recorder_health};
use crate::placement::{self, MoveReason, PlacementCamera, PlacementInput, PlacementRecorder};
use vigil_api::schedule::should_record;
use vigil_api::validation;
use vigil_api::{
    Camera, Condition, ConditionStatus, POOL_LABEL, RECORDER_LABEL, RecorderPool,
    RecorderPoolStatus, RecorderState, set_condition,
};

/// Label a recorder puts on its Lease: `pod` when it runs as a pod (so a missing pod means the
/// recorder is gone), `process` when it runs outside Kubernetes.
pub use vigil_api::labels::RECORDER_KIND_LABEL;
/// Expired Leases of recorders without cameras are deleted after this long.
const LEASE_GC_SECONDS: i64 = 300;

pub async fn reconcile(pool: Arc<RecorderPool>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.count_reconcile("recorderpool");
    let ns = pool
        .namespace()
        .ok_or_else(|| Error::Check("RecorderPool without namespace".into()))?;
    let name = pool.name_any();
    let generation = pool.metadata.generation;
    let mut status = pool.status.clone().unwrap_or_default();

    let errors = validation::validate_pool(&pool.spec);
    if !errors.is_empty() {
        let message = validation::describe(&errors);
        set_condition(
            &mut status.conditions,
            Condition::new(
                "Available",
                ConditionStatus::False,
                "InvalidSpec",
                &message,
                generation,
            ),
        );
        set_condition(
            &mut status.conditions,
            Condition::new(
                "Degraded",
                ConditionStatus::True,
                "InvalidSpec",
                &message,
                generation,
            ),
        );
        status.observed_generation = generation;
        apply_pool_status(&ctx, &pool, &ns, status).await?;
        return Ok(Action::await_change());
    }

    // The workload is applied every time (cheap, idempotent), but a failure here must not delay
    // failover: it is reported and placement goes on with the recorders that exist.
    let workload_error = apply_children(&ctx, &pool, &ns).await.err();
    if let Some(e) = &workload_error {
        warn!(pool = %name, namespace = %ns, error = %e, "could not apply the recorder workload");
    }

    let now = Utc::now();
    let health = observe_recorders(&ctx, &pool, &ns, now).await?;
    let health_by_name: BTreeMap<&str, &RecorderHealth> =
        health.iter().map(|h| (h.name.as_str(), h)).collect();

    let cameras: Vec<Camera> = Api::<Camera>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.pool == name)
        .collect();
    let secrets: BTreeSet<String> = Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .list_metadata(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|s| s.name_any())
        .collect();

    // What each camera needs, before placement.
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
            })
            .collect(),
        failover_headroom_percent: pool.spec.failover_headroom_percent,
    };
    for camera in &cameras {
        let errors = validation::validate_camera(&camera.spec);
        let f = CameraFacts {
            invalid: (!errors.is_empty()).then(|| validation::describe(&errors)),
            wanted: should_record(&camera.spec.recording, now),
            secret_missing: camera
                .spec
                .credentials_secret_ref
                .as_ref()
                .filter(|r| !secrets.contains(&r.name))
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
                current_recorder: camera.labels().get(RECORDER_LABEL).cloned(),
                pool: name.clone(),
            });
        }
        facts.insert(camera.name_any(), f);
    }

    let started = Instant::now();
    let placed = placement::place(&input);
    ctx.metrics
        .placement_seconds
        .observe(started.elapsed().as_secs_f64());
    for u in &placed.unplaced {
        if let Some(f) = facts.get_mut(&u.camera) {
            f.unplaced = Some((
                pascal_case(u.reason.as_str()),
                format!(
                    "no recorder of pool {name} can take {} kbit/s ({})",
                    u.bitrate_kbps,
                    u.reason.as_str()
                ),
            ));
        }
    }
    let lost_moves: BTreeMap<&str, &placement::CameraMove> = placed
        .moves
        .iter()
        .filter(|m| m.reason == MoveReason::RecorderLost)
        .map(|m| (m.camera.as_str(), m))
        .collect();

    let cameras_api: Api<Camera> = Api::namespaced(ctx.client.clone(), &ns);
    let mut states: BTreeMap<String, i64> = BTreeMap::new();
    for camera in &cameras {
        let cam_name = camera.name_any();
        let Some(f) = facts.get_mut(&cam_name) else {
            continue;
        };
        f.recorder = placed.assignments.get(&cam_name).cloned();
        let old = camera.labels().get(RECORDER_LABEL).cloned();
        // The camera leaves a recorder that failed: record the failover (unless it is recorded
        // already); the recorder taking the camera over finds the hole and backfills it.
        if let Some(old_recorder) = &old
            && f.recorder.as_ref() != Some(old_recorder)
            && health_by_name
                .get(old_recorder.as_str())
                .is_none_or(|h| !h.healthy)
            && !failover_recorded(camera, old_recorder)
        {
            let renewed = health_by_name
                .get(old_recorder.as_str())
                .and_then(|h| h.lease_renewed);
            f.failover = Some(failover_record(
                old_recorder,
                renewed,
                pool.spec.segment_seconds,
                now,
            ));
            if let Some(renewed) = renewed {
                ctx.metrics
                    .failover_detection_seconds
                    .observe((now - renewed).num_milliseconds() as f64 / 1000.0);
            }
        }
        let new_status = operator_status(camera, f, now);
        *states
            .entry(new_status.state.as_str().to_string())
            .or_default() += 1;
        if differs(camera, &new_status) {
            camera_status::apply(&cameras_api, camera, &new_status).await?;
        }
        if old != f.recorder {
            let patch = serde_json::json!({"metadata": {"labels": {RECORDER_LABEL: f.recorder}}});
            cameras_api
                .patch(&cam_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            ctx.metrics.camera_moves.inc();
            let (reason, note) = match (&old, &f.recorder, lost_moves.get(cam_name.as_str())) {
                (Some(from), Some(to), Some(_)) => {
                    let why = health_by_name
                        .get(from.as_str())
                        .map_or("recorder gone".to_string(), |h| h.reason.clone());
                    (
                        "Failover",
                        format!("moved from failed recorder {from} ({why}) to {to}"),
                    )
                }
                (Some(from), Some(to), None) => {
                    ("Moved", format!("moved from recorder {from} to {to}"))
                }
                (None, Some(to), _) => ("Assigned", format!("assigned to recorder {to}")),
                (Some(from), None, _) => ("Unassigned", format!("removed from recorder {from}")),
                (None, None, _) => ("Unassigned", String::new()),
            };
            info!(camera = %cam_name, namespace = %ns, %note, "placement");
            publish(&ctx, camera, EventType::Normal, reason, note).await;
        }
    }
    for (state, count) in &states {
        ctx.metrics
            .cameras
            .get_or_create(&crate::metrics::StateLabels {
                pool: format!("{ns}/{name}"),
                state: state.clone(),
            })
            .set(*count);
    }
    let failed_now: Vec<&RecorderHealth> = health
        .iter()
        .filter(|h| {
            !h.healthy
                && lost_moves
                    .values()
                    .any(|m| m.from.as_deref() == Some(h.name.as_str()))
        })
        .collect();
    for h in &failed_now {
        warn!(recorder = %h.name, reason = %h.reason, pool = %name, "recorder failed; its cameras were moved");
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

    // Pool status.
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
        })
        .collect();
    status.ready_recorders = health.iter().filter(|h| h.healthy).count() as i32;
    status.cameras = cameras.len() as u32;
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
    if let Some(e) = &workload_error {
        set_condition(
            &mut status.conditions,
            Condition::new(
                "WorkloadApplied",
                ConditionStatus::False,
                "ApplyFailed",
                e.to_string(),
                generation,
            ),
        );
    } else {
        set_condition(
            &mut status.conditions,
            Condition::new(
                "WorkloadApplied",
                ConditionStatus::True,
                "Applied",
                "",
                generation,
            ),
        );
    }
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
    if pool.status.as_ref() != Some(&status) {
        apply_pool_status(&ctx, &pool, &ns, status).await?;
    }
    super::reset_backoff(&ctx, pool.as_ref());
    Ok(Action::requeue(ctx.resync))
}

fn pascal_case(s: &str) -> String {
    s.split(['_', '-', ' '])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// Reads recorder pods and Leases of the pool and judges each recorder. Also deletes Leases of
/// recorders long dead (no pod, expired for minutes) so they leave the status.
async fn observe_recorders(
    ctx: &Context,
    pool: &RecorderPool,
    ns: &str,
    now: DateTime<Utc>,
) -> Result<Vec<RecorderHealth>> {
    let selector = format!("{POOL_LABEL}={}", pool.name_any());
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let leases_api = Api::<Lease>::namespaced(ctx.client.clone(), ns);
    let leases = leases_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let mut observations: BTreeMap<String, RecorderObservation> = BTreeMap::new();
    for pod in &pods {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        observations.insert(
            pod.name_any(),
            RecorderObservation {
                name: pod.name_any(),
                lease_renewed: None,
                pod: Some(PodObservation {
                    exists: true,
                    terminating: pod.metadata.deletion_timestamp.is_some(),
                    ready,
                }),
            },
        );
    }
    let mut stale = vec![];
    for lease in &leases {
        let renewed = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .and_then(micro_time_to_chrono);
        let runs_as_pod =
            lease.labels().get(RECORDER_KIND_LABEL).map(String::as_str) == Some("pod");
        let entry = observations
            .entry(lease.name_any())
            .or_insert_with(|| RecorderObservation {
                name: lease.name_any(),
                lease_renewed: None,
                // A pod recorder whose pod is gone: deleted.
                pod: runs_as_pod.then_some(PodObservation {
                    exists: false,
                    terminating: false,
                    ready: false,
                }),
            });
        entry.lease_renewed = renewed;
        let pod_gone = entry.pod.as_ref().is_some_and(|p| !p.exists);
        if (pod_gone || entry.pod.is_none())
            && renewed.is_none_or(|r| (now - r).num_seconds() > LEASE_GC_SECONDS)
        {
            stale.push(lease.name_any());
        }
    }
    let duration = pool.spec.lease.duration_seconds;
    let mut health: Vec<RecorderHealth> = observations
        .values()
        .map(|o| recorder_health(o, now, duration))
        .collect();
    if !stale.is_empty() {
        // Only once no camera names the dead recorder any more.
        let labelled: BTreeSet<String> = Api::<Camera>::namespaced(ctx.client.clone(), ns)
            .list_metadata(&ListParams::default().labels(RECORDER_LABEL))
            .await?
            .items
            .into_iter()
            .filter_map(|c| c.labels().get(RECORDER_LABEL).cloned())
            .collect();
        for name in stale.into_iter().filter(|n| !labelled.contains(n)) {
            info!(lease = %name, "deleting the lease of a recorder gone for minutes");
            let _ = leases_api.delete(&name, &DeleteParams::default()).await;
            health.retain(|h| h.name != name);
        }
    }
    Ok(health)
}

async fn apply_children(ctx: &Context, pool: &RecorderPool, ns: &str) -> Result<()> {
    let name = children::workload_name(pool);
    apply(ctx, ns, &name, &children::service_account(pool)).await?;
    apply(ctx, ns, &name, &children::role(pool)).await?;
    apply(ctx, ns, &name, &children::role_binding(pool)).await?;
    apply(ctx, ns, &name, &children::deployment(pool, &ctx.settings)).await?;
    apply(ctx, ns, &name, &children::metrics_service(pool)).await?;
    if let Some(api_version) = &ctx.cron_job_api_version {
        let cj = children::retention_cron_job(pool, &ctx.settings, api_version);
        let cj_name = children::retention_cron_job_name(pool);
        apply_dynamic(ctx, ns, &cj_name, api_version, "CronJob", &cj).await?;
    }
    if let Some(api_version) = &ctx.pdb_api_version {
        let pdb = children::disruption_budget(pool, api_version);
        apply_dynamic(ctx, ns, &name, api_version, "PodDisruptionBudget", &pdb).await?;
    }
    // Last, so that a refused audit schedule (reported in WorkloadApplied like any apply error)
    // holds nothing else back.
    if let Some(api_version) = &ctx.cron_job_api_version {
        let errors = validation::validate_pool_audit(&pool.spec);
        if !errors.is_empty() {
            return Err(Error::Check(format!(
                "coverage-audit CronJob not applied: {}",
                validation::describe(&errors)
            )));
        }
        let cj = children::audit_cron_job(pool, &ctx.settings, api_version);
        let cj_name = children::audit_cron_job_name(pool);
        apply_dynamic(ctx, ns, &cj_name, api_version, "CronJob", &cj).await?;
    }
    Ok(())
}

/// Server-side applies an object whose API version is only known at run time.
async fn apply_dynamic(
    ctx: &Context,
    ns: &str,
    name: &str,
    api_version: &str,
    kind: &str,
    body: &serde_json::Value,
) -> Result<()> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
    let ar = kube::core::ApiResource::from_gvk(&gvk);
    Api::<kube::core::DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    Ok(())
}

async fn apply<K>(ctx: &Context, ns: &str, name: &str, object: &K) -> Result<()>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let mut value = serde_json::to_value(object).map_err(|e| Error::Check(e.to_string()))?;
    // Server-side apply needs apiVersion and kind in the body.
    value["apiVersion"] = K::api_version(&Default::default()).into();
    value["kind"] = K::kind(&Default::default()).into();
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await?;
    Ok(())
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
    Api::<RecorderPool>::namespaced(ctx.client.clone(), ns)
        .patch_status(
            &pool.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Publishes an Event; failures are logged, never fatal (Events are best effort).
pub async fn publish<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.events.publish(&event, &object.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish Event");
    }
}
