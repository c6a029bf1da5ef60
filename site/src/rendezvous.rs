//! The rendezvous and relay service (file-configured in this slice; see `docs/sites.md`).
//!
//! Gateways hold one control connection each; a recorder that wants a camera at a site opens a
//! connection, names the site and the camera's host and port; the service asks the site's
//! gateway (over its control connection) to open a data connection for that stream, and splices
//! the two. It relays only between a registered site and recorders whose token is for the
//! site's namespace: never an open relay.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};
use vigil_api::CameraNetworks;

use crate::error::{Error, Result};
use crate::lan::Path;
use crate::metrics::{Metrics, Refusal};
use crate::proto::{self, Control, GatewayLine, Hello, LanOffer, Reply, Token};

/// How long a peer may take for the TLS handshake and its `Hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the gateway is pinged (and its token re-checked).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A gateway silent for this long is dropped.
pub const GATEWAY_SILENCE: Duration = Duration::from_secs(15);
/// How long a recorder waits for the gateway to open the camera.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-direction buffer of a relayed stream.
pub const RELAY_BUFFER: usize = 64 * 1024;

/// The file the service reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// `address:port` to listen on (TCP, TLS).
    pub listen: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub sites: Vec<SiteEntry>,
    #[serde(default)]
    pub recorders: Vec<RecorderEntry>,
}

/// A registered site: its gateway's token (read from the file at every check, so replacing the
/// file revokes the old token) and the networks its gateway may dial.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SiteEntry {
    pub namespace: String,
    pub name: String,
    pub token_file: PathBuf,
    pub camera_networks: CameraNetworks,
    /// The relay's bandwidth limit for the site, kbit/s each way, shared by all its streams
    /// (the `Site`'s `maxRelayKbps`). Unset: unlimited.
    #[serde(default)]
    pub max_relay_kbps: Option<u32>,
}

