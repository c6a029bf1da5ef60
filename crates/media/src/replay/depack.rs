//! H.264 (RFC 6184) and H.265 (RFC 7798) depacketizers: RTP payloads in, access units out,
//! as 4-byte length-prefixed NAL units (the MP4 sample format). An access unit ends at the RTP
//! marker bit or when the RTP timestamp changes. Pure, bounded, panic-free on any input: a
//! broken fragment drops the access unit it belongs to, never the session.

/// Largest access unit accepted (a 16 Mbit/s keyframe is well under this).
pub const MAX_AU_BYTES: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    H264,
    H265,
}

/// One access unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    pub rtp_timestamp: u32,
    /// 4-byte big-endian length + NAL unit, repeated.
    pub data: Vec<u8>,
    /// Whether packets were lost or a fragment was broken inside it.
    pub damaged: bool,
}

#[derive(Debug)]
pub struct Depacketizer {
    codec: Codec,
    cur: Option<AccessUnit>,
    /// FU being reassembled (NAL bytes without length prefix).
    fu: Option<Vec<u8>>,
    last_seq: Option<u16>,
    out: Vec<AccessUnit>,
}

impl Depacketizer {
    pub fn new(codec: Codec) -> Self {
        Depacketizer {
            codec,
            cur: None,
            fu: None,
            last_seq: None,
            out: Vec::new(),
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Feeds one RTP packet's payload.
    pub fn push(&mut self, sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) {
        let lost = self.last_seq.is_some_and(|l| sequence != l.wrapping_add(1));
        self.last_seq = Some(sequence);
        if self
            .cur
            .as_ref()
            .is_some_and(|c| c.rtp_timestamp != timestamp)
        {
            self.finish_au();
        }
        let au = self.cur.get_or_insert_with(|| AccessUnit {
            rtp_timestamp: timestamp,
            data: Vec::new(),
            damaged: false,
        });
        if lost {
            au.damaged = true;
            self.fu = None;
        }
        let ok = match self.codec {
            Codec::H264 => self.push_h264(payload),
            Codec::H265 => self.push_h265(payload),
        };
        if !ok && let Some(c) = &mut self.cur {
            c.damaged = true;
        }
        if marker {
            self.finish_au();
        }
    }

    /// Finished access units, oldest first.
    pub fn pull(&mut self) -> Option<AccessUnit> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    /// Ends the stream: the access unit in progress is emitted if it holds anything.
    pub fn flush(&mut self) {
        self.finish_au();
    }

    fn finish_au(&mut self) {
        if self.fu.take().is_some()
            && let Some(c) = &mut self.cur
        {
            c.damaged = true;
        }
        if let Some(au) = self.cur.take()
            && !au.data.is_empty()
        {
            self.out.push(au);
        }
    }

    fn add_nal(&mut self, nal: &[u8]) -> bool {
        let Some(au) = &mut self.cur else {
            return false;
        };
        if nal.is_empty() || au.data.len() + 4 + nal.len() > MAX_AU_BYTES {
            return false;
        }
        au.data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        au.data.extend_from_slice(nal);
        true
    }

    /// The NAL units of an aggregation packet's payload (H.264 STAP-A, H.265 AP without DONL):
    /// each one a 16-bit big-endian size and the unit. False if a size overruns the packet.
    fn add_aggregated(&mut self, mut rest: &[u8]) -> bool {
        while rest.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let Some(nal) = rest.get(2..2 + n) else {
                return false;
            };
            if !self.add_nal(nal) {
                return false;
            }
            rest = &rest[2 + n..];
        }
        rest.is_empty()
    }

    fn push_h264(&mut self, p: &[u8]) -> bool {
        let Some(&h) = p.first() else {
            return false;
        };
        match h & 0x1f {
            1..=23 => {
                self.fu = None;
                self.add_nal(p)
            }
            24 => {
                // STAP-A: [header][size16 nal]...
                self.fu = None;
                self.add_aggregated(&p[1..])
            }
            28 => {
                // FU-A: [indicator][S E R type][fragment]
                let Some(&fh) = p.get(1) else {
                    return false;
                };
                let (start, end) = (fh & 0x80 != 0, fh & 0x40 != 0);
                self.fragment(start, end, &[(h & 0xe0) | (fh & 0x1f)], &p[2..])
            }
            _ => false,
        }
    }

    fn push_h265(&mut self, p: &[u8]) -> bool {
        if p.len() < 2 {
            return false;
        }
        match (p[0] >> 1) & 0x3f {
            0..=47 => {
                self.fu = None;
                self.add_nal(p)
            }
            48 => {
                // AP: [2-byte header][size16 nal]... (no DONL: sprop-max-don-diff is 0)
                self.fu = None;
                self.add_aggregated(&p[2..])
            }
            49 => {
                // FU: [2-byte header][S E type6][fragment]
                let Some(&fh) = p.get(2) else {
                    return false;
                };
                let (start, end) = (fh & 0x80 != 0, fh & 0x40 != 0);
                let t = fh & 0x3f;
                let hdr = [(p[0] & 0x81) | (t << 1), p[1]];
                self.fragment(start, end, &hdr, &p[3..])
            }
            _ => false,
        }
    }

    fn fragment(&mut self, start: bool, end: bool, header: &[u8], body: &[u8]) -> bool {
        if start {
            let broken = self.fu.is_some();
            let mut v = Vec::with_capacity(header.len() + body.len() * 8);
            v.extend_from_slice(header);
            v.extend_from_slice(body);
            self.fu = Some(v);
            if broken {
                return false;
            }
        } else {
            let Some(fu) = &mut self.fu else {
                return false;
            };
            if fu.len() + body.len() > MAX_AU_BYTES {
                self.fu = None;
                return false;
            }
            fu.extend_from_slice(body);
        }
        if end {
            let nal = self.fu.take().unwrap_or_default();
            return self.add_nal(&nal);
        }
        true
    }
}

/// NAL units of a length-prefixed access unit (stops at the first inconsistent length).
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let nal = rest.get(4..4 + n)?;
        rest = &rest[4 + n..];
        Some(nal)
    })
}

