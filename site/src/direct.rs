//! The direct path (issue #15, `docs/sites.md`): QUIC over a UDP hole punched through both
//! NATs. Each side learns its reflexive (public) address by probing the rendezvous service's UDP
//! port from the socket it will use; the recorder offers its reflexive address with its LAN
//! offer; the gateway sends its own back (`GatewayLine::Punch`, forwarded as `Reply::Punch`);
//! then the recorder sends a few packets to the gateway's reflexive address (opening its NAT for
//! it) and serves QUIC on that socket, while the gateway connects to the recorder's reflexive
//! address (its Initial packets open the gateway's NAT; QUIC retransmits the ones the recorder's
//! NAT dropped before the recorder punched). The recorder's certificate is pinned as on the LAN
//! path, and the gateway presents the per-stream secret on the QUIC stream. Through an
//! endpoint-independent NAT on both sides this opens; through a symmetric NAT it does not, and
//! the stream takes the relay.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tracing::debug;

use crate::error::{Error, Result};

/// The first bytes of a reflexive-address probe and of its answer.
pub const PROBE_MAGIC: &[u8; 10] = b"VIGILPROBE";
/// A probe's size: the answer is never larger (the rendezvous is no amplifier).
pub const PROBE_LEN: usize = 96;
/// ALPN of the direct path.
pub const ALPN: &[u8] = b"vigil-site/1";
/// How long learning the reflexive address may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(600);
/// How long the QUIC handshake through the punched hole may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1500);

/// A probe carrying `nonce`.
pub fn probe(nonce: &[u8; 16]) -> [u8; PROBE_LEN] {
    let mut p = [0u8; PROBE_LEN];
    p[..10].copy_from_slice(PROBE_MAGIC);
    p[10..26].copy_from_slice(nonce);
    p
}

/// The rendezvous service's answer to a probe from `from`: the nonce and the address it saw.
/// `None` for anything that is not a probe (ignored, not answered).
pub fn answer(req: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    if req.len() != PROBE_LEN || &req[..10] != PROBE_MAGIC {
        return None;
    }
    let mut a = req[..26].to_vec();
    a.extend_from_slice(from.to_string().as_bytes());
    (a.len() <= PROBE_LEN).then_some(a)
}

/// The address in an answer to the probe with `nonce`.
pub fn parse_answer(buf: &[u8], nonce: &[u8; 16]) -> Option<SocketAddr> {
    if buf.len() < 26 || &buf[..10] != PROBE_MAGIC || &buf[10..26] != nonce {
        return None;
    }
    std::str::from_utf8(&buf[26..]).ok()?.parse().ok()
}

/// Answers probes on the rendezvous service's UDP port, forever.
pub async fn serve_probes(sock: UdpSocket) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(a) = answer(&buf[..n], from) {
            let _ = sock.send_to(&a, from).await;
        }
    }
}

/// How this side's NAT maps one socket's packets to different destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The same public address and port for every destination (or no NAT): a hole can be
    /// punched.
    Independent,
    /// A different port per destination (a symmetric NAT): the peer cannot aim at the address
    /// the rendezvous saw, so no hole will open.
    Dependent,
    /// Only one of the two probe ports answered.
    Unknown,
}

/// The pure rule: the two answers, from the rendezvous's two probe ports.
pub fn mapping(a: Option<SocketAddr>, b: Option<SocketAddr>) -> Mapping {
    match (a, b) {
        (Some(a), Some(b)) if a == b => Mapping::Independent,
        (Some(_), Some(_)) => Mapping::Dependent,
        _ => Mapping::Unknown,
    }
}

/// The second probe port: the rendezvous service answers probes on its port and the next one,
/// so that each side can tell whether its NAT keeps one mapping for every destination.
pub fn second_port(addr: SocketAddr) -> Option<SocketAddr> {
    addr.port()
        .checked_add(1)
        .map(|p| SocketAddr::new(addr.ip(), p))
}

/// This socket's reflexive address as the rendezvous service at `server` sees it, and how its
/// NAT maps: probes both probe ports every 100 ms until both answer, within [`PROBE_TIMEOUT`]
/// (the first port's answer alone is enough, with [`Mapping::Unknown`]).
pub async fn reflexive(sock: &UdpSocket, server: &str) -> Result<(SocketAddr, Mapping)> {
    reflexive_at(sock, udp_server(server).await?).await
}

/// The rendezvous service's UDP address (its first probe port, which also relays): the TCP
/// address's IPv4 address and port.
pub async fn udp_server(server: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| Error::io("resolving the rendezvous service", e))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| Error::Config("the rendezvous service has no IPv4 address".into()))
}

