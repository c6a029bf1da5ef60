//! HLS (RFC 8216, version 7) playlists over stored segments: fMP4 media segments, one
//! `EXT-X-MAP` per run (each stored segment carries its own init; within a run the init of the
//! run's first segment is used), `EXT-X-DISCONTINUITY` at holes.
//!
//! Media segments are re-timed on the fly so that `tfdt` counts from the playlist's first
//! segment (`base`): players expect one timeline across segments, while stored segments each
//! start at zero.

use std::fmt::Write;

use vigil_store::layout::SegmentKey;
use vigil_store::playlist::Run;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `end` given: a finished list with `EXT-X-ENDLIST`.
    Vod,
    /// `end` omitted: segments are only appended; the player reloads and follows the live edge.
    Event,
}

/// The file name part of a segment URL: `<start>-<end>-<origin>`.
pub fn segment_name(k: &SegmentKey) -> String {
    format!("{}-{}-{}", k.start_ms, k.end_ms, k.origin)
}

pub fn playlist(runs: &[Run<(SegmentKey, u64)>], kind: Kind, base_ms: i64) -> String {
    let target = runs
        .iter()
        .flat_map(|r| r.items.iter())
        .map(|(k, _)| (k.end_ms - k.start_ms + 999) / 1000)
        .max()
        .unwrap_or(10)
        .max(1);
    let mut s = String::new();
    let _ = writeln!(s, "#EXTM3U");
    let _ = writeln!(s, "#EXT-X-VERSION:7");
    let _ = writeln!(s, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:0");
    let _ = writeln!(
        s,
        "#EXT-X-PLAYLIST-TYPE:{}",
        match kind {
            Kind::Vod => "VOD",
            Kind::Event => "EVENT",
        }
    );
    let _ = writeln!(s, "#EXT-X-INDEPENDENT-SEGMENTS");
    for (i, run) in runs.iter().enumerate() {
        let Some((first, _)) = run.items.first() else {
            continue;
        };
        if i > 0 {
            let _ = writeln!(s, "#EXT-X-DISCONTINUITY");
        }
        let _ = writeln!(
            s,
            "#EXT-X-MAP:URI=\"segments/{}/init.mp4\"",
            segment_name(first)
        );
        for (k, _) in &run.items {
            let _ = writeln!(
                s,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                vigil_store::gaps::rfc3339(k.start_ms)
            );
            let _ = writeln!(s, "#EXTINF:{:.3},", (k.end_ms - k.start_ms) as f64 / 1000.0);
            let _ = writeln!(s, "segments/{}/media.m4s?base={base_ms}", segment_name(k));
        }
    }
    if kind == Kind::Vod {
        let _ = writeln!(s, "#EXT-X-ENDLIST");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_store::layout::{CameraId, Origin};

    #[test]
    fn playlist_example() {
        let c = CameraId::new("ns", "c").unwrap();
        let k = |s, e| {
            (
                SegmentKey::new(c.clone(), s, e, Origin::Live).unwrap(),
                1u64,
            )
        };
        let runs = vec![
            Run {
                items: vec![k(1000, 11_000), k(11_000, 21_500)],
            },
            Run {
                items: vec![k(40_000, 50_000)],
            },
        ];
        let p = playlist(&runs, Kind::Vod, 1000);
        assert!(p.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:11\n"));
        assert_eq!(p.matches("#EXT-X-DISCONTINUITY").count(), 1);
        assert_eq!(p.matches("#EXT-X-MAP").count(), 2);
        assert!(p.contains("#EXTINF:10.500,\nsegments/11000-21500-live/media.m4s?base=1000\n"));
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
        assert!(!playlist(&runs, Kind::Event, 1000).contains("ENDLIST"));
    }
}
