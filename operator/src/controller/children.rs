//! The Kubernetes objects a RecorderPool owns, built purely from the pool and the operator's
//! settings. Applied with server-side apply by the pool reconciler.
//!
//! Recorders run as a **Deployment**, not a StatefulSet: a recorder's identity does not matter
//! (cameras are re-placed when it fails and the outage is backfilled), and a StatefulSet will
//! not replace a pod on a failed node until that pod is confirmed gone — minutes — whereas a
//! Deployment starts a replacement at once.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde::Serialize;

use vigil_api::{POOL_LABEL, RecorderPool};

/// Settings the operator gives every pool.
#[derive(Clone, Debug)]
pub struct RecorderSettings {
    /// Default recorder image when the pool does not override it.
    pub image: String,
    pub image_pull_policy: String,
    /// The cluster's service and pod ranges (`VIGIL_CLUSTER_NETWORKS`, from the chart), passed
    /// on to recorders and backfill Jobs: cameras there are refused (see `vigil_api::netpolicy`).
    pub cluster_networks: String,
    /// The rendezvous service for remote sites (`host:port`, `VIGIL_SITE_RENDEZVOUS` from the
    /// chart; empty: none), passed on to recorders with the name on its certificate
    /// (`VIGIL_SITE_SERVER_NAME`). Recorders read the namespace's token and the CA from the
    /// Secret `vigil-site-recorder` (keys `token`, `ca.crt`), mounted when it exists.
    pub site_rendezvous: String,
    pub site_server_name: String,
}

impl RecorderSettings {
    /// `VIGIL_CLUSTER_NETWORKS` for a data-path container, when the cluster's ranges are known.
    pub fn cluster_networks_env(&self) -> Option<EnvVar> {
        (!self.cluster_networks.trim().is_empty()).then(|| EnvVar {
            name: vigil_api::netpolicy::CLUSTER_NETWORKS_ENV.into(),
            value: Some(self.cluster_networks.trim().to_string()),
            ..Default::default()
        })
    }

    /// The site-link env of a recorder (empty when no rendezvous service is configured).
    pub fn site_env(&self) -> Vec<EnvVar> {
        let rv = self.site_rendezvous.trim();
        if rv.is_empty() {
            return vec![];
        }
        let mut env = vec![
            env_value("VIGIL_SITE_RENDEZVOUS", rv),
            env_value("VIGIL_SITE_CA_FILE", &format!("{SITE_LINK_DIR}/ca.crt")),
            env_value("VIGIL_SITE_TOKEN_FILE", &format!("{SITE_LINK_DIR}/token")),
        ];
        if !self.site_server_name.trim().is_empty() {
            env.push(env_value(
                "VIGIL_SITE_SERVER_NAME",
                self.site_server_name.trim(),
            ));
        }
        env
    }
}

impl RecorderSettings {
    /// The site-link Secret's volume and its mount (recorders and backfill Jobs of site
    /// cameras), when a rendezvous service is configured. Optional: without the Secret the
    /// pod starts and a site camera fails with "no site link".
    pub fn site_volume(&self) -> Option<(Volume, VolumeMount)> {
        if self.site_env().is_empty() {
            return None;
        }
        Some((
            Volume {
                name: "site-link".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(SITE_LINK_SECRET.into()),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            VolumeMount {
                name: "site-link".into(),
                mount_path: SITE_LINK_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ))
    }
}

fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// Where a recorder finds the namespace's site-link Secret (token and the rendezvous CA).
pub const SITE_LINK_DIR: &str = "/var/run/vigil/site";
/// The Secret, in the pool's namespace, with the recorders' token for the rendezvous service
/// (`token`) and its CA (`ca.crt`); the rendezvous service reads the same `token`.
pub const SITE_LINK_SECRET: &str = "vigil-site-recorder";

/// An object whose API version the cluster decides (CronJob, PodDisruptionBudget), applied as
/// JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DynamicChild {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub body: serde_json::Value,
}

/// Everything the operator applies for one pool, built purely from the pool and the settings.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub deployment: Deployment,
    pub metrics_service: Service,
    /// None when the cluster serves no CronJob API.
    pub retention: Option<DynamicChild>,
    /// None when the cluster serves no PodDisruptionBudget API.
    pub disruption_budget: Option<DynamicChild>,
    /// None when the cluster serves no CronJob API.
    pub audit: Option<DynamicChild>,
}

