//! `vigil-jobs audit --pool <ns>/<name>`: the periodic coverage audit, run by the operator
//! as a CronJob per pool (`spec.audit`).
//!
//! For each Camera of the pool it lists the segments of the recent window in the store, reads
//! the frame timing of those of the last `--content-hours` (their `moof` boxes,
//! [`crate::content`]; older ones count by their keys, earlier runs judged their frames),
//! computes how much of the time the camera should have been recording the frames
//! cover (a gap inside a segment or a key misstating its content is a hole like time between
//! keys), writes that to
//! `status.coverage`, and creates a Backfill with reason `Audit` for every hole that no Backfill
//! accounts for yet, named after the camera and the hole's window like every hole's Backfill
//! ([`vigil_api::hole_backfill_name`]), so a hole reported twice is one Backfill.
//!
//! What counts as expected (pure, [`expected`]):
//! * the window `[now − windowHours, now − settle)`, where the settle margin
//!   ([`settle_ms`], `2 × segmentSeconds + 60 s`) leaves out footage that may still be in a
//!   segment being recorded or in a recorder's upload queue;
//! * only while the camera's schedule says to record (`Off` cameras expect nothing), minus a
//!   start-up grace after every schedule window opens (the operator must assign the camera and
//!   the recorder connect and wait for a keyframe; the recorder does not report that start-up
//!   gap either);
//! * not before the camera existed (plus the same grace), nor before its retention cut-off.
//!
//! Holes up to one frame (100 ms) are segment-boundary jitter, not missing footage. A hole is
//! reported when it is at least [`MIN_REPORT_MS`] long after removing what existing Backfills
//! (any phase: a Failed one already reported its lost seconds) and a failover whose new recorder
//! has not reported footage yet (it creates that hole's Backfill itself) cover; holes less than [`REPORT_JOIN_MS`] apart are reported as one window (the backfill job
//! fetches only what is missing inside it). A hole reaching the end of the window while the
//! camera is not recording is left to the live path, which reports it when the stream returns;
//! otherwise a camera that stays offline would get a new Backfill every run.
//!
//! `status.coverage` is written with server-side apply under the audit's own field manager
//! ([`CameraStatusWriter::Audit`]): the audit owns that field alone, so no read-modify-write.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use object_store::ObjectStore;
use serde::Serialize;
use tracing::{info, warn};
use vigil_api::{
    Backfill, BackfillReason, Camera, CameraConditionType, CameraStatusWriter, ConditionStatus,
    Coverage, TimeWindow, camera_status_apply_body, find_condition,
};

use crate::content;
use crate::error::{Error, Result};
use vigil_store::catalog::Catalog;
use vigil_store::gaps::rfc3339;
use vigil_store::holes::{self, Hole, Reported};
use vigil_store::intervals::{self, DEFAULT_TOLERANCE_MS, Interval};
use vigil_store::layout::CameraId;

/// Holes shorter than this are not reported (jitter between two recorders' timelines, a lost
/// frame): a Backfill is worth it for at least a second of footage.
pub const MIN_REPORT_MS: i64 = 1_000;
/// Holes closer together than this are reported as one Backfill (one SD-card read).
pub const REPORT_JOIN_MS: i64 = 5 * 60_000;
/// At most this many Backfills are created for one camera per run; the rest wait for the next run.
pub const MAX_REPORTS_PER_RUN: usize = 20;

/// The settle margin: footage younger than this may still be in a segment being recorded
/// (up to `segmentSeconds` plus a GOP) or waiting in a recorder's upload queue, so it is not
/// audited yet. Two segment lengths plus a minute.
pub fn settle_ms(segment_seconds: u32) -> i64 {
    2 * i64::from(segment_seconds) * 1000 + 60_000
}

/// The parts of `window` the camera should have been recording: the schedule's recording
/// intervals (`recording`, computed from `startup_grace_ms` before the window on, so that a
/// window opening inside the audit window can be told from one clipped by it) each shortened
/// by the start-up grace at its start, clipped to the window and to `not_before_ms`.
pub fn expected(
    window: Interval,
    recording: &[Interval],
    not_before_ms: i64,
    startup_grace_ms: i64,
) -> Vec<Interval> {
    let start = window.start.max(not_before_ms);
    intervals::merge(
        intervals::merge(recording.to_vec())
            .iter()
            .map(|r| {
                Interval::new(
                    r.start.saturating_add(startup_grace_ms.max(0)).max(start),
                    r.end.min(window.end),
                )
            })
            .collect(),
    )
}

