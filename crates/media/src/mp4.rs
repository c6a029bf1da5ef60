//! A minimal fragmented-MP4 (ISO/IEC 14496-12) writer, and a scanner for what it writes.
//!
//! A segment is `ftyp` + `moov` (no samples; `mvex`/`trex` announce fragments) followed by
//! `moof`+`mdat` pairs. Every fragment is complete on its own, so a file cut after any `mdat`
//! is a valid, playable segment: that is what makes crash recovery of a half-written segment
//! possible (see `scan` and `docs/storage.md`). The sample entries (`avc1`/`avcC`,
//! `hvc1`/`hvcC`, `mp4a`/`esds`) come from retina, which builds them from the stream's
//! parameter sets.
//!
//! Track 1 is video with a 90 kHz timescale (the RTP clock, so durations are exact RTP
//! deltas); track 2, when present, is audio with the audio RTP clock rate as timescale.

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// `sample_depends_on = 2` (does not depend on others): a sync sample.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_depends_on = 1`, `sample_is_non_sync_sample = 1`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

fn write_box(buf: &mut Vec<u8>, fourcc: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(fourcc);
    body(buf);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn write_full_box(
    buf: &mut Vec<u8>,
    fourcc: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(buf, fourcc, |b| {
        b.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
        body(b);
    });
}

fn u16be(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u32be(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn u64be(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}

const UNITY_MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// The video track of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoTrack {
    /// A complete `avc1`/`hvc1` sample entry box.
    pub sample_entry: Vec<u8>,
    pub width: u16,
    pub height: u16,
}

/// The audio track of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTrack {
    /// A complete `mp4a` sample entry box.
    pub sample_entry: Vec<u8>,
    pub timescale: u32,
}

/// `ftyp` + `moov` for a segment with these tracks. `unix_secs` is the creation time.
pub fn init_segment(video: &VideoTrack, audio: Option<&AudioTrack>, unix_secs: i64) -> Vec<u8> {
    // MP4 times count from 1904-01-01.
    let mp4_time = (unix_secs.max(0) as u64).saturating_add(2_082_844_800);
    let mut b = Vec::with_capacity(1024);
    write_box(&mut b, b"ftyp", |b| {
        b.extend_from_slice(b"iso5");
        u32be(b, 512);
        for brand in [b"iso5", b"iso6", b"mp41", b"isom"] {
            b.extend_from_slice(brand);
        }
    });
    write_box(&mut b, b"moov", |b| {
        write_full_box(b, b"mvhd", 1, 0, |b| {
            u64be(b, mp4_time);
            u64be(b, mp4_time);
            u32be(b, 1000); // timescale
            u64be(b, 0); // duration: unknown, fragments carry it
            u32be(b, 0x0001_0000); // rate 1.0
            u16be(b, 0x0100); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            for m in UNITY_MATRIX {
                u32be(b, m);
            }
            b.extend_from_slice(&[0; 24]); // pre_defined
            u32be(b, if audio.is_some() { 3 } else { 2 }); // next_track_ID
        });
        write_trak(
            b,
            VIDEO_TRACK_ID,
            VIDEO_TIMESCALE,
            mp4_time,
            Some((video.width, video.height)),
            &video.sample_entry,
        );
        if let Some(a) = audio {
            write_trak(
                b,
                AUDIO_TRACK_ID,
                a.timescale,
                mp4_time,
                None,
                &a.sample_entry,
            );
        }
        write_box(b, b"mvex", |b| {
            let trex = |b: &mut Vec<u8>, id: u32| {
                write_full_box(b, b"trex", 0, 0, |b| {
                    u32be(b, id);
                    u32be(b, 1); // default_sample_description_index
                    u32be(b, 0); // default_sample_duration
                    u32be(b, 0); // default_sample_size
                    u32be(b, 0); // default_sample_flags
                });
            };
            trex(b, VIDEO_TRACK_ID);
            if audio.is_some() {
                trex(b, AUDIO_TRACK_ID);
            }
        });
    });
    b
}

fn write_trak(
    b: &mut Vec<u8>,
    track_id: u32,
    timescale: u32,
    mp4_time: u64,
    dims: Option<(u16, u16)>,
    sample_entry: &[u8],
) {
    write_box(b, b"trak", |b| {
        // flags: track_enabled | track_in_movie
        write_full_box(b, b"tkhd", 1, 3, |b| {
            u64be(b, mp4_time);
            u64be(b, mp4_time);
            u32be(b, track_id);
            u32be(b, 0); // reserved
            u64be(b, 0); // duration
            b.extend_from_slice(&[0; 8]); // reserved
            u16be(b, 0); // layer
            u16be(b, if dims.is_some() { 0 } else { 1 }); // alternate_group
            u16be(b, if dims.is_some() { 0 } else { 0x0100 }); // volume
            u16be(b, 0);
            for m in UNITY_MATRIX {
                u32be(b, m);
            }
            let (w, h) = dims.unwrap_or((0, 0));
            u32be(b, u32::from(w) << 16);
            u32be(b, u32::from(h) << 16);
        });
        write_box(b, b"mdia", |b| {
            write_full_box(b, b"mdhd", 1, 0, |b| {
                u64be(b, mp4_time);
                u64be(b, mp4_time);
                u32be(b, timescale);
                u64be(b, 0);
                u16be(b, 0x55c4); // language "und"
                u16be(b, 0);
            });
            write_full_box(b, b"hdlr", 0, 0, |b| {
                u32be(b, 0);
                b.extend_from_slice(if dims.is_some() { b"vide" } else { b"soun" });
                b.extend_from_slice(&[0; 12]);
                b.extend_from_slice(if dims.is_some() {
                    b"VideoHandler\0"
                } else {
                    b"SoundHandler\0"
                });
            });
            write_box(b, b"minf", |b| {
                if dims.is_some() {
                    write_full_box(b, b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8]));
                } else {
                    write_full_box(b, b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4]));
                }
                write_box(b, b"dinf", |b| {
                    write_full_box(b, b"dref", 0, 0, |b| {
                        u32be(b, 1);
                        // flags 1: media data is in this file
                        write_full_box(b, b"url ", 0, 1, |_| {});
                    });
                });
                write_box(b, b"stbl", |b| {
                    write_full_box(b, b"stsd", 0, 0, |b| {
                        u32be(b, 1);
                        b.extend_from_slice(sample_entry);
                    });
                    write_full_box(b, b"stts", 0, 0, |b| u32be(b, 0));
                    write_full_box(b, b"stsc", 0, 0, |b| u32be(b, 0));
                    write_full_box(b, b"stsz", 0, 0, |b| {
                        u32be(b, 0);
                        u32be(b, 0);
                    });
                    write_full_box(b, b"stco", 0, 0, |b| u32be(b, 0));
                });
            });
        });
    });
}

