//! `export.mp4`: one fragmented MP4 for a time range, streamed.
//!
//! Layout of the output: the first segment's init (`ftyp`+`moov`), the first segment's
//! fragments from the last keyframe fragment at or before `start` (re-timed to start at 0),
//! every whole segment in between (streamed from the store; their own init boxes and `tfdt`s
//! renamed to `free`, so each fragment follows the previous one by sample durations: the
//! timeline is continuous and holes are skipped), and the last segment's fragments up to
//! `end`. Only the first and last segments are read before answering; every
//! other part's output size equals its object size (see `fmp4`), so the total length, and
//! therefore HTTP Range, is known up front.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use tracing::warn;

use crate::error::{Error, Result};
use vigil_media::fmp4::{self, InitMode, Rewriter, Timing, ms_to_ticks, shifted};
use vigil_store::catalog::Catalog;
use vigil_store::intervals::Interval;
use vigil_store::layout::{CameraId, SegmentKey};
use vigil_store::playlist;

/// Per-track shift: output tfdt = stored tfdt + shift.
pub type Shifts = BTreeMap<u32, i128>;

pub enum Part {
    Bytes(Bytes),
    /// A whole stored segment, chained after the previous one while streaming (its `tfdt`s
    /// become `free`, see `fmp4::Timing::Chain`). Output size = `size`.
    Object {
        path: Path,
        size: u64,
    },
}