/// Coverage of one camera over the audit window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraCoverage {
    pub window: Interval,
    pub expected_ms: i64,
    pub covered_ms: i64,
    /// Holes longer than the tolerance inside the expected time, in order.
    pub missing: Vec<Interval>,
}

impl CameraCoverage {
    pub fn missing_ms(&self) -> i64 {
        intervals::total_ms(&self.missing)
    }

    /// `99.97%`, rounded down so that `100.00%` means nothing is missing; `n/a` when nothing
    /// was expected.
    pub fn percent_text(&self) -> String {
        if self.expected_ms <= 0 {
            return "n/a".into();
        }
        let hundredths = (i128::from(self.covered_ms) * 10_000 / i128::from(self.expected_ms))
            .clamp(0, 10_000) as i64;
        format!("{}.{:02}%", hundredths / 100, hundredths % 100)
    }
}

/// What the store holds of `expected` (from [`expected`]) given the camera's segment intervals
/// (live and backfilled, overlapping or not). Holes of at most `tolerance_ms` count as covered.
pub fn coverage(
    window: Interval,
    expected: &[Interval],
    segments: &[Interval],
    tolerance_ms: i64,
) -> CameraCoverage {
    let expected = intervals::merge(expected.to_vec());
    let segments = intervals::merge(segments.to_vec());
    let missing: Vec<Interval> = expected
        .iter()
        .flat_map(|e| intervals::missing(*e, &segments, tolerance_ms))
        .collect();
    let expected_ms = intervals::total_ms(&expected);
    CameraCoverage {
        window,
        expected_ms,
        covered_ms: expected_ms - intervals::total_ms(&missing),
        missing,
    }
}

/// Where the content window starts: the last `content_hours` of `window` (see
/// [`AuditArgs::content_hours`]); `window.end` when 0 (nothing judged by frames).
pub fn content_from(window: Interval, content_hours: u32) -> i64 {
    window
        .end
        .saturating_sub(i64::from(content_hours) * 3_600_000)
        .max(window.start)
}

/// The part of the holes that lies inside segment keys: holes only the frames show (gaps
/// inside segments, keys misstating their content, unreadable segments).
pub fn content_holes(c: &CameraCoverage, keys: &[Interval]) -> Vec<Interval> {
    let keys = intervals::merge(keys.to_vec());
    let mut out: Vec<Interval> = c
        .missing
        .iter()
        .flat_map(|h| {
            keys.iter()
                .map(|k| Interval::new(h.start.max(k.start), h.end.min(k.end)))
                .filter(|i| !i.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    intervals::merge(out)
}

/// The windows to report as `Audit` Backfills: holes minus what `known` (existing Backfills'
/// windows, a pending failover) covers, pieces of at least `min_ms`, neighbours closer than
/// `join_ms` joined, at most `max` of them (oldest first). With `defer_trailing`, a hole that
/// reaches the end of the window is left out.
pub fn to_report(
    c: &CameraCoverage,
    known: &[Interval],
    min_ms: i64,
    join_ms: i64,
    defer_trailing: bool,
    max: usize,
) -> Vec<Interval> {
    let mut pieces: Vec<Interval> = Vec::new();
    for h in &c.missing {
        if defer_trailing && h.end >= c.window.end {
            continue;
        }
        pieces.extend(
            intervals::subtract(*h, known)
                .into_iter()
                .filter(|p| p.len_ms() >= min_ms),
        );
    }
    pieces.sort();
    let mut out: Vec<Interval> = Vec::new();
    for p in pieces {
        match out.last_mut() {
            Some(last) if p.start - last.end < join_ms => last.end = last.end.max(p.end),
            _ => out.push(p),
        }
    }
    out.truncate(max);
    out
}

/// True when the store has no segment of the camera in the whole window although its recorder
/// reported footage ending after the window's start (`status.lastSegmentTime`): the audit is
/// probably looking at the wrong store (prefix, mount), or uploads are stuck; reporting the
/// whole window as holes would only start Backfills of footage that may well exist. (A camera
/// that just came back after a day offline has its hole reported by the next run, once its new
/// footage is older than the settle margin.)
pub fn store_looks_wrong(
    c: &CameraCoverage,
    segments: &[Interval],
    last_segment_ms: Option<i64>,
) -> bool {
    segments.is_empty() && c.expected_ms > 0 && last_segment_ms.is_some_and(|t| t > c.window.start)
}

/// Windows the failure path already handles for `camera`: its Backfills (any phase), and a
/// failover whose new recorder has not reported footage yet ([`holes::pending_failover`]): from
/// the failover's safe point to the end of time, since that recorder creates the Backfill when
/// it records.
pub fn known_windows(camera: &Camera, backfills: &[Backfill]) -> Vec<Interval> {
    let mut v = holes::backfill_windows(&camera.name_any(), backfills);
    if let Some(f) = holes::pending_failover(camera) {
        v.push(Interval::new(
            f.footage_safe_until.timestamp_millis(),
            i64::MAX,
        ));
    }
    intervals::merge(v)
}

fn time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| Error::Config(format!("time {ms} ms is out of range")))
}

/// The `status.coverage` object.
pub fn coverage_status(c: &CameraCoverage, now_ms: i64) -> Result<Coverage> {
    Ok(Coverage {
        window: TimeWindow {
            start: time(c.window.start)?,
            end: time(c.window.end)?,
        },
        percent: c.percent_text(),
        missing_seconds: c.missing_ms() as f64 / 1000.0,
        expected_seconds: c.expected_ms as f64 / 1000.0,
        checked_at: time(now_ms)?,
    })
}

/// The audit's part of a Camera's status: `coverage` only.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct AuditCameraStatus<'a> {
    pub coverage: &'a Coverage,
}

