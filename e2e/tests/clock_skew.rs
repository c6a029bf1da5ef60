//! Clock skew against a real API server: the operator judges recorder Leases and the leader
//! Lease by when it *saw* them change on its own clock, so clocks 10 s ahead or behind change
//! nothing.
//!
//! 1. Recorders whose Lease `renewTime`s are written 10 s in the future and 10 s in the past keep
//!    their cameras over several lease durations while they renew, and each is failed over within
//!    the lease duration (+ a small margin) once it stops renewing.
//! 2. An operator whose own clock is 10 s ahead, then 10 s behind (`faketime`), does the same
//!    with correctly timed recorders.
//! 3. A leader 10 s behind and a standby 10 s ahead: the standby never takes over while the
//!    leader renews, and takes over within the lease duration (+ margin) after the leader's
//!    SIGKILL.
//!
//! Recorders here are the protocol the operator sees — a Lease per recorder renewed every
//! 500 ms — as in `operator.rs`. Needs `faketime` (Debian package `faketime`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use vigil_api::{Camera, RecorderPool};
use vigil_e2e::harness::free_port;
use vigil_e2e::*;

/// The pools' lease duration, seconds (renewals every 500 ms).
const LEASE_SECONDS: u64 = 3;
/// How long renewing recorders are watched for a false failover: several lease durations.
const QUIET_WINDOW: Duration = Duration::from_secs(4 * LEASE_SECONDS);
/// Failover must happen within the lease duration plus this (watch delivery, reconcile, patch).
const FAILOVER_MARGIN: Duration = Duration::from_secs(2);

/// `renewTime` as a recorder whose clock is `skew_ms` off would write it.
fn skewed_now(skew_ms: i64) -> MicroTime {
    let micros = chrono::Utc::now().timestamp_micros() + skew_ms * 1000;
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_microsecond(micros)
            .expect("a timestamp within jiff's range"),
    )
}

