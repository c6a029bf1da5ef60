//! RTSP 1.0 over TCP with interleaved RTP (RFC 2326 §10.12) — just what ONVIF replay and
//! vendor playback URLs need: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, Basic/Digest auth
//! (RFC 7616/2617 with `qop`, see `crate::auth`), and arbitrary extra headers (`Require: onvif-replay`, `Range: clock=…`, `Rate-Control: no`),
//! which retina cannot send.
//!
//! The byte-level parsers are pure functions over untrusted input with hard size limits (they
//! are fuzzed, see `crates/media/fuzz`); the connection adds a timeout to every read.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

use crate::auth::{Authenticator, Unauthorized, on_unauthorized};
use crate::error::{Error, Result};
use crate::replay::Throttle;
use vigil_api::redact::Credentials;
use vigil_api::redact::redact_url;

/// Largest RTSP header block accepted.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest RTSP body (an SDP) accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// An RTSP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One message from the server's byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `$` channel length data.
    Interleaved {
        channel: u8,
        data: Vec<u8>,
    },
    Response(Response),
    /// A request from the server (e.g. a keep-alive `GET_PARAMETER`) or junk: skipped.
    Skipped,
}

/// Parses one message from the front of `buf`: `Ok(None)` means more bytes are needed;
/// `Ok(Some((message, consumed)))` otherwise.
pub fn parse_message(buf: &[u8]) -> Result<Option<(Message, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let n = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < 4 + n {
            return Ok(None);
        }
        return Ok(Some((
            Message::Interleaved {
                channel: buf[1],
                data: buf[4..4 + n].to_vec(),
            },
            4 + n,
        )));
    }
    if !first.is_ascii_alphabetic() {
        // Junk between messages: skip to the next plausible start.
        let next = buf
            .iter()
            .skip(1)
            .position(|&b| b == b'$' || b.is_ascii_alphabetic())
            .map_or(buf.len(), |p| p + 1);
        return Ok(Some((Message::Skipped, next)));
    }
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEADER_BYTES {
            return Err(format!("RTSP header longer than {MAX_HEADER_BYTES} bytes"));
        }
        return Ok(None);
    };
    if head_end > MAX_HEADER_BYTES {
        return Err(format!("RTSP header longer than {MAX_HEADER_BYTES} bytes"));
    }
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default();
    let mut headers = Vec::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let clen = match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| "RTSP Content-Length is not a number".to_string())?,
        None => 0,
    };
    if clen > MAX_BODY_BYTES {
        return Err(format!("RTSP body of {clen} bytes is over the limit"));
    }
    let total = head_end + 4 + clen;
    if buf.len() < total {
        return Ok(None);
    }
    if let Some(rest) = start.strip_prefix("RTSP/") {
        let status = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| "RTSP status line without a status code".to_string())?;
        return Ok(Some((
            Message::Response(Response {
                status,
                headers,
                body: buf[head_end + 4..total].to_vec(),
            }),
            total,
        )));
    }
    Ok(Some((Message::Skipped, total)))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A media section of an SDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub payload_type: Option<u8>,
    /// Lower-case encoding name (`h264`, `h265`, `mpeg4-generic`, ...).
    pub encoding: Option<String>,
    pub clock_rate: Option<u32>,
    pub fmtp: Option<String>,
    /// Absolute control URL.
    pub control: String,
}

