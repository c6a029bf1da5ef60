//! Interval arithmetic on half-open millisecond intervals `[start, end)` — pure, no I/O.
//!
//! The store's coverage of a window is the union of its segments' intervals (live and
//! backfilled; overlaps are harmless). What a backfill must fetch is the window minus that
//! union, ignoring holes no longer than one frame interval: segment boundaries come from two
//! clocks (the recorder's receive clock and the camera's NTP time), so neighbours can be a few
//! milliseconds apart without any footage missing.

/// Holes up to this long count as covered (one frame at 10 fps).
pub const DEFAULT_TOLERANCE_MS: i64 = 100;

/// A half-open interval `[start, end)` of UTC Unix milliseconds: the one interval type of
/// the store, the jobs, the recorder and the access point (in JSON `{"startMs", "endMs"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Interval {
    #[serde(rename = "startMs")]
    pub start: i64,
    #[serde(rename = "endMs")]
    pub end: i64,
}

impl Interval {
    pub fn new(start: i64, end: i64) -> Self {
        Interval { start, end }
    }
    pub fn len_ms(&self) -> i64 {
        (self.end - self.start).max(0)
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Sorted, disjoint, non-adjacent union of `v` (empty intervals dropped).
pub fn merge(v: Vec<Interval>) -> Vec<Interval> {
    merge_within(v, 0)
}

/// Sorts and merges intervals; intervals closer than `tolerance_ms` are joined (the gap
/// between them counts as covered). Empty input intervals are dropped.
pub fn merge_within(mut v: Vec<Interval>, tolerance_ms: i64) -> Vec<Interval> {
    v.retain(|i| !i.is_empty());
    v.sort();
    let mut out: Vec<Interval> = Vec::with_capacity(v.len());
    for i in v {
        match out.last_mut() {
            Some(last) if i.start <= last.end + tolerance_ms => last.end = last.end.max(i.end),
            _ => out.push(i),
        }
    }
    out
}

/// Clips merged intervals to `window`.
pub fn clip(v: &[Interval], window: Interval) -> Vec<Interval> {
    v.iter()
        .map(|i| Interval::new(i.start.max(window.start), i.end.min(window.end)))
        .filter(|i| !i.is_empty())
        .collect()
}

/// `window` minus the union of `covered`.
pub fn subtract(window: Interval, covered: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut cur = window.start;
    for c in merge(covered.to_vec()) {
        if c.end <= cur {
            continue;
        }
        if c.start >= window.end {
            break;
        }
        if c.start > cur {
            out.push(Interval::new(cur, c.start.min(window.end)));
        }
        cur = cur.max(c.end);
        if cur >= window.end {
            break;
        }
    }
    if cur < window.end {
        out.push(Interval::new(cur, window.end));
    }
    out
}

/// What is missing from `window` given `covered`, ignoring holes of at most `tolerance_ms`.
pub fn missing(window: Interval, covered: &[Interval], tolerance_ms: i64) -> Vec<Interval> {
    subtract(window, covered)
        .into_iter()
        .filter(|h| h.len_ms() > tolerance_ms)
        .collect()
}

pub fn total_ms(v: &[Interval]) -> i64 {
    merge(v.to_vec()).iter().map(Interval::len_ms).sum()
}

pub fn total_seconds(v: &[Interval]) -> f64 {
    total_ms(v) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn iv(s: i64, e: i64) -> Interval {
        Interval::new(s, e)
    }

    #[test]
    fn examples() {
        assert_eq!(
            merge(vec![iv(5, 7), iv(0, 2), iv(2, 3), iv(6, 9)]),
            vec![iv(0, 3), iv(5, 9)]
        );
        assert_eq!(
            subtract(iv(0, 10), &[iv(2, 3), iv(-5, 1), iv(8, 20)]),
            vec![iv(1, 2), iv(3, 8)]
        );
        assert_eq!(subtract(iv(0, 10), &[]), vec![iv(0, 10)]);
        assert_eq!(subtract(iv(0, 10), &[iv(0, 10)]), vec![]);
        assert_eq!(
            missing(iv(0, 10_000), &[iv(40, 5000), iv(5080, 10_000)], 100),
            vec![]
        );
        assert_eq!(
            missing(iv(0, 10_000), &[iv(0, 5000), iv(5101, 10_000)], 100),
            vec![iv(5000, 5101)]
        );
        assert_eq!(total_seconds(&[iv(0, 1500), iv(1000, 2000)]), 2.0);
    }

    fn arb() -> impl Strategy<Value = Vec<Interval>> {
        proptest::collection::vec((0i64..1000, 0i64..200), 0..20)
            .prop_map(|v| v.into_iter().map(|(s, l)| iv(s, s + l)).collect())
    }

    fn covered_at(v: &[Interval], t: i64) -> bool {
        v.iter().any(|i| i.start <= t && t < i.end)
    }

    proptest! {
        #[test]
        fn merge_within_joins_only_close_neighbours(v in arb(), tol in 0i64..50) {
            let m = merge_within(v.clone(), tol);
            for w in m.windows(2) {
                prop_assert!(w[1].start > w[0].end + tol);
            }
            for i in &v {
                if !i.is_empty() {
                    prop_assert!(m.iter().any(|x| x.start <= i.start && i.end <= x.end));
                }
            }
        }

        #[test]
        fn clip_and_subtract_split_the_window(v in arb(), s in 0i64..1000, l in 1i64..500) {
            let w = Interval::new(s, s + l);
            let m = merge(v);
            prop_assert_eq!(total_ms(&clip(&m, w)) + total_ms(&subtract(w, &m)), w.len_ms());
        }

        #[test]
        fn merge_is_the_same_set_sorted_disjoint(v in arb()) {
            let m = merge(v.clone());
            for w in m.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            for t in -5..1250 {
                prop_assert_eq!(covered_at(&m, t), covered_at(&v, t));
            }
        }

        #[test]
        fn subtract_is_set_difference(v in arb(), s in 0i64..1000, l in 0i64..500) {
            let w = iv(s, s + l);
            let d = subtract(w, &v);
            for t in -5..1600 {
                let want = w.start <= t && t < w.end && !covered_at(&v, t);
                prop_assert_eq!(covered_at(&d, t), want);
            }
            // covered + missing = window
            let inside: Vec<Interval> = v.iter().map(|i| iv(i.start.max(w.start), i.end.min(w.end))).collect();
            prop_assert_eq!(total_ms(&inside) + total_ms(&d), w.len_ms());
        }

        #[test]
        fn missing_drops_only_short_holes(v in arb(), tol in 0i64..50) {
            let w = iv(0, 1200);
            let m = missing(w, &v, tol);
            prop_assert!(m.iter().all(|h| h.len_ms() > tol));
            prop_assert!(total_ms(&m) <= total_ms(&subtract(w, &v)));
        }
    }
}
