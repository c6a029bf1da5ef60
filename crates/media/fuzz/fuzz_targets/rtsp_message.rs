//! The RTSP byte-stream parser, SDP parser and auth-challenge parser on arbitrary input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_media::replay::rtsp;

fuzz_target!(|data: &[u8]| {
    // Consume the buffer as the connection would: message after message.
    let mut rest = data;
    for _ in 0..1000 {
        match rtsp::parse_message(rest) {
            Ok(Some((m, used))) => {
                assert!(used > 0 && used <= rest.len());
                if let rtsp::Message::Response(r) = &m {
                    let body = String::from_utf8_lossy(&r.body);
                    let _ = rtsp::parse_sdp(&body, "rtsp://h/x");
                    for c in r.headers_named("www-authenticate") {
                        let _ = rtsp::parse_challenge(c);
                    }
                    if let Some(t) = r.header("transport") {
                        let _ = rtsp::interleaved_channel(t);
                    }
                }
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = rtsp::parse_sdp(&text, "rtsp://h/x/");
    let _ = rtsp::parse_challenge(&text);
});