impl Workload {
    pub fn build(
        pool: &RecorderPool,
        settings: &RecorderSettings,
        cron_job_api_version: Option<&str>,
        pdb_api_version: Option<&str>,
    ) -> Workload {
        let dynamic = |api_version: &str, kind: &str, name: String, body| DynamicChild {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            name,
            body,
        };
        Workload {
            service_account: service_account(pool),
            role: role(pool),
            role_binding: role_binding(pool),
            deployment: deployment(pool, settings),
            metrics_service: metrics_service(pool),
            retention: cron_job_api_version.map(|v| {
                dynamic(
                    v,
                    "CronJob",
                    retention_cron_job_name(pool),
                    retention_cron_job(pool, settings, v),
                )
            }),
            disruption_budget: pdb_api_version.map(|v| {
                dynamic(
                    v,
                    "PodDisruptionBudget",
                    workload_name(pool),
                    disruption_budget(pool, v),
                )
            }),
            audit: cron_job_api_version.map(|v| {
                dynamic(
                    v,
                    "CronJob",
                    audit_cron_job_name(pool),
                    audit_cron_job(pool, settings, v),
                )
            }),
        }
    }
}

/// Where recorders keep segments waiting for the store.
pub const BUFFER_PATH: &str = "/var/lib/vigil/buffer";
/// Where a recorder pod finds the live token (Secret `vigil-live-token`, optional).
pub const LIVE_TOKEN_DIR: &str = "/var/run/vigil/live";
/// The recorders' metrics / health port.
pub const METRICS_PORT: i32 = 9090;
/// The jobs' binary in the recorder image (whose entrypoint is `vigil-recorder`): backfill Jobs
/// and the pool's audit and retention CronJobs run it.
pub const JOBS_COMMAND: &str = "/usr/local/bin/vigil-jobs";

/// Name shared by a pool's Deployment, ServiceAccount, Role, RoleBinding and Service.
pub fn workload_name(pool: &RecorderPool) -> String {
    format!("vigil-recorder-{}", pool.name_any())
}

/// Labels on every recorder pod of `pool` (also the Deployment's selector).
pub fn pod_labels(pool: &RecorderPool) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "vigil-recorder".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "vigil-operator".to_string(),
        ),
        (POOL_LABEL.to_string(), pool.name_any()),
    ])
}

fn meta(pool: &RecorderPool) -> ObjectMeta {
    ObjectMeta {
        name: Some(workload_name(pool)),
        namespace: pool.namespace(),
        labels: Some(pod_labels(pool)),
        owner_references: pool
            .controller_owner_ref(&())
            .map(|o: OwnerReference| vec![o]),
        ..Default::default()
    }
}

pub fn service_account(pool: &RecorderPool) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(pool),
        ..Default::default()
    }
}

/// What a recorder may do, and nothing more: read its cameras and pool, write camera status,
/// read the Secrets holding camera and S3 credentials, keep its own Lease, and post Events.
/// Backfill Jobs and the retention and audit CronJobs run with the same ServiceAccount.
pub fn role(pool: &RecorderPool) -> Role {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    Role {
        metadata: meta(pool),
        rules: Some(vec![
            rule(
                &["vigil.dev"],
                &["cameras", "recorderpools"],
                &["get", "list", "watch"],
            ),
            rule(
                &["vigil.dev"],
                &["cameras/status"],
                &["get", "patch", "update"],
            ),
            // Backfill Jobs run with the recorders' ServiceAccount: they read their Backfill and
            // report progress and the seconds recovered or lost in its status. Recorders and
            // the coverage audit create the Backfill of each hole they find; the audit lists
            // Backfills to skip holes one already covers.
            rule(&["vigil.dev"], &["backfills"], &["get", "list", "create"]),
            rule(
                &["vigil.dev"],
                &["backfills/status"],
                &["get", "patch", "update"],
            ),
            rule(&[""], &["secrets"], &["get"]),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "create", "update", "patch"],
            ),
            rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
        ]),
    }
}

