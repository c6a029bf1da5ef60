//! ICE-TCP (RFC 6544, passive host candidate) on the access point's HTTP port, the fallback
//! of WebRTC live view where the browser cannot reach the UDP port (one Service/LoadBalancer
//! port is then enough).
//!
//! Every accepted connection is classified by peeking at its first bytes (nothing is consumed):
//! an HTTP request starts with an ASCII method; an ICE-TCP connection with an RFC 4571 frame
//! (2-byte length) holding a STUN binding request (type 0x0001, magic cookie 0x2112A442).
//! HTTP connections go to the axum server as before ([`HttpConnections`], an axum
//! `Listener`); ICE-TCP connections to [`crate::live::WebRtc::serve_tcp`], which finds the
//! session by the STUN USERNAME as for UDP and then exchanges framed packets with it.
//!
//! Hostile input: a frame is at most 65535 bytes by construction (one buffer of that size per
//! connection), a connection whose first frame is not a binding request for a known session
//! within [`FIRST_STUN_TIMEOUT`] is closed, the number of ICE-TCP connections and of
//! connections still being classified is capped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;

use crate::live::WebRtc;

/// How long a new connection may stay silent before it is handed to HTTP unclassified (an idle
/// browser pre-connection; HTTP treats it as it always did).
const SNIFF_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection that looks like ICE-TCP may take to send its first complete frame,
/// a binding request for a session of ours.
pub const FIRST_STUN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections being classified at once; past that new ones go to HTTP unpeeked.
const MAX_SNIFFING: usize = 256;
/// Most ICE-TCP connections at once.
pub const MAX_ICE_TCP: usize = 1000;
/// Bytes looked at to classify a connection: length (2) + STUN type (2) + length (2) + cookie (4).
const SNIFF_BYTES: usize = 10;

/// What a connection's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// Not enough bytes yet.
    NeedMore,
    /// HTTP (or anything not starting like an RFC 4571 frame: HTTP answers it).
    Http,
    /// An RFC 4571 frame holding a STUN binding request.
    IceTcp,
    /// A frame of something else: closed.
    Other,
}

/// Classifies a connection by its first bytes.
pub fn sniff(p: &[u8]) -> Sniff {
    let Some(&first) = p.first() else {
        return Sniff::NeedMore;
    };
    // An HTTP method is ASCII letters; a frame holding a binding request (at most a few
    // hundred bytes) has a length whose high byte is 0 or 1.
    if first > 1 {
        return Sniff::Http;
    }
    if p.len() < SNIFF_BYTES {
        return Sniff::NeedMore;
    }
    let len = usize::from(u16::from_be_bytes([p[0], p[1]]));
    let stun_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    if p[2..4] == [0x00, 0x01] && p[6..10] == [0x21, 0x12, 0xa4, 0x42] && len == 20 + stun_len {
        Sniff::IceTcp
    } else {
        Sniff::Other
    }
}

/// One packet framed for RFC 4571 (2-byte big-endian length, then the packet); `None` for a
/// packet that does not fit.
pub fn frame(p: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(p.len()).ok()?;
    let mut v = Vec::with_capacity(p.len() + 2);
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(p);
    Some(v)
}

/// Reads one RFC 4571 frame into `buf` (at most 65535 bytes, so `buf` never grows past that):
/// its length, or `None` at a clean end of stream between frames. Empty frames are skipped.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    loop {
        let mut len = [0u8; 2];
        match r.read_exact(&mut len[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        r.read_exact(&mut len[1..]).await?;
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 {
            continue;
        }
        buf.resize(n, 0);
        r.read_exact(&mut buf[..n]).await?;
        return Ok(Some(n));
    }
}

/// The HTTP connections of a shared port, as an axum `Listener`.
pub struct HttpConnections {
    rx: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for HttpConnections {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop never ends while this exists; if it did, wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Splits `listener` between HTTP (the returned listener, for axum) and ICE-TCP (`rtc`).
pub fn split(listener: TcpListener, rtc: Arc<WebRtc>) -> std::io::Result<HttpConnections> {
    let local = listener.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, rtc, tx));
    Ok(HttpConnections { rx, local })
}

async fn accept_loop(
    listener: TcpListener,
    rtc: Arc<WebRtc>,
    http: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    let sniffing = Arc::new(Semaphore::new(MAX_SNIFFING));
    let ice = Arc::new(Semaphore::new(MAX_ICE_TCP));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: as axum does, wait a little.
                debug!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = sniffing.clone().try_acquire_owned() else {
            if http.send((stream, peer)).await.is_err() {
                return;
            }
            continue;
        };
        let (http, rtc, ice) = (http.clone(), rtc.clone(), ice.clone());
        tokio::spawn(async move {
            let kind = classify(&stream).await;
            drop(permit);
            match kind {
                Sniff::Http | Sniff::NeedMore => {
                    let _ = http.send((stream, peer)).await;
                }
                Sniff::IceTcp => match ice.try_acquire_owned() {
                    Ok(permit) => {
                        rtc.serve_tcp(stream, peer).await;
                        drop(permit);
                    }
                    Err(_) => debug!(%peer, "too many ICE-TCP connections"),
                },
                Sniff::Other => debug!(%peer, "closed: neither HTTP nor ICE-TCP"),
            }
        });
    }
}

