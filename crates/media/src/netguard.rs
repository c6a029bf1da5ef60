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

/// A camera's site: the link to the rendezvous service and the site's name.
#[derive(Clone, Debug)]
pub struct SiteRoute {
    pub link: Arc<vigil_site::SiteLink>,
    pub site: String,
}

/// How every connection made on a camera's behalf is made — live RTSP, ONVIF SOAP, Profile G
/// replay, playback URLs: dialled at an address the pool's policy allows, or, for a camera at a
/// remote site, opened through the site's tunnel (the gateway checks the address against the
/// site's camera networks). The one seam the replay client ([`Route::connect`]) and the ONVIF
/// client ([`SiteProxy`] for reqwest) go through.
#[derive(Clone, Debug)]
pub enum Route {
    Direct(Arc<AddressPolicy>),
    Site(SiteRoute),
}

impl From<Arc<AddressPolicy>> for Route {
    fn from(p: Arc<AddressPolicy>) -> Route {
        Route::Direct(p)
    }
}

impl Route {
    /// The camera's route: through `site` when it has one (then `link` is needed), else direct.
    pub fn for_camera(
        policy: Arc<AddressPolicy>,
        site: Option<&str>,
        link: Option<&Arc<vigil_site::SiteLink>>,
    ) -> Result<Route> {
        match (site, link) {
            (None, _) => Ok(Route::Direct(policy)),
            (Some(site), Some(link)) => Ok(Route::Site(SiteRoute {
                link: link.clone(),
                site: site.to_string(),
            })),
            (Some(site), None) => Err(Error::Rtsp(format!(
                "camera at site {}: no site link (rendezvous service) configured",
                peer_summary(site)
            ))),
        }
    }

    /// A connection to `host:port` (a `TcpStream`: a loopback bridge for a tunnel stream).
    pub async fn connect(&self, host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
        match self {
            Route::Direct(policy) => Ok(connect(host, port, policy, timeout).await?.0),
            Route::Site(r) => {
                let stream = via_site(&r.link, &r.site, host, port, timeout).await?;
                tracing::debug!(site = %r.site, path = %stream.path(), "opened through the site's tunnel");
                bridge(stream).await
            }
        }
    }

    /// Refuses an IP-literal URL the policy does not allow (direct only: through a site the
    /// gateway checks).
    pub fn check_url_literal(&self, url: &Url) -> Result<()> {
        match self {
            Route::Direct(policy) => check_url_literal(url, policy),
            Route::Site(_) => Ok(()),
        }
    }
}

/// reqwest cannot be handed a byte stream per connection, so a site camera's HTTP (ONVIF) goes
/// through a small HTTP proxy made in-process for it: bound to loopback, alive as long as this
/// value, and answering only requests carrying its own random credentials (reqwest is given
/// them with the proxy). Each proxied connection is one tunnel stream to the host and port the
/// request names: plain HTTP requests are forwarded in origin form with `Connection: close`
/// (one request per tunnel stream, so a pooled connection is never reused for another host),
/// HTTPS is a `CONNECT` tunnel (TLS end to end, verified by reqwest as usual).
#[derive(Debug)]
pub struct SiteProxy {
    proxy: reqwest::Proxy,
    task: tokio::task::JoinHandle<()>,
}

/// Longest request head the site proxy reads.
pub const PROXY_HEAD_LIMIT: usize = 16 * 1024;

impl SiteProxy {
    /// Starts the proxy (needs a Tokio runtime).
    pub fn start(route: SiteRoute, timeout: Duration) -> Result<SiteProxy> {
        use base64::Engine as _;
        let std_listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| Error::Rtsp(format!("site proxy: {e}")))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|e| Error::Rtsp(format!("site proxy: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Rtsp(format!("site proxy: {e}")))?;
        let mut secret = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
            .map_err(|_| Error::Rtsp("site proxy: no randomness".into()))?;
        let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("vigil:{password}"))
        );
        let proxy = reqwest::Proxy::all(format!("http://{addr}"))
            .map_err(|e| Error::Rtsp(format!("site proxy: {e}")))?
            .basic_auth("vigil", &password);
        let expected = Arc::new(expected);
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (route, expected) = (route.clone(), expected.clone());
                tokio::spawn(async move {
                    if let Err(e) = proxy_one(sock, &route, &expected, timeout).await {
                        tracing::debug!(site = %route.site, error = %e, "site proxy connection");
                    }
                });
            }
        });
        Ok(SiteProxy { proxy, task })
    }

    /// The proxy, with its credentials, for `reqwest::ClientBuilder::proxy`.
    pub fn proxy(&self) -> reqwest::Proxy {
        self.proxy.clone()
    }
}

impl Drop for SiteProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request the site proxy accepted: where to open the tunnel stream and what to send first.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyRequest {
    pub host: String,
    pub port: u16,
    /// `CONNECT`: answer 200 and splice; otherwise `head` goes to the camera first.
    pub connect: bool,
    pub head: Vec<u8>,
}

