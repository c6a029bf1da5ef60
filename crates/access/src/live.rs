//! Live view over WebRTC (WHEP, RFC 9725): the access point takes a camera's frames from the
//! recorder that records it (`GET /live/{ns}/{name}` on the recorder, see
//! `vigil_recorder::live`) and sends them to browsers with str0m, H.264 passed through as it
//! came from the camera (only its framing changes: MP4 lengths to Annex B start codes).
//!
//! One UDP port serves every viewer (ICE-lite: the access point only answers the browser's
//! connectivity checks). A dispatcher task reads the socket and hands each datagram to its
//! session: by source address once known, else by the ICE user name of the STUN request
//! (`<our ufrag>:<their ufrag>`). Each session is a task owning its `Rtc`, fed by its own
//! upstream reader; a session never waits for another.
//!
//! Bounded memory per viewer: the upstream reader hands frames to the session through a small
//! queue; when the session (or the network under it) does not keep up the queue fills, frames
//! are dropped and the viewer resumes at the next keyframe.
//!
//! ICE-TCP (`crate::icetcp`): every answer also carries a passive TCP host candidate on the
//! HTTP port; a connection there whose first frame is a binding request for a session is
//! handed to it ([`WebRtc::serve_tcp`]), and what the session sends to that peer goes back
//! on the connection, framed (RFC 4571).
//!
//! Where a session's frames come from is an [`Opener`]: this domain's recorder
//! ([`Upstream::opener`]), or a child domain's access point through its tunnel
//! (`federation::Federation::remote_live`, which reads the child's `live.frames`, itself served
//! from [`Upstream::open`]). Either is opened again whenever it ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use vigil_media::live::{self as wire, Decoder, Message};
use vigil_store::layout::CameraId;

/// Datagrams queued for one session before the dispatcher drops them.
const PACKET_QUEUE: usize = 256;
/// Frames queued between a session's upstream reader and the session.
const FRAME_QUEUE: usize = 32;
/// Packets queued towards one ICE-TCP connection before they are dropped (as UDP would).
const TCP_OUT_QUEUE: usize = 512;
/// An ICE-TCP connection that receives nothing for this long is closed (browsers send consent
/// checks every few seconds).
const TCP_IDLE: Duration = Duration::from_secs(30);
/// Most concurrent WebRTC sessions.
const MAX_SESSIONS: usize = 1000;
/// A session whose ICE does not connect within this long is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait before asking the recorder again after its stream ended.
const UPSTREAM_RETRY: Duration = Duration::from_millis(300);
/// Kubernetes mode: how often a streaming upstream checks that the camera is still on its
/// recorder (a planned move hands the camera over while the old recorder's stream still runs).
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// How the access point finds the recorder holding a camera.
#[derive(Clone)]
pub enum Locator {
    /// File mode: one recorder (this base URL) records every camera.
    Fixed(url::Url),
    /// Kubernetes mode: the Camera's `vigil.dev/recorder` label names the recorder, whose Lease
    /// (in the pool's `namespace`) carries its live address (`vigil.dev/live-address`).
    Kubernetes {
        client: kube::Client,
        namespace: String,
    },
}

/// Where this domain's live frames come from: the recorders.
#[derive(Clone)]
pub struct Upstream {
    pub locator: Locator,
    /// Bearer token the recorders expect (never logged).
    pub token: String,
    http: reqwest::Client,
    /// LL-HLS viewers of this domain's cameras (`llhls.rs`): one window per camera.
    llhls: Arc<crate::llhls::LlHls>,
    /// One upstream per camera, shared by its WebRTC viewers, its LL-HLS window and a parent
    /// domain's `live.frames` requests (`fanout.rs`).
    feeds: Arc<crate::fanout::Feeds>,
}

/// Longest wait for a camera's parameters (its codec) before answering a WHEP offer.
pub const CODEC_PEEK: Duration = Duration::from_secs(3);

/// A camera's live frames as bytes of the recorder's wire format (`vigil_media::live`), and
/// where they come from (for logs).
pub struct Opened {
    pub from: String,
    pub body: BoxStream<'static, Result<Bytes>>,
}

/// Opens a viewer's frames; called again each time they end (the recorder restarted, the
/// camera moved, the child domain's tunnel dropped) until the viewer leaves. A local camera's
/// come from its recorder ([`Upstream::opener`]), a child domain's camera's through the
/// child's tunnel (`federation::Federation::remote_live`).
pub type Opener = Arc<dyn Fn() -> BoxFuture<'static, Result<Opened>> + Send + Sync>;

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.locator {
            Locator::Fixed(u) => u.to_string(),
            Locator::Kubernetes { namespace, .. } => format!("Leases in {namespace}"),
        };
        f.debug_struct("Upstream")
            .field("locator", &how)
            .finish_non_exhaustive()
    }
}