/// A token bucket in bytes, allowed to go into debt: a chunk is always sent whole, after the
/// wait [`Bucket::take`] returns, so the rate holds over time whatever the chunk sizes.
#[derive(Debug)]
pub struct Bucket {
    kbps: u32,
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// `kbps` kbit/s; bursts of up to a quarter second's worth (at least 16 KiB).
    pub fn new(kbps: u32, now: Instant) -> Self {
        let rate = f64::from(kbps.max(1)) * 1000.0 / 8.0;
        let burst = (rate / 4.0).max(16.0 * 1024.0);
        Bucket {
            kbps,
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` bytes at `now` if the bucket holds them (never into debt): the relay over UDP
    /// drops a datagram the limit does not allow (QUIC's congestion control slows down).
    pub fn try_take(&mut self, n: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }

    /// Takes `n` bytes at `now`; returns how long to wait before sending them.
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

type SharedBucket = Arc<Mutex<Bucket>>;

/// Read size of a rate-limited relay (smaller chunks, smoother pacing).
const LIMITED_CHUNK: usize = 16 * 1024;

/// Copies `r` to `w`, each chunk paid for in `bucket` first (when the site is limited) and
/// counted by `count` as it goes (so a stream that runs for hours shows in the site's bytes, and
/// one that ends in an error is counted too); half-closes `w` at the end.
async fn copy_counted<R, W>(
    mut r: R,
    mut w: W,
    bucket: Option<SharedBucket>,
    count: impl Fn(u64),
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncReadExt;
    let chunk = if bucket.is_some() {
        LIMITED_CHUNK
    } else {
        RELAY_BUFFER
    };
    let mut buf = vec![0u8; chunk];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(());
        }
        if let Some(bucket) = &bucket {
            let wait = bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(n, Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        w.write_all(&buf[..n]).await?;
        count(n as u64);
    }
}

/// Recorders allowed for the sites of one namespace, by the token they present.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecorderEntry {
    pub namespace: String,
    pub token_file: PathBuf,
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let cfg: Config = serde_yaml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        for s in &cfg.sites {
            if s.camera_networks.allow.is_empty() {
                return Err(Error::Config(format!(
                    "site {}/{}: cameraNetworks.allow is empty (the gateway would dial nothing)",
                    s.namespace, s.name
                )));
            }
        }
        Ok(cfg)
    }

    /// The site's camera networks when `token` is its current token.
    pub fn authenticate_site(
        &self,
        namespace: &str,
        name: &str,
        token: &Token,
    ) -> Result<&CameraNetworks> {
        let entry = self
            .sites
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
            .ok_or_else(|| Error::Refused(format!("unknown site {namespace}/{name}")))?;
        match Token::from_file(&entry.token_file) {
            Ok(t) if t.matches(token) => Ok(&entry.camera_networks),
            Ok(_) => Err(Error::Refused(format!(
                "site {namespace}/{name}: token not valid (revoked or wrong)"
            ))),
            Err(e) => {
                warn!(site = %format!("{namespace}/{name}"), error = %e, "site token unreadable; refusing");
                Err(Error::Refused(format!(
                    "site {namespace}/{name}: no valid token"
                )))
            }
        }
    }

    /// Whether `token` is a recorder token for `namespace`.
    pub fn authenticate_recorder(&self, namespace: &str, token: &Token) -> Result<()> {
        let ok = self
            .recorders
            .iter()
            .filter(|r| r.namespace == namespace)
            .any(|r| Token::from_file(&r.token_file).is_ok_and(|t| t.matches(token)));
        if ok {
            Ok(())
        } else {
            Err(Error::Refused(format!(
                "recorder not allowed for namespace {namespace}"
            )))
        }
    }
}

/// Who may connect: sites (by namespace, name and token) and recorders (by namespace and
/// token). File mode ([`Config`]) or Kubernetes mode (`crate::kubernetes::KubeRegistry`: `Site`
/// resources and their Secrets, watched).
pub trait Registry: Send + Sync + 'static {
    /// The site's camera networks when `token` is its current token.
    fn authenticate_site(
        &self,
        namespace: &str,
        name: &str,
        token: &Token,
    ) -> Result<CameraNetworks>;
    /// Whether `token` is a recorder token for `namespace`.
    fn authenticate_recorder(&self, namespace: &str, token: &Token) -> Result<()>;
    /// The site's relay bandwidth limit, kbit/s each way.
    fn max_relay_kbps(&self, namespace: &str, name: &str) -> Option<u32>;
}

impl Registry for Config {
    fn authenticate_site(
        &self,
        namespace: &str,
        name: &str,
        token: &Token,
    ) -> Result<CameraNetworks> {
        Config::authenticate_site(self, namespace, name, token).cloned()
    }
    fn authenticate_recorder(&self, namespace: &str, token: &Token) -> Result<()> {
        Config::authenticate_recorder(self, namespace, token)
    }
    fn max_relay_kbps(&self, namespace: &str, name: &str) -> Option<u32> {
        self.sites
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)?
            .max_relay_kbps
    }
}

type SiteKey = (String, String);
type Conn = TlsStream<TcpStream>;

struct GatewayHandle {
    tx: mpsc::Sender<Control>,
    generation: u64,
}

#[derive(Default)]
struct State {
    gateways: HashMap<SiteKey, GatewayHandle>,
    pending: HashMap<String, (SiteKey, oneshot::Sender<Conn>)>,
    next_generation: u64,
    sites: HashMap<SiteKey, SiteStatus>,
    /// Per limited site: the buckets towards the site and from it.
    buckets: HashMap<SiteKey, (SharedBucket, SharedBucket)>,
}

/// What the service knows of a site, for its `Site` status and logs: whether its gateway is
/// connected, its LAN networks, the path its latest stream took and how many took each path,
/// the control connection's round-trip time, bytes relayed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteStatus {
    pub connected: bool,
    pub lan: Vec<String>,
    pub path: Option<Path>,
    pub streams_lan: u64,
    pub streams_direct: u64,
    pub streams_relay: u64,
    pub rtt_ms: Option<f64>,
    pub bytes_to_site: u64,
    pub bytes_from_site: u64,
    /// When the gateway was last heard from (registration or a keepalive answer).
    pub last_seen: Option<std::time::SystemTime>,
}

impl SiteStatus {
    /// Counts a stream opened on `path`.
    pub fn opened(&mut self, path: Path) {
        self.path = Some(path);
        match path {
            Path::Lan => self.streams_lan += 1,
            Path::Direct => self.streams_direct += 1,
            Path::Relay => self.streams_relay += 1,
        }
    }
}

/// What the relay over UDP keeps per pairing: the site, its buckets (to, from) when limited,
/// when the stream opened.
#[derive(Debug)]
pub struct UdpTag {
    site: SiteKey,
    buckets: Option<(SharedBucket, SharedBucket)>,
    started: Instant,
}

/// The running service.
pub struct Rendezvous {
    registry: Arc<dyn Registry>,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    stream_rate: crate::ratelimit::SiteRate,
    /// The relay over UDP (`crate::udprelay`); its pairings.
    udp: Mutex<crate::udprelay::Table<UdpTag>>,
    /// Whether the UDP relay port is bound (otherwise no pairing is offered).
    udp_up: std::sync::atomic::AtomicBool,
}

impl Rendezvous {
    /// File mode: sites and recorder tokens from `cfg`.
    pub fn new(cfg: Config) -> Result<Arc<Self>> {
        let (cert, key) = (cfg.cert_file.clone(), cfg.key_file.clone());
        Self::with_registry(&cert, &key, Arc::new(cfg))
    }

    /// Any registry (Kubernetes mode: `crate::kubernetes::KubeRegistry`).
    pub fn with_registry(
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
        registry: Arc<dyn Registry>,
    ) -> Result<Arc<Self>> {
        let tls = crate::tls::server_config(cert_file, key_file)?;
        Ok(Arc::new(Rendezvous {
            registry,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            state: Mutex::new(State::default()),
            metrics: Arc::new(Metrics::new()),
            stream_rate: Default::default(),
            udp: Mutex::new(crate::udprelay::Table::new(crate::udprelay::MAX_PAIRINGS)),
            udp_up: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Limits the streams recorders open to each site, per minute (`None`: unlimited; see
    /// `crate::ratelimit`).
    pub fn set_site_streams_per_minute(&self, per_minute: Option<u32>) {
        self.stream_rate.set_per_minute(per_minute);
    }

    /// The service's metrics (`crate::metrics`), to serve on `/metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of a site (`None`: its gateway never connected since the service started).
    pub fn site_status(&self, namespace: &str, name: &str) -> Option<SiteStatus> {
        self.state()
            .sites
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The site's buckets (to, from) when it has a relay bandwidth limit.
    fn buckets(&self, key: &SiteKey) -> Option<(SharedBucket, SharedBucket)> {
        let kbps = self.registry.max_relay_kbps(&key.0, &key.1)?;
        let mut st = self.state();
        // A changed limit (the `Site` edited) takes effect with new buckets.
        if st
            .buckets
            .get(&key.clone())
            .is_some_and(|(b, _)| b.lock().unwrap_or_else(|p| p.into_inner()).kbps != kbps)
        {
            st.buckets.remove(key);
        }
        let b = st.buckets.entry(key.clone()).or_insert_with(|| {
            let now = Instant::now();
            (
                Arc::new(Mutex::new(Bucket::new(kbps, now))),
                Arc::new(Mutex::new(Bucket::new(kbps, now))),
            )
        });
        Some(b.clone())
    }

    fn update_site(&self, key: &SiteKey, f: impl FnOnce(&mut SiteStatus)) {
        f(self.state().sites.entry(key.clone()).or_default())
    }

    fn udp(&self) -> std::sync::MutexGuard<'_, crate::udprelay::Table<UdpTag>> {
        self.udp.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many pairings the relay over UDP holds (bounded; idle ones expire).
    pub fn udp_pairings(&self) -> usize {
        self.udp().len()
    }

    /// The relay over UDP and the reflexive-address probes on the first UDP port, forever:
    /// datagrams from a registered side are forwarded to the other side of its pairing (the
    /// site's bandwidth limit applies, bytes are counted in the site's status every second);
    /// registrations are recorded (and answered when asked); probes are answered.
    async fn serve_udp(self: Arc<Self>, sock: tokio::net::UdpSocket) {
        use crate::udprelay::{self, Route, Side};
        self.udp_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut buf = vec![0u8; 65536];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, from)) = r else { continue };
                    let now = Instant::now();
                    let route = self.udp().route(from, &buf[..n], now, |tag, side, len| match &tag.buckets {
                        None => true,
                        Some((to_site, from_site)) => {
                            let b = if side == Side::Recorder { to_site } else { from_site };
                            b.lock().unwrap_or_else(|p| p.into_inner()).try_take(len, now)
                        }
                    });
                    match route {
                        Route::To(to) => {
                            let _ = sock.send_to(&buf[..n], to).await;
                            continue;
                        }
                        Route::Drop => continue,
                        Route::Unknown => {}
                    }
                    if let Some((id, side, want_ack)) = udprelay::parse_registration(&buf[..n]) {
                        let held = self.udp().register(&id, side, from, now);
                        if let Some(held) = held {
                            if want_ack {
                                let _ = sock.send_to(&udprelay::ack(&id, side), from).await;
                            }
                            for d in held {
                                let _ = sock.send_to(&d, from).await;
                            }
                        }
                    } else if let Some(a) = crate::direct::answer(&buf[..n], from) {
                        let _ = sock.send_to(&a, from).await;
                    }
                }
                _ = tick.tick() => self.flush_udp(),
            }
        }
    }

    /// Hands the UDP relay's byte counts to the sites' status; expires idle pairings.
    fn flush_udp(&self) {
        let (counts, gone) = {
            let mut t = self.udp();
            let counts: Vec<(SiteKey, u64, u64)> = t
                .take_counts()
                .into_iter()
                .map(|(tag, r, g)| (tag.site.clone(), r, g))
                .collect();
            (counts, t.expire(Instant::now()))
        };
        for (key, to_site, from_site) in counts {
            let (to_count, from_count) = self.metrics.relay_counters(&key.0, &key.1);
            to_count.inc_by(to_site);
            from_count.inc_by(from_site);
            self.update_site(&key, |s| {
                s.bytes_to_site += to_site;
                s.bytes_from_site += from_site;
            });
        }
        for (_, p) in gone {
            let site = format!("{}/{}", p.tag.site.0, p.tag.site.1);
            if p.complete() {
                info!(%site, transport = "udp", bytes_to_site = p.bytes[0], bytes_from_site = p.bytes[1], dropped = p.dropped, secs = p.tag.started.elapsed().as_secs(), "stream ended (idle)");
            } else {
                debug!(%site, "UDP relay pairing never completed; expired");
            }
        }
    }

    /// Accepts connections until the listener fails. The UDP ports of the same number and the
    /// next one answer reflexive-address probes (the direct path, `crate::direct`).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<()> {
        // The UDP port of the same number, and the next one (with two, each side can tell
        // whether its NAT is symmetric and skip a punch that cannot work).
        // The first also carries the relay over UDP.
        if let Ok(a) = listener.local_addr() {
            for (i, addr) in [Some(a), crate::direct::second_port(a)]
                .into_iter()
                .enumerate()
            {
                let Some(addr) = addr else { continue };
                match tokio::net::UdpSocket::bind(addr).await {
                    Ok(u) if i == 0 => {
                        crate::udprelay::grow_buffers(&u);
                        info!(udp = %addr, "relaying over UDP and answering reflexive-address probes");
                        tokio::spawn(self.clone().serve_udp(u));
                    }
                    Ok(u) => {
                        info!(udp = %addr, "answering reflexive-address probes");
                        tokio::spawn(crate::direct::serve_probes(u));
                    }
                    Err(e) => warn!(udp = %addr, error = %e, "cannot answer probes here"),
                }
            }
        }
        loop {
            let (tcp, peer) = listener
                .accept()
                .await
                .map_err(|e| Error::io("accepting", e))?;
            let _ = tcp.set_nodelay(true);
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.handle(tcp).await {
                    debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    }

    async fn handle(self: Arc<Self>, tcp: TcpStream) -> Result<()> {
        let (mut conn, hello) = tokio::time::timeout(HELLO_TIMEOUT, async {
            let mut conn = self
                .acceptor
                .accept(tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            let hello: Hello = proto::recv(&mut conn).await?;
            Ok::<_, Error>((conn, hello))
        })
        .await
        .map_err(|_| Error::Timeout("handshake"))
        .and_then(|r| r)
        .inspect_err(|_| self.metrics.refused(Refusal::Handshake))?;
        match hello {
            Hello::Gateway {
                namespace,
                site,
                token,
                lan,
            } => {
                let nets = match self.registry.authenticate_site(&namespace, &site, &token) {
                    Ok(n) => n,
                    Err(e) => {
                        self.metrics.refused(Refusal::SiteAuth);
                        return refuse(&mut conn, e).await;
                    }
                };
                proto::send(
                    &mut conn,
                    &Reply::Welcome {
                        camera_networks: nets,
                    },
                )
                .await?;
                let key = (namespace, site);
                info!(site = %format!("{}/{}", key.0, key.1), lan = ?lan, "gateway registered");
                self.update_site(&key, |s| {
                    s.lan = lan;
                    s.last_seen = Some(std::time::SystemTime::now());
                });
                self.control(conn, key, token).await
            }
            Hello::GatewayData {
                namespace,
                site,
                token,
                stream,
            } => {
                if let Err(e) = self.registry.authenticate_site(&namespace, &site, &token) {
                    self.metrics.refused(Refusal::SiteAuth);
                    return refuse(&mut conn, e).await;
                }
                let key = (namespace, site);
                let waiting = {
                    let mut st = self.state();
                    match st.pending.remove(&stream) {
                        Some((k, tx)) if k == key => Some(tx),
                        Some(other) => {
                            st.pending.insert(stream, other);
                            None
                        }
                        None => None,
                    }
                };
                match waiting {
                    Some(tx) => {
                        let _ = tx.send(conn);
                        Ok(())
                    }
                    None => {
                        self.metrics.refused(Refusal::NoSuchStream);
                        refuse(&mut conn, Error::Refused("no such stream".into())).await
                    }
                }
            }
            Hello::Recorder {
                namespace,
                token,
                site,
                host,
                port,
                lan,
            } => {
                if let Err(e) = self.registry.authenticate_recorder(&namespace, &token) {
                    warn!(%namespace, %site, "recorder refused: token not valid for the namespace");
                    self.metrics.refused(Refusal::RecorderAuth);
                    return refuse(&mut conn, e).await;
                }
                if !self.stream_rate.allow(&namespace, &site, Instant::now()) {
                    warn!(%namespace, %site, "stream refused: the site's stream-open rate limit");
                    self.metrics.refused(Refusal::RateLimited);
                    let e = Error::Refused(format!(
                        "site {namespace}/{site}: too many streams opened, retry later"
                    ));
                    return refuse(&mut conn, e).await;
                }
                self.relay(conn, (namespace, site), host, port, lan).await
            }
        }
    }

    /// A gateway's control connection: forwards `Open`s, pings, drops the gateway when it goes
    /// silent or its token stops being valid.
    async fn control(self: &Arc<Self>, conn: Conn, key: SiteKey, token: Token) -> Result<()> {
        let (tx, mut rx) = mpsc::channel::<Control>(64);
        let generation = {
            let mut st = self.state();
            st.next_generation += 1;
            let generation = st.next_generation;
            // A reconnecting gateway replaces its old connection (whose loop then ends); the
            // streams asked of the old one will never come, so their recorders are told now.
            st.gateways
                .insert(key.clone(), GatewayHandle { tx, generation });
            st.pending.retain(|_, (k, _)| *k != key);
            generation
        };
        let site = format!("{}/{}", key.0, key.1);
        info!(%site, "gateway connected");
        self.update_site(&key, |s| s.connected = true);
        self.metrics.gateway_connected(&key.0, &key.1);
        let (mut rd, mut wr) = tokio::io::split(conn);
        let (line_tx, mut lines) = mpsc::channel::<GatewayLine>(8);
        let reader = tokio::spawn(async move {
            while let Ok(l) = proto::recv::<GatewayLine, _>(&mut rd).await {
                if line_tx.send(l).await.is_err() {
                    break;
                }
            }
        });
        let mut tick = tokio::time::interval(PING_INTERVAL);
        let mut last_heard = Instant::now();
        let mut seq = 0u64;
        let mut sent_at = Instant::now();
        let why = loop {
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => {
                        if let Err(e) = proto::send(&mut wr, &c).await { break e.to_string(); }
                    }
                    None => break "replaced by a newer connection".to_string(),
                },
                l = lines.recv() => match l {
                    Some(GatewayLine::Pong { seq: s }) => {
                        last_heard = Instant::now();
                        let rtt_ms = (s == seq).then(|| sent_at.elapsed().as_secs_f64() * 1e3);
                        debug!(%site, rtt_ms, "pong");
                        self.update_site(&key, |st| {
                            st.last_seen = Some(std::time::SystemTime::now());
                            if rtt_ms.is_some() {
                                st.rtt_ms = rtt_ms;
                            }
                        });
                    }
                    Some(_) => break "unexpected message".to_string(),
                    None => break "connection closed".to_string(),
                },
                _ = tick.tick() => {
                    if last_heard.elapsed() > GATEWAY_SILENCE {
                        break "silent".to_string();
                    }
                    if self.registry.authenticate_site(&key.0, &key.1, &token).is_err() {
                        break "token revoked".to_string();
                    }
                    seq += 1;
                    sent_at = Instant::now();
                    if let Err(e) = proto::send(&mut wr, &Control::Ping { seq }).await { break e.to_string(); }
                }
            }
        };
        reader.abort();
        let _ = wr.shutdown().await;
        let mut st = self.state();
        let current = st
            .gateways
            .get(&key)
            .is_some_and(|g| g.generation == generation);
        self.metrics
            .gateway_disconnected(&key.0, &key.1, &why, current);
        if current {
            st.gateways.remove(&key);
            st.pending.retain(|_, (k, _)| *k != key);
            if let Some(s) = st.sites.get_mut(&key) {
                s.connected = false;
            }
        }
        info!(%site, reason = %why, "gateway disconnected");
        Ok(())
    }

    /// A recorder's stream to a camera at a site, through the site's gateway.
    async fn relay(
        self: &Arc<Self>,
        mut rec: Conn,
        key: SiteKey,
        host: String,
        port: u16,
        lan: LanOffer,
    ) -> Result<()> {
        let site = format!("{}/{}", key.0, key.1);
        let started = Instant::now();
        let stream = crate::lan::random_id()?;
        let (tx, rx) = oneshot::channel();
        let gw = {
            let mut st = self.state();
            match st.gateways.get(&key) {
                Some(g) => {
                    let g = g.tx.clone();
                    st.pending.insert(stream.clone(), (key.clone(), tx));
                    Some(g)
                }
                None => None,
            }
        };
        let Some(gw) = gw else {
            self.metrics.refused(Refusal::NotConnected);
            return refuse(
                &mut rec,
                Error::Refused(format!("site {site} is not connected")),
            )
            .await;
        };
        // The relay over UDP: a pairing for this stream, when the recorder asks (its socket
        // reached our UDP port) and the table has room; removed unless the stream takes it.
        let pairing =
            if lan.offers_relay_udp() && self.udp_up.load(std::sync::atomic::Ordering::Relaxed) {
                let id = crate::udprelay::new_id()?;
                let tag = UdpTag {
                    site: key.clone(),
                    buckets: self.buckets(&key),
                    started,
                };
                self.udp()
                    .insert(id, tag, Instant::now())
                    .then_some(PairingGuard {
                        rv: self,
                        id,
                        keep: false,
                    })
            } else {
                None
            };
        if let Some(p) = &pairing {
            proto::send(
                &mut rec,
                &Reply::UdpRelay {
                    pairing: crate::udprelay::id_hex(&p.id),
                },
            )
            .await?;
        }
        let open = Control::Open {
            stream: stream.clone(),
            host,
            port,
            lan,
            pairing: pairing.as_ref().map(|p| crate::udprelay::id_hex(&p.id)),
        };
        let got = match gw.try_send(open) {
            Ok(()) => tokio::time::timeout(OPEN_TIMEOUT, rx)
                .await
                .ok()
                .and_then(|r| r.ok()),
            Err(_) => None,
        };
        let Some(mut gwc) = got else {
            self.state().pending.remove(&stream);
            self.metrics.refused(Refusal::OpenFailed);
            return refuse(
                &mut rec,
                Error::Refused(format!("site {site}: the gateway did not open the stream")),
            )
            .await;
        };
        // The gateway's final line, after any `Punch` (forwarded to the recorder).
        let answer = tokio::time::timeout(OPEN_TIMEOUT, async {
            loop {
                match proto::recv::<GatewayLine, _>(&mut gwc).await? {
                    GatewayLine::Punch { reflexive } => {
                        debug!(%site, %reflexive, "forwarding the gateway's reflexive address");
                        proto::send(&mut rec, &Reply::Punch { reflexive }).await?;
                    }
                    other => return Ok::<_, Error>(other),
                }
            }
        })
        .await
        .map_err(|_| Error::Timeout("the gateway's answer"))??;
        match answer {
            GatewayLine::Connected => proto::send(&mut rec, &Reply::Open).await?,
            GatewayLine::Failed { reason } => {
                self.metrics.refused(Refusal::OpenFailed);
                return refuse(&mut rec, Error::Refused(format!("site {site}: {reason}"))).await;
            }
            GatewayLine::Elsewhere { path, transport } => {
                let p = Path::parse(&path)
                    .ok_or_else(|| Error::Protocol("unknown path from the gateway".into()))?;
                let open_ms = started.elapsed().as_secs_f64() * 1e3;
                if p == Path::Relay && transport.as_deref() == Some("udp") {
                    // The stream runs on the relay over UDP: the pairing stays (it expires when
                    // idle), its bytes are counted as they are forwarded.
                    let Some(guard) = pairing else {
                        return Err(Error::Protocol(
                            "the relay over UDP without a pairing".into(),
                        ));
                    };
                    guard.keep();
                    info!(%site, path = %p, transport = "udp", open_ms, "relaying a stream");
                } else {
                    info!(%site, path = %p, open_ms, "stream open on another path");
                }
                self.update_site(&key, |s| s.opened(p));
                self.metrics.stream_opened(&key.0, &key.1, p);
                proto::send(&mut rec, &Reply::Elsewhere { path }).await?;
                let _ = rec.shutdown().await;
                return Ok(());
            }
            GatewayLine::Pong { .. } | GatewayLine::Punch { .. } => {
                return Err(Error::Protocol("unexpected line".into()));
            }
        }
        self.update_site(&key, |s| s.opened(Path::Relay));
        self.metrics.stream_opened(&key.0, &key.1, Path::Relay);
        let (to_count, from_count) = self.metrics.relay_counters(&key.0, &key.1);
        drop(pairing);
        info!(%site, path = %Path::Relay, transport = "tcp", open_ms = started.elapsed().as_secs_f64() * 1e3, "relaying a stream");
        let (to_site, from_site) = match self.buckets(&key) {
            Some((t, f)) => (Some(t), Some(f)),
            None => (None, None),
        };
        let (rr, rw) = tokio::io::split(rec);
        let (gr, gw) = tokio::io::split(gwc);
        let (sent, got) = (
            std::sync::atomic::AtomicU64::new(0),
            std::sync::atomic::AtomicU64::new(0),
        );
        let r = tokio::try_join!(
            copy_counted(rr, gw, to_site, |n| {
                sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                self.update_site(&key, |s| s.bytes_to_site += n);
                to_count.inc_by(n);
            }),
            copy_counted(gr, rw, from_site, |n| {
                got.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                self.update_site(&key, |s| s.bytes_from_site += n);
                from_count.inc_by(n);
            })
        );
        let (sent, got) = (sent.into_inner(), got.into_inner());
        let secs = started.elapsed().as_secs();
        match r {
            Ok(_) => {
                info!(%site, bytes_to_site = sent, bytes_from_site = got, secs, "stream ended")
            }
            Err(e) => {
                info!(%site, bytes_to_site = sent, bytes_from_site = got, secs, error = %e, "stream ended")
            }
        }
        Ok(())
    }
}

