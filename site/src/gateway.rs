//! `vigil-gateway`: at the site, dials out only. Holds a control connection to the rendezvous
//! service; for each `Open` it dials the camera (only inside the site's camera networks, which
//! the rendezvous sends on every connect) and, raced, a data connection to the rendezvous (the
//! relay) and a LAN connection to the recorder when the recorder is on one of the gateway's own
//! networks (`crate::lan`); the LAN path wins when it opens within [`LAN_GRACE`] of the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tracing::{info, warn};
use vigil_api::netpolicy::{AddressPolicy, ClusterNetworks};

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::lan::{self, Path};
use crate::proto::{self, Control, GatewayLine, Hello, LanHello, LanOffer, Reply, Token};

type Conn = tokio_rustls::client::TlsStream<TcpStream>;

/// A stream on any path, as the gateway splices it with the camera.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

/// Connect (TCP and TLS) timeout towards the rendezvous service.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The control connection is dead when no ping came for this long (the service pings every 5 s).
pub const CONTROL_SILENCE: Duration = Duration::from_secs(12);
/// How long dialling a camera may take.
pub const CAMERA_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-direction buffer of a spliced stream.
pub const STREAM_BUFFER: usize = 64 * 1024;
/// How long the relay, once open, waits for a LAN path still being tried (a LAN answers in
/// milliseconds; a candidate that does not answer must not hold the stream up).
pub const LAN_GRACE: Duration = Duration::from_millis(300);
/// Connect (TCP and TLS) timeout for a LAN candidate.
pub const LAN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the relay, once open, waits for a direct (hole-punched) path still being tried:
/// the punch needs the recorder's answer through the rendezvous and a QUIC retransmission.
pub const DIRECT_GRACE: Duration = Duration::from_millis(1000);

/// A way a stream can go, best first: the relay over UDP is preferred to the relay over TCP
/// (no head-of-line blocking between the two legs, one handshake end to end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Lan,
    Direct,
    RelayUdp,
    RelayTcp,
}

impl Route {
    pub fn path(self) -> Path {
        match self {
            Route::Lan => Path::Lan,
            Route::Direct => Path::Direct,
            Route::RelayUdp | Route::RelayTcp => Path::Relay,
        }
    }
    pub fn transport(self) -> &'static str {
        match self {
            Route::Lan | Route::RelayTcp => "tcp",
            Route::Direct | Route::RelayUdp => "udp",
        }
    }
}

/// What the race between the paths does next, given what each has done so far
/// (`None`: still trying; `Some(ok)`: finished; a path not tried is `Some(false)`).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Wait,
    Take(Route),
    Fail,
}

/// The race's rule, best first (lan, direct, relay over UDP, relay over TCP): take a route that
/// opened when no better one is still trying; a better one still trying is waited for until the
/// grace after a worse one opened is over; fail when every route failed.
pub fn decide(
    lan: Option<bool>,
    direct: Option<bool>,
    relay_udp: Option<bool>,
    relay_tcp: Option<bool>,
    grace_over: bool,
) -> Decision {
    let states = [
        (Route::Lan, lan),
        (Route::Direct, direct),
        (Route::RelayUdp, relay_udp),
        (Route::RelayTcp, relay_tcp),
    ];
    let mut waiting = false;
    for (path, state) in states {
        match state {
            Some(true) if !waiting || grace_over => return Decision::Take(path),
            Some(true) => return Decision::Wait,
            None => waiting = true,
            Some(false) => {}
        }
    }
    if waiting {
        Decision::Wait
    } else {
        Decision::Fail
    }
}

#[derive(Clone)]
pub struct Gateway {
    pub rendezvous: String,
    pub server_name: ServerName<'static>,
    pub tls: Arc<rustls::ClientConfig>,
    pub namespace: String,
    pub site: String,
    pub token: Token,
}