/// `<base>/live/<ns>/<name>`.
pub fn live_url(base: &url::Url, cam: &CameraId) -> Result<url::Url> {
    let mut u = base.clone();
    u.path_segments_mut()
        .map_err(|_| Error::Config(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(["live", &cam.namespace, &cam.name]);
    Ok(u)
}

/// The recorder holding a camera, from the Camera object's labels.
pub fn recorder_of(labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    labels
        .get(vigil_api::RECORDER_LABEL)
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// A recorder's live base URL, from its Lease's annotations; only `http`/`https` URLs.
pub fn lease_live_address(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<url::Url> {
    let a = annotations.get(vigil_api::labels::LIVE_ADDRESS_ANNOTATION)?;
    let u: url::Url = a.trim().parse().ok()?;
    matches!(u.scheme(), "http" | "https").then_some(u)
}

impl Upstream {
    pub fn new(locator: Locator, token: String) -> Result<Self> {
        Ok(Upstream {
            locator,
            token,
            http: reqwest::Client::builder()
                // Inside the cluster: a recorder that does not answer within 1 s is gone (the
                // Camera will name another one).
                .connect_timeout(Duration::from_secs(1))
                .build()
                .map_err(|e| Error::Http(format!("HTTP client: {e}")))?,
            llhls: crate::llhls::LlHls::new(),
            feeds: crate::fanout::Feeds::new(),
        })
    }

    /// A hold on `cam`'s shared feed (started if needed, reading from the recorder holding
    /// the camera).
    pub fn hold(&self, cam: &CameraId) -> Result<crate::fanout::FeedHandle> {
        self.feeds
            .hold(cam, || self.opener(cam.clone()))
            .map_err(Error::Live)
    }

    /// Cameras whose feed runs now.
    pub fn feeds(&self) -> usize {
        self.feeds.len()
    }

    /// The LL-HLS streams of this domain's cameras.
    pub fn llhls(&self) -> &Arc<crate::llhls::LlHls> {
        &self.llhls
    }

    /// The opener of `cam`'s frames on the recorder holding it.
    pub fn opener(&self, cam: CameraId) -> Opener {
        let up = self.clone();
        Arc::new(move || {
            let (up, cam) = (up.clone(), cam.clone());
            Box::pin(async move { up.open(&cam).await })
        })
    }

    /// `cam`'s frames from the recorder holding it now. In Kubernetes mode they end when the
    /// camera moves to another recorder (a planned move hands it over while the old
    /// recorder's stream still runs), so that the reader opens them again on the new one.
    pub async fn open(&self, cam: &CameraId) -> Result<Opened> {
        let url = self.locate(cam).await?;
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| Error::Live(format!("recorder: {}", e.without_url())))?;
        if !resp.status().is_success() {
            return Err(Error::Live(format!("recorder answered {}", resp.status())));
        }
        let from = url.origin().ascii_serialization();
        let mut check = tokio::time::interval(OWNER_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.reset();
        let state = (resp, check, self.clone(), cam.clone(), url);
        let body = futures::stream::unfold(Some(state), |st| async move {
            let (mut resp, mut check, up, cam, url) = st?;
            loop {
                tokio::select! {
                    c = resp.chunk() => {
                        return match c {
                            Ok(Some(b)) => Some((Ok(b), Some((resp, check, up, cam, url)))),
                            Ok(None) => None,
                            Err(e) => Some((Err(Error::Live(format!("recorder: {}", e.without_url()))), None)),
                        };
                    }
                    _ = check.tick(), if up.follows_moves() => match up.locate(&cam).await {
                        Ok(now) if now != url => {
                            info!(camera = %cam, to = %now.origin().ascii_serialization(), "camera moved: switching recorder");
                            return None;
                        }
                        Ok(_) => {}
                        Err(e) => debug!(camera = %cam, error = %e, "cannot check the camera's recorder"),
                    },
                }
            }
        })
        .boxed();
        Ok(Opened { from, body })
    }

    /// The URL of `cam`'s live stream on the recorder holding it now.
    async fn locate(&self, cam: &CameraId) -> Result<url::Url> {
        use k8s_openapi::api::coordination::v1::Lease;
        use kube::{Api, ResourceExt};
        match &self.locator {
            Locator::Fixed(base) => live_url(base, cam),
            Locator::Kubernetes { client, namespace } => {
                let cams: Api<vigil_api::Camera> = Api::namespaced(client.clone(), &cam.namespace);
                let c = cams
                    .get_opt(&cam.name)
                    .await?
                    .ok_or_else(|| Error::Live(format!("no Camera {cam}")))?;
                let rec = recorder_of(c.labels())
                    .ok_or_else(|| Error::Live(format!("{cam} is not placed on a recorder")))?;
                let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
                let lease = leases
                    .get_opt(rec)
                    .await?
                    .ok_or_else(|| Error::Live(format!("recorder {rec} has no Lease")))?;
                let base = lease_live_address(lease.annotations()).ok_or_else(|| {
                    Error::Live(format!("recorder {rec} publishes no live address"))
                })?;
                live_url(&base, cam)
            }
        }
    }

    fn follows_moves(&self) -> bool {
        matches!(self.locator, Locator::Kubernetes { .. })
    }
}

/// The WebRTC side: the UDP socket and every session on it.
pub struct WebRtc {
    socket: Arc<UdpSocket>,
    /// The address put in the SDP answer's candidate.
    candidate: SocketAddr,
    sessions: Mutex<HashMap<String, mpsc::Sender<Datagram>>>,
    next_id: AtomicU64,
    /// The port of the passive ICE-TCP candidate (the HTTP port; 0: none).
    tcp_port: AtomicU16,
    /// Whether answers carry the UDP candidate (off only to test ICE-TCP).
    udp_candidate: AtomicBool,
}

struct Datagram {
    at: Instant,
    source: SocketAddr,
    data: Vec<u8>,
    /// Over ICE-TCP: where to send the session's packets to this peer.
    tcp: Option<mpsc::Sender<Vec<u8>>>,
}

/// The ICE user name fragment (ours) a STUN binding request is addressed to, from its
/// USERNAME attribute `<ours>:<theirs>`; `None` for anything else.
pub fn stun_local_ufrag(p: &[u8]) -> Option<&str> {
    // STUN: type (2), length (2), magic cookie 0x2112A442 (4), transaction (12), attributes.
    if p.len() < 20 || p[0] & 0xc0 != 0 || p[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let attrs = p.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= attrs.len() {
        let t = u16::from_be_bytes([attrs[i], attrs[i + 1]]);
        let l = usize::from(u16::from_be_bytes([attrs[i + 2], attrs[i + 3]]));
        let v = attrs.get(i + 4..i + 4 + l)?;
        if t == 0x0006 {
            let s = std::str::from_utf8(v).ok()?;
            return s.split(':').next();
        }
        i += 4 + l.div_ceil(4) * 4;
    }
    None
}

/// The `a=ice-ufrag:` of an SDP.
fn sdp_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(|s| s.trim().to_string())
}

/// The H.264 payload type to send with: packetization mode 1, the camera's profile if the
/// browser offered it, else any.
fn choose_pt(
    params: impl Iterator<Item = (str0m::media::Pt, str0m::format::CodecSpec)>,
    profile_idc: Option<u8>,
) -> Option<str0m::media::Pt> {
    let h264: Vec<_> = params
        .filter(|(_, s)| s.codec == Codec::H264 && s.format.packetization_mode == Some(1))
        .collect();
    let same = h264.iter().find(|(_, s)| {
        profile_idc.is_some_and(|p| s.format.profile_level_id.map(|v| (v >> 16) as u8) == Some(p))
    });
    same.or(h264.first()).map(|(pt, _)| *pt)
}

/// `avc1.PPCCLL` → PP.
fn profile_idc(codec: &str) -> Option<u8> {
    let hex = codec
        .strip_prefix("avc1.")
        .or(codec.strip_prefix("avc3."))?;
    u8::from_str_radix(hex.get(0..2)?, 16).ok()
}

impl WebRtc {
    pub async fn bind(
        udp: SocketAddr,
        candidate_ip: Option<std::net::IpAddr>,
    ) -> Result<Arc<Self>> {
        static CRYPTO: std::sync::Once = std::sync::Once::new();
        CRYPTO.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
        let socket = UdpSocket::bind(udp)
            .await
            .map_err(|e| Error::Http(format!("cannot bind WebRTC UDP {udp}: {e}")))?;
        let local = socket
            .local_addr()
            .map_err(|e| Error::Http(format!("WebRTC UDP socket: {e}")))?;
        let ip = match candidate_ip {
            Some(ip) => ip,
            None if !local.ip().is_unspecified() => local.ip(),
            None => {
                return Err(Error::Config(
                    "--webrtc-candidate-ip is required when --webrtc-udp listens on every address"
                        .into(),
                ));
            }
        };
        let candidate = SocketAddr::new(ip, local.port());
        info!(udp = %local, %candidate, "WebRTC (WHEP) on one UDP port, ICE-lite");
        let me = Arc::new(WebRtc {
            socket: Arc::new(socket),
            candidate,
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            tcp_port: AtomicU16::new(0),
            udp_candidate: AtomicBool::new(true),
        });
        tokio::spawn(me.clone().dispatch());
        Ok(me)
    }

    pub fn local_port(&self) -> u16 {
        self.candidate.port()
    }

    /// Offers a passive ICE-TCP candidate on `port` (the HTTP port, shared through
    /// `crate::icetcp::split`) in every answer from now on; `udp: false` leaves the UDP
    /// candidate out (to test the fallback).
    pub fn enable_tcp(&self, port: u16, udp: bool) {
        self.tcp_port.store(port, Ordering::Relaxed);
        self.udp_candidate.store(udp, Ordering::Relaxed);
        info!(tcp = %self.tcp_candidate().map(|c| c.to_string()).unwrap_or_default(), udp, "WebRTC ICE-TCP (passive) on the HTTP port");
    }

    fn tcp_candidate(&self) -> Option<SocketAddr> {
        match self.tcp_port.load(Ordering::Relaxed) {
            0 => None,
            p => Some(SocketAddr::new(self.candidate.ip(), p)),
        }
    }

    /// One ICE-TCP connection (its first bytes looked like a binding request): its first
    /// frame must be a binding request for one of our sessions, within
    /// `icetcp::FIRST_STUN_TIMEOUT`; then its frames go to that session and the session's
    /// packets to this peer come back on it, until either ends or it stays silent for
    /// [`TCP_IDLE`].
    pub async fn serve_tcp(&self, stream: TcpStream, peer: SocketAddr) {
        use crate::icetcp::{FIRST_STUN_TIMEOUT, frame, read_frame};
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = Vec::new();
        let first = tokio::time::timeout(FIRST_STUN_TIMEOUT, read_frame(&mut rd, &mut buf)).await;
        let Ok(Ok(Some(n))) = first else {
            debug!(%peer, "ICE-TCP: no complete first frame in time");
            return;
        };
        let Some((ufrag, session)) = self.session_for(&buf[..n]) else {
            debug!(%peer, "ICE-TCP: first frame is not a binding request for a session");
            return;
        };
        info!(%peer, session = %ufrag, "live viewer on ICE-TCP");
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(TCP_OUT_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(p) = out_rx.recv().await {
                let Some(f) = frame(&p) else { continue };
                if wr.write_all(&f).await.is_err() {
                    return;
                }
            }
        });
        let mut n = n;
        loop {
            let d = Datagram {
                at: Instant::now(),
                source: peer,
                data: buf[..n].to_vec(),
                tcp: Some(out_tx.clone()),
            };
            match session.try_send(d) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
            n = match tokio::time::timeout(TCP_IDLE, read_frame(&mut rd, &mut buf)).await {
                Ok(Ok(Some(n))) => n,
                _ => break,
            };
        }
        drop(out_tx);
        writer.abort();
        debug!(%peer, "ICE-TCP connection ended");
    }

    /// The session a STUN binding request is addressed to (by our ICE user name fragment in
    /// its USERNAME), with that fragment; `None` for anything else.
    fn session_for(&self, packet: &[u8]) -> Option<(String, mpsc::Sender<Datagram>)> {
        let u = stun_local_ufrag(packet)?;
        let s = self.sessions.lock().ok()?;
        s.get(u).map(|tx| (u.to_string(), tx.clone()))
    }

    fn session_count(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Reads the socket for ever, handing datagrams to sessions.
    async fn dispatch(self: Arc<Self>) {
        let mut buf = vec![0u8; 2048];
        let mut by_addr: HashMap<SocketAddr, (String, mpsc::Sender<Datagram>)> = HashMap::new();
        loop {
            let (n, source) = match self.socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    debug!(error = %e, "WebRTC UDP receive");
                    continue;
                }
            };
            let data = buf[..n].to_vec();
            let tx = match by_addr.get(&source) {
                Some((_, tx)) if !tx.is_closed() => Some(tx.clone()),
                _ => {
                    by_addr.retain(|_, (_, tx)| !tx.is_closed());
                    match self.session_for(&data) {
                        Some((u, tx)) => {
                            if by_addr.len() < MAX_SESSIONS * 4 {
                                by_addr.insert(source, (u, tx.clone()));
                            }
                            Some(tx)
                        }
                        None => None,
                    }
                }
            };
            if let Some(tx) = tx {
                // A session that does not keep up loses datagrams, never stalls the others.
                let _ = tx.try_send(Datagram {
                    at: Instant::now(),
                    source,
                    data,
                    tcp: None,
                });
            }
        }
    }

    /// Accepts a WHEP offer for camera `cam` (its name, for logs), whose frames come from
    /// `source`: the SDP answer, and the session's id (for DELETE).
    pub fn offer(
        self: &Arc<Self>,
        cam: String,
        source: Source,
        offer: &str,
    ) -> Result<(String, String)> {
        if self.session_count() >= MAX_SESSIONS {
            return Err(Error::Live("too many live viewers".into()));
        }
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| Error::BadRequest(format!("not an SDP offer: {e}")))?;
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_h264(true)
            .build(Instant::now());
        if self.udp_candidate.load(Ordering::Relaxed) || self.tcp_candidate().is_none() {
            let cand = Candidate::host(self.candidate, "udp")
                .map_err(|e| Error::Live(format!("candidate: {e}")))?;
            rtc.add_local_candidate(cand);
        }
        if let Some(tcp) = self.tcp_candidate() {
            let cand = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| Error::Live(format!("TCP candidate: {e}")))?;
            rtc.add_local_candidate(cand);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| Error::BadRequest(format!("offer not accepted: {e}")))?
            .to_sdp_string();
        let ufrag = sdp_ufrag(&answer).ok_or_else(|| Error::Live("answer without ufrag".into()))?;
        let (tx, rx) = mpsc::channel(PACKET_QUEUE);
        self.sessions
            .lock()
            .map_err(|_| Error::Live("session table poisoned".into()))?
            .insert(ufrag.clone(), tx);
        let id = format!(
            "{}-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed),
            &ufrag
        );
        let (frames, reader) = match source {
            Source::Shared(feed) => (Frames::Feed(feed, None), None),
            Source::Own { open, first } => {
                let (ftx, frx) = mpsc::channel(FRAME_QUEUE);
                let reader = tokio::spawn(read_upstream(open, first, cam.clone(), ftx));
                (Frames::Queue(frx), Some(reader))
            }
        };
        let me = self.clone();
        tokio::spawn(async move {
            let r = me.run_session(rtc, rx, frames, &cam).await;
            if let Some(reader) = reader {
                reader.abort();
            }
            if let Ok(mut s) = me.sessions.lock() {
                s.remove(&ufrag);
            }
            match r {
                Ok(stats) => {
                    info!(camera = %cam, frames = stats.0, dropped = stats.1, "live viewer left")
                }
                Err(e) => warn!(camera = %cam, error = %e, "live viewer ended"),
            }
        });
        Ok((answer, id))
    }

    /// Ends a session by its id.
    pub fn close(&self, id: &str) -> bool {
        let ufrag = id.split_once('-').map(|(_, u)| u).unwrap_or("");
        self.sessions
            .lock()
            .ok()
            .and_then(|mut s| s.remove(ufrag))
            .is_some()
    }

    /// One viewer: drives its `Rtc` with datagrams, timeouts and frames. Returns frames sent
    /// and frames dropped.
    async fn run_session(
        &self,
        mut rtc: Rtc,
        mut packets: mpsc::Receiver<Datagram>,
        mut frames: Frames,
        cam: &str,
    ) -> Result<(u64, u64)> {
        let started = Instant::now();
        let mut mid: Option<Mid> = None;
        let mut connected = false;
        let mut params: Option<wire::Params> = None;
        let mut need_key = true;
        let (mut sent, mut dropped) = (0u64, 0u64);
        let mut clock = OutClock::default();
        // ICE-TCP peers of this session: where their packets go.
        let mut tcp_peers: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let tcp_local = self.tcp_candidate();
        loop {
            // Everything the Rtc has to say, until it wants to wait.
            let deadline = loop {
                match rtc.poll_output().map_err(|e| Error::Live(e.to_string()))? {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) if t.proto == Protocol::Tcp => {
                        if let Some(tx) = tcp_peers.get(&t.destination) {
                            // A connection that does not keep up loses packets, as UDP would.
                            let _ = tx.try_send(t.contents.to_vec());
                        }
                    }
                    Output::Transmit(t) => {
                        let _ = self.socket.try_send_to(&t.contents, t.destination);
                    }
                    Output::Event(Event::MediaAdded(m)) if m.kind == MediaKind::Video => {
                        mid = Some(m.mid);
                    }
                    Output::Event(Event::IceConnectionStateChange(s)) => {
                        debug!(camera = %cam, state = ?s, "ICE");
                        if s == IceConnectionState::Disconnected {
                            return Ok((sent, dropped + frames.dropped()));
                        }
                    }
                    Output::Event(Event::Connected) => {
                        connected = true;
                        info!(camera = %cam, after_ms = started.elapsed().as_millis() as u64, "live viewer connected");
                    }
                    Output::Event(_) => {}
                }
            };
            if !rtc.is_alive() {
                return Ok((sent, dropped + frames.dropped()));
            }
            if !connected && started.elapsed() > CONNECT_TIMEOUT {
                return Err(Error::Live("ICE did not connect".into()));
            }
            let now = Instant::now();
            if deadline <= now {
                // Due now (str0m packetizes queued frames on timeouts): no waiting.
                rtc.handle_input(Input::Timeout(now))
                    .map_err(|e| Error::Live(e.to_string()))?;
                continue;
            }
            let wait = deadline - now;
            tokio::select! {
                p = packets.recv() => {
                    let Some(p) = p else { return Ok((sent, dropped + frames.dropped())) }; // closed (DELETE)
                    let (proto, destination) = match (p.tcp, tcp_local) {
                        (Some(tx), Some(local)) => {
                            tcp_peers.retain(|_, t| !t.is_closed());
                            tcp_peers.entry(p.source).or_insert(tx);
                            (Protocol::Tcp, local)
                        }
                        (Some(_), None) => continue,
                        (None, _) => (Protocol::Udp, self.candidate),
                    };
                    let Ok(contents) = p.data.as_slice().try_into() else { continue };
                    let input = Input::Receive(p.at, Receive {
                        proto,
                        source: p.source,
                        destination,
                        contents,
                    });
                    if rtc.accepts(&input) {
                        rtc.handle_input(input).map_err(|e| Error::Live(e.to_string()))?;
                    }
                }
                f = frames.next(), if frames.ready(connected && mid.is_some()) => {
                    let Some(f) = f else { return Err(Error::Live("upstream reader ended".into())) };
                    match f {
                        Upstreamed::Params(p) => params = Some(p),
                        Upstreamed::Gap => need_key = true,
                        Upstreamed::Restart => {
                            need_key = true;
                            clock.restart();
                        }
                        Upstreamed::Frame(fr) => {
                            let (Some(mid), true, Some(p)) = (mid, connected, &params) else {
                                need_key = true;
                                continue;
                            };
                            if need_key && !fr.key {
                                dropped += 1;
                                continue;
                            }
                            if !p.is_h264() {
                                return Err(Error::Live(format!("codec {} is not H.264: WebRTC passes H.264 only", p.codec)));
                            }
                            let sets = wire::avcc_parameter_sets(&p.extra).map_err(vigil_media::Error::from)?;
                            let data = wire::annexb(&fr.data, &sets, fr.key).map_err(vigil_media::Error::from)?;
                            let Some(writer) = rtc.writer(mid) else { continue };
                            let pt = choose_pt(writer.payload_params().map(|p| (p.pt(), p.spec())), profile_idc(&p.codec));
                            let Some(pt) = pt else {
                                return Err(Error::Live("the browser offered no H.264 (packetization-mode 1)".into()));
                            };
                            // Sent at once (str0m queues a frame until its wall clock: pacing the cached GOP at its
                            // own rate would keep the viewer up to a GOP behind live).
                            let now = Instant::now();
                            let ts = clock.map(fr.ts, now);
                            let wall = now;
                            let rtp = MediaTime::from_90khz(ts.max(0) as u64);
                            writer
                                .playout_delay(MediaTime::from_millis(0), MediaTime::from_millis(0))
                                .write(pt, wall, rtp, data)
                                .map_err(|e| Error::Live(e.to_string()))?;
                            need_key = false;
                            sent += 1;
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| Error::Live(e.to_string()))?;
                }
            }
        }
    }
}