/// H.264 NAL type / H.265 NAL type of a NAL unit.
pub fn nal_type(codec: Codec, nal: &[u8]) -> Option<u8> {
    let h = *nal.first()?;
    Some(match codec {
        Codec::H264 => h & 0x1f,
        Codec::H265 => (h >> 1) & 0x3f,
    })
}

/// Whether a decoder can start at this access unit.
pub fn is_keyframe(codec: Codec, data: &[u8]) -> bool {
    match codec {
        Codec::H264 => nal_units(data).any(|n| nal_type(codec, n) == Some(5)),
        Codec::H265 => crate::segmenter::h265_is_irap(data),
    }
}

/// (VPS, SPS, PPS) found in an access unit.
pub type ParamRefs<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, Option<&'a [u8]>);

/// Parameter sets carried in the access unit: (VPS, SPS, PPS); VPS only for H.265.
pub fn parameter_sets(codec: Codec, data: &[u8]) -> ParamRefs<'_> {
    let (mut vps, mut sps, mut pps) = (None, None, None);
    for n in nal_units(data) {
        match (codec, nal_type(codec, n)) {
            (Codec::H264, Some(7)) | (Codec::H265, Some(33)) => sps = sps.or(Some(n)),
            (Codec::H264, Some(8)) | (Codec::H265, Some(34)) => pps = pps.or(Some(n)),
            (Codec::H265, Some(32)) => vps = vps.or(Some(n)),
            _ => {}
        }
    }
    (vps, sps, pps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn h264_single_stap_fu() {
        let mut d = Depacketizer::new(Codec::H264);
        // STAP-A with SPS + PPS
        d.push(1, 0, false, &[0x18, 0, 2, 0x67, 1, 0, 2, 0x68, 2]);
        // FU-A IDR in three pieces
        d.push(2, 0, false, &[0x7c, 0x85, 0xa, 0xb]);
        d.push(3, 0, false, &[0x7c, 0x05, 0xc]);
        d.push(4, 0, true, &[0x7c, 0x45, 0xd]);
        d.push(5, 3600, true, &[0x41, 9, 9]);
        let a = d.pull().unwrap();
        assert_eq!(
            a.data,
            au(&[&[0x67, 1], &[0x68, 2], &[0x65, 0xa, 0xb, 0xc, 0xd]])
        );
        assert!(!a.damaged);
        assert!(is_keyframe(Codec::H264, &a.data));
        let (_, sps, pps) = parameter_sets(Codec::H264, &a.data);
        assert_eq!((sps, pps), (Some(&[0x67u8, 1][..]), Some(&[0x68u8, 2][..])));
        let b = d.pull().unwrap();
        assert_eq!(b.rtp_timestamp, 3600);
        assert!(!is_keyframe(Codec::H264, &b.data));
        assert!(d.pull().is_none());
    }

    #[test]
    fn h264_lost_fragment_marks_damaged() {
        let mut d = Depacketizer::new(Codec::H264);
        d.push(1, 0, false, &[0x7c, 0x85, 1]);
        d.push(3, 0, true, &[0x7c, 0x45, 2]);
        d.flush();
        assert!(d.pull().is_none_or(|a| a.damaged));
    }

    #[test]
    fn h265_single_ap_fu() {
        let mut d = Depacketizer::new(Codec::H265);
        // AP with VPS (32), SPS (33), PPS (34)
        d.push(
            1,
            0,
            false,
            &[
                0x60, 1, 0, 3, 0x40, 1, 7, 0, 3, 0x42, 1, 8, 0, 3, 0x44, 1, 9,
            ],
        );
        // FU of an IDR_W_RADL (19)
        d.push(2, 0, false, &[0x62, 1, 0x80 | 19, 0xa]);
        d.push(3, 0, true, &[0x62, 1, 0x40 | 19, 0xb]);
        let a = d.pull().unwrap();
        assert_eq!(
            a.data,
            au(&[
                &[0x40, 1, 7],
                &[0x42, 1, 8],
                &[0x44, 1, 9],
                &[0x26, 1, 0xa, 0xb]
            ])
        );
        assert!(is_keyframe(Codec::H265, &a.data));
        let (v, s, p) = parameter_sets(Codec::H265, &a.data);
        assert!(v.is_some() && s.is_some() && p.is_some());
        d.push(4, 3600, true, &[0x02, 1, 5]);
        let b = d.pull().unwrap();
        assert!(!is_keyframe(Codec::H265, &b.data));
    }

    #[test]
    fn garbage_never_panics() {
        let mut d = Depacketizer::new(Codec::H264);
        for (i, p) in [&[][..], &[0x1c], &[0x18, 0, 9, 1], &[0xff, 0xff]]
            .iter()
            .enumerate()
        {
            d.push(i as u16, 0, true, p);
        }
        let mut e = Depacketizer::new(Codec::H265);
        for (i, p) in [&[][..], &[0x62], &[0x60, 1, 0, 9], &[0xff, 0xff, 0xff]]
            .iter()
            .enumerate()
        {
            e.push(i as u16, 0, true, p);
        }
    }
}