impl Part {
    pub fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::Object { size, .. } => *size,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Plan {
    pub parts: Vec<Part>,
    /// `fmp4::track_signature` of the init every streamed segment must match.
    pub tracks: Vec<u8>,
    pub total: u64,
    /// Holes inside the requested window (not in the output).
    pub holes: Vec<Interval>,
    /// What the output actually covers (keyframe-aligned start).
    pub start_ms: i64,
    pub end_ms: i64,
    pub segments: usize,
}

/// Shift for every track so that a segment whose footage starts `offset_ms` after the
/// output's zero lands there; `cut_video` is the first segment's video tfdt at the cut.
fn shifts_for(ts: &BTreeMap<u32, u32>, offset_ms: i64, cut: (u64, u32)) -> Shifts {
    ts.iter()
        .map(|(&id, &t)| {
            let cut_ticks = i128::from(cut.0) * i128::from(t) / i128::from(cut.1.max(1));
            (id, ms_to_ticks(offset_ms, t) - cut_ticks)
        })
        .collect()
}

fn apply(shifts: &Shifts) -> impl Fn(u32, u64) -> u64 + Send + use<> {
    let s = shifts.clone();
    move |id, t| shifted(t, s.get(&id).copied().unwrap_or(0))
}

/// Rewrites a run of fragments of a buffered segment.
fn cut(data: &Bytes, frags: &[fmp4::Fragment], timing: Timing) -> Result<Bytes> {
    let (Some(first), Some(last)) = (frags.first(), frags.last()) else {
        return Ok(Bytes::new());
    };
    let mut r = Rewriter::new(InitMode::Keep, None, timing);
    let mut out = Vec::new();
    r.push(data.slice(first.offset..last.offset + last.len), &mut out)?;
    r.finish()?;
    Ok(Bytes::from(out.concat()))
}

pub async fn plan(catalog: &Catalog, camera: &CameraId, window: Interval) -> Result<Option<Plan>> {
    let segments = catalog.segments(camera, window).await?;
    let (runs, holes) = playlist::playlist(segments, window);
    // Holes need no bookkeeping: every segment after the first is chained to the end of the
    // previous one by sample durations (`Timing::Chain`), so holes simply drop out.
    let flat: Vec<(SegmentKey, u64)> = runs.into_iter().flat_map(|r| r.items).collect();
    let (Some(first), Some(last)) = (flat.first().cloned(), flat.last().cloned()) else {
        return Ok(None);
    };
    let single = flat.len() == 1;
    let (first_data, last_data) = if single {
        let d = catalog
            .store
            .get(&catalog.path(&first.0))
            .await?
            .bytes()
            .await?;
        (d.clone(), d)
    } else {
        let (a, b) = futures::try_join!(
            async {
                catalog
                    .store
                    .get(&catalog.path(&first.0))
                    .await?
                    .bytes()
                    .await
            },
            async {
                catalog
                    .store
                    .get(&catalog.path(&last.0))
                    .await?
                    .bytes()
                    .await
            },
        )?;
        (a, b)
    };
    let p0 = fmp4::parse(&first_data)?;
    let tracks = fmp4::track_signature(&first_data[..p0.init_len])?;
    let video = fmp4::video_track(&p0.timescales);
    let vts = p0.timescales.get(&video).copied().unwrap_or(90_000);
    let frag_ms = |k: &SegmentKey, f: &fmp4::Fragment| {
        k.start_ms + (f.decode_times.get(&video).copied().unwrap_or(0) as i64) * 1000 / vts as i64
    };
    // Start: the last fragment that begins with a keyframe at or before `start`.
    let start_idx = p0
        .fragments
        .iter()
        .enumerate()
        .filter(|(_, f)| f.starts_with_sync && frag_ms(&first.0, f) <= window.start)
        .map(|(i, _)| i)
        .next_back()
        .or_else(|| p0.fragments.iter().position(|f| f.starts_with_sync))
        .ok_or_else(|| Error::Mp4(format!("segment {} has no keyframe", first.0.relative())))?;
    let cut_ticks = p0.fragments[start_idx]
        .decode_times
        .get(&video)
        .copied()
        .unwrap_or(0);
    let cut_v = (cut_ticks, vts);
    let start_ms = frag_ms(&first.0, &p0.fragments[start_idx]);
    let end_filter = |k: &SegmentKey, frags: &[fmp4::Fragment]| -> usize {
        // Fragments that begin before `end`; at least one.
        frags
            .iter()
            .filter(|f| frag_ms(k, f) < window.end)
            .count()
            .max(1)
    };

    let mut parts = vec![Part::Bytes(first_data.slice(..p0.init_len))];
    let first_shifts = shifts_for(&p0.timescales, 0, cut_v);
    let first_end = if single {
        end_filter(&first.0, &p0.fragments).max(start_idx + 1)
    } else {
        p0.fragments.len()
    };
    parts.push(Part::Bytes(cut(
        &first_data,
        &p0.fragments[start_idx..first_end],
        Timing::Shift(Box::new(apply(&first_shifts))),
    )?));
    let mut end_ms = first.0.end_ms;
    if !single {
        for (k, size) in &flat[1..flat.len() - 1] {
            parts.push(Part::Object {
                path: catalog.path(k),
                size: *size,
            });
        }
        let pl = fmp4::parse(&last_data)?;
        if fmp4::track_signature(&last_data[..pl.init_len])? != tracks {
            // Different tracks cannot share the first init; stop at the segment before.
            warn!(camera = %camera, key = %last.0.relative(), "track layout changed; export ends early");
        } else {
            let n = end_filter(&last.0, &pl.fragments);
            parts.push(Part::Bytes(cut(
                &last_data,
                &pl.fragments[..n],
                Timing::Chain,
            )?));
            end_ms = pl
                .fragments
                .get(n)
                .map(|f| frag_ms(&last.0, f))
                .unwrap_or(last.0.end_ms);
        }
    } else if let Some(f) = p0.fragments.get(first_end) {
        end_ms = frag_ms(&first.0, f);
    }
    let total = parts.iter().map(Part::len).sum();
    Ok(Some(Plan {
        parts,
        tracks,
        total,
        holes,
        start_ms,
        end_ms,
        segments: flat.len(),
    }))
}

/// Streams bytes `range` of the planned output into a channel; the receiver is the HTTP body.
pub fn stream(
    store: Arc<dyn ObjectStore>,
    plan: Plan,
    range: Range<u64>,
) -> mpsc::Receiver<std::result::Result<Bytes, std::io::Error>> {
    // Two chunks of look-ahead: the next object's request is under way while the client
    // drains the current one, without buffering whole objects.
    let (mut tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        if let Err(e) = stream_parts(&store, plan.parts, &plan.tracks, range, &mut tx).await {
            warn!(error = %vigil_store::error::chain(&e), "export stream failed");
            let _ = tx
                .send(Err(std::io::Error::other("export failed while streaming")))
                .await;
        }
    });
    rx
}