/// One sample of a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleInfo {
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
}

/// One track's run in a fragment. The track's sample data follows the previous track's data in
/// the `mdat`, in the order the runs are given.
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    pub track_id: u32,
    /// Decode time of the first sample, in the track's timescale, from the segment's start.
    pub base_decode_time: u64,
    pub samples: &'a [SampleInfo],
    /// Write per-sample flags (video). Audio samples are all sync samples (`trex` default 0).
    pub sample_flags: bool,
}

/// `moof` for a fragment whose `mdat` (with an 8-byte header) follows immediately.
pub fn moof(sequence: u32, runs: &[TrackRun<'_>]) -> Vec<u8> {
    let mut b = Vec::with_capacity(
        64 + runs
            .iter()
            .map(|r| 48 + r.samples.len() * 12)
            .sum::<usize>(),
    );
    // trun data_offset fields, patched once the moof's size is known.
    let mut offset_fields = Vec::with_capacity(runs.len());
    write_box(&mut b, b"moof", |b| {
        write_full_box(b, b"mfhd", 0, 0, |b| u32be(b, sequence));
        for r in runs {
            write_box(b, b"traf", |b| {
                // default-base-is-moof: data offsets count from the moof's first byte.
                write_full_box(b, b"tfhd", 0, 0x02_0000, |b| u32be(b, r.track_id));
                write_full_box(b, b"tfdt", 1, 0, |b| u64be(b, r.base_decode_time));
                // data-offset | sample-duration | sample-size [| sample-flags]
                let flags =
                    0x000001 | 0x000100 | 0x000200 | if r.sample_flags { 0x000400 } else { 0 };
                write_full_box(b, b"trun", 0, flags, |b| {
                    u32be(b, r.samples.len() as u32);
                    offset_fields.push(b.len());
                    u32be(b, 0);
                    for s in r.samples {
                        u32be(b, s.duration);
                        u32be(b, s.size);
                        if r.sample_flags {
                            u32be(
                                b,
                                if s.sync {
                                    SYNC_SAMPLE_FLAGS
                                } else {
                                    NON_SYNC_SAMPLE_FLAGS
                                },
                            );
                        }
                    }
                });
            });
        }
    });
    let mut offset = b.len() as u64 + 8;
    for (pos, r) in offset_fields.into_iter().zip(runs) {
        b[pos..pos + 4].copy_from_slice(&(offset as u32).to_be_bytes());
        offset += r.samples.iter().map(|s| u64::from(s.size)).sum::<u64>();
    }
    b
}

/// The 8-byte `mdat` header for `payload_len` bytes of sample data.
pub fn mdat_header(payload_len: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&(payload_len.saturating_add(8)).to_be_bytes());
    h[4..].copy_from_slice(b"mdat");
    h
}

