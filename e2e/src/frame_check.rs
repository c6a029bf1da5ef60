//! The frame-level check the failover tests share (issue 18): every frame the camera simulator
//! produced (its `--frame-log`) in a window is in the store — read from the time burnt into each
//! stored frame — or lies in a window a Backfill reported lost, to the second; no second is
//! reported lost twice; and every segment key is covered by its frames to within one frame
//! (docs/storage.md).

use std::path::Path;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ListParams};
use vigil_api::{Backfill, BackfillPhase};
use vigil_testkit::frames::{
    Overlay, decode_segment, frame_coverage, identify_frames, read_frame_log,
};
use vigil_testkit::k8s::wait_for;
use vigil_testkit::read_store;

/// A window reported lost: (start ms, end ms, secondsLost).
pub type Lost = (i64, i64, f64);

/// Every Backfill of the namespace once all are finished: (camera, window and secondsLost).
pub async fn finished_backfills(client: &Client, namespace: &str) -> Vec<(String, Lost)> {
    let backfills: Api<Backfill> = Api::namespaced(client.clone(), namespace);
    wait_for(Duration::from_secs(30), "Backfills finished", || async {
        let list = backfills.list(&ListParams::default()).await.ok()?.items;
        let mut out = vec![];
        for b in list {
            let st = b.status.as_ref()?;
            if !matches!(
                st.phase,
                Some(
                    BackfillPhase::Failed
                        | BackfillPhase::PartiallyRecovered
                        | BackfillPhase::Succeeded
                )
            ) {
                return None;
            }
            out.push((
                b.spec.camera.clone(),
                (
                    b.spec.window.start.timestamp_millis(),
                    b.spec.window.end.timestamp_millis(),
                    st.seconds_lost.unwrap_or(0.0),
                ),
            ));
        }
        Some(out)
    })
    .await
}

/// One camera's frames judged.
#[derive(Debug, Default)]
pub struct CameraFrames {
    /// Frames the camera produced in the window.
    pub expected: usize,
    pub missing: usize,
    /// Seconds missing, and the sum of `secondsLost` of the camera's Backfills.
    pub missing_seconds: f64,
    pub reported_seconds: f64,
    /// What the test must fail on.
    pub failures: Vec<String>,
}

/// Where the camera's frames are, what the simulator produced and how the picture looks.
pub struct FrameSource<'a> {
    pub store: &'a Path,
    pub namespace: &'a str,
    pub frame_log: &'a Path,
    pub width: u32,
    pub height: u32,
    pub frame_ms: i64,
}

