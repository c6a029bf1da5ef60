//! One task per camera: connect with retina, turn frames into segments in the buffer, and
//! reconnect with backoff when the stream breaks, recording every interval without footage as
//! a gap.
//!
//! A camera task only ever waits on its own camera and its own files: the upload side is
//! decoupled by the buffer, and every other camera has its own task, so one slow or broken
//! camera cannot stall another.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use retina::client::{
    Demuxed, InitialTimestampPolicy, PlayOptions, Session, SessionOptions, SetupOptions,
    TeardownPolicy,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::{Error, Result};
use crate::metrics::{CamLabels, Metrics};
use crate::quarantine::{Quarantine, QuarantinePolicy, SessionOutcome};
use crate::spool::Spool;
use crate::status::{CameraState, StatusBoard, now_ms};
use vigil_api::redact::Credentials;
use vigil_api::redact::{Redactor, peer_summary, redact_url};
use vigil_config::{CameraConfig, CredentialSource, Settings, Transport};
use vigil_media::backoff::Backoff;
use vigil_media::ewma::BitrateEwma;
use vigil_media::mp4;
use vigil_media::netguard;
use vigil_media::segmenter::{AudioIn, Event, Policy, Segmenter, VideoIn};
use vigil_media::timeline::{Adjust, Timeline};
use vigil_store::gaps::{Gap, GapReason, GapRecord, GapTracker};
use vigil_store::layout::{CameraId, ObjectKey, Origin, SegmentKey};

/// The start of the segment opened at a cut whose time on the timeline before the boundary is
/// `end_ms` (the closing segment's end), given what the boundary did and the cut's time on the
/// timeline after it (`after_ms`). The same millisecond, so keys tile — except after a step:
/// then the new segment starts at the corrected time and the keys show the step as a hole or an
/// overlap (docs/storage.md). Starting it at `end_ms` put the whole step into the new segment's
/// key, which then misstated its length (a 16.9 s key holding 10 s of video, issue 18).
fn next_segment_start_ms(adjust: Adjust, end_ms: i64, after_ms: i64) -> i64 {
    match adjust {
        Adjust::Stepped(_) => after_ms,
        Adjust::Locked | Adjust::Slewed(_) => end_ms,
    }
}

/// The hole a forward step of the timeline leaves between the key ending at `end_ms` and the
/// next one starting at `next_start_ms`, when longer than one frame. Nothing else would report
/// it: the stream never broke, yet that time has no footage on the timeline (issue 18). A
/// backward step overlaps the previous key instead and loses nothing.
fn step_gap(adjust: Adjust, end_ms: i64, next_start_ms: i64) -> Option<Gap> {
    let stepped = matches!(adjust, Adjust::Stepped(_));
    (stepped && next_start_ms - end_ms > vigil_store::intervals::DEFAULT_TOLERANCE_MS).then_some(
        Gap {
            start_ms: end_ms,
            end_ms: next_start_ms,
            reason: GapReason::TimelineStep,
        },
    )
}

/// Reads a Secret's user name and password: (namespace, secret, username key, password key).
pub type SecretReader = Arc<
    dyn Fn(String, String, String, String) -> BoxFuture<'static, Result<Credentials>> + Send + Sync,
>;

/// Everything camera tasks share.
pub struct Ctx {
    pub settings: Settings,
    pub spool: Arc<Spool>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub secrets: Option<SecretReader>,
    /// Live frames for viewers (the live tap, `crate::live`).
    pub live: Arc<crate::live::LiveHub>,
    /// Kubernetes mode: the held cameras' manual and external windows (`crate::windows`).
    pub windows: Option<Arc<watch::Sender<crate::windows::WindowBoard>>>,
}

/// RTSP request timeout (DESCRIBE, SETUP, PLAY each).
const RTSP_TIMEOUT: Duration = Duration::from_secs(10);
/// A session must deliver its first keyframe within this long (long GOPs, "smart" codecs). A
/// session that delivers no video at all is given up after the stall timeout instead: a camera
/// (or an RTSP server) that accepts PLAY and then sends nothing is retried in seconds.
const FIRST_KEYFRAME_TIMEOUT: Duration = Duration::from_secs(20);

/// How a session ended.
enum Ended {
    /// Asked to stop.
    Stopped,
    /// The stream broke.
    Lost(Error),
}

/// Runs a camera until `stop` turns true. `resume_ms` is the end of the footage a previous
/// process saved for this camera (recovered from the buffer), if any.
pub async fn run_camera(
    cfg: CameraConfig,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
    resume_ms: Option<i64>,
) {
    let span = info_span!("camera", camera = %cfg.id);
    CameraTask::new(cfg, ctx, stop, resume_ms)
        .run()
        .instrument(span)
        .await
}

struct CameraTask {
    cfg: CameraConfig,
    ctx: Arc<Ctx>,
    stop: watch::Receiver<bool>,
    labels: CamLabels,
    /// Per-frame counter, looked up once (a family lookup hashes the label strings).
    bytes_in: prometheus_client::metrics::counter::Counter,
    gaps: GapTracker,
    ewma: BitrateEwma,
    redactor: Redactor,
    /// `Event` mode: triggers from the event source (see `event_hook.rs`).
    events: Option<crate::event_hook::Events>,
}

