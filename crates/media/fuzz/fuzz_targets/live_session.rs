//! The live path end to end: retina's RTSP client (the patched copy in vendor/retina, as the
//! recorder uses it) talks to a loopback server that answers with the fuzzer's bytes, and the
//! frames it yields go through Vigil's segmenter into fragments.
//!
//! The first input byte picks what is fuzzed:
//! * even: the DESCRIBE response itself (status line, headers, body, SDP);
//! * odd, bit 1 clear: valid DESCRIBE/SETUP/PLAY answers, then the rest raw on the connection
//!   (interleaved framing, RTSP messages in between);
//! * odd, bit 1 set: the same answers, then the rest as RTP packets on channel 0, each record
//!   `[flags, len, payload...]` (flags: bit 0 marker, bits 1-3 timestamp step in frames),
//!   so the H.264 depacketizer and the segmenter see deep inputs quickly.
//!
//! Asserts the bounds the recorder relies on: no frame larger than retina's buffering limit,
//! no fragment holding more than the segmenter's byte limit plus one frame.
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use retina::client::{PlayOptions, Session, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vigil_media::segmenter::{Event, MAX_FRAGMENT_BYTES, Policy, Segmenter, VideoIn};

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=64001E;sprop-parameter-sets=Z2QAHqwsaoLA9puCgIKgAAADACAAAAMD0IAA,aO4xshsA\r\n\
a=control:trackID=0\r\n";

struct Env {
    rt: tokio::runtime::Runtime,
    listener: TcpListener,
    addr: SocketAddr,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        Env { rt, listener, addr }
    })
}

/// Reads one request head and returns its CSeq.
async fn request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let cseq = head
                .lines()
                .find_map(|l| l.strip_prefix("CSeq:"))
                .map(|v| v.trim().to_string())
                .unwrap_or_default();
            return Some(cseq);
        }
        let mut chunk = [0u8; 2048];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut s: TcpStream, data: Vec<u8>) {
    // No TIME_WAIT pile-up over millions of runs; a zero linger resets at once, so the
    // deprecation's concern (blocking on drop) does not apply.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    let mut buf = Vec::new();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some(cseq) = request(&mut s, &mut buf).await else {
        return;
    };
    if mode & 1 == 0 {
        let _ = s.write_all(rest).await;
        return;
    }
    let port = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let describe = format!(
        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Base: rtsp://127.0.0.1:{port}/cam/\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    if s.write_all(describe.as_bytes()).await.is_err() {
        return;
    }
    let Some(cseq) = request(&mut s, &mut buf).await else {
        return;
    };
    let setup = format!(
        "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 1;timeout=60\r\n\
         Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
    );
    if s.write_all(setup.as_bytes()).await.is_err() {
        return;
    }
    let Some(cseq) = request(&mut s, &mut buf).await else {
        return;
    };
    let mut out = format!("RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 1\r\n\r\n").into_bytes();
    if mode & 2 == 0 {
        out.extend_from_slice(rest);
    } else {
        let (mut seq, mut ts) = (1u16, 90_000u32);
        let mut r = rest;
        while let [flags, len, tail @ ..] = r {
            let n = usize::from(*len).min(tail.len());
            let (payload, next) = tail.split_at(n);
            r = next;
            let body = 12 + payload.len();
            out.extend_from_slice(&[b'$', 0]);
            out.extend_from_slice(&(body as u16).to_be_bytes());
            out.push(0x80);
            out.push(96 | ((flags & 1) << 7));
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            out.extend_from_slice(payload);
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(u32::from((flags >> 1) & 7) * 3600);
        }
    }
    let _ = s.write_all(&out).await;
}

async fn client(url: url::Url) {
    let Ok(mut session) = Session::describe(url, SessionOptions::default()).await else {
        return;
    };
    if session
        .setup(
            0,
            SetupOptions::default()
                .transport(Transport::Tcp(Default::default()))
                .frame_format(FrameFormat::MP4),
        )
        .await
        .is_err()
    {
        return;
    }
    let Ok(playing) = session.play(PlayOptions::default()).await else {
        return;
    };
    let Ok(mut demuxed) = playing.demuxed() else {
        return;
    };
    let policy = Policy {
        segment_ticks: 2 * 90_000,
        fragment_ticks: 90_000,
        audio_rate: None,
    };
    let mut seg = Segmenter::new(policy);
    let mut events = Vec::new();
    while let Some(item) = demuxed.next().await {
        let f = match item {
            Ok(CodecItem::VideoFrame(f)) => f,
            Ok(_) => continue,
            Err(_) => break,
        };
        let v = VideoIn {
            ts: f.timestamp().elapsed(),
            key: f.is_random_access_point(),
            new_params: f.has_new_parameters(),
            data: f.into_data(),
        };
        assert!(v.data.len() <= retina::client::MAX_BUFFERED);
        if let Err(d) = seg.push_video(v, &mut events) {
            // As the recorder does: end the segment, start a new timeline.
            seg.finish(&mut events);
            seg = Segmenter::new(policy);
            let _ = seg.push_video(d.frame, &mut events);
        }
        check(&mut events);
    }
    seg.finish(&mut events);
    check(&mut events);
}

fn check(events: &mut Vec<Event>) {
    for e in events.drain(..) {
        if let Event::Fragment { fragment, .. } = e {
            assert!(
                fragment.payload_bytes <= MAX_FRAGMENT_BYTES + retina::client::MAX_BUFFERED as u64
            );
            let held: usize = fragment.chunks.iter().map(Vec::len).sum();
            assert_eq!(held as u64, fragment.payload_bytes);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let data = data.to_vec();
    env.rt.block_on(async {
        let url = url::Url::parse(&format!("rtsp://{}/cam", env.addr)).expect("url");
        let server = async {
            if let Ok((s, _)) = env.listener.accept().await {
                serve(s, data).await;
            }
        };
        let run = async { tokio::join!(server, client(url)) };
        let _ = tokio::time::timeout(Duration::from_secs(5), run).await;
    });
});
