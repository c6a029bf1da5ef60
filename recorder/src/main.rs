//! `vigil-recorder`: the binary of recorder pods (`record`), backfill Jobs (`backfill`), the
//! playback server (`serve`) and the pool CronJobs (`retention`, `audit`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing::error;
use vigil_recorder::config::{
    DEFAULT_BUFFER_DIR, FileConfig, Overrides, Settings, validate_segment_seconds,
};
use vigil_recorder::record::{Source, record};
use vigil_recorder::{Error, kubernetes};

const RECORD_HELP: &str = r#"Records cameras into self-contained fragmented MP4 segments:

  <prefix>/<namespace>/<camera>/<YYYY>/<MM>/<DD>/<HH>/<startMs>-<endMs>-live.mp4
  <prefix>/<namespace>/<camera>/gaps/<startMs>-<endMs>.json   (intervals without footage)

Segments are written to --buffer-dir first (fsync'd per fragment), then uploaded in order, then
deleted; a restart uploads what is left. See docs/storage.md.

FILE MODE (--config cameras.yaml):

  storage:
    local:                          # exactly one of local / s3
      path: /var/lib/vigil/store
    # s3:
    #   bucket: vigil
    #   endpoint: http://127.0.0.1:9000   # omit for AWS
    #   region: us-east-1
    #   pathStyle: true
    #   allowHttp: true                   # default: true iff the endpoint is http://
    prefix: vigil                   # optional key prefix
  segmentSeconds: 10                # optional, 2..600 (default 10)
  buffer:                           # optional; flags override
    dir: /var/lib/vigil/buffer
    maxBytes: 2147483648
  cameras:
    - namespace: default            # optional, default "default"
      name: door                    # lowercase DNS name
      url: rtsp://10.0.0.5:554/Streaming/101
      username: viewer              # optional
      password: secret              # optional; or passwordFile: /run/secrets/door
      transport: tcp                # tcp (default) or udp
      audio: true                   # record AAC audio if present (default true)

  S3 keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).

KUBERNETES MODE (--kubernetes): needs POD_NAME, POD_NAMESPACE and POOL_NAME (downward API),
optionally POD_UID. Records the Cameras labelled vigil.dev/recorder=$POD_NAME, takes storage,
segment length and buffer size from the RecorderPool $POOL_NAME, renews the Lease $POD_NAME.

HTTP (--listen): /healthz, /readyz, /metrics (Prometheus), /status (JSON).
SIGTERM: every camera finishes its segment, uploads continue for --shutdown-timeout, exit 0."#;

#[derive(Parser)]
#[command(
    name = "vigil-recorder",
    version,
    about = "Vigil's recorder: cameras (RTSP) into fMP4 segments in object storage"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"], env = "VIGIL_LOG_FORMAT")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record cameras (file mode or Kubernetes mode).
    #[command(after_long_help = RECORD_HELP)]
    Record(RecordArgs),
    /// Fill a window of a camera's footage from its edge storage (Kubernetes Job or file mode).
    #[command(after_long_help = BACKFILL_HELP)]
    Backfill(BackfillArgs),
    /// Query and playback server: recordings as JSON, HLS, MP4 export, web page at `/`.
    Serve(vigil_recorder::playback::ServeArgs),
    /// Delete footage older than each camera's retention (file mode or `--pool ns/name`).
    Retention(vigil_recorder::retention::RetentionArgs),
    /// Coverage audit of a pool's cameras: writes `status.coverage` and creates an `Audit`
    /// Backfill for each hole that no Backfill covers.
    #[command(after_long_help = AUDIT_HELP)]
    Audit(vigil_recorder::audit::AuditArgs),
}

const AUDIT_HELP: &str = r#"Run by the operator as the CronJob vigil-audit-<pool> (RecorderPool spec.audit), with the
recorders' ServiceAccount: audit --pool <namespace>/<name> [--window-hours 24]

For each Camera of the pool: lists its segments in the store for [now - window, now - settle]
(settle = 2 x segmentSeconds + 60 s: footage still being recorded or uploaded), counts only the
time the camera should have been recording (its schedule; not before it was created plus the
start-up grace; not before its retention cut-off), and applies status.coverage (window, percent,
missingSeconds, expectedSeconds, checkedAt; server-side apply, field manager vigil-audit). For
each hole of at least 1 s that no Backfill (any phase) covers, nor a failover whose new recorder
has not recorded yet, it creates a Backfill with reason Audit named after the hole (holes less
than 5 minutes apart as one; at most 20 per camera per run). A hole reaching the end of the
window while the camera is not recording is left to the live path. Cameras with autoBackfill off
get coverage only.

Exit status 0 when every camera was audited; 1 otherwise (the others are still written)."#;

const BACKFILL_HELP: &str = r#"Lists what the store holds for the window, fetches only the missing intervals from the
camera's edge storage (ONVIF Profile G replay at full speed, or a vendor RTSP playback URL in
real time), writes them as <startMs>-<endMs>-backfill.mp4 segments, re-lists and retries what is
still missing (3 passes), and reports seconds missing before / recovered / lost.

