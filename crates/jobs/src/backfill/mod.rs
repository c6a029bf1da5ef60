//! `vigil-jobs backfill`: fills a window of one camera's footage from its edge storage.
//!
//! 1. List what the store already holds for the window (live and backfilled segments of the
//!    hours the window touches, plus the hour before it), judged by the frames inside them
//!    ([`crate::content`]: a gap inside a segment or a key misstating its content is missing),
//!    and compute the missing intervals.
//! 2. Fetch only those from the camera (ONVIF replay faster than real time, or a vendor
//!    playback URL in real time) and write them as `backfill` segments in the normal layout.
//! 3. Re-list, retry what is still missing (up to `passes` times), and report honestly.
//!
//! Runs as the operator's Job (`backfill <ns>/<name>`, status patched on the Backfill) or from
//! a file (`backfill --config … --camera … --start … --end …`, report printed as JSON).

pub mod events;
pub mod k8s;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::ObjectStore;
use serde::Serialize;
use tracing::{info, warn};
use url::Url;
use vigil_api::PlaybackTimeFormat;

use crate::error::{Error, Result};
use vigil_api::redact::Credentials;
use vigil_api::redact::{redact_url, split_credentials};
use vigil_media::netguard::Route;
use vigil_media::onvif::{ClientOptions, Device, TlsVerify};
use vigil_media::replay::{self, Throttle, Timing};
use vigil_store::error::chain;
use vigil_store::intervals::{self, Interval, missing, total_seconds};
use vigil_store::layout::CameraId;
use writer::SegmentWriter;

/// Where the camera keeps its own recording.
#[derive(Clone, Debug)]
pub enum EdgeSource {
    Onvif {
        device_url: Url,
        recording_token: Option<String>,
    },
    Playback {
        url_template: String,
        time_format: PlaybackTimeFormat,
    },
    None,
}

/// One backfill run.
pub struct Job {
    pub camera: CameraId,
    pub window: Interval,
    pub source: EdgeSource,
    pub creds: Option<Credentials>,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
    pub segment_seconds: u32,
    pub bandwidth_mbps: f64,
    /// Fetch attempts of what is still missing.
    pub passes: u32,
    pub tolerance_ms: i64,
    /// Read timeout on the camera connection.
    pub read_timeout: Duration,
    /// How the ONVIF device is reached (TLS verification, timeout).
    pub onvif: ClientOptions,
    /// How the camera's services are reached, every connection (ONVIF, replay, playback URLs):
    /// directly, at an address the pool's `cameraNetworks` allow (checked on the resolved
    /// address), or through the camera's site tunnel (issue #15, `docs/sites.md`).
    pub route: Route,
}

/// What the run achieved (the Job's part of the Backfill status).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub seconds_missing_before: f64,
    pub seconds_recovered: f64,
    pub seconds_lost: f64,
    pub still_missing: Vec<Window>,
    pub bytes: u64,
    pub segments_written: usize,
    pub passes: u32,
    pub wall_seconds: f64,
    /// Errors met on the way (redacted), for the operator's conditions and the log.
    pub errors: Vec<String>,
    /// Event intervals the camera's own log (Profile G `FindEvents`) has in the window.
    pub events_found: usize,
    /// Event records written for them (what the store already had is not written again).
    pub events_written: usize,
    /// Event searches that failed or that the camera does not offer; the footage backfill
    /// goes on regardless.
    pub event_search_failures: u32,
    /// Why the last event search failed (redacted), if it did.
    pub event_search_error: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Window {
    pub start: String,
    pub end: String,
}

pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Live progress, shared with the status reporter.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub missing_before_ms: i64,
    pub done_ms: i64,
    pub bytes: u64,
}

impl Progress {
    pub fn percent(&self) -> String {
        if self.missing_before_ms <= 0 {
            return "100%".into();
        }
        let p = (self.done_ms as f64 / self.missing_before_ms as f64 * 100.0).clamp(0.0, 100.0);
        format!("{}%", p.floor() as i64)
    }
}

