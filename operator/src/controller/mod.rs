//! The operator's controllers: one reconcile per resource, run by kube-runtime `Controller`s,
//! reading watch caches (reflector stores) instead of listing.
//!
//! One watch per resource kind feeds a store shared through the [`Context`]; the same watch
//! decides which pool to reconcile, through predicates that keep out what placement does not
//! read: a recorder's routine status (segment times, small bitrate changes) and Lease renewals
//! never trigger a pool reconcile. Lease renewals are only *noted* (when, on the operator's own
//! clock: see `liveness`); a pool reconciles again when the first of its Leases could expire.

pub mod backfill;
pub mod camera;
pub mod camera_status;
pub mod children;
pub mod pool;

#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::error::Error;
use crate::leader::micro_time_to_chrono;
use crate::liveness::{LeaseKey, LeaseObservations, LeaseVersion};
use crate::metrics::{Metrics, Reconciled};
use children::RecorderSettings;
use vigil_api::labels::{BACKFILL_LABEL, DRAINING_ANNOTATION, INCOMING_RECORDER_LABEL};
use vigil_api::{Backfill, Camera, POOL_LABEL, RECORDER_LABEL, RecorderPool};

/// The one field manager for everything the operator applies.
pub const FIELD_MANAGER: &str = "vigil-operator";

/// What the reconcilers read: one store per kind, fed by one watch each.
#[derive(Clone)]
pub struct Caches {
    pub pools: Store<RecorderPool>,
    pub cameras: Store<Camera>,
    /// Recorder pods (label `vigil.dev/pool`).
    pub pods: Store<Pod>,
    /// Recorder Leases (label `vigil.dev/pool`).
    pub leases: Store<Lease>,
    /// Secret names only: the operator never holds Secret contents.
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub backfills: Store<Backfill>,
    /// Backfill Jobs (label `vigil.dev/backfill`).
    pub jobs: Store<Job>,
}

/// The write halves of [`Caches`], consumed by [`run`]'s watches.
pub struct CacheWriters {
    pools: Writer<RecorderPool>,
    cameras: Writer<Camera>,
    pods: Writer<Pod>,
    leases: Writer<Lease>,
    secrets: Writer<PartialObjectMeta<Secret>>,
    backfills: Writer<Backfill>,
    jobs: Writer<Job>,
}

impl Caches {
    pub fn new() -> (Caches, CacheWriters) {
        let (pools, pools_w) = reflector::store();
        let (cameras, cameras_w) = reflector::store();
        let (pods, pods_w) = reflector::store();
        let (leases, leases_w) = reflector::store();
        let (secrets, secrets_w) = reflector::store();
        let (backfills, backfills_w) = reflector::store();
        let (jobs, jobs_w) = reflector::store();
        (
            Caches {
                pools,
                cameras,
                pods,
                leases,
                secrets,
                backfills,
                jobs,
            },
            CacheWriters {
                pools: pools_w,
                cameras: cameras_w,
                pods: pods_w,
                leases: leases_w,
                secrets: secrets_w,
                backfills: backfills_w,
                jobs: jobs_w,
            },
        )
    }
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub events: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: RecorderSettings,
    pub caches: Caches,
    /// The longest a pool waits between two reconciles when nothing changes and no Lease can
    /// expire sooner (a safety net; a quiet reconcile writes nothing).
    pub resync: Duration,
    /// Only watch this namespace (a namespace-scoped install); None: all namespaces.
    pub watch_namespace: Option<String>,
    /// `policy/v1` or `policy/v1beta1`, whichever the cluster serves; None: no budgets.
    pub pdb_api_version: Option<String>,
    /// `batch/v1` or `batch/v1beta1` CronJob, whichever the cluster serves; None: no retention jobs.
    pub cron_job_api_version: Option<String>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// When this operator saw each recorder Lease change, on its own clock (see `liveness`).
    leases: Mutex<LeaseObservations>,
    /// Per pool: the fingerprint of the workload last applied and the Deployment generation it
    /// produced, so an unchanged workload is not applied again (a quiet pool writes nothing).
    applied_workloads: Mutex<HashMap<ObjectRef<RecorderPool>, AppliedWorkload>>,
    /// Per pool: when its recent rebalancing moves started, for `maxMovesPerMinute`.
    balance_moves: Mutex<HashMap<ObjectRef<RecorderPool>, Vec<tokio::time::Instant>>>,
}