type Tx = mpsc::Sender<std::result::Result<Bytes, std::io::Error>>;

async fn stream_parts(
    store: &Arc<dyn ObjectStore>,
    parts: Vec<Part>,
    tracks: &[u8],
    range: Range<u64>,
    tx: &mut Tx,
) -> Result<()> {
    // Parts that intersect the range, with the intersection relative to the part.
    let mut at = 0u64;
    let mut wanted = Vec::new();
    for p in parts {
        let len = p.len();
        let (s, e) = (range.start.max(at), range.end.min(at + len));
        if s < e {
            wanted.push((p, s - at..e - at));
        }
        at += len;
    }
    // Start each object's GET one step ahead of draining it.
    let mut opened = futures::stream::iter(wanted.into_iter().map(|(p, r)| {
        let store = store.clone();
        async move {
            match p {
                Part::Bytes(b) => {
                    Ok::<_, Error>((None, Some(b.slice(r.start as usize..r.end as usize)), r))
                }
                Part::Object { path, .. } => {
                    // The rewriter needs box boundaries, so a partial object is read from its
                    // start up to the end of the wanted range and trimmed.
                    let opts = GetOptions {
                        range: Some(GetRange::Bounded(0..r.end)),
                        ..Default::default()
                    };
                    let g = store.get_opts(&path, opts).await?;
                    Ok((Some(g.into_stream()), None, r))
                }
            }
        }
    }))
    .buffered(2);
    while let Some(next) = opened.next().await {
        let (body, bytes, r) = next?;
        if let Some(b) = bytes {
            if tx.send(Ok(b)).await.is_err() {
                return Ok(()); // client went away
            }
            continue;
        }
        let Some(mut body) = body else { continue };
        // A camera whose codec parameters changed mid-range cannot share the first init; the
        // stream is cut off (and logged) rather than turning undecodable.
        let mut rw =
            Rewriter::new(InitMode::Free, None, Timing::Chain).expect_tracks(tracks.to_vec());
        let mut pos = 0u64;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            rw.push(chunk?, &mut out)?;
            for b in out.drain(..) {
                let (s, e) = (pos, pos + b.len() as u64);
                pos = e;
                let (cs, ce) = (r.start.max(s), r.end.min(e));
                if cs < ce {
                    let piece = b.slice((cs - s) as usize..(ce - s) as usize);
                    if tx.send(Ok(piece)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        if r.end == pos {
            // A truncated read ends inside a box by design; only a full read is checked.
            if pos == r.end && r.start == 0 {
                let _ = rw.finish();
            }
        } else {
            return Err(Error::Mp4(format!(
                "object changed while streaming (got {pos} bytes, expected {})",
                r.end
            )));
        }
    }
    Ok(())
}

/// Parses a single `Range: bytes=...` against `total`. `Ok(None)`: no (usable) range, serve
/// everything; `Err(())`: unsatisfiable (416).
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, total: u64) -> Result<Option<Range<u64>>, ()> {
    let Some(h) = header else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multipart ranges: answer with the whole body, which is allowed
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        total.saturating_sub(n)..total
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e = if b.is_empty() {
            total
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .saturating_add(1)
                .min(total)
        };
        if s >= total || e <= s {
            return Err(());
        }
        s..e
    };
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-"), 10), Ok(Some(0..10)));
        assert_eq!(parse_range(Some("bytes=2-4"), 10), Ok(Some(2..5)));
        assert_eq!(parse_range(Some("bytes=2-400"), 10), Ok(Some(2..10)));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some(7..10)));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }
}
