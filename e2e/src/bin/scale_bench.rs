//! Scale benchmark (issue "Shape for ten thousand cameras", item 7): the operator against the real
//! API server with thousands of Cameras in one RecorderPool.
//!
//!     source /var/lib/vigil-cluster/env
//!     cargo build --release -p vigil-operator
//!     cargo build -p vigil-e2e --bin scale-bench
//!     $CARGO_TARGET_DIR/debug/scale-bench --cameras 10000 --recorders 100 --quiet-minutes 5 \
//!         --operator $CARGO_TARGET_DIR/release/vigil-operator
//!
//! Recorders are represented by their Leases (process-kind recorders, no pods): one task renews
//! every Lease each `renewSeconds`, as each real recorder does for its own. The operator runs as
//! a process watching only the benchmark's namespace, with its production defaults (leader
//! election; `--resync-ms` at its default).
//!
//! Phases and figures:
//! 1. background: the Leases renew, no operator yet — what the API server sees from others;
//! 2. assignment: Cameras created concurrently; time from the last create to every Camera
//!    labelled `vigil.dev/recorder`;
//! 3. quiet minutes: nothing changes; API requests per minute;
//! 4. failover: the recorder with the most cameras stops renewing; time until all its cameras
//!    are relabelled (raw, and beyond the Lease's expiry).
//!
//! API requests are the API server's own `apiserver_request_total` (scraped from `/metrics`
//! before and after each phase) minus the requests this benchmark sent itself (counted by a
//! layer on its client, by verb and resource), so what is left is the operator's plus whatever
//! else used the cluster at the time (the background phase shows how much that is), restricted to
//! the (verb, resource) pairs the operator's code issues; the operator's own reconcile counters
//! (its /metrics) are printed next to them. The operator's CPU seconds and peak RSS come from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//! Prints tables and, last, one line `SCALE_BENCH_JSON {...}`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::client::ClientBuilder;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use vigil_api::{Camera, RECORDER_LABEL, RecorderPool};

const POOL: &str = "main";
const HEADROOM_PERCENT: u64 = 20;

// ---------------------------------------------------------------------------------------------
// Arguments

struct Args {
    cameras: usize,
    recorders: usize,
    quiet_minutes: u32,
    timeout: Duration,
    failover_timeout: Duration,
    concurrency: usize,
    background_seconds: u64,
    lease_duration: u32,
    renew_seconds: u32,
    operator: Option<PathBuf>,
    keep: bool,
}

const USAGE: &str = "scale-bench [--cameras N] [--recorders R] [--quiet-minutes M] \
[--timeout SECONDS] [--failover-timeout SECONDS] [--concurrency C] [--background-seconds S] \
[--lease-duration S] [--renew-seconds S] [--operator PATH] [--keep]";

fn parse_args() -> Args {
    let mut a = Args {
        cameras: 1000,
        recorders: 10,
        quiet_minutes: 5,
        timeout: Duration::from_secs(900),
        failover_timeout: Duration::from_secs(300),
        concurrency: 48,
        background_seconds: 30,
        lease_duration: 4,
        renew_seconds: 1,
        operator: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--keep" {
            a.keep = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value\n{USAGE}"));
        let num = |v: &str| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("{flag}: not a number: {v:?}\n{USAGE}"))
        };
        match flag.as_str() {
            "--cameras" => a.cameras = num(&value) as usize,
            "--recorders" => a.recorders = num(&value) as usize,
            "--quiet-minutes" => a.quiet_minutes = num(&value) as u32,
            "--timeout" => a.timeout = Duration::from_secs(num(&value)),
            "--failover-timeout" => a.failover_timeout = Duration::from_secs(num(&value)),
            "--concurrency" => a.concurrency = (num(&value) as usize).max(1),
            "--background-seconds" => a.background_seconds = num(&value),
            "--lease-duration" => a.lease_duration = num(&value) as u32,
            "--renew-seconds" => a.renew_seconds = (num(&value) as u32).max(1),
            "--operator" => a.operator = Some(PathBuf::from(value)),
            _ => panic!("unknown argument {flag}\n{USAGE}"),
        }
    }
    assert!(
        a.cameras > 0 && a.recorders > 1,
        "need cameras and at least 2 recorders"
    );
    a
}

// ---------------------------------------------------------------------------------------------
// Counting the benchmark's own requests, keyed like apiserver_request_total.

/// (verb, resource or resource/subresource) → requests.
type Counts = BTreeMap<(String, String), f64>;

#[derive(Default)]
struct OwnRequests(Mutex<Counts>);