/// What the operator last applied for one pool.
#[derive(Clone, Debug, PartialEq)]
pub struct AppliedWorkload {
    pub fingerprint: u64,
    /// `metadata.generation` of the Deployment after the apply; a watch event with another one
    /// means somebody else changed it and the workload must be applied again.
    pub deployment_generation: Option<i64>,
    /// Why the audit CronJob was refused, reported again while the workload is unchanged.
    pub audit_refused: Option<String>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: RecorderSettings,
        caches: Caches,
        resync: Duration,
    ) -> Self {
        let events = Recorder::new(
            client.clone(),
            Reporter {
                controller: "vigil-operator".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Context {
            client,
            events,
            metrics,
            settings,
            caches,
            resync,
            watch_namespace: None,
            pdb_api_version: None,
            cron_job_api_version: None,
            failures: Default::default(),
            leases: Default::default(),
            applied_workloads: Default::default(),
            balance_moves: Default::default(),
        }
    }

    /// How many rebalancing moves `pool` may still start at `now` with `per_minute` allowed.
    pub fn balance_moves_left(
        &self,
        pool: &ObjectRef<RecorderPool>,
        per_minute: u32,
        now: tokio::time::Instant,
    ) -> usize {
        let mut map = lock(&self.balance_moves);
        let started = map.entry(pool.clone()).or_default();
        started.retain(|t| now.saturating_duration_since(*t) < Duration::from_secs(60));
        (per_minute as usize).saturating_sub(started.len())
    }

    /// Notes `count` rebalancing moves of `pool` started at `now`.
    pub fn note_balance_moves(
        &self,
        pool: &ObjectRef<RecorderPool>,
        count: usize,
        now: tokio::time::Instant,
    ) {
        if count > 0 {
            let mut map = lock(&self.balance_moves);
            map.entry(pool.clone())
                .or_default()
                .extend(std::iter::repeat_n(now, count));
        }
    }

    /// Notes a recorder Lease as seen at `now`; returns when it last changed (see `liveness`).
    pub fn observe_lease(
        &self,
        key: LeaseKey,
        version: LeaseVersion,
        now: tokio::time::Instant,
    ) -> tokio::time::Instant {
        lock(&self.leases).observe(key, version, now)
    }

    /// Forgets a deleted recorder Lease.
    pub fn forget_lease(&self, key: &LeaseKey) {
        lock(&self.leases).forget(key);
    }

    /// The workload last applied for `pool`, if any.
    pub fn applied_workload(&self, pool: &ObjectRef<RecorderPool>) -> Option<AppliedWorkload> {
        lock(&self.applied_workloads).get(pool).cloned()
    }

    /// Remembers (Some) or forgets (None) the workload applied for `pool`.
    pub fn set_applied_workload(
        &self,
        pool: ObjectRef<RecorderPool>,
        applied: Option<AppliedWorkload>,
    ) {
        let mut map = lock(&self.applied_workloads);
        match applied {
            Some(a) => map.insert(pool, a),
            None => map.remove(&pool),
        };
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a recorder's Lease says it is draining (`vigil.dev/draining: "true"`).
pub fn lease_draining(lease: &Lease) -> bool {
    lease
        .annotations()
        .get(DRAINING_ANNOTATION)
        .map(String::as_str)
        == Some("true")
}

/// The version of a Lease that liveness compares: renewTime and resourceVersion.
pub fn lease_version(lease: &Lease) -> LeaseVersion {
    LeaseVersion {
        renew_time: lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .and_then(micro_time_to_chrono),
        resource_version: lease.metadata.resource_version.clone(),
    }
}

fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    )
}

/// Failed reconciles are retried with per-object exponential backoff: 1 s, 2 s, 4 s … 60 s.
fn error_policy<K: Resource<DynamicType = ()> + Reconciled>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = backoff_key(object.as_ref());
    let failures = {
        let mut map = lock(&ctx.failures);
        let n = map.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = backoff_delay(failures);
    warn!(object = %key, %error, failures, retry_in = ?delay, "reconcile failed");
    ctx.metrics.count_failure(K::CONTROLLER);
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based).
pub fn backoff_delay(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

/// Forgets the failures of an object: after any successful reconcile, and when it is deleted.
pub fn reset_backoff<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K) {
    lock(&ctx.failures).remove(&backoff_key(object));
}

/// Runs `reconcile` and resets the object's backoff when it succeeds, whatever the kind.
async fn reconciled<K, F, Fut>(
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let result = reconcile(object.clone(), ctx.clone()).await;
    if result.is_ok() {
        reset_backoff(ctx.as_ref(), object.as_ref());
    }
    result
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

/// Which PodDisruptionBudget API the cluster serves.
pub async fn discover_pdb_api(client: &Client) -> Option<String> {
    discover(client, "policy", "poddisruptionbudgets").await
}

/// Which CronJob API the cluster serves (batch/v1 from Kubernetes 1.21).
pub async fn discover_cron_job_api(client: &Client) -> Option<String> {
    discover(client, "batch", "cronjobs").await
}

async fn discover(client: &Client, group: &str, resource: &str) -> Option<String> {
    for version in ["v1", "v1beta1"] {
        if let Ok(list) = client
            .list_api_group_resources(&format!("{group}/{version}"))
            .await
            && list.resources.iter().any(|r| r.name == resource)
        {
            return Some(format!("{group}/{version}"));
        }
    }
    None
}

/// An Api over one namespace or all of them.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A fingerprint of what a predicate compares.
fn fingerprint(value: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What of a Camera the pool reconcile reads. Recorders rewrite `lastSegmentTime` and the
/// measured bitrate; neither changes placement, except a bitrate change of more than about
/// 10 % (log buckets).
pub fn camera_placement_fingerprint(camera: &Camera) -> u64 {
    let status = camera.status.clone().unwrap_or_default();
    let bitrate_bucket = status
        .measured_bitrate_kbps
        .filter(|b| *b > 0)
        .map(|b| (f64::from(b).ln() / 1.1f64.ln()).floor() as i64);
    let conditions: Vec<String> = status
        .conditions
        .iter()
        .map(|c| {
            let mut s = format!("{}|{:?}|{}", c.type_, c.status, c.reason);
            if c.type_ == vigil_api::CameraConditionType::Recording.as_str() {
                s.push_str(&c.last_transition_time.to_rfc3339());
            } else {
                s.push_str(&c.message);
                s.push_str(&format!("{:?}", c.observed_generation));
            }
            s
        })
        .collect();
    fingerprint(&(
        camera.metadata.generation,
        camera.metadata.deletion_timestamp.is_some(),
        camera.labels().get(RECORDER_LABEL),
        // A planned move: started, and the incoming recorder's first footage.
        camera.labels().get(INCOMING_RECORDER_LABEL),
        &status.handover_ready,
        &camera.spec.pool,
        (&status.state, &status.recorder, status.assigned_at),
        status.observed_generation,
        serde_json::to_string(&status.failover).unwrap_or_default(),
        conditions,
        bitrate_bucket,
    ))
}

/// What of a recorder pod liveness reads: ready, terminating.
pub fn pod_liveness_fingerprint(pod: &Pod) -> u64 {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    fingerprint(&(
        ready,
        pod.metadata.deletion_timestamp.is_some(),
        pod.labels().get(POOL_LABEL),
    ))
}

/// What of a Backfill its reconcile decides on (not the Job's progress reports).
pub fn backfill_fingerprint(b: &Backfill) -> u64 {
    let s = b.status.clone().unwrap_or_default();
    fingerprint(&(
        b.metadata.generation,
        b.metadata.deletion_timestamp.is_some(),
        format!("{:?}", s.phase),
        s.job_name,
        s.attempts,
        s.seconds_recovered.is_some(),
        s.seconds_lost.is_some(),
    ))
}

/// Passes an object on when its fingerprint differs from the last one seen under its key.
#[derive(Default)]
struct Changed(HashMap<String, u64>);

impl Changed {
    fn check<K: Resource<DynamicType = ()>>(&mut self, object: &K, print: u64) -> bool {
        let key = ObjectRef::from_obj(object).to_string();
        self.0.insert(key, print) != Some(print)
    }
    fn forget<K: Resource<DynamicType = ()>>(&mut self, object: &K) {
        self.0.remove(&ObjectRef::from_obj(object).to_string());
    }
}

fn pool_ref(ns: &str, name: &str) -> ObjectRef<RecorderPool> {
    ObjectRef::new(name).within(ns)
}

/// A watch, reflected into `writer`, with each event handed to `on_event`.
async fn watch_into<K, S>(
    stream: S,
    writer: Writer<K>,
    what: &'static str,
    mut on_event: impl FnMut(&watcher::Event<K>),
) where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
{
    let stream = stream.default_backoff().reflect(writer);
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(e) => on_event(&e),
            Err(e) => warn!(watch = what, error = %e, "watch failed; retrying"),
        }
    }
}

/// Objects applied (added, changed or listed) in a watch event.
fn applied<K>(event: &watcher::Event<K>) -> Option<&K> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => Some(o),
        _ => None,
    }
}

