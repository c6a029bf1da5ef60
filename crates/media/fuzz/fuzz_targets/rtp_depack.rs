//! RTP parsing (incl. the ONVIF 0xABAC extension) and both depacketizers on arbitrary packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_media::replay::depack::{self, Codec, Depacketizer};
use vigil_media::replay::rtp;

fuzz_target!(|data: &[u8]| {
    // The input is a sequence of packets, each prefixed with a one-byte length.
    let mut h264 = Depacketizer::new(Codec::H264);
    let mut h265 = Depacketizer::new(Codec::H265);
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        if let Ok(p) = rtp::parse(pkt) {
            assert!(p.payload.len() <= pkt.len());
            h264.push(p.sequence, p.timestamp, p.marker, p.payload);
            h265.push(p.sequence, p.timestamp, p.marker, p.payload);
        }
        // Payload-only as well, so the depacketizers see every byte pattern.
        h264.push(0, 0, n % 2 == 0, pkt);
        h265.push(0, 0, n % 2 == 0, pkt);
    }
    h264.flush();
    h265.flush();
    for (c, d) in [(Codec::H264, &mut h264), (Codec::H265, &mut h265)] {
        while let Some(au) = d.pull() {
            assert!(au.data.len() <= depack::MAX_AU_BYTES);
            let _ = depack::is_keyframe(c, &au.data);
            let _ = depack::parameter_sets(c, &au.data);
            let _ = depack::nal_units(&au.data).count();
        }
    }
});