impl Gateway {
    /// Runs forever: reconnects with jittered exponential backoff (0.25 s doubling to 4 s).
    pub async fn run(self) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
        let mut down_since: Option<Instant> = None;
        loop {
            let r = self.session(&mut backoff, &mut down_since).await;
            down_since.get_or_insert_with(Instant::now);
            let delay = backoff.next_delay();
            match r {
                Err(Error::Refused(reason)) => {
                    warn!(%reason, retry_in_ms = delay.as_millis() as u64, "the rendezvous service refused this gateway")
                }
                Err(e) => warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "tunnel down"),
                Ok(()) => warn!(retry_in_ms = delay.as_millis() as u64, "tunnel closed"),
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn session(&self, backoff: &mut Backoff, down_since: &mut Option<Instant>) -> Result<()> {
        let started = Instant::now();
        let mut conn = crate::tls::connect(
            &self.rendezvous,
            &self.server_name,
            &self.tls,
            CONNECT_TIMEOUT,
        )
        .await?;
        proto::send(
            &mut conn,
            &Hello::Gateway {
                namespace: self.namespace.clone(),
                site: self.site.clone(),
                token: self.token.clone(),
                lan: lan::local_networks()
                    .iter()
                    .map(|n| n.to_string())
                    .collect(),
            },
        )
        .await?;
        let reply = tokio::time::timeout(CONNECT_TIMEOUT, proto::recv::<Reply, _>(&mut conn))
            .await
            .map_err(|_| Error::Timeout("the rendezvous service's welcome"))??;
        let nets = match reply {
            Reply::Welcome { camera_networks } => camera_networks,
            Reply::Refused { reason } => return Err(Error::Refused(reason)),
            Reply::Open
            | Reply::Elsewhere { .. }
            | Reply::Punch { .. }
            | Reply::UdpRelay { .. } => {
                return Err(Error::Protocol("unexpected reply".into()));
            }
        };
        // The site's own LAN is what the gateway serves: only the cluster-range defaults of the
        // recorder's policy make no sense here, so no cluster networks are protected.
        let policy = Arc::new(
            AddressPolicy::new(&nets, &ClusterNetworks::default())
                .map_err(|e| Error::Config(format!("the site's cameraNetworks: {e}")))?,
        );
        backoff.reset();
        info!(
            connect_ms = started.elapsed().as_secs_f64() * 1e3,
            down_ms = down_since.take().map(|d| d.elapsed().as_millis() as u64),
            "tunnel up (relay)"
        );
        let (mut rd, mut wr) = tokio::io::split(conn);
        loop {
            let c = tokio::time::timeout(CONTROL_SILENCE, proto::recv::<Control, _>(&mut rd))
                .await
                .map_err(|_| Error::Timeout("waiting for the rendezvous service (no ping)"))??;
            match c {
                Control::Ping { seq } => proto::send(&mut wr, &GatewayLine::Pong { seq }).await?,
                Control::Open {
                    stream,
                    host,
                    port,
                    lan,
                    pairing,
                } => {
                    let me = self.clone();
                    let policy = policy.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.open(policy, stream, host, port, lan, pairing).await {
                            warn!(error = %e, "stream failed");
                        }
                    });
                }
            }
        }
    }

    /// One camera connection: dial the camera, the relay, the recorder on our LAN (when it is
    /// there) and the recorder through a punched hole (when it offers it) at once; keep the best
    /// path that opens; report; splice.
    async fn open(
        &self,
        policy: Arc<AddressPolicy>,
        stream: String,
        host: String,
        port: u16,
        offer: LanOffer,
        pairing: Option<String>,
    ) -> Result<()> {
        let started = Instant::now();
        let camera = tokio::spawn(async move { dial_camera(&policy, &host, port).await });
        let me = self.clone();
        let mut relay = tokio::spawn(async move { me.relay_data(stream).await });
        let targets = if offer.is_empty() {
            Vec::new()
        } else {
            lan::same_lan(&offer.lan, &lan::local_networks())
        };
        let tried_lan = !targets.is_empty();
        let mut lan_try = tokio::spawn(dial_lan(targets, offer.clone()));
        // The direct path: our reflexive address first (overlapping the relay's handshake).
        let rendezvous = self.rendezvous.clone();
        let tried_direct = offer.offers_direct();
        let mut stun = tokio::spawn(async move {
            if !tried_direct {
                return Err(Error::Refused("no direct offer".into()));
            }
            let sock = crate::direct::socket().await?;
            let (refl, mapping) = crate::direct::reflexive(&sock, &rendezvous).await?;
            if mapping == crate::direct::Mapping::Dependent {
                return Err(Error::Refused("the site's NAT is symmetric".into()));
            }
            Ok((sock, refl))
        });
        // The relay over UDP: register a socket with the stream's pairing, then QUIC through the
        // rendezvous service to the recorder (its certificate pinned, the secret presented).
        let tried_relay_udp = pairing.is_some() && offer.offers_relay_udp();
        let mut udp_try = {
            let rendezvous = self.rendezvous.clone();
            let cert = offer.lan_cert.clone().unwrap_or_default();
            let secret = offer.lan_secret.clone();
            tokio::spawn(async move {
                match (pairing, secret) {
                    (Some(p), Some(secret)) if tried_relay_udp => {
                        dial_relay_udp(rendezvous, p, cert, secret).await
                    }
                    _ => Err(Error::Refused("no relay over UDP offered".into())),
                }
            })
        };
        let mut udp_r: Option<Result<crate::direct::QuicStream>> = None;
        let mut why_not_udp: Option<String> = None;
        let mut stun_r: Option<Result<(tokio::net::UdpSocket, SocketAddr)>> = None;
        let mut stun_done = false;
        let mut why_not_direct: Option<String> = None;
        let mut direct_try: Option<tokio::task::JoinHandle<Result<crate::direct::QuicStream>>> =
            None;
        let mut direct_r: Option<Result<crate::direct::QuicStream>> = None;
        let (mut lan_r, mut relay_r): (Option<Result<Conn>>, Option<Result<Conn>>) = (None, None);
        let mut grace: Option<tokio::time::Instant> = None;
        fn join<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
            r.unwrap_or_else(|e| Err(Error::Protocol(format!("task: {e}"))))
        }
        let deadline = tokio::time::Instant::now() + OPEN_LIMIT;
        let (route, mut conn): (Route, Box<dyn Duplex>) = loop {
            // The punch: once our reflexive address is known and the relay connection is up,
            // tell the recorder (through the rendezvous) and connect to its reflexive address.
            if direct_try.is_none() && direct_r.is_none() {
                match (&stun_r, relay_r.as_mut()) {
                    (Some(Err(e)), _) => {
                        if tried_direct {
                            why_not_direct = Some(e.to_string());
                        }
                        direct_r = Some(Err(Error::Refused("no direct path".into())))
                    }
                    (_, Some(Err(_))) => {
                        direct_r = Some(Err(Error::Refused("no direct path".into())))
                    }
                    (Some(Ok(_)), Some(Ok(rc))) => {
                        let Some(Ok((sock, refl))) = stun_r.take() else {
                            unreachable!()
                        };
                        proto::send(rc, &GatewayLine::Punch { reflexive: refl }).await?;
                        let peer = offer.reflexive.expect("offers_direct");
                        let cert = offer.lan_cert.clone().unwrap_or_default();
                        let secret = offer.lan_secret.clone().expect("offers_direct");
                        direct_try = Some(tokio::spawn(dial_direct(sock, peer, cert, secret)));
                    }
                    _ => {}
                }
            }
            let direct_state = match (&direct_r, &direct_try) {
                (Some(r), _) => Some(r.is_ok()),
                (None, _) => None,
            };
            let grace_over = grace.is_some_and(|g| tokio::time::Instant::now() >= g);
            let (lan_state, udp_state, tcp_state) = (
                lan_r.as_ref().map(|r| r.is_ok()),
                udp_r.as_ref().map(|r| r.is_ok()),
                relay_r.as_ref().map(|r| r.is_ok()),
            );
            let d = decide(lan_state, direct_state, udp_state, tcp_state, grace_over);
            match d {
                Decision::Take(Route::Lan) => match lan_r.take() {
                    Some(Ok(c)) => break (Route::Lan, Box::new(c)),
                    _ => unreachable!("decide takes the LAN path only when it opened"),
                },
                Decision::Take(Route::Direct) => match direct_r.take() {
                    Some(Ok(c)) => break (Route::Direct, Box::new(c)),
                    _ => unreachable!("decide takes the direct path only when it opened"),
                },
                Decision::Take(Route::RelayUdp) => match udp_r.take() {
                    Some(Ok(c)) => break (Route::RelayUdp, Box::new(c)),
                    _ => unreachable!("decide takes the relay over UDP only when it opened"),
                },
                Decision::Take(Route::RelayTcp) => match relay_r.take() {
                    Some(Ok(c)) => break (Route::RelayTcp, Box::new(c)),
                    _ => unreachable!("decide takes the relay only when it opened"),
                },
                Decision::Fail => {
                    camera.abort();
                    return match relay_r.take() {
                        Some(Err(e)) => Err(e),
                        _ => Err(Error::Protocol("no path".into())),
                    };
                }
                Decision::Wait => {}
            }
            // A route opened while a better one is still trying: wait for it, a while.
            let opened = [lan_state, direct_state, udp_state, tcp_state].contains(&Some(true));
            if opened && grace.is_none() {
                let wait = if direct_state.is_none() || udp_state.is_none() {
                    DIRECT_GRACE
                } else {
                    LAN_GRACE
                };
                grace = Some(tokio::time::Instant::now() + wait);
            }
            tokio::select! {
                r = &mut relay, if relay_r.is_none() => relay_r = Some(join(r)),
                r = &mut udp_try, if udp_r.is_none() => {
                    let r = join(r);
                    if let Err(e) = &r && tried_relay_udp {
                        why_not_udp = Some(e.to_string());
                    }
                    udp_r = Some(r);
                }
                r = &mut lan_try, if lan_r.is_none() => lan_r = Some(join(r)),
                r = &mut stun, if !stun_done => {
                    stun_done = true;
                    stun_r = Some(join(r));
                }
                r = async { direct_try.as_mut().expect("guarded").await }, if direct_try.is_some() && direct_r.is_none() => {
                    direct_try = None;
                    let r = join(r);
                    if let Err(e) = &r {
                        why_not_direct = Some(e.to_string());
                    }
                    direct_r = Some(r);
                }
                _ = tokio::time::sleep_until(grace.unwrap_or(deadline).min(deadline)) => {
                    if tokio::time::Instant::now() >= deadline {
                        camera.abort();
                        return Err(Error::Timeout("opening a path to the recorder"));
                    }
                }
            }
        };
        let connect_ms = started.elapsed().as_secs_f64() * 1e3;
        let path = route.path();
        // The relay connection that lost tells the rendezvous where the stream went (for the
        // site's status, and to keep the UDP relay's pairing); the other losers are closed.
        lan_try.abort();
        udp_try.abort();
        stun.abort();
        if let Some(t) = direct_try {
            t.abort();
        }
        if route != Route::RelayTcp {
            let pending = relay_r.take();
            tokio::spawn(async move {
                let r = match pending {
                    Some(r) => r,
                    None => join(relay.await),
                };
                if let Ok(mut c) = r {
                    let _ = proto::send(
                        &mut c,
                        &GatewayLine::Elsewhere {
                            path: path.to_string(),
                            transport: (route == Route::RelayUdp).then(|| "udp".to_string()),
                        },
                    )
                    .await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut c).await;
                }
            });
        }
        let camera = join(camera.await);
        let mut camera = match camera {
            Ok(c) => c,
            Err(e) => {
                let reason = e.to_string();
                proto::send(&mut conn, &GatewayLine::Failed { reason }).await?;
                // Let the line arrive before the connection goes (closing a QUIC connection
                // drops what is still unsent): the recorder closes once it has read it.
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut conn).await;
                let mut b = [0u8; 1];
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::io::AsyncReadExt::read(&mut conn, &mut b),
                )
                .await;
                return Err(e);
            }
        };
        proto::send(&mut conn, &GatewayLine::Connected).await?;
        info!(%path, transport = route.transport(), tried_lan, tried_direct, tried_relay_udp, connect_ms, no_direct = why_not_direct.as_deref(), no_relay_udp = why_not_udp.as_deref(), "stream open");
        tokio::io::copy_bidirectional_with_sizes(
            &mut conn,
            &mut camera,
            STREAM_BUFFER,
            STREAM_BUFFER,
        )
        .await
        .map_err(|e| Error::io("relaying", e))?;
        Ok(())
    }

    /// The relay path: a data connection to the rendezvous service for `stream`.
    async fn relay_data(&self, stream: String) -> Result<Conn> {
        let mut data = crate::tls::connect(
            &self.rendezvous,
            &self.server_name,
            &self.tls,
            CONNECT_TIMEOUT,
        )
        .await?;
        proto::send(
            &mut data,
            &Hello::GatewayData {
                namespace: self.namespace.clone(),
                site: self.site.clone(),
                token: self.token.clone(),
                stream,
            },
        )
        .await?;
        Ok(data)
    }
}