impl CameraTask {
    fn new(
        cfg: CameraConfig,
        ctx: Arc<Ctx>,
        stop: watch::Receiver<bool>,
        resume_ms: Option<i64>,
    ) -> Self {
        let gaps = match resume_ms {
            Some(ms) => GapTracker::new(ms, GapReason::RecorderRestart),
            None => GapTracker::new(now_ms(), GapReason::Startup),
        };
        let mut redactor = Redactor::new();
        if let Some(q) = cfg.url.query() {
            redactor.add(q);
        }
        if let CredentialSource::Static(c) = &cfg.credentials {
            redactor.add(&c.password);
        }
        let labels = CamLabels::from(&cfg.id);
        let bytes_in = ctx.metrics.bytes_in.get_or_create(&labels).clone();
        let events = crate::event_hook::Events::start(&cfg, &ctx, &stop);
        CameraTask {
            events,
            bytes_in,
            labels,
            cfg,
            ctx,
            stop,
            gaps,
            ewma: BitrateEwma::new(10.0),
            redactor,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self) {
        let s = &self.ctx.settings;
        let mut backoff = Backoff::with_random_seed(s.reconnect_min, s.reconnect_max);
        let mut attempts = 0u64;
        let mut quarantine = Quarantine::new(QuarantinePolicy::default());
        info!(url = %redact_url(&self.cfg.url), "camera task started");
        while !self.stopping() {
            if attempts > 0 {
                self.ctx
                    .metrics
                    .reconnects
                    .get_or_create(&self.labels)
                    .inc();
                self.ctx.status.update(&self.cfg.id, |r| r.reconnects += 1);
            }
            attempts += 1;
            self.ctx
                .status
                .set_state(&self.cfg.id, CameraState::Connecting);
            let session = async {
                match self.connect().await {
                    Ok((demuxed, vi, ai)) => self.ingest(demuxed, vi, ai).await,
                    Err(e) => (Ended::Lost(e), false),
                }
            };
            // A panic while parsing what the camera sent (a bug in a protocol crate) ends this
            // session like a broken stream instead of silently ending the camera's task; it
            // counts towards quarantine like a limit violation. The session's state is dropped
            // with it; the task's own state (gaps, backoff) is only touched between sessions.
            let (ended, recorded) = match std::panic::AssertUnwindSafe(session).catch_unwind().await
            {
                Ok(r) => r,
                Err(_) => (Ended::Lost(Error::SessionPanicked), false),
            };
            self.ctx
                .metrics
                .camera_up
                .get_or_create(&self.labels)
                .set(0);
            if recorded {
                backoff.reset();
            }
            match ended {
                Ended::Stopped => break,
                Ended::Lost(e) => {
                    self.gaps.lost(now_ms());
                    let violated = matches!(e, Error::LimitExceeded(_) | Error::SessionPanicked);
                    let outcome = match (violated, recorded) {
                        (true, _) => SessionOutcome::LimitExceeded,
                        (false, true) => SessionOutcome::Recorded,
                        (false, false) => SessionOutcome::Other,
                    };
                    if violated {
                        self.ctx
                            .metrics
                            .limit_violations
                            .get_or_create(&self.labels)
                            .inc();
                    }
                    let msg = self.redactor.scrub(&e.to_string());
                    let refused = e.is_address_refused();
                    let hold = quarantine.session_ended(Instant::now(), outcome);
                    let (delay, state, shown) = match hold {
                        Some(hold) => {
                            warn!(error = %msg, hold_s = hold.as_secs(), "camera quarantined: its sessions keep exceeding the receive limits");
                            let shown = QuarantinePolicy::default().message(hold, &msg);
                            (hold, CameraState::Quarantined, shown)
                        }
                        None => {
                            let delay = backoff.next_delay();
                            if refused {
                                warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "camera address refused by the pool's cameraNetworks; not connecting");
                            } else {
                                warn!(error = %msg, retry_in_ms = delay.as_millis() as u64, "stream lost");
                            }
                            (delay, CameraState::Reconnecting, msg)
                        }
                    };
                    self.ctx.status.update(&self.cfg.id, |r| {
                        r.last_error = Some(shown);
                        r.address_refused = refused;
                        r.open_gap_since_ms = self.gaps.open_since().map(|g| g.0);
                    });
                    self.ctx.status.set_state(&self.cfg.id, state);
                    let quarantined = self
                        .ctx
                        .metrics
                        .quarantined
                        .get_or_create(&self.labels)
                        .clone();
                    quarantined.set(i64::from(hold.is_some()));
                    let mut stop = self.stop.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    quarantined.set(0);
                }
            }
        }
        if let Some(g) = self.gaps.stop(now_ms()) {
            self.record_gap(g).await;
        }
        self.ctx
            .status
            .set_state(&self.cfg.id, CameraState::Stopped);
        info!("camera task stopped");
    }

    async fn credentials(&self) -> Result<Option<Credentials>> {
        credentials_of(&self.cfg, &self.ctx).await
    }

    /// A retina error as the recorder's: receive-limit violations are told apart (they count
    /// towards quarantine) and described by their first line only, which is retina's own text
    /// and carries none of the camera's bytes.
    fn retina_err(&self, what: &str, e: retina::Error) -> Error {
        if e.is_limit_exceeded() {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or("receive limit exceeded");
            return Error::LimitExceeded(format!("{what}: {first}"));
        }
        self.rtsp_err(what, e)
    }