/// Removes a UDP relay pairing when its stream did not take it.
struct PairingGuard<'a> {
    rv: &'a Rendezvous,
    id: crate::udprelay::PairingId,
    keep: bool,
}

impl PairingGuard<'_> {
    /// The stream took the relay over UDP: the pairing stays until it is idle.
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for PairingGuard<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.rv.udp().remove(&self.id);
        }
    }
}

async fn refuse(conn: &mut Conn, e: Error) -> Result<()> {
    let reason = match &e {
        Error::Refused(r) => r.clone(),
        other => other.to_string(),
    };
    proto::send(conn, &Reply::Refused { reason }).await?;
    let _ = conn.shutdown().await;
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_paces_to_its_rate_after_the_burst() {
        let t0 = Instant::now();
        // 800 kbit/s = 100 000 B/s; burst 25 000 B.
        let mut b = Bucket::new(800, t0);
        assert_eq!(b.take(25_000, t0), Duration::ZERO, "the burst is free");
        // 50 000 B more at once: half a second of debt.
        let w = b.take(50_000, t0);
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
        // After the wait the debt is paid: the next 10 000 B cost 0.1 s.
        let w = b.take(10_000, t0 + Duration::from_millis(500));
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-6, "{w:?}");
        // Idle time refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(25_000, later), Duration::ZERO);
        assert!(b.take(1_000, later) > Duration::ZERO);
        // Over a long run the rate holds: 1 MB in 16 KiB chunks, sent after each wait.
        let mut b = Bucket::new(800, t0);
        let mut now = t0;
        let mut sent = 0usize;
        while sent < 1_000_000 {
            now += b.take(16_384, now);
            sent += 16_384;
        }
        let secs = (now - t0).as_secs_f64();
        assert!(
            (secs - (sent as f64 - 25_000.0) / 100_000.0).abs() < 0.2,
            "{secs}"
        );
    }

    #[test]
    fn sites_and_recorders_are_checked_against_their_files() {
        let dir = std::env::temp_dir().join(format!("vigil-site-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("site"), "site-token\n").unwrap();
        std::fs::write(dir.join("rec"), "rec-token").unwrap();
        let cfg = Config {
            listen: "127.0.0.1:0".into(),
            cert_file: dir.join("c"),
            key_file: dir.join("k"),
            sites: vec![SiteEntry {
                namespace: "a".into(),
                name: "branch".into(),
                token_file: dir.join("site"),
                camera_networks: CameraNetworks {
                    allow: vec!["192.168.50.0/24".into()],
                    deny: vec![],
                },
                max_relay_kbps: None,
            }],
            recorders: vec![RecorderEntry {
                namespace: "a".into(),
                token_file: dir.join("rec"),
            }],
        };
        let t = Token::new("site-token");
        assert!(cfg.authenticate_site("a", "branch", &t).is_ok());
        assert!(
            cfg.authenticate_site("b", "branch", &t).is_err(),
            "other namespace"
        );
        assert!(
            cfg.authenticate_site("a", "other", &t).is_err(),
            "unknown site"
        );
        assert!(
            cfg.authenticate_site("a", "branch", &Token::new("x"))
                .is_err()
        );
        assert!(
            cfg.authenticate_recorder("a", &Token::new("rec-token"))
                .is_ok()
        );
        assert!(
            cfg.authenticate_recorder("b", &Token::new("rec-token"))
                .is_err()
        );
        assert!(
            cfg.authenticate_recorder("a", &t).is_err(),
            "a site token is no recorder token"
        );
        // Revocation: the file changes, the old token stops working.
        std::fs::write(dir.join("site"), "rotated").unwrap();
        let e = cfg
            .authenticate_site("a", "branch", &t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("revoked") && !e.contains("site-token"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