KUBERNETES MODE (the operator's Job): backfill <namespace>/<name> [--bandwidth-mbps N]
  Reads the Backfill, its Camera and RecorderPool; camera credentials from
  VIGIL_CAMERA_USERNAME / VIGIL_CAMERA_PASSWORD; patches the Backfill status.

FILE MODE: backfill --config cameras.yaml --camera ns/name --start RFC3339 --end RFC3339
           (--onvif-device-url URL [--recording-token T] | --playback-template URL [--time-format F])
  Storage (and the camera's credentials) from the record --config file; prints the report as JSON.

Exit status 0 when the run finished (lost seconds are reported, not an error); 1 on faults worth
a retry (camera or store unreachable and nothing recovered)."#;

#[derive(Args)]
struct BackfillArgs {
    /// The Backfill object (Kubernetes mode).
    #[arg(required_unless_present = "config", conflicts_with = "config")]
    target: Option<String>,
    /// Bandwidth cap on what is read from the camera, Mbit/s (0 = none).
    #[arg(long, default_value_t = 0.0)]
    bandwidth_mbps: f64,
    /// File mode: the record --config file (storage, camera credentials).
    #[arg(long, requires_all = ["camera", "start", "end"])]
    config: Option<PathBuf>,
    /// File mode: <namespace>/<name> of the camera.
    #[arg(long)]
    camera: Option<String>,
    /// File mode: window start (RFC 3339).
    #[arg(long)]
    start: Option<chrono::DateTime<chrono::Utc>>,
    /// File mode: window end (RFC 3339).
    #[arg(long)]
    end: Option<chrono::DateTime<chrono::Utc>>,
    /// File mode: ONVIF device service URL.
    #[arg(long)]
    onvif_device_url: Option<String>,
    /// File mode: ONVIF recording token (default: the recording named like the camera, else the first).
    #[arg(long)]
    recording_token: Option<String>,
    /// File mode: RTSP playback URL template with {start} and {end}.
    #[arg(long)]
    playback_template: Option<String>,
    /// File mode: hikvision, dahua or rfc3339.
    #[arg(long, default_value = "hikvision", value_parser = ["hikvision", "dahua", "rfc3339"])]
    time_format: String,
    /// File mode: segment length override.
    #[arg(long)]
    segment_seconds: Option<u32>,
}

async fn run_backfill(a: BackfillArgs) -> Result<(), Error> {
    use vigil_api::PlaybackTimeFormat;
    if let Some(config) = a.config {
        let report = vigil_recorder::backfill::run_file(vigil_recorder::backfill::FileArgs {
            config,
            camera: a.camera.unwrap_or_default(),
            start: a.start.unwrap_or_default(),
            end: a.end.unwrap_or_default(),
            onvif_device_url: a.onvif_device_url,
            recording_token: a.recording_token,
            playback_template: a.playback_template,
            time_format: match a.time_format.as_str() {
                "dahua" => PlaybackTimeFormat::Dahua,
                "rfc3339" => PlaybackTimeFormat::Rfc3339,
                _ => PlaybackTimeFormat::Hikvision,
            },
            bandwidth_mbps: a.bandwidth_mbps,
            segment_seconds: a.segment_seconds,
        })
        .await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let target = a.target.unwrap_or_default();
    vigil_recorder::backfill::k8s::run_job(&target, a.bandwidth_mbps).await?;
    Ok(())
}

#[derive(Args)]
struct RecordArgs {
    /// Camera/storage file (file mode).
    #[arg(
        long,
        conflicts_with = "kubernetes",
        required_unless_present = "kubernetes"
    )]
    config: Option<PathBuf>,
    /// Take cameras and settings from the Kubernetes API.
    #[arg(long)]
    kubernetes: bool,
    /// Address of the health/metrics server.
    #[arg(long, default_value = "0.0.0.0:9090")]
    listen: SocketAddr,
    /// Local buffer directory (segments are written here first). Default: file, else
    /// /var/lib/vigil/buffer.
    #[arg(long, env = "VIGIL_BUFFER_DIR")]
    buffer_dir: Option<PathBuf>,
    /// Buffer limit in bytes; beyond it the oldest unsent footage is dropped (and recorded as
    /// a gap). Default: file / RecorderPool, else 2 GiB.
    #[arg(long)]
    buffer_max_bytes: Option<u64>,
    /// Segment length in seconds (cut on the first keyframe after it). Default: file /
    /// RecorderPool, else 10.
    #[arg(long)]
    segment_seconds: Option<u32>,
    /// Fragment length in ms: how often a segment is appended to and fsync'd, which bounds
    /// what a crash can lose.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=10_000))]
    fragment_ms: u32,
    /// Parallel uploads (at most one per camera).
    #[arg(long, default_value_t = 4)]
    upload_concurrency: usize,
    /// On SIGTERM, keep uploading for this many seconds.
    #[arg(long, default_value_t = 20)]
    shutdown_timeout: u64,
    /// A stream without video for this many seconds is lost.
    #[arg(long, default_value_t = 5)]
    stall_timeout: u64,
    /// Read each camera's socket at most every this many ms (0: wake for every packet), all
    /// cameras on the same ticks. Batching reads costs that much latency and saves more than
    /// half the CPU per stream (docs/benchmarks.md).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=1000))]
    read_batch_ms: u64,
    /// Reconnect backoff: first delay (ms).
    #[arg(long, default_value_t = 500)]
    reconnect_min_ms: u64,
    /// Reconnect backoff: largest delay (ms).
    #[arg(long, default_value_t = 30_000)]
    reconnect_max_ms: u64,
    /// Name in gap records and status. Default: $POD_NAME, else the host name.
    #[arg(long)]
    recorder_name: Option<String>,
}

fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn host_name() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "recorder".into())
}