    fn rtsp_err(&self, what: &str, e: impl std::fmt::Display) -> Error {
        // retina's errors quote what the peer sent (status lines, hex dumps of messages) after
        // a blank line; only a short printable summary of the first paragraph is kept.
        let text = format!("{what}: {}", peer_summary(&e.to_string()));
        Error::Rtsp(self.redactor.scrub(&text))
    }

    /// Resolves the camera's host once, checks the address against the pool's policy, and
    /// returns the URL pinned to that address: retina connects to exactly what was checked.
    async fn pinned_url(&self) -> Result<url::Url> {
        let url = &self.cfg.url;
        let host = netguard::url_host(url)
            .ok_or_else(|| Error::Config(format!("{}: no host", redact_url(url))))?;
        let port = url
            .port()
            .unwrap_or(if url.scheme() == "rtsps" { 322 } else { 554 });
        let addr = netguard::resolve(&host, port, &self.ctx.settings.address_policy).await?;
        debug!(address = %addr, "camera address allowed");
        Ok(netguard::pin_url(url, addr)?)
    }

    /// A stream to the camera through its site's tunnel, as a loopback `TcpStream` for retina.
    async fn site_stream(&self, site: &str) -> Result<tokio::net::TcpStream> {
        let url = &self.cfg.url;
        let link = self.ctx.settings.site_link.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "camera at site {site}: this recorder has no site link (rendezvous service)"
            ))
        })?;
        let host = netguard::url_host(url)
            .ok_or_else(|| Error::Config(format!("{}: no host", redact_url(url))))?;
        let port = url.port().unwrap_or(554);
        let started = Instant::now();
        let stream = netguard::via_site(link, site, &host, port, RTSP_TIMEOUT).await?;
        let path = stream.path();
        let open = started.elapsed().as_secs_f64();
        let labels = crate::metrics::SitePathLabels {
            namespace: self.labels.namespace.clone(),
            camera: self.labels.camera.clone(),
            site: site.to_string(),
            path: path.to_string(),
        };
        self.ctx.metrics.site_streams.get_or_create(&labels).inc();
        self.ctx
            .metrics
            .site_open_seconds
            .get_or_create(&labels)
            .set(open);
        info!(
            site,
            %path,
            open_ms = open * 1e3,
            "camera reached through its site's tunnel"
        );
        Ok(netguard::bridge(stream).await?)
    }

    /// DESCRIBE, SETUP (video, and AAC audio if wanted), PLAY.
    async fn connect(&mut self) -> Result<(Demuxed, usize, Option<usize>)> {
        // Before anything else: a refused address costs no Secret read and no connection.
        // A camera at a remote site is reached through the site's tunnel instead (issue #15):
        // its URL keeps the camera's LAN address, which the site's gateway checks.
        let (url, through_site) = match self.cfg.site.clone() {
            Some(site) => (self.cfg.url.clone(), Some(self.site_stream(&site).await?)),
            None => (self.pinned_url().await?, None),
        };
        let creds = self.credentials().await?;
        if let Some(c) = &creds {
            // Secrets read from Kubernetes are only known now.
            self.redactor.add(&c.password);
        }
        let opts = SessionOptions::default()
            .creds(creds.map(|c| retina::client::Credentials {
                username: c.username,
                password: c.password,
            }))
            .user_agent(format!("vigil-recorder/{}", env!("CARGO_PKG_VERSION")))
            // Through a site, never a TEARDOWN on a new connection: that would dial the
            // camera's LAN address directly (closing the tunnel stream ends the session).
            .teardown(if through_site.is_some() {
                TeardownPolicy::Never
            } else {
                TeardownPolicy::Auto
            });
        let describe = async move {
            match through_site {
                Some(tcp) => Session::describe_with_stream(url, tcp, opts).await,
                None => Session::describe(url, opts).await,
            }
        };
        let mut session = tokio::time::timeout(RTSP_TIMEOUT, describe)
            .await
            .map_err(|_| self.rtsp_err("DESCRIBE", "timed out"))?
            .map_err(|e| self.retina_err("DESCRIBE", e))?;
        let streams = session.streams();
        let vi = streams
            .iter()
            .position(|s| s.media() == "video" && matches!(s.encoding_name(), "h264" | "h265"))
            .ok_or_else(|| {
                Error::Stream(format!(
                    "no H.264/H.265 video stream (offered: {})",
                    peer_summary(
                        &streams
                            .iter()
                            .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                ))
            })?;
        if streams[vi].clock_rate_hz() != mp4::VIDEO_TIMESCALE {
            return Err(Error::Stream(format!(
                "video clock rate {} Hz is not 90 kHz",
                streams[vi].clock_rate_hz()
            )));
        }
        let ai = if self.cfg.audio {
            streams.iter().position(|s| {
                s.media() == "audio"
                    && s.encoding_name() == "mpeg4-generic"
                    && matches!(s.parameters(), Some(ParametersRef::Audio(p)) if p.mp4_sample_entry().build().is_ok())
            })
        } else {
            None
        };
        let transport = match self.cfg.transport {
            Transport::Tcp => retina::client::Transport::Tcp(Default::default()),
            Transport::Udp => retina::client::Transport::Udp(Default::default()),
        };
        for i in std::iter::once(vi).chain(ai) {
            tokio::time::timeout(
                RTSP_TIMEOUT,
                session.setup(
                    i,
                    SetupOptions::default()
                        .transport(transport.clone())
                        .frame_format(FrameFormat::MP4),
                ),
            )
            .await
            .map_err(|_| self.rtsp_err("SETUP", "timed out"))?
            .map_err(|e| self.retina_err("SETUP", e))?;
        }
        // Timestamps are mapped to UTC per stream (see timeline.rs), so RTP-Info is not needed.
        let playing = tokio::time::timeout(
            RTSP_TIMEOUT,
            session
                .play(PlayOptions::default().initial_timestamp(InitialTimestampPolicy::Permissive)),
        )
        .await
        .map_err(|_| self.rtsp_err("PLAY", "timed out"))?
        .map_err(|e| self.retina_err("PLAY", e))?;
        let demuxed = playing
            .demuxed()
            .map_err(|e| self.retina_err("demuxing", e))?;
        Ok((demuxed, vi, ai))
    }

    /// Records one session. Returns how it ended and whether it completed a segment.
    async fn ingest(
        &mut self,
        mut demuxed: Demuxed,
        vi: usize,
        ai: Option<usize>,
    ) -> (Ended, bool) {
        let ctx = self.ctx.clone();
        let s = &ctx.settings;
        let audio = ai.and_then(|i| match demuxed.streams()[i].parameters() {
            Some(ParametersRef::Audio(p)) => p.mp4_sample_entry().build().ok().map(|se| {
                (
                    mp4::AudioTrack {
                        sample_entry: se,
                        timescale: p.clock_rate(),
                    },
                    p.rfc6381_codec().unwrap_or("aac").to_string(),
                )
            }),
            _ => None,
        });
        let mut rec = Recording {
            cam: self.cfg.id.clone(),
            segmenter: Segmenter::new(Policy {
                segment_ticks: i64::from(s.segment_seconds) * 90_000,
                fragment_ticks: i64::from(s.fragment_ms) * 90,
                audio_rate: audio.as_ref().map(|a| a.0.timescale),
            }),
            vtl: None,
            atl: None,
            last_audio_ts: None,
            video: None,
            audio: audio.as_ref().map(|a| a.0.clone()),
            files: HashMap::new(),
            current: None,
            pending_start_ms: None,
            segments: 0,
            h265: false,
            last_video_ts: 0,
            keyed: false,
            gate: self
                .events
                .as_mut()
                .and_then(crate::event_hook::Events::gate),
        };
        self.ctx.status.update(&self.cfg.id, |r| {
            r.audio = audio.as_ref().map(|a| a.1.clone());
            r.sessions += 1;
        });
        let live = ctx.live.feed(&self.cfg.id);
        let started = Instant::now();
        let mut any_video = false;
        let mut last_video = Instant::now();
        let mut now = last_video;
        let mut events = Vec::new();
        let mut stop = self.stop.clone();
        let ended = loop {
            let deadline = if rec.segmenter.started() || rec.keyed {
                last_video + s.stall_timeout
            } else if any_video {
                started + FIRST_KEYFRAME_TIMEOUT.max(s.stall_timeout)
            } else {
                started + s.stall_timeout
            };
            let item =
                match next_item(&mut demuxed, &mut stop, deadline, s.read_batch, &mut now).await {
                    Some(r) => r,
                    None => break Ended::Stopped,
                };
            let item = match item {
                Err(_) if rec.segmenter.started() || rec.keyed => {
                    break Ended::Lost(Error::Stream(format!(
                        "no video for {} s",
                        s.stall_timeout.as_secs()
                    )));
                }
                Err(_) if !any_video => {
                    break Ended::Lost(Error::Stream(format!(
                        "no video within {} s of PLAY",
                        s.stall_timeout.as_secs()
                    )));
                }
                Err(_) => {
                    break Ended::Lost(Error::Stream(format!(
                        "no keyframe within {} s",
                        deadline.duration_since(started).as_secs()
                    )));
                }
                Ok(None) => break Ended::Lost(Error::Stream("the camera ended the stream".into())),
                Ok(Some(Err(e))) => break Ended::Lost(self.retina_err("stream", e)),
                Ok(Some(Ok(item))) => item,
            };
            match item {
                CodecItem::VideoFrame(f) if f.stream_id() == vi => {
                    // The time of the last read (at most one batch old) is close enough for the
                    // stall timeout and saves a clock read per frame.
                    last_video = now;
                    any_video = true;
                    self.bytes_in.inc_by(f.data().len() as u64);
                    if f.has_new_parameters() || rec.video.is_none() {
                        match demuxed.streams()[vi].parameters() {
                            Some(ParametersRef::Video(p)) => match p.mp4_sample_entry().build() {
                                Ok(se) => {
                                    let (w, h) = p.pixel_dimensions();
                                    rec.video = Some(mp4::VideoTrack {
                                        sample_entry: se,
                                        width: w.min(u32::from(u16::MAX)) as u16,
                                        height: h.min(u32::from(u16::MAX)) as u16,
                                    });
                                    let codec = p.rfc6381_codec().to_string();
                                    rec.h265 =
                                        codec.starts_with("hvc1") || codec.starts_with("hev1");
                                    info!(codec = %codec, width = w, height = h, "video parameters");
                                    live.params(&codec, p.extra_data());
                                    self.ctx
                                        .status
                                        .update(&self.cfg.id, |r| r.codec = Some(codec));
                                }
                                Err(e) => {
                                    break Ended::Lost(Error::Stream(format!(
                                        "cannot describe video for MP4: {}",
                                        peer_summary(&e.to_string())
                                    )));
                                }
                            },
                            _ if rec.video.is_none() => {
                                // No parameters yet (no SPS/PPS seen): cannot start a segment.
                                continue;
                            }
                            _ => {}
                        }
                    }
                    let ts = f.timestamp().timestamp();
                    rec.last_video_ts = ts;
                    let recv = wall_us(f.start_ctx().received_wall().into());
                    match &mut rec.vtl {
                        Some(t) => t.observe(ts, recv),
                        None => rec.vtl = Some(Timeline::new(mp4::VIDEO_TIMESCALE, ts, recv)),
                    }
                    let key = f.is_random_access_point()
                        || (rec.h265 && vigil_media::segmenter::h265_is_irap(f.data()));
                    live.frame(ts, key, recv / 1000, f.data());
                    let frame = VideoIn {
                        ts,
                        key,
                        new_params: f.has_new_parameters(),
                        data: f.into_data(),
                    };
                    rec.keyed |= frame.key;
                    if let Err(d) = crate::event_hook::push_video(
                        self.events.as_mut(),
                        &mut rec.gate,
                        &mut rec.segmenter,
                        rec.vtl.as_ref(),
                        frame,
                        &mut events,
                    ) {
                        warn!(
                            prev_ts = d.prev_ts,
                            ts = d.frame.ts,
                            "RTP timestamp discontinuity; starting a new timeline"
                        );
                        rec.segmenter.finish(&mut events);
                        if let Err(e) = self.handle(&mut rec, &mut events).await {
                            break Ended::Lost(e);
                        }
                        // The footage before and after the jump cannot be placed on one
                        // timeline; whatever lies between them is a gap.
                        self.gaps.lost(now_ms());
                        rec.vtl = Some(Timeline::new(mp4::VIDEO_TIMESCALE, d.frame.ts, recv));
                        rec.atl = None;
                        let frame = d.frame;
                        if crate::event_hook::push_video(
                            self.events.as_mut(),
                            &mut rec.gate,
                            &mut rec.segmenter,
                            rec.vtl.as_ref(),
                            frame,
                            &mut events,
                        )
                        .is_err()
                        {
                            break Ended::Lost(Error::Stream("timestamp discontinuity".into()));
                        }
                    }
                }
                CodecItem::AudioFrame(f) if Some(f.stream_id()) == ai => {
                    self.bytes_in.inc_by(f.data().len() as u64);
                    let Some(vtl) = &rec.vtl else { continue };
                    let ts = f.timestamp().timestamp();
                    let recv = wall_us(f.ctx().received_wall().into());
                    let atl = rec.atl.get_or_insert_with(|| {
                        Timeline::new(f.timestamp().clock_rate().get(), ts, recv)
                    });
                    atl.observe(ts, recv);
                    rec.last_audio_ts = Some(ts);
                    let pos = vtl.inverse(atl.map_us(ts));
                    crate::event_hook::push_audio(
                        self.events.as_mut(),
                        &mut rec.gate,
                        &mut rec.segmenter,
                        AudioIn {
                            pos,
                            duration: f.frame_length().get(),
                            data: f.data().to_vec(),
                        },
                        &mut events,
                    );
                }
                _ => continue,
            }
            if !events.is_empty()
                && let Err(e) = self.handle(&mut rec, &mut events).await
            {
                break Ended::Lost(e);
            }
        };
        // Whatever the reason, what was received is kept.
        rec.segmenter.finish(&mut events);
        let ended = match self.handle(&mut rec, &mut events).await {
            Ok(()) => ended,
            Err(e) => match ended {
                Ended::Stopped => {
                    warn!(error = %e, "could not save the last segment");
                    Ended::Stopped
                }
                Ended::Lost(_) => Ended::Lost(e),
            },
        };
        rec.abandon(&self.ctx.spool).await;
        if rec.segmenter.dropped_before_key() > 0 {
            debug!(
                frames = rec.segmenter.dropped_before_key(),
                "frames before the first keyframe were skipped"
            );
        }
        (ended, rec.segments > 0)
    }

    /// Carries out segmenter events: file writes, the buffer, timeline boundaries, gaps.
    async fn handle(&mut self, rec: &mut Recording, events: &mut Vec<Event>) -> Result<()> {
        for ev in events.drain(..) {
            match ev {
                Event::Cut { ts } => {
                    let Some(vtl) = &mut rec.vtl else { continue };
                    let end_ms = vtl.map_ms(ts);
                    if let Some(f) = rec.current.and_then(|id| rec.files.get_mut(&id)) {
                        f.start_ms.get_or_insert(vtl.map_ms(f.start_ts));
                        f.end_ms = Some(end_ms);
                    }
                    let adjust = vtl.boundary(ts);
                    match adjust {
                        Adjust::Stepped(us) => {
                            warn!(
                                offset_ms = us / 1000,
                                "camera clock and receipt times disagree; re-anchored the timeline"
                            )
                        }
                        Adjust::Slewed(ppm) if ppm.abs() > 500.0 => {
                            debug!(ppm, "slewing the camera clock")
                        }
                        _ => {}
                    }
                    if let (Some(atl), Some(ats)) = (&mut rec.atl, rec.last_audio_ts) {
                        atl.boundary(ats);
                    }
                    let next_start_ms = next_segment_start_ms(adjust, end_ms, vtl.map_ms(ts));
                    rec.pending_start_ms = Some(next_start_ms);
                    if let Some(g) = step_gap(adjust, end_ms, next_start_ms) {
                        self.record_gap(g).await;
                    }
                }
                Event::Open { id, start_ts } => {
                    let (Some(vtl), Some(video)) = (&rec.vtl, &rec.video) else {
                        return Err(Error::Stream("segment without video parameters".into()));
                    };
                    let start_ms = rec.pending_start_ms.take();
                    let provisional = start_ms.unwrap_or_else(|| vtl.map_ms(start_ts));
                    let path = self.ctx.spool.partial_path(&rec.cam, provisional);
                    let init = mp4::init_segment(video, rec.audio.as_ref(), provisional / 1000);
                    let len = init.len() as u64;
                    let file =
                        blocking(move || create_with(&path, init).map(|f| (f, path))).await?;
                    self.ctx.spool.add_partial_bytes(len as i64);
                    rec.files.insert(
                        id,
                        SegFile {
                            path: file.1,
                            file: Some(file.0),
                            start_ts,
                            start_ms,
                            end_ms: None,
                            bytes: len,
                            named_start_ms: Some(provisional),
                        },
                    );
                    rec.current = Some(id);
                    if rec.segments == 0 {
                        self.ctx
                            .metrics
                            .camera_up
                            .get_or_create(&self.labels)
                            .set(1);
                        self.ctx
                            .status
                            .set_state(&self.cfg.id, CameraState::Recording);
                    }
                }
                Event::Fragment { id, fragment } => {
                    let Some(f) = rec.files.get_mut(&id) else {
                        continue;
                    };
                    // The first fragment of a session fixes the timeline's anchor, so the
                    // session's start, and the gap before it, are known now rather than at the
                    // end of the first segment.
                    let mut resumed = None;
                    if let Some(vtl) = &mut rec.vtl
                        && !vtl.is_locked()
                        && vtl.settled(rec.last_video_ts)
                    {
                        let start_ms = *f.start_ms.get_or_insert(vtl.map_ms(f.start_ts));
                        vtl.lock();
                        resumed = Some(start_ms);
                    }
                    let Some(mut file) = f.file.take() else {
                        continue;
                    };
                    let len = fragment.len();
                    self.ewma.observe(
                        fragment.payload_bytes,
                        fragment.video_ticks as f64 / 90_000.0,
                    );
                    // Once the start is final, the partial file's name says so: a crash
                    // recovers the segment under its real start time.
                    let rename = match resumed {
                        Some(ms) if Some(ms) != f.named_start_ms => {
                            let to = self.ctx.spool.partial_path(&rec.cam, ms);
                            let from = std::mem::replace(&mut f.path, to.clone());
                            f.named_start_ms = Some(ms);
                            Some((from, to))
                        }
                        _ => None,
                    };
                    let path = f.path.clone();
                    file = blocking(move || {
                        if let Some((from, to)) = &rename {
                            std::fs::rename(from, to)
                                .map_err(|e| Error::io("renaming segment", to, e))?;
                        }
                        let w = |e| Error::io("writing segment", &path, e);
                        let mut parts: Vec<&[u8]> = Vec::with_capacity(fragment.chunks.len() + 2);
                        parts.push(&fragment.moof);
                        parts.push(&fragment.mdat_header);
                        parts.extend(fragment.chunks.iter().map(Vec::as_slice));
                        write_all_vectored(&mut file, &parts).map_err(w)?;
                        // Each fragment is durable before the next is recorded: a crash loses
                        // at most the fragment in memory (see docs/storage.md).
                        file.sync_data().map_err(w)?;
                        Ok(file)
                    })
                    .await?;
                    f.file = Some(file);
                    f.bytes += len;
                    self.ctx.spool.add_partial_bytes(len as i64);
                    if let Some(bps) = self.ewma.bits_per_second() {
                        self.ctx
                            .metrics
                            .bitrate_bps
                            .get_or_create(&self.labels)
                            .set(bps);
                    }
                    if let Some(start_ms) = resumed {
                        // Durable now: a planned move may let the old recorder go, and after a
                        // failover the take-over check may run.
                        self.ctx.status.update(&self.cfg.id, |r| {
                            r.first_footage_ms.get_or_insert(start_ms);
                        });
                    }
                    if let Some(start_ms) = resumed
                        && let Some(g) = self.gaps.started(start_ms)
                    {
                        self.record_gap(g).await;
                    }
                }
                Event::Close {
                    id,
                    start_ts,
                    end_ts,
                    video_frames,
                } => {
                    let Some(mut f) = rec.files.remove(&id) else {
                        continue;
                    };
                    if rec.current == Some(id) {
                        rec.current = None;
                    }
                    let Some(vtl) = &rec.vtl else { continue };
                    let start_ms = f.start_ms.unwrap_or_else(|| vtl.map_ms(start_ts));
                    let end_ms = f
                        .end_ms
                        .unwrap_or_else(|| vtl.map_ms(end_ts))
                        .max(start_ms + 1);
                    let key = SegmentKey::new(rec.cam.clone(), start_ms, end_ms, Origin::Live)?;
                    let file = f.file.take();
                    let spool = self.ctx.spool.clone();
                    let (path, bytes) = (f.path.clone(), f.bytes);
                    let okey = ObjectKey::Segment(key.clone());
                    self.ctx.spool.add_partial_bytes(-(bytes as i64));
                    blocking(move || {
                        if let Some(file) = file {
                            file.sync_all()
                                .map_err(|e| Error::io("syncing segment", &path, e))?;
                        }
                        spool.commit_blocking(&path, &okey, bytes)
                    })
                    .await?;
                    rec.segments += 1;
                    self.ctx
                        .metrics
                        .segments_written
                        .get_or_create(&self.labels)
                        .inc();
                    debug!(key = %key.relative(), frames = video_frames, bytes, "segment written");
                    let kbps = self.ewma.kbps();
                    self.ctx.status.update(&self.cfg.id, |r| {
                        r.last_segment_end_ms =
                            Some(r.last_segment_end_ms.map_or(end_ms, |e| e.max(end_ms)));
                        r.first_segment_start_ms.get_or_insert(start_ms);
                        // Durable, if no fragment said so before: the timeline locked at this
                        // segment's end instead of at a fragment (its anchor was still moving),
                        // and without this a planned move to this recorder never completed.
                        r.first_footage_ms.get_or_insert(start_ms);
                        r.segments += 1;
                        r.bitrate_kbps = kbps;
                        r.open_gap_since_ms = None;
                        r.last_error = None;
                        r.address_refused = false;
                    });
                    if let Some(g) = self.gaps.footage(start_ms, end_ms) {
                        // Only when a session ended before its first fragment was flushed.
                        self.record_gap(g).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn record_gap(&self, g: Gap) {
        let rec = GapRecord::new(
            &self.cfg.id,
            g.start_ms,
            g.end_ms,
            g.reason,
            &self.ctx.settings.recorder_name,
        );
        info!(
            start = %rec.start,
            end = %rec.end,
            seconds = rec.seconds,
            reason = g.reason.as_str(),
            "gap in footage"
        );
        self.ctx
            .metrics
            .record_gap(&self.cfg.id, g.reason, g.seconds());
        self.ctx.status.gap(&rec);
        let spool = self.ctx.spool.clone();
        if let Err(e) = blocking(move || spool.put_gap_blocking(&rec)).await {
            warn!(error = %e, "could not write the gap record");
        }
    }
}

/// The camera's credentials (a Secret is read now, so a rotated password is picked up).
pub(crate) async fn credentials_of(cfg: &CameraConfig, ctx: &Ctx) -> Result<Option<Credentials>> {
    match &cfg.credentials {
        CredentialSource::None => Ok(None),
        CredentialSource::Static(c) => Ok(Some(c.clone())),
        CredentialSource::Secret {
            name,
            username_key,
            password_key,
        } => {
            let reader = ctx.secrets.as_ref().ok_or_else(|| {
                Error::Config("credentials from a Secret need Kubernetes mode".into())
            })?;
            reader(
                cfg.id.namespace.clone(),
                name.clone(),
                username_key.clone(),
                password_key.clone(),
            )
            .await
            .map(Some)
        }
    }
}

/// State of one session.
struct Recording {
    cam: CameraId,
    segmenter: Segmenter,
    vtl: Option<Timeline>,
    atl: Option<Timeline>,
    last_audio_ts: Option<i64>,
    video: Option<mp4::VideoTrack>,
    audio: Option<mp4::AudioTrack>,
    files: HashMap<u64, SegFile>,
    /// Segment currently receiving video.
    current: Option<u64>,
    /// Start time of the next segment, fixed at the cut.
    pending_start_ms: Option<i64>,
    segments: u64,
    /// CRA pictures count as keyframes too (see `h265_is_irap`).
    h265: bool,
    /// RTP time of the newest video frame.
    last_video_ts: i64,
    /// A keyframe arrived this session (with `Event` mode the segmenter may not have started).
    keyed: bool,
    /// `Event` mode: what reaches the segmenter.
    gate: Option<crate::event_gate::EventGate>,
}

impl Recording {
    /// Deletes segment files that could not be finished (after a write error). Their footage
    /// is inside the gap that follows the last finished segment.
    async fn abandon(&mut self, spool: &Arc<Spool>) {
        for (_, f) in self.files.drain() {
            spool.add_partial_bytes(-(f.bytes as i64));
            let p = f.path;
            let _ = blocking(move || {
                std::fs::remove_file(&p).map_err(|e| Error::io("deleting", &p, e))
            })
            .await;
        }
    }
}

struct SegFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    start_ts: i64,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
    bytes: u64,
    /// The start time in the partial file's name (what crash recovery would use).
    named_start_ms: Option<i64>,
}

/// One `writev` per fragment instead of one `write` per frame.
fn write_all_vectored(f: &mut std::fs::File, parts: &[&[u8]]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    // Linux accepts at most 1024 iovecs per call (IOV_MAX).
    for group in parts.chunks(1024) {
        let mut slices: Vec<IoSlice<'_>> = group.iter().map(|p| IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match f.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn create_with(path: &std::path::Path, init: Vec<u8>) -> Result<std::fs::File> {
    use std::io::Write;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
    }
    let mut f = std::fs::File::create(path).map_err(|e| Error::io("creating segment", path, e))?;
    f.write_all(&init)
        .map_err(|e| Error::io("writing segment", path, e))?;
    Ok(f)
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Stream(format!("file task failed: {e}")))?
}

/// The next item of the session; `None` when asked to stop; `Err(())` at `deadline`.
///
/// With a non-zero `batch`, the socket is read at most every `batch`: when nothing is buffered,
/// the task sleeps instead of waking for every RTP packet, and the next poll reads the packets
/// that arrived meanwhile in one or two large reads; all cameras wake on the same ticks. This
/// more than halves the kernel and scheduler work per stream (see docs/benchmarks.md); the cost
/// is up to `batch` of extra latency, which a recorder does not care about. Receipt times stay
/// usable for the timeline: the newest frame of a batch arrived at most one frame interval
/// before the read, and the anchor takes the smallest apparent latency.
async fn next_item(
    demuxed: &mut Demuxed,
    stop: &mut watch::Receiver<bool>,
    deadline: Instant,
    batch: Duration,
    now: &mut Instant,
) -> Option<Result<Option<Result<CodecItem, retina::Error>>, ()>> {
    if batch.is_zero() {
        let r = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            r = tokio::time::timeout_at(deadline.into(), demuxed.next()) => Some(r.map_err(|_| ())),
        };
        *now = Instant::now();
        return r;
    }
    loop {
        // Unconstrained: a long backlog must not be cut short by tokio's cooperative budget,
        // whose wake-up would be lost on this no-op waker.
        if let Some(r) = tokio::task::unconstrained(demuxed.next()).now_or_never() {
            return Some(Ok(r));
        }
        if *stop.borrow() {
            return None;
        }
        *now = Instant::now();
        if *now >= deadline {
            return Some(Err(()));
        }
        let wake = next_tick(*now, batch).min(deadline);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return None,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// The next multiple of `period` on a process-wide grid: every camera wakes on the same ticks,
/// so one runtime wake-up serves all of them instead of one per camera.
fn next_tick(now: Instant, period: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let p = period.as_nanos().max(1);
    let n = now.saturating_duration_since(epoch).as_nanos() / p + 1;
    epoch + Duration::from_nanos((n * p).min(u128::from(u64::MAX)) as u64)
}

fn wall_us(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A camera whose clock is 3 s behind the receipt times from the second segment on: the
    /// timeline steps at the second boundary, and the segment after it must be 10 s long in its
    /// key as in its frames, with the step a hole between the keys, reported as a gap.
    #[test]
    fn a_step_leaves_a_hole_between_keys_not_a_longer_key() {
        const SEG: i64 = 10 * 90_000; // 10 s of RTP time
        let mut t = Timeline::new(90_000, 0, 1_000_000_000);
        t.lock();
        let mut start_ms = t.map_ms(0);
        let mut keys = vec![];
        let mut gaps = vec![];
        for k in 1..=3i64 {
            let ts = k * SEG;
            // Every frame of this segment arrives 3 s later than the anchor says.
            for f in 0..250 {
                let fts = (k - 1) * SEG + f * 3600;
                t.observe(fts, t.map_us(fts) + 3_000_000);
            }
            let end_ms = t.map_ms(ts);
            keys.push((start_ms, end_ms));
            let adjust = t.boundary(ts);
            start_ms = next_segment_start_ms(adjust, end_ms, t.map_ms(ts));
            gaps.extend(step_gap(adjust, end_ms, start_ms));
        }
        let (_, end1) = keys[1];
        let (start2, end2) = keys[2];
        assert!(
            (start2 - end1 - 3000).abs() < 50,
            "the step is a hole between the keys: {keys:?}"
        );
        // That hole, and only it, is reported as a gap (so it gets a Backfill).
        assert_eq!(
            gaps,
            vec![Gap {
                start_ms: end1,
                end_ms: start2,
                reason: GapReason::TimelineStep
            }],
            "{keys:?}"
        );
        assert!(
            (end2 - start2 - 10_000).abs() < 50,
            "the key after the step holds its 10 s: {keys:?}"
        );
    }

    #[test]
    fn only_a_forward_step_longer_than_a_frame_is_a_gap() {
        let step = Adjust::Stepped(0);
        assert_eq!(step_gap(Adjust::Locked, 1_000, 5_000), None);
        assert_eq!(step_gap(Adjust::Slewed(30.0), 1_000, 5_000), None);
        assert_eq!(step_gap(step, 1_000, 900), None, "backward: an overlap");
        assert_eq!(step_gap(step, 1_000, 1_010), None, "within a frame");
        assert_eq!(
            step_gap(step, 1_000, 1_500).map(|g| (g.start_ms, g.end_ms, g.reason)),
            Some((1_000, 1_500, GapReason::TimelineStep))
        );
    }
}
