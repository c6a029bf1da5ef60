//! `vigil-jobs`: the binary of backfill Jobs (`backfill`) and of each pool's CronJobs
//! (`audit`, `retention`). Runs to completion; the exit status says whether to retry.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vigil_config::cli::{init_logs, run_to_exit};
use vigil_jobs::Error;

#[derive(Parser)]
#[command(
    name = "vigil-jobs",
    version,
    about = "Vigil's jobs: backfill from edge storage, coverage audit, retention"
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
    /// Fill a window of a camera's footage from its edge storage (Kubernetes Job or file mode).
    #[command(after_long_help = BACKFILL_HELP)]
    Backfill(BackfillArgs),
    /// Delete footage older than each camera's retention (file mode or `--pool ns/name`).
    Retention(vigil_jobs::retention::RetentionArgs),
    /// Coverage audit of a pool's cameras: writes `status.coverage` and creates an `Audit`
    /// Backfill for each hole that no Backfill covers.
    #[command(after_long_help = AUDIT_HELP)]
    Audit(vigil_jobs::audit::AuditArgs),
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
        let report = vigil_jobs::backfill::run_file(vigil_jobs::backfill::FileArgs {
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
    vigil_jobs::backfill::k8s::run_job(&target, a.bandwidth_mbps).await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    match cli.cmd {
        Cmd::Backfill(args) => run_to_exit(&mut runtime, "backfill", run_backfill(args)),
        Cmd::Retention(args) => {
            run_to_exit(&mut runtime, "retention", vigil_jobs::retention::run(args))
        }
        Cmd::Audit(args) => run_to_exit(&mut runtime, "audit", vigil_jobs::audit::run(args)),
    }
}
