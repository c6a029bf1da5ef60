//! Real processes for end-to-end tests: the operator and recorders running as processes
//! against the cluster in `KUBECONFIG` (each recorder renews its
//! Lease and watches the cameras labelled with its name, exactly as in a pod).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin;
use crate::k8s::ChildGuard;

/// A `vigil-recorder record --kubernetes` process posing as pod `name` of `pool`.
pub struct RecorderProcess {
    pub name: String,
    pub metrics_port: u16,
    pub buffer_dir: PathBuf,
    pub child: ChildGuard,
}

impl RecorderProcess {
    pub fn start(
        namespace: &str,
        pool: &str,
        name: &str,
        metrics_port: u16,
        work: &Path,
    ) -> RecorderProcess {
        Self::start_with_env(namespace, pool, name, metrics_port, work, &[])
    }

    /// As [`RecorderProcess::start`], with more environment (e.g. `VIGIL_LIVE_TOKEN_FILE`).
    pub fn start_with_env(
        namespace: &str,
        pool: &str,
        name: &str,
        metrics_port: u16,
        work: &Path,
        env: &[(String, std::ffi::OsString)],
    ) -> RecorderProcess {
        let buffer_dir = work.join(format!("buffer-{name}"));
        std::fs::create_dir_all(&buffer_dir).expect("buffer dir");
        let log = std::fs::File::create(work.join(format!("{name}.log"))).expect("recorder log");
        let child = Command::new(bin("vigil-recorder"))
            .args([
                "record",
                "--kubernetes",
                "--listen",
                &format!("127.0.0.1:{metrics_port}"),
            ])
            .arg("--buffer-dir")
            .arg(&buffer_dir)
            .env("POD_NAME", name)
            .env("POD_NAMESPACE", namespace)
            .env("POOL_NAME", pool)
            .env("RUST_LOG", "info,kube=warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vigil-recorder");
        RecorderProcess {
            name: name.into(),
            metrics_port,
            buffer_dir,
            child: ChildGuard(child),
        }
    }

    /// Bytes this recorder has received from `camera` (its Prometheus counter), if any.
    pub fn bytes_in(&self, camera: &str) -> Option<f64> {
        let body = http_get(&format!("127.0.0.1:{}", self.metrics_port), "/metrics")?;
        body.lines()
            .filter(|l| {
                l.contains("bytes_in")
                    && l.contains(&format!("camera=\"{camera}\""))
                    && !l.starts_with('#')
            })
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    }
}

/// `vigil-operator run` with leader election in `namespace`.
pub fn start_operator(
    namespace: &str,
    identity: &str,
    port: u16,
    work: &Path,
    extra_args: &[&str],
) -> ChildGuard {
    let log = std::fs::File::create(work.join(format!("{identity}.log"))).expect("operator log");
    let child = Command::new(bin("vigil-operator"))
        .args([
            "run",
            "--namespace",
            namespace,
            "--watch-namespace",
            namespace,
            "--identity",
            identity,
            "--resync-ms",
            "250",
        ])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--recorder-image",
            "localhost/vigil/recorder:dev",
        ])
        .args(extra_args)
        .env("RUST_LOG", "info,kube=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vigil-operator");
    ChildGuard(child)
}

/// A minimal HTTP/1.0 GET on loopback (metrics scraping without an HTTP client dependency).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500))
            .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Polls `probe` every 50 ms (blocking) until it is true; the elapsed time, or None on timeout.
pub fn time_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if probe() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Size of the segment being recorded for `camera` in a recorder's buffer (the `.part` file
/// fsync'd once per fragment): the first new segment bytes after a failover.
pub fn partial_segment_bytes(buffer_dir: &Path, namespace: &str, camera: &str) -> u64 {
    let dir = buffer_dir.join("partial").join(namespace).join(camera);
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Segment objects (`.mp4`) of `camera` in a local-directory store.
pub fn stored_segments(store: &Path, namespace: &str, camera: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "mp4") {
                out.push(p);
            }
        }
    }
    let mut out = vec![];
    walk(&store.join(namespace).join(camera), &mut out);
    out.sort();
    out
}

/// One failover measured: camera, from, to, seconds from SIGKILL to its first segment bytes
/// on the new recorder, and seconds from SIGKILL to the operator's reassignment (the part the
/// operator controls; the rest is the camera answering RTSP and sending a keyframe).
#[derive(Debug, Clone)]
pub struct FailoverSample {
    pub camera: String,
    pub from: String,
    pub to: String,
    pub seconds: f64,
    pub reassigned_seconds: f64,
}

/// Percentile (nearest rank) of `values`, which need not be sorted.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}
