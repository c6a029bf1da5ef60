//! Reading and re-timing stored fMP4 segments (`ftyp`+`moov`, then `moof`+`mdat` pairs, as
//! `crate::mp4` writes them).
//!
//! Every rewrite here keeps every box's size: `tfdt` is version 1 (64-bit) in our segments,
//! so shifting it is an in-place change, and an unwanted init is renamed to `free` rather than
//! removed. That is what lets the export compute its exact length from the objects' sizes
//! before reading them, and so answer HTTP Range requests while streaming.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};

/// A top-level box: where it is, what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxRef {
    pub fourcc: [u8; 4],
    pub offset: usize,
    pub header_len: usize,
    pub len: usize,
}

/// Reads a box header at the start of `data`. `None` if incomplete.
pub fn box_header(data: &[u8]) -> Option<([u8; 4], usize, u64)> {
    if data.len() < 8 {
        return None;
    }
    let size = u64::from(u32::from_be_bytes(data[..4].try_into().ok()?));
    let fourcc: [u8; 4] = data[4..8].try_into().ok()?;
    match size {
        1 => {
            if data.len() < 16 {
                return None;
            }
            Some((fourcc, 16, u64::from_be_bytes(data[8..16].try_into().ok()?)))
        }
        s => Some((fourcc, 8, s)),
    }
}

/// The complete boxes in `data` (top level, or the body of a container box).
pub fn boxes(data: &[u8]) -> Result<Vec<BoxRef>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (fourcc, header_len, len) = box_header(&data[pos..])
            .ok_or_else(|| Error::Mp4(format!("truncated box header at {pos}")))?;
        let len = usize::try_from(len).map_err(|_| Error::Mp4("box too large".into()))?;
        if len < header_len || pos + len > data.len() {
            return Err(Error::Mp4(format!(
                "box {} at {pos} has a bad size {len}",
                String::from_utf8_lossy(&fourcc)
            )));
        }
        out.push(BoxRef {
            fourcc,
            offset: pos,
            header_len,
            len,
        });
        pos += len;
    }
    Ok(out)
}

fn be32(d: &[u8], at: usize) -> Result<u32> {
    d.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| Error::Mp4("truncated box".into()))
}

fn child<'a>(data: &'a [u8], fourcc: &[u8; 4]) -> Result<Option<&'a [u8]>> {
    Ok(boxes(data)?
        .into_iter()
        .find(|b| &b.fourcc == fourcc)
        .map(|b| &data[b.offset + b.header_len..b.offset + b.len]))
}

/// Track id → timescale, from a `moov` body (or a whole init segment).
pub fn timescales(init: &[u8]) -> Result<BTreeMap<u32, u32>> {
    let moov = match child(init, b"moov")? {
        Some(m) => m,
        None => init,
    };
    let mut out = BTreeMap::new();
    for t in boxes(moov)?.into_iter().filter(|b| &b.fourcc == b"trak") {
        let trak = &moov[t.offset + t.header_len..t.offset + t.len];
        let tkhd = child(trak, b"tkhd")?.ok_or_else(|| Error::Mp4("trak without tkhd".into()))?;
        let id = if tkhd.first() == Some(&1) {
            be32(tkhd, 20)?
        } else {
            be32(tkhd, 12)?
        };
        let mdia = child(trak, b"mdia")?.ok_or_else(|| Error::Mp4("trak without mdia".into()))?;
        let mdhd = child(mdia, b"mdhd")?.ok_or_else(|| Error::Mp4("mdia without mdhd".into()))?;
        let ts = if mdhd.first() == Some(&1) {
            be32(mdhd, 20)?
        } else {
            be32(mdhd, 12)?
        };
        if ts == 0 {
            return Err(Error::Mp4(format!("track {id} has timescale 0")));
        }
        out.insert(id, ts);
    }
    if out.is_empty() {
        return Err(Error::Mp4("init segment has no tracks".into()));
    }
    Ok(out)
}

