//! Keepalive cost of many child domains at one parent (issue 16, docs/benchmarks.md).
//!
//! `pki DIR`: writes a CA (`ca.crt`, `ca.key`) and the parent listener's certificate
//! (`server.crt`, `server.key`, for 127.0.0.1) into DIR.
//!
//! `run --parent URL --pki DIR --pid PID --children N --seconds S`: first measures the parent
//! process (PID) idle for S seconds (the baseline, same run), then N simulated children, each
//! with its own client certificate `child-<i>` signed by the CA, register, push a one-camera
//! catalog and send keepalives at the interval the parent asks for during S seconds. Prints the
//! parent's CPU (from /proc/PID/stat) and resident memory in both windows, the keepalive latency
//! (p50, p99, max), failures, and the bytes of one keepalive request body.
//!
//! `e2e/cascade/keepalive_bench.sh` sets up the control plane, the ChildDomains and the parent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use vigil_access::federation::protocol::{
    CatalogPush, Keepalive, Register, Registered, RemoteCamera,
};
use vigil_access::federation::tls::client_config;

type Fail = Box<dyn std::error::Error + Send + Sync>;

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "vigil-bench-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

fn leaf(
    cn: &str,
    sans: Vec<String>,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), Fail> {
    let mut p = CertificateParams::new(sans)?;
    p.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pki(dir: &str) -> Result<(), Fail> {
    let key = KeyPair::generate()?;
    let ca = ca_params().self_signed(&key)?;
    std::fs::write(format!("{dir}/ca.crt"), ca.pem())?;
    std::fs::write(format!("{dir}/ca.key"), key.serialize_pem())?;
    let issuer = Issuer::new(ca_params(), key);
    let (crt, k) = leaf(
        "parent",
        vec!["127.0.0.1".into(), "localhost".into()],
        &issuer,
    )?;
    std::fs::write(format!("{dir}/server.crt"), crt)?;
    std::fs::write(format!("{dir}/server.key"), k)?;
    Ok(())
}

/// (CPU seconds used, resident bytes) of a process, from /proc.
fn proc_usage(pid: u32) -> Result<(f64, u64), Fail> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        f.get(11).unwrap_or(&"0").parse::<f64>()? + f.get(12).unwrap_or(&"0").parse::<f64>()?;
    let rss_pages: u64 = f.get(21).unwrap_or(&"0").parse()?;
    Ok((ticks / 100.0, rss_pages * 4096))
}

async fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    base: &str,
    verb: &str,
    body: &T,
) -> Result<R, Fail> {
    let r = http
        .post(format!("{base}/federation/v1/{verb}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body)?)
        .send()
        .await?;
    let status = r.status();
    if !status.is_success() {
        return Err(format!("{verb}: {status}").into());
    }
    Ok(serde_json::from_slice(&r.bytes().await?)?)
}

struct Totals {
    keepalives: AtomicU64,
    failures: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

#[allow(clippy::too_many_arguments)]
async fn child(
    i: usize,
    parent: String,
    ca: Arc<String>,
    issuer: Arc<Issuer<'static, KeyPair>>,
    registering: tokio::sync::OwnedSemaphorePermit,
    start_at: Instant,
    end_at: Instant,
    totals: Arc<Totals>,
) -> Result<(), Fail> {
    let (crt, key) = leaf(&format!("child-{i}"), vec![], &issuer)?;
    let tls = client_config(ca.as_bytes(), crt.as_bytes(), key.as_bytes())?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(10))
        .build()?;
    let reg: Registered = post(
        &http,
        &parent,
        "register",
        &Register {
            display_name: None,
            rights: vec![vigil_api::Right::Playback],
        },
    )
    .await?;
    let _: serde_json::Value = post(
        &http,
        &parent,
        "catalog",
        &CatalogPush {
            session: reg.session,
            seq: 1,
            full: Some(vec![RemoteCamera {
                namespace: "site".into(),
                name: format!("cam-{i}"),
                path: vec![],
                online: true,
            }]),
            deltas: vec![],
        },
    )
    .await?;
    drop(registering);
    // Spread the children over one interval, as independent sites would be.
    let every = Duration::from_millis(reg.keepalive_ms);
    let offset = every.mul_f64((i as f64 * 0.618_033_988_7).fract());
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(every);
    // Keepalives from registration on (a silent child goes offline); counted from `start_at`.
    while Instant::now() < end_at {
        tick.tick().await;
        let t0 = Instant::now();
        let counted = t0 >= start_at;
        let r: Result<serde_json::Value, _> = post(
            &http,
            &parent,
            "keepalive",
            &Keepalive {
                session: reg.session,
            },
        )
        .await;
        match r {
            _ if !counted => {}
            Ok(_) => {
                totals.keepalives.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = totals.latencies_us.lock() {
                    l.push(t0.elapsed().as_micros() as u64);
                }
            }
            Err(_) => {
                totals.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn arg(args: &[String], name: &str) -> Result<String, Fail> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .ok_or_else(|| format!("{name} is required").into())
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    vigil_api::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pki") => return pki(args.get(1).ok_or("pki DIR")?),
        Some("run") => {}
        _ => return Err("usage: children_bench pki DIR | run --parent URL --pki DIR --pid PID --children N --seconds S".into()),
    }
    let parent = arg(&args, "--parent")?;
    let dir = arg(&args, "--pki")?;
    let pid: u32 = arg(&args, "--pid")?.parse()?;
    let n: usize = arg(&args, "--children")?.parse()?;
    let secs: u64 = arg(&args, "--seconds")?.parse()?;
    let ca = Arc::new(std::fs::read_to_string(format!("{dir}/ca.crt"))?);
    let key = KeyPair::from_pem(&std::fs::read_to_string(format!("{dir}/ca.key"))?)?;
    let issuer = Arc::new(Issuer::new(ca_params(), key));

    // Baseline: the parent idle (its ChildDomains exist, no child is connected).
    let (cpu0, _) = proc_usage(pid)?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (cpu1, rss1) = proc_usage(pid)?;
    println!(
        "baseline (no child, {secs} s): parent CPU {:.1} % of a core, RSS {:.1} MiB",
        (cpu1 - cpu0) / secs as f64 * 100.0,
        rss1 as f64 / 1048576.0
    );

    // Children: register (at most 50 at a time), then keepalives for `secs` seconds, starting
    // 40 s from now.
    let totals = Arc::new(Totals {
        keepalives: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        latencies_us: std::sync::Mutex::new(Vec::new()),
    });
    let t_reg = Instant::now();
    // Registration of all children must be over by then (checked below).
    let start_at = Instant::now() + Duration::from_secs(40);
    let end_at = start_at + Duration::from_secs(secs);
    let gate = Arc::new(tokio::sync::Semaphore::new(50));
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await?;
        let (p, ca, issuer, totals) = (parent.clone(), ca.clone(), issuer.clone(), totals.clone());
        tasks.push(tokio::spawn(async move {
            child(i, p, ca, issuer, permit, start_at, end_at, totals)
                .await
                .map_err(|e| e.to_string())
        }));
    }
    // Every child has registered once the gate is whole again.
    let _all = gate.acquire_many(50).await?;
    let registered = t_reg.elapsed();
    println!(
        "{n} children registered in {:.1} s",
        registered.as_secs_f64()
    );
    if Instant::now() > start_at {
        return Err("registration took longer than the 40 s warm-up".into());
    }
    tokio::time::sleep_until(start_at.into()).await;
    let (cpu2, _) = proc_usage(pid)?;
    let t2 = Instant::now();
    let mut errors = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if errors < 3 {
                    eprintln!("child failed: {e}");
                }
                errors += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let (cpu3, rss3) = proc_usage(pid)?;
    let window = t2.elapsed().as_secs_f64();
    let mut lat = totals
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let body = serde_json::to_vec(&Keepalive { session: 1 << 50 })?.len();
    println!(
        "{n} children ({errors} failed to start), {window:.0} s of keepalives: {} keepalives ({:.0}/s), {} failed; parent CPU {:.1} % of a core, RSS {:.1} MiB (+{:.1} MiB over the baseline, {:.1} KiB per child); keepalive latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; keepalive body {body} bytes",
        totals.keepalives.load(Ordering::Relaxed),
        totals.keepalives.load(Ordering::Relaxed) as f64 / window,
        totals.failures.load(Ordering::Relaxed),
        (cpu3 - cpu2) / window * 100.0,
        rss3 as f64 / 1048576.0,
        (rss3 as f64 - rss1 as f64) / 1048576.0,
        (rss3 as f64 - rss1 as f64) / 1024.0 / n.max(1) as f64,
        q(0.5),
        q(0.99),
        q(1.0),
    );
    Ok(())
}
