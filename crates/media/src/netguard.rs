//! Connecting to a camera under its pool's address policy (`vigil_api::netpolicy`).
//!
//! Every connection Vigil makes on a camera's behalf — live RTSP (the recorder hands retina a
//! URL whose host is the address checked here), RTSP replay and playback templates, ONVIF — goes
//! through this module: the host is resolved once, each address is checked against the policy,
//! and the connection goes to the checked address, never to the name again. A DNS answer that
//! changes between check and connect (DNS rebinding) therefore cannot reach a refused address.
//! A refused address is a typed error (`Error::AddressNotAllowed`) and no connection at all.
//!
//! A camera at a remote site (issue #15, `docs/sites.md`) is not dialled at all: [`via_site`]
//! opens a byte stream to its LAN address through the site's tunnel, and the site's gateway
//! checks that address against the site's camera networks. [`bridge`] turns such a stream into
//! a `TcpStream` for libraries that want one (retina).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use url::Url;
use vigil_api::netpolicy::AddressPolicy;
use vigil_api::redact::peer_summary;

use crate::error::{Error, Result};

/// How long a name may take to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The host of a URL as `resolve` wants it: without the brackets of an IPv6 literal.
pub fn url_host(url: &Url) -> Option<String> {
    match url.host()? {
        url::Host::Domain(d) => Some(d.to_string()),
        url::Host::Ipv4(a) => Some(a.to_string()),
        url::Host::Ipv6(a) => Some(a.to_string()),
    }
}

/// Picks the first allowed address; refuses when none is.
pub fn choose(
    host: &str,
    addrs: impl IntoIterator<Item = SocketAddr>,
    policy: &AddressPolicy,
) -> Result<SocketAddr> {
    let mut first_refusal = None;
    for a in addrs {
        match policy.check(a.ip()) {
            Ok(()) => return Ok(a),
            Err(why) => {
                first_refusal.get_or_insert((a.ip(), why));
            }
        }
    }
    match first_refusal {
        Some((addr, refusal)) => Err(Error::AddressNotAllowed {
            host: peer_summary(host),
            addr,
            refusal,
        }),
        None => Err(Error::Rtsp(format!(
            "{}: the name resolves to no address",
            peer_summary(host)
        ))),
    }
}

/// Resolves `host` once and returns an address the policy allows.
pub async fn resolve(host: &str, port: u16, policy: &AddressPolicy) -> Result<SocketAddr> {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return choose(host, [SocketAddr::new(ip, port)], policy);
    }
    let addrs = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| Error::Rtsp(format!("{}: name lookup timed out", peer_summary(host))))?
        .map_err(|e| {
            Error::Rtsp(format!(
                "{}: name lookup failed: {}",
                peer_summary(host),
                peer_summary(&e.to_string())
            ))
        })?;
    choose(host, addrs, policy)
}

/// Resolves, checks and connects to the checked address.
pub async fn connect(
    host: &str,
    port: u16,
    policy: &AddressPolicy,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr)> {
    let addr = resolve(host, port, policy).await?;
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Rtsp(format!("{}: connect timed out", peer_summary(host))))?
        .map_err(|e| {
            Error::Rtsp(format!(
                "{}: connect: {}",
                peer_summary(host),
                peer_summary(&e.to_string())
            ))
        })?;
    Ok((stream, addr))
}

/// Opens a byte stream to `host:port` at `site` through the site's tunnel (the LAN path or the
/// relay, see `SiteStream::path`). The site's gateway resolves and checks the address against
/// the site's camera networks.
pub async fn via_site(
    link: &vigil_site::SiteLink,
    site: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<vigil_site::SiteStream> {
    link.open(site, host, port, timeout)
        .await
        .map_err(|e| match e {
            vigil_site::Error::Refused(r) => Error::Rtsp(format!(
                "site {}: refused: {}",
                peer_summary(site),
                peer_summary(&r)
            )),
            other => Error::Rtsp(format!(
                "site {}: {}",
                peer_summary(site),
                peer_summary(&other.to_string())
            )),
        })
}

/// Per-direction buffer between a tunnel stream and its loopback bridge.
pub const BRIDGE_BUFFER: usize = 64 * 1024;

/// A connected loopback TCP pair made inside this process: the listener lives only until our
/// own connection is accepted, and a connection from anyone else is dropped.
async fn loopback_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let ours = client.local_addr()?;
    for _ in 0..16 {
        let (server, peer) = listener.accept().await?;
        if peer == ours {
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            return Ok((client, server));
        }
    }
    Err(std::io::Error::other(
        "loopback pair: our own connection never arrived",
    ))
}

/// Gives `stream` (e.g. a site tunnel stream) a `TcpStream` face: returns one end of a loopback
/// pair and copies between the other end and `stream` (bounded buffers) until either closes.
pub async fn bridge<S>(stream: S) -> Result<TcpStream>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = loopback_pair()
        .await
        .map_err(|e| Error::Rtsp(format!("loopback bridge: {e}")))?;
    tokio::spawn(async move {
        let mut stream = stream;
        let mut theirs = theirs;
        let _ = tokio::io::copy_bidirectional_with_sizes(
            &mut theirs,
            &mut stream,
            BRIDGE_BUFFER,
            BRIDGE_BUFFER,
        )
        .await;
    });
    Ok(ours)
}