/// What two segments must share for one's fragments to play with the other's init: per track
/// its id, timescale and sample description (`stsd`: codec, resolution, SPS/PPS). Takes a
/// `moov` body (or a whole init segment).
pub fn track_signature(init: &[u8]) -> Result<Vec<u8>> {
    let moov = child(init, b"moov")?.unwrap_or(init);
    let mut sig = Vec::new();
    for t in boxes(moov)?.into_iter().filter(|b| &b.fourcc == b"trak") {
        let trak = &moov[t.offset + t.header_len..t.offset + t.len];
        let stsd = child(trak, b"mdia")?
            .map(|m| child(m, b"minf"))
            .transpose()?
            .flatten()
            .map(|m| child(m, b"stbl"))
            .transpose()?
            .flatten()
            .map(|m| child(m, b"stsd"))
            .transpose()?
            .flatten()
            .ok_or_else(|| Error::Mp4("trak without stsd".into()))?;
        sig.extend_from_slice(&(stsd.len() as u32).to_be_bytes());
        sig.extend_from_slice(stsd);
    }
    for (id, ts) in timescales(init)? {
        sig.extend_from_slice(&id.to_be_bytes());
        sig.extend_from_slice(&ts.to_be_bytes());
    }
    Ok(sig)
}

/// One `moof`+`mdat` fragment of a parsed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub offset: usize,
    /// `moof` and `mdat` together.
    pub len: usize,
    /// Track id → base decode time.
    pub decode_times: BTreeMap<u32, u64>,
    /// The first sample of `video_track` is a sync sample: playback can start here.
    pub starts_with_sync: bool,
}

/// A whole segment, parsed.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// Length of `ftyp`+`moov`.
    pub init_len: usize,
    pub timescales: BTreeMap<u32, u32>,
    pub fragments: Vec<Fragment>,
}

/// The video track is the first track (`mp4::VIDEO_TRACK_ID`).
pub fn video_track(ts: &BTreeMap<u32, u32>) -> u32 {
    ts.keys()
        .next()
        .copied()
        .unwrap_or(crate::mp4::VIDEO_TRACK_ID)
}

pub fn parse(data: &[u8]) -> Result<Parsed> {
    let top = boxes(data)?;
    let first_moof = top.iter().position(|b| &b.fourcc == b"moof");
    let init_end = match first_moof {
        Some(i) => top[i].offset,
        None => data.len(),
    };
    let timescales = timescales(&data[..init_end])?;
    let video = video_track(&timescales);
    let mut fragments = Vec::new();
    let mut i = first_moof.unwrap_or(top.len());
    while i < top.len() {
        let b = top[i];
        if &b.fourcc != b"moof" {
            i += 1;
            continue;
        }
        let mut len = b.len;
        if let Some(next) = top.get(i + 1).filter(|n| &n.fourcc == b"mdat") {
            len += next.len;
            i += 1;
        }
        let (decode_times, starts_with_sync) =
            moof_info(&data[b.offset + b.header_len..b.offset + b.len], video)?;
        fragments.push(Fragment {
            offset: b.offset,
            len,
            decode_times,
            starts_with_sync,
        });
        i += 1;
    }
    Ok(Parsed {
        init_len: init_end,
        timescales,
        fragments,
    })
}

