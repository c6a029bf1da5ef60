//! The LAN path (issue #15, `docs/sites.md`): when a recorder sits on the site's own network, the
//! gateway reaches it there instead of through the relay. Nothing listens at the site: the
//! *recorder* listens, only while it opens a stream, on an ephemeral port, and offers its LAN
//! addresses, a per-process self-signed certificate and a per-stream secret through the
//! rendezvous service (which both sides already trust). The gateway dials the recorder's
//! addresses that are on one of its own networks, pins that certificate, presents the secret.
//! So the LAN path is TLS with both ends authenticated, like the relay.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::error::{Error, Result};
use crate::proto::Token;

/// The name on the recorder's LAN certificate (the gateway checks it, with the pinned key).
pub const LAN_SERVER_NAME: &str = "vigil-recorder-lan";

/// The path a stream takes, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    Lan,
    Direct,
    Relay,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Lan => "lan",
            Path::Direct => "direct",
            Path::Relay => "relay",
        }
    }
    pub fn parse(s: &str) -> Option<Path> {
        match s {
            "lan" => Some(Path::Lan),
            "direct" => Some(Path::Direct),
            "relay" => Some(Path::Relay),
            _ => None,
        }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An interface network of this host: an address and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let bits = u32::from(self.prefix.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let bits = u32::from(self.prefix.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// This host's IPv4 interface networks, loopback and link-local left out (what a LAN peer can
/// reach). Empty when the interfaces cannot be read.
pub fn local_networks() -> Vec<Net> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut nets = Vec::new();
    for a in addrs {
        let (Some(addr), Some(mask)) = (
            a.address.as_ref().and_then(|s| s.as_sockaddr_in()),
            a.netmask.as_ref().and_then(|s| s.as_sockaddr_in()),
        ) else {
            continue;
        };
        let net = Net {
            addr: IpAddr::V4(addr.ip()),
            prefix: u32::from(mask.ip()).count_ones() as u8,
        };
        if usable(net.addr) && !nets.contains(&net) {
            nets.push(net);
        }
    }
    nets
}

/// Whether a LAN peer could use this address: not loopback, link-local, unspecified, multicast.
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()),
    }
}

/// The recorder's candidates: each of its networks' addresses at `port`.
pub fn candidates(nets: &[Net], port: u16) -> Vec<SocketAddr> {
    nets.iter()
        .filter(|n| usable(n.addr))
        .map(|n| SocketAddr::new(n.addr, port))
        .collect()
}

/// The recorder's candidates a gateway dials: those on one of the gateway's own networks (the
/// same LAN, reachable without a router), never loopback or the gateway's own addresses.
pub fn same_lan(offered: &[SocketAddr], ours: &[Net]) -> Vec<SocketAddr> {
    offered
        .iter()
        .copied()
        .filter(|c| usable(c.ip()))
        .filter(|c| ours.iter().all(|n| n.addr != c.ip()))
        .filter(|c| ours.iter().any(|n| n.contains(c.ip())))
        .collect()
}

/// A recorder's identity on the LAN path: a self-signed certificate made at start (per process,
/// never written anywhere), offered through the rendezvous service for the gateway to pin.
pub struct LanIdentity {
    pub cert_hex: String,
    pub server: Arc<rustls::ServerConfig>,
    cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for LanIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanIdentity").finish_non_exhaustive()
    }
}

impl LanIdentity {
    pub fn generate() -> Result<Self> {
        let key = rcgen::KeyPair::generate().map_err(|e| Error::Tls(e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec![LAN_SERVER_NAME.to_string()])
            .map_err(|e| Error::Tls(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::Tls(e.to_string()))?;
        let der = cert.der().to_vec();
        let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .map_err(|e| Error::Tls(e.to_string()))?;
        Ok(LanIdentity {
            cert_hex: hex(&der),
            server: Arc::new(server),
            cert_der: CertificateDer::from(der),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The same certificate and key, for the direct path's QUIC server.
    pub fn cert_and_key(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        (
            self.cert_der.clone(),
            PrivateKeyDer::Pkcs8(self.key_der.clone_key()),
        )
    }
}

/// A client configuration that trusts exactly the certificate the recorder offered.
pub fn pinned_client(cert_hex: &str) -> Result<Arc<rustls::ClientConfig>> {
    let der = unhex(cert_hex).ok_or_else(|| Error::Protocol("malformed LAN certificate".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .map_err(|e| Error::Tls(format!("the recorder's LAN certificate: {e}")))?;
    let cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(LAN_SERVER_NAME).expect("a valid DNS name")
}

/// 128 random bits, hex: stream ids and LAN secrets.
pub fn random_id() -> Result<String> {
    let mut id = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .map_err(|_| Error::Protocol("no randomness".into()))?;
    Ok(hex(&id))
}

pub fn random_secret() -> Result<Token> {
    random_id().map(Token::new)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Net {
        let (a, p) = s.split_once('/').unwrap();
        Net {
            addr: a.parse().unwrap(),
            prefix: p.parse().unwrap(),
        }
    }

    #[test]
    fn only_candidates_on_the_gateways_networks_are_dialled() {
        let gw = [net("192.168.50.2/24")];
        let offered: Vec<SocketAddr> = [
            "192.168.50.3:4000", // same LAN
            "192.168.60.2:4000", // the recorder's other network: behind a router
            "127.0.0.1:4000",    // loopback: never
            "192.168.50.2:4000", // the gateway itself: never
            "169.254.1.1:4000",  // link-local
            "[fd00::1]:4000",    // another family
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(
            same_lan(&offered, &gw),
            vec!["192.168.50.3:4000".parse::<SocketAddr>().unwrap()]
        );
        assert!(same_lan(&offered, &[]).is_empty());
        assert!(net("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(!net("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(net("fd00::/8").contains("fd12::1".parse().unwrap()));
    }

    #[test]
    fn candidates_skip_loopback_and_keep_the_port() {
        let nets = [
            net("127.0.0.1/8"),
            net("192.168.50.3/24"),
            net("10.1.2.3/16"),
        ];
        assert_eq!(
            candidates(&nets, 7000),
            vec![
                "192.168.50.3:7000".parse::<SocketAddr>().unwrap(),
                "10.1.2.3:7000".parse().unwrap()
            ]
        );
        // This host has some interface; loopback is never among them.
        assert!(local_networks().iter().all(|n| usable(n.addr)));
    }

    #[test]
    fn paths_order_and_names() {
        assert!(Path::Lan < Path::Direct && Path::Direct < Path::Relay);
        for p in [Path::Lan, Path::Direct, Path::Relay] {
            assert_eq!(Path::parse(p.as_str()), Some(p));
        }
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn the_pinned_certificate_is_the_only_one_trusted() {
        let a = LanIdentity::generate().unwrap();
        assert!(pinned_client(&a.cert_hex).is_ok());
        assert!(pinned_client("nothex").is_err());
        assert_ne!(a.cert_hex, LanIdentity::generate().unwrap().cert_hex);
    }
}