impl OwnRequests {
    fn record<B>(&self, req: &http::Request<B>) {
        if let Some(key) = classify(req) {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            *map.entry(key).or_default() += 1.0;
        }
    }
    fn snapshot(&self) -> Counts {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The (verb, resource[/subresource]) the API server files a request under; None for
/// non-resource paths (/metrics, /version, discovery).
fn classify<B>(req: &http::Request<B>) -> Option<(String, String)> {
    let path = req.uri().path();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (custom, rest) = match segs.first().copied() {
        Some("api") if segs.len() >= 3 => (false, &segs[2..]),
        Some("apis") if segs.len() >= 4 => (segs[1] == "vigil.dev", &segs[3..]),
        _ => return None,
    };
    let (resource, name, sub) = match rest {
        ["namespaces", _ns, resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        ["namespaces", name] => ("namespaces", Some(name), None),
        [resource, tail @ ..] => (*resource, tail.first(), tail.get(1)),
        [] => return None,
    };
    let watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let apply = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/apply-patch"));
    let verb = match *req.method() {
        http::Method::GET if watch => "WATCH",
        // API server 1.20 files a GET of a custom resource under LIST.
        http::Method::GET if name.is_none() || custom => "LIST",
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH if apply => "APPLY",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE if name.is_none() => "DELETECOLLECTION",
        http::Method::DELETE => "DELETE",
        _ => return None,
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    Some((verb.to_string(), resource))
}

/// A client whose every request is counted in `own`.
async fn counting_client(own: Arc<OwnRequests>) -> Client {
    vigil_api::install_crypto_provider();
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: `source /var/lib/vigil-cluster/env` first"
    );
    let config = kube::Config::infer()
        .await
        .expect("a kube config from KUBECONFIG");
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        own.record(&req);
        req
    });
    ClientBuilder::try_from(config)
        .expect("a client for the cluster in KUBECONFIG")
        .with_layer(&layer)
        .build()
}

// ---------------------------------------------------------------------------------------------
// The API server's request counters.

/// `apiserver_request_total` summed by (verb, resource[/subresource]).
async fn scrape(client: &Client) -> Counts {
    let req = http::Request::get("/metrics")
        .body(vec![])
        .expect("metrics request");
    let mut last_err = None;
    for _ in 0..5 {
        match client.request_text(req.clone()).await {
            Ok(text) => return parse_request_totals(&text),
            Err(e) => {
                last_err = Some(e);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    panic!("cannot read the API server's /metrics: {last_err:?}");
}

fn parse_request_totals(text: &str) -> Counts {
    let mut out = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let mut verb = "";
        let mut resource = "";
        let mut sub = "";
        for kv in labels.split("\",") {
            let Some((k, v)) = kv.split_once("=\"") else {
                continue;
            };
            let v = v.trim_end_matches('"');
            match k {
                "verb" => verb = v,
                "resource" => resource = v,
                "subresource" => sub = v,
                _ => {}
            }
        }
        if resource.is_empty() {
            continue; // non-resource requests (/metrics, /healthz, discovery)
        }
        let key = if sub.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{sub}")
        };
        *out.entry((verb.to_string(), key)).or_default() += value;
    }
    out
}

fn diff(after: &Counts, before: &Counts) -> Counts {
    let mut out = Counts::new();
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        if d.abs() > 0.0 {
            out.insert(k.clone(), d);
        }
    }
    out
}

/// One phase's requests: everything the API server counted, the benchmark's own, and the rest
/// (the operator and whatever else ran).
#[derive(Clone, Default)]
struct PhaseRequests {
    seconds: f64,
    total: Counts,
    own: Counts,
}

/// The requests the operator's code makes, as (verb, resource): everything else the API server
/// counted is someone else's — the cluster's controllers (nodes, endpoints, status of the Jobs and
/// CronJobs it created), the namespace controller, and other engineers' tests on the shared
/// cluster (their recorders `APPLY` Leases and camera status, their tests `POST` Cameras).
const OPERATOR_REQUESTS: &[(&str, &str)] = &[
    ("LIST", "cameras"), // also its GETs: API server 1.20 files GETs of custom resources as LIST
    ("PATCH", "cameras"),
    ("PATCH", "cameras/status"),
    ("LIST", "recorderpools"),
    ("APPLY", "recorderpools/status"),
    ("LIST", "backfills"),
    ("POST", "backfills"),
    ("APPLY", "backfills/status"),
    ("LIST", "jobs"),
    ("POST", "jobs"),
    ("DELETE", "jobs"),
    ("LIST", "pods"),
    ("LIST", "leases"),
    ("GET", "leases"),
    ("PUT", "leases"),
    ("POST", "leases"),
    ("DELETE", "leases"),
    ("LIST", "secrets"),
    ("POST", "events"),
    ("PATCH", "events"),
    ("APPLY", "deployments"),
    ("APPLY", "serviceaccounts"),
    ("APPLY", "roles"),
    ("APPLY", "rolebindings"),
    ("APPLY", "services"),
    ("APPLY", "cronjobs"),
    ("APPLY", "poddisruptionbudgets"),
];

impl PhaseRequests {
    /// Everything the API server counted but the benchmark's own requests.
    fn rest(&self) -> Counts {
        let mut out = Counts::new();
        for (k, v) in &self.total {
            let d = v - self.own.get(k).copied().unwrap_or(0.0);
            if d > 0.5 {
                out.insert(k.clone(), d);
            }
        }
        out
    }

    /// The operator's requests: the rest, on the (verb, resource) pairs the operator's code
    /// issues. An upper bound on a shared cluster: another operator or test in another namespace
    /// issues the same pairs (the background phase shows how busy the cluster was).
    fn others(&self) -> Counts {
        self.rest()
            .into_iter()
            .filter(|((v, r), _)| OPERATOR_REQUESTS.iter().any(|(ov, or)| ov == v && or == r))
            .collect()
    }
}

fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
    )
}

fn sum(c: &Counts, pred: impl Fn(&str, &str) -> bool) -> f64 {
    c.iter()
        .filter(|((v, r), _)| pred(v, r))
        .map(|(_, n)| *n)
        .sum()
}

