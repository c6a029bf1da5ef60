//! Coverage judged by what is inside the segments, not only by their keys (#18).
//!
//! A segment key says "footage from `start` to `end`". The frames inside say when footage
//! really is there: each video sample has a decode time (`tfdt` + the durations before it; our
//! segments have no composition offsets, so it is also the presentation time) and a duration.
//! Two things make a key lie:
//!
//! * a **gap** inside the segment: a frame lasting more than [`MAX_FRAME_GAP_MS`] (the camera
//!   sent nothing for seconds but the recorder kept the segment open), or fragments whose
//!   `tfdt`s leave time between them;
//! * a **misstated key**: the key's length and the content's length (first frame to the end of
//!   the last) differ by more than [`KEY_CONTENT_TOLERANCE_MS`] (a timeline re-anchored inside
//!   the segment). Then no frame's wall time can be trusted, and the whole key is a hole.
//!
//! A segment that cannot be parsed is a hole too. [`judge`] is the pure rule; [`read_timing`]
//! reads only the `moov` and each `moof` of a stored object with small range requests (never
//! the samples); [`covered`] lists a window and judges every segment in it. The audit and the
//! backfill job both use [`covered`], so a hole the audit finds inside a segment is one the
//! backfill fetches, and one it then sees filled.

use std::ops::Range;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tracing::warn;
use vigil_media::fmp4::{self, VideoTiming};
use vigil_store::catalog;
use vigil_store::intervals::{self, DEFAULT_TOLERANCE_MS, Interval};
use vigil_store::layout::{CameraId, SegmentKey};

use crate::error::Result;

/// Frames further apart than this leave a hole between them (a camera at 1 fps is still
/// continuous).
pub const MAX_FRAME_GAP_MS: i64 = 1_000;
/// A key whose length differs from its content's by more than this misstates its content.
pub const KEY_CONTENT_TOLERANCE_MS: i64 = 1_000;
/// The largest `moov`/`moof` box read (a `moof` of ours is ~12 bytes a sample).
pub const MAX_META_BOX: u64 = 4 * 1024 * 1024;
/// Bytes asked for at once when looking for the next box (a whole `moof` of a 1 s fragment
/// and the following `mdat` header usually fit).
const READ_AHEAD: u64 = 8 * 1024;
/// Segments read at once.
const CONCURRENCY: usize = 8;

/// What is wrong inside one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Wall-clock time inside the key without frames.
    Gap(Interval),
    /// The key's length disagrees with its content's length.
    Misstated { key_ms: i64, content_ms: i64 },
    /// No video frame at all.
    Empty,
    /// The object does not parse as a segment.
    Unreadable(String),
}

/// One segment judged: the wall-clock time its frames cover, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub covered: Vec<Interval>,
    pub findings: Vec<Finding>,
}

fn ticks_to_ms(ticks: i128, timescale: u32) -> i64 {
    (ticks * 1000 / i128::from(timescale.max(1))).clamp(i128::from(i64::MIN), i128::from(i64::MAX))
        as i64
}

/// Judges the segment `key` by its frame timing. The first frame is placed at the key's start;
/// every frame covers its duration, except that a frame lasting more than
/// [`MAX_FRAME_GAP_MS`] covers only the segment's median frame duration (the rest is a gap).
pub fn judge(key: Interval, t: &VideoTiming) -> Judged {
    // (decode time, duration) in ticks, frames in decode order.
    let mut frames: Vec<(i128, i128)> = Vec::new();
    let mut next = 0i128;
    for r in &t.runs {
        let mut at = r.base_decode_time.map_or(next, i128::from);
        for d in &r.durations {
            frames.push((at, i128::from(*d)));
            at += i128::from(*d);
        }
        next = at;
    }
    let Some(t0) = frames.iter().map(|f| f.0).min() else {
        return Judged {
            covered: Vec::new(),
            findings: vec![Finding::Empty],
        };
    };
    let end = frames.iter().map(|f| f.0 + f.1).max().unwrap_or(t0);
    let content_ms = ticks_to_ms(end - t0, t.timescale);
    if (content_ms - key.len_ms()).abs() > KEY_CONTENT_TOLERANCE_MS {
        return Judged {
            covered: Vec::new(),
            findings: vec![Finding::Misstated {
                key_ms: key.len_ms(),
                content_ms,
            }],
        };
    }
    let mut durations: Vec<i128> = frames.iter().map(|f| f.1).collect();
    durations.sort_unstable();
    let median = durations[durations.len() / 2];
    let pieces: Vec<Interval> = frames
        .iter()
        .map(|&(at, d)| {
            let d = if ticks_to_ms(d, t.timescale) > MAX_FRAME_GAP_MS {
                median.min(d)
            } else {
                d
            };
            let s = key.start.saturating_add(ticks_to_ms(at - t0, t.timescale));
            let e = key
                .start
                .saturating_add(ticks_to_ms(at - t0 + d, t.timescale));
            Interval::new(s, e.max(s.saturating_add(1)))
        })
        .collect();
    let covered = intervals::clip(&intervals::merge(pieces), key);
    let findings = intervals::missing(key, &covered, DEFAULT_TOLERANCE_MS)
        .into_iter()
        .map(Finding::Gap)
        .collect();
    Judged { covered, findings }
}

