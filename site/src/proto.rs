//! The tunnel's wire protocol: after the TLS handshake, each side sends JSON lines (at most
//! [`MAX_LINE`] bytes) until the connection becomes a byte stream.
//!
//! - A gateway's control connection: `Hello::Gateway` → `Reply::Welcome` (the site's camera
//!   networks); then the rendezvous sends `Control` lines (`Open` a stream, `Ping`), the gateway
//!   answers `Ping` with `GatewayLine::Pong`.
//! - A gateway's data connection, one per camera connection: `Hello::GatewayData` (the stream id
//!   it was told to open), then `GatewayLine::Connected` or `GatewayLine::Failed` after dialling
//!   the camera; then bytes.
//! - A recorder's connection, one per camera connection: `Hello::Recorder` (the site, the
//!   camera's host and port) → `Reply::Open` or `Reply::Refused`; then bytes. When the stream
//!   took another path (the gateway reached the recorder on its LAN), `Reply::Elsewhere`.
//! - The LAN path: the recorder offers its LAN candidates, a per-process certificate and a
//!   per-stream secret in its `Hello::Recorder`; the rendezvous forwards them in `Control::Open`;
//!   the gateway, when a candidate is on one of its own networks, dials it (TLS, the certificate
//!   pinned), sends [`LanHello`] with the secret, then `GatewayLine::Connected`/`Failed`; then
//!   bytes. On the relay data connection it then sends `GatewayLine::Elsewhere`.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vigil_api::CameraNetworks;

use crate::error::{Error, Result};

/// The longest line either side reads before the stream carries bytes.
pub const MAX_LINE: usize = 4096;

/// A token as read from a file: compared in constant time, never printed.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    pub fn new(s: impl Into<String>) -> Self {
        Token(s.into())
    }
    /// Reads a token file (trailing newline dropped); an empty token is refused.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let t = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading token file {}", path.display()), e))?;
        let t = t.trim_end_matches(['\n', '\r']).to_string();
        if t.is_empty() {
            return Err(Error::Config(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        Ok(Token(t))
    }
    /// Constant-time comparison.
    pub fn matches(&self, other: &Token) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// The first line of every connection to the rendezvous service.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "hello", rename_all = "camelCase")]
pub enum Hello {
    Gateway {
        namespace: String,
        site: String,
        token: Token,
        /// The gateway's LAN networks (`address/prefix`), for status and logs.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        lan: Vec<String>,
    },
    GatewayData {
        namespace: String,
        site: String,
        token: Token,
        stream: String,
    },
    Recorder {
        namespace: String,
        token: Token,
        site: String,
        host: String,
        port: u16,
        #[serde(default, flatten)]
        lan: LanOffer,
    },
}

/// What a recorder offers for the LAN path: where it listens for this stream, the certificate
/// it presents there (DER, hex) and the secret the gateway must present. Empty: relay only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LanOffer {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lan: Vec<std::net::SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lan_secret: Option<Token>,
    /// The direct path: the recorder's reflexive address (its UDP socket as the rendezvous
    /// service saw it), where it serves QUIC for this stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflexive: Option<std::net::SocketAddr>,
    /// The relay over UDP (`crate::udprelay`): the recorder serves QUIC on a socket that reached
    /// the rendezvous service's UDP port, and asks for a pairing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relay_udp: bool,
}

impl LanOffer {
    /// No LAN path offered.
    pub fn is_empty(&self) -> bool {
        self.lan.is_empty() || self.lan_cert.is_none() || self.lan_secret.is_none()
    }
    /// Whether the direct path is offered.
    pub fn offers_direct(&self) -> bool {
        self.reflexive.is_some() && self.lan_cert.is_some() && self.lan_secret.is_some()
    }
    /// Whether the relay over UDP can be tried (the recorder serves QUIC with its certificate).
    pub fn offers_relay_udp(&self) -> bool {
        self.relay_udp && self.lan_cert.is_some() && self.lan_secret.is_some()
    }
}

/// The first line a gateway sends on a LAN connection to a recorder.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LanHello {
    pub secret: Token,
}

/// The rendezvous service's answer to a `Hello`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reply", rename_all = "camelCase")]
pub enum Reply {
    Welcome {
        camera_networks: CameraNetworks,
    },
    Open,
    /// The stream was opened on another path (`lan`, `direct`); this connection carries nothing.
    Elsewhere {
        path: String,
    },
    /// The gateway's reflexive address for this stream's direct path: punch towards it.
    Punch {
        reflexive: std::net::SocketAddr,
    },
    /// The relay over UDP: this stream's pairing id (hex); register the QUIC socket with it at
    /// the rendezvous service's UDP port.
    UdpRelay {
        pairing: String,
    },
    Refused {
        reason: String,
    },
}