/// The server-side-apply body writing `coverage` for camera `name`.
pub fn coverage_apply_body(name: &str, coverage: &Coverage) -> serde_json::Value {
    camera_status_apply_body(name, &AuditCameraStatus { coverage })
}

#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// The RecorderPool (`namespace/name`) whose cameras are audited.
    #[arg(long)]
    pub pool: String,
    /// How far back to look, hours.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub window_hours: u32,
    /// Footage younger than this is not audited yet. Default: 2 × segmentSeconds + 60.
    #[arg(long)]
    pub settle_seconds: Option<u32>,
    /// Time after a camera is created or its schedule window opens that is not expected to be
    /// recorded (assignment, connection, first keyframe).
    #[arg(long, default_value_t = 60)]
    pub startup_grace_seconds: u32,
    /// Cameras audited at once (each lists its window's hour directories 8 at a time).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// Compute and log, but write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Judge the segments of the last N hours of the window by their frame timing (one small
    /// range read per fragment), older ones by their keys alone. 0: keys only (misses holes
    /// inside segments and keys that misstate their content). Runs every 15 min (the default
    /// schedule) judge every segment by its frames about 4 times with the default.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=720))]
    pub content_hours: u32,
    /// "Now" in Unix milliseconds (tests); default: the clock.
    #[arg(long, hide = true)]
    pub now_ms: Option<i64>,
}

/// What a run did, over all cameras.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub cameras: u64,
    pub holes: u64,
    pub missing_ms: i64,
    pub reported: u64,
    pub errors: u64,
    /// Of `missing_ms`, what lies inside segment keys (found by reading the frames).
    pub inside_ms: i64,
}

struct Ctx<'a> {
    client: Client,
    api: Api<Camera>,
    catalog: Catalog,
    backfills: &'a [Backfill],
    window: Interval,
    grace_ms: i64,
    now_ms: i64,
    dry_run: bool,
    /// Segments ending after this are judged by their frames.
    content_from: i64,
}

