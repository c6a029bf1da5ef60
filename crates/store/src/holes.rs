//! Holes in a camera's footage that a recorder or the coverage audit finds, and the Backfills
//! created for them.
//!
//! Whoever finds a hole creates its Backfill directly, named after the camera and the hole's
//! window ([`vigil_api::hole_backfill_name`]), so a second report of the same hole is a harmless
//! AlreadyExists. A recorder finds two kinds:
//!
//! * **Take-over holes.** When a recorder starts recording a camera (after a failover, a restart
//!   of the same pod, a planned move) it looks in the store for where the camera's footage ends
//!   and backfills from there to its own first footage ([`takeover_hole`], reason
//!   `RecorderFailure`). After a failover the operator's `status.failover.footageSafeUntil`
//!   says where to look; otherwise the footage just before the assignment is the reference.
//! * **Stream losses.** When the stream comes back, the gap the camera task recorded
//!   ([`gap_backfill_reason`], reason `StreamLoss`).
//!
//! A camera with `autoBackfill: false` gets no Backfill: a warning in the log, and the gap record
//! the camera task writes to the store.

use chrono::{DateTime, Utc};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};
use vigil_api::{Backfill, BackfillReason, Camera, Failover, TimeWindow};

use crate::gaps::{GapReason, rfc3339};
use crate::intervals::{DEFAULT_TOLERANCE_MS, Interval};

/// How far back before the assignment a recorder looks for the end of the camera's footage when
/// no failover tells it where to look (a planned move, a restart of the same pod): a previous
/// recorder lets go of the camera about when the operator assigns it here.
pub const TAKEOVER_LOOKBACK_SEGMENTS: i64 = 2;
/// Never look further back than this (one LIST per hour directory of the store).
pub const TAKEOVER_MAX_LOOKBACK_MS: i64 = 24 * 3_600_000;

/// Where the footage in the store that covers `start_ms` ends: the end of the stored interval
/// (merged, see [`crate::backfill::intervals::merge`]) containing `start_ms`, if one does.
pub fn stored_until(start_ms: i64, stored: &[Interval]) -> Option<i64> {
    stored
        .iter()
        .find(|iv| iv.start <= start_ms + DEFAULT_TOLERANCE_MS && iv.end > start_ms)
        .map(|iv| iv.end)
}

/// The hole a recorder finds when its first footage of a camera starts at `first_ms`, given the
/// camera's footage in the store (`stored`, merged intervals listed from [`lookback_start`] on)
/// and, after a failover, the point up to which footage is known to be safe.
///
/// * After a failover the hole starts where the stored footage covering `footage_safe_until`
///   ends, or at `footage_safe_until` if nothing stored covers it (a window that is too long
///   costs nothing: a Backfill fetches only what the store lacks).
/// * Otherwise it starts where the last footage stored before `first_ms` ends; with no footage
///   stored before, there is no hole (a new camera, a schedule window opening).
///
/// It ends at `first_ms`. Holes up to one frame ([`DEFAULT_TOLERANCE_MS`]) are jitter.
pub fn takeover_hole(
    first_ms: i64,
    stored: &[Interval],
    footage_safe_until: Option<i64>,
) -> Option<Interval> {
    let start = match footage_safe_until {
        Some(safe) => stored_until(safe, stored).unwrap_or(safe),
        None => stored
            .iter()
            .filter(|iv| iv.start < first_ms)
            .map(|iv| iv.end)
            .max()?,
    };
    (start + DEFAULT_TOLERANCE_MS < first_ms).then(|| Interval::new(start, first_ms))
}

/// The windows of `camera`'s Backfills (any phase), merged: holes already reported.
pub fn backfill_windows(camera: &str, backfills: &[Backfill]) -> Vec<Interval> {
    crate::intervals::merge(
        backfills
            .iter()
            .filter(|b| b.spec.camera == camera)
            .map(|b| {
                Interval::new(
                    b.spec.window.start.timestamp_millis(),
                    b.spec.window.end.timestamp_millis(),
                )
            })
            .collect(),
    )
}

/// The parts of a take-over `hole` that no existing Backfill (`reported`, see
/// [`backfill_windows`]) covers, longer than one frame. After two failovers in a row the
/// carried-forward safe point makes the second take-over hole start where the first one did;
/// if the recorder in between had already reported the first hole, reporting the whole window
/// again would count the overlap's lost seconds twice (issue 18).
pub fn unreported(hole: Interval, reported: &[Interval]) -> Vec<Interval> {
    crate::intervals::subtract(hole, &crate::intervals::merge(reported.to_vec()))
        .into_iter()
        .filter(|p| p.len_ms() > DEFAULT_TOLERANCE_MS)
        .collect()
}

/// The failover recorded in `camera`'s status, if it is the one that brought the camera here
/// (recorded with the current assignment) and no recorder has reported footage since — so a
/// later restart of this recorder does not re-open a hole the takeover already reported.
pub fn pending_failover(camera: &Camera) -> Option<&Failover> {
    let s = camera.status.as_ref()?;
    let f = s.failover.as_ref()?;
    let for_this_assignment = s.assigned_at.is_none_or(|a| f.at >= a);
    let no_footage_since = s.last_segment_time.is_none_or(|t| t <= f.at);
    (for_this_assignment && no_footage_since).then_some(f)
}