/// The direct path: QUIC to the recorder's reflexive address from the socket whose reflexive
/// address we sent it (our Initials open our NAT; the recorder's punch opens its NAT), the
/// recorder's certificate pinned, then the secret on a new stream.
async fn dial_direct(
    sock: tokio::net::UdpSocket,
    peer: SocketAddr,
    cert: String,
    secret: Token,
) -> Result<crate::direct::QuicStream> {
    let sock = sock
        .into_std()
        .map_err(|e| Error::io("the direct path's socket", e))?;
    let ep = crate::direct::client_endpoint(sock, &cert)?;
    tokio::time::timeout(crate::direct::HANDSHAKE_TIMEOUT, async {
        let conn = ep
            .connect(peer, lan::LAN_SERVER_NAME)
            .map_err(|e| Error::Tls(format!("direct path to {peer}: {e}")))?
            .await
            .map_err(|e| Error::Tls(format!("direct path to {peer}: {e}")))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| Error::Protocol(format!("direct path: {e}")))?;
        let mut q = crate::direct::QuicStream {
            send,
            recv,
            conn,
            endpoint: ep.clone(),
        };
        proto::send(&mut q, &LanHello { secret }).await?;
        Ok(q)
    })
    .await
    .map_err(|_| Error::Timeout("the direct path's handshake"))?
}

