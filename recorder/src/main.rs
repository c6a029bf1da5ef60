//! `vigil-recorder`: the binary of recorder pods (`record`). Backfill Jobs and the pool CronJobs
//! run `vigil-jobs`; the access point runs `vigil-access`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use vigil_config::cli::{init_logs, run_to_exit};
use vigil_config::{DEFAULT_BUFFER_DIR, FileConfig, Overrides, Settings, validate_segment_seconds};
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
SIGTERM: in Kubernetes mode the recorder first drains: its Lease says vigil.dev/draining, and it
keeps recording until the operator has handed every camera to another recorder (which records
its first keyframe before this one lets go), at most --drain-timeout. Then every camera finishes
its segment, uploads continue for --shutdown-timeout, exit 0. A second SIGTERM skips the drain."#;

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
    /// On SIGTERM, keep uploading for this many seconds (after the drain).
    #[arg(long, default_value_t = 20)]
    shutdown_timeout: u64,
    /// Kubernetes mode: on SIGTERM, keep recording for at most this many seconds while the
    /// operator hands the cameras over to other recorders (make-before-break).
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// A stream without video for this many seconds is lost.
    #[arg(long, default_value_t = 5)]
    stall_timeout: u64,
    /// Read each camera's socket at most every this many ms (0: wake for every packet), all
    /// cameras on the same ticks. Batching reads costs that much latency and saves more than
    /// half the CPU per stream (docs/benchmarks.md).
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=1000))]
    read_batch_ms: u64,
    /// Event mode: bytes of complete GOPs of a camera's pre-event buffer kept in memory; older
    /// ones spill to the buffer directory (0: spill all but the GOP being received).
    #[arg(long, default_value_t = vigil_config::DEFAULT_PREBUFFER_MEMORY_BYTES)]
    prebuffer_memory_bytes: usize,
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

async fn run_record(a: RecordArgs) -> Result<(), Error> {
    let overrides = Overrides {
        segment_seconds: a.segment_seconds,
        buffer_dir: a.buffer_dir.clone(),
        buffer_max_bytes: a.buffer_max_bytes,
    };
    let mut settings = Settings {
        storage: vigil_store::StorageConfig::Local {
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
            .unwrap_or(vigil_config::DEFAULT_BUFFER_MAX_BYTES),
        upload_concurrency: a.upload_concurrency,
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        stall_timeout: Duration::from_secs(a.stall_timeout.max(1)),
        read_batch: Duration::from_millis(a.read_batch_ms),
        prebuffer_memory_bytes: a.prebuffer_memory_bytes,
        reconnect_min: Duration::from_millis(a.reconnect_min_ms.max(10)),
        reconnect_max: Duration::from_millis(a.reconnect_max_ms.max(10)),
        recorder_name: a.recorder_name.clone().unwrap_or_else(host_name),
        address_policy: Default::default(),
        site_link: None,
    };
    let source = if a.kubernetes {
        let (mut k, pool) = kubernetes::connect().await?;
        k.drain_timeout = Duration::from_secs(a.drain_timeout);
        settings.storage = pool.storage;
        settings.prefix = pool.prefix;
        settings.segment_seconds =
            validate_segment_seconds(a.segment_seconds.unwrap_or(pool.segment_seconds))?;
        settings.buffer_max_bytes = a.buffer_max_bytes.unwrap_or(pool.buffer_max_bytes);
        settings.address_policy = std::sync::Arc::new(pool.address_policy);
        settings.recorder_name = a.recorder_name.clone().unwrap_or_else(|| k.pod.clone());
        // Cameras at remote sites (`spec.site`), through the chart's rendezvous service with
        // the namespace's recorder token (issue #15). Without it such cameras fail with
        // "no site link"; a link that cannot be built (Secret missing) is the same, logged.
        match vigil_config::site_link_from_env(&k.namespace) {
            Ok(link) => settings.site_link = link,
            Err(e) => {
                tracing::warn!(error = %e, "no site link: cameras at remote sites cannot be recorded")
            }
        }
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
        settings.address_policy = std::sync::Arc::new(r.address_policy);
        settings.site_link = r.site_link;
        Source::File(r.cameras)
    };
    record(a.listen, settings, source).await
}
