//! Reading a camera's segment keys as time: how much of a window is recorded (live, backfilled,
//! holes), and one non-overlapping run of segments to play.
//!
//! Two recorders may briefly record the same camera (failover hand-over), and a backfill may
//! overlap live footage; readers therefore never assume keys are disjoint.

use serde::Serialize;

use crate::intervals::{Interval, clip, merge_within, subtract};
use crate::layout::{Origin, SegmentKey};

/// Gaps between segments shorter than this are not holes: consecutive segments of one session
/// share their boundary exactly, but sessions of two recorders meet with some jitter.
pub const JOIN_TOLERANCE_MS: i64 = 250;

/// Coverage of a window: what is recorded live, what was backfilled, the union, the holes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub live: Vec<Interval>,
    pub backfill: Vec<Interval>,
    pub recorded: Vec<Interval>,
    pub holes: Vec<Interval>,
    pub recorded_ms: i64,
}

pub fn coverage(segments: &[(SegmentKey, u64)], window: Interval) -> Coverage {
    let spans = |o: Option<Origin>| {
        let v = segments
            .iter()
            .filter(|(k, _)| o.is_none_or(|o| k.origin == o))
            .map(|(k, _)| Interval::new(k.start_ms, k.end_ms))
            .collect();
        clip(&merge_within(v, JOIN_TOLERANCE_MS), window)
    };
    let recorded = spans(None);
    Coverage {
        live: spans(Some(Origin::Live)),
        backfill: spans(Some(Origin::Backfill)),
        holes: subtract(window, &recorded),
        recorded_ms: recorded.iter().map(Interval::len_ms).sum(),
        recorded,
    }
}

/// A run of segments that play back to back without a hole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run<T> {
    pub items: Vec<T>,
}

/// Picks segments overlapping `window` to play in order, dropping those that would go back in
/// time (overlaps from two recorders: the earlier-starting segment wins; a later one is only
/// taken once the timeline has passed its start), and splits them into runs at holes.
///
/// Returns the runs and the holes between/around them inside the window.
pub fn playlist<T: Clone>(
    mut segments: Vec<(SegmentKey, T)>,
    window: Interval,
) -> (Vec<Run<(SegmentKey, T)>>, Vec<Interval>) {
    segments.retain(|(k, _)| k.end_ms > window.start && k.start_ms < window.end);
    // Longer segment first among equal starts: fewer joins.
    segments.sort_by(|a, b| {
        (a.0.start_ms, std::cmp::Reverse(a.0.end_ms), a.0.origin).cmp(&(
            b.0.start_ms,
            std::cmp::Reverse(b.0.end_ms),
            b.0.origin,
        ))
    });
    let mut runs: Vec<Run<(SegmentKey, T)>> = Vec::new();
    let mut covered_until: Option<i64> = None;
    for seg in segments {
        let (s, e) = (seg.0.start_ms, seg.0.end_ms);
        match covered_until {
            // Overlaps what is already taken (or adds nothing to it).
            Some(c) if s < c - JOIN_TOLERANCE_MS || e <= c => continue,
            Some(c) if s <= c + JOIN_TOLERANCE_MS => {
                if let Some(r) = runs.last_mut() {
                    r.items.push(seg);
                }
            }
            _ => runs.push(Run { items: vec![seg] }),
        }
        covered_until = Some(covered_until.map_or(e, |c: i64| c.max(e)));
    }
    let covered: Vec<Interval> = runs
        .iter()
        .filter_map(|r| {
            Some(Interval::new(
                r.items.first()?.0.start_ms,
                r.items.last()?.0.end_ms,
            ))
        })
        .collect();
    let h = subtract(window, &covered);
    (runs, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::CameraId;
    use proptest::prelude::*;

    fn seg(s: i64, e: i64, o: Origin) -> SegmentKey {
        SegmentKey::new(CameraId::new("ns", "c").unwrap(), s, e, o).unwrap()
    }

    #[test]
    fn coverage_separates_origins() {
        let segs = vec![
            (seg(0, 10_000, Origin::Live), 1),
            (seg(10_000, 20_000, Origin::Backfill), 1),
            (seg(30_000, 40_000, Origin::Live), 1),
        ];
        let c = coverage(&segs, Interval::new(5_000, 35_000));
        assert_eq!(
            c.live,
            vec![Interval::new(5_000, 10_000), Interval::new(30_000, 35_000)]
        );
        assert_eq!(c.backfill, vec![Interval::new(10_000, 20_000)]);
        assert_eq!(c.holes, vec![Interval::new(20_000, 30_000)]);
        assert_eq!(c.recorded_ms, 20_000);
    }

    #[test]
    fn playlist_drops_overlaps_and_splits_at_holes() {
        let segs = vec![
            (seg(0, 10_000, Origin::Live), ()),
            (seg(10_000, 20_000, Origin::Live), ()),
            (seg(12_000, 19_000, Origin::Live), ()), // second recorder, overlapping
            (seg(20_100, 30_000, Origin::Backfill), ()),
            (seg(40_000, 50_000, Origin::Live), ()),
        ];
        let (runs, h) = playlist(segs, Interval::new(0, 60_000));
        let starts: Vec<Vec<i64>> = runs
            .iter()
            .map(|r| r.items.iter().map(|(k, _)| k.start_ms).collect())
            .collect();
        assert_eq!(starts, vec![vec![0, 10_000, 20_100], vec![40_000]]);
        assert_eq!(
            h,
            vec![Interval::new(30_000, 40_000), Interval::new(50_000, 60_000)]
        );
    }

    fn intervals() -> impl Strategy<Value = Vec<Interval>> {
        prop::collection::vec((0i64..10_000, 1i64..2_000), 0..30).prop_map(|v| {
            v.into_iter()
                .map(|(s, l)| Interval::new(s, s + l))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn playlist_never_goes_back_in_time(v in intervals(), a in 0i64..6_000, l in 1i64..6_000) {
            let segs: Vec<_> = v.iter().map(|s| (seg(s.start, s.end, Origin::Live), ())).collect();
            let (runs, _) = playlist(segs, Interval::new(a, a + l));
            let flat: Vec<_> = runs.iter().flat_map(|r| r.items.iter().map(|(k, _)| (k.start_ms, k.end_ms))).collect();
            for w in flat.windows(2) {
                prop_assert!(w[1].0 >= w[0].1 - JOIN_TOLERANCE_MS);
            }
            for r in &runs {
                for w in r.items.windows(2) {
                    prop_assert!((w[1].0.start_ms - w[0].0.end_ms).abs() <= JOIN_TOLERANCE_MS);
                }
            }
        }
    }
}