fn playback_time(ms: i64, f: PlaybackTimeFormat) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    match f {
        PlaybackTimeFormat::Hikvision => t.format("%Y%m%dT%H%M%SZ").to_string(),
        PlaybackTimeFormat::Dahua => t.format("%Y_%m_%d_%H_%M_%S").to_string(),
        PlaybackTimeFormat::Rfc3339 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

/// The playback URL of `[start_ms, end_ms)` (start rounded down, end up to whole seconds).
pub fn playback_url(template: &str, f: PlaybackTimeFormat, start_ms: i64, end_ms: i64) -> String {
    let s = start_ms.div_euclid(1000) * 1000;
    let e = (end_ms + 999).div_euclid(1000) * 1000;
    template
        .replace("{start}", &playback_time(s, f))
        .replace("{end}", &playback_time(e, f))
}

/// Whether a fetch error means "the camera has no footage there" rather than a fault worth
/// retrying (the simulator and many cameras answer PLAY of an empty window with 503/404).
fn is_address_refused(e: &Error) -> bool {
    matches!(
        e,
        Error::Media(vigil_media::Error::AddressNotAllowed { .. })
    )
}

fn is_no_footage(e: &Error) -> bool {
    let s = e.to_string();
    s.contains("answered 503") || s.contains("answered 404") || s.contains("answered 457")
}

/// Fetches one interval into the store. Returns bytes read from the camera.
async fn fetch(
    job: &Job,
    replay_url: &mut Option<(Url, Option<Credentials>)>,
    iv: Interval,
    throttle: &mut Throttle,
    progress: &Arc<Mutex<Progress>>,
    done_before: i64,
) -> Result<(u64, usize)> {
    let mut writer = SegmentWriter::new(
        job.store.clone(),
        &job.prefix,
        job.camera.clone(),
        job.segment_seconds,
    );
    let (url, creds, timing) = match &job.source {
        EdgeSource::None => {
            return Err(Error::Config(
                "the camera has no edge storage configured".into(),
            ));
        }
        EdgeSource::Onvif {
            device_url,
            recording_token,
        } => {
            if replay_url.is_none() {
                let dev = Device::new(
                    device_url.clone(),
                    job.creds.clone(),
                    &job.onvif,
                    job.route.clone(),
                )?;
                let (token, uri) = dev
                    .resolve(recording_token.as_deref(), &job.camera.name)
                    .await?;
                let (clean, inline) = split_credentials(uri);
                info!(recording = %token, replay = %redact_url(&clean), "ONVIF replay URI");
                let creds = job
                    .creds
                    .clone()
                    .or(inline.map(|(username, password)| Credentials { username, password }));
                *replay_url = Some((clean, creds));
            }
            let (u, c) = replay_url.clone().unwrap_or_else(|| unreachable!());
            // Hole edges come from the live recorder's clock, replay times from the camera's;
            // they differ by a few ms. Asking from just inside the hole keeps the replay from
            // starting a whole GOP early when the camera's keyframe falls a hair after the
            // recorder's boundary, and from repeating the next live segment's first frame.
            // A hole that starts where a segment ends starts on a keyframe (segments are cut on
            // keyframes): ask from a little inside it so the camera's copy of that keyframe is
            // the one the replay starts at, then align the replay's clock to the live
            // recorder's there (see `Timing::Onvif`). Frames are kept up to half a frame
            // (25 fps) before the next segment.
            let inside = 100.min(iv.len_ms() / 4).max(0);
            let align = (iv.start > job.window.start).then_some(iv.start);
            (
                u,
                c,
                Timing::Onvif {
                    start_ms: iv.start + if align.is_some() { inside } else { 0 },
                    end_ms: iv.end + 500,
                    clip_end_ms: iv.end - 20.min(iv.len_ms() / 4),
                    align_ms: align,
                },
            )
        }
        EdgeSource::Playback {
            url_template,
            time_format,
        } => {
            let text = playback_url(url_template, *time_format, iv.start, iv.end);
            let u = Url::parse(&text)
                .map_err(|e| Error::Config(format!("playback URL template: {e}")))?;
            let (clean, inline) = split_credentials(u);
            let creds = job
                .creds
                .clone()
                .or(inline.map(|(username, password)| Credentials { username, password }));
            (
                clean,
                creds,
                Timing::Relative {
                    base_ms: iv.start.div_euclid(1000) * 1000,
                    end_ms: iv.end,
                },
            )
        }
    };
    // Real-time playback needs the window's length plus slack; replay is far faster.
    let deadline = Instant::now()
        + Duration::from_millis((iv.len_ms() as u64).saturating_mul(2))
        + Duration::from_secs(120);
    let progress2 = progress.clone();
    let mut sink = ProgressSink {
        inner: &mut writer,
        progress: progress2,
        start: iv.start,
        done_before,
    };
    let r = replay::play(
        &url,
        creds,
        &job.route,
        timing,
        job.read_timeout,
        deadline,
        throttle,
        &mut sink,
    )
    .await;
    // Whatever arrived before an error is still worth keeping.
    let fin = writer.finish().await;
    let stats = r?;
    fin?;
    Ok((stats.bytes, writer.written.len()))
}

struct ProgressSink<'a> {
    inner: &'a mut SegmentWriter,
    progress: Arc<Mutex<Progress>>,
    start: i64,
    done_before: i64,
}