/// The URL with its host replaced by `addr`'s IP literal (port kept, or set to `addr`'s):
/// what a library that resolves names itself (retina) is given, so that it connects to the
/// address that was checked.
pub fn pin_url(url: &Url, addr: SocketAddr) -> Result<Url> {
    let mut pinned = url.clone();
    pinned
        .set_ip_host(addr.ip())
        .map_err(|()| Error::Rtsp(format!("{}: cannot pin the address", url.scheme())))?;
    if url.port().is_none() {
        // Explicit (rtsp has no default port the URL parser knows of); http's 80 is dropped.
        let _ = pinned.set_port(Some(addr.port()));
    }
    Ok(pinned)
}

/// For reqwest clients (ONVIF): a resolver that only yields addresses the policy allows.
/// reqwest does not resolve IP-literal URLs, so check those with [`check_url_literal`] before
/// each request.
#[derive(Clone, Debug)]
pub struct PolicyResolver {
    pub policy: Arc<AddressPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // One address, the checked one: the connection cannot fall back to a refused one.
            let addr = resolve(&host, 0, &policy)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(std::iter::once(addr));
            Ok(addrs)
        })
    }
}

/// Refuses a URL whose host is an IP literal the policy does not allow (names are checked by
/// the resolver when they are looked up).
pub fn check_url_literal(url: &Url, policy: &AddressPolicy) -> Result<()> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
        _ => return Ok(()),
    };
    choose(&ip.to_string(), [SocketAddr::new(ip, 0)], policy).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::netpolicy::Refusal;

    #[tokio::test]
    async fn refuses_before_connecting() {
        let p = AddressPolicy::default();
        for host in ["127.0.0.1", "169.254.169.254", "[::1]", "localhost"] {
            match resolve(host, 554, &p).await {
                Err(Error::AddressNotAllowed { refusal, .. }) => assert!(
                    matches!(refusal, Refusal::Loopback | Refusal::LinkLocal),
                    "{host}: {refusal}"
                ),
                other => panic!("{host}: {other:?}"),
            }
        }
        assert!(resolve("10.1.2.3", 554, &p).await.is_ok());
    }

    #[tokio::test]
    async fn the_reqwest_resolver_filters() {
        use reqwest::dns::Resolve as _;
        let r = PolicyResolver {
            policy: Arc::new(AddressPolicy::default()),
        };
        let refused = r.resolve("localhost".parse().unwrap()).await;
        let err = refused.err().expect("localhost refused").to_string();
        assert!(err.contains("is not allowed: loopback"), "{err}");
        // A name that resolves to an allowed address yields exactly that address.
        let open = PolicyResolver {
            policy: Arc::new(
                AddressPolicy::new(
                    &vigil_api::CameraNetworks {
                        allow: vec!["127.0.0.1/32".into()],
                        deny: vec![],
                    },
                    &Default::default(),
                )
                .unwrap(),
            ),
        };
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .map_err(|e| e.to_string())
            .unwrap()
            .collect();
        assert_eq!(addrs, vec!["127.0.0.1:0".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn picks_an_allowed_address_of_several() {
        let p = AddressPolicy::default();
        let a: Vec<SocketAddr> = vec![
            "127.0.0.1:554".parse().unwrap(),
            "10.0.0.9:554".parse().unwrap(),
        ];
        assert_eq!(
            choose("cam", a, &p).unwrap(),
            "10.0.0.9:554".parse().unwrap()
        );
    }

    #[test]
    fn pins_urls_to_the_checked_address() {
        let u = Url::parse("rtsp://cam.example/Streaming/101?x=1").unwrap();
        let p = pin_url(&u, "10.0.0.9:554".parse().unwrap()).unwrap();
        assert_eq!(p.as_str(), "rtsp://10.0.0.9:554/Streaming/101?x=1");
        let u = Url::parse("rtsp://cam.example:8554/live").unwrap();
        let p = pin_url(&u, "[fd00::9]:8554".parse().unwrap()).unwrap();
        assert_eq!(p.as_str(), "rtsp://[fd00::9]:8554/live");
    }

    #[tokio::test]
    async fn the_bridge_carries_both_ways() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut far, near) = tokio::io::duplex(1024);
        let mut tcp = bridge(near).await.unwrap();
        tcp.write_all(b"OPTIONS").await.unwrap();
        let mut got = [0u8; 7];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"OPTIONS");
        far.write_all(b"RTSP/1.0 200").await.unwrap();
        let mut got = [0u8; 12];
        tcp.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"RTSP/1.0 200");
        drop(far);
        let mut rest = vec![];
        assert_eq!(
            tcp.read_to_end(&mut rest).await.unwrap(),
            0,
            "closed with the tunnel"
        );
    }

    #[test]
    fn literal_urls_are_checked() {
        let p = AddressPolicy::default();
        assert!(
            check_url_literal(&Url::parse("http://169.254.169.254/latest").unwrap(), &p).is_err()
        );
        assert!(check_url_literal(&Url::parse("http://10.0.0.9/onvif").unwrap(), &p).is_ok());
        assert!(check_url_literal(&Url::parse("http://cam/onvif").unwrap(), &p).is_ok());
    }
}