fn moof_info(moof: &[u8], video: u32) -> Result<(BTreeMap<u32, u64>, bool)> {
    let mut times = BTreeMap::new();
    let mut sync = false;
    for t in boxes(moof)?.into_iter().filter(|b| &b.fourcc == b"traf") {
        let traf = &moof[t.offset + t.header_len..t.offset + t.len];
        let mut id = 0;
        let mut default_flags = 0u32;
        for b in boxes(traf)? {
            let body = &traf[b.offset + b.header_len..b.offset + b.len];
            match &b.fourcc {
                b"tfhd" => {
                    let flags = be32(body, 0)? & 0x00ff_ffff;
                    id = be32(body, 4)?;
                    let mut at = 8;
                    for (bit, size) in [(0x01, 8), (0x02, 4), (0x08, 4), (0x10, 4)] {
                        if flags & bit != 0 {
                            at += size;
                        }
                    }
                    if flags & 0x20 != 0 {
                        default_flags = be32(body, at)?;
                    }
                }
                b"tfdt" => {
                    let v = if body.first() == Some(&1) {
                        u64::from(be32(body, 4)?) << 32 | u64::from(be32(body, 8)?)
                    } else {
                        u64::from(be32(body, 4)?)
                    };
                    times.insert(id, v);
                }
                b"trun" if id == video => {
                    let flags = be32(body, 0)? & 0x00ff_ffff;
                    let mut at = 8;
                    if flags & 0x01 != 0 {
                        at += 4;
                    }
                    let first = if flags & 0x04 != 0 {
                        be32(body, at)?
                    } else if flags & 0x400 != 0 {
                        let mut a = at;
                        if flags & 0x100 != 0 {
                            a += 4;
                        }
                        if flags & 0x200 != 0 {
                            a += 4;
                        }
                        be32(body, a)?
                    } else {
                        default_flags
                    };
                    sync = first & 0x0001_0000 == 0;
                }
                _ => {}
            }
        }
    }
    Ok((times, sync))
}

/// The video samples of one fragment: its base decode time and each sample's duration, in the
/// track's timescale. Our segments carry no composition offsets, so decode time is
/// presentation time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoRun {
    /// `None` without `tfdt`: the fragment follows the previous one.
    pub base_decode_time: Option<u64>,
    pub durations: Vec<u32>,
}

/// The frame timing of a segment's video track, read from its `moov` and `moof` boxes only
/// (the coverage audit judges a segment's content by this, without reading the samples).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VideoTiming {
    /// Ticks per second of the video track.
    pub timescale: u32,
    pub runs: Vec<VideoRun>,
}

/// The video run of a `moof` body (`None` when the fragment holds no video). Memory is bounded
/// by the box: a sample count larger than the `trun` can hold is an error.
pub fn moof_video_run(moof: &[u8], video: u32) -> Result<Option<VideoRun>> {
    for t in boxes(moof)?.into_iter().filter(|b| &b.fourcc == b"traf") {
        let traf = &moof[t.offset + t.header_len..t.offset + t.len];
        let mut id = None;
        let mut default_duration = 0u32;
        let mut base = None;
        let mut durations: Vec<u32> = Vec::new();
        for b in boxes(traf)? {
            let body = &traf[b.offset + b.header_len..b.offset + b.len];
            match &b.fourcc {
                b"tfhd" => {
                    let flags = be32(body, 0)? & 0x00ff_ffff;
                    id = Some(be32(body, 4)?);
                    let mut at = 8;
                    for (bit, size) in [(0x01, 8), (0x02, 4)] {
                        if flags & bit != 0 {
                            at += size;
                        }
                    }
                    if flags & 0x08 != 0 {
                        default_duration = be32(body, at)?;
                    }
                }
                b"tfdt" => {
                    base = Some(if body.first() == Some(&1) {
                        u64::from(be32(body, 4)?) << 32 | u64::from(be32(body, 8)?)
                    } else {
                        u64::from(be32(body, 4)?)
                    });
                }
                b"trun" if id == Some(video) => {
                    let flags = be32(body, 0)? & 0x00ff_ffff;
                    let count = be32(body, 4)? as usize;
                    let mut at = 8;
                    for (bit, size) in [(0x01, 4), (0x04, 4)] {
                        if flags & bit != 0 {
                            at += size;
                        }
                    }
                    let entry: usize = [0x100, 0x200, 0x400, 0x800]
                        .iter()
                        .filter(|&&bit| flags & bit != 0)
                        .count()
                        * 4;
                    let room = body.len().saturating_sub(at);
                    if entry > 0 && count > room / entry {
                        return Err(Error::Mp4(format!(
                            "trun claims {count} samples in {room} bytes"
                        )));
                    }
                    if entry == 0 && count > 1 << 20 {
                        return Err(Error::Mp4(format!("trun claims {count} samples")));
                    }
                    durations.reserve(count);
                    for i in 0..count {
                        durations.push(if flags & 0x100 != 0 {
                            be32(body, at + i * entry)?
                        } else {
                            default_duration
                        });
                    }
                }
                _ => {}
            }
        }
        if id == Some(video) {
            return Ok(Some(VideoRun {
                base_decode_time: base,
                durations,
            }));
        }
    }
    Ok(None)
}