fn counts_json(c: &Counts) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for ((verb, res), n) in c {
        m.insert(format!("{verb} {res}"), json!(n.round() as u64));
    }
    serde_json::Value::Object(m)
}

/// Per (verb, resource): the API server's count, the benchmark's own, the rest.
fn print_requests(title: &str, p: &PhaseRequests, operator_running: bool) {
    println!(
        "\n{title} ({:.1} s): API requests by verb and resource",
        p.seconds
    );
    println!(
        "  {:<18} {:<32} {:>10} {:>10} {:>10} {:>10}",
        "verb", "resource", "apiserver", "benchmark", "operator", "per min"
    );
    let others = if operator_running {
        p.others()
    } else {
        p.rest()
    };
    for ((verb, res), n) in &p.total {
        if verb == "WATCH" {
            continue; // counted by the API server when a watch ends: not comparable
        }
        let own = p
            .own
            .get(&(verb.clone(), res.clone()))
            .copied()
            .unwrap_or(0.0);
        let rest = others
            .get(&(verb.clone(), res.clone()))
            .copied()
            .unwrap_or(0.0);
        println!(
            "  {verb:<18} {res:<32} {n:>10.0} {own:>10.0} {rest:>10.0} {:>10.1}",
            rest * 60.0 / p.seconds.max(1e-9)
        );
    }
    let w = sum(&others, |v, _| is_write(v));
    let r = sum(&others, |v, _| v == "GET" || v == "LIST");
    println!(
        "  {}: writes {w:.0} ({:.1}/min), reads {r:.0} ({:.1}/min) — {}; WATCH not shown (counted when a watch ends); API server 1.20 counts a GET of a custom resource as LIST",
        if operator_running {
            "operator"
        } else {
            "cluster (not the benchmark)"
        },
        w * 60.0 / p.seconds.max(1e-9),
        r * 60.0 / p.seconds.max(1e-9),
        if operator_running {
            "the API server's count less the benchmark's own requests, on the (verb, resource) pairs the operator's code issues: an upper bound on a shared cluster"
        } else {
            "the API server's count less the benchmark's own requests"
        }
    );
}

// ---------------------------------------------------------------------------------------------
// The operator process.

struct Operator {
    child: std::process::Child,
    pid: u32,
    port: u16,
    log: PathBuf,
}

