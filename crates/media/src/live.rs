//! Live frames inside the cluster: the framing the recorder's live tap speaks to the access
//! point, and the H.264 conversions the access point needs to pass frames to WebRTC untouched.
//!
//! The stream (`application/vnd.vigil.live`) is a sequence of messages, each
//! `kind: u8 | len: u32 BE | body[len]`:
//!
//! - kind 1, parameters: `codec_len: u16 BE | codec (RFC 6381, e.g. "avc1.64001f") | extra`,
//!   where `extra` is the codec's decoder configuration record (`avcC` / `hvcC` body);
//! - kind 2, frame: `flags: u8 (bit 0: keyframe) | ts: i64 BE (90 kHz RTP time) |
//!   wall_ms: i64 BE (when the recorder received it, UTC ms) | data` with `data` one access
//!   unit as stored in MP4 (4-byte big-endian NAL lengths).
//!
//! A stream always starts with parameters and then a keyframe; parameters are repeated when
//! they change. The decoder bounds what a peer can make it hold ([`MAX_MESSAGE`]).

use bytes::Bytes;

/// Largest message accepted (one access unit; 8 MiB is far beyond any camera's keyframe).
pub const MAX_MESSAGE: usize = 8 << 20;
/// The stream's media type.
pub const CONTENT_TYPE: &str = "application/vnd.vigil.live";

const KIND_PARAMS: u8 = 1;
const KIND_FRAME: u8 = 2;
const HEADER: usize = 5;
const FRAME_HEADER: usize = 17;

/// What went wrong reading a live stream or an H.264 structure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveError {
    #[error("live message of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("unknown live message kind {0}")]
    UnknownKind(u8),
    #[error("malformed live message: {0}")]
    Malformed(&'static str),
}

/// Codec and decoder configuration of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// RFC 6381 codec string.
    pub codec: String,
    /// Decoder configuration record (`avcC` body for H.264).
    pub extra: Bytes,
}

impl Params {
    pub fn is_h264(&self) -> bool {
        self.codec.starts_with("avc1") || self.codec.starts_with("avc3")
    }
}

/// One access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub key: bool,
    /// RTP time, 90 kHz.
    pub ts: i64,
    /// When the recorder received it, UTC ms.
    pub wall_ms: i64,
    /// NAL units with 4-byte big-endian lengths.
    pub data: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Params(Params),
    Frame(Frame),
}

impl Message {
    /// The message in its wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out;
        match self {
            Message::Params(p) => {
                let codec = p.codec.as_bytes();
                let codec = &codec[..codec.len().min(usize::from(u16::MAX))];
                let len = 2 + codec.len() + p.extra.len();
                out = Vec::with_capacity(HEADER + len);
                out.push(KIND_PARAMS);
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.extend_from_slice(&(codec.len() as u16).to_be_bytes());
                out.extend_from_slice(codec);
                out.extend_from_slice(&p.extra);
            }
            Message::Frame(f) => {
                let len = FRAME_HEADER + f.data.len();
                out = Vec::with_capacity(HEADER + len);
                out.push(KIND_FRAME);
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.push(u8::from(f.key));
                out.extend_from_slice(&f.ts.to_be_bytes());
                out.extend_from_slice(&f.wall_ms.to_be_bytes());
                out.extend_from_slice(&f.data);
            }
        }
        out
    }
}

/// Incremental decoder: feed it the bytes as they arrive, take messages out.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
}

impl Decoder {
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (1 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>, LiveError> {
        let rest = &self.buf[self.pos..];
        if rest.len() < HEADER {
            return Ok(None);
        }
        let kind = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len > MAX_MESSAGE {
            return Err(LiveError::TooLarge(len));
        }
        if kind != KIND_PARAMS && kind != KIND_FRAME {
            return Err(LiveError::UnknownKind(kind));
        }
        if rest.len() < HEADER + len {
            return Ok(None);
        }
        let body = &rest[HEADER..HEADER + len];
        let msg = match kind {
            KIND_PARAMS => {
                if body.len() < 2 {
                    return Err(LiveError::Malformed("short parameters"));
                }
                let n = usize::from(u16::from_be_bytes([body[0], body[1]]));
                let codec = body
                    .get(2..2 + n)
                    .ok_or(LiveError::Malformed("codec string past the end"))?;
                let codec = std::str::from_utf8(codec)
                    .map_err(|_| LiveError::Malformed("codec string is not UTF-8"))?;
                Message::Params(Params {
                    codec: codec.to_string(),
                    extra: Bytes::copy_from_slice(&body[2 + n..]),
                })
            }
            _ => {
                if body.len() < FRAME_HEADER {
                    return Err(LiveError::Malformed("short frame"));
                }
                let i64_at = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&body[i..i + 8]);
                    i64::from_be_bytes(b)
                };
                Message::Frame(Frame {
                    key: body[0] & 1 == 1,
                    ts: i64_at(1),
                    wall_ms: i64_at(9),
                    data: Bytes::copy_from_slice(&body[FRAME_HEADER..]),
                })
            }
        };
        self.pos += HEADER + len;
        Ok(Some(msg))
    }
}

const START: [u8; 4] = [0, 0, 0, 1];