pub fn role_binding(pool: &RecorderPool) -> RoleBinding {
    RoleBinding {
        metadata: meta(pool),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: workload_name(pool),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: workload_name(pool),
            namespace: pool.namespace(),
            ..Default::default()
        }]),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Default::default()
    }
}

/// After SIGTERM a recorder keeps recording until every camera has been taken over
/// (make-before-break: the operator sees the Lease say draining, the new recorder connects and
/// records its first keyframe — a few seconds per camera, all cameras at once), at most this
/// long; cameras not taken over by then fail over.
pub const RECORDER_DRAIN_SECONDS: i64 = 60;
/// Then it uploads what its buffer holds for at most this long (what is left stays on the
/// buffer volume for the next start).
pub const RECORDER_UPLOAD_SECONDS: i64 = 20;
/// Drain + the cameras' last segments (≤ 15 s to stop) + upload + margin: the kubelet's SIGKILL
/// must never cut a drain or an upload short.
pub const RECORDER_GRACE_SECONDS: i64 = RECORDER_DRAIN_SECONDS + 15 + RECORDER_UPLOAD_SECONDS + 10;

pub fn deployment(pool: &RecorderPool, settings: &RecorderSettings) -> Deployment {
    let spec = &pool.spec;
    let overrides = spec.pod_overrides.clone().unwrap_or_default();
    let labels = pod_labels(pool);
    let mut volumes = vec![Volume {
        name: "buffer".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(format!(
                "{}Mi",
                spec.local_buffer_mib + spec.local_buffer_mib / 4
            ))),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "buffer".into(),
        mount_path: BUFFER_PATH.into(),
        ..Default::default()
    }];
    // Live view: the token shared with the access point, if the Secret exists (the chart
    // creates it); the recorder publishes its pod IP on its Lease for the access point.
    volumes.push(Volume {
        name: "live-token".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(vigil_api::labels::LIVE_TOKEN_SECRET.into()),
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "live-token".into(),
        mount_path: LIVE_TOKEN_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    });
    // Remote sites: the namespace's recorder token and the rendezvous CA, if the Secret exists.
    if let Some((volume, mount)) = settings.site_volume() {
        volumes.push(volume);
        mounts.push(mount);
    }
    if let Some(local) = &spec.storage.local
        && let Some(claim) = &local.claim_name
    {
        volumes.push(Volume {
            name: "store".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(false),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "store".into(),
            mount_path: local.path.clone(),
            ..Default::default()
        });
    }
    let resources: Option<ResourceRequirements> = overrides
        .resources
        .as_ref()
        .and_then(|r| serde_json::from_value(r.clone()).ok());
    let tolerations: Option<Vec<Toleration>> = (!overrides.tolerations.is_empty()).then(|| {
        overrides
            .tolerations
            .iter()
            .filter_map(|t| serde_json::from_value(t.clone()).ok())
            .collect()
    });
    let container = Container {
        name: "recorder".into(),
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
        args: Some(vec![
            "record".into(),
            "--kubernetes".into(),
            "--buffer-dir".into(),
            BUFFER_PATH.into(),
            "--drain-timeout".into(),
            RECORDER_DRAIN_SECONDS.to_string(),
            "--shutdown-timeout".into(),
            RECORDER_UPLOAD_SECONDS.to_string(),
        ]),
        env: Some(
            vec![
                field_env("POD_NAME", "metadata.name"),
                field_env("POD_NAMESPACE", "metadata.namespace"),
                // The recorder makes its pod own its Lease, so the Lease goes when the pod goes.
                field_env("POD_UID", "metadata.uid"),
                EnvVar {
                    name: "POOL_NAME".into(),
                    value: Some(pool.name_any()),
                    ..Default::default()
                },
                field_env("POD_IP", "status.podIP"),
                EnvVar {
                    name: "VIGIL_LIVE_TOKEN_FILE".into(),
                    value: Some(format!("{LIVE_TOKEN_DIR}/token")),
                    ..Default::default()
                },
            ]
            .into_iter()
            .chain(settings.cluster_networks_env())
            .chain(settings.site_env())
            .collect(),
        ),
        // `protocol` spelled out: server-side apply on Kubernetes 1.20 wants every list-map key.
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(http_probe("/readyz", 1, 2)),
        liveness_probe: Some(http_probe("/healthz", 5, 3)),
        resources,
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    Deployment {
        metadata: meta(pool),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            // Start the new recorder before stopping the old one: cameras move once, not twice.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(workload_name(pool)),
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: overrides.node_selector.clone(),
                    tolerations,
                    termination_grace_period_seconds: Some(RECORDER_GRACE_SECONDS),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A Service over the recorders' metrics port, for Prometheus.
pub fn metrics_service(pool: &RecorderPool) -> Service {
    Service {
        metadata: meta(pool),
        spec: Some(ServiceSpec {
            selector: Some(pod_labels(pool)),
            cluster_ip: Some("None".into()),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: METRICS_PORT,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::String("metrics".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A PodDisruptionBudget keeping all but one recorder up during voluntary disruptions (node
/// drains), so a drain moves one recorder's cameras at a time. `api_version` is `policy/v1`, or
/// `policy/v1beta1` on clusters older than 1.21.
pub fn disruption_budget(pool: &RecorderPool, api_version: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "PodDisruptionBudget",
        "metadata": meta(pool),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": pod_labels(pool)},
        }
    })
}

/// A CronJob of `pool` running `vigil-jobs <args>` with the recorders' ServiceAccount and
/// image. `api_version` is `batch/v1`, or `batch/v1beta1` on clusters older than 1.21.
fn pool_cron_job(
    pool: &RecorderPool,
    settings: &RecorderSettings,
    api_version: &str,
    name: String,
    schedule: &str,
    suspend: bool,
    args: Vec<String>,
) -> serde_json::Value {
    let overrides = pool.spec.pod_overrides.clone().unwrap_or_default();
    let container = args.first().cloned().unwrap_or_default();
    let mut metadata = meta(pool);
    metadata.name = Some(name);
    // A local store is only visible through the recorders' claim: mount it at the same path
    // (without it the job finds no store directory and fails, rather than seeing an empty store).
    let (volumes, mounts) = match &pool.spec.storage.local {
        Some(local) => match &local.claim_name {
            Some(claim) => (
                serde_json::json!([{"name": "store", "persistentVolumeClaim": {"claimName": claim}}]),
                serde_json::json!([{"name": "store", "mountPath": local.path}]),
            ),
            None => (serde_json::json!([]), serde_json::json!([])),
        },
        None => (serde_json::json!([]), serde_json::json!([])),
    };
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": schedule,
            "suspend": suspend,
            // A slow run must not overlap the next one; both jobs are idempotent anyway.
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 2,
                "template": {
                    "metadata": {"labels": pod_labels(pool)},
                    "spec": {
                        "serviceAccountName": workload_name(pool),
                        "restartPolicy": "Never",
                        "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "runAsNonRoot": true, "fsGroup": 65532},
                        "volumes": volumes,
                        "containers": [{
                            "name": container,
                            "volumeMounts": mounts,
                            "image": overrides.image.clone().unwrap_or_else(|| settings.image.clone()),
                            "imagePullPolicy": overrides.image_pull_policy.clone().unwrap_or_else(|| settings.image_pull_policy.clone()),
                            "command": [JOBS_COMMAND],
                            "args": args,
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
                        }],
                    }
                }
            }}
        }
    })
}