/// The object an event applies or deletes, and whether it was deleted; None for the events
/// that mark the start and end of a re-list.
fn touched<K>(event: &watcher::Event<K>) -> Option<(&K, bool)> {
    match event {
        watcher::Event::Delete(o) => Some((o, true)),
        e => applied(e).map(|o| (o, false)),
    }
}

/// Runs the RecorderPool, Camera and Backfill controllers until SIGTERM.
pub async fn run(ctx: Arc<Context>, writers: CacheWriters) {
    let client = ctx.client.clone();
    let ns = ctx.watch_namespace.clone();
    let ns = ns.as_deref();
    let CacheWriters {
        pools: pools_w,
        cameras: cameras_w,
        pods: pods_w,
        leases: leases_w,
        secrets: secrets_w,
        backfills: backfills_w,
        jobs: jobs_w,
    } = writers;
    // Pool reconciles wanted by other kinds' events; the primary streams of the controllers.
    let (pool_wanted, pool_wanted_rx) = mpsc::unbounded::<ObjectRef<RecorderPool>>();
    let (pool_tx, pool_rx) = mpsc::unbounded::<RecorderPool>();
    let (camera_tx, camera_rx) = mpsc::unbounded::<Camera>();
    let (backfill_tx, backfill_rx) = mpsc::unbounded::<Backfill>();
    let (job_tx, job_rx) = mpsc::unbounded::<Job>();

    let pools_watch = {
        let ctx = ctx.clone();
        watch_into(
            watcher(
                scoped::<RecorderPool>(&client, ns),
                watcher::Config::default(),
            ),
            pools_w,
            "recorderpools",
            move |event| match event {
                watcher::Event::Delete(p) => {
                    reset_backoff(ctx.as_ref(), p);
                    ctx.set_applied_workload(ObjectRef::from_obj(p), None);
                }
                e => {
                    if let Some(p) = applied(e) {
                        let _ = pool_tx.unbounded_send(p.clone());
                    }
                }
            },
        )
    };
    let cameras_watch = {
        let ctx = ctx.clone();
        let pool_wanted = pool_wanted.clone();
        let mut for_pool = Changed::default();
        let mut for_camera = Changed::default();
        watch_into(
            watcher(scoped::<Camera>(&client, ns), watcher::Config::default()),
            cameras_w,
            "cameras",
            move |event| {
                if let watcher::Event::Delete(c) = event {
                    for_pool.forget(c);
                    for_camera.forget(c);
                    reset_backoff(ctx.as_ref(), c);
                    if let Some(ns) = c.namespace() {
                        let _ = pool_wanted.unbounded_send(pool_ref(&ns, &c.spec.pool));
                    }
                    return;
                }
                let Some(c) = applied(event) else { return };
                if for_pool.check(c, camera_placement_fingerprint(c))
                    && let Some(ns) = c.namespace()
                {
                    let _ = pool_wanted.unbounded_send(pool_ref(&ns, &c.spec.pool));
                }
                // The camera reconciler only handles a missing pool: spec and labels matter.
                let own = fingerprint(&(
                    c.metadata.generation,
                    c.labels().get(RECORDER_LABEL),
                    c.status.as_ref().and_then(|s| s.state),
                ));
                if for_camera.check(c, own) {
                    let _ = camera_tx.unbounded_send(c.clone());
                }
            },
        )
    };
    let pods_watch = {
        let pool_wanted = pool_wanted.clone();
        let mut changed = Changed::default();
        watch_into(
            watcher(
                scoped::<Pod>(&client, ns),
                watcher::Config::default().labels(POOL_LABEL),
            ),
            pods_w,
            "pods",
            move |event| {
                let Some((pod, deleted)) = touched(event) else {
                    return;
                };
                let wanted = if deleted {
                    changed.forget(pod);
                    true
                } else {
                    changed.check(pod, pod_liveness_fingerprint(pod))
                };
                if wanted
                    && let (Some(ns), Some(pool)) = (pod.namespace(), pod.labels().get(POOL_LABEL))
                {
                    let _ = pool_wanted.unbounded_send(pool_ref(&ns, pool));
                }
            },
        )
    };
    let leases_watch = {
        let ctx = ctx.clone();
        let pool_wanted = pool_wanted.clone();
        let mut draining_seen = Changed::default();
        watch_into(
            watcher(
                scoped::<Lease>(&client, ns),
                watcher::Config::default().labels(POOL_LABEL),
            ),
            leases_w,
            "leases",
            move |event| {
                let Some((lease, deleted)) = touched(event) else {
                    return;
                };
                let (Some(ns), Some(pool)) = (lease.namespace(), lease.labels().get(POOL_LABEL))
                else {
                    return;
                };
                let key = (ns.clone(), lease.name_any());
                if deleted {
                    ctx.forget_lease(&key);
                    draining_seen.forget(lease);
                    let _ = pool_wanted.unbounded_send(pool_ref(&ns, pool));
                    return;
                }
                // Noted the moment it arrives: liveness counts from here. A renewal of a live
                // recorder changes nothing placement reads; a new, revived or released Lease does.
                let now = tokio::time::Instant::now();
                let before = lock(&ctx.leases).last_change(&key);
                let changed_at = ctx.observe_lease(key, lease_version(lease), now);
                let duration = lease
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_duration_seconds)
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(Duration::from_secs(15), Duration::from_secs);
                let held = lease.spec.as_ref().is_some_and(|s| s.renew_time.is_some());
                // A recorder starting to drain: its cameras move off now.
                let draining = lease_draining(lease);
                let drain_changed = draining_seen.check(lease, u64::from(draining));
                let wanted = drain_changed
                    || match before {
                        None => true,
                        Some(b) => {
                            changed_at == now && (!held || now.duration_since(b) >= duration)
                        }
                    };
                if wanted {
                    let _ = pool_wanted.unbounded_send(pool_ref(&ns, pool));
                }
            },
        )
    };
    let secrets_watch = {
        let ctx = ctx.clone();
        let pool_wanted = pool_wanted.clone();
        let mut known = Changed::default();
        watch_into(
            watcher(
                scoped::<PartialObjectMeta<Secret>>(&client, ns),
                watcher::Config::default(),
            ),
            secrets_w,
            "secrets",
            move |event| {
                // Only a Secret appearing or going matters (a camera's credentials exist or not).
                let ns = match event {
                    watcher::Event::Delete(s) => {
                        known.forget(s);
                        s.namespace()
                    }
                    e => match applied(e) {
                        Some(s) if known.check(s, 0) => s.namespace(),
                        _ => None,
                    },
                };
                let Some(ns) = ns else { return };
                for p in ctx
                    .caches
                    .pools
                    .state()
                    .iter()
                    .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                {
                    let _ = pool_wanted.unbounded_send(ObjectRef::from_obj(p.as_ref()));
                }
            },
        )
    };
    let backfills_watch = {
        let ctx = ctx.clone();
        let mut changed = Changed::default();
        watch_into(
            watcher(scoped::<Backfill>(&client, ns), watcher::Config::default()),
            backfills_w,
            "backfills",
            move |event| match event {
                watcher::Event::Delete(b) => {
                    changed.forget(b);
                    reset_backoff(ctx.as_ref(), b);
                }
                e => {
                    if let Some(b) = applied(e)
                        && changed.check(b, backfill_fingerprint(b))
                    {
                        let _ = backfill_tx.unbounded_send(b.clone());
                    }
                }
            },
        )
    };
    let jobs_watch = watch_into(
        watcher(
            scoped::<Job>(&client, ns),
            watcher::Config::default().labels(BACKFILL_LABEL),
        ),
        jobs_w,
        "jobs",
        move |event| {
            let job = match event {
                watcher::Event::Delete(j) => j,
                e => match applied(e) {
                    Some(j) => j,
                    None => return,
                },
            };
            let _ = job_tx.unbounded_send(job.clone());
        },
    );
    // The recorder workload is applied only when it changes; an edit or deletion of a pool's
    // Deployment by anyone else makes the pool apply it again.
    let deployments_watch = {
        let ctx = ctx.clone();
        let pool_wanted = pool_wanted.clone();
        let stream = watcher(
            scoped::<Deployment>(&client, ns),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=vigil-operator"),
        )
        .default_backoff();
        async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let (d, deleted) = match &event {
                    Ok(e) => match touched(e) {
                        Some(t) => t,
                        None => continue,
                    },
                    Err(e) => {
                        warn!(watch = "deployments", error = %e, "watch failed; retrying");
                        continue;
                    }
                };
                let (Some(ns), Some(pool)) = (d.namespace(), d.labels().get(POOL_LABEL)) else {
                    continue;
                };
                let pool = pool_ref(&ns, pool);
                let ours = ctx
                    .applied_workload(&pool)
                    .is_some_and(|a| !deleted && a.deployment_generation == d.metadata.generation);
                if !ours {
                    ctx.set_applied_workload(pool.clone(), None);
                    let _ = pool_wanted.unbounded_send(pool);
                }
            }
        }
    };
    drop(pool_wanted);
    let watches = async {
        futures::join!(
            pools_watch,
            cameras_watch,
            pods_watch,
            leases_watch,
            secrets_watch,
            backfills_watch,
            jobs_watch,
            deployments_watch
        );
    };

    let caches = ctx.caches.clone();
    let controllers = async move {
        // Reconcilers read the caches: start them once every cache holds a full list.
        let ready = futures::future::join_all([
            caches.pools.wait_until_ready().boxed(),
            caches.cameras.wait_until_ready().boxed(),
            caches.pods.wait_until_ready().boxed(),
            caches.leases.wait_until_ready().boxed(),
            caches.secrets.wait_until_ready().boxed(),
            caches.backfills.wait_until_ready().boxed(),
            caches.jobs.wait_until_ready().boxed(),
        ])
        .await;
        if ready.iter().any(Result::is_err) {
            warn!("a watch cache closed before its first list");
            return;
        }
        info!("watch caches synced; controllers running");
        let pools = Controller::for_stream(pool_rx.map(Ok), caches.pools.clone())
            .reconcile_on(pool_wanted_rx)
            .shutdown_on_signal()
            .run(
                |p, c| reconciled(p, c, pool::reconcile),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
        let backfills = Controller::for_stream(backfill_rx.map(Ok), caches.backfills.clone())
            .owns_stream(job_rx.map(Ok))
            .shutdown_on_signal()
            .run(
                |b, c| reconciled(b, c, backfill::reconcile),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
        let cameras = Controller::for_stream(camera_rx.map(Ok), caches.cameras.clone())
            .shutdown_on_signal()
            .run(
                |c, x| reconciled(c, x, camera::reconcile),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});
        futures::join!(pools, cameras, backfills);
    };
    // The controllers end on SIGTERM; the watches never do.
    tokio::select! {
        () = controllers => {}
        () = watches => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let d: Vec<u64> = (1..=9).map(|n| super::backoff_delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    fn camera() -> Camera {
        let mut c: Camera = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
            "metadata": {"name": "lobby", "namespace": "site", "generation": 1,
                         "labels": {"vigil.dev/recorder": "rec-a"}},
            "spec": {"source": {"url": "rtsp://cam/live"}, "expectedBitrateKbps": 4000, "pool": "main"},
            "status": {"state": "Recording", "recorder": "rec-a", "measuredBitrateKbps": 4000,
                       "lastSegmentTime": "2026-01-01T00:00:00Z"}
        }))
        .expect("camera");
        c.metadata.resource_version = Some("1".into());
        c
    }

    #[test]
    fn routine_recorder_status_does_not_wake_the_pool() {
        let c = camera();
        let before = camera_placement_fingerprint(&c);
        let mut routine = c.clone();
        let status = routine.status.as_mut().expect("status");
        status.last_segment_time = chrono::DateTime::from_timestamp(1_767_225_604, 0);
        status.measured_bitrate_kbps = Some(4100); // 2.5 %: same placement
        routine.metadata.resource_version = Some("2".into());
        assert_eq!(camera_placement_fingerprint(&routine), before);

        let mut relabelled = c.clone();
        relabelled
            .labels_mut()
            .insert(RECORDER_LABEL.into(), "rec-b".into());
        assert_ne!(camera_placement_fingerprint(&relabelled), before);
        let mut respecced = c.clone();
        respecced.metadata.generation = Some(2);
        assert_ne!(camera_placement_fingerprint(&respecced), before);
        let mut doubled = c.clone();
        doubled
            .status
            .as_mut()
            .expect("status")
            .measured_bitrate_kbps = Some(8000);
        assert_ne!(camera_placement_fingerprint(&doubled), before);
    }

    #[test]
    fn a_new_segment_does_not_wake_the_pool() {
        // Recorders find and report holes themselves: a segment changes nothing the pool reads.
        let mut c = camera();
        let before = camera_placement_fingerprint(&c);
        c.status.as_mut().expect("status").last_segment_time = Some(chrono::Utc::now());
        assert_eq!(camera_placement_fingerprint(&c), before);
    }
}