/// Where a WebRTC session's frames come from.
pub enum Source {
    /// The camera's shared feed at this access point (this domain's cameras): the session
    /// reads it from when ICE and DTLS are up, starting on the cached GOP.
    Shared(crate::fanout::FeedHandle),
    /// Its own upstream (a child domain's camera, through the tunnel), opened again whenever
    /// it ends; `first`: already opened by the caller.
    Own { open: Opener, first: Option<Opened> },
}

/// A session's frames: its own upstream reader's queue, or its position in a shared feed
/// (taken when the session is connected, so that it starts on the cached keyframe).
enum Frames {
    Queue(mpsc::Receiver<Upstreamed>),
    Feed(crate::fanout::FeedHandle, Option<crate::fanout::Viewer>),
}

impl Frames {
    /// Whether to read now: a shared feed only once the session can send.
    fn ready(&self, connected: bool) -> bool {
        match self {
            Frames::Queue(_) => true,
            Frames::Feed(..) => connected,
        }
    }

    async fn next(&mut self) -> Option<Upstreamed> {
        use crate::fanout::Next;
        match self {
            Frames::Queue(rx) => rx.recv().await,
            Frames::Feed(feed, viewer) => {
                let v = viewer.get_or_insert_with(|| feed.subscribe());
                Some(match v.next().await? {
                    Next::Params(p) => Upstreamed::Params((*p).clone()),
                    Next::Frame(f) => Upstreamed::Frame(f),
                    Next::Gap => Upstreamed::Gap,
                    Next::Restart => Upstreamed::Restart,
                })
            }
        }
    }

