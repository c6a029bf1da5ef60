//! Live frames (the recorder's live stream, [`crate::live`]) into fragmented MP4 for LL-HLS:
//! the init segment from the stream's parameters, and one `moof`+`mdat` per part, written with
//! the same writer as recordings ([`crate::mp4`]).
//!
//! The live stream's parameters carry the codec string and the decoder configuration record
//! (`avcC`/`hvcC` body) but not the picture size, which a sample entry must state (browsers
//! refuse a 0×0 video track): it is read from the SPS inside the record.

use crate::live::LiveError;
use crate::mp4::{self, SampleInfo, TrackRun, VideoTrack};

/// Reads bits of an RBSP (emulation-prevention bytes already removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

const SHORT: LiveError = LiveError::Malformed("SPS ends early");

impl<'a> Bits<'a> {
    fn bit(&mut self) -> Result<u32, LiveError> {
        let b = self.data.get(self.pos / 8).ok_or(SHORT)?;
        let v = (b >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(v))
    }
    fn bits(&mut self, n: u32) -> Result<u32, LiveError> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }
    fn skip(&mut self, n: usize) -> Result<(), LiveError> {
        self.pos += n;
        if self.pos > self.data.len() * 8 {
            return Err(SHORT);
        }
        Ok(())
    }
    /// Exp-Golomb `ue(v)`.
    fn ue(&mut self) -> Result<u32, LiveError> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err(LiveError::Malformed("bad Exp-Golomb code in SPS"));
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }
    fn se(&mut self) -> Result<i32, LiveError> {
        let k = self.ue()?;
        Ok(if k % 2 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// A NAL unit's payload without its emulation-prevention bytes (`00 00 03` → `00 00`).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Picture size (width, height) from an H.264 SPS NAL unit (with its 1-byte header).
pub fn h264_sps_size(nal: &[u8]) -> Result<(u32, u32), LiveError> {
    let data = rbsp(nal.get(1..).ok_or(SHORT)?);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
    let profile = r.bits(8)?;
    r.skip(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.skip(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.skip(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            // seq_scaling_matrix_present_flag: skip the scaling lists.
            for i in 0..if chroma_format == 3 { 12 } else { 8 } {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.skip(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.skip(1)?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()? + 1;
    let h_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.skip(1)?; // mb_adaptive_frame_field_flag
    }
    r.skip(1)?; // direct_8x8_inference_flag
    let mut width = w_mbs * 16;
    let mut height = (2 - frame_mbs_only) * h_units * 16;
    if r.bit()? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (cx, cy) = match chroma_format {
            0 | 3 => (1, 2 - frame_mbs_only),
            1 => (2, 2 * (2 - frame_mbs_only)),
            _ => (2, 2 - frame_mbs_only),
        };
        width = width.saturating_sub((l + rt).saturating_mul(cx));
        height = height.saturating_sub((t + b).saturating_mul(cy));
    }
    Ok((width, height))
}

/// Picture size (width, height) from an H.265 SPS NAL unit (with its 2-byte header).
pub fn h265_sps_size(nal: &[u8]) -> Result<(u32, u32), LiveError> {
    let data = rbsp(nal.get(2..).ok_or(SHORT)?);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
    r.skip(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)?;
    r.skip(1)?; // temporal_id_nesting
    // profile_tier_level(1, sub_layers): general profile (88 bits) and level (8).
    r.skip(96)?;
    let mut present = Vec::new();
    for _ in 0..sub_layers {
        present.push((r.bit()?, r.bit()?));
    }
    if sub_layers > 0 {
        for _ in sub_layers..8 {
            r.skip(2)?;
        }
    }
    for (profile, level) in present {
        r.skip(88 * profile as usize + 8 * level as usize)?;
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma_format = r.ue()?;
    if chroma_format == 3 {
        r.skip(1)?;
    }
    let mut width = r.ue()?;
    let mut height = r.ue()?;
    if r.bit()? == 1 {
        let (l, rt, t, b) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let (cx, cy) = match chroma_format {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        width = width.saturating_sub((l + rt).saturating_mul(cx));
        height = height.saturating_sub((t + b).saturating_mul(cy));
    }
    Ok((width, height))
}

/// The SPS NAL units of an `HEVCDecoderConfigurationRecord` (NAL type 33).
fn hvcc_sps(hvcc: &[u8]) -> Result<&[u8], LiveError> {
    const BAD: LiveError = LiveError::Malformed("hvcC record");
    let arrays = *hvcc.get(22).ok_or(BAD)?;
    let mut i = 23;
    for _ in 0..arrays {
        let kind = hvcc.get(i).ok_or(BAD)? & 0x3f;
        let n = hvcc.get(i + 1..i + 3).ok_or(BAD)?;
        let n = u16::from_be_bytes([n[0], n[1]]);
        i += 3;
        for _ in 0..n {
            let l = hvcc.get(i..i + 2).ok_or(BAD)?;
            let l = usize::from(u16::from_be_bytes([l[0], l[1]]));
            let nal = hvcc.get(i + 2..i + 2 + l).ok_or(BAD)?;
            if kind == 33 {
                return Ok(nal);
            }
            i += 2 + l;
        }
    }
    Err(LiveError::Malformed("hvcC record without an SPS"))
}

/// Whether an RFC 6381 codec string is H.265.
pub fn is_h265(codec: &str) -> bool {
    codec.starts_with("hvc1") || codec.starts_with("hev1")
}

/// The video track (sample entry and size) of a live stream's parameters.
pub fn video_track(codec: &str, extra: &[u8]) -> Result<VideoTrack, LiveError> {
    let (fourcc, config, (w, h)) = if is_h265(codec) {
        let fourcc = if codec.starts_with("hev1") {
            b"hev1"
        } else {
            b"hvc1"
        };
        (fourcc, b"hvcC", h265_sps_size(hvcc_sps(extra)?)?)
    } else if codec.starts_with("avc1") || codec.starts_with("avc3") {
        let sets = crate::live::avcc_parameter_sets(extra)?;
        let sps = sets
            .iter()
            .find(|n| n.first().map(|b| b & 0x1f) == Some(7))
            .ok_or(LiveError::Malformed("avcC record without an SPS"))?;
        let fourcc = if codec.starts_with("avc3") {
            b"avc3"
        } else {
            b"avc1"
        };
        (fourcc, b"avcC", h264_sps_size(sps)?)
    } else {
        return Err(LiveError::Malformed("codec is neither H.264 nor H.265"));
    };
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(LiveError::Malformed("implausible picture size in SPS"));
    }
    let (w, h) = (w as u16, h as u16);
    // VisualSampleEntry (ISO/IEC 14496-12 12.1.3) with the configuration record box.
    let mut e = Vec::with_capacity(86 + extra.len() + 8);
    e.extend_from_slice(&[0; 4]);
    e.extend_from_slice(fourcc);
    e.extend_from_slice(&[0; 6]); // reserved
    e.extend_from_slice(&1u16.to_be_bytes()); // data_reference_index
    e.extend_from_slice(&[0; 16]); // pre_defined, reserved
    e.extend_from_slice(&w.to_be_bytes());
    e.extend_from_slice(&h.to_be_bytes());
    e.extend_from_slice(&0x0048_0000u32.to_be_bytes()); // 72 dpi
    e.extend_from_slice(&0x0048_0000u32.to_be_bytes());
    e.extend_from_slice(&[0; 4]); // reserved
    e.extend_from_slice(&1u16.to_be_bytes()); // frame_count
    e.extend_from_slice(&[0; 32]); // compressorname
    e.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
    e.extend_from_slice(&(-1i16).to_be_bytes()); // pre_defined
    e.extend_from_slice(&((8 + extra.len()) as u32).to_be_bytes());
    e.extend_from_slice(config);
    e.extend_from_slice(extra);
    let len = e.len() as u32;
    e[..4].copy_from_slice(&len.to_be_bytes());
    Ok(VideoTrack {
        sample_entry: e,
        width: w,
        height: h,
    })
}

/// The init segment (`ftyp`+`moov`, video only) of a live stream.
pub fn init_segment(codec: &str, extra: &[u8], unix_secs: i64) -> Result<Vec<u8>, LiveError> {
    Ok(mp4::init_segment(
        &video_track(codec, extra)?,
        None,
        unix_secs,
    ))
}

/// One frame of a fragment: its MP4-form data, duration (90 kHz) and whether it is a sync
/// sample.
pub struct Sample<'a> {
    pub data: &'a [u8],
    pub duration: u32,
    pub key: bool,
}

/// One fragment (`moof` + `mdat`) of video samples starting at `decode_time` (90 kHz).
pub fn fragment(sequence: u32, decode_time: u64, samples: &[Sample<'_>]) -> Vec<u8> {
    let info: Vec<SampleInfo> = samples
        .iter()
        .map(|s| SampleInfo {
            duration: s.duration,
            size: s.data.len() as u32,
            sync: s.key,
        })
        .collect();
    let moof = mp4::moof(
        sequence,
        &[TrackRun {
            track_id: mp4::VIDEO_TRACK_ID,
            base_decode_time: decode_time,
            samples: &info,
            sample_flags: true,
        }],
    );
    let payload: usize = samples.iter().map(|s| s.data.len()).sum();
    let mut out = Vec::with_capacity(moof.len() + 8 + payload);
    out.extend_from_slice(&moof);
    out.extend_from_slice(&mp4::mdat_header(payload as u32));
    for s in samples {
        out.extend_from_slice(s.data);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPSs written by x264 and x265 (ffmpeg testsrc): 640x360 4:4:4 (High 4:4:4, cropped
    // from 368 lines) and 1280x720 4:2:0.
    const SPS_640X360: [u8; 27] = [
        0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x05, 0xff, 0x13, 0x80, 0x88, 0x00, 0x00,
        0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0x90, 0x78, 0xb1, 0x6c, 0xb0,
    ];
    const SPS_1280X720: [u8; 26] = [
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
    ];
    const HEVC_SPS_640X360: [u8; 43] = [
        0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x08, 0x00, 0x00, 0x03, 0x00,
        0x00, 0x3f, 0x90, 0x00, 0xa0, 0x40, 0x2d, 0x2c, 0xb2, 0xb3, 0x49, 0x26, 0x57, 0x80, 0xb7,
        0x02, 0x02, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00,
    ];
    const HEVC_SPS_1280X720: [u8; 41] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x5d, 0xa0, 0x02, 0x80, 0x80, 0x2d, 0x16, 0x59, 0x59, 0xa4, 0x93, 0x2b, 0xc0,
        0x5a, 0x02, 0x00, 0x00, 0x03, 0x00, 0x02, 0x00, 0x00, 0x03, 0x00,
    ];

    #[test]
    fn h264_sizes() {
        assert_eq!(h264_sps_size(&SPS_640X360), Ok((640, 360)));
        assert_eq!(h264_sps_size(&SPS_1280X720), Ok((1280, 720)));
        assert!(h264_sps_size(&SPS_640X360[..6]).is_err());
        assert!(h264_sps_size(&[]).is_err());
    }

    #[test]
    fn h265_sizes() {
        assert_eq!(h265_sps_size(&HEVC_SPS_640X360), Ok((640, 360)));
        assert_eq!(h265_sps_size(&HEVC_SPS_1280X720), Ok((1280, 720)));
        assert!(h265_sps_size(&HEVC_SPS_640X360[..10]).is_err());
        // Through an hvcC record: VPS array, then the SPS array.
        let mut hvcc = vec![1; 22];
        hvcc.extend_from_slice(&[2, 0x20, 0, 1, 0, 2, 0x40, 0x01, 0x21, 0, 1]);
        hvcc.extend_from_slice(&(HEVC_SPS_640X360.len() as u16).to_be_bytes());
        hvcc.extend_from_slice(&HEVC_SPS_640X360);
        let t = video_track("hvc1.4.10.L63.90", &hvcc).unwrap();
        assert_eq!(
            (t.width, t.height, &t.sample_entry[4..8]),
            (640, 360, &b"hvc1"[..])
        );
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert!(video_track("avc1.64001e", &[1, 2, 3]).is_err());
        assert!(video_track("hvc1.1.6.L93.B0", &[0; 30]).is_err());
        assert!(video_track("vp09", &[]).is_err());
        for n in 0..40 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = h264_sps_size(&junk);
            let _ = h265_sps_size(&junk);
            let _ = hvcc_sps(&junk);
        }
    }

    #[test]
    fn h264_sample_entry_and_fragment() {
        let mut avcc = vec![1, 0xf4, 0, 0x1e, 0xff, 0xe1];
        avcc.extend_from_slice(&(SPS_640X360.len() as u16).to_be_bytes());
        avcc.extend_from_slice(&SPS_640X360);
        avcc.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        let t = video_track("avc1.64001e", &avcc).unwrap();
        assert_eq!((t.width, t.height), (640, 360));
        assert_eq!(&t.sample_entry[4..8], b"avc1");
        assert_eq!(
            u32::from_be_bytes(t.sample_entry[..4].try_into().unwrap()) as usize,
            t.sample_entry.len()
        );
        let init = init_segment("avc1.64001e", &avcc, 0).unwrap();
        let mut seg = init.clone();
        let f1 = [0, 0, 0, 2, 0x65, 0x88];
        let f2 = [0, 0, 0, 2, 0x41, 0x9a];
        seg.extend(fragment(
            1,
            0,
            &[
                Sample {
                    data: &f1,
                    duration: 3600,
                    key: true,
                },
                Sample {
                    data: &f2,
                    duration: 3600,
                    key: false,
                },
            ],
        ));
        let scan = mp4::scan(&seg);
        assert_eq!(scan.valid_len as usize, seg.len());
        assert_eq!((scan.fragments, scan.video_samples), (1, 2));
    }
}