/// Where to start listing the store for [`takeover_hole`]: at the failover's safe point, or a
/// little before the assignment, never more than [`TAKEOVER_MAX_LOOKBACK_MS`] before `first_ms`.
pub fn lookback_start(camera: &Camera, first_ms: i64, segment_seconds: u32) -> i64 {
    let margin = TAKEOVER_LOOKBACK_SEGMENTS * i64::from(segment_seconds) * 1000;
    let from = match pending_failover(camera) {
        Some(f) => f.footage_safe_until.timestamp_millis() - margin,
        None => {
            camera
                .status
                .as_ref()
                .and_then(|s| s.assigned_at)
                .map_or(first_ms, |a| a.timestamp_millis())
                - margin
        }
    };
    from.max(first_ms - TAKEOVER_MAX_LOOKBACK_MS).min(first_ms)
}

/// The Backfill reason for a gap the camera task recorded, or `None` when the gap is found by
/// the take-over check instead (the start-up gap, a restart of this recorder).
pub fn gap_backfill_reason(reason: GapReason) -> Option<BackfillReason> {
    match reason {
        GapReason::Startup | GapReason::RecorderRestart => None,
        GapReason::StreamLost
        | GapReason::BufferOverflow
        | GapReason::Stopped
        | GapReason::TimelineStep => Some(BackfillReason::StreamLoss),
    }
}

/// A hole waiting for its Backfill to be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    pub camera: String,
    pub window: Interval,
    pub reason: BackfillReason,
}

/// What became of a hole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reported {
    /// The Backfill was created.
    Created(String),
    /// It existed already (a second report of the same hole).
    Existed(String),
    /// The camera does not want Backfills; logged.
    NotWanted,
    /// Not a valid window (empty, or out of range).
    Invalid,
}