    /// Frames the shared feed dropped for this viewer (it fell behind).
    fn dropped(&self) -> u64 {
        match self {
            Frames::Feed(_, Some(v)) => v.dropped,
            _ => 0,
        }
    }
}

/// The RTP time sent to a viewer: the camera's, shifted after each change of upstream (a new
/// RTSP session has a new random RTP time base) so that it continues from the last frame sent
/// by the time that passed. A jump would stall the browser's jitter buffer.
#[derive(Default)]
struct OutClock {
    offset: i64,
    last: Option<(i64, Instant)>,
    restarted: bool,
}

impl OutClock {
    fn restart(&mut self) {
        self.restarted = true;
    }

    /// The output time of a frame with camera time `ts` (90 kHz), sent at `now`.
    fn map(&mut self, ts: i64, now: Instant) -> i64 {
        if self.restarted {
            self.restarted = false;
            if let Some((out, at)) = self.last {
                let elapsed =
                    (now.saturating_duration_since(at).as_micros() as i64 * 9 / 100).max(1);
                self.offset = out + elapsed - ts;
            }
        }
        let out = ts + self.offset;
        self.last = Some((out, now));
        out
    }
}

pub enum Upstreamed {
    Params(wire::Params),
    Frame(wire::Frame),
    /// Frames were lost (the session fell behind): resume on a key.
    Gap,
    /// A new upstream stream (the recorder restarted, or the camera moved to another one):
    /// resume on a key, and on a new RTP time base.
    Restart,
}

