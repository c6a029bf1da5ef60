//! The RTSP byte-stream parser, SDP parser and auth-challenge parser on arbitrary input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_api::redact::Credentials;
use vigil_media::auth::Authenticator;
use vigil_media::replay::rtsp;

/// Parses challenges and answers them, as the connection would after a 401.
fn answer<'a>(challenges: impl IntoIterator<Item = &'a str>) {
    if let Ok(mut a) = Authenticator::from_challenges(challenges) {
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let _ = a.authorization(&creds, "DESCRIBE", "rtsp://h/x");
    }
}

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
                    answer(r.headers_named("www-authenticate"));
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
    answer([text.as_ref()]);
});