/// Peeks at a connection until [`sniff`] decides (`NeedMore` after [`SNIFF_TIMEOUT`] of
/// silence, or a peer that stops half-way through the first bytes).
async fn classify(stream: &TcpStream) -> Sniff {
    let mut buf = [0u8; SNIFF_BYTES];
    let work = async {
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return Sniff::Http, // closed: HTTP sees the end itself
                Ok(n) => n,
            };
            match sniff(&buf[..n]) {
                // Peek returns at once while the bytes are there: wait a little for more.
                Sniff::NeedMore => tokio::time::sleep(Duration::from_millis(5)).await,
                s => return s,
            }
        }
    };
    tokio::time::timeout(SNIFF_TIMEOUT, work)
        .await
        .unwrap_or(Sniff::NeedMore)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(user: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
        attr.extend_from_slice(user.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut p = vec![0x00, 0x01];
        p.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&attr);
        p
    }

    #[test]
    fn sniffing() {
        let stun = frame(&binding_request("ours:theirs")).unwrap();
        assert_eq!(sniff(&stun), Sniff::IceTcp);
        for n in 0..SNIFF_BYTES {
            assert_eq!(sniff(&stun[..n]), Sniff::NeedMore, "{n} bytes");
        }
        for http in [
            "GET / HTTP/1.1\r\n",
            "POST /x",
            "OPTIONS *",
            "D",
            "\x16\x03\x01",
        ] {
            assert_eq!(sniff(http.as_bytes()), Sniff::Http, "{http}");
        }
        // A frame of something else (DTLS, a wrong cookie, a binding response, a length that
        // does not match the STUN message): closed.
        let mut bad = stun.clone();
        bad[7] ^= 1;
        assert_eq!(sniff(&bad), Sniff::Other);
        let mut resp = stun.clone();
        resp[3] = 0x01;
        resp[2] = 0x01;
        assert_eq!(sniff(&resp), Sniff::Other);
        let mut len = stun.clone();
        len[1] ^= 4;
        assert_eq!(sniff(&len), Sniff::Other);
        assert_eq!(sniff(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Sniff::Other);
        assert_eq!(
            sniff(&[0x01, 0xff, 0x16, 0xfe, 0, 0, 0, 0, 0, 0]),
            Sniff::Other
        );
    }

    #[test]
    fn framing() {
        assert_eq!(frame(b"abc").unwrap(), b"\x00\x03abc");
        assert_eq!(frame(&[]).unwrap(), [0, 0]);
        assert_eq!(frame(&vec![1; 65535]).unwrap().len(), 65537);
        assert!(frame(&vec![1; 65536]).is_none());
    }

    /// The shared port over real sockets: HTTP is served as before; a frame that is not STUN
    /// and a binding request for no session are closed at once.
    #[tokio::test]
    async fn one_port_for_http_and_ice_tcp() {
        use tokio::io::AsyncWriteExt;
        let rtc = WebRtc::bind("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        rtc.enable_tcp(addr.port(), true);
        let http = split(listener, rtc).unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        tokio::spawn(async move { axum::serve(http, app).await });
        async fn exchange(addr: SocketAddr, send: &[u8]) -> Vec<u8> {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(send).await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut got))
                .await
                .expect("connection not closed in time")
                .ok();
            got
        }
        let got = exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200") && text.ends_with("hello"),
            "{text}"
        );
        assert!(exchange(addr, &frame(&[0; 30]).unwrap()).await.is_empty());
        let stun = frame(&binding_request("nobody:x")).unwrap();
        assert!(exchange(addr, &stun).await.is_empty());
    }

    #[tokio::test]
    async fn reading_frames() {
        let mut input: Vec<u8> = Vec::new();
        input.extend(frame(b"one").unwrap());
        input.extend([0, 0]); // empty: skipped
        input.extend(frame(&vec![9; 65535]).unwrap());
        input.extend(frame(b"two").unwrap());
        input.extend([0, 5, b'x']); // cut short
        let mut r = input.as_slice();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut r, &mut buf).await.unwrap(), Some(3));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(read_frame(&mut r, &mut buf).await.unwrap(), Some(65535));
        assert_eq!(read_frame(&mut r, &mut buf).await.unwrap(), Some(3));
        assert_eq!(&buf[..3], b"two");
        assert!(buf.capacity() <= 65535 + 64);
        assert!(read_frame(&mut r, &mut buf).await.is_err());
        let mut end: &[u8] = &[];
        assert_eq!(read_frame(&mut end, &mut buf).await.unwrap(), None);
        let mut half: &[u8] = &[0];
        assert!(read_frame(&mut half, &mut buf).await.is_err());
    }
}
