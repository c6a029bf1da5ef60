//! Backfills: Backfill object → Job, and the Job's outcome → Backfill status. Backfills are
//! created by whoever finds a hole (recorders, the coverage audit; see
//! [`vigil_api::Backfill::for_hole`]) or by a user.
//!
//! The decisions are pure ([`decide`], [`job`]); [`reconcile`] only
//! reads the world and carries them out. The Job (`vigil-jobs backfill <ns>/<name>`) writes
//! the figures of the status (seconds missing before / recovered / lost, intervals still
//! missing, bytes, progress) with its own field manager; the operator writes phase, Job name,
//! attempts, times and conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::children::{RecorderSettings, workload_name};
use super::{Context, FIELD_MANAGER, publish};
use crate::error::{Error, Result};
use crate::metrics::ControllerKind;
use vigil_api::validation;
use vigil_api::{
    Backfill, BackfillPhase, BackfillStatus, Camera, Condition, ConditionStatus, RecorderPool,
    TimeWindow, set_condition,
};

/// Attempts before a Backfill is given up as Failed.
pub const MAX_ATTEMPTS: u32 = 3;
/// Label on a backfill Job naming its Backfill.
pub use vigil_api::labels::BACKFILL_LABEL;

/// What to do with a Backfill now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start attempt `attempt` as a Job.
    StartJob { attempt: u32 },
    /// Not yet: another backfill of this camera or the pool's cap is in the way.
    Wait { reason: WaitReason, message: String },
    /// The running Job failed; delete it and try again after the delay.
    Retry { after: Duration, message: String },
    /// Done, with this phase and reason.
    Finish {
        phase: BackfillPhase,
        reason: String,
        message: String,
        seconds_lost: Option<f64>,
    },
    /// Nothing to do (running, or already finished).
    Nothing,
}

/// Why a Backfill waits; also the reason of its `Complete=False` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// The camera's pool does not exist.
    PoolNotFound,
    /// Another backfill of the camera is running.
    CameraBusy,
    /// `backfill.maxConcurrent` backfills of the pool are running.
    PoolBusy,
    /// The window may not be on the camera's edge storage yet.
    EdgeSettling,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::PoolNotFound => "PoolNotFound",
            WaitReason::CameraBusy => "CameraBusy",
            WaitReason::PoolBusy => "PoolBusy",
            WaitReason::EdgeSettling => "EdgeSettling",
        }
    }
}

/// The facts [`decide`] needs.
pub struct World<'a> {
    pub camera: Option<&'a Camera>,
    pub pool: Option<&'a RecorderPool>,
    /// The Job of the current attempt, if it exists.
    pub job: Option<&'a Job>,
    /// Other Backfills of the same camera that are Running.
    pub running_for_camera: usize,
    /// Backfills of the same pool that are Running (this one excluded).
    pub running_in_pool: usize,
    /// The current time (the window must have settled on the camera's SD card).
    pub now: DateTime<Utc>,
}