impl Operator {
    fn start(bin: &PathBuf, ns: &str, work: &std::path::Path) -> Operator {
        let port = vigil_e2e::harness::free_port();
        let log = work.join("operator.log");
        let log_file = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(bin)
            .args(["run", "--namespace", ns, "--watch-namespace", ns])
            .args(["--identity", "scale-bench"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--recorder-image", "localhost/vigil/recorder:dev"])
            .env("RUST_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let pid = child.id();
        Operator {
            child,
            pid,
            port,
            log,
        }
    }

    /// utime + stime in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let Some((_, after_comm)) = stat.rsplit_once(") ") else {
            return f64::NAN;
        };
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // after the comm: state is field 3, utime 14, stime 15.
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(u), Some(s)) => (u + s) / clock_ticks(),
            _ => f64::NAN,
        }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn memory_mib(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(f64::NAN, |k| k / 1024.0)
        };
        (kib("VmRSS:"), kib("VmHWM:"))
    }

    /// vigil_operator_reconciles_total by controller.
    fn reconciles(&self) -> BTreeMap<String, f64> {
        let body = vigil_e2e::harness::http_get(&format!("127.0.0.1:{}", self.port), "/metrics")
            .unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in body.lines() {
            let Some(rest) = line.strip_prefix("vigil_operator_reconciles_total{") else {
                continue;
            };
            let controller = rest
                .split("controller=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("?");
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *out.entry(controller.to_string()).or_default() += v;
            }
        }
        out
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Operator CPU and memory at one moment.
#[derive(Clone, Copy)]
struct Usage {
    cpu: f64,
    rss: f64,
    hwm: f64,
}

fn usage(op: &Operator) -> Usage {
    let (rss, hwm) = op.memory_mib();
    Usage {
        cpu: op.cpu_seconds(),
        rss,
        hwm,
    }
}

// ---------------------------------------------------------------------------------------------
// Recorders as Leases.

struct Renewer {
    alive: Vec<AtomicBool>,
    /// Last successful renewal of each recorder.
    renewed: Mutex<Vec<Option<Instant>>>,
    rounds: AtomicU64,
    slow_rounds: AtomicU64,
    failures: AtomicU64,
    max_round_ms: AtomicU64,
}

fn recorder_name(i: usize) -> String {
    format!("rec-{i:03}")
}

/// One task renews every live recorder's Lease each `renew` (server-side apply, as the recorder
/// does), 16 at a time.
fn spawn_renewer(client: Client, ns: String, recorders: usize, args: &Args) -> Arc<Renewer> {
    let r = Arc::new(Renewer {
        alive: (0..recorders).map(|_| AtomicBool::new(true)).collect(),
        renewed: Mutex::new(vec![None; recorders]),
        rounds: AtomicU64::new(0),
        slow_rounds: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        max_round_ms: AtomicU64::new(0),
    });
    let every = Duration::from_secs(u64::from(args.renew_seconds));
    let duration = args.lease_duration;
    let acquired = chrono::Utc::now();
    let shared = r.clone();
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &ns);
        let pp = PatchParams::apply("vigil-recorder").force();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let live: Vec<usize> = (0..recorders)
                .filter(|i| shared.alive[*i].load(Ordering::Relaxed))
                .collect();
            let results: Vec<(usize, bool)> = futures::stream::iter(live)
                .map(|i| {
                    let api = api.clone();
                    let pp = pp.clone();
                    async move {
                        let name = recorder_name(i);
                        let body = json!({
                            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": name, "labels": {
                                vigil_api::POOL_LABEL: POOL,
                                vigil_api::labels::RECORDER_KIND_LABEL: "process"}},
                            "spec": {
                                "holderIdentity": name,
                                "leaseDurationSeconds": duration,
                                "acquireTime": acquired.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                                "renewTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            }
                        });
                        let ok = matches!(
                            tokio::time::timeout(every, api.patch(&name, &pp, &Patch::Apply(body)))
                                .await,
                            Ok(Ok(_))
                        );
                        (i, ok)
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let now = Instant::now();
            {
                let mut renewed = shared.renewed.lock().unwrap_or_else(|e| e.into_inner());
                for (i, ok) in &results {
                    if *ok {
                        renewed[*i] = Some(now);
                    } else {
                        shared.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let ms = started.elapsed().as_millis() as u64;
            shared.rounds.fetch_add(1, Ordering::Relaxed);
            shared.max_round_ms.fetch_max(ms, Ordering::Relaxed);
            if started.elapsed() > every {
                shared.slow_rounds.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    r
}

// ---------------------------------------------------------------------------------------------
// The benchmark's view of the Cameras: a metadata watch, name → recorder label.

#[derive(Default)]
struct CameraView {
    labels: HashMap<String, Option<String>>,
    /// Label changes seen (assignments and moves).
    label_changes: u64,
}

impl CameraView {
    fn assigned(&self) -> usize {
        self.labels.values().filter(|l| l.is_some()).count()
    }
    fn on(&self, recorder: &str) -> usize {
        self.labels
            .values()
            .filter(|l| l.as_deref() == Some(recorder))
            .count()
    }
}

fn spawn_camera_watch(
    client: Client,
    ns: &str,
) -> (Arc<Mutex<CameraView>>, tokio::sync::watch::Receiver<u64>) {
    let view = Arc::new(Mutex::new(CameraView::default()));
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let api: Api<PartialObjectMeta<Camera>> = Api::namespaced(client, ns);
    let shared = view.clone();
    tokio::spawn(async move {
        let mut staged: Option<HashMap<String, Option<String>>> = None;
        let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
        loop {
            let event = match stream.try_next().await {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => {
                    eprintln!("camera watch: {e} (retrying)");
                    continue;
                }
            };
            let mut v = shared.lock().unwrap_or_else(|e| e.into_inner());
            match event {
                watcher::Event::Init => staged = Some(HashMap::new()),
                watcher::Event::InitApply(o) => {
                    if let Some(s) = staged.as_mut() {
                        s.insert(o.name_any(), o.labels().get(RECORDER_LABEL).cloned());
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(s) = staged.take() {
                        v.labels = s;
                    }
                }
                watcher::Event::Apply(o) => {
                    let label = o.labels().get(RECORDER_LABEL).cloned();
                    let old = v.labels.insert(o.name_any(), label.clone());
                    if label.is_some() && old.flatten() != label {
                        v.label_changes += 1;
                    }
                }
                watcher::Event::Delete(o) => {
                    v.labels.remove(&o.name_any());
                }
            }
            drop(v);
            tx.send_modify(|g| *g += 1);
        }
    });
    (view, rx)
}

/// Waits until `done(view)` holds; the Instant it was first seen to hold, or None at `deadline`.
/// `progress` is called about every 10 s.
async fn wait_view(
    view: &Arc<Mutex<CameraView>>,
    changes: &mut tokio::sync::watch::Receiver<u64>,
    deadline: Instant,
    mut done: impl FnMut(&CameraView) -> bool,
    mut progress: impl FnMut(&CameraView),
) -> Option<Instant> {
    let mut last_progress = Instant::now();
    loop {
        {
            let v = view.lock().unwrap_or_else(|e| e.into_inner());
            if done(&v) {
                return Some(Instant::now());
            }
            if last_progress.elapsed() >= Duration::from_secs(10) {
                progress(&v);
                last_progress = Instant::now();
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
    }
}

// ---------------------------------------------------------------------------------------------

/// Bitrates 1–16 Mbit/s from a seeded xorshift, the same on every run.
fn bitrates(n: usize) -> Vec<u64> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1000 + x % 15_001
        })
        .collect()
}

fn camera_name(i: usize) -> String {
    format!("cam-{i:05}")
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("—".to_string(), |v| format!("{v:.2}"))
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not reached",
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let own = Arc::new(OwnRequests::default());
    let client = counting_client(own.clone()).await;
    let operator_bin = args
        .operator
        .clone()
        .unwrap_or_else(|| vigil_e2e::built_binary("vigil-operator"));
    let started_at = chrono::Utc::now();
    let load_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "scale-bench: {} cameras, {} recorders, lease {} s / renew {} s, {} quiet minutes, operator {}",
        args.cameras,
        args.recorders,
        args.lease_duration,
        args.renew_seconds,
        args.quiet_minutes,
        operator_bin.display()
    );
    println!(
        "machine: {} cores, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_start
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    vigil_e2e::apply_crds(&client).await;
    let ns = vigil_e2e::create_namespace(&client, "vigil-scale", &[]).await;
    let work = std::env::temp_dir().join(&ns);
    std::fs::create_dir_all(&work).expect("work directory");
    println!(
        "namespace {ns}, operator log {}",
        work.join("operator.log").display()
    );

    // Ctrl-C: stop the operator and delete the namespace.
    let operator_pid = Arc::new(AtomicU32::new(0));
    let keep = args.keep;
    {
        let (client, ns, pid, keep) = (client.clone(), ns.clone(), operator_pid.clone(), args.keep);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let pid = pid.load(Ordering::Relaxed);
                if pid != 0 {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                if !keep {
                    eprintln!("interrupted: deleting namespace {ns}");
                    vigil_e2e::delete_namespace(&client, &ns).await;
                }
                std::process::exit(130);
            }
        });
    }

    let run = tokio::spawn(run(Setup {
        args,
        client: client.clone(),
        own,
        ns: ns.clone(),
        work,
        operator_bin,
        operator_pid: operator_pid.clone(),
        started_at,
        load_start,
    }));
    if run.await.is_err() {
        // A panic (its message is printed above): leave nothing behind.
        let pid = operator_pid.load(Ordering::Relaxed);
        if pid != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if !keep {
            vigil_e2e::delete_namespace(&client, &ns).await;
            eprintln!("scale-bench failed; namespace {ns} deleted");
        }
        std::process::exit(1);
    }
}

/// What `main` prepared for the run.
struct Setup {
    args: Args,
    client: Client,
    own: Arc<OwnRequests>,
    ns: String,
    work: PathBuf,
    operator_bin: PathBuf,
    operator_pid: Arc<AtomicU32>,
    started_at: chrono::DateTime<chrono::Utc>,
    load_start: String,
}

async fn run(setup: Setup) {
    let Setup {
        args,
        client,
        own,
        ns,
        work,
        operator_bin,
        operator_pid,
        started_at,
        load_start,
    } = setup;
    // The pool: capacity 1.5 × the ideal share, so the normal limit (capacity less 20 %
    // headroom) is 1.2 × ideal and one lost recorder's cameras fit on the others.
    let rates = bitrates(args.cameras);
    let total_kbps: u64 = rates.iter().sum();
    let ideal = total_kbps.div_ceil(args.recorders as u64);
    let capacity = (ideal * 3).div_ceil(2);
    let capacity_u32 = u32::try_from(capacity).expect("capacity fits in u32 kbit/s");
    let pool: RecorderPool = serde_json::from_value(json!({
        "apiVersion": "vigil.dev/v1alpha1", "kind": "RecorderPool",
        "metadata": {"name": POOL},
        "spec": {"replicas": 0, "capacityKbps": capacity_u32,
                 "failoverHeadroomPercent": HEADROOM_PERCENT, "segmentSeconds": 10,
                 "storage": {"local": {"path": "/data"}},
                 "lease": {"durationSeconds": args.lease_duration, "renewSeconds": args.renew_seconds}}
    }))
    .expect("pool manifest");
    let pools: Api<RecorderPool> = Api::namespaced(client.clone(), &ns);
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("create the RecorderPool");
    println!(
        "pool {POOL}: {} kbit/s in all, {capacity} kbit/s per recorder (1.5 × ideal {ideal}), headroom {HEADROOM_PERCENT} %",
        total_kbps
    );

    let renewer = spawn_renewer(client.clone(), ns.clone(), args.recorders, &args);
    let (view, mut changes) = spawn_camera_watch(client.clone(), &ns);

    // 1. Background: Leases renewing, no operator.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bg = {
        let (m0, o0, t0) = (scrape(&client).await, own.snapshot(), Instant::now());
        tokio::time::sleep(Duration::from_secs(args.background_seconds)).await;
        let (m1, o1) = (scrape(&client).await, own.snapshot());
        PhaseRequests {
            seconds: t0.elapsed().as_secs_f64(),
            total: diff(&m1, &m0),
            own: diff(&o1, &o0),
        }
    };
    print_requests("background: Leases renewing, no operator", &bg, false);

    // 2. The operator, until it has seen every recorder.
    let mut op = Operator::start(&operator_bin, &ns, &work);
    operator_pid.store(op.pid, Ordering::Relaxed);
    let recorders = args.recorders;
    let ready_deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = pools
            .get(POOL)
            .await
            .ok()
            .and_then(|p| p.status)
            .is_some_and(|s| s.ready_recorders as usize == recorders);
        if ready {
            break;
        }
        assert!(op.alive(), "the operator exited: see {}", op.log.display());
        assert!(
            Instant::now() < ready_deadline,
            "the operator did not report {recorders} ready recorders within 120 s: see {}",
            op.log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let u_ready = usage(&op);
    let rec_ready = op.reconciles();
    println!(
        "operator ready: pool reports {recorders} ready recorders; RSS {:.1} MiB",
        u_ready.rss
    );

    // 3. Create the cameras concurrently.
    let m_before_create = scrape(&client).await;
    let own_before_create = own.snapshot();
    let cameras: Api<Camera> = Api::namespaced(client.clone(), &ns);
    let create_start = Instant::now();
    let failures = AtomicU64::new(0);
    let created = AtomicU64::new(0);
    futures::stream::iter(0..args.cameras)
        .map(|i| {
            let cameras = cameras.clone();
            let (failures, created) = (&failures, &created);
            let kbps = rates[i];
            async move {
                let name = camera_name(i);
                let cam: Camera = serde_json::from_value(json!({
                    "apiVersion": "vigil.dev/v1alpha1", "kind": "Camera",
                    "metadata": {"name": name},
                    "spec": {"source": {"url": format!("rtsp://192.0.2.1:554/{name}/live")},
                             "expectedBitrateKbps": kbps, "pool": POOL}
                }))
                .expect("camera manifest");
                for attempt in 0..8u32 {
                    match cameras.create(&PostParams::default(), &cam).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => break,
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            assert!(attempt < 7, "creating {name} failed 8 times: {e}");
                            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                        }
                    }
                }
                let n = created.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 1000 == 0 {
                    println!(
                        "  created {n} cameras in {:.1} s",
                        create_start.elapsed().as_secs_f64()
                    );
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<()>>()
        .await;
    let last_create = Instant::now();
    let create_seconds = create_start.elapsed().as_secs_f64();
    let create_rate = args.cameras as f64 / create_seconds;
    let assigned_at_last_create = view.lock().unwrap_or_else(|e| e.into_inner()).assigned();
    println!(
        "created {} cameras in {create_seconds:.1} s ({create_rate:.0}/s, {} in flight, {} retried errors); {assigned_at_last_create} already assigned",
        args.cameras,
        args.concurrency,
        failures.load(Ordering::Relaxed)
    );

    // 4. Until every camera is labelled.
    let n = args.cameras;
    let deadline = last_create + args.timeout;
    let all_assigned = wait_view(
        &view,
        &mut changes,
        deadline,
        |v| v.labels.len() == n && v.assigned() == n,
        |v| {
            println!(
                "  {:.0} s after the last create: {} of {n} assigned",
                last_create.elapsed().as_secs_f64(),
                v.assigned()
            )
        },
    )
    .await;
    let assign_seconds = all_assigned.map(|t| (t - last_create).as_secs_f64());
    let assigned_reached = view.lock().unwrap_or_else(|e| e.into_inner()).assigned();
    let m_after_assign = scrape(&client).await;
    let own_after_assign = own.snapshot();
    let u_assigned = usage(&op);
    let rec_assigned = op.reconciles();
    let assign_phase = PhaseRequests {
        seconds: create_start.elapsed().as_secs_f64(),
        total: diff(&m_after_assign, &m_before_create),
        own: diff(&own_after_assign, &own_before_create),
    };
    match assign_seconds {
        Some(s) => println!("all {n} cameras assigned {s:.1} s after the last create"),
        None => println!(
            "TIMEOUT: {assigned_reached} of {n} cameras assigned {:.0} s after the last create",
            args.timeout.as_secs_f64()
        ),
    }
    print_requests(
        "assignment: first create → all assigned (creates included)",
        &assign_phase,
        true,
    );
    println!(
        "  operator CPU {:.1} s, RSS {:.1} MiB (peak {:.1} MiB); pool reconciles {:.0}, camera reconciles {:.0}",
        u_assigned.cpu - u_ready.cpu,
        u_assigned.rss,
        u_assigned.hwm,
        rec_assigned.get("recorderpool").copied().unwrap_or(0.0)
            - rec_ready.get("recorderpool").copied().unwrap_or(0.0),
        rec_assigned.get("camera").copied().unwrap_or(0.0)
            - rec_ready.get("camera").copied().unwrap_or(0.0),
    );

    // 5. Quiet minutes, and 6. failover — only when assignment finished.
    let mut quiet: Vec<(PhaseRequests, f64, u64)> = vec![];
    let mut failover: Option<serde_json::Value> = None;
    let mut failover_raw = None;
    let mut failover_beyond = None;
    if all_assigned.is_some() {
        let changes_before = view.lock().unwrap_or_else(|e| e.into_inner()).label_changes;
        let mut prev = (
            scrape(&client).await,
            own.snapshot(),
            Instant::now(),
            usage(&op),
            op.reconciles(),
        );
        let mut prev_changes = changes_before;
        for minute in 1..=args.quiet_minutes {
            let target = prev.2 + Duration::from_secs(60);
            tokio::time::sleep_until(target.into()).await;
            let now = (
                scrape(&client).await,
                own.snapshot(),
                Instant::now(),
                usage(&op),
                op.reconciles(),
            );
            let changes_now = view.lock().unwrap_or_else(|e| e.into_inner()).label_changes;
            let p = PhaseRequests {
                seconds: (now.2 - prev.2).as_secs_f64(),
                total: diff(&now.0, &prev.0),
                own: diff(&now.1, &prev.1),
            };
            let others = p.others();
            println!(
                "quiet minute {minute}: operator writes {:.0}, reads {:.0}; operator CPU {:.2} s; RSS {:.1} MiB; pool reconciles {:.0}, camera reconciles {:.0}; cameras relabelled {}",
                sum(&others, |v, _| is_write(v)),
                sum(&others, |v, _| v == "GET" || v == "LIST"),
                now.3.cpu - prev.3.cpu,
                now.3.rss,
                now.4.get("recorderpool").copied().unwrap_or(0.0)
                    - prev.4.get("recorderpool").copied().unwrap_or(0.0),
                now.4.get("camera").copied().unwrap_or(0.0)
                    - prev.4.get("camera").copied().unwrap_or(0.0),
                changes_now - prev_changes
            );
            quiet.push((p, now.3.cpu - prev.3.cpu, changes_now - prev_changes));
            prev_changes = changes_now;
            prev = now;
        }
        if let Some(total) = quiet_total(&quiet) {
            print_requests("quiet minutes, all together", &total, true);
        }

        // 6. One recorder stops renewing.
        let (victim, victims) = {
            let v = view.lock().unwrap_or_else(|e| e.into_inner());
            (0..args.recorders)
                .map(|i| (i, v.on(&recorder_name(i))))
                .max_by_key(|(_, c)| *c)
                .expect("recorders")
        };
        let victim_name = recorder_name(victim);
        let m0 = scrape(&client).await;
        let o0 = own.snapshot();
        let u0 = usage(&op);
        renewer.alive[victim].store(false, Ordering::Relaxed);
        let stopped = Instant::now();
        // A renewal in flight may still land: take the last one after a moment.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last_renewal =
            renewer.renewed.lock().unwrap_or_else(|e| e.into_inner())[victim].unwrap_or(stopped);
        let expiry = last_renewal + Duration::from_secs(u64::from(args.lease_duration));
        let mut first_move: Option<Instant> = None;
        let done = wait_view(
            &view,
            &mut changes,
            stopped + args.failover_timeout,
            |v| {
                let left = v.on(&victim_name);
                if left < victims && first_move.is_none() {
                    first_move = Some(Instant::now());
                }
                left == 0 && v.labels.len() == n && v.assigned() == n
            },
            |v| {
                println!(
                    "  {:.0} s after the stop: {} cameras still on {victim_name}",
                    stopped.elapsed().as_secs_f64(),
                    v.on(&victim_name)
                )
            },
        )
        .await;
        let m1 = scrape(&client).await;
        let o1 = own.snapshot();
        let u1 = usage(&op);
        let since = |t: Instant, from: Instant| {
            if t >= from {
                (t - from).as_secs_f64()
            } else {
                -(from - t).as_secs_f64()
            }
        };
        failover_raw = done.map(|t| since(t, stopped));
        failover_beyond = done.map(|t| since(t, expiry));
        let first = first_move.map(|t| since(t, stopped));
        let phase = PhaseRequests {
            seconds: stopped.elapsed().as_secs_f64(),
            total: diff(&m1, &m0),
            own: diff(&o1, &o0),
        };
        match done {
            Some(_) => println!(
                "failover: {victim_name} stopped renewing (last renewal {:.2} s before the stop); all {victims} of its cameras reassigned {:.2} s after the stop, {:.2} s after the Lease expired (first camera moved after {} s)",
                since(stopped, last_renewal),
                failover_raw.unwrap_or(f64::NAN),
                failover_beyond.unwrap_or(f64::NAN),
                fmt_opt(first)
            ),
            None => println!(
                "failover TIMEOUT: {} of {victims} cameras still on {victim_name} after {:.0} s",
                view.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .on(&victim_name),
                args.failover_timeout.as_secs_f64()
            ),
        }
        print_requests("failover: stop → all reassigned", &phase, true);
        println!("  operator CPU {:.2} s", u1.cpu - u0.cpu);
        failover = Some(json!({
            "victim": victim_name, "cameras": victims,
            "seconds_from_stop": failover_raw, "seconds_beyond_lease_expiry": failover_beyond,
            "first_move_seconds": first, "last_renewal_before_stop_seconds": since(stopped, last_renewal),
            "operator_cpu_seconds": u1.cpu - u0.cpu,
            "requests": counts_json(&phase.others()),
        }));
    } else {
        println!("assignment did not finish: quiet minutes and failover skipped");
    }

    // Summary.
    let u_end = usage(&op);
    let op_alive = op.alive();
    let load_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let quiet_sum = quiet_total(&quiet);
    let quiet_writes_per_min = quiet_sum
        .as_ref()
        .map(|p| sum(&p.others(), |v, _| is_write(v)) * 60.0 / p.seconds.max(1e-9));
    let quiet_reads_per_min = quiet_sum
        .as_ref()
        .map(|p| sum(&p.others(), |v, _| v == "GET" || v == "LIST") * 60.0 / p.seconds.max(1e-9));
    let quiet_cpu_per_min =
        (!quiet.is_empty()).then(|| quiet.iter().map(|q| q.1).sum::<f64>() / quiet.len() as f64);
    let lease_per_min = quiet_sum
        .as_ref()
        .map(|p| sum(&p.own, |v, r| is_write(v) && r == "leases") * 60.0 / p.seconds.max(1e-9));
    let write_target = n as f64 / 5.0;
    let assign_writes = sum(&assign_phase.others(), |v, _| is_write(v));
    let assign_reads = sum(&assign_phase.others(), |v, _| v == "GET" || v == "LIST");
    println!(
        "\nSUMMARY: {n} cameras, {} recorders (2-core VM shared with other builds; load average {} at start, {} at end)",
        args.recorders,
        load_start
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_end
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| figure | target | measured | |");
    println!("|---|---|---|---|");
    println!(
        "| create rate | — | {create_rate:.0} cameras/s ({} in flight) | |",
        args.concurrency
    );
    println!(
        "| last create → all assigned | ≤ 60 s | {} | {} |",
        match assign_seconds {
            Some(s) => format!("{s:.1} s"),
            None => format!(
                "> {:.0} s ({assigned_reached} of {n} assigned)",
                args.timeout.as_secs_f64()
            ),
        },
        verdict(assign_seconds.map(|s| s <= 60.0))
    );
    println!(
        "| operator requests during assignment | — | {assign_writes:.0} writes, {assign_reads:.0} reads | |"
    );
    println!(
        "| steady state, operator writes/min | < {write_target:.0} (1 per camera per 5 min) | {} | {} |",
        fmt_opt(quiet_writes_per_min),
        verdict(quiet_writes_per_min.map(|w| w < write_target))
    );
    println!(
        "| steady state, operator reads/min | — | {} | |",
        fmt_opt(quiet_reads_per_min)
    );
    println!(
        "| steady state, recorder Lease renewals/min (benchmark) | — | {} | |",
        fmt_opt(lease_per_min)
    );
    println!(
        "| steady state, operator CPU s/min | — | {} | |",
        fmt_opt(quiet_cpu_per_min)
    );
    println!(
        "| failover, stop renewing → all reassigned | — | {} | |",
        failover_raw.map_or("—".into(), |s| format!("{s:.2} s"))
    );
    println!(
        "| failover beyond Lease expiry ({} s) | ≤ 3 s | {} | {} |",
        args.lease_duration,
        failover_beyond.map_or("—".into(), |s| format!("{s:.2} s")),
        verdict(failover_beyond.map(|s| s <= 3.0))
    );
    println!(
        "| operator CPU, start → end | — | {:.1} s over {:.0} s | |",
        u_end.cpu,
        (chrono::Utc::now() - started_at).num_seconds()
    );
    println!(
        "| operator peak RSS (VmHWM) | < 256 MiB | {:.1} MiB | {} |",
        u_end.hwm,
        verdict(Some(u_end.hwm < 256.0))
    );
    println!(
        "lease renewer: {} rounds, {} slower than {} s (max {} ms), {} failed renewals; operator still running: {op_alive}",
        renewer.rounds.load(Ordering::Relaxed),
        renewer.slow_rounds.load(Ordering::Relaxed),
        args.renew_seconds,
        renewer.max_round_ms.load(Ordering::Relaxed),
        renewer.failures.load(Ordering::Relaxed)
    );

    let report = json!({
        "cameras": n, "recorders": args.recorders, "lease_duration_seconds": args.lease_duration,
        "renew_seconds": args.renew_seconds, "started_at": started_at.to_rfc3339(),
        "operator": operator_bin.display().to_string(),
        "load_average_start": load_start.trim(), "load_average_end": load_end.trim(),
        "create": {"seconds": create_seconds, "per_second": create_rate, "concurrency": args.concurrency,
                   "retried_errors": failures.load(Ordering::Relaxed)},
        "assignment": {"seconds_after_last_create": assign_seconds, "assigned": assigned_reached,
                       "assigned_at_last_create": assigned_at_last_create,
                       "operator_cpu_seconds": u_assigned.cpu - u_ready.cpu,
                       "operator_requests": counts_json(&assign_phase.others()),
                       "benchmark_requests": counts_json(&assign_phase.own)},
        "quiet": {"minutes": quiet.len(), "operator_writes_per_minute": quiet_writes_per_min,
                  "operator_reads_per_minute": quiet_reads_per_min,
                  "operator_cpu_seconds_per_minute": quiet_cpu_per_min,
                  "lease_renewals_per_minute": lease_per_min,
                  "cameras_relabelled": quiet.iter().map(|q| q.2).sum::<u64>(),
                  "per_minute": quiet.iter().map(|q| json!({
                      "writes": sum(&q.0.others(), |v, _| is_write(v)),
                      "reads": sum(&q.0.others(), |v, _| v == "GET" || v == "LIST"),
                      "cpu_seconds": q.1})).collect::<Vec<_>>(),
                  "operator_requests": quiet_sum.as_ref().map(|p| counts_json(&p.others()))},
        "failover": failover,
        "background": {"seconds": bg.seconds, "cluster_requests": counts_json(&bg.rest())},
        "operator_cpu_seconds_total": u_end.cpu, "operator_peak_rss_mib": u_end.hwm,
        "lease_renewer": {"rounds": renewer.rounds.load(Ordering::Relaxed),
                          "slow_rounds": renewer.slow_rounds.load(Ordering::Relaxed),
                          "max_round_ms": renewer.max_round_ms.load(Ordering::Relaxed),
                          "failures": renewer.failures.load(Ordering::Relaxed)},
    });
    println!("SCALE_BENCH_JSON {report}");

    op.kill();
    if args.keep {
        println!("--keep: namespace {ns} left in place");
    } else {
        vigil_e2e::delete_namespace(&client, &ns).await;
        println!("namespace {ns} deleted");
    }
}

/// The quiet minutes as one phase.
fn quiet_total(quiet: &[(PhaseRequests, f64, u64)]) -> Option<PhaseRequests> {
    if quiet.is_empty() {
        return None;
    }
    let mut out = PhaseRequests::default();
    for (p, _, _) in quiet {
        out.seconds += p.seconds;
        for (k, v) in &p.total {
            *out.total.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &p.own {
            *out.own.entry(k.clone()).or_default() += v;
        }
    }
    Some(out)
}