/// Parses the media sections of an SDP and resolves their control URLs against `base`.
pub fn parse_sdp(sdp: &str, base: &str) -> Vec<Media> {
    let mut out: Vec<Media> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut it = m.split_whitespace();
            let kind = it.next().unwrap_or_default().to_string();
            let pt = it.nth(2).and_then(|p| p.parse().ok());
            out.push(Media {
                kind,
                payload_type: pt,
                encoding: None,
                clock_rate: None,
                fmtp: None,
                control: base.to_string(),
            });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if let Some(c) = line.strip_prefix("a=control:") {
            let c = c.trim();
            cur.control = if c.starts_with("rtsp://") || c.starts_with("rtsps://") {
                c.to_string()
            } else if c == "*" {
                base.to_string()
            } else if base.ends_with('/') {
                format!("{base}{c}")
            } else {
                format!("{base}/{c}")
            };
        } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
            // a=rtpmap:96 H264/90000
            if let Some((_, enc)) = r.split_once(' ') {
                let mut p = enc.split('/');
                cur.encoding = p.next().map(|e| e.trim().to_ascii_lowercase());
                cur.clock_rate = p.next().and_then(|c| c.trim().parse().ok());
            }
        } else if let Some(f) = line.strip_prefix("a=fmtp:") {
            cur.fmtp = f.split_once(' ').map(|(_, v)| v.trim().to_string());
        }
    }
    out
}

/// The interleaved channel the server chose in a SETUP response's `Transport`.
pub fn interleaved_channel(transport: &str) -> Option<u8> {
    transport.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("interleaved=")
            .and_then(|v| v.split('-').next())
            .and_then(|v| v.trim().parse().ok())
    })
}

/// An RTSP connection.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
    session: Option<String>,
    creds: Option<Credentials>,
    /// Set by the first 401; Digest nonces count (`nc`) across the connection's requests.
    auth: Option<Authenticator>,
    pub read_timeout: Duration,
    /// Interleaved data that arrived while waiting for a response.
    pub pending: Vec<(u8, Vec<u8>)>,
    /// Bytes read from the socket.
    pub bytes_read: u64,
    /// For error messages only.
    shown: String,
}