/// What `scan` found in a (possibly truncated) segment file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Length of the longest prefix that is a valid segment: `ftyp`+`moov` plus whole
    /// `moof`+`mdat` pairs. 0 if even the init part is incomplete.
    pub valid_len: u64,
    pub fragments: u32,
    pub video_samples: u64,
    pub video_sync_samples: u64,
    /// Sum of the video sample durations, 90 kHz ticks.
    pub video_duration: u64,
    pub audio_samples: u64,
}

struct BoxHeader {
    fourcc: [u8; 4],
    header_len: usize,
    total_len: usize,
}

/// A complete box at the start of `data`, read with the one box parser ([`crate::fmp4::box_header`]).
fn read_box_header(data: &[u8]) -> Option<BoxHeader> {
    let (fourcc, header_len, total) = crate::fmp4::box_header(data)?;
    // 0 means "to the end of the file": never written by us, and unbounded for a scanner.
    if total == 0 || total < header_len as u64 || total > data.len() as u64 {
        return None;
    }
    Some(BoxHeader {
        fourcc,
        header_len,
        total_len: total as usize,
    })
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

#[derive(Default)]
struct MoofInfo {
    video_samples: u64,
    video_sync: u64,
    video_duration: u64,
    audio_samples: u64,
}

fn parse_moof(body: &[u8]) -> Option<MoofInfo> {
    let mut info = MoofInfo::default();
    let mut pos = 0;
    while pos < body.len() {
        let h = read_box_header(&body[pos..])?;
        if &h.fourcc == b"traf" {
            parse_traf(&body[pos + h.header_len..pos + h.total_len], &mut info)?;
        }
        pos += h.total_len;
    }
    Some(info)
}

fn parse_traf(body: &[u8], info: &mut MoofInfo) -> Option<()> {
    let mut pos = 0;
    let mut track_id = 0;
    let mut default_duration = 0u32;
    let mut default_flags = 0u32;
    while pos < body.len() {
        let h = read_box_header(&body[pos..])?;
        let b = &body[pos + h.header_len..pos + h.total_len];
        match &h.fourcc {
            b"tfhd" => {
                let flags = be32(b, 0)? & 0x00ff_ffff;
                track_id = be32(b, 4)?;
                let mut at = 8;
                if flags & 0x01 != 0 {
                    at += 8; // base-data-offset
                }
                if flags & 0x02 != 0 {
                    at += 4; // sample-description-index
                }
                if flags & 0x08 != 0 {
                    default_duration = be32(b, at)?;
                    at += 4;
                }
                if flags & 0x10 != 0 {
                    at += 4; // default-sample-size
                }
                if flags & 0x20 != 0 {
                    default_flags = be32(b, at)?;
                }
            }
            b"trun" => {
                let flags = be32(b, 0)? & 0x00ff_ffff;
                let count = be32(b, 4)?;
                let mut at = 8;
                if flags & 0x01 != 0 {
                    at += 4;
                }
                let mut first_flags = None;
                if flags & 0x04 != 0 {
                    first_flags = Some(be32(b, at)?);
                    at += 4;
                }
                for i in 0..count {
                    let mut dur = default_duration;
                    let mut sflags = default_flags;
                    if flags & 0x100 != 0 {
                        dur = be32(b, at)?;
                        at += 4;
                    }
                    if flags & 0x200 != 0 {
                        at += 4;
                    }
                    if flags & 0x400 != 0 {
                        sflags = be32(b, at)?;
                        at += 4;
                    } else if let (0, Some(f)) = (i, first_flags) {
                        sflags = f;
                    }
                    if flags & 0x800 != 0 {
                        at += 4;
                    }
                    if track_id == VIDEO_TRACK_ID {
                        info.video_samples += 1;
                        info.video_duration += u64::from(dur);
                        if sflags & 0x0001_0000 == 0 {
                            info.video_sync += 1;
                        }
                    } else {
                        info.audio_samples += 1;
                    }
                }
            }
            _ => {}
        }
        pos += h.total_len;
    }
    Some(())
}

/// Finds the longest valid prefix of a segment file and totals its samples. Used to recover a
/// segment that was being written when the process died: everything up to the last complete
/// fragment was fsync'd and is kept.
pub fn scan(data: &[u8]) -> ScanResult {
    let mut r = ScanResult::default();
    let mut pos = 0usize;
    let mut seen_ftyp = false;
    let mut seen_moov = false;
    let mut pending_moof: Option<MoofInfo> = None;
    while pos < data.len() {
        let Some(h) = read_box_header(&data[pos..]) else {
            break;
        };
        let body = &data[pos + h.header_len..pos + h.total_len];
        match &h.fourcc {
            b"ftyp" if !seen_ftyp => seen_ftyp = true,
            b"moov" if seen_ftyp && !seen_moov => {
                seen_moov = true;
                r.valid_len = (pos + h.total_len) as u64;
            }
            b"moof" if seen_moov && pending_moof.is_none() => match parse_moof(body) {
                Some(m) => pending_moof = Some(m),
                None => break,
            },
            b"mdat" => {
                let Some(m) = pending_moof.take() else { break };
                r.fragments += 1;
                r.video_samples += m.video_samples;
                r.video_sync_samples += m.video_sync;
                r.video_duration += m.video_duration;
                r.audio_samples += m.audio_samples;
                r.valid_len = (pos + h.total_len) as u64;
            }
            // `mfra`, `free` and friends after a fragment are harmless.
            _ if seen_moov && pending_moof.is_none() => {}
            _ => break,
        }
        pos += h.total_len;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn video() -> VideoTrack {
        // A syntactically valid (if meaningless) sample entry.
        let mut se = Vec::new();
        write_box(&mut se, b"avc1", |b| b.extend_from_slice(&[0; 78]));
        VideoTrack {
            sample_entry: se,
            width: 640,
            height: 360,
        }
    }

    fn fragment(seq: u32, frames: &[(u32, u32, bool)], base: u64) -> Vec<u8> {
        let samples: Vec<SampleInfo> = frames
            .iter()
            .map(|&(duration, size, sync)| SampleInfo {
                duration,
                size,
                sync,
            })
            .collect();
        let payload: u32 = samples.iter().map(|s| s.size).sum();
        let mut out = moof(
            seq,
            &[TrackRun {
                track_id: VIDEO_TRACK_ID,
                base_decode_time: base,
                samples: &samples,
                sample_flags: true,
            }],
        );
        out.extend_from_slice(&mdat_header(payload));
        out.extend(std::iter::repeat_n(0xAB, payload as usize));
        out
    }

    #[test]
    fn init_boxes_are_well_formed() {
        let init = init_segment(&video(), None, 1_700_000_000);
        let r = scan(&init);
        assert_eq!(r.valid_len, init.len() as u64);
        assert_eq!(r.fragments, 0);
        // ftyp then moov, nothing else.
        let h = read_box_header(&init).unwrap();
        assert_eq!(&h.fourcc, b"ftyp");
        let h2 = read_box_header(&init[h.total_len..]).unwrap();
        assert_eq!(&h2.fourcc, b"moov");
        assert_eq!(h.total_len + h2.total_len, init.len());
    }

    #[test]
    fn trun_data_offset_points_into_mdat() {
        let f = fragment(1, &[(3600, 10, true), (3600, 20, false)], 0);
        let moof_len = read_box_header(&f).unwrap().total_len;
        // mfhd(16) + traf header(8) + tfhd(16) + tfdt(20) + trun header(8) + flags(4) + count(4)
        let off_pos = 8 + 16 + 8 + 16 + 20 + 8 + 4 + 4;
        let off = be32(&f, off_pos).unwrap() as usize;
        assert_eq!(off, moof_len + 8);
        assert_eq!(&f[moof_len + 4..moof_len + 8], b"mdat");
        assert_eq!(f[off], 0xAB);
    }

    proptest! {
        #[test]
        fn scan_counts_and_truncates(
            frags in proptest::collection::vec(proptest::collection::vec((1u32..10_000, 1u32..3000, any::<bool>()), 1..30), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut file = init_segment(&video(), None, 0);
            let mut ends = vec![file.len()];
            let mut totals = vec![(0u64, 0u64)];
            let mut base = 0u64;
            for (i, f) in frags.iter().enumerate() {
                file.extend(fragment(i as u32 + 1, f, base));
                base += f.iter().map(|x| u64::from(x.0)).sum::<u64>();
                ends.push(file.len());
                let (n, d) = *totals.last().unwrap();
                totals.push((n + f.len() as u64, d + f.iter().map(|x| u64::from(x.0)).sum::<u64>()));
            }
            let full = scan(&file);
            prop_assert_eq!(full.valid_len, file.len() as u64);
            prop_assert_eq!(full.fragments as usize, frags.len());
            prop_assert_eq!((full.video_samples, full.video_duration), *totals.last().unwrap());

            // Any truncation keeps exactly the fragments that are complete.
            let at = cut.index(file.len() + 1);
            let r = scan(&file[..at]);
            let complete = ends.iter().rposition(|&e| e <= at);
            match complete {
                None => prop_assert_eq!(r.valid_len, 0),
                Some(i) => {
                    prop_assert_eq!(r.valid_len, ends[i] as u64);
                    prop_assert_eq!((r.video_samples, r.video_duration), totals[i]);
                }
            }
        }
    }
}
