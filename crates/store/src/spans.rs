//! Pure interval arithmetic over segment keys: merging what is recorded, finding holes, and
//! choosing one non-overlapping run of segments to play.
//!
//! Two recorders may briefly record the same camera (failover hand-over), and a backfill may
//! overlap live footage; readers therefore never assume keys are disjoint.

use serde::Serialize;

use crate::layout::{Origin, SegmentKey};

/// Gaps between segments shorter than this are not holes: consecutive segments of one session
/// share their boundary exactly, but sessions of two recorders meet with some jitter.
pub const JOIN_TOLERANCE_MS: i64 = 250;

/// A half-open interval `[start_ms, end_ms)` of UTC Unix milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Span {
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        Span { start_ms, end_ms }
    }
    pub fn len(&self) -> i64 {
        self.end_ms - self.start_ms
    }
    pub fn is_empty(&self) -> bool {
        self.end_ms <= self.start_ms
    }
}

/// Sorts and merges intervals; intervals closer than `tolerance_ms` are joined. Empty input
/// intervals are dropped.
pub fn merge(mut spans: Vec<Span>, tolerance_ms: i64) -> Vec<Span> {
    spans.retain(|s| !s.is_empty());
    spans.sort();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(last) if s.start_ms <= last.end_ms + tolerance_ms => {
                last.end_ms = last.end_ms.max(s.end_ms);
            }
            _ => out.push(s),
        }
    }
    out
}

/// Clips merged spans to `window`.
pub fn clip(spans: &[Span], window: Span) -> Vec<Span> {
    spans
        .iter()
        .map(|s| Span::new(s.start_ms.max(window.start_ms), s.end_ms.min(window.end_ms)))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The parts of `window` not covered by `covered` (which must be merged, i.e. sorted and
/// disjoint).
pub fn holes(covered: &[Span], window: Span) -> Vec<Span> {
    let mut out = Vec::new();
    let mut at = window.start_ms;
    for s in covered {
        if s.end_ms <= at {
            continue;
        }
        if s.start_ms >= window.end_ms {
            break;
        }
        if s.start_ms > at {
            out.push(Span::new(at, s.start_ms));
        }
        at = at.max(s.end_ms);
    }
    if at < window.end_ms {
        out.push(Span::new(at, window.end_ms));
    }
    out
}

/// Coverage of a window: what is recorded live, what was backfilled, the union, the holes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub live: Vec<Span>,
    pub backfill: Vec<Span>,
    pub recorded: Vec<Span>,
    pub holes: Vec<Span>,
    pub recorded_ms: i64,
}

pub fn coverage(segments: &[(SegmentKey, u64)], window: Span) -> Coverage {
    let spans = |o: Option<Origin>| {
        let v = segments
            .iter()
            .filter(|(k, _)| o.is_none_or(|o| k.origin == o))
            .map(|(k, _)| Span::new(k.start_ms, k.end_ms))
            .collect();
        clip(&merge(v, JOIN_TOLERANCE_MS), window)
    };
    let recorded = spans(None);
    Coverage {
        live: spans(Some(Origin::Live)),
        backfill: spans(Some(Origin::Backfill)),
        holes: holes(&recorded, window),
        recorded_ms: recorded.iter().map(Span::len).sum(),
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
    window: Span,
) -> (Vec<Run<(SegmentKey, T)>>, Vec<Span>) {
    segments.retain(|(k, _)| k.end_ms > window.start_ms && k.start_ms < window.end_ms);
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
    let covered: Vec<Span> = runs
        .iter()
        .filter_map(|r| {
            Some(Span::new(
                r.items.first()?.0.start_ms,
                r.items.last()?.0.end_ms,
            ))
        })
        .collect();
    let h = holes(&covered, window);
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
    fn merge_and_holes_example() {
        let m = merge(
            vec![
                Span::new(10, 20),
                Span::new(0, 5),
                Span::new(20, 30),
                Span::new(25, 26),
                Span::new(40, 50),
            ],
            0,
        );
        assert_eq!(
            m,
            vec![Span::new(0, 5), Span::new(10, 30), Span::new(40, 50)]
        );
        assert_eq!(
            holes(&m, Span::new(2, 45)),
            vec![Span::new(5, 10), Span::new(30, 40)]
        );
        assert_eq!(holes(&[], Span::new(2, 45)), vec![Span::new(2, 45)]);
    }

    #[test]
    fn coverage_separates_origins() {
        let segs = vec![
            (seg(0, 10_000, Origin::Live), 1),
            (seg(10_000, 20_000, Origin::Backfill), 1),
            (seg(30_000, 40_000, Origin::Live), 1),
        ];
        let c = coverage(&segs, Span::new(5_000, 35_000));
        assert_eq!(
            c.live,
            vec![Span::new(5_000, 10_000), Span::new(30_000, 35_000)]
        );
        assert_eq!(c.backfill, vec![Span::new(10_000, 20_000)]);
        assert_eq!(c.holes, vec![Span::new(20_000, 30_000)]);
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
        let (runs, h) = playlist(segs, Span::new(0, 60_000));
        let starts: Vec<Vec<i64>> = runs
            .iter()
            .map(|r| r.items.iter().map(|(k, _)| k.start_ms).collect())
            .collect();
        assert_eq!(starts, vec![vec![0, 10_000, 20_100], vec![40_000]]);
        assert_eq!(
            h,
            vec![Span::new(30_000, 40_000), Span::new(50_000, 60_000)]
        );
    }

    fn spans() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec((0i64..10_000, 1i64..2_000), 0..30)
            .prop_map(|v| v.into_iter().map(|(s, l)| Span::new(s, s + l)).collect())
    }

    proptest! {
        #[test]
        fn merge_is_sorted_disjoint_and_covers_the_same_points(v in spans(), probe in 0i64..12_000) {
            let m = merge(v.clone(), 0);
            for w in m.windows(2) {
                prop_assert!(w[0].end_ms < w[1].start_ms);
            }
            let in_input = v.iter().any(|s| s.start_ms <= probe && probe < s.end_ms);
            let in_merged = m.iter().any(|s| s.start_ms <= probe && probe < s.end_ms);
            prop_assert_eq!(in_input, in_merged);
        }

        #[test]
        fn holes_complement_coverage(v in spans(), a in 0i64..6_000, l in 1i64..6_000, probe in 0i64..12_000) {
            let w = Span::new(a, a + l);
            let m = merge(v.clone(), 0);
            let h = holes(&m, w);
            let covered: i64 = clip(&m, w).iter().map(Span::len).sum();
            prop_assert_eq!(covered + h.iter().map(Span::len).sum::<i64>(), w.len());
            if w.start_ms <= probe && probe < w.end_ms {
                let in_hole = h.iter().any(|s| s.start_ms <= probe && probe < s.end_ms);
                let in_cov = m.iter().any(|s| s.start_ms <= probe && probe < s.end_ms);
                prop_assert!(in_hole != in_cov);
            }
        }

        #[test]
        fn playlist_never_goes_back_in_time(v in spans(), a in 0i64..6_000, l in 1i64..6_000) {
            let segs: Vec<_> = v.iter().map(|s| (seg(s.start_ms, s.end_ms, Origin::Live), ())).collect();
            let (runs, _) = playlist(segs, Span::new(a, a + l));
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