/// The frame timing of a stored segment, from its `moov` and `moof` boxes only: one small
/// range request per fragment (the `moof` and the next box's header), never the samples.
pub async fn read_timing(store: &dyn ObjectStore, path: &Path, size: u64) -> Result<VideoTiming> {
    let mut buf = Buf::default();
    let mut pos = 0u64;
    let mut timescale = None;
    let mut video = vigil_media::mp4::VIDEO_TRACK_ID;
    let mut runs = Vec::new();
    while pos < size {
        buf.ensure(store, path, pos..(pos + 16).min(size), size)
            .await?;
        let (fourcc, hl, len) = fmp4::box_header(buf.slice(pos..(pos + 16).min(size)))
            .ok_or_else(|| bad(format!("truncated box header at {pos}")))?;
        if len < hl as u64 || pos + len > size {
            return Err(bad(format!("box at {pos} has a bad size {len}")));
        }
        if matches!(&fourcc, b"moov" | b"moof") {
            if len > MAX_META_BOX {
                return Err(bad(format!("{len}-byte metadata box at {pos}")));
            }
            buf.ensure(store, path, pos..pos + len, size).await?;
            let b = buf.slice(pos..pos + len);
            if &fourcc == b"moov" {
                let ts = fmp4::timescales(b)?;
                video = fmp4::video_track(&ts);
                timescale = ts.get(&video).copied();
            } else if let Some(r) = fmp4::moof_video_run(&b[hl..], video)? {
                runs.push(r);
            }
        }
        pos += len;
    }
    Ok(VideoTiming {
        timescale: timescale.ok_or_else(|| bad("no moov with a video track".into()))?,
        runs,
    })
}

fn bad(msg: String) -> crate::Error {
    crate::Error::Media(vigil_media::Error::Mp4(msg))
}

/// The bytes of the last range read.
#[derive(Default)]
struct Buf {
    start: u64,
    data: bytes::Bytes,
}

impl Buf {
    async fn ensure(
        &mut self,
        store: &dyn ObjectStore,
        path: &Path,
        want: Range<u64>,
        size: u64,
    ) -> Result<()> {
        let have = self.start..self.start + self.data.len() as u64;
        if want.start >= have.start && want.end <= have.end {
            return Ok(());
        }
        let end = want.end.max((want.start + READ_AHEAD).min(size));
        self.data = store.get_range(path, want.start..end).await?;
        self.start = want.start;
        if (self.data.len() as u64) < want.end - want.start {
            return Err(bad(format!("short read at {}", want.start)));
        }
        Ok(())
    }

    fn slice(&self, r: Range<u64>) -> &[u8] {
        let a = (r.start - self.start) as usize;
        let b = ((r.end - self.start) as usize).min(self.data.len());
        &self.data[a.min(b)..b]
    }
}

/// A window of a camera judged by content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Content {
    /// The segments' keys (what the key-only view would call covered), merged.
    pub keys: Vec<Interval>,
    /// What the frames cover, merged.
    pub covered: Vec<Interval>,
    /// Segments with something wrong inside.
    pub findings: Vec<(SegmentKey, Finding)>,
}

/// Lists `camera`'s segments overlapping `window` and judges each by its frames. Store errors
/// are errors; a segment that does not parse is a finding (and a hole), not an error.
pub async fn covered(
    store: &dyn ObjectStore,
    prefix: &str,
    camera: &CameraId,
    window: Interval,
) -> Result<Content> {
    let prefix = prefix.trim_matches('/');
    let found = catalog::segments(store, prefix, camera, window).await?;
    judge_listed(store, prefix, found).await
}