fn pool_ref(pool: &RecorderPool) -> String {
    format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    )
}

/// Name of the pool's retention CronJob.
pub fn retention_cron_job_name(pool: &RecorderPool) -> String {
    format!("vigil-retention-{}", pool.name_any())
}

/// Name of the pool's coverage-audit CronJob.
pub fn audit_cron_job_name(pool: &RecorderPool) -> String {
    format!("vigil-audit-{}", pool.name_any())
}

/// The hourly CronJob deleting footage older than each camera's `spec.retention.days`
/// (`vigil-jobs retention --pool <ns>/<pool>`).
pub fn retention_cron_job(
    pool: &RecorderPool,
    settings: &RecorderSettings,
    api_version: &str,
) -> serde_json::Value {
    pool_cron_job(
        pool,
        settings,
        api_version,
        retention_cron_job_name(pool),
        // Minute 17 of every hour: off the hour, when many other jobs run.
        "17 * * * *",
        false,
        vec!["retention".into(), "--pool".into(), pool_ref(pool)],
    )
}

/// The coverage-audit CronJob (`vigil-jobs audit --pool <ns>/<pool> --window-hours N`) on
/// `spec.audit.schedule`; suspended, not deleted, when `spec.audit.enabled` is false, so that
/// turning it off and on keeps its history.
pub fn audit_cron_job(
    pool: &RecorderPool,
    settings: &RecorderSettings,
    api_version: &str,
) -> serde_json::Value {
    let a = &pool.spec.audit;
    pool_cron_job(
        pool,
        settings,
        api_version,
        audit_cron_job_name(pool),
        &a.schedule,
        !a.enabled,
        vec![
            "audit".into(),
            "--pool".into(),
            pool_ref(pool),
            "--window-hours".into(),
            a.window_hours.to_string(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::RecorderPoolSpec;

    fn pool() -> RecorderPool {
        let spec: RecorderPoolSpec = serde_yaml::from_str(
            "replicas: 3\ncapacityKbps: 100000\nstorage: {local: {path: /data, claimName: footage}}\n\
             podOverrides: {image: my/recorder:1, resources: {requests: {cpu: 500m}}}",
        )
        .expect("spec");
        let mut p = RecorderPool::new("main", spec);
        p.metadata.namespace = Some("cams".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    #[test]
    fn deployment_carries_pool_settings_and_downward_api() {
        let settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "IfNotPresent".into(),
            cluster_networks: String::new(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        };
        let d = deployment(&pool(), &settings);
        assert_eq!(d.metadata.name.as_deref(), Some("vigil-recorder-main"));
        assert_eq!(
            d.metadata
                .owner_references
                .as_ref()
                .map(|o| o[0].controller),
            Some(Some(true))
        );
        let spec = d.spec;
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.expect("pod");
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("my/recorder:1"));
        let env: Vec<_> = c
            .env
            .as_ref()
            .expect("env")
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            env,
            [
                "POD_NAME",
                "POD_NAMESPACE",
                "POD_UID",
                "POOL_NAME",
                "POD_IP",
                "VIGIL_LIVE_TOKEN_FILE"
            ]
        );
        assert!(
            c.volume_mounts
                .as_ref()
                .expect("mounts")
                .iter()
                .any(|m| m.name == "live-token" && m.mount_path == LIVE_TOKEN_DIR)
        );
        assert_eq!(
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .map(|r| r["cpu"].0.as_str()),
            Some("500m")
        );
        assert!(
            pod.volumes
                .expect("volumes")
                .iter()
                .any(|v| v.persistent_volume_claim.is_some())
        );
        assert_eq!(
            c.security_context
                .as_ref()
                .and_then(|s| s.read_only_root_filesystem),
            Some(true)
        );
    }

    #[test]
    fn disruption_budget_selects_the_pool_pods() {
        let pdb = disruption_budget(&pool(), "policy/v1beta1");
        assert_eq!(pdb["apiVersion"], "policy/v1beta1");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"]["vigil.dev/pool"],
            "main"
        );
        assert_eq!(
            pdb["metadata"]["ownerReferences"][0]["kind"],
            "RecorderPool"
        );
    }

    #[test]
    fn recorders_get_the_site_link_when_the_chart_runs_the_rendezvous_service() {
        let mut settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "IfNotPresent".into(),
            cluster_networks: String::new(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        };
        let names = |w: &Workload| {
            let c = &w.deployment.spec.template.spec.as_ref().unwrap().containers[0];
            let env: Vec<(String, String)> = c
                .env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect();
            let mounted = c
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "site-link" && m.mount_path == SITE_LINK_DIR);
            (env, mounted)
        };
        let w = Workload::build(&pool(), &settings, None, None);
        let (env, mounted) = names(&w);
        assert!(!mounted && !env.iter().any(|(n, _)| n.starts_with("VIGIL_SITE_")));
        settings.site_rendezvous = "vigil-rendezvous.vigil:7443".into();
        settings.site_server_name = "vigil-rendezvous".into();
        let w = Workload::build(&pool(), &settings, None, None);
        let (env, mounted) = names(&w);
        assert!(mounted, "the Secret is mounted");
        for (k, v) in [
            ("VIGIL_SITE_RENDEZVOUS", "vigil-rendezvous.vigil:7443"),
            ("VIGIL_SITE_CA_FILE", "/var/run/vigil/site/ca.crt"),
            ("VIGIL_SITE_TOKEN_FILE", "/var/run/vigil/site/token"),
            ("VIGIL_SITE_SERVER_NAME", "vigil-rendezvous"),
        ] {
            assert!(env.contains(&(k.into(), v.into())), "{k} in {env:?}");
        }
        let vols = w.deployment.spec.template.spec.unwrap().volumes.unwrap();
        let v = vols.iter().find(|v| v.name == "site-link").unwrap();
        let sec = v.secret.as_ref().unwrap();
        assert_eq!(sec.secret_name.as_deref(), Some(SITE_LINK_SECRET));
        assert_eq!(
            sec.optional,
            Some(true),
            "a namespace without the Secret still runs"
        );
    }

    #[test]
    fn retention_runs_hourly_for_the_pool() {
        let settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "IfNotPresent".into(),
            cluster_networks: String::new(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        };
        let cj = retention_cron_job(&pool(), &settings, "batch/v1beta1");
        assert_eq!(cj["apiVersion"], "batch/v1beta1");
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
        let c = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["args"],
            serde_json::json!(["retention", "--pool", "cams/main"])
        );
        assert_eq!(c["image"], "my/recorder:1");
    }

    #[test]
    fn audit_runs_on_the_pool_schedule_and_can_be_suspended() {
        let settings = RecorderSettings {
            image: "vigil/recorder:dev".into(),
            image_pull_policy: "IfNotPresent".into(),
            cluster_networks: String::new(),
            site_rendezvous: String::new(),
            site_server_name: String::new(),
        };
        let mut p = pool();
        let cj = audit_cron_job(&p, &settings, "batch/v1");
        assert_eq!(cj["metadata"]["name"], "vigil-audit-main");
        assert_eq!(cj["spec"]["schedule"], "*/15 * * * *");
        assert_eq!(cj["spec"]["suspend"], false);
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Forbid");
        let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "vigil-recorder-main");
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "audit");
        assert_eq!(c["command"], serde_json::json!([JOBS_COMMAND]));
        assert_eq!(
            c["args"],
            serde_json::json!(["audit", "--pool", "cams/main", "--window-hours", "24"])
        );
        assert_eq!(c["image"], "my/recorder:1");
        // The local store is the recorders' claim, mounted at the same path.
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "footage"
        );
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/data");
        p.spec.audit.enabled = false;
        p.spec.audit.schedule = "5 * * * *".into();
        p.spec.audit.window_hours = 48;
        let cj = audit_cron_job(&p, &settings, "batch/v1");
        assert_eq!(cj["spec"]["suspend"], true);
        assert_eq!(cj["spec"]["schedule"], "5 * * * *");
        assert_eq!(
            cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][4],
            "48"
        );
    }

    #[test]
    fn role_is_least_privilege() {
        let r = role(&pool());
        let rules = r.rules.expect("rules");
        for rule in &rules {
            assert!(
                !rule.verbs.iter().any(|v| v == "*" || v == "delete"),
                "{rule:?}"
            );
        }
        let secrets = rules
            .iter()
            .find(|r| {
                r.resources
                    .as_ref()
                    .is_some_and(|x| x.contains(&"secrets".to_string()))
            })
            .expect("secrets rule");
        assert_eq!(secrets.verbs, ["get"]);
        let backfill_status = rules
            .iter()
            .find(|r| {
                r.resources
                    .as_ref()
                    .is_some_and(|x| x.contains(&"backfills/status".to_string()))
            })
            .expect("backfill Jobs may report progress");
        assert!(backfill_status.verbs.contains(&"patch".to_string()));
        let backfills = rules
            .iter()
            .find(|r| {
                r.resources
                    .as_ref()
                    .is_some_and(|x| x.contains(&"backfills".to_string()))
            })
            .expect("backfills rule");
        assert_eq!(
            backfills.verbs,
            ["get", "list", "create"],
            "the audit lists Backfills; recorders and the audit create them for holes"
        );
    }
}