/// Reads a camera's frames for one viewer, opening them again when they end (the recorder
/// restarted, the camera moved, a child domain's tunnel dropped), until the viewer is gone.
pub async fn read_upstream(
    open: Opener,
    mut first: Option<Opened>,
    cam: String,
    tx: mpsc::Sender<Upstreamed>,
) {
    let mut lost = false;
    while !tx.is_closed() {
        let opened = match first.take() {
            Some(o) => Ok(o),
            None => open().await,
        };
        let mut framed = false;
        match opened {
            Ok(o) => match read_once(o, &cam, &tx, &mut lost, &mut framed).await {
                Ok(()) => debug!(camera = %cam, "live stream ended"),
                Err(e) => debug!(camera = %cam, error = %e, "live stream failed"),
            },
            Err(e) => debug!(camera = %cam, error = %e, "cannot open the live stream"),
        }
        if tx.send(Upstreamed::Restart).await.is_err() {
            return;
        }
        // A stream that carried frames and ended (the camera moved: the new owner is known) is
        // opened again at once; a failed or empty one after a pause.
        if !framed {
            tokio::time::sleep(UPSTREAM_RETRY).await;
        }
    }
}

async fn read_once(
    mut opened: Opened,
    cam: &str,
    tx: &mpsc::Sender<Upstreamed>,
    lost: &mut bool,
    framed: &mut bool,
) -> Result<()> {
    debug!(camera = %cam, from = %opened.from, "reading live frames");
    let mut dec = Decoder::default();
    while let Some(chunk) = opened.body.next().await {
        dec.push(&chunk?);
        while let Some(m) = dec.next_message().map_err(vigil_media::Error::from)? {
            let item = match m {
                Message::Params(p) => Upstreamed::Params(p),
                Message::Frame(f) => {
                    *framed = true;
                    Upstreamed::Frame(f)
                }
            };
            match tx.try_send(item) {
                Ok(()) => {
                    if *lost && tx.try_send(Upstreamed::Gap).is_ok() {
                        *lost = false;
                    }
                }
                Err(mpsc::error::TrySendError::Full(Upstreamed::Params(p))) => {
                    // Parameters must not be lost: wait for room.
                    tx.send(Upstreamed::Params(p))
                        .await
                        .map_err(|_| Error::Live("viewer gone".into()))?;
                }
                Err(mpsc::error::TrySendError::Full(_)) => *lost = true,
                Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_user_names() {
        // A binding request with USERNAME "abcd:wxyz" (9 bytes, padded to 12).
        let mut p = vec![0x00, 0x01, 0x00, 16, 0x21, 0x12, 0xa4, 0x42];
        p.extend_from_slice(&[7; 12]);
        p.extend_from_slice(&[0x00, 0x06, 0x00, 9]);
        p.extend_from_slice(b"abcd:wxyz\0\0\0");
        assert_eq!(stun_local_ufrag(&p), Some("abcd"));
        // Truncated, not STUN (an RTP/DTLS packet), no USERNAME.
        assert_eq!(stun_local_ufrag(&p[..30]), None);
        let mut rtp = p.clone();
        rtp[0] = 0x80;
        assert_eq!(stun_local_ufrag(&rtp), None);
        let mut other = p.clone();
        other[21] = 0x20;
        assert_eq!(stun_local_ufrag(&other), None);
        assert_eq!(stun_local_ufrag(&[]), None);
    }

    #[test]
    fn output_time_continues_across_an_upstream_restart() {
        let t0 = Instant::now();
        let mut c = OutClock::default();
        assert_eq!(c.map(1000, t0), 1000);
        assert_eq!(c.map(4600, t0 + Duration::from_millis(40)), 4600);
        // The recorder restarts; its new session starts at a random RTP time.
        c.restart();
        let out = c.map(987_654_321, t0 + Duration::from_millis(2040));
        assert_eq!(out, 4600 + 180_000);
        assert_eq!(
            c.map(987_654_321 + 3600, t0 + Duration::from_millis(2080)),
            out + 3600
        );
    }

    #[test]
    fn sdp_bits() {
        assert_eq!(
            sdp_ufrag("v=0\r\na=ice-ufrag:Xy12\r\na=ice-pwd:p\r\n").as_deref(),
            Some("Xy12")
        );
        assert_eq!(profile_idc("avc1.64001f"), Some(0x64));
        assert_eq!(profile_idc("avc1.42e01f"), Some(0x42));
        assert_eq!(profile_idc("hvc1.1.6.L93.B0"), None);
    }

    #[test]
    fn upstream_urls() {
        let cam = CameraId::new("site-a", "door").unwrap();
        let base: url::Url = "http://10.0.0.1:9090/".parse().unwrap();
        assert_eq!(
            live_url(&base, &cam).unwrap().as_str(),
            "http://10.0.0.1:9090/live/site-a/door"
        );
        let up = Upstream::new(Locator::Fixed(base), "secret-token".into()).unwrap();
        assert!(!format!("{up:?}").contains("secret-token"));
    }

    #[test]
    fn recorders_from_labels_and_leases() {
        use std::collections::BTreeMap;
        let m = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            recorder_of(&m("vigil.dev/recorder", "rec-1")),
            Some("rec-1")
        );
        assert_eq!(recorder_of(&m("vigil.dev/recorder", "")), None);
        assert_eq!(
            recorder_of(&m("vigil.dev/incoming-recorder", "rec-2")),
            None
        );
        let a = |v: &str| m("vigil.dev/live-address", v);
        assert_eq!(
            lease_live_address(&a("http://10.42.0.7:9090")).map(|u| u.to_string()),
            Some("http://10.42.0.7:9090/".into())
        );
        assert_eq!(lease_live_address(&a("file:///etc/passwd")), None);
        assert_eq!(lease_live_address(&a("not a url")), None);
        assert_eq!(lease_live_address(&BTreeMap::new()), None);
    }
}
