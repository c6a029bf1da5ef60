//! Real processes for end-to-end tests: the GStreamer camera simulator, the operator and
//! recorders running as processes against the cluster in `KUBECONFIG` (each recorder renews its
//! Lease and watches the cameras labelled with its name, exactly as in a pod).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, built_binary, repo_root};

/// The camera simulator with its ports.
pub struct Simulator {
    pub rtsp_port: u16,
    pub control_port: u16,
    _child: ChildGuard,
}

impl Simulator {
    /// Starts the simulator on loopback with the given `--camera` specs; `sd_dir` enables its
    /// SD card.
    pub fn start(cameras: &[String], sd_dir: Option<&Path>) -> Simulator {
        let log = std::env::temp_dir().join("vigil-e2e-camera-sim.log");
        Simulator::start_on("127.0.0.1", cameras, sd_dir, &log)
    }

    /// Starts the simulator on `bind` (e.g. the host address pods reach), logging to `log`.
    pub fn start_on(
        bind: &str,
        cameras: &[String],
        sd_dir: Option<&Path>,
        log: &Path,
    ) -> Simulator {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(repo_root().join("e2e/camera-sim/camera_sim.py"))
            .args(["--bind", bind, "--rtsp-port", "0", "--control-port", "0"]);
        for c in cameras {
            cmd.args(["--camera", c]);
        }
        if let Some(dir) = sd_dir {
            cmd.arg("--sd-dir").arg(dir);
        }
        let log = std::fs::File::create(log).expect("sim log");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/python3 camera_sim.py");
        let stdout = child.stdout.take().expect("sim stdout");
        let guard = ChildGuard(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("camera simulator READY within 60 s");
        let port = |key: &str| -> u16 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line:?}"))
        };
        Simulator {
            rtsp_port: port("rtsp="),
            control_port: port("control="),
            _child: guard,
        }
    }

    pub fn live_url(&self, camera: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{camera}/live", self.rtsp_port)
    }
}

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
        let buffer_dir = work.join(format!("buffer-{name}"));
        std::fs::create_dir_all(&buffer_dir).expect("buffer dir");
        let log = std::fs::File::create(work.join(format!("{name}.log"))).expect("recorder log");
        let child = Command::new(built_binary("vigil-recorder"))
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
    let child = Command::new(built_binary("vigil-operator"))
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

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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
