//! RTP packets (RFC 3550) and the ONVIF replay header extension (profile 0xABAC, ONVIF
//! Streaming Specification §6.3): a 64-bit NTP timestamp of the frame plus C (clean point),
//! E (end of contiguous section), D (discontinuity) and T (terminal, end of replay) flags.
//! Pure parsing of untrusted bytes: every length is checked, nothing panics.

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
pub const NTP_UNIX_OFFSET_S: i64 = 2_208_988_800;
/// The ONVIF replay extension's profile id.
pub const ONVIF_PROFILE: u16 = 0xABAC;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnvifExt {
    /// Absolute time of the frame, Unix microseconds.
    pub unix_us: i64,
    pub clean_point: bool,
    pub end: bool,
    pub discontinuity: bool,
    pub terminal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub onvif: Option<OnvifExt>,
    pub payload: &'a [u8],
}

/// NTP 32.32 fixed point → Unix microseconds.
pub fn ntp_to_unix_us(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET_S;
    let frac_us = (((ntp & 0xffff_ffff) * 1_000_000) >> 32) as i64;
    secs * 1_000_000 + frac_us
}

pub fn parse(data: &[u8]) -> Result<Packet<'_>, &'static str> {
    if data.len() < 12 {
        return Err("RTP packet shorter than its header");
    }
    if data[0] >> 6 != 2 {
        return Err("not RTP version 2");
    }
    let padding = data[0] & 0x20 != 0;
    let extension = data[0] & 0x10 != 0;
    let cc = usize::from(data[0] & 0x0f);
    let marker = data[1] & 0x80 != 0;
    let payload_type = data[1] & 0x7f;
    let sequence = u16::from_be_bytes([data[2], data[3]]);
    let timestamp = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    let mut off = 12 + 4 * cc;
    if data.len() < off {
        return Err("RTP CSRC list past the end");
    }
    let mut onvif = None;
    if extension {
        let h = data
            .get(off..off + 4)
            .ok_or("RTP extension header past the end")?;
        let profile = u16::from_be_bytes([h[0], h[1]]);
        let words = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let body = data
            .get(off + 4..off + 4 + 4 * words)
            .ok_or("RTP extension past the end")?;
        if profile == ONVIF_PROFILE && body.len() >= 12 {
            let mut ntp = [0u8; 8];
            ntp.copy_from_slice(&body[..8]);
            let flags = body[8];
            onvif = Some(OnvifExt {
                unix_us: ntp_to_unix_us(u64::from_be_bytes(ntp)),
                clean_point: flags & 0x80 != 0,
                end: flags & 0x40 != 0,
                discontinuity: flags & 0x20 != 0,
                terminal: flags & 0x10 != 0,
            });
        }
        off += 4 + 4 * words;
    }
    let mut end = data.len();
    if padding {
        let pad = usize::from(data[data.len() - 1]);
        if pad == 0 || off + pad > end {
            return Err("RTP padding longer than the payload");
        }
        end -= pad;
    }
    Ok(Packet {
        marker,
        payload_type,
        sequence,
        timestamp,
        ssrc,
        onvif,
        payload: &data[off..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_onvif_extension() {
        // 2026-01-02T03:04:05.5Z
        let unix = 1_767_323_045i64;
        let ntp = (((unix + NTP_UNIX_OFFSET_S) as u64) << 32) | 0x8000_0000;
        let mut p = vec![0x90, 0xe0, 0, 7, 0, 0, 0x0e, 0x10, 1, 2, 3, 4];
        p.extend_from_slice(&[0xab, 0xac, 0, 3]);
        p.extend_from_slice(&ntp.to_be_bytes());
        p.extend_from_slice(&[0xd0, 0, 0, 0]);
        p.extend_from_slice(&[0x65, 1, 2]);
        let pkt = parse(&p).unwrap();
        assert!(pkt.marker);
        assert_eq!(pkt.payload_type, 96);
        assert_eq!(pkt.sequence, 7);
        assert_eq!(pkt.timestamp, 3600);
        let o = pkt.onvif.unwrap();
        assert_eq!(o.unix_us, unix * 1_000_000 + 500_000);
        assert!(o.clean_point && o.end && o.terminal && !o.discontinuity);
        assert_eq!(pkt.payload, &[0x65, 1, 2]);
    }

    #[test]
    fn rejects_truncated() {
        assert!(parse(&[0x80; 5]).is_err());
        assert!(parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xac, 0, 9]).is_err());
        assert!(parse(&[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 200]).is_err());
        assert!(parse(&[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