/// Why the site proxy refused a request (answered with the status).
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyRefusal {
    BadRequest,
    Unauthorized,
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses a proxy request head (through the blank line), checks its `Proxy-Authorization`
/// against `expected` (constant time), and makes the head to send on: origin form, the proxy
/// headers and any `Connection` header dropped, `Connection: close` added.
pub fn parse_proxy_request(
    head: &[u8],
    expected: &str,
) -> std::result::Result<ProxyRequest, ProxyRefusal> {
    let text = std::str::from_utf8(head).map_err(|_| ProxyRefusal::BadRequest)?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(ProxyRefusal::BadRequest)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProxyRefusal::BadRequest);
    };
    let mut authorized = false;
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(ProxyRefusal::BadRequest)?;
        let name_lc = name.trim().to_ascii_lowercase();
        match name_lc.as_str() {
            "proxy-authorization" => {
                authorized |= ct_eq(value.trim().as_bytes(), expected.as_bytes());
            }
            "proxy-connection" | "connection" | "keep-alive" => {}
            _ => headers.push(line),
        }
    }
    if !authorized {
        return Err(ProxyRefusal::Unauthorized);
    }
    if method == "CONNECT" {
        let (host, port) = target.rsplit_once(':').ok_or(ProxyRefusal::BadRequest)?;
        let port = port.parse().map_err(|_| ProxyRefusal::BadRequest)?;
        let host = host.trim_matches(['[', ']']).to_string();
        if host.is_empty() {
            return Err(ProxyRefusal::BadRequest);
        }
        return Ok(ProxyRequest {
            host,
            port,
            connect: true,
            head: Vec::new(),
        });
    }
    let url = Url::parse(target).map_err(|_| ProxyRefusal::BadRequest)?;
    if url.scheme() != "http" {
        return Err(ProxyRefusal::BadRequest);
    }
    let host = url_host(&url).ok_or(ProxyRefusal::BadRequest)?;
    let port = url.port().unwrap_or(80);
    let origin = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    let mut out = format!("{method} {origin} {version}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok(ProxyRequest {
        host,
        port,
        connect: false,
        head: out.into_bytes(),
    })
}

/// One proxied connection: read the head, check, open the tunnel stream, splice.
async fn proxy_one(
    mut sock: TcpStream,
    route: &SiteRoute,
    expected: &str,
    timeout: Duration,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = sock.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let end = tokio::time::timeout(timeout, async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok(i + 4);
            }
            if buf.len() > PROXY_HEAD_LIMIT {
                return Err(Error::Rtsp("site proxy: request head too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = sock
                .read(&mut chunk)
                .await
                .map_err(|e| Error::Rtsp(format!("site proxy: read: {e}")))?;
            if n == 0 {
                return Err(Error::Rtsp("site proxy: closed before a request".into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| Error::Rtsp("site proxy: no request in time".into()))??;
    let req = match parse_proxy_request(&buf[..end], expected) {
        Ok(r) => r,
        Err(refusal) => {
            let answer: &[u8] = match refusal {
                ProxyRefusal::Unauthorized => {
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"vigil\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                }
                ProxyRefusal::BadRequest => {
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                }
            };
            let _ = sock.write_all(answer).await;
            return Err(Error::Rtsp(format!("site proxy: refused ({refusal:?})")));
        }
    };
    let mut stream = match via_site(&route.link, &route.site, &req.host, req.port, timeout).await {
        Ok(s) => s,
        Err(e) => {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return Err(e);
        }
    };
    tracing::debug!(site = %route.site, path = %stream.path(), "HTTP through the site's tunnel");
    let io = |e: std::io::Error| Error::Rtsp(format!("site proxy: {e}"));
    if req.connect {
        sock.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .map_err(io)?;
    } else {
        stream.write_all(&req.head).await.map_err(io)?;
    }
    if buf.len() > end {
        stream.write_all(&buf[end..]).await.map_err(io)?;
    }
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut sock,
        &mut stream,
        BRIDGE_BUFFER,
        BRIDGE_BUFFER,
    )
    .await;
    Ok(())
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
    fn the_site_proxy_forwards_only_its_own_requests() {
        let auth = "Basic dmlnaWw6c2VjcmV0";
        let head = b"POST http://192.168.50.2:8555/onvif/device_service?x=1 HTTP/1.1\r\nHost: 192.168.50.2:8555\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n";
        let r = parse_proxy_request(head, auth).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.connect),
            ("192.168.50.2", 8555, false)
        );
        assert_eq!(
            String::from_utf8(r.head).unwrap(),
            "POST /onvif/device_service?x=1 HTTP/1.1\r\nHost: 192.168.50.2:8555\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
        );
        let r = parse_proxy_request(
            b"GET http://cam/x HTTP/1.1\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV0\r\n\r\n",
            auth,
        )
        .unwrap();
        assert_eq!((r.host.as_str(), r.port), ("cam", 80));
        let r = parse_proxy_request(
            b"CONNECT [fd00::9]:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV0\r\n\r\n",
            auth,
        )
        .unwrap();
        assert_eq!((r.host.as_str(), r.port, r.connect), ("fd00::9", 443, true));
        // Without the proxy's own credentials, or with others: refused.
        let no_auth = b"GET http://cam/x HTTP/1.1\r\nHost: cam\r\n\r\n";
        assert_eq!(
            parse_proxy_request(no_auth, auth),
            Err(ProxyRefusal::Unauthorized)
        );
        let wrong =
            b"GET http://cam/x HTTP/1.1\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV1\r\n\r\n";
        assert_eq!(
            parse_proxy_request(wrong, auth),
            Err(ProxyRefusal::Unauthorized)
        );
        for bad in [
            &b"GET /x HTTP/1.1\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV0\r\n\r\n"[..],
            b"GET ftp://cam/x HTTP/1.1\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV0\r\n\r\n",
            b"CONNECT cam HTTP/1.1\r\nProxy-Authorization: Basic dmlnaWw6c2VjcmV0\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert_eq!(
                parse_proxy_request(bad, auth),
                Err(ProxyRefusal::BadRequest)
            );
        }
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