impl Conn {
    /// Connects to the URL's host (credentials must already be out of the URL).
    /// Directly, the host is resolved once and the address checked against the route's policy
    /// before anything is sent; a site camera is reached through its site's tunnel (see
    /// `netguard::Route`).
    pub async fn connect(
        url: &Url,
        creds: Option<Credentials>,
        timeout: Duration,
        route: &crate::netguard::Route,
    ) -> Result<Conn> {
        let shown = redact_url(url);
        let host = crate::netguard::url_host(url)
            .ok_or_else(|| Error::Rtsp(format!("{shown}: no host")))?;
        if url.scheme() != "rtsp" {
            return Err(Error::Rtsp(format!(
                "{shown}: only rtsp:// is supported for replay"
            )));
        }
        let port = url.port().unwrap_or(554);
        let stream = route.connect(&host, port, timeout).await?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(256 * 1024),
            cseq: 0,
            session: None,
            creds,
            auth: None,
            read_timeout: timeout,
            pending: Vec::new(),
            bytes_read: 0,
            shown,
        })
    }

    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Reads the next message (with the read timeout); `Ok(None)` at EOF.
    pub async fn next_message(&mut self, hook: &mut Throttle) -> Result<Option<Message>> {
        loop {
            match parse_message(&self.buf) {
                Err(e) => return Err(Error::Rtsp(format!("{}: {e}", self.shown))),
                Ok(Some((m, used))) => {
                    self.buf.drain(..used);
                    return Ok(Some(m));
                }
                Ok(None) => {}
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = tokio::time::timeout(self.read_timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| {
                    Error::Rtsp(format!(
                        "{}: nothing received for {} s",
                        self.shown,
                        self.read_timeout.as_secs()
                    ))
                })?
                .map_err(|e| Error::Rtsp(format!("{}: read: {e}", self.shown)))?;
            if n == 0 {
                return Ok(None);
            }
            self.bytes_read += n as u64;
            hook.take(n).await;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request and waits for its response. A 401 is answered with credentials (Digest
    /// preferred, see `crate::auth`); a later 401 only when it says the nonce went stale.
    pub async fn request(
        &mut self,
        method: &str,
        uri: &str,
        extra: &[(&str, String)],
        hook: &mut Throttle,
    ) -> Result<Response> {
        // One unauthenticated try, one with credentials, one after a stale nonce.
        for _attempt in 0..3 {
            self.cseq += 1;
            let mut req = format!(
                "{method} {uri} RTSP/1.0\r\nCSeq: {}\r\nUser-Agent: vigil-recorder\r\n",
                self.cseq
            );
            if let Some(s) = &self.session {
                req.push_str(&format!("Session: {s}\r\n"));
            }
            let sent_credentials = match (&mut self.auth, &self.creds) {
                (Some(a), Some(cr)) => {
                    let value = a.authorization(cr, method, uri).map_err(|e| {
                        Error::Rtsp(format!("{}: {method}: authorization: {e}", self.shown))
                    })?;
                    req.push_str(&format!("Authorization: {value}\r\n"));
                    true
                }
                _ => false,
            };
            for (k, v) in extra {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            tokio::time::timeout(self.read_timeout, self.stream.write_all(req.as_bytes()))
                .await
                .map_err(|_| Error::Rtsp(format!("{}: write timed out", self.shown)))?
                .map_err(|e| Error::Rtsp(format!("{}: write: {e}", self.shown)))?;
            let resp = loop {
                match self.next_message(hook).await? {
                    None => {
                        return Err(Error::Rtsp(format!(
                            "{}: connection closed during {method}",
                            self.shown
                        )));
                    }
                    Some(Message::Response(r)) => break r,
                    Some(Message::Interleaved { channel, data }) => {
                        if self.pending.len() < 10_000 {
                            self.pending.push((channel, data));
                        }
                    }
                    Some(Message::Skipped) => {}
                }
            };
            if resp.status == 401 && self.creds.is_some() {
                match on_unauthorized(sent_credentials, resp.headers_named("www-authenticate")) {
                    Unauthorized::Retry(a) => {
                        self.auth = Some(a);
                        continue;
                    }
                    Unauthorized::Refused(why) => {
                        return Err(Error::Rtsp(format!(
                            "{}: {method} not authorized: {why}",
                            self.shown
                        )));
                    }
                }
            }
            if resp.status != 200 {
                return Err(Error::Rtsp(format!(
                    "{}: {method} answered {}",
                    self.shown, resp.status
                )));
            }
            if self.session.is_none()
                && let Some(s) = resp.header("session")
            {
                self.session = Some(s.split(';').next().unwrap_or(s).trim().to_string());
            }
            return Ok(resp);
        }
        Err(Error::Rtsp(format!(
            "{}: {method} not authorized",
            self.shown
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_and_interleaved() {
        let mut b = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 3\r\nSession: abc;timeout=60\r\n\r\nv=0".to_vec();
        b.extend_from_slice(&[b'$', 1, 0, 2, 9, 9, b'$']);
        let (m, n) = parse_message(&b).unwrap().unwrap();
        let Message::Response(r) = m else { panic!() };
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"v=0");
        assert_eq!(r.header("SESSION"), Some("abc;timeout=60"));
        let (m, k) = parse_message(&b[n..]).unwrap().unwrap();
        assert_eq!(
            m,
            Message::Interleaved {
                channel: 1,
                data: vec![9, 9]
            }
        );
        assert!(parse_message(&b[n + k..]).unwrap().is_none());
        assert!(parse_message(b"RTSP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
    }

    #[test]
    fn sdp_and_transport() {
        let sdp = "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z0I=,aM4=\r\na=control:stream=0\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\na=control:rtsp://h/x/stream=1\r\n";
        let m = parse_sdp(sdp, "rtsp://h/cam/replay/");
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].control, "rtsp://h/cam/replay/stream=0");
        assert_eq!(m[0].encoding.as_deref(), Some("h264"));
        assert_eq!(m[0].clock_rate, Some(90000));
        assert_eq!(m[0].payload_type, Some(96));
        assert!(m[0].fmtp.as_deref().unwrap().contains("sprop"));
        assert_eq!(m[1].control, "rtsp://h/x/stream=1");
        assert_eq!(
            interleaved_channel("RTP/AVP/TCP;unicast;interleaved=2-3"),
            Some(2)
        );
    }
}