/// The video timing of a whole segment held in memory (see [`VideoTiming`]).
pub fn video_timing(data: &[u8]) -> Result<VideoTiming> {
    let top = boxes(data)?;
    let first_moof = top
        .iter()
        .position(|b| &b.fourcc == b"moof")
        .unwrap_or(top.len());
    let init_end = top.get(first_moof).map_or(data.len(), |b| b.offset);
    let ts = timescales(&data[..init_end])?;
    let video = video_track(&ts);
    let mut out = VideoTiming {
        timescale: ts
            .get(&video)
            .copied()
            .unwrap_or(crate::mp4::VIDEO_TIMESCALE),
        runs: Vec::new(),
    };
    for b in top[first_moof..].iter().filter(|b| &b.fourcc == b"moof") {
        if let Some(r) = moof_video_run(&data[b.offset + b.header_len..b.offset + b.len], video)? {
            out.runs.push(r);
        }
    }
    Ok(out)
}

/// How a rewrite changes each track's `tfdt`.
pub enum Timing {
    /// `tfdt` becomes `f(track, tfdt)`.
    Shift(Box<dyn Fn(u32, u64) -> u64 + Send>),
    /// `tfdt` is renamed to `free`: the fragment then starts where the track's previous
    /// fragment ended (ISO/IEC 14496-12: without `tfdt`, decode time is the sum of all
    /// preceding sample durations). Stored segments' key times come from the wall clock and
    /// drift from the sample clock by a few ms per segment; chaining by sample durations is
    /// what makes a concatenation play without overlaps.
    Chain,
}

/// Rewrites a whole `moof` box in place: `tfdt` of each track per `timing`, and `mfhd` gets
/// `sequence` when given.
pub fn rewrite_moof(moof: &mut [u8], sequence: Option<u32>, timing: &Timing) -> Result<()> {
    let (_, hl, _) = box_header(moof).ok_or_else(|| Error::Mp4("truncated moof".into()))?;
    let body = &mut moof[hl..];
    for b in boxes(body)? {
        let (s, e) = (b.offset + b.header_len, b.offset + b.len);
        match &b.fourcc {
            b"mfhd" => {
                if let (Some(seq), Some(slot)) = (sequence, body.get_mut(s + 4..s + 8)) {
                    slot.copy_from_slice(&seq.to_be_bytes());
                }
            }
            b"traf" => rewrite_traf(&mut body[s..e], timing)?,
            _ => {}
        }
    }
    Ok(())
}