/// glibc keeps freed memory in per-thread arenas and, after a large buffer is freed, raises its
/// mmap threshold so that the next large buffers come from those arenas too. An S3 upload reads
/// a whole segment (5 MB at 4 Mbit/s) into memory; every blocking thread then held its own 5 MB
/// of freed heap for good (the S3 benchmark's private memory grew with the number of streams).
/// A fixed 1 MiB threshold gives such buffers their own mapping, returned to the kernel on free,
/// and two arenas are plenty for a process that mostly waits.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    match cli.cmd {
        Cmd::Backfill(args) => run_to_exit(&mut runtime, "backfill", run_backfill(args)),
        Cmd::Serve(args) => run_to_exit(&mut runtime, "serve", vigil_recorder::playback::run(args)),
        Cmd::Retention(args) => run_to_exit(
            &mut runtime,
            "retention",
            vigil_recorder::retention::run(args),
        ),
        Cmd::Audit(args) => run_to_exit(&mut runtime, "audit", vigil_recorder::audit::run(args)),
        Cmd::Record(args) => {
            // File work runs on blocking threads, one short job per fragment per camera. Keep
            // them alive between fragments (creating threads costs CPU and private memory) and
            // bound their number (each costs a stack).
            runtime
                .max_blocking_threads(32)
                .thread_keep_alive(Duration::from_secs(120));
            run_to_exit(&mut runtime, "recorder", run_record(args))
        }
    }
}

/// Runs one subcommand to completion on a runtime from `runtime`; logs a failure with its
/// causes and turns it into the exit code.
fn run_to_exit<T>(
    runtime: &mut tokio::runtime::Builder,
    what: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> ExitCode {
    let rt = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %vigil_recorder::error::chain(&e), "{what} failed");
            ExitCode::FAILURE
        }
    }
}

async fn run_record(a: RecordArgs) -> Result<(), Error> {
    let overrides = Overrides {
        segment_seconds: a.segment_seconds,
        buffer_dir: a.buffer_dir.clone(),
        buffer_max_bytes: a.buffer_max_bytes,
    };
    let mut settings = Settings {
        storage: vigil_recorder::config::StorageConfig::Local {
            path: PathBuf::new(),
        },
        prefix: String::new(),
        segment_seconds: 10,
        fragment_ms: a.fragment_ms,
        buffer_dir: a
            .buffer_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BUFFER_DIR)),
        buffer_max_bytes: a
            .buffer_max_bytes
            .unwrap_or(vigil_recorder::config::DEFAULT_BUFFER_MAX_BYTES),
        upload_concurrency: a.upload_concurrency,
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        stall_timeout: Duration::from_secs(a.stall_timeout.max(1)),
        read_batch: Duration::from_millis(a.read_batch_ms),
        reconnect_min: Duration::from_millis(a.reconnect_min_ms.max(10)),
        reconnect_max: Duration::from_millis(a.reconnect_max_ms.max(10)),
        recorder_name: a.recorder_name.clone().unwrap_or_else(host_name),
    };
    let source = if a.kubernetes {
        let (k, pool) = kubernetes::connect().await?;
        settings.storage = pool.storage;
        settings.prefix = pool.prefix;
        settings.segment_seconds =
            validate_segment_seconds(a.segment_seconds.unwrap_or(pool.segment_seconds))?;
        settings.buffer_max_bytes = a.buffer_max_bytes.unwrap_or(pool.buffer_max_bytes);
        settings.recorder_name = a.recorder_name.clone().unwrap_or_else(|| k.pod.clone());
        Source::Kubernetes(Box::new(k))
    } else {
        let path = a
            .config
            .as_ref()
            .ok_or_else(|| Error::Config("--config or --kubernetes is required".into()))?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        let r = FileConfig::parse(&text)?.resolve(&overrides)?;
        settings.storage = r.storage;
        settings.prefix = r.prefix;
        settings.segment_seconds = r.segment_seconds;
        settings.buffer_dir = r.buffer_dir;
        settings.buffer_max_bytes = r.buffer_max_bytes;
        Source::File(r.cameras)
    };
    record(a.listen, settings, source).await
}