/// `vigil-jobs audit`.
pub async fn run(a: AuditArgs) -> Result<Summary> {
    vigil_api::install_crypto_provider();
    let (ns, name) = vigil_store::pool_store::parse_ref(&a.pool)?;
    let client = Client::try_default().await?;
    let (pool, storage, prefix) =
        vigil_store::pool_store::get_pool_storage(&client, &ns, &name).await?;
    // An empty store would look like 100 % missing footage and a Backfill for every camera:
    // a local store that is not there (volume not mounted) is an error, not an empty store.
    if let vigil_store::StorageConfig::Local { path } = &storage
        && !path.is_dir()
    {
        return Err(Error::Config(format!(
            "store directory {} does not exist (is the pool's volume mounted here?)",
            path.display()
        )));
    }
    let store: Arc<dyn ObjectStore> = vigil_store::backend::build(&storage)?;
    let now_ms = a.now_ms.unwrap_or_else(|| Utc::now().timestamp_millis());
    let settle = a.settle_seconds.map_or_else(
        || settle_ms(pool.spec.segment_seconds),
        |s| i64::from(s) * 1000,
    );
    let window = Interval::new(
        now_ms - i64::from(a.window_hours) * 3_600_000,
        now_ms - settle,
    );
    info!(pool = %a.pool, storage = %storage.describe(), start = %rfc3339(window.start),
          end = %rfc3339(window.end), settle_seconds = settle / 1000, dry_run = a.dry_run,
          "coverage audit");
    let api: Api<Camera> = Api::namespaced(client.clone(), &ns);
    let mut cameras: Vec<Camera> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.spec.pool == name)
        .collect();
    cameras.sort_by_key(|c| c.name_any());
    let backfills = Api::<Backfill>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items;
    let ctx = Ctx {
        client: client.clone(),
        api,
        catalog: Catalog::new(store, &prefix),
        backfills: &backfills,
        window,
        grace_ms: i64::from(a.startup_grace_seconds) * 1000,
        now_ms,
        dry_run: a.dry_run,
        content_from: content_from(window, a.content_hours),
    };
    let mut total = Summary::default();
    let ctx = &ctx;
    let mut results = futures::stream::iter(
        cameras
            .iter()
            .map(|cam| async move { (cam, audit_camera(ctx, cam).await) }),
    )
    .buffer_unordered(a.concurrency as usize);
    while let Some((cam, result)) = results.next().await {
        total.cameras += 1;
        match result {
            Ok((c, reported, inside_ms)) => {
                total.holes += c.missing.len() as u64;
                total.inside_ms += inside_ms;
                total.missing_ms += c.missing_ms();
                total.reported += reported;
            }
            Err(e) => {
                total.errors += 1;
                warn!(camera = %cam.name_any(), error = %vigil_store::error::chain(&e), "audit of this camera failed");
            }
        }
    }
    info!(
        cameras = total.cameras,
        holes = total.holes,
        missing_seconds = total.missing_ms as f64 / 1000.0,
        reported = total.reported,
        errors = total.errors,
        "coverage audit done"
    );
    // One line on stdout as well, for CronJob logs and scripts.
    println!(
        "audit: cameras={} holes={} missing_seconds={:.3} reported={} errors={} inside_segments_seconds={:.3}",
        total.cameras,
        total.holes,
        total.missing_ms as f64 / 1000.0,
        total.reported,
        total.errors,
        total.inside_ms as f64 / 1000.0
    );
    if total.errors > 0 {
        return Err(Error::Config(format!(
            "{} of {} cameras could not be audited",
            total.errors, total.cameras
        )));
    }
    Ok(total)
}

/// The schedule's recording intervals over `[from, to)`, in ms.
fn recording_ms(cam: &Camera, from: i64, to: i64) -> Result<Vec<Interval>> {
    Ok(
        vigil_api::schedule::recording_intervals(&cam.spec.recording, time(from)?, time(to)?)
            .into_iter()
            .map(|(a, b)| Interval::new(a.timestamp_millis(), b.timestamp_millis()))
            .collect(),
    )
}