fn rewrite_traf(traf: &mut [u8], timing: &Timing) -> Result<()> {
    let mut id = 0;
    for b in boxes(traf)? {
        let s = b.offset + b.header_len;
        let f = match timing {
            Timing::Shift(f) => f,
            Timing::Chain => {
                if &b.fourcc == b"tfdt" {
                    traf[b.offset + 4..b.offset + 8].copy_from_slice(b"free");
                }
                continue;
            }
        };
        match &b.fourcc {
            b"tfhd" => id = be32(traf, s + 4)?,
            b"tfdt" => {
                if traf.get(s) == Some(&1) {
                    let old = u64::from(be32(traf, s + 4)?) << 32 | u64::from(be32(traf, s + 8)?);
                    traf[s + 4..s + 12].copy_from_slice(&f(id, old).to_be_bytes());
                } else {
                    // A 32-bit tfdt cannot grow in place; our writer never produces one.
                    let old = u64::from(be32(traf, s + 4)?);
                    let new = u32::try_from(f(id, old)).map_err(|_| {
                        Error::Mp4("32-bit tfdt cannot hold the shifted time".into())
                    })?;
                    traf[s + 4..s + 8].copy_from_slice(&new.to_be_bytes());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Re-times a whole buffered segment (after its init) so that each track spans exactly
/// `span[track]` ticks starting at `start[track]`: sample durations are scaled (cumulatively
/// rounded, so the total is exact) and every `tfdt` is rewritten. HLS segments are fetched one
/// by one, so they cannot be chained like the export; stored key times come from the wall clock
/// and differ from the sample clock by a few ms per segment, and without this consecutive
/// segments would overlap or leave gaps. Tracks without per-sample durations are only shifted.
pub fn retime(
    data: &mut [u8],
    start: &BTreeMap<u32, u64>,
    span: &BTreeMap<u32, u64>,
) -> Result<()> {
    // (track) -> positions of duration fields, and (tfdt position, index of first sample).
    let mut durations: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    let mut tfdts: Vec<(u32, usize, usize, bool)> = Vec::new();
    for moof in boxes(data)?.into_iter().filter(|b| &b.fourcc == b"moof") {
        let mbody = moof.offset + moof.header_len;
        for traf in boxes(&data[mbody..moof.offset + moof.len])?
            .into_iter()
            .filter(|b| &b.fourcc == b"traf")
        {
            let tbody = mbody + traf.offset + traf.header_len;
            let mut id = 0;
            for b in boxes(&data[tbody..mbody + traf.offset + traf.len])? {
                let at = tbody + b.offset + b.header_len;
                match &b.fourcc {
                    b"tfhd" => id = be32(data, at + 4)?,
                    b"tfdt" => {
                        let first = durations.get(&id).map_or(0, Vec::len);
                        tfdts.push((id, at, first, data.get(at) == Some(&1)));
                    }
                    b"trun" => {
                        let flags = be32(data, at)? & 0x00ff_ffff;
                        let count = be32(data, at + 4)? as usize;
                        let mut p = at + 8;
                        if flags & 0x01 != 0 {
                            p += 4;
                        }
                        if flags & 0x04 != 0 {
                            p += 4;
                        }
                        let per = [0x100, 0x200, 0x400, 0x800]
                            .iter()
                            .filter(|f| flags & **f != 0)
                            .count()
                            * 4;
                        if flags & 0x100 == 0 {
                            continue;
                        }
                        let v = durations.entry(id).or_default();
                        for i in 0..count {
                            v.push(p + i * per);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    // Cumulative scaled time before each sample, per track.
    let mut cum: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (id, pos) in &durations {
        let orig: Vec<u64> = pos
            .iter()
            .map(|&p| be32(data, p).map(u64::from))
            .collect::<Result<_>>()?;
        let total: u64 = orig.iter().sum();
        let target = span.get(id).copied().unwrap_or(total);
        let mut c = Vec::with_capacity(orig.len() + 1);
        let mut acc = 0u64;
        c.push(0);
        for d in &orig {
            acc += d;
            let t = if total == 0 {
                acc
            } else {
                (u128::from(acc) * u128::from(target) / u128::from(total)) as u64
            };
            c.push(t);
        }
        for (i, &p) in pos.iter().enumerate() {
            let d = u32::try_from(c[i + 1] - c[i]).unwrap_or(u32::MAX);
            data[p..p + 4].copy_from_slice(&d.to_be_bytes());
        }
        cum.insert(*id, c);
    }
    for (id, at, first, v1) in tfdts {
        let base = start.get(&id).copied().unwrap_or(0);
        let t = base
            + cum
                .get(&id)
                .and_then(|c| c.get(first))
                .copied()
                .unwrap_or(0);
        if v1 {
            data[at + 4..at + 12].copy_from_slice(&t.to_be_bytes());
        } else {
            let t = u32::try_from(t).map_err(|_| Error::Mp4("32-bit tfdt overflow".into()))?;
            data[at + 4..at + 8].copy_from_slice(&t.to_be_bytes());
        }
    }
    Ok(())
}

/// What to do with the init boxes (`ftyp`, `moov`) of a segment being streamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitMode {
    Keep,
    /// Rename to `free`: same size, ignored by players.
    Free,
    Drop,
}

/// A streaming rewriter for a stored segment: re-times every `moof` (buffered; they are small)
/// and passes `mdat` payloads through without copying them.
pub struct Rewriter {
    init: InitMode,
    timing: Timing,
    next_sequence: Option<u32>,
    header: BytesMut,
    /// The current box: (fourcc, bytes left, buffered box or None when passing through).
    current: Option<([u8; 4], u64, Option<BytesMut>)>,
    /// `track_signature` every `moov` must have (fragments are about to be played with
    /// another segment's init).
    expect_tracks: Option<Vec<u8>>,
}

impl Rewriter {
    pub fn new(init: InitMode, first_sequence: Option<u32>, timing: Timing) -> Self {
        Rewriter {
            init,
            timing,
            next_sequence: first_sequence,
            header: BytesMut::new(),
            current: None,
            expect_tracks: None,
        }
    }

    /// Fails (instead of producing an undecodable stream) when a `moov` describes other
    /// tracks than `signature` (see `track_signature`).
    pub fn expect_tracks(mut self, signature: Vec<u8>) -> Self {
        self.expect_tracks = Some(signature);
        self
    }

    pub fn next_sequence(&self) -> Option<u32> {
        self.next_sequence
    }

    /// Feeds a chunk of the object, appends the output chunks to `out`.
    pub fn push(&mut self, mut chunk: Bytes, out: &mut Vec<Bytes>) -> Result<()> {
        while !chunk.is_empty() {
            let Some((fourcc, left, buf)) = &mut self.current else {
                // Collect a header (8 bytes, 16 for a 64-bit size).
                let want = if self.header.len() >= 4 && self.header[..4] == [0, 0, 0, 1] {
                    16
                } else {
                    8
                };
                let take = (want - self.header.len()).min(chunk.len());
                self.header.extend_from_slice(&chunk.split_to(take));
                if self.header.len() < want {
                    continue;
                }
                let Some((fourcc, hl, len)) = box_header(&self.header) else {
                    continue; // needs the 64-bit size
                };
                if (len as usize) < hl {
                    return Err(Error::Mp4(format!("box with bad size {len}")));
                }
                let mut header = std::mem::take(&mut self.header);
                let is_init = &fourcc == b"ftyp" || &fourcc == b"moov";
                let drop = is_init && self.init == InitMode::Drop;
                if is_init && self.init == InitMode::Free {
                    header[hl - 4..hl].copy_from_slice(b"free");
                }
                let left = len - hl as u64;
                let check = &fourcc == b"moov" && self.expect_tracks.is_some();
                if &fourcc == b"moof" || check {
                    self.current = Some((fourcc, left, Some(header)));
                } else {
                    if !drop {
                        out.push(header.freeze());
                    }
                    self.current = Some((fourcc, left, None));
                }
                self.finish_box_if_done(out)?;
                continue;
            };
            let take = (*left).min(chunk.len() as u64) as usize;
            let part = chunk.split_to(take);
            *left -= take as u64;
            let drop = (fourcc == b"ftyp" || fourcc == b"moov") && self.init == InitMode::Drop;
            match buf {
                Some(b) => b.extend_from_slice(&part),
                None if drop => {}
                None => out.push(part),
            }
            self.finish_box_if_done(out)?;
        }
        Ok(())
    }

    fn finish_box_if_done(&mut self, out: &mut Vec<Bytes>) -> Result<()> {
        if !matches!(&self.current, Some((_, 0, _))) {
            return Ok(());
        }
        // The box is complete: a buffered moof is re-timed and emitted, a buffered moov checked;
        // anything else was already passed through.
        match self.current.take() {
            Some((fourcc, _, Some(moov))) if &fourcc == b"moov" => {
                let hl = box_header(&moov).map_or(8, |h| h.1);
                let sig = track_signature(&moov[hl..])?;
                if self.expect_tracks.as_ref().is_some_and(|e| *e != sig) {
                    return Err(Error::Mp4(
                        "segment has other tracks or codec parameters than the first one".into(),
                    ));
                }
                if self.init != InitMode::Drop {
                    out.push(moov.freeze());
                }
            }
            Some((_, _, Some(mut moof))) => {
                let seq = self.next_sequence;
                rewrite_moof(&mut moof, seq, &self.timing)?;
                self.next_sequence = seq.map(|s| s.wrapping_add(1));
                out.push(moof.freeze());
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks the object ended on a box boundary.
    pub fn finish(&self) -> Result<()> {
        if self.current.is_some() || !self.header.is_empty() {
            return Err(Error::Mp4("segment ends inside a box".into()));
        }
        Ok(())
    }
}

/// `ts` ticks for `ms` milliseconds (floor; negative clamps at zero by the callers).
pub fn ms_to_ticks(ms: i64, ts: u32) -> i128 {
    i128::from(ms) * i128::from(ts) / 1000
}

/// Adds a signed shift to a decode time, clamping at zero.
pub fn shifted(t: u64, shift: i128) -> u64 {
    (i128::from(t) + shift).clamp(0, i128::from(u64::MAX)) as u64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mp4::{SampleInfo, TrackRun, VideoTrack, init_segment, mdat_header, moof};

    /// A segment with `frags` fragments of 25 frames at 25 fps, keyframe every `gop` frames.
    pub fn synthetic_segment(frags: u32, gop: u32) -> Vec<u8> {
        // avc1 entry content is irrelevant to these tests; only the box structure matters.
        let video = VideoTrack {
            sample_entry: b"\0\0\0\x08avc1".to_vec(),
            width: 64,
            height: 64,
        };
        let mut data = init_segment(&video, None, 0);
        for f in 0..frags {
            let samples: Vec<SampleInfo> = (0..25)
                .map(|i| SampleInfo {
                    duration: 3600,
                    size: 10,
                    sync: (f * 25 + i) % gop == 0,
                })
                .collect();
            data.extend(moof(
                f + 1,
                &[TrackRun {
                    track_id: 1,
                    base_decode_time: u64::from(f) * 90_000,
                    samples: &samples,
                    sample_flags: true,
                }],
            ));
            data.extend(mdat_header(250));
            data.extend(std::iter::repeat_n(0xab, 250));
        }
        data
    }

    #[test]
    fn parses_what_the_muxer_writes() {
        let d = synthetic_segment(4, 50);
        let p = parse(&d).unwrap();
        assert_eq!(p.timescales.get(&1), Some(&90_000));
        assert_eq!(p.fragments.len(), 4);
        assert_eq!(p.fragments[1].decode_times[&1], 90_000);
        let syncs: Vec<bool> = p.fragments.iter().map(|f| f.starts_with_sync).collect();
        assert_eq!(syncs, vec![true, false, true, false]);
        assert_eq!(p.init_len, p.fragments[0].offset);
        let last = p.fragments.last().unwrap();
        assert_eq!(last.offset + last.len, d.len());
    }

    #[test]
    fn video_timing_reads_every_sample_duration() {
        let d = synthetic_segment(3, 25);
        let t = video_timing(&d).unwrap();
        assert_eq!(t.timescale, 90_000);
        assert_eq!(t.runs.len(), 3);
        for (i, r) in t.runs.iter().enumerate() {
            assert_eq!(r.base_decode_time, Some(i as u64 * 90_000));
            assert_eq!(r.durations, vec![3600; 25]);
        }
        // A chained (tfdt-less) fragment follows its predecessor.
        let mut joined = d.clone();
        let p = parse(&d).unwrap();
        let f = &p.fragments[1];
        let (_, _, len) = box_header(&joined[f.offset..]).unwrap();
        rewrite_moof(
            &mut joined[f.offset..f.offset + len as usize],
            None,
            &Timing::Chain,
        )
        .unwrap();
        assert_eq!(
            video_timing(&joined).unwrap().runs[1].base_decode_time,
            None
        );
    }

    #[test]
    fn video_timing_refuses_a_sample_count_the_box_cannot_hold() {
        let mut d = synthetic_segment(1, 25);
        let at = d.windows(4).position(|w| w == b"trun").unwrap() + 8;
        d[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(video_timing(&d).is_err());
        assert!(video_timing(b"\0\0\0\x10moof\0\0\0\x08mfhd").is_err());
    }

    #[test]
    fn rewriter_keeps_sizes_in_any_chunking() {
        let d = synthetic_segment(3, 25);
        for chunk in [1usize, 3, 7, 64, 100_000] {
            let mut r = Rewriter::new(
                InitMode::Free,
                Some(100),
                Timing::Shift(Box::new(|_, t| t + 1_000_000)),
            );
            let mut out = Vec::new();
            for c in d.chunks(chunk) {
                r.push(Bytes::copy_from_slice(c), &mut out).unwrap();
            }
            r.finish().unwrap();
            let joined: Vec<u8> = out.concat();
            assert_eq!(joined.len(), d.len(), "chunk {chunk}");
            let top = boxes(&joined).unwrap();
            assert_eq!(&top[0].fourcc, b"free");
            assert_eq!(&top[1].fourcc, b"free");
            let p = parse(&[&d[..p_init(&d)], &joined[p_init(&d)..]].concat()).unwrap();
            assert_eq!(p.fragments[2].decode_times[&1], 1_000_000 + 180_000);
        }
        let mut r = Rewriter::new(InitMode::Drop, None, Timing::Chain);
        let mut out = Vec::new();
        r.push(Bytes::from(d.clone()), &mut out).unwrap();
        let joined = out.concat();
        assert_eq!(joined.len(), d.len() - p_init(&d));
        // Chained fragments carry no tfdt any more.
        assert!(!joined.windows(4).any(|w| w == b"tfdt"));
    }

    #[test]
    fn retime_fits_samples_to_the_key_span() {
        let d = synthetic_segment(3, 25); // 3 s of samples
        let init = p_init(&d);
        let mut media = d[init..].to_vec();
        let start = BTreeMap::from([(1u32, 900_000u64)]);
        let span = BTreeMap::from([(1u32, 269_460u64)]); // the key says 2.994 s
        retime(&mut media, &start, &span).unwrap();
        let p = parse(&[&d[..init], &media[..]].concat()).unwrap();
        let t: Vec<u64> = p.fragments.iter().map(|f| f.decode_times[&1]).collect();
        assert_eq!(t[0], 900_000);
        assert!(t[1] > 900_000 + 89_000 && t[1] < 900_000 + 90_000, "{t:?}");
        // Every sample duration was rewritten so that the total is exact.
        let mut total = 0u64;
        for f in &p.fragments {
            let moof = &media[f.offset - init..];
            let (_, hl, len) = box_header(moof).unwrap();
            let body = &moof[hl..len as usize];
            let traf = child(body, b"traf").unwrap().unwrap();
            let trun = child(traf, b"trun").unwrap().unwrap();
            let n = be32(trun, 4).unwrap() as usize;
            for i in 0..n {
                total += u64::from(be32(trun, 12 + i * 12).unwrap());
            }
        }
        assert_eq!(total, 269_460);
    }

    #[test]
    fn rewriter_refuses_other_tracks() {
        let d = synthetic_segment(2, 25);
        let sig = track_signature(&d[..p_init(&d)]).unwrap();
        let mut out = Vec::new();
        let mut r = Rewriter::new(InitMode::Free, None, Timing::Chain).expect_tracks(sig.clone());
        for c in d.chunks(5) {
            r.push(Bytes::copy_from_slice(c), &mut out).unwrap();
        }
        assert_eq!(out.concat().len(), d.len());
        let mut other = sig;
        other[10] ^= 1;
        let mut r = Rewriter::new(InitMode::Free, None, Timing::Chain).expect_tracks(other);
        assert!(r.push(Bytes::from(d.clone()), &mut Vec::new()).is_err());
    }

    fn p_init(d: &[u8]) -> usize {
        parse(d).unwrap().init_len
    }
}