impl replay::Sink for ProgressSink<'_> {
    type Error = crate::Error;

    fn start(&mut self, codec: replay::depack::Codec, fmtp: Option<&str>) -> Result<()> {
        self.inner.start(codec, fmtp)
    }
    async fn frame(&mut self, f: replay::Frame) -> Result<()> {
        let t = f.unix_us / 1000;
        let n = f.data.len() as u64;
        self.inner.frame(f).await?;
        if let Ok(mut p) = self.progress.lock() {
            p.done_ms = self.done_before + (t - self.start).max(0);
            p.bytes += n;
        }
        Ok(())
    }
}

/// Runs the backfill. `Err` only for faults worth a retry (camera or store unreachable and
/// nothing recovered); footage the camera does not have is reported as lost, not an error.
pub async fn run(job: &Job, progress: Arc<Mutex<Progress>>) -> Result<Report> {
    let started = Instant::now();
    let covered = crate::content::covered(job.store.as_ref(), &job.prefix, &job.camera, job.window)
        .await?
        .covered;
    let before = missing(job.window, &covered, job.tolerance_ms);
    let missing_before_ms = intervals::total_ms(&before);
    let mut report = Report {
        seconds_missing_before: total_seconds(&before),
        ..Report::default()
    };
    if let Ok(mut p) = progress.lock() {
        p.missing_before_ms = missing_before_ms;
    }
    info!(
        camera = %job.camera,
        window_start = %rfc3339_ms(job.window.start),
        window_end = %rfc3339_ms(job.window.end),
        missing_s = report.seconds_missing_before,
        intervals = before.len(),
        "backfill: missing before"
    );
    let mut throttle = Throttle::new(job.bandwidth_mbps);
    let mut replay_url = None;
    let mut todo = before.clone();
    let mut transient = 0usize;
    let mut refused = false;
    // Without edge storage there is nothing to fetch: everything missing is lost.
    let passes = if matches!(job.source, EdgeSource::None) {
        0
    } else {
        job.passes.max(1)
    };
    for pass in 1..=passes {
        if todo.is_empty() {
            break;
        }
        report.passes = pass;
        let mut progressed = false;
        let mut done = 0i64;
        for iv in &todo {
            match fetch(job, &mut replay_url, *iv, &mut throttle, &progress, done).await {
                Ok((bytes, segs)) => {
                    report.bytes += bytes;
                    report.segments_written += segs;
                    progressed |= segs > 0;
                }
                Err(e) if is_address_refused(&e) => {
                    // The same address next pass; nothing was or will be connected to.
                    let msg = chain(&e);
                    warn!(error = %msg, "backfill refused by the camera address policy");
                    report.errors.push(msg);
                    refused = true;
                    break;
                }
                Err(e) if is_no_footage(&e) => {
                    info!(start = %rfc3339_ms(iv.start), end = %rfc3339_ms(iv.end), "the camera has no footage here");
                }
                Err(e) => {
                    let msg = chain(&e);
                    warn!(error = %msg, pass, "backfill fetch failed");
                    report.errors.push(msg);
                    transient += 1;
                    // The replay URI may have expired with the session.
                    replay_url = None;
                }
            }
            done += iv.len_ms();
        }
        let covered =
            crate::content::covered(job.store.as_ref(), &job.prefix, &job.camera, job.window)
                .await?
                .covered;
        todo = missing(job.window, &covered, job.tolerance_ms);
        if refused || (!progressed && transient == 0) {
            // The camera has nothing more to give; another pass would fetch the same.
            break;
        }
        if !todo.is_empty() && pass < job.passes && transient > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    if let EdgeSource::Onvif {
        device_url,
        recording_token,
    } = &job.source
        && !refused
    {
        recover_events(job, device_url, recording_token.as_deref(), &mut report).await;
    }
    let lost_ms = intervals::total_ms(&todo);
    report.seconds_lost = lost_ms as f64 / 1000.0;
    report.seconds_recovered = ((missing_before_ms - lost_ms).max(0)) as f64 / 1000.0;
    report.still_missing = todo
        .iter()
        .map(|i| Window {
            start: rfc3339_ms(i.start),
            end: rfc3339_ms(i.end),
        })
        .collect();
    report.wall_seconds = started.elapsed().as_secs_f64();
    if let Ok(mut p) = progress.lock() {
        p.done_ms = missing_before_ms;
    }
    if matches!(job.source, EdgeSource::None) && !before.is_empty() {
        report
            .errors
            .push("the camera has no edge storage configured".into());
    } else if report.seconds_recovered == 0.0 && transient > 0 && lost_ms > 0 {
        return Err(Error::Rtsp(format!(
            "nothing recovered: {}",
            report.errors.last().cloned().unwrap_or_default()
        )));
    }
    info!(
        recovered_s = report.seconds_recovered,
        lost_s = report.seconds_lost,
        bytes = report.bytes,
        segments = report.segments_written,
        wall_s = report.wall_seconds,
        "backfill finished"
    );
    Ok(report)
}

/// Recovers the window's events from the camera's log (see [`events`]). Never fails the
/// backfill: a camera without `FindEvents`, or any other failure, is logged and counted.
async fn recover_events(
    job: &Job,
    device_url: &Url,
    recording_token: Option<&str>,
    report: &mut Report,
) {
    let found = async {
        let dev = Device::new(
            device_url.clone(),
            job.creds.clone(),
            &job.onvif,
            job.route.clone(),
        )?;
        let (search, _) = dev.services().await?;
        let token = dev
            .recording_token(&search, recording_token, &job.camera.name)
            .await?;
        let found = dev
            .find_events(&search, &token, job.window.start, job.window.end)
            .await?;
        Ok::<_, Error>(found)
    }
    .await;
    let outcome = match found {
        Ok(search) => {
            let ivs = events::intervals(&search, job.window);
            match events::write(
                &job.store,
                &job.prefix,
                &job.camera,
                job.window,
                &ivs,
                job.tolerance_ms,
            )
            .await
            {
                Ok(written) => Ok(events::Outcome {
                    found: ivs.len(),
                    written,
                    truncated: search.truncated,
                }),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(o) => {
            events::log_outcome(&o, &job.camera);
            report.events_found = o.found;
            report.events_written = o.written;
        }
        Err(e) => {
            let msg = chain(&e);
            if matches!(e, Error::Media(vigil_media::Error::Unsupported { .. })) {
                info!(camera = %job.camera, error = %msg, "the camera offers no event search; events of the window not recovered");
            } else {
                warn!(camera = %job.camera, error = %msg, "backfill: event search failed; events of the window not recovered");
            }
            report.event_search_failures += 1;
            report.event_search_error = Some(msg);
        }
    }
}

/// Camera credentials from the Job's environment (set from the camera's Secret).
pub fn env_credentials() -> Option<Credentials> {
    let u = std::env::var("VIGIL_CAMERA_USERNAME").ok()?;
    let p = std::env::var("VIGIL_CAMERA_PASSWORD").unwrap_or_default();
    Some(Credentials {
        username: u.trim_end_matches(['\r', '\n']).to_string(),
        password: p.trim_end_matches(['\r', '\n']).to_string(),
    })
}

/// How an HTTPS ONVIF device's certificate is checked, from the Job's environment:
/// `VIGIL_ONVIF_TLS_CA` (PEM text, e.g. from a Secret) or `VIGIL_ONVIF_TLS_CA_FILE` (a path)
/// trusts that CA only; `VIGIL_ONVIF_TLS_INSECURE=true` turns verification off. Default: the
/// system's roots.
pub fn env_onvif_tls() -> Result<TlsVerify> {
    let insecure = std::env::var("VIGIL_ONVIF_TLS_INSECURE")
        .is_ok_and(|v| matches!(v.trim(), "true" | "1" | "yes"));
    let pem = match (
        std::env::var("VIGIL_ONVIF_TLS_CA").ok(),
        std::env::var_os("VIGIL_ONVIF_TLS_CA_FILE"),
    ) {
        (Some(pem), _) if !pem.trim().is_empty() => Some(pem.into_bytes()),
        (_, Some(path)) => Some(std::fs::read(&path).map_err(|e| Error::io("reading", path, e))?),
        _ => None,
    };
    match (pem, insecure) {
        (Some(_), true) => Err(Error::Config(
            "give either an ONVIF TLS CA or VIGIL_ONVIF_TLS_INSECURE, not both".into(),
        )),
        (Some(pem), false) => Ok(TlsVerify::Ca(pem)),
        (None, true) => Ok(TlsVerify::Insecure),
        (None, false) => Ok(TlsVerify::System),
    }
}

/// File mode (component tests, operators' laptops): storage and credentials from a
/// `record --config` file, edge storage from flags.
pub struct FileArgs {
    pub config: std::path::PathBuf,
    pub camera: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub onvif_device_url: Option<String>,
    pub recording_token: Option<String>,
    pub playback_template: Option<String>,
    pub time_format: PlaybackTimeFormat,
    pub bandwidth_mbps: f64,
    pub segment_seconds: Option<u32>,
}

pub async fn run_file(a: FileArgs) -> Result<Report> {
    let text =
        std::fs::read_to_string(&a.config).map_err(|e| Error::io("reading", &a.config, e))?;
    let file = vigil_config::FileConfig::parse(&text)?;
    let resolved = file.resolve(&vigil_config::Overrides {
        segment_seconds: a.segment_seconds,
        buffer_dir: Some(std::env::temp_dir()),
        buffer_max_bytes: None,
    })?;
    let (ns, name) = a
        .camera
        .split_once('/')
        .unwrap_or(("default", a.camera.as_str()));
    let camera = CameraId::new(ns, name)?;
    let site = resolved
        .cameras
        .iter()
        .find(|c| c.id == camera)
        .and_then(|c| c.site.clone());
    // Credentials: the environment (as in the Job), else the file's entry for the camera.
    let creds = env_credentials().or_else(|| {
        resolved
            .cameras
            .iter()
            .find(|c| c.id == camera)
            .and_then(|c| match &c.credentials {
                vigil_config::CredentialSource::Static(c) => Some(c.clone()),
                _ => None,
            })
    });
    let source = match (&a.onvif_device_url, &a.playback_template) {
        (Some(u), None) => EdgeSource::Onvif {
            device_url: Url::parse(u)
                .map_err(|e| Error::Config(format!("--onvif-device-url: {e}")))?,
            recording_token: a.recording_token.clone(),
        },
        (None, Some(t)) => EdgeSource::Playback {
            url_template: t.clone(),
            time_format: a.time_format,
        },
        (None, None) => EdgeSource::None,
        (Some(_), Some(_)) => {
            return Err(Error::Config(
                "give one of --onvif-device-url or --playback-template".into(),
            ));
        }
    };
    if a.end <= a.start {
        return Err(Error::Config("--end must be after --start".into()));
    }
    let job = Job {
        camera,
        window: Interval::new(a.start.timestamp_millis(), a.end.timestamp_millis()),
        source,
        creds,
        store: vigil_store::backend::build(&resolved.storage)?,
        prefix: resolved.prefix,
        segment_seconds: resolved.segment_seconds,
        bandwidth_mbps: a.bandwidth_mbps,
        passes: 3,
        tolerance_ms: intervals::DEFAULT_TOLERANCE_MS,
        read_timeout: Duration::from_secs(15),
        onvif: ClientOptions {
            tls: env_onvif_tls()?,
            ..ClientOptions::default()
        },
        // A camera with a `site` is reached through the file's `siteLink`, as the recorder does.
        route: Route::for_camera(
            Arc::new(resolved.address_policy),
            site.as_deref(),
            resolved.site_link.as_ref(),
        )?,
    };
    run(&job, Arc::new(Mutex::new(Progress::default()))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playback_urls() {
        let t = "rtsp://h/cam/playback?starttime={start}&endtime={end}";
        let s = 1_767_323_045_500; // 2026-01-02T03:04:05.5Z
        assert_eq!(
            playback_url(t, PlaybackTimeFormat::Hikvision, s, s + 10_000),
            "rtsp://h/cam/playback?starttime=20260102T030405Z&endtime=20260102T030416Z"
        );
        assert_eq!(
            playback_url(t, PlaybackTimeFormat::Dahua, s, s + 500),
            "rtsp://h/cam/playback?starttime=2026_01_02_03_04_05&endtime=2026_01_02_03_04_06"
        );
        assert_eq!(
            playback_url(t, PlaybackTimeFormat::Rfc3339, s, s + 500),
            "rtsp://h/cam/playback?starttime=2026-01-02T03:04:05Z&endtime=2026-01-02T03:04:06Z"
        );
    }

    #[test]
    fn progress_text() {
        let p = Progress {
            missing_before_ms: 1000,
            done_ms: 425,
            bytes: 0,
        };
        assert_eq!(p.percent(), "42%");
    }
}