/// Decides the next step for `backfill`. Pure.
pub fn decide(backfill: &Backfill, world: &World) -> Decision {
    let status = backfill.status.clone().unwrap_or_default();
    if matches!(
        status.phase,
        Some(BackfillPhase::Succeeded | BackfillPhase::PartiallyRecovered | BackfillPhase::Failed)
    ) {
        return Decision::Nothing;
    }
    let window_seconds = backfill.spec.window.seconds().max(0.0);
    let errors = validation::validate_backfill(&backfill.spec);
    if !errors.is_empty() {
        return Decision::Finish {
            phase: BackfillPhase::Failed,
            reason: "InvalidSpec".into(),
            message: validation::describe(&errors),
            seconds_lost: None,
        };
    }
    let Some(camera) = world.camera else {
        return Decision::Finish {
            phase: BackfillPhase::Failed,
            reason: "CameraNotFound".into(),
            message: format!(
                "camera {:?} not found in this namespace",
                backfill.spec.camera
            ),
            seconds_lost: Some(window_seconds),
        };
    };
    if camera.spec.edge_storage.is_none() {
        return Decision::Finish {
            phase: BackfillPhase::Failed,
            reason: "NoEdgeStorage".into(),
            message: format!(
                "camera {} has no edge storage (spec.edgeStorage), so the {window_seconds:.1} s of this window cannot be recovered",
                camera.name_any()
            ),
            seconds_lost: Some(window_seconds),
        };
    }
    let Some(pool) = world.pool else {
        return Decision::Wait {
            reason: WaitReason::PoolNotFound,
            message: format!("RecorderPool {:?} not found", camera.spec.pool),
        };
    };
    match world.job.and_then(|j| j.status.as_ref()) {
        Some(js) if js.succeeded.unwrap_or(0) > 0 => {
            let lost = status.seconds_lost.unwrap_or(0.0);
            return if status.seconds_recovered.is_none() && status.seconds_lost.is_none() {
                Decision::Finish {
                    phase: BackfillPhase::Failed,
                    reason: "NoReport".into(),
                    message: "the backfill Job succeeded but reported no figures".into(),
                    seconds_lost: None,
                }
            } else if lost > 0.0 && status.seconds_recovered.is_none_or(|r| r <= 0.0) {
                // The CRD's Failed: nothing could be recovered.
                Decision::Finish {
                    phase: BackfillPhase::Failed,
                    reason: "NothingRecovered".into(),
                    message: format!(
                        "none of the {lost:.1} s missing could be recovered from the camera"
                    ),
                    seconds_lost: None,
                }
            } else if lost > 0.0 {
                Decision::Finish {
                    phase: BackfillPhase::PartiallyRecovered,
                    reason: "FootageMissing".into(),
                    message: format!("{lost:.1} s could not be recovered from the camera"),
                    seconds_lost: None,
                }
            } else {
                Decision::Finish {
                    phase: BackfillPhase::Succeeded,
                    reason: "WindowComplete".into(),
                    message: "the whole window is in the store".into(),
                    seconds_lost: None,
                }
            };
        }
        Some(js) if js.failed.unwrap_or(0) > 0 => {
            return if status.attempts >= MAX_ATTEMPTS {
                Decision::Finish {
                    phase: BackfillPhase::Failed,
                    reason: "AttemptsExhausted".into(),
                    message: format!(
                        "{} attempts failed; see the logs of Job {}",
                        status.attempts,
                        status.job_name.clone().unwrap_or_default()
                    ),
                    seconds_lost: Some(status.seconds_lost.unwrap_or(window_seconds)),
                }
            } else {
                Decision::Retry {
                    after: Duration::from_secs(10 * 2u64.pow(status.attempts.saturating_sub(1))),
                    message: format!("attempt {} failed", status.attempts),
                }
            };
        }
        Some(_) => return Decision::Nothing, // running
        None if status.phase == Some(BackfillPhase::Running) && world.job.is_some() => {
            return Decision::Nothing;
        }
        None => {}
    }
    if world.job.is_some() {
        return Decision::Nothing;
    }
    if world.running_for_camera > 0 {
        return Decision::Wait {
            reason: WaitReason::CameraBusy,
            message:
                "another backfill of this camera is running (an SD card serves one reader well)"
                    .into(),
        };
    }
    if world.running_in_pool >= pool.spec.backfill.max_concurrent as usize {
        return Decision::Wait {
            reason: WaitReason::PoolBusy,
            message: format!(
                "{} backfills of pool {} are running (backfill.maxConcurrent)",
                world.running_in_pool,
                pool.name_any()
            ),
        };
    }
    let settled_at = backfill.spec.window.end
        + chrono::Duration::seconds(i64::from(pool.spec.backfill.edge_settle_seconds));
    if world.now < settled_at {
        return Decision::Wait {
            reason: WaitReason::EdgeSettling,
            message: format!(
                "waiting until {} for the camera to finish writing the window to its edge storage (backfill.edgeSettleSeconds)",
                settled_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        };
    }
    Decision::StartJob {
        attempt: status.attempts + 1,
    }
}

/// Name of the Job of one attempt: at most 63 characters (it becomes a label value).
pub fn job_name(backfill: &Backfill, attempt: u32) -> String {
    let name = backfill.name_any();
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = name.chars().take(40).collect();
    format!(
        "{}-{:08x}-{attempt}",
        head.trim_end_matches(['-', '.']),
        hash as u32
    )
}

/// The Job that runs one attempt of `backfill`.
pub fn job(
    backfill: &Backfill,
    camera: &Camera,
    pool: &RecorderPool,
    settings: &RecorderSettings,
    attempt: u32,
) -> Job {
    let ns = backfill.namespace().unwrap_or_default();
    let overrides = pool.spec.pod_overrides.clone().unwrap_or_default();
    let secret_env = |name: &str, secret: &str, key: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut env = vec![EnvVar {
        name: "POD_NAMESPACE".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.namespace".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    env.extend(settings.cluster_networks_env());
    if let Some(secret) = &camera.spec.credentials_secret_ref {
        env.push(secret_env(
            "VIGIL_CAMERA_USERNAME",
            &secret.name,
            secret.username_key(),
        ));
        env.push(secret_env(
            "VIGIL_CAMERA_PASSWORD",
            &secret.name,
            secret.password_key(),
        ));
    }
    // An https:// ONVIF device: the CA to trust (read by the Job from the Secret, never put
    // into the Job's spec), or verification off, as the Camera says.
    if let Some(tls) = camera
        .spec
        .edge_storage
        .as_ref()
        .and_then(|e| e.onvif.as_ref())
        .and_then(|o| o.tls.as_ref())
    {
        if let Some(ca) = &tls.ca_secret_ref {
            env.push(secret_env("VIGIL_ONVIF_TLS_CA", &ca.name, ca.key()));
        }
        if tls.insecure_skip_verify {
            env.push(EnvVar {
                name: "VIGIL_ONVIF_TLS_INSECURE".into(),
                value: Some("true".into()),
                ..Default::default()
            });
        }
    }
    // A camera at a remote site is reached through the site's tunnel: the Job gets the site
    // link recorders get (the rendezvous env and the namespace's `vigil-site-recorder` Secret).
    let mut mounts = vec![VolumeMount {
        name: "scratch".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    let mut volumes = vec![Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }];
    if camera.spec.site.is_some() {
        env.extend(settings.site_env());
        if let Some((volume, mount)) = settings.site_volume() {
            volumes.push(volume);
            mounts.push(mount);
        }
    }
    let window_seconds = backfill.spec.window.seconds().max(1.0) as i64;
    let labels = BTreeMap::from([
        (BACKFILL_LABEL.to_string(), backfill.name_any()),
        ("vigil.dev/camera".to_string(), camera.name_any()),
        ("vigil.dev/pool".to_string(), pool.name_any()),
    ]);
    let container = Container {
        name: "backfill".into(),
        image: Some(
            overrides
                .image
                .clone()
                .unwrap_or_else(|| settings.image.clone()),
        ),
        image_pull_policy: Some(
            overrides
                .image_pull_policy
                .clone()
                .unwrap_or_else(|| settings.image_pull_policy.clone()),
        ),
        command: Some(vec![super::children::JOBS_COMMAND.into()]),
        args: Some(vec![
            "backfill".into(),
            format!("{ns}/{}", backfill.name_any()),
            "--bandwidth-mbps".into(),
            pool.spec.backfill.bandwidth_mbps.to_string(),
        ]),
        env: Some(env),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(backfill, attempt)),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            owner_references: backfill.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            // Generous: replay runs faster than real time, but a slow link must not be killed early.
            active_deadline_seconds: Some(600 + window_seconds * 2),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([(
                        BACKFILL_LABEL.to_string(),
                        backfill.name_any(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(workload_name(pool)),
                    restart_policy: Some("Never".into()),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        run_as_non_root: Some(true),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn reconcile(backfill: Arc<Backfill>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.count_reconcile(ControllerKind::Backfill);
    let ns = backfill
        .namespace()
        .ok_or(Error::MissingNamespace { kind: "Backfill" })?;
    let name = backfill.name_any();
    let camera = ctx
        .caches
        .cameras
        .get(&ObjectRef::new(&backfill.spec.camera).within(&ns));
    let pool = camera.as_ref().and_then(|c| {
        ctx.caches
            .pools
            .get(&ObjectRef::new(&c.spec.pool).within(&ns))
    });
    let status = backfill.status.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let job_now = match &status.job_name {
        Some(j) => match ctx.caches.jobs.get(&ObjectRef::new(j).within(&ns)) {
            Some(job) => Some(job),
            // Created a moment ago and not in the cache yet: ask once rather than start the
            // attempt again.
            None => jobs.get_opt(j).await?.map(Arc::new),
        },
        None => None,
    };
    let (running_for_camera, running_in_pool) =
        running_counts(&ctx, &ns, &backfill, camera.as_deref());
    let world = World {
        camera: camera.as_deref(),
        pool: pool.as_deref(),
        job: job_now.as_deref(),
        running_for_camera,
        running_in_pool,
        now: Utc::now(),
    };
    let now = world.now;
    let generation = backfill.metadata.generation;
    let mut next = OperatorBackfillStatus::from(&status);
    next.observed_generation = generation;
    let action = match decide(&backfill, &world) {
        Decision::Nothing => return Ok(Action::requeue(Duration::from_secs(30))),
        Decision::StartJob { attempt } => {
            let (Some(camera), Some(pool)) = (&camera, &pool) else {
                return Ok(Action::requeue(Duration::from_secs(5)));
            };
            let job = job(&backfill, camera, pool, &ctx.settings, attempt);
            ctx.metrics.count_write("job");
            match jobs.create(&PostParams::default(), &job).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {} // created by a previous reconcile
                Err(e) => return Err(e.into()),
            }
            info!(backfill = %name, namespace = %ns, attempt, job = %job.name_any(), "backfill job started");
            publish(
                &ctx,
                backfill.as_ref(),
                EventType::Normal,
                "JobStarted",
                format!("attempt {attempt}: Job {}", job.name_any()),
            )
            .await;
            next.phase = Some(BackfillPhase::Running);
            next.job_name = Some(job.name_any());
            next.attempts = attempt;
            next.started_at = next.started_at.or(Some(now));
            set_condition(
                &mut next.conditions,
                Condition::new(
                    "Complete",
                    ConditionStatus::False,
                    "Running",
                    format!("attempt {attempt} of {MAX_ATTEMPTS}"),
                    generation,
                ),
            );
            Action::requeue(Duration::from_secs(30))
        }
        Decision::Wait { reason, message } => {
            next.phase = Some(BackfillPhase::Pending);
            set_condition(
                &mut next.conditions,
                Condition::new(
                    "Complete",
                    ConditionStatus::False,
                    reason.as_str(),
                    message,
                    generation,
                ),
            );
            Action::requeue(Duration::from_secs(5))
        }
        Decision::Retry { after, message } => {
            if let Some(j) = &status.job_name {
                ctx.metrics.count_write("job");
                let _ = jobs
                    .delete(
                        j,
                        &DeleteParams {
                            propagation_policy: Some(PropagationPolicy::Background),
                            ..Default::default()
                        },
                    )
                    .await;
            }
            next.job_name = None;
            set_condition(
                &mut next.conditions,
                Condition::new(
                    "Complete",
                    ConditionStatus::False,
                    "Retrying",
                    format!("{message}; retrying in {} s", after.as_secs()),
                    generation,
                ),
            );
            publish(
                &ctx,
                backfill.as_ref(),
                EventType::Warning,
                "AttemptFailed",
                message,
            )
            .await;
            Action::requeue(after)
        }
        Decision::Finish {
            phase,
            reason,
            message,
            seconds_lost,
        } => {
            next.phase = Some(phase);
            next.finished_at = Some(now);
            if let Some(lost) = seconds_lost {
                next.seconds_lost = Some(lost);
                if status.still_missing.is_empty() {
                    next.still_missing = vec![backfill.spec.window.clone()];
                }
            }
            let ok = phase == BackfillPhase::Succeeded;
            set_condition(
                &mut next.conditions,
                Condition::new(
                    "Complete",
                    if ok {
                        ConditionStatus::True
                    } else {
                        ConditionStatus::False
                    },
                    &reason,
                    &message,
                    generation,
                ),
            );
            let kind = if ok {
                EventType::Normal
            } else {
                EventType::Warning
            };
            publish(&ctx, backfill.as_ref(), kind, &reason, message).await;
            Action::await_change()
        }
    };
    let mut current = OperatorBackfillStatus::from(&status);
    current.observed_generation = generation;
    if next == current {
        // Still waiting for the same reason: nothing to write.
        return Ok(action);
    }
    let patch =
        serde_json::json!({"apiVersion": "vigil.dev/v1alpha1", "kind": "Backfill", "status": next});
    ctx.metrics.count_write("backfill");
    Api::<Backfill>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(action)
}

/// The operator-owned part of a Backfill's status (the Job owns the figures).
#[derive(serde::Serialize, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct OperatorBackfillStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    phase: Option<BackfillPhase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_name: Option<String>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<DateTime<Utc>>,
    /// Only when nothing could be attempted (no edge storage, no camera, attempts exhausted).
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds_lost: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    still_missing: Vec<TimeWindow>,
    conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
}

impl From<&BackfillStatus> for OperatorBackfillStatus {
    fn from(s: &BackfillStatus) -> Self {
        OperatorBackfillStatus {
            phase: s.phase,
            job_name: s.job_name.clone(),
            attempts: s.attempts,
            started_at: s.started_at,
            finished_at: s.finished_at,
            seconds_lost: None,
            still_missing: vec![],
            conditions: s.conditions.clone(),
            observed_generation: s.observed_generation,
        }
    }
}

/// Other Running Backfills of the same camera, and of the same pool, from the caches.
fn running_counts(
    ctx: &Context,
    ns: &str,
    backfill: &Backfill,
    camera: Option<&Camera>,
) -> (usize, usize) {
    let running = ctx.caches.backfills.state_filter(|b| {
        b.namespace().as_deref() == Some(ns)
            && b.name_any() != backfill.name_any()
            && b.status.as_ref().and_then(|s| s.phase) == Some(BackfillPhase::Running)
    });
    let for_camera = running
        .iter()
        .filter(|b| b.spec.camera == backfill.spec.camera)
        .count();
    let Some(camera) = camera else {
        return (for_camera, 0);
    };
    let in_pool = running
        .iter()
        .filter(|b| {
            ctx.caches
                .cameras
                .get(&ObjectRef::new(&b.spec.camera).within(ns))
                .is_some_and(|c| c.spec.pool == camera.spec.pool)
        })
        .count();
    (for_camera, in_pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobStatus;
    use vigil_api::BackfillReason;

    fn camera(edge: bool) -> Camera {
        let mut spec = serde_json::json!({"source": {"url": "rtsp://cam/live"}, "expectedBitrateKbps": 4000, "pool": "main"});
        if edge {
            spec["edgeStorage"] =
                serde_json::json!({"onvif": {"deviceUrl": "http://cam/onvif/device_service"}});
            spec["credentialsSecretRef"] = serde_json::json!({"name": "cam-secret"});
        }
        let mut c = Camera::new("lobby", serde_json::from_value(spec).expect("spec"));
        c.metadata.namespace = Some("site".into());
        c
    }

    fn pool() -> RecorderPool {
        let spec = serde_json::from_value(serde_json::json!({
            "replicas": 2, "capacityKbps": 100000, "storage": {"local": {"path": "/data"}},
            "backfill": {"maxConcurrent": 1, "bandwidthMbps": 40}
        }))
        .expect("pool spec");
        let mut p = RecorderPool::new("main", spec);
        p.metadata.namespace = Some("site".into());
        p
    }

    fn backfill(status: Option<BackfillStatus>) -> Backfill {
        let start = Utc::now() - chrono::Duration::seconds(120);
        let window = TimeWindow {
            start,
            end: start + chrono::Duration::seconds(90),
        };
        let mut b = Backfill::for_hole("site", "lobby", window, BackfillReason::RecorderFailure);
        b.metadata.uid = Some("uid".into());
        b.status = status;
        b
    }

    fn world<'a>(camera: &'a Camera, pool: &'a RecorderPool, job: Option<&'a Job>) -> World<'a> {
        World {
            camera: Some(camera),
            pool: Some(pool),
            job,
            running_for_camera: 0,
            running_in_pool: 0,
            now: Utc::now(),
        }
    }

    #[test]
    fn waits_for_the_window_to_settle_on_the_sd_card() {
        let (c, p) = (camera(true), pool());
        let b = backfill(None); // window ended 30 s ago; default settle 15 s
        let end = b.spec.window.end;
        let early = World {
            now: end + chrono::Duration::seconds(5),
            ..world(&c, &p, None)
        };
        assert!(
            matches!(decide(&b, &early), Decision::Wait { reason, .. } if reason == WaitReason::EdgeSettling)
        );
        let settled = World {
            now: end + chrono::Duration::seconds(15),
            ..world(&c, &p, None)
        };
        assert_eq!(decide(&b, &settled), Decision::StartJob { attempt: 1 });
    }

    #[test]
    fn job_names_of_hole_backfills_stay_label_values() {
        // The longest hole Backfill name (63 characters) still gives a Job name of at most 63.
        let camera = "c".repeat(253);
        let b = Backfill::for_hole(
            "site",
            &camera,
            backfill(None).spec.window,
            BackfillReason::Audit,
        );
        assert_eq!(b.name_any().len(), 63);
        for attempt in 1..=MAX_ATTEMPTS {
            let name = job_name(&b, attempt);
            assert!(name.len() <= 63, "{name}");
            assert!(name.ends_with(&format!("-{attempt}")), "{name}");
        }
        assert_ne!(job_name(&b, 1), job_name(&backfill(None), 1));
    }

    #[test]
    fn no_edge_storage_fails_at_once_counting_the_window_lost() {
        let (c, p) = (camera(false), pool());
        match decide(&backfill(None), &world(&c, &p, None)) {
            Decision::Finish {
                phase: BackfillPhase::Failed,
                reason,
                seconds_lost: Some(lost),
                ..
            } => {
                assert_eq!(reason, "NoEdgeStorage");
                assert!((lost - 90.0).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_per_camera_and_pool_cap() {
        let (c, p) = (camera(true), pool());
        assert_eq!(
            decide(&backfill(None), &world(&c, &p, None)),
            Decision::StartJob { attempt: 1 }
        );
        let busy = World {
            running_for_camera: 1,
            ..world(&c, &p, None)
        };
        assert!(
            matches!(decide(&backfill(None), &busy), Decision::Wait { reason, .. } if reason == WaitReason::CameraBusy)
        );
        let full = World {
            running_in_pool: 1,
            ..world(&c, &p, None)
        };
        assert!(
            matches!(decide(&backfill(None), &full), Decision::Wait { reason, .. } if reason == WaitReason::PoolBusy)
        );
    }

    #[test]
    fn job_outcomes_retry_then_report_honestly() {
        let (c, p) = (camera(true), pool());
        let failed = Job {
            status: Some(JobStatus {
                failed: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let running = |attempts| BackfillStatus {
            phase: Some(BackfillPhase::Running),
            attempts,
            job_name: Some("j".into()),
            ..Default::default()
        };
        assert!(
            matches!(decide(&backfill(Some(running(1))), &world(&c, &p, Some(&failed))), Decision::Retry { after, .. } if after == Duration::from_secs(10))
        );
        assert!(
            matches!(decide(&backfill(Some(running(2))), &world(&c, &p, Some(&failed))), Decision::Retry { after, .. } if after == Duration::from_secs(20))
        );
        assert!(matches!(
            decide(
                &backfill(Some(running(MAX_ATTEMPTS))),
                &world(&c, &p, Some(&failed))
            ),
            Decision::Finish {
                phase: BackfillPhase::Failed,
                ..
            }
        ));

        let succeeded = Job {
            status: Some(JobStatus {
                succeeded: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut reported = running(1);
        reported.seconds_recovered = Some(88.0);
        reported.seconds_lost = Some(2.0);
        assert!(matches!(
            decide(
                &backfill(Some(reported.clone())),
                &world(&c, &p, Some(&succeeded))
            ),
            Decision::Finish {
                phase: BackfillPhase::PartiallyRecovered,
                ..
            }
        ));
        // Nothing recovered: Failed, as the CRD documents, not PartiallyRecovered.
        let mut nothing = reported.clone();
        nothing.seconds_recovered = Some(0.0);
        nothing.seconds_lost = Some(90.0);
        assert!(
            matches!(decide(&backfill(Some(nothing)), &world(&c, &p, Some(&succeeded))), Decision::Finish { phase: BackfillPhase::Failed, reason, .. } if reason == "NothingRecovered")
        );
        reported.seconds_lost = Some(0.0);
        assert!(matches!(
            decide(&backfill(Some(reported)), &world(&c, &p, Some(&succeeded))),
            Decision::Finish {
                phase: BackfillPhase::Succeeded,
                ..
            }
        ));
        assert!(
            matches!(decide(&backfill(Some(running(1))), &world(&c, &p, Some(&succeeded))), Decision::Finish { reason, .. } if reason == "NoReport")
        );
    }

    #[test]
    fn job_runs_backfill_with_credentials_from_the_secret() {
        let settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "Never".into(),
            cluster_networks: "10.96.0.0/12,10.244.0.0/16".into(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        };
        let b = backfill(None);
        let j = job(&b, &camera(true), &pool(), &settings, 2);
        let name = j.metadata.name.clone().expect("name");
        assert!(name.len() <= 63 && name.ends_with("-2"), "{name}");
        let pod = j.spec.expect("job spec").template.spec.expect("pod spec");
        let c = &pod.containers[0];
        assert_eq!(
            c.command.as_deref(),
            Some(&[crate::controller::children::JOBS_COMMAND.to_string()][..])
        );
        assert_eq!(
            c.args.as_ref().expect("args")[0..2],
            ["backfill".to_string(), format!("site/{}", b.name_any())]
        );
        assert!(
            c.args.as_ref().expect("args").contains(&"40".to_string()),
            "bandwidth cap passed"
        );
        let env = c.env.as_ref().expect("env");
        let password = env
            .iter()
            .find(|e| e.name == "VIGIL_CAMERA_PASSWORD")
            .expect("password env");
        assert!(password.value.is_none(), "the password is never inlined");
        assert_eq!(
            env.iter()
                .find(|e| e.name == "VIGIL_CLUSTER_NETWORKS")
                .and_then(|e| e.value.as_deref()),
            Some("10.96.0.0/12,10.244.0.0/16"),
            "the Job refuses cameras in the cluster's networks"
        );
        assert_eq!(
            password
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| s.name.as_str()),
            Some("cam-secret")
        );
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("vigil-recorder-main")
        );
    }

    #[test]
    fn a_site_cameras_job_gets_the_site_link() {
        let mut settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "Never".into(),
            cluster_networks: String::new(),
            site_rendezvous: "vigil-rendezvous.vigil:7443".into(),
            site_server_name: "vigil-rendezvous".into(),
        };
        let of = |c: &Camera, settings: &RecorderSettings| {
            let j = job(&backfill(None), c, &pool(), settings, 1);
            let pod = j.spec.expect("job spec").template.spec.expect("pod spec");
            let c = &pod.containers[0];
            let env: Vec<(String, String)> = c
                .env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect();
            let mounted = c.volume_mounts.iter().flatten().any(|m| {
                m.name == "site-link"
                    && m.mount_path == crate::controller::children::SITE_LINK_DIR
                    && m.read_only == Some(true)
            });
            let secret = pod
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == "site-link")
                .and_then(|v| v.secret.as_ref())
                .and_then(|s| s.secret_name.clone());
            (env, mounted, secret)
        };
        // A camera on the pods' own network: no site link.
        let (env, mounted, secret) = of(&camera(true), &settings);
        assert!(!mounted && secret.is_none());
        assert!(!env.iter().any(|(n, _)| n.starts_with("VIGIL_SITE_")));
        let mut c = camera(true);
        c.spec.site = Some("branch1".into());
        let (env, mounted, secret) = of(&c, &settings);
        assert!(mounted, "the site-link Secret is mounted");
        assert_eq!(
            secret.as_deref(),
            Some(crate::controller::children::SITE_LINK_SECRET)
        );
        for (k, v) in [
            ("VIGIL_SITE_RENDEZVOUS", "vigil-rendezvous.vigil:7443"),
            ("VIGIL_SITE_CA_FILE", "/var/run/vigil/site/ca.crt"),
            ("VIGIL_SITE_TOKEN_FILE", "/var/run/vigil/site/token"),
            ("VIGIL_SITE_SERVER_NAME", "vigil-rendezvous"),
        ] {
            assert!(env.contains(&(k.into(), v.into())), "{k} in {env:?}");
        }
        // No rendezvous service in the chart: nothing to give.
        settings.site_rendezvous = String::new();
        let (env, mounted, _) = of(&c, &settings);
        assert!(!mounted && !env.iter().any(|(n, _)| n.starts_with("VIGIL_SITE_")));
    }

    #[test]
    fn job_trusts_the_onvif_ca_from_its_secret() {
        let settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "Never".into(),
            cluster_networks: String::new(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        };
        let env_of = |c: &Camera| {
            let j = job(&backfill(None), c, &pool(), &settings, 1);
            let pod = j.spec.expect("job spec").template.spec.expect("pod spec");
            pod.containers[0].env.clone().unwrap_or_default()
        };
        let mut c = camera(true);
        assert!(
            !env_of(&c)
                .iter()
                .any(|e| e.name.starts_with("VIGIL_ONVIF_TLS")),
            "default: the system's roots"
        );
        c.spec
            .edge_storage
            .as_mut()
            .and_then(|e| e.onvif.as_mut())
            .expect("onvif")
            .tls = Some(vigil_api::OnvifTls {
            ca_secret_ref: Some(vigil_api::SecretKeyRef {
                name: "cam-ca".into(),
                key: None,
            }),
            insecure_skip_verify: false,
        });
        let env = env_of(&c);
        let ca = env
            .iter()
            .find(|e| e.name == "VIGIL_ONVIF_TLS_CA")
            .expect("CA env");
        let sel = ca
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from the Secret");
        assert_eq!((sel.name.as_str(), sel.key.as_str()), ("cam-ca", "ca.crt"));
        assert!(!env.iter().any(|e| e.name == "VIGIL_ONVIF_TLS_INSECURE"));
    }
}