/// The relay over UDP: a socket registered with the stream's pairing at the rendezvous
/// service's UDP port (answered: UDP gets through), then QUIC to that port, which the
/// rendezvous forwards to the recorder's registered socket; end to end as on the direct path.
async fn dial_relay_udp(
    rendezvous: String,
    pairing: String,
    cert: String,
    secret: Token,
) -> Result<crate::direct::QuicStream> {
    let id = crate::udprelay::parse_id(&pairing)
        .ok_or_else(|| Error::Protocol("malformed pairing".into()))?;
    let server = crate::direct::udp_server(&rendezvous).await?;
    let sock = crate::direct::socket().await?;
    crate::udprelay::register_gateway(&sock, server, &id).await?;
    dial_direct(sock, server, cert, secret).await
}

/// How long a stream's paths may take to open in all.
const OPEN_LIMIT: Duration = Duration::from_secs(10);

/// The LAN path: the recorder's candidates on our networks, all at once; the first that
/// completes TLS (the recorder's offered certificate pinned) and takes the secret wins.
async fn dial_lan(targets: Vec<SocketAddr>, offer: LanOffer) -> Result<Conn> {
    let (Some(cert), Some(secret)) = (offer.lan_cert, offer.lan_secret) else {
        return Err(Error::Refused("no LAN offer".into()));
    };
    if targets.is_empty() {
        return Err(Error::Refused(
            "the recorder is not on this site's LAN".into(),
        ));
    }
    let tls = lan::pinned_client(&cert)?;
    let mut set = tokio::task::JoinSet::new();
    for addr in targets {
        let tls = tls.clone();
        let secret = secret.clone();
        set.spawn(async move {
            tokio::time::timeout(LAN_TIMEOUT, async {
                let tcp = TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
                let _ = tcp.set_nodelay(true);
                let mut c = tokio_rustls::TlsConnector::from(tls)
                    .connect(lan::server_name(), tcp)
                    .await
                    .map_err(|e| Error::Tls(format!("LAN handshake with {addr}: {e}")))?;
                proto::send(&mut c, &LanHello { secret }).await?;
                Ok::<_, Error>(c)
            })
            .await
            .map_err(|_| Error::Timeout("connecting on the LAN"))?
        });
    }
    let mut last = Error::Refused("no LAN candidate".into());
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => last = e,
            Err(e) => last = Error::Protocol(format!("task: {e}")),
        }
    }
    Err(last)
}