/// A recorder's Lease, renewed every 500 ms with a clock `skew_ms` off, until `alive` turns
/// false.
fn spawn_lease(client: Client, ns: String, name: String, skew_ms: i64, alive: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &ns);
        while alive.load(Ordering::Relaxed) {
            let mut lease = Lease {
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS as i32),
                    renew_time: Some(skewed_now(skew_ms)),
                    ..Default::default()
                }),
                ..Default::default()
            };
            lease.metadata.name = Some(name.clone());
            lease.metadata.labels = Some(BTreeMap::from([
                ("vigil.dev/pool".to_string(), "main".to_string()),
                ("vigil.dev/recorder-kind".to_string(), "process".to_string()),
            ]));
            let mut value = serde_json::to_value(&lease).expect("lease json");
            value["apiVersion"] = "coordination.k8s.io/v1".into();
            value["kind"] = "Lease".into();
            let _ = api
                .patch(
                    &name,
                    &PatchParams::apply("e2e-recorder").force(),
                    &Patch::Apply(&value),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// `vigil-operator run` in `ns`, its clock shifted by libfaketime (`FAKETIME=<offset>`) when given.
fn start_operator(
    ns: &str,
    identity: &str,
    clock_offset: Option<&str>,
    work: &Path,
) -> (ChildGuard, u16) {
    let port = free_port();
    let log = std::fs::File::create(work.join(format!("{identity}.log"))).expect("operator log");
    let operator = built_binary("vigil-operator");
    let mut cmd = Command::new(operator);
    if let Some(offset) = clock_offset {
        // libfaketime preloaded into the operator itself (the `faketime` wrapper forks, so
        // killing it would leave the operator running).
        let lib = [
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
            "/usr/lib/faketime/libfaketime.so.1",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("libfaketime installed (Debian package `faketime`; e2e/cluster/deps.sh)");
        cmd.env("LD_PRELOAD", lib).env("FAKETIME", offset);
        // Skew is about wall clocks (monotonic clocks of two nodes are never compared).
        // libfaketime's faked monotonic clock also stretches tokio's timers about threefold
        // here (a 750 ms sleep took 2.25 s), which is not a skew but a broken clock.
        cmd.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
    cmd.args([
        "run",
        "--namespace",
        ns,
        "--watch-namespace",
        ns,
        "--identity",
        identity,
        "--leader-lease-seconds",
        &LEASE_SECONDS.to_string(),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--recorder-image",
        "localhost/vigil/recorder:dev",
    ])
    .env("RUST_LOG", "info,kube=warn")
    .stdout(Stdio::null())
    .stderr(log);
    (ChildGuard(cmd.spawn().expect("start vigil-operator")), port)
}

/// Write requests the operator listening on `port` has sent (`vigil_operator_api_writes`).
fn operator_writes(port: u16) -> f64 {
    let body = vigil_e2e::harness::http_get(&format!("127.0.0.1:{port}"), "/metrics")
        .expect("operator metrics");
    body.lines()
        .filter(|l| l.starts_with("vigil_operator_api_writes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A namespace with a pool (lease of `LEASE_SECONDS`), `cameras` cameras of 1 Mbit/s and one
/// renewing Lease per recorder (name, clock skew in ms).
struct Site {
    client: Client,
    ns: String,
    work: std::path::PathBuf,
    cameras: Api<Camera>,
    alive: BTreeMap<String, Arc<AtomicBool>>,
}

impl Site {
    async fn start(
        client: &Client,
        prefix: &str,
        recorders: &[(&str, i64)],
        cameras: usize,
    ) -> Site {
        apply_crds(client).await;
        let ns = create_namespace(client, prefix, &[]).await;
        let work = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&work).expect("work dir");
        let pool: RecorderPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
            "metadata": {"name": "main"},
            "spec": {"replicas": 0, "capacityKbps": 100_000, "failoverHeadroomPercent": 20,
                     "lease": {"durationSeconds": LEASE_SECONDS, "renewSeconds": 1},
                     "storage": {"local": {"path": "/data"}}}
        }))
        .expect("pool");
        Api::<RecorderPool>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &pool)
            .await
            .expect("create pool");
        let mut alive = BTreeMap::new();
        for (name, skew_ms) in recorders {
            let flag = Arc::new(AtomicBool::new(true));
            spawn_lease(
                client.clone(),
                ns.clone(),
                name.to_string(),
                *skew_ms,
                flag.clone(),
            );
            alive.insert(name.to_string(), flag);
        }
        let api: Api<Camera> = Api::namespaced(client.clone(), &ns);
        for i in 0..cameras {
            let name = format!("cam-{i:02}");
            let cam: Camera = serde_json::from_value(serde_json::json!({
                "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera", "metadata": {"name": name},
                "spec": {"source": {"url": format!("rtsp://127.0.0.1:8554/{name}/live")},
                         "expectedBitrateKbps": 1000, "pool": "main"}
            }))
            .expect("camera");
            api.create(&PostParams::default(), &cam)
                .await
                .expect("create camera");
        }
        Site {
            client: client.clone(),
            ns,
            work,
            cameras: api,
            alive,
        }
    }

    /// Waits until all `n` cameras are placed and every recorder has some.
    async fn wait_placed(&self, n: usize) -> BTreeMap<String, String> {
        let recorders = self.alive.len();
        wait_for(
            Duration::from_secs(30),
            "every camera placed, on every recorder",
            || async {
                let a = camera_assignments(&self.cameras).await;
                let used: std::collections::BTreeSet<&String> = a.values().collect();
                (a.len() == n && used.len() == recorders).then_some(a)
            },
        )
        .await
    }

    /// Asserts that no camera moves for `window` (polling every 250 ms).
    async fn assert_no_move(
        &self,
        placed: &BTreeMap<String, String>,
        window: Duration,
        what: &str,
    ) {
        let start = Instant::now();
        while start.elapsed() < window {
            let now = camera_assignments(&self.cameras).await;
            assert_eq!(
                &now,
                placed,
                "{what}: cameras moved {:.1} s into the quiet window",
                start.elapsed().as_secs_f64()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops `recorder` renewing; returns how long until none of its cameras names it.
    async fn stop_and_time_failover(&self, recorder: &str) -> Duration {
        self.alive[recorder].store(false, Ordering::Relaxed);
        let stopped = Instant::now();
        let limit = Duration::from_secs(LEASE_SECONDS) + FAILOVER_MARGIN;
        wait_for(
            Duration::from_secs(30),
            &format!("{recorder}'s cameras to move"),
            || async {
                let a = camera_assignments(&self.cameras).await;
                (!a.is_empty() && a.values().all(|r| r != recorder)).then_some(())
            },
        )
        .await;
        let took = stopped.elapsed();
        println!(
            "{}: {recorder} failed over {:.2} s after it stopped renewing (every 0.5 s; lease {LEASE_SECONDS} s)",
            self.ns,
            took.as_secs_f64()
        );
        assert!(
            took <= limit,
            "{recorder} failed over after {took:?}, more than {limit:?}"
        );
        took
    }

    async fn stop(self) {
        for a in self.alive.values() {
            a.store(false, Ordering::Relaxed);
        }
        delete_namespace(&self.client, &self.ns).await;
    }
}

#[tokio::test]
async fn recorders_with_skewed_clocks_are_judged_by_observed_renewals() {
    let client = client().await;
    let site = Site::start(
        &client,
        "vigil-e2e-skew-rec",
        &[
            ("rec-ahead", 10_000),
            ("rec-behind", -10_000),
            ("rec-true", 0),
        ],
        6,
    )
    .await;
    let (_operator, port) = start_operator(&site.ns, "operator-1", None, &site.work);
    let placed = site.wait_placed(6).await;
    // Let the first round of status writes land, then expect none while nothing changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writes_before = operator_writes(port);
    site.assert_no_move(
        &placed,
        QUIET_WINDOW,
        "recorders 10 s ahead/behind renewing",
    )
    .await;
    let quiet_writes = operator_writes(port) - writes_before;
    println!(
        "{}: {quiet_writes} operator writes in {} s of a quiet pool ({writes_before} before)",
        site.ns,
        QUIET_WINDOW.as_secs()
    );
    assert_eq!(quiet_writes, 0.0, "a quiet pool must cause no writes");
    // A clock 10 s ahead once delayed failover by 10 s; 10 s behind once failed over at once.
    site.stop_and_time_failover("rec-ahead").await;
    site.stop_and_time_failover("rec-behind").await;
    site.stop().await;
}

#[tokio::test]
async fn an_operator_with_a_skewed_clock_behaves_the_same() {
    let client = client().await;
    for offset in ["+10s", "-10s"] {
        let site = Site::start(
            &client,
            "vigil-e2e-skew-op",
            &[("rec-a", 0), ("rec-b", 0)],
            4,
        )
        .await;
        let (_operator, _) = start_operator(&site.ns, "operator-skewed", Some(offset), &site.work);
        let placed = site.wait_placed(4).await;
        site.assert_no_move(
            &placed,
            QUIET_WINDOW,
            &format!("operator clock {offset}, recorders renewing"),
        )
        .await;
        site.stop_and_time_failover("rec-a").await;
        site.stop().await;
    }
}

#[tokio::test]
async fn a_standby_ahead_of_a_leader_behind_waits_for_real_expiry() {
    let client = client().await;
    let site = Site::start(&client, "vigil-e2e-skew-leader", &[("rec-a", 0)], 1).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &site.ns);
    let holder = || {
        let leases = leases.clone();
        async move {
            leases
                .get("vigil-operator-leader")
                .await
                .ok()?
                .spec?
                .holder_identity
        }
    };
    let (mut leader, _) = start_operator(&site.ns, "operator-behind", Some("-10s"), &site.work);
    wait_for(
        Duration::from_secs(20),
        "operator-behind to lead",
        || async { (holder().await.as_deref() == Some("operator-behind")).then_some(()) },
    )
    .await;
    let (_standby, _) = start_operator(&site.ns, "operator-ahead", Some("+10s"), &site.work);
    // The leader's renewTimes look 20 s old to the standby's clock: it must not care.
    let start = Instant::now();
    while start.elapsed() < QUIET_WINDOW + Duration::from_secs(LEASE_SECONDS) {
        assert_eq!(
            holder().await.as_deref(),
            Some("operator-behind"),
            "the standby took over a renewing leader after {:.1} s",
            start.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    leader.kill();
    let killed = Instant::now();
    wait_for(
        Duration::from_secs(30),
        "operator-ahead to take over",
        || async { (holder().await.as_deref() == Some("operator-ahead")).then_some(()) },
    )
    .await;
    let took = killed.elapsed();
    println!(
        "standby (clock +10 s) took over {:.2} s after the leader's (clock -10 s) SIGKILL",
        took.as_secs_f64()
    );
    // The lease duration after the last renewal the standby saw, which it sees up to one poll
    // (duration/4) late, plus one more poll and the margin.
    let limit = Duration::from_secs(LEASE_SECONDS) * 3 / 2 + FAILOVER_MARGIN;
    assert!(
        took <= limit,
        "takeover after {took:?}, more than {limit:?}"
    );
    site.stop().await;
}