/// Judges segments already listed (see [`covered`]).
pub async fn judge_listed(
    store: &dyn ObjectStore,
    prefix: &str,
    found: Vec<(SegmentKey, u64)>,
) -> Result<Content> {
    let prefix = prefix.trim_matches('/');
    let judged: Vec<(SegmentKey, Judged)> =
        futures::stream::iter(found.into_iter().map(|(k, size)| async move {
            let iv = Interval::new(k.start_ms, k.end_ms);
            let path = Path::from(k.to_key(prefix));
            let j = match read_timing(store, &path, size).await {
                Ok(t) => judge(iv, &t),
                Err(crate::Error::Media(e)) => Judged {
                    covered: Vec::new(),
                    findings: vec![Finding::Unreadable(e.to_string())],
                },
                Err(e) => return Err(e),
            };
            Ok::<_, crate::Error>((k, j))
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut out = Content::default();
    for (k, j) in judged {
        out.keys.push(Interval::new(k.start_ms, k.end_ms));
        out.covered.extend(j.covered);
        for f in j.findings {
            if !matches!(f, Finding::Gap(_)) {
                warn!(segment = %k.to_key(prefix), finding = ?f, "segment content disagrees with its key");
            }
            out.findings.push((k.clone(), f));
        }
    }
    out.keys = intervals::merge(out.keys);
    out.covered = intervals::merge(out.covered);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_media::fmp4::VideoRun;

    const FRAME: u32 = 6000; // 15 fps at 90 kHz

    fn timing(runs: Vec<(Option<u64>, Vec<u32>)>) -> VideoTiming {
        VideoTiming {
            timescale: 90_000,
            runs: runs
                .into_iter()
                .map(|(b, d)| VideoRun {
                    base_decode_time: b,
                    durations: d,
                })
                .collect(),
        }
    }

    /// `secs` seconds of 15 fps in 1 s fragments.
    fn steady(secs: u64) -> VideoTiming {
        timing(
            (0..secs)
                .map(|s| (Some(s * 90_000), vec![FRAME; 15]))
                .collect(),
        )
    }

    #[test]
    fn a_segment_that_matches_its_key_covers_it() {
        let key = Interval::new(1_000_000, 1_010_000);
        let j = judge(key, &steady(10));
        assert_eq!(j.covered, vec![key]);
        assert!(j.findings.is_empty());
        // Drift of a few tens of ms between the wall clock and the RTP clock is fine.
        let j = judge(Interval::new(0, 10_040), &steady(10));
        assert!(j.findings.is_empty(), "{j:?}");
    }

    #[test]
    fn a_long_frame_inside_is_a_gap() {
        // 4 s of frames, one frame lasting 3 s, then 3 s of frames: 10 s.
        let mut d = vec![FRAME; 60];
        d.push(3 * 90_000);
        d.extend(vec![FRAME; 45]);
        let t = timing(vec![(Some(0), d)]);
        let key = Interval::new(0, 10_000);
        let j = judge(key, &t);
        // The long frame covers one ordinary frame (66 ms), the rest is the hole.
        assert_eq!(
            j.findings,
            vec![Finding::Gap(Interval::new(4_066, 7_000))],
            "{j:?}"
        );
        assert_eq!(
            j.covered,
            vec![Interval::new(0, 4_066), Interval::new(7_000, 10_000)]
        );
    }

    #[test]
    fn fragments_apart_leave_a_gap_and_chained_ones_do_not() {
        // Fragment 2 starts 2.5 s after fragment 1 ends (decode times say so).
        let t = timing(vec![
            (Some(0), vec![FRAME; 45]),
            (Some(5 * 90_000 + 45_000), vec![FRAME; 30]),
            (None, vec![FRAME; 30]),
        ]);
        let j = judge(Interval::new(0, 9_500), &t);
        assert_eq!(j.findings, vec![Finding::Gap(Interval::new(3_000, 5_500))]);
    }

    #[test]
    fn a_key_that_misstates_its_content_is_a_hole() {
        // The cases: a 16.9 s key holding 10 s of video, a 6.76 s key holding 10 s.
        for key_ms in [16_900, 6_760] {
            let j = judge(Interval::new(0, key_ms), &steady(10));
            assert!(j.covered.is_empty());
            assert_eq!(
                j.findings,
                vec![Finding::Misstated {
                    key_ms,
                    content_ms: 10_000
                }]
            );
        }
        let j = judge(Interval::new(0, 1000), &timing(vec![]));
        assert_eq!(j.findings, vec![Finding::Empty]);
    }

    proptest! {
        /// Whatever the timing, what is covered lies inside the key, and covered time plus
        /// gaps is the key (a misstated or empty segment covers nothing).
        #[test]
        fn covered_and_gaps_partition_the_key(
            start in 0i64..1_000_000_000,
            key_ms in 1i64..30_000,
            runs in proptest::collection::vec(
                (proptest::option::of(0u64..3_000_000),
                 proptest::collection::vec(1u32..400_000, 0..40)), 0..6),
        ) {
            let key = Interval::new(start, start + key_ms);
            let j = judge(key, &timing(runs));
            for c in &j.covered {
                prop_assert!(c.start >= key.start && c.end <= key.end);
            }
            let gaps: Vec<Interval> = j.findings.iter().filter_map(|f| match f {
                Finding::Gap(g) => Some(*g),
                _ => None,
            }).collect();
            if j.covered.is_empty() {
                prop_assert!(j.findings.iter().all(|f| !matches!(f, Finding::Gap(_))));
                prop_assert_eq!(j.findings.len(), 1);
            } else {
                let small = intervals::missing(key, &j.covered, 0)
                    .iter()
                    .filter(|g| g.len_ms() <= DEFAULT_TOLERANCE_MS)
                    .map(Interval::len_ms)
                    .sum::<i64>();
                prop_assert_eq!(
                    intervals::total_ms(&j.covered) + intervals::total_ms(&gaps) + small,
                    key_ms
                );
            }
        }

        /// Steady frames whose length matches the key within the tolerance cover the key.
        #[test]
        fn steady_frames_cover_their_key(secs in 1u64..20, drift in -900i64..100) {
            let key = Interval::new(0, secs as i64 * 1000 + drift);
            let j = judge(key, &steady(secs));
            prop_assert!(j.findings.is_empty(), "{:?}", j);
        }
    }
}