/// Resolves `host` once, checks every address against the site's camera networks, and
/// connects to the first allowed one.
pub async fn dial_camera(policy: &AddressPolicy, host: &str, port: u16) -> Result<TcpStream> {
    let addr = resolve(policy, host, port).await?;
    let s = tokio::time::timeout(CAMERA_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::Timeout("connecting to the camera"))?
        .map_err(|e| Error::io(format!("connecting to {addr}"), e))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn resolve(policy: &AddressPolicy, host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(CAMERA_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| Error::Timeout("name lookup"))?
            .map_err(|e| Error::io("name lookup", e))?
            .collect(),
    };
    choose(policy, addrs)
}

/// The first address the policy allows; the first refusal otherwise.
pub fn choose(
    policy: &AddressPolicy,
    addrs: impl IntoIterator<Item = SocketAddr>,
) -> Result<SocketAddr> {
    let mut refused = None;
    for a in addrs {
        match policy.check(a.ip()) {
            Ok(()) => return Ok(a),
            Err(refusal) => {
                refused.get_or_insert(Error::AddressNotAllowed {
                    addr: a.ip(),
                    refusal,
                });
            }
        }
    }
    Err(refused.unwrap_or_else(|| Error::Refused("the name resolves to no address".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_api::CameraNetworks;

    #[test]
    fn the_race_prefers_the_best_path_and_waits_only_the_grace_for_it() {
        use Decision::*;
        let (y, n) = (Some(true), Some(false));
        // The LAN path wins as soon as it opens, whatever the others did.
        for direct in [None, y, n] {
            for udp in [None, y, n] {
                for tcp in [None, y, n] {
                    assert_eq!(decide(y, direct, udp, tcp, false), Take(Route::Lan));
                }
            }
        }
        // The direct path wins when the LAN path failed or was not tried.
        assert_eq!(decide(n, y, None, None, false), Take(Route::Direct));
        assert_eq!(decide(n, y, y, y, false), Take(Route::Direct));
        // The relay open, a better path still trying: wait for the grace, then the relay.
        assert_eq!(decide(None, n, n, y, false), Wait);
        assert_eq!(decide(n, None, n, y, false), Wait);
        assert_eq!(decide(n, None, n, y, true), Take(Route::RelayTcp));
        assert_eq!(decide(None, None, n, y, true), Take(Route::RelayTcp));
        // The direct path open, the LAN still trying: the same grace.
        assert_eq!(decide(None, y, n, n, false), Wait);
        assert_eq!(decide(None, y, n, n, true), Take(Route::Direct));
        // The relay over UDP is preferred to the relay over TCP, waited for within the grace.
        assert_eq!(decide(n, n, y, y, false), Take(Route::RelayUdp));
        assert_eq!(decide(n, n, None, y, false), Wait);
        assert_eq!(decide(n, n, None, y, true), Take(Route::RelayTcp));
        assert_eq!(decide(n, None, y, None, false), Wait);
        assert_eq!(decide(n, None, y, None, true), Take(Route::RelayUdp));
        // UDP blocked (the relay over UDP failed): the relay over TCP at once.
        assert_eq!(decide(n, n, n, y, false), Take(Route::RelayTcp));
        assert_eq!(Route::RelayUdp.path(), Path::Relay);
        assert_eq!(Route::RelayTcp.path(), Path::Relay);
        // Nothing better tried: the relay at once.
        assert_eq!(decide(n, n, n, None, true), Wait);
        assert_eq!(decide(None, None, None, None, true), Wait);
        assert_eq!(decide(n, n, n, n, false), Fail);
    }

    #[tokio::test]
    async fn dials_only_inside_the_site_networks() {
        let p = AddressPolicy::new(
            &CameraNetworks {
                allow: vec!["192.168.50.0/24".into()],
                deny: vec!["192.168.50.1/32".into()],
            },
            &ClusterNetworks::default(),
        )
        .unwrap();
        assert!(choose(&p, ["192.168.50.2:554".parse().unwrap()]).is_ok());
        for refused in [
            "192.168.50.1:554",
            "192.168.51.2:554",
            "10.0.0.1:22",
            "127.0.0.1:554",
        ] {
            assert!(
                matches!(
                    choose(&p, [refused.parse().unwrap()]),
                    Err(Error::AddressNotAllowed { .. })
                ),
                "{refused}"
            );
        }
        // A name is resolved and checked too: localhost is loopback, not in the site's networks.
        assert!(matches!(
            dial_camera(&p, "localhost", 554).await,
            Err(Error::AddressNotAllowed { .. })
        ));
    }
}