/// Checks camera `name` over `[from_ms, to_ms)` against the windows reported lost (`lost`, all
/// cameras'), printing what it finds.
pub fn check_camera(
    src: &FrameSource<'_>,
    name: &str,
    from_ms: i64,
    to_ms: i64,
    lost: &[(String, Lost)],
) -> CameraFrames {
    let frame_ms = src.frame_ms;
    let mut out = CameraFrames::default();
    let produced = match read_frame_log(&src.frame_log.join(format!("{name}.frames"))) {
        Ok(p) => p,
        Err(e) => {
            out.failures.push(format!("{name}: frame log: {e}"));
            return out;
        }
    };
    let overlay = match Overlay::for_camera(name, src.width, src.height) {
        Ok(o) => o,
        Err(e) => {
            out.failures.push(format!("{name}: overlay: {e}"));
            return out;
        }
    };
    let (segments, _gaps) = read_store(src.store, src.namespace, name);
    let mut stored = vec![];
    let (mut unreadable, mut disagreeing, mut decoded) = (0, 0, 0);
    let mut worst_key_error = (0i64, String::new());
    for s in segments
        .iter()
        .filter(|s| s.key.end_ms > from_ms - 5000 && s.key.start_ms < to_ms + 5000)
    {
        let frames = match decode_segment(&s.path, &overlay) {
            Ok(f) => f,
            Err(e) => {
                out.failures
                    .push(format!("{name}: {} does not decode: {e}", s.path.display()));
                continue;
            }
        };
        let id = identify_frames(&frames, frame_ms);
        unreadable += id.unreadable;
        disagreeing += id.disagreeing;
        decoded += frames.len();
        let burnt = id.times_ms;
        if let (Some(first), Some(last)) = (burnt.iter().min(), burnt.iter().max()) {
            // The key against its frames: start at the first frame, end one frame after the
            // last (the recorder's clock is anchored to receipt, a few ms after capture).
            let start_err = s.key.start_ms - first;
            let end_err = s.key.end_ms - (last + frame_ms);
            for err in [start_err, end_err] {
                if err.abs() > worst_key_error.0.abs() {
                    worst_key_error = (
                        err,
                        format!(
                            "key {}..{} ({} ms), frames {first}..{} ({} ms, {} frames)",
                            s.key.start_ms,
                            s.key.end_ms,
                            s.key.end_ms - s.key.start_ms,
                            last + frame_ms,
                            last + frame_ms - first,
                            frames.len()
                        ),
                    );
                }
            }
        }
        stored.extend(burnt);
    }
    let cov = frame_coverage(&produced, &stored, from_ms, to_ms, frame_ms);
    let mut cam_lost: Vec<Lost> = lost
        .iter()
        .filter(|(c, _)| c == name)
        .map(|(_, l)| *l)
        .collect();
    cam_lost.sort_by_key(|l| l.0);
    // Windows reported lost, merged: one outage may be reported by two recorders in parts
    // (a kill during the previous take-over).
    let mut lost_union: Vec<(i64, i64)> = vec![];
    for &(start, end, seconds) in &cam_lost {
        if seconds <= 0.0 {
            continue;
        }
        match lost_union.last_mut() {
            Some(last) if start <= last.1 + frame_ms => last.1 = last.1.max(end),
            _ => lost_union.push((start, end)),
        }
    }
    out.reported_seconds = cam_lost.iter().map(|l| l.2).sum();
    // No second reported lost twice: the Backfills' secondsLost add up to at most the time
    // their windows span together (a carried-forward safe point once made a second take-over
    // report the first one's window again).
    let spanned: f64 = lost_union
        .iter()
        .map(|(s, e)| (e - s) as f64 / 1000.0)
        .sum();
    if out.reported_seconds > spanned + 0.5 {
        out.failures.push(format!(
            "{name}: {:.3} s reported lost in windows spanning {spanned:.3} s: {cam_lost:?}",
            out.reported_seconds
        ));
    }
    out.missing_seconds = cov.missing.iter().map(|r| r.seconds(frame_ms)).sum();
    out.expected = cov.expected;
    out.missing = cov.missing_frames();
    println!(
        "{name}: {} of {} produced frames stored, {} missing ({:.2} s) in {} runs; {} reported \
         lost in {} Backfills {:?}; of {decoded} frames decoded {unreadable} unreadable, \
         {disagreeing} misread, {} unknown; worst key-vs-frames error {} ms ({})",
        cov.present,
        cov.expected,
        cov.missing_frames(),
        out.missing_seconds,
        cov.missing.len(),
        out.reported_seconds,
        cam_lost.len(),
        cam_lost,
        cov.unknown,
        worst_key_error.0,
        worst_key_error.1,
    );
    for run in &cov.missing {
        // Reported to the second: the run lies inside a window reported lost, ±1 s.
        let explained = lost_union.iter().any(|&(start, end)| {
            run.first_ms >= start - 1000 && run.last_ms + frame_ms <= end + 1000
        });
        println!(
            "  missing {} frames ({:.2} s) {}..{}{}",
            run.frames,
            run.seconds(frame_ms),
            run.first_ms,
            run.last_ms + frame_ms,
            if explained {
                ", reported lost"
            } else {
                ", NOT REPORTED"
            }
        );
        if !explained {
            out.failures
                .push(format!("{name}: {run:?} missing and not reported lost"));
        }
    }
    if cov.expected < ((to_ms - from_ms) / frame_ms) as usize * 9 / 10 {
        out.failures.push(format!(
            "{name}: the camera logged only {} frames in {} ms",
            cov.expected,
            to_ms - from_ms
        ));
    }
    // The reader itself: a few frames blurred by the encoder are dated by their presentation
    // time, but 90 % must be read.
    if (unreadable + disagreeing) * 10 > decoded || cov.unknown > 0 {
        out.failures.push(format!(
            "{name}: of {decoded} frames {unreadable} unreadable, {disagreeing} misread, {} \
             unknown",
            cov.unknown
        ));
    }
    if worst_key_error.0.abs() > frame_ms + 50 {
        out.failures.push(format!(
            "{name}: a key misstates its frames by {} ms: {}",
            worst_key_error.0, worst_key_error.1
        ));
    }
    out
}

/// `check_camera` for each of `cameras`, added up: frames expected and missing in total, and
/// every camera's failures. Prints the total.
pub fn check_cameras(
    src: &FrameSource<'_>,
    cameras: &[String],
    from_ms: i64,
    to_ms: i64,
    lost: &[(String, Lost)],
) -> CameraFrames {
    let mut total = CameraFrames::default();
    for name in cameras {
        let c = check_camera(src, name, from_ms, to_ms, lost);
        total.expected += c.expected;
        total.missing += c.missing;
        total.missing_seconds += c.missing_seconds;
        total.reported_seconds += c.reported_seconds;
        total.failures.extend(c.failures);
    }
    println!(
        "total: {} of {} produced frames missing, window {from_ms}..{to_ms}",
        total.missing, total.expected
    );
    total
}