fn time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// Creates the Backfill for `hole` of `camera`, honouring `autoBackfill`.
pub async fn report_hole(
    client: &Client,
    camera: &Camera,
    hole: &Hole,
) -> Result<Reported, kube::Error> {
    let seconds = hole.window.len_ms() as f64 / 1000.0;
    let (Some(start), Some(end)) = (time(hole.window.start), time(hole.window.end)) else {
        return Ok(Reported::Invalid);
    };
    if hole.window.is_empty() {
        return Ok(Reported::Invalid);
    }
    if !camera.spec.auto_backfill {
        warn!(camera = %hole.camera, start = %rfc3339(hole.window.start), end = %rfc3339(hole.window.end),
              seconds, reason = hole.reason.as_str(),
              "hole in the footage not backfilled: autoBackfill is off");
        return Ok(Reported::NotWanted);
    }
    let ns = camera.namespace().unwrap_or_default();
    let backfill = Backfill::for_hole(&ns, &hole.camera, TimeWindow { start, end }, hole.reason);
    let name = backfill.name_any();
    let api: Api<Backfill> = Api::namespaced(client.clone(), &ns);
    match api.create(&PostParams::default(), &backfill).await {
        Ok(_) => {
            info!(camera = %hole.camera, backfill = %name, start = %rfc3339(hole.window.start),
                  end = %rfc3339(hole.window.end), seconds, reason = hole.reason.as_str(),
                  "hole in the footage: Backfill created");
            Ok(Reported::Created(name))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Reported::Existed(name)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::{CameraSpec, CameraStatus};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).expect("time")
    }

    fn camera(status: CameraStatus) -> Camera {
        let spec: CameraSpec = serde_json::from_value(serde_json::json!({
            "source": {"url": "rtsp://cam/live"}, "expectedBitrateKbps": 4000, "pool": "main"
        }))
        .expect("spec");
        let mut c = Camera::new("door", spec);
        c.status = Some(status);
        c
    }

    #[test]
    fn a_second_takeover_reports_only_what_the_first_did_not() {
        // Recorder B took over from A (safe point 10 s), reported [10 s, 14 s) at its first
        // fragment and died before storing a segment; the operator carried the safe point
        // forward, so recorder C's take-over hole starts at 10 s again.
        let bf = |name: &str, cam: &str, s: i64, e: i64| -> Backfill {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "vigil.dev/v1alpha1", "kind": "Backfill",
                "metadata": {"name": name},
                "spec": {"camera": cam, "reason": "RecorderFailure", "window": {
                    "start": at(s).to_rfc3339(), "end": at(e).to_rfc3339()}}
            }))
            .expect("backfill")
        };
        let hole_c = takeover_hole(21_000, &[Interval::new(0, 10_000)], Some(10_000)).unwrap();
        assert_eq!(hole_c, Interval::new(10_000, 21_000));
        let known = backfill_windows(
            "door",
            &[
                bf("b", "door", 10_000, 14_000),
                bf("y", "yard", 14_000, 30_000),
            ],
        );
        assert_eq!(known, vec![Interval::new(10_000, 14_000)]);
        assert_eq!(
            unreported(hole_c, &known),
            vec![Interval::new(14_000, 21_000)]
        );
        // Nothing known: the whole hole; all known: nothing; a sliver of a frame: nothing.
        assert_eq!(unreported(hole_c, &[]), vec![hole_c]);
        assert!(unreported(hole_c, &[Interval::new(0, 30_000)]).is_empty());
        assert!(unreported(hole_c, &[Interval::new(10_000, 20_950)]).is_empty());
    }

    #[test]
    fn stored_until_finds_the_end_of_the_footage_covering_a_point() {
        let stored = [Interval::new(1_000, 60_000), Interval::new(70_000, 80_000)];
        assert_eq!(stored_until(50_000, &stored), Some(60_000));
        assert_eq!(
            stored_until(1_050, &stored),
            Some(60_000),
            "within tolerance"
        );
        assert_eq!(stored_until(65_000, &stored), None, "already in a hole");
        assert_eq!(stored_until(500, &stored), None, "before any footage");
    }

    #[test]
    fn failover_hole_runs_from_the_end_of_stored_footage_to_the_first_new_footage() {
        // The failed recorder's footage reached 94.5 s; the operator says safe until 90 s; the
        // new recorder's first footage starts at 101 s (already uploaded: 101..111).
        let stored = [Interval::new(0, 94_500), Interval::new(101_000, 111_000)];
        assert_eq!(
            takeover_hole(101_000, &stored, Some(90_000)),
            Some(Interval::new(94_500, 101_000))
        );
        // Nothing stored covers the safe point (the failed recorder's last uploads were lost):
        // the hole starts at the safe point.
        assert_eq!(
            takeover_hole(101_000, &[Interval::new(0, 80_000)], Some(90_000)),
            Some(Interval::new(90_000, 101_000))
        );
        // The store is continuous up to the new footage (a backfill ran already): no hole.
        assert_eq!(
            takeover_hole(101_000, &[Interval::new(0, 111_000)], Some(90_000)),
            None
        );
    }

    #[test]
    fn restart_and_move_holes_start_where_the_last_footage_ends() {
        // A restart of the same pod: footage up to 50 s, a 40 ms jitter hole, then ours.
        let stored = [Interval::new(0, 50_000), Interval::new(58_000, 68_000)];
        assert_eq!(
            takeover_hole(58_000, &stored, None),
            Some(Interval::new(50_000, 58_000))
        );
        let jitter = [Interval::new(0, 57_960), Interval::new(58_000, 68_000)];
        assert_eq!(takeover_hole(58_000, &jitter, None), None, "one frame");
        // A new camera, or a schedule window opening: nothing stored before, no hole.
        assert_eq!(
            takeover_hole(58_000, &[Interval::new(58_000, 68_000)], None),
            None
        );
        assert_eq!(takeover_hole(58_000, &[], None), None);
    }

    #[test]
    fn a_failover_counts_only_until_footage_is_reported_after_it() {
        let failover = Failover {
            from: "rec-a".into(),
            at: at(100_000),
            footage_safe_until: at(87_000),
        };
        let mut status = CameraStatus {
            recorder: Some("rec-b".into()),
            assigned_at: Some(at(100_000)),
            failover: Some(failover.clone()),
            last_segment_time: Some(at(96_000)), // rec-a's last report
            ..Default::default()
        };
        assert_eq!(pending_failover(&camera(status.clone())), Some(&failover));
        assert_eq!(
            lookback_start(&camera(status.clone()), 101_000, 10),
            67_000,
            "two segments before the safe point"
        );
        // rec-b reported footage: a later restart of rec-b finds its hole without it.
        status.last_segment_time = Some(at(111_000));
        assert_eq!(pending_failover(&camera(status.clone())), None);
        // A move after the failover (a later assignment): not this assignment's failover.
        status.last_segment_time = Some(at(96_000));
        status.assigned_at = Some(at(200_000));
        assert_eq!(pending_failover(&camera(status.clone())), None);
        assert_eq!(
            lookback_start(&camera(status.clone()), 205_000, 10),
            180_000,
            "two segments before the assignment"
        );
        // Never more than a day back.
        status.assigned_at = Some(at(0));
        let first = 3 * TAKEOVER_MAX_LOOKBACK_MS;
        assert_eq!(
            lookback_start(&camera(status), first, 10),
            first - TAKEOVER_MAX_LOOKBACK_MS
        );
    }

    #[test]
    fn stream_losses_are_backfilled_and_startup_gaps_found_by_the_takeover_check() {
        assert_eq!(
            gap_backfill_reason(GapReason::StreamLost),
            Some(BackfillReason::StreamLoss)
        );
        assert_eq!(
            gap_backfill_reason(GapReason::BufferOverflow),
            Some(BackfillReason::StreamLoss)
        );
        assert_eq!(gap_backfill_reason(GapReason::Startup), None);
        assert_eq!(gap_backfill_reason(GapReason::RecorderRestart), None);
    }
}