async fn audit_camera(ctx: &Ctx<'_>, cam: &Camera) -> Result<(CameraCoverage, u64, i64)> {
    let name = cam.name_any();
    let id = CameraId::new(&cam.namespace().unwrap_or_default(), &name)?;
    let w = ctx.window;
    let created = cam
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(w.start, |t| t.0.as_millisecond());
    let not_before = created
        .saturating_add(ctx.grace_ms)
        .max(crate::retention::cutoff(
            ctx.now_ms,
            cam.spec.retention.days,
        ));
    let recording = recording_ms(cam, w.start - ctx.grace_ms, w.end)?;
    let expected = expected(w, &recording, not_before, ctx.grace_ms);
    let list_window = Interval::new(w.start, w.end.max(w.start + 1));
    let judged = if expected.is_empty() {
        content::Content::default()
    } else {
        let listed = ctx.catalog.segments(&id, list_window).await?;
        // Segments ending inside the content window are judged by their frames, older ones
        // by their keys (earlier runs judged them by frames; see `--content-hours`).
        let (by_frames, by_keys): (Vec<_>, Vec<_>) = listed
            .into_iter()
            .partition(|(k, _)| k.end_ms > ctx.content_from);
        let mut c =
            content::judge_listed(ctx.catalog.store.as_ref(), &ctx.catalog.prefix, by_frames)
                .await?;
        let keys: Vec<Interval> = by_keys
            .iter()
            .map(|(k, _)| Interval::new(k.start_ms, k.end_ms))
            .collect();
        c.covered = intervals::merge([c.covered, keys.clone()].concat());
        c.keys = intervals::merge([c.keys, keys].concat());
        c
    };
    let segments = &judged.keys;
    // Coverage is what the frames cover: a hole inside a segment, or a segment whose key
    // misstates its content, is missing footage like time between keys.
    let c = coverage(w, &expected, &judged.covered, DEFAULT_TOLERANCE_MS);
    let inside = content_holes(&c, &judged.keys);
    let cov = coverage_status(&c, ctx.now_ms)?;
    let last_segment_ms = cam
        .status
        .as_ref()
        .and_then(|s| s.last_segment_time)
        .map(|t| t.timestamp_millis());
    let suspicious = store_looks_wrong(&c, segments, last_segment_ms);
    if suspicious {
        warn!(camera = %id, last_segment = %rfc3339(last_segment_ms.unwrap_or_default()),
              "the store holds nothing of this camera in the window although its recorder reported \
               footage in it: not reporting holes (wrong storage settings, or a store outage)");
    }
    let recording_now = cam.status.as_ref().is_some_and(|s| {
        find_condition(&s.conditions, CameraConditionType::Recording.as_str())
            .is_some_and(|r| r.status == ConditionStatus::True)
    });
    let report = if cam.spec.auto_backfill && !suspicious {
        to_report(
            &c,
            &known_windows(cam, ctx.backfills),
            MIN_REPORT_MS,
            REPORT_JOIN_MS,
            !recording_now,
            MAX_REPORTS_PER_RUN,
        )
    } else {
        // No Backfills wanted (the coverage still tells), or the store looks wrong.
        Vec::new()
    };
    info!(camera = %id, percent = %cov.percent, expected_seconds = cov.expected_seconds,
          missing_seconds = cov.missing_seconds, holes = c.missing.len(),
          holes_inside_segments = inside.len(),
          seconds_inside_segments = intervals::total_ms(&inside) as f64 / 1000.0,
          to_report = report.len(), "coverage");
    if ctx.dry_run {
        for h in &report {
            info!(camera = %id, start = %rfc3339(h.start), end = %rfc3339(h.end),
                  seconds = h.len_ms() as f64 / 1000.0, "hole would be reported (dry run)");
        }
        return Ok((c, report.len() as u64, intervals::total_ms(&inside)));
    }
    ctx.api
        .patch_status(
            &name,
            &PatchParams::apply(CameraStatusWriter::Audit.field_manager()).force(),
            &Patch::Apply(coverage_apply_body(&name, &cov)),
        )
        .await?;
    let mut reported = 0u64;
    for window in report {
        let hole = Hole {
            camera: name.clone(),
            window,
            reason: BackfillReason::Audit,
        };
        match holes::report_hole(&ctx.client, cam, &hole).await? {
            Reported::Created(_) | Reported::Existed(_) => reported += 1,
            Reported::NotWanted | Reported::Invalid => {}
        }
    }
    Ok((c, reported, intervals::total_ms(&inside)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000;
    const H: i64 = 3_600_000;

    fn iv(s: i64, e: i64) -> Interval {
        Interval::new(s, e)
    }

    /// 10 s segments tiling `[from, to)`.
    fn tiles(from: i64, to: i64) -> Vec<Interval> {
        let mut v = Vec::new();
        let mut t = from;
        while t < to {
            v.push(iv(t, (t + 10_000).min(to)));
            t += 10_000;
        }
        v
    }

    #[test]
    fn content_window_and_holes_inside_keys() {
        let w = iv(0, 24 * H);
        assert_eq!(content_from(w, 1), 23 * H);
        assert_eq!(content_from(w, 0), 24 * H, "0: keys only");
        assert_eq!(content_from(w, 48), 0, "never before the window");
        // Keys tile [0, 30 s) except [10 s, 12 s); the frames show a hole at [20 s, 24 s).
        let keys = vec![iv(0, 10_000), iv(12_000, 30_000)];
        let frames = vec![iv(0, 10_000), iv(12_000, 20_000), iv(24_000, 30_000)];
        let c = coverage(
            iv(0, 30_000),
            &[iv(0, 30_000)],
            &frames,
            DEFAULT_TOLERANCE_MS,
        );
        assert_eq!(c.missing, vec![iv(10_000, 12_000), iv(20_000, 24_000)]);
        assert_eq!(content_holes(&c, &keys), vec![iv(20_000, 24_000)]);
        // Both are reported like any hole.
        assert_eq!(
            to_report(&c, &[], MIN_REPORT_MS, 1_000, false, 20),
            c.missing
        );
    }

    #[test]
    fn settle_margin() {
        assert_eq!(settle_ms(10), 80_000);
        assert_eq!(settle_ms(600), 1_260_000);
    }

    #[test]
    fn one_hole_in_a_continuous_day() {
        let w = iv(0, 24 * H);
        let e = expected(w, &[iv(-MIN, 24 * H)], i64::MIN, MIN);
        assert_eq!(e, vec![w], "a window clipped by the audit keeps its start");
        let mut segs = tiles(-20_000, 10 * H);
        segs.extend(tiles(10 * H + 95_000, 25 * H));
        let c = coverage(w, &e, &segs, DEFAULT_TOLERANCE_MS);
        assert_eq!(c.missing, vec![iv(10 * H, 10 * H + 95_000)]);
        assert_eq!(c.expected_ms, 24 * H);
        assert_eq!(c.covered_ms, 24 * H - 95_000);
        assert_eq!(c.percent_text(), "99.89%");
        assert_eq!(
            to_report(&c, &[], MIN_REPORT_MS, REPORT_JOIN_MS, false, 20),
            c.missing
        );
    }

    #[test]
    fn overlaps_and_jitter_are_not_holes() {
        let w = iv(0, H);
        // Two recorders overlapping, a backfill meeting live footage 40 ms late.
        let segs = vec![iv(0, 1_800_000), iv(1_700_000, 2_000_000), iv(2_000_040, H)];
        let c = coverage(w, &[w], &segs, DEFAULT_TOLERANCE_MS);
        assert!(c.missing.is_empty());
        assert_eq!(c.covered_ms, H);
        assert_eq!(c.percent_text(), "100.00%");
        // 99.999 % is not rounded up to 100.
        let c = coverage(w, &[w], &[iv(0, H - 150)], DEFAULT_TOLERANCE_MS);
        assert_eq!(c.percent_text(), "99.99%");
        assert_eq!(c.missing_ms(), 150);
    }

    #[test]
    fn schedule_off_time_is_not_expected() {
        // Recording 08:00–18:00 only; footage only then, with a hole at 12:00.
        let w = iv(0, 24 * H);
        let sched = vec![iv(8 * H, 18 * H)];
        let e = expected(w, &sched, i64::MIN, MIN);
        assert_eq!(
            e,
            vec![iv(8 * H + MIN, 18 * H)],
            "start-up grace when the window opens"
        );
        let mut segs = tiles(8 * H + 5_000, 12 * H);
        segs.extend(tiles(12 * H + 30_000, 18 * H));
        let c = coverage(w, &e, &segs, DEFAULT_TOLERANCE_MS);
        assert_eq!(c.missing, vec![iv(12 * H, 12 * H + 30_000)]);
        assert_eq!(c.expected_ms, 10 * H - MIN);
        // Off: nothing expected.
        let c = coverage(w, &expected(w, &[], i64::MIN, MIN), &[], 100);
        assert_eq!(c.percent_text(), "n/a");
        assert_eq!(c.missing_ms(), 0);
    }

    #[test]
    fn camera_created_inside_the_window() {
        let w = iv(0, 24 * H);
        let created = 20 * H;
        let e = expected(w, &[iv(-MIN, 24 * H)], created + MIN, MIN);
        assert_eq!(e, vec![iv(20 * H + MIN, 24 * H)]);
        let c = coverage(w, &e, &tiles(20 * H + 7_000, 25 * H), 100);
        assert!(c.missing.is_empty(), "the start-up gap is not a hole");
        assert_eq!(c.percent_text(), "100.00%");
    }

    #[test]
    fn settle_margin_keeps_recent_footage_out() {
        // Audited at `now`: the last segment (still recording / uploading) is not in the store.
        let now = 24 * H;
        let w = iv(0, now - settle_ms(10));
        let c = coverage(w, &[w], &tiles(0, now - 15_000), 100);
        assert!(c.missing.is_empty());
    }

    #[test]
    fn reports_only_unknown_holes_joined_and_not_trailing_while_offline() {
        let w = iv(0, 24 * H);
        let c = CameraCoverage {
            window: w,
            expected_ms: 24 * H,
            covered_ms: 0,
            missing: vec![
                iv(H, H + 500),            // jitter-sized: not reported
                iv(2 * H, 2 * H + 60_000), // covered by a Backfill
                iv(3 * H, 3 * H + 10_000), // two holes 2 min apart: one Backfill
                iv(3 * H + 130_000, 3 * H + 140_000),
                iv(5 * H, 5 * H + 90_000), // half covered by a known window
                iv(23 * H, 24 * H),        // trailing
            ],
        };
        let known = vec![iv(2 * H - 1000, 2 * H + 60_000), iv(5 * H, 5 * H + 45_000)];
        let r = to_report(&c, &known, MIN_REPORT_MS, REPORT_JOIN_MS, true, 20);
        assert_eq!(
            r,
            vec![
                iv(3 * H, 3 * H + 140_000),
                iv(5 * H + 45_000, 5 * H + 90_000)
            ]
        );
        let r = to_report(&c, &known, MIN_REPORT_MS, REPORT_JOIN_MS, false, 20);
        assert_eq!(
            r.last(),
            Some(&iv(23 * H, 24 * H)),
            "recording again: report it"
        );
        assert_eq!(
            to_report(&c, &known, MIN_REPORT_MS, REPORT_JOIN_MS, false, 1).len(),
            1
        );
    }

    #[test]
    fn an_empty_store_with_recent_footage_reported_is_suspicious() {
        let w = iv(0, 24 * H);
        let c = coverage(w, &[w], &[], 100);
        assert_eq!(c.missing, vec![w]);
        assert!(store_looks_wrong(&c, &[], Some(20 * H)));
        assert!(
            !store_looks_wrong(&c, &[], None),
            "never recorded: the hole is real"
        );
        assert!(
            !store_looks_wrong(&c, &[], Some(-H)),
            "nothing reported in the window"
        );
        let some = tiles(0, H);
        let c = coverage(w, &[w], &some, 100);
        assert!(!store_looks_wrong(&c, &some, Some(20 * H)));
    }

    #[test]
    fn coverage_is_applied_alone_and_pending_failovers_are_known() {
        use vigil_api::{CameraSource, CameraSpec, CameraStatus, Failover};
        let mut cam = Camera::new(
            "door",
            CameraSpec {
                source: CameraSource {
                    url: "rtsp://10.0.0.5/live".into(),
                    transport: Default::default(),
                },
                credentials_secret_ref: None,
                expected_bitrate_kbps: 4000,
                pool: "main".into(),
                recording: Default::default(),
                retention: Default::default(),
                edge_storage: None,
                auto_backfill: true,
                site: None,
            },
        );
        let base = 1_700_000_000_000;
        let c = CameraCoverage {
            window: iv(base, base + H),
            expected_ms: H,
            covered_ms: H - 95_000,
            missing: vec![iv(base + 60_000, base + 155_000)],
        };
        let cov = coverage_status(&c, base + H + 80_000).unwrap();
        assert_eq!(cov.percent, "97.36%");
        assert_eq!(cov.missing_seconds, 95.0);
        let body = coverage_apply_body("door", &cov);
        assert_eq!(body["kind"], "Camera");
        assert_eq!(body["metadata"]["name"], "door");
        assert_eq!(body["status"]["coverage"]["missingSeconds"], 95.0);
        assert_eq!(body["status"]["coverage"]["expectedSeconds"], 3600.0);
        assert_eq!(
            body["status"].as_object().map(|o| o.len()),
            Some(1),
            "coverage only: {body}"
        );

        // A Backfill for the hole (any reporter) makes it known.
        let b = Backfill::for_hole(
            "site",
            "door",
            TimeWindow {
                start: time(base + 60_000).unwrap(),
                end: time(base + 155_000).unwrap(),
            },
            BackfillReason::StreamLoss,
        );
        let known = known_windows(&cam, std::slice::from_ref(&b));
        assert!(to_report(&c, &known, MIN_REPORT_MS, REPORT_JOIN_MS, false, 20).is_empty());
        // So does a failover whose new recorder has not recorded yet; not once it has.
        let t = |ms| time(ms).unwrap();
        cam.status = Some(CameraStatus {
            assigned_at: Some(t(base + 65_000)),
            failover: Some(Failover {
                from: "rec-a".into(),
                at: t(base + 65_000),
                footage_safe_until: t(base + 50_000),
            }),
            last_segment_time: Some(t(base + 58_000)),
            ..Default::default()
        });
        let known = known_windows(&cam, &[]);
        assert!(to_report(&c, &known, MIN_REPORT_MS, REPORT_JOIN_MS, false, 20).is_empty());
        if let Some(s) = cam.status.as_mut() {
            s.last_segment_time = Some(t(base + 170_000));
        }
        let known = known_windows(&cam, &[]);
        assert_eq!(
            to_report(&c, &known, MIN_REPORT_MS, REPORT_JOIN_MS, false, 20),
            vec![iv(base + 60_000, base + 155_000)]
        );
    }

    fn arb_segments() -> impl Strategy<Value = Vec<Interval>> {
        proptest::collection::vec((0i64..100_000, 0i64..20_000), 0..30)
            .prop_map(|v| v.into_iter().map(|(s, l)| iv(s, s + l)).collect())
    }

    fn arb_sched() -> impl Strategy<Value = Vec<Interval>> {
        proptest::collection::vec((-10_000i64..100_000, 0i64..40_000), 0..6)
            .prop_map(|v| v.into_iter().map(|(s, l)| iv(s, s + l)).collect())
    }

    fn in_any(v: &[Interval], t: i64) -> bool {
        v.iter().any(|i| i.start <= t && t < i.end)
    }

    proptest! {
        #[test]
        fn coverage_adds_up_and_holes_are_expected_unrecorded_time(
            segs in arb_segments(),
            sched in arb_sched(),
            ws in 0i64..50_000,
            wl in 0i64..60_000,
            not_before in -5_000i64..80_000,
            grace in 0i64..5_000,
            tol in 0i64..300,
        ) {
            let w = iv(ws, ws + wl);
            let e = expected(w, &sched, not_before, grace);
            let c = coverage(w, &e, &segs, tol);
            prop_assert_eq!(c.covered_ms + c.missing_ms(), c.expected_ms);
            prop_assert!(c.covered_ms >= 0 && c.covered_ms <= c.expected_ms);
            for h in &c.missing {
                prop_assert!(h.len_ms() > tol);
            }
            // Sampled: expected time lies in the window, after not_before, inside the schedule;
            // a hole instant is expected and not recorded; an expected, unrecorded instant is
            // in a hole unless its hole is jitter-sized.
            for t in (ws - 100..ws + wl + 100).step_by(97) {
                let exp = in_any(&e, t);
                if exp {
                    prop_assert!(t >= w.start && t < w.end && t >= not_before);
                    prop_assert!(in_any(&sched, t));
                    prop_assert!(in_any(&sched, t - grace), "{} within the grace", t);
                }
                if in_any(&c.missing, t) {
                    prop_assert!(exp && !in_any(&segs, t));
                }
                if exp && !in_any(&segs, t) && tol == 0 {
                    prop_assert!(in_any(&c.missing, t));
                }
            }
            let pct = c.percent_text();
            if c.expected_ms > 0 {
                prop_assert_eq!(pct == "100.00%", c.missing.is_empty());
            }
        }

        #[test]
        fn reports_avoid_known_windows_and_cover_the_rest(
            segs in arb_segments(),
            known in arb_segments(),
            defer in any::<bool>(),
        ) {
            let w = iv(0, 120_000);
            let c = coverage(w, &[w], &segs, 100);
            let r = to_report(&c, &known, 1_000, 5_000, defer, usize::MAX);
            for x in &r {
                prop_assert!(x.len_ms() >= 1_000);
                prop_assert!(x.start >= w.start && x.end <= w.end);
            }
            // Every unknown hole piece of ≥ 1 s (not trailing when deferred) is inside a report,
            // and a report never starts or ends inside a known window.
            for h in &c.missing {
                if defer && h.end >= w.end { continue; }
                for p in intervals::subtract(*h, &known) {
                    if p.len_ms() >= 1_000 {
                        prop_assert!(r.iter().any(|x| x.start <= p.start && p.end <= x.end));
                    }
                }
            }
            for x in &r {
                prop_assert!(!in_any(&known, x.start));
                prop_assert!(!in_any(&known, x.end - 1));
            }
        }
    }
}