/// [`reflexive`] with the rendezvous service's UDP address resolved.
pub async fn reflexive_at(sock: &UdpSocket, server: SocketAddr) -> Result<(SocketAddr, Mapping)> {
    let other = second_port(server);
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| Error::Protocol("no randomness".into()))?;
    let p = probe(&nonce);
    let (mut a, mut b) = (None, None);
    let _ = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if a.is_none() {
                        sock.send_to(&p, server).await.map_err(|e| Error::io("probing", e))?;
                    }
                    if let (None, Some(o)) = (b, other) {
                        let _ = sock.send_to(&p, o).await;
                    }
                }
                r = sock.recv_from(&mut buf) => {
                    let (n, from) = r.map_err(|e| Error::io("probing", e))?;
                    if let Some(addr) = parse_answer(&buf[..n], &nonce) {
                        if from == server { a = Some(addr) } else if Some(from) == other { b = Some(addr) }
                    }
                    if a.is_some() && b.is_some() {
                        return Ok::<_, Error>(());
                    }
                }
            }
        }
    })
    .await;
    match a {
        Some(addr) => Ok((addr, mapping(a, b))),
        None => Err(Error::Timeout(
            "learning the reflexive address (UDP to the rendezvous)",
        )),
    }
}

/// A fresh UDP socket for one stream's direct path.
pub async fn socket() -> Result<UdpSocket> {
    UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| Error::io("binding a UDP socket", e))
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // Retransmit a lost Initial quickly: the first ones die at the recorder's NAT until the
    // recorder has punched.
    t.initial_rtt(Duration::from_millis(30));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_idle_timeout(Some(
        quinn::VarInt::from_u32(20_000).into(), // ms
    ));
    Arc::new(t)
}

/// The recorder's QUIC server on `sock`, presenting its LAN certificate.
pub fn server_endpoint(
    sock: std::net::UdpSocket,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<quinn::Endpoint> {
    let mut tls = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
    server.transport_config(transport());
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        sock,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| Error::io("starting QUIC", e))
}

/// The gateway's QUIC client on `sock`, trusting exactly the recorder's offered certificate.
pub fn client_endpoint(sock: std::net::UdpSocket, cert_hex: &str) -> Result<quinn::Endpoint> {
    let der = crate::lan::unhex(cert_hex)
        .ok_or_else(|| Error::Protocol("malformed LAN certificate".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .map_err(|e| Error::Tls(format!("the recorder's certificate: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| Error::Tls(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(quic));
    client.transport_config(transport());
    let mut ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        sock,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| Error::io("starting QUIC", e))?;
    ep.set_default_client_config(client);
    Ok(ep)
}

/// Sends a few packets from `sock` to `peer` (opening this side's NAT for the peer's packets),
/// 50 ms apart, in the background.
pub fn punch(sock: std::net::UdpSocket, peer: SocketAddr) {
    tokio::spawn(async move {
        for _ in 0..5 {
            if let Err(e) = sock.send_to(b"vigil-punch", peer) {
                debug!(error = %e, "punch");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}

/// One bidirectional QUIC stream, owning its connection and endpoint: read and write it as the
/// camera's TCP connection.
pub struct QuicStream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub conn: quinn::Connection,
    pub endpoint: quinn::Endpoint,
}

impl QuicStream {
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }
}

impl Drop for QuicStream {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"done");
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().send), cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().send), cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(&mut self.get_mut().send), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_answered_with_the_address_and_never_amplified() {
        let nonce = [7u8; 16];
        let p = probe(&nonce);
        let from: SocketAddr = "100.64.0.10:40000".parse().unwrap();
        let a = answer(&p, from).unwrap();
        assert!(a.len() <= p.len());
        assert_eq!(parse_answer(&a, &nonce), Some(from));
        assert_eq!(parse_answer(&a, &[8u8; 16]), None, "another probe's answer");
        let v6: SocketAddr = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        assert_eq!(parse_answer(&answer(&p, v6).unwrap(), &nonce), Some(v6));
        assert_eq!(answer(&p[..50], from), None, "short");
        assert_eq!(answer(&[0u8; PROBE_LEN], from), None, "not a probe");
    }

    #[tokio::test]
    async fn the_reflexive_address_on_loopback_is_the_socket_itself() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap().to_string();
        tokio::spawn(serve_probes(server));
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Only one probe port answers here.
        assert_eq!(
            reflexive(&s, &addr).await.unwrap(),
            (s.local_addr().unwrap(), Mapping::Unknown)
        );
    }

    #[test]
    fn a_nat_that_maps_per_destination_is_symmetric() {
        let x: SocketAddr = "100.64.0.10:40000".parse().unwrap();
        let y: SocketAddr = "100.64.0.10:51234".parse().unwrap();
        assert_eq!(mapping(Some(x), Some(x)), Mapping::Independent);
        assert_eq!(mapping(Some(x), Some(y)), Mapping::Dependent);
        assert_eq!(mapping(Some(x), None), Mapping::Unknown);
        assert_eq!(second_port("1.2.3.4:65535".parse().unwrap()), None);
    }
}