/// What the rendezvous sends on a gateway's control connection.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "control", rename_all = "camelCase")]
pub enum Control {
    Open {
        stream: String,
        host: String,
        port: u16,
        #[serde(default, flatten)]
        lan: LanOffer,
        /// The relay over UDP: the stream's pairing id (hex), when the recorder asked for it
        /// and the rendezvous made one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pairing: Option<String>,
    },
    Ping {
        seq: u64,
    },
}

/// What a gateway sends: `Pong` on its control connection, `Connected`/`Failed` on a data one.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "gateway", rename_all = "camelCase")]
pub enum GatewayLine {
    Pong {
        seq: u64,
    },
    Connected,
    Failed {
        reason: String,
    },
    /// On the relay data connection: the stream went over another path (`lan`, `direct`, or
    /// `relay` with `transport: udp`: the relay over UDP).
    Elsewhere {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transport: Option<String>,
    },
    /// On the relay data connection, before the final line: the gateway's reflexive address
    /// for the direct path (forwarded to the recorder as `Reply::Punch`).
    Punch {
        reflexive: std::net::SocketAddr,
    },
}

/// Reads one line of at most [`MAX_LINE`] bytes, byte by byte so that nothing after it is
/// consumed (the connection carries raw bytes after its last line). `None` at end of stream.
pub async fn read_line<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>> {
    let mut line = Vec::with_capacity(128);
    loop {
        let mut b = [0u8; 1];
        let n = r.read(&mut b).await.map_err(|e| Error::io("reading", e))?;
        if n == 0 {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(Error::Protocol("connection closed mid-line".into()))
            };
        }
        if b[0] == b'\n' {
            return Ok(Some(line));
        }
        if line.len() >= MAX_LINE {
            return Err(Error::Protocol(format!(
                "line longer than {MAX_LINE} bytes"
            )));
        }
        line.push(b[0]);
    }
}

/// Reads and decodes one JSON line.
pub async fn recv<T: for<'de> Deserialize<'de>, R: AsyncRead + Unpin>(r: &mut R) -> Result<T> {
    let line = read_line(r)
        .await?
        .ok_or_else(|| Error::Protocol("connection closed".into()))?;
    // serde's message may quote the input: only its position is kept (a token could be in it).
    serde_json::from_slice(&line).map_err(|e| {
        Error::Protocol(format!(
            "malformed message (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Encodes and writes one JSON line.
pub async fn send<T: Serialize, W: AsyncWrite + Unpin>(w: &mut W, msg: &T) -> Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(|e| Error::Protocol(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line)
        .await
        .map_err(|e| Error::io("writing", e))?;
    w.flush().await.map_err(|e| Error::io("writing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_and_hide() {
        let a = Token::new("s3cret-token");
        assert!(a.matches(&Token::new("s3cret-token")));
        assert!(!a.matches(&Token::new("s3cret-tokeN")));
        assert!(!a.matches(&Token::new("s3cret")));
        assert_eq!(format!("{a:?}"), "Token(..)");
        let h = Hello::Gateway {
            namespace: "ns".into(),
            site: "s".into(),
            token: a,
            lan: vec![],
        };
        assert!(!format!("{h:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn old_messages_still_parse_and_offers_round_trip() {
        // A recorder or gateway of the relay-only slice sends no LAN fields.
        let mut old: &[u8] =
            b"{\"control\":\"open\",\"stream\":\"ab\",\"host\":\"h\",\"port\":554}\n";
        match recv::<Control, _>(&mut old).await.unwrap() {
            Control::Open { lan, .. } => assert!(lan.is_empty()),
            other => panic!("{other:?}"),
        }
        let offer = LanOffer {
            lan: vec!["192.168.50.3:4000".parse().unwrap()],
            lan_cert: Some("3082".into()),
            lan_secret: Some(Token::new("s3cret")),
            reflexive: Some("100.64.0.20:40000".parse().unwrap()),
            relay_udp: true,
        };
        let mut buf = Vec::new();
        let h = Hello::Recorder {
            namespace: "ns".into(),
            token: Token::new("t"),
            site: "s".into(),
            host: "192.168.50.2".into(),
            port: 554,
            lan: offer.clone(),
        };
        send(&mut buf, &h).await.unwrap();
        let mut r: &[u8] = &buf;
        match recv::<Hello, _>(&mut r).await.unwrap() {
            Hello::Recorder { lan, port, .. } => {
                assert_eq!(lan, offer);
                assert_eq!(port, 554);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_leave_the_rest() {
        let mut input: &[u8] = b"{\"control\":\"ping\",\"seq\":7}\nRTSP/1.0";
        let c: Control = recv(&mut input).await.unwrap();
        assert_eq!(c, Control::Ping { seq: 7 });
        assert_eq!(input, b"RTSP/1.0");
        let long = vec![b'x'; MAX_LINE + 10];
        let mut r: &[u8] = &long;
        assert!(matches!(read_line(&mut r).await, Err(Error::Protocol(_))));
        let mut bad: &[u8] = b"{\"token\":\"s3cret\"\n";
        let e = recv::<Hello, _>(&mut bad).await.unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }
}