/// The SPS and PPS NAL units of an `AVCDecoderConfigurationRecord`.
pub fn avcc_parameter_sets(avcc: &[u8]) -> Result<Vec<&[u8]>, LiveError> {
    fn take<'a>(avcc: &'a [u8], i: &mut usize, sets: &mut Vec<&'a [u8]>) -> Result<(), LiveError> {
        let len = avcc
            .get(*i..*i + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(LiveError::Malformed("avcC record"))?;
        let nal = avcc
            .get(*i + 2..*i + 2 + len)
            .ok_or(LiveError::Malformed("avcC record"))?;
        sets.push(nal);
        *i += 2 + len;
        Ok(())
    }
    if avcc.len() < 6 || avcc[0] != 1 {
        return Err(LiveError::Malformed("avcC record"));
    }
    let mut sets = Vec::new();
    let mut i = 6;
    for _ in 0..(avcc[5] & 0x1f) {
        take(avcc, &mut i, &mut sets)?;
    }
    let pps = *avcc.get(i).ok_or(LiveError::Malformed("avcC record"))?;
    i += 1;
    for _ in 0..pps {
        take(avcc, &mut i, &mut sets)?;
    }
    Ok(sets)
}

/// An access unit in Annex B (start codes), as WebRTC packetizers take it; a keyframe gets the
/// parameter sets in front so that a decoder can start on it.
pub fn annexb(frame: &[u8], parameter_sets: &[&[u8]], key: bool) -> Result<Vec<u8>, LiveError> {
    let mut out = Vec::with_capacity(frame.len() + 64);
    if key {
        for ps in parameter_sets {
            out.extend_from_slice(&START);
            out.extend_from_slice(ps);
        }
    }
    let mut i = 0;
    while i < frame.len() {
        let len = frame
            .get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(LiveError::Malformed("NAL length past the end"))?;
        let nal = frame
            .get(i + 4..i + 4 + len)
            .ok_or(LiveError::Malformed("NAL past the end"))?;
        // Parameter sets inside the frame are already in front.
        let t = nal.first().map(|b| b & 0x1f);
        if !(key && matches!(t, Some(7) | Some(8))) {
            out.extend_from_slice(&START);
            out.extend_from_slice(nal);
        }
        i += 4 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(key: bool, ts: i64, data: &[u8]) -> Message {
        Message::Frame(Frame {
            key,
            ts,
            wall_ms: 1_700_000_000_123,
            data: Bytes::copy_from_slice(data),
        })
    }

    #[test]
    fn messages_round_trip_in_any_split() {
        let msgs = vec![
            Message::Params(Params {
                codec: "avc1.64001f".into(),
                extra: Bytes::from_static(&[1, 2, 3]),
            }),
            frame(true, 90_000, &[0, 0, 0, 1, 0x65]),
            frame(false, 93_600, &[]),
        ];
        let wire: Vec<u8> = msgs.iter().flat_map(|m| m.encode()).collect();
        for chunk in [1, 2, 5, 7, wire.len()] {
            let mut d = Decoder::default();
            let mut out = Vec::new();
            for c in wire.chunks(chunk) {
                d.push(c);
                while let Some(m) = d.next_message().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, msgs, "chunk {chunk}");
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_buffering() {
        let mut d = Decoder::default();
        d.push(&[2, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_message(), Err(LiveError::TooLarge(0xffff_ffff)));
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_message(), Err(LiveError::UnknownKind(9)));
        let mut d = Decoder::default();
        d.push(&[2, 0, 0, 0, 3, 1, 2, 3]);
        assert!(matches!(d.next_message(), Err(LiveError::Malformed(_))));
        let mut d = Decoder::default();
        d.push(&[1, 0, 0, 0, 3, 0, 9, b'a']);
        assert!(matches!(d.next_message(), Err(LiveError::Malformed(_))));
    }

    #[test]
    fn avcc_and_annexb() {
        let sps = [0x67, 0x64, 0x00, 0x1f];
        let pps = [0x68, 0xee];
        let mut avcc = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 4];
        avcc.extend_from_slice(&sps);
        avcc.extend_from_slice(&[1, 0, 2]);
        avcc.extend_from_slice(&pps);
        let sets = avcc_parameter_sets(&avcc).unwrap();
        assert_eq!(sets, vec![&sps[..], &pps[..]]);
        assert!(avcc_parameter_sets(&avcc[..9]).is_err());
        assert!(avcc_parameter_sets(&[]).is_err());

        // A keyframe carrying its own SPS: that one is not repeated.
        let au = [0, 0, 0, 2, 0x67, 0x01, 0, 0, 0, 3, 0x65, 0xaa, 0xbb];
        let out = annexb(&au, &sets, true).unwrap();
        assert_eq!(
            out,
            [
                0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0, 0, 0, 1, 0x68, 0xee, 0, 0, 0, 1, 0x65, 0xaa,
                0xbb
            ]
        );
        let delta = [0, 0, 0, 2, 0x41, 0x9a];
        assert_eq!(
            annexb(&delta, &sets, false).unwrap(),
            [0, 0, 0, 1, 0x41, 0x9a]
        );
        assert!(annexb(&[0, 0, 0, 9, 0x41], &sets, false).is_err());
        assert!(annexb(&[0, 0, 0], &sets, false).is_err());
    }
}
