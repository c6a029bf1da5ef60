//! Live view over Low-Latency HLS (RFC 8216bis): for H.265 cameras and for players without
//! WebRTC. Built from the camera's shared feed (`fanout.rs`), the same one its WebRTC viewers
//! read: **one upstream per camera** at this access point, cut into fMP4 parts of ~200 ms
//! ([`PART_TARGET`]) grouped in segments that start on keyframes; a bounded window of
//! segments is kept ([`WINDOW_SEGMENTS`], [`MAX_WINDOW_BYTES`]) and served from memory to
//! every viewer (no per-viewer copy). The upstream stops when no viewer asked for
//! [`IDLE`].
//!
//! ```text
//! GET {cam}/llhls/index.m3u8[?_HLS_msn=M[&_HLS_part=P]]   blocking playlist reload
//! GET {cam}/llhls/init-{n}.mp4                             init segment (per parameter set)
//! GET {cam}/llhls/{msn}.mp4                                a complete segment
//! GET {cam}/llhls/{msn}.{part}.mp4                         a part (the preload hint blocks)
//! ```
//!
//! When the recorder's stream breaks (recorder killed, camera moved), the feed's upstream
//! reader (`live::read_upstream`) reconnects to whichever recorder holds the camera now; the window
//! closes the open segment, and the next one carries `EXT-X-DISCONTINUITY`. Media sequence
//! numbers and decode times only go forward, so the player keeps playing after a freeze.
//!
//! The pure parts — [`Cutter`] (frames → parts → segments), [`Window::render`] (the
//! playlist), [`Window::has`] (the blocking-reload decision), [`Asset::parse`] — have unit
//! tests; the rest is I/O.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::fanout::{FeedHandle, Next};
use vigil_media::live as wire;
use vigil_media::livemux;
use vigil_store::layout::CameraId;

/// 90 kHz ticks per second (the RTP clock of video, and the fMP4 timescale).
const HZ: u64 = 90_000;
/// Part target duration: 200 ms.
pub const PART_TARGET: u64 = HZ / 5;
/// A segment ends at the first keyframe after this long…
pub const SEGMENT_MIN: u64 = HZ;
/// …or at a part boundary after this long without one (a camera with a very long GOP).
pub const SEGMENT_MAX: u64 = 6 * HZ;
/// Complete segments kept in the window.
pub const WINDOW_SEGMENTS: usize = 5;
/// Upper bound of a camera's window in memory (older segments go first).
pub const MAX_WINDOW_BYTES: usize = 48 << 20;
/// Complete segments (from the newest) whose parts are still listed.
const PART_SEGMENTS: usize = 2;
/// A camera's stream stops when no viewer asked for anything for this long.
pub const IDLE: Duration = Duration::from_secs(20);
/// Longest a blocking request is held.
const BLOCK_MAX: Duration = Duration::from_secs(6);
/// Most cameras with an LL-HLS stream at once.
const MAX_STREAMS: usize = 256;

/// One part: a `moof`+`mdat` pair.
#[derive(Clone, Debug)]
pub struct Part {
    pub data: Bytes,
    /// 90 kHz ticks.
    pub duration: u64,
    /// Starts with a keyframe.
    pub independent: bool,
}

#[derive(Clone, Debug)]
pub struct Segment {
    pub msn: u64,
    pub parts: Vec<Part>,
    pub complete: bool,
    /// A new upstream (or lost frames) before this segment.
    pub discontinuity: bool,
    /// The init segment its parts need.
    pub init: u64,
    /// When the recorder received its first frame (UTC ms): `EXT-X-PROGRAM-DATE-TIME`.
    pub wall_ms: i64,
}

impl Segment {
    fn duration(&self) -> u64 {
        self.parts.iter().map(|p| p.duration).sum()
    }
    fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data.len()).sum()
    }
}

/// A camera's LL-HLS window: init segments and the last few segments with their parts.
#[derive(Debug, Default)]
pub struct Window {
    pub inits: Vec<(u64, Bytes)>,
    pub segments: VecDeque<Segment>,
    /// The media sequence number of the next segment to open.
    pub next_msn: u64,
    /// Discontinuities that left the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_seq: u64,
}

/// What a blocking playlist request waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Have {
    /// In the playlist now.
    Yes,
    /// Not yet: wait.
    NotYet,
    /// More than two segments ahead: refuse (400), as the spec asks.
    TooFar,
}

impl Window {
    /// A window whose first segment is `msn`. A camera's stream numbers from the time it
    /// started (in 100 ms) so that a later stream of the same camera (after an idle stop, or
    /// a restart of the access point) never reuses a URL a browser or proxy may have cached
    /// (parts and segments are served with `max-age`).
    pub fn starting_at(msn: u64) -> Self {
        Window {
            next_msn: msn,
            ..Default::default()
        }
    }

    fn open(&self) -> Option<&Segment> {
        self.segments.back().filter(|s| !s.complete)
    }

    /// Whether the playlist has segment `msn` (complete) or, with `part`, that part of it
    /// (or anything later).
    pub fn has(&self, msn: u64, part: Option<u32>) -> Have {
        if msn > self.next_msn + 2 {
            return Have::TooFar;
        }
        let ok = self.segments.iter().any(|s| match part {
            None => s.complete && s.msn >= msn,
            Some(p) => {
                (s.msn > msn && !s.parts.is_empty()) || (s.msn == msn && s.parts.len() > p as usize)
            }
        });
        if ok { Have::Yes } else { Have::NotYet }
    }

    /// Whether a playlist can be served at all (at least one part).
    pub fn started(&self) -> bool {
        self.segments.iter().any(|s| !s.parts.is_empty())
    }

    pub fn part(&self, msn: u64, part: u32) -> Option<Bytes> {
        let s = self.segments.iter().find(|s| s.msn == msn)?;
        s.parts.get(part as usize).map(|p| p.data.clone())
    }

    /// The parts of complete segment `msn`.
    pub fn segment(&self, msn: u64) -> Option<Vec<Bytes>> {
        let s = self.segments.iter().find(|s| s.msn == msn && s.complete)?;
        Some(s.parts.iter().map(|p| p.data.clone()).collect())
    }

    pub fn init(&self, id: u64) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, b)| b.clone())
    }

    /// The part a player may ask for before it exists (the preload hint): (msn, part).
    pub fn next_part(&self) -> (u64, u32) {
        match self.open() {
            Some(s) => (s.msn, s.parts.len() as u32),
            None => (self.next_msn, 0),
        }
    }

    fn begin_segment(&mut self, init: u64, discontinuity: bool, wall_ms: i64) {
        self.segments.push_back(Segment {
            msn: self.next_msn,
            parts: Vec::new(),
            complete: false,
            discontinuity,
            init,
            wall_ms,
        });
        self.next_msn += 1;
    }

    fn push_part(&mut self, p: Part) {
        if let Some(s) = self.segments.back_mut().filter(|s| !s.complete) {
            s.parts.push(p);
        }
    }

    /// Closes the open segment (an empty one is dropped) and trims the window.
    fn end_segment(&mut self) {
        if let Some(s) = self.segments.back_mut().filter(|s| !s.complete) {
            if s.parts.is_empty() {
                self.segments.pop_back();
                self.next_msn -= 1;
            } else {
                s.complete = true;
            }
        }
        self.trim();
    }

    fn trim(&mut self) {
        let complete = |w: &Window| w.segments.iter().filter(|s| s.complete).count();
        let bytes = |w: &Window| w.segments.iter().map(Segment::bytes).sum::<usize>();
        while self.segments.front().is_some_and(|s| s.complete)
            && (complete(self) > WINDOW_SEGMENTS || bytes(self) > MAX_WINDOW_BYTES)
        {
            if let Some(s) = self.segments.pop_front()
                && s.discontinuity
            {
                self.discontinuity_seq += 1;
            }
        }
        let used: Vec<u64> = self.segments.iter().map(|s| s.init).collect();
        let newest = self.inits.last().map(|(i, _)| *i);
        self.inits
            .retain(|(i, _)| used.contains(i) || Some(*i) == newest);
    }

    /// The media playlist.
    pub fn render(&self) -> String {
        let secs = |t: u64| t as f64 / HZ as f64;
        let target = self
            .segments
            .iter()
            .map(|s| secs(s.duration()).ceil() as u64)
            .max()
            .unwrap_or(1)
            .max(1);
        let mut o = String::with_capacity(4096);
        let _ = write!(
            o,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{target}\n\
             #EXT-X-PART-INF:PART-TARGET={:.3}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MEDIA-SEQUENCE:{}\n\
             #EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            secs(PART_TARGET),
            3.0 * secs(PART_TARGET),
            self.segments.front().map_or(self.next_msn, |s| s.msn),
            self.discontinuity_seq,
        );
        let complete = self.segments.iter().filter(|s| s.complete).count();
        let mut map = None;
        for (i, s) in self.segments.iter().enumerate() {
            if s.discontinuity && i > 0 {
                o.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if map != Some(s.init) {
                let _ = writeln!(o, "#EXT-X-MAP:URI=\"init-{}.mp4\"", s.init);
                map = Some(s.init);
            }
            if let Some(t) = chrono::DateTime::from_timestamp_millis(s.wall_ms) {
                let _ = writeln!(
                    o,
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                );
            }
            if !s.complete || i + PART_SEGMENTS >= complete {
                for (j, p) in s.parts.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "#EXT-X-PART:DURATION={:.5},URI=\"{}.{j}.mp4\"{}",
                        secs(p.duration),
                        s.msn,
                        if p.independent {
                            ",INDEPENDENT=YES"
                        } else {
                            ""
                        }
                    );
                }
            }
            if s.complete {
                let _ = writeln!(o, "#EXTINF:{:.5},\n{}.mp4", secs(s.duration()), s.msn);
            }
        }
        let (msn, part) = self.next_part();
        let _ = writeln!(o, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{msn}.{part}.mp4\"");
        o
    }
}

/// Cuts a camera's frames into parts and segments, and muxes them (one pending frame: a
/// frame's duration is known when the next one arrives).
#[derive(Default)]
pub struct Cutter {
    params: Option<wire::Params>,
    init: u64,
    pending: Option<wire::Frame>,
    /// Frames of the open part, with their durations.
    part: Vec<(wire::Frame, u64)>,
    part_ticks: u64,
    seg_ticks: u64,
    /// Decode time of the next sample: only goes forward, across upstreams.
    decode: u64,
    last_duration: u64,
    sequence: u32,
    need_key: bool,
    discontinuity: bool,
}

impl Cutter {
    pub fn new() -> Self {
        Cutter {
            need_key: true,
            last_duration: HZ / 25,
            ..Default::default()
        }
    }

    /// Numbering init segments from `base` (see [`Window::starting_at`]).
    pub fn starting_at(base: u64) -> Self {
        Cutter {
            init: base,
            ..Cutter::new()
        }
    }

    /// New decoder parameters: a new init segment (when they differ).
    pub fn params(
        &mut self,
        p: wire::Params,
        w: &mut Window,
        unix_secs: i64,
    ) -> Result<(), wire::LiveError> {
        if self.params.as_ref() == Some(&p) {
            return Ok(());
        }
        let init = livemux::init_segment(&p.codec, &p.extra, unix_secs)?;
        self.flush(w);
        self.init += 1;
        w.inits.push((self.init, Bytes::from(init)));
        self.params = Some(p);
        self.need_key = true;
        Ok(())
    }

    /// The stream broke (new upstream, or frames lost): close what is open; what follows
    /// starts on a keyframe after a discontinuity.
    pub fn restart(&mut self, w: &mut Window) {
        self.flush(w);
        self.need_key = true;
        self.discontinuity = true;
    }

    pub fn frame(&mut self, f: wire::Frame, w: &mut Window) {
        if self.params.is_none() || (self.need_key && !f.key) {
            return;
        }
        self.need_key = false;
        if let Some(p) = self.pending.take() {
            let d = f.ts.wrapping_sub(p.ts);
            // A backwards or absurd step (camera clock reset) keeps the last frame rate.
            let d = if d > 0 && d <= 5 * HZ as i64 {
                d as u64
            } else {
                self.last_duration
            };
            self.last_duration = d;
            self.part.push((p, d));
            self.part_ticks += d;
            self.seg_ticks += d;
            if f.key && self.seg_ticks >= SEGMENT_MIN {
                self.close_part(w);
                w.end_segment();
                self.seg_ticks = 0;
            } else if self.part_ticks + d > PART_TARGET {
                self.close_part(w);
                if self.seg_ticks >= SEGMENT_MAX {
                    w.end_segment();
                    self.seg_ticks = 0;
                }
            }
        }
        if w.open().is_none() {
            w.begin_segment(
                self.init,
                std::mem::take(&mut self.discontinuity),
                f.wall_ms,
            );
        }
        self.pending = Some(f);
    }

    fn close_part(&mut self, w: &mut Window) {
        if self.part.is_empty() {
            return;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let samples: Vec<livemux::Sample<'_>> = self
            .part
            .iter()
            .map(|(f, d)| livemux::Sample {
                data: &f.data,
                duration: *d as u32,
                key: f.key,
            })
            .collect();
        let data = livemux::fragment(self.sequence, self.decode, &samples);
        w.push_part(Part {
            data: Bytes::from(data),
            duration: self.part_ticks,
            independent: self.part[0].0.key,
        });
        self.decode += self.part_ticks;
        self.part.clear();
        self.part_ticks = 0;
    }

    /// Puts the pending frame (with the last duration) and the open part out, and closes the
    /// segment.
    fn flush(&mut self, w: &mut Window) {
        if let Some(p) = self.pending.take() {
            let d = self.last_duration;
            self.part.push((p, d));
            self.part_ticks += d;
        }
        self.close_part(w);
        w.end_segment();
        self.seg_ticks = 0;
    }
}

/// One camera's shared LL-HLS stream.
pub struct Stream {
    window: Mutex<Window>,
    changed: watch::Sender<u64>,
    last_use: Mutex<Instant>,
}

impl Stream {
    fn touch(&self) {
        if let Ok(mut t) = self.last_use.lock() {
            *t = Instant::now();
        }
    }

    fn idle(&self) -> bool {
        self.last_use
            .lock()
            .map(|t| t.elapsed() > IDLE)
            .unwrap_or(true)
    }

    /// Waits (up to [`BLOCK_MAX`]) until `f` finds something in the window.
    async fn wait_for<T>(&self, f: impl Fn(&Window) -> Option<T>) -> Option<T> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + BLOCK_MAX;
        loop {
            if let Some(v) = self.window.lock().ok().and_then(|w| f(&w)) {
                return Some(v);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }
}

/// Every camera's LL-HLS stream.
pub struct LlHls {
    streams: Mutex<HashMap<CameraId, Arc<Stream>>>,
}

impl LlHls {
    pub fn new() -> Arc<Self> {
        Arc::new(LlHls {
            streams: Mutex::default(),
        })
    }

    /// Cameras with a running stream.
    pub fn streams(&self) -> usize {
        self.streams.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// The camera's stream, started if needed (reading the feed `hold` gives).
    fn stream(
        self: &Arc<Self>,
        cam: &CameraId,
        hold: impl FnOnce() -> Result<FeedHandle, String>,
    ) -> Result<Arc<Stream>, String> {
        let mut m = self
            .streams
            .lock()
            .map_err(|_| "stream table poisoned".to_string())?;
        if let Some(s) = m.get(cam) {
            s.touch();
            return Ok(s.clone());
        }
        if m.len() >= MAX_STREAMS {
            return Err("too many cameras watched over LL-HLS".into());
        }
        let feed = hold()?;
        let base = (chrono::Utc::now().timestamp_millis() / 100).max(0) as u64;
        let s = Arc::new(Stream {
            window: Mutex::new(Window::starting_at(base)),
            changed: watch::channel(0).0,
            last_use: Mutex::new(Instant::now()),
        });
        m.insert(cam.clone(), s.clone());
        info!(camera = %cam, "LL-HLS stream started");
        tokio::spawn(self.clone().run(cam.clone(), s.clone(), base, feed));
        Ok(s)
    }

    /// Reads the camera's feed into its window until idle.
    async fn run(self: Arc<Self>, cam: CameraId, s: Arc<Stream>, base: u64, feed: FeedHandle) {
        let mut rx = feed.subscribe();
        let mut cutter = Cutter::starting_at(base);
        let mut check = tokio::time::interval(Duration::from_secs(2));
        let mut version = 0u64;
        loop {
            tokio::select! {
                item = rx.next() => {
                    let Some(item) = item else { break };
                    let Ok(mut w) = s.window.lock() else { break };
                    match item {
                        Next::Params(p) => {
                            let codec = p.codec.clone();
                            if let Err(e) = cutter.params((*p).clone(), &mut w, chrono::Utc::now().timestamp()) {
                                warn!(camera = %cam, codec, error = %e, "LL-HLS: cannot mux this stream");
                            }
                        }
                        Next::Frame(f) => cutter.frame(f, &mut w),
                        Next::Gap | Next::Restart => cutter.restart(&mut w),
                    }
                    drop(w);
                    version += 1;
                    s.changed.send_replace(version);
                }
                _ = check.tick() => {
                    if s.idle() {
                        break;
                    }
                }
            }
        }
        drop(rx);
        drop(feed);
        if let Ok(mut m) = self.streams.lock()
            && m.get(&cam).is_some_and(|x| Arc::ptr_eq(x, &s))
        {
            m.remove(&cam);
        }
        info!(camera = %cam, "LL-HLS stream stopped (no viewer)");
    }
}

/// A file under `{cam}/llhls/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asset {
    Playlist,
    Init(u64),
    Segment(u64),
    Part(u64, u32),
}

impl Asset {
    pub fn parse(file: &str) -> Option<Asset> {
        if file == "index.m3u8" {
            return Some(Asset::Playlist);
        }
        let stem = file.strip_suffix(".mp4")?;
        if let Some(n) = stem.strip_prefix("init-") {
            return n.parse().ok().map(Asset::Init);
        }
        match stem.split_once('.') {
            Some((m, p)) => Some(Asset::Part(m.parse().ok()?, p.parse().ok()?)),
            None => stem.parse().ok().map(Asset::Segment),
        }
    }
}

/// `_HLS_msn` and `_HLS_part` of a playlist request.
pub fn blocking_query(query: Option<&str>) -> Result<Option<(u64, Option<u32>)>, String> {
    let (mut msn, mut part) = (None, None);
    for kv in query.unwrap_or("").split('&') {
        match kv.split_once('=') {
            Some(("_HLS_msn", v)) => msn = Some(v.parse::<u64>().map_err(|_| "bad _HLS_msn")?),
            Some(("_HLS_part", v)) => part = Some(v.parse::<u32>().map_err(|_| "bad _HLS_part")?),
            _ => {}
        }
    }
    match (msn, part) {
        (None, Some(_)) => Err("_HLS_part without _HLS_msn".into()),
        (None, None) => Ok(None),
        (Some(m), p) => Ok(Some((m, p))),
    }
}

fn err(code: StatusCode, msg: impl Into<String>) -> crate::ApiError {
    crate::ApiError(code, msg.into())
}

/// `GET {cam}/llhls/{file}`: the LL-HLS playlist, init segments, segments and parts.
pub(crate) async fn serve(
    State(s): State<crate::AppState>,
    UrlPath((ns, name, file)): UrlPath<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = async {
        let cam = s
            .camera_for(&headers, &ns, &name, crate::auth::Permission::Live)
            .await?;
        let Some(up) = s.0.live.as_ref() else {
            return Err(err(
                StatusCode::NOT_FOUND,
                "live view is not configured (--live-token-file)",
            ));
        };
        let asset =
            Asset::parse(&file).ok_or_else(|| err(StatusCode::NOT_FOUND, "no such file"))?;
        let stream = up
            .llhls()
            .stream(&cam, || up.hold(&cam).map_err(|e| e.to_string()))
            .map_err(|m| err(StatusCode::SERVICE_UNAVAILABLE, m))?;
        let mp4 = |b: Body| {
            (
                [
                    (header::CONTENT_TYPE, "video/mp4"),
                    (header::CACHE_CONTROL, "max-age=60"),
                ],
                b,
            )
                .into_response()
        };
        match asset {
            Asset::Playlist => {
                let block =
                    blocking_query(uri.query()).map_err(|m| err(StatusCode::BAD_REQUEST, m))?;
                let ready = |w: &Window| match block {
                    _ if !w.started() => None,
                    None => Some(Ok(w.render())),
                    Some((m, p)) => match w.has(m, p) {
                        Have::Yes => Some(Ok(w.render())),
                        Have::NotYet => None,
                        Have::TooFar => Some(Err(())),
                    },
                };
                match stream.wait_for(ready).await {
                    Some(Ok(text)) => Ok((
                        [
                            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        text,
                    )
                        .into_response()),
                    Some(Err(())) => Err(err(
                        StatusCode::BAD_REQUEST,
                        "_HLS_msn is more than two segments ahead",
                    )),
                    None => {
                        debug!(camera = %cam, "LL-HLS playlist not ready in time");
                        Err(err(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "no live frames from the camera's recorder yet",
                        ))
                    }
                }
            }
            Asset::Init(id) => stream
                .wait_for(|w| w.init(id))
                .await
                .map(|b| mp4(Body::from(b)))
                .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such init segment")),
            Asset::Part(m, p) => {
                // Parts not made yet are held for (the preload hint); older ones are gone.
                let (open, next) = stream
                    .window
                    .lock()
                    .map(|w| w.next_part())
                    .unwrap_or((0, 0));
                let soon = (m, p) == (open, next)
                    || (m == open + 1 && p == 0)
                    || (m == open && p <= next + 1);
                let found = if soon {
                    stream.wait_for(|w| w.part(m, p)).await
                } else {
                    stream.window.lock().ok().and_then(|w| w.part(m, p))
                };
                found
                    .map(|b| mp4(Body::from(b)))
                    .ok_or_else(|| err(StatusCode::NOT_FOUND, "no such part"))
            }
            Asset::Segment(m) => {
                let (open, _) = stream
                    .window
                    .lock()
                    .map(|w| w.next_part())
                    .unwrap_or((0, 0));
                let found = if m == open {
                    stream.wait_for(|w| w.segment(m)).await
                } else {
                    stream.window.lock().ok().and_then(|w| w.segment(m))
                };
                let parts = found.ok_or_else(|| err(StatusCode::NOT_FOUND, "no such segment"))?;
                // The parts as they are, one after the other: no copy per viewer.
                let body = Body::from_stream(futures::stream::iter(
                    parts.into_iter().map(Ok::<_, std::convert::Infallible>),
                ));
                Ok(mp4(body))
            }
        }
    }
    .await;
    crate::counted(&s, "llhls", r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc() -> Bytes {
        // x264 1280x720 High 4:2:0 SPS and a PPS.
        let sps = [
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x19, 0x60,
        ];
        let mut a = vec![1, 0x64, 0, 0x1f, 0xff, 0xe1];
        a.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        a.extend_from_slice(&sps);
        a.extend_from_slice(&[1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb]);
        Bytes::from(a)
    }

    fn params() -> wire::Params {
        wire::Params {
            codec: "avc1.64001f".into(),
            extra: avcc(),
        }
    }

    /// Frames at 25 fps from `ts0`, a keyframe every `gop`.
    fn frames(n: usize, gop: usize, ts0: i64) -> Vec<wire::Frame> {
        (0..n)
            .map(|i| wire::Frame {
                key: i % gop == 0,
                ts: ts0 + i as i64 * 3600,
                wall_ms: 1_700_000_000_000 + i as i64 * 40,
                data: Bytes::from(vec![
                    0,
                    0,
                    0,
                    2,
                    if i % gop == 0 { 0x65 } else { 0x41 },
                    i as u8,
                ]),
            })
            .collect()
    }

    #[test]
    fn parts_of_200_ms_in_segments_on_keyframes() {
        let mut w = Window::default();
        let mut c = Cutter::new();
        c.params(params(), &mut w, 0).unwrap();
        // 2 s GOPs (50 frames), 6 s.
        for f in frames(151, 50, 1000) {
            c.frame(f, &mut w);
        }
        let segs: Vec<_> = w.segments.iter().collect();
        assert_eq!(segs.len(), 4, "3 complete + the open one");
        for s in &segs[..3] {
            assert!(s.complete);
            assert_eq!(s.duration(), 2 * HZ);
            assert_eq!(s.parts.len(), 10);
            assert!(s.parts.iter().all(|p| p.duration == PART_TARGET));
            assert!(s.parts[0].independent && !s.parts[1].independent);
        }
        assert_eq!(segs.iter().map(|s| s.msn).collect::<Vec<_>>(), [0, 1, 2, 3]);
        // Every part is a valid fragment: the init plus all parts of a segment scan whole.
        let mut file = w.init(1).unwrap().to_vec();
        for p in w.segment(1).unwrap() {
            file.extend_from_slice(&p);
        }
        let scan = vigil_media::mp4::scan(&file);
        assert_eq!(scan.valid_len as usize, file.len());
        assert_eq!((scan.fragments, scan.video_samples), (10, 50));
        // Frames before the first keyframe are not shown (a decoder could not start).
        let mut w2 = Window::default();
        let mut c2 = Cutter::new();
        c2.params(params(), &mut w2, 0).unwrap();
        for f in frames(60, 50, 0).into_iter().skip(3) {
            c2.frame(f, &mut w2);
        }
        assert!(w2.segments[0].parts[0].independent);
        assert_eq!(w2.segments[0].wall_ms, 1_700_000_000_000 + 50 * 40);
    }

    #[test]
    fn the_window_is_bounded_and_numbers_go_on() {
        let mut w = Window::default();
        let mut c = Cutter::new();
        c.params(params(), &mut w, 0).unwrap();
        for f in frames(25 * 60, 25, 0) {
            c.frame(f, &mut w);
        }
        assert_eq!(
            w.segments.iter().filter(|s| s.complete).count(),
            WINDOW_SEGMENTS
        );
        assert_eq!(w.segments.back().unwrap().msn, 59);
        assert_eq!(w.segments.front().unwrap().msn, 59 - WINDOW_SEGMENTS as u64);
        assert_eq!(w.inits.len(), 1);
        // A GOP longer than SEGMENT_MAX still ends segments (at part boundaries).
        let mut w = Window::default();
        let mut c = Cutter::new();
        c.params(params(), &mut w, 0).unwrap();
        for f in frames(25 * 20, 1000, 0) {
            c.frame(f, &mut w);
        }
        assert!(
            w.segments
                .iter()
                .filter(|s| s.complete)
                .all(|s| s.duration() == SEGMENT_MAX)
        );
    }

    #[test]
    fn a_new_upstream_is_a_discontinuity_and_time_goes_forward() {
        let mut w = Window::default();
        let mut c = Cutter::new();
        c.params(params(), &mut w, 0).unwrap();
        for f in frames(60, 25, 5000) {
            c.frame(f, &mut w);
        }
        let decode_before = c.decode;
        c.restart(&mut w);
        // The restarted recorder's RTSP session starts at another RTP time, and its GOP cache
        // starts on a keyframe; a non-key frame first is skipped.
        c.params(params(), &mut w, 0).unwrap();
        let mut again = frames(60, 25, -77_777_777);
        again.rotate_left(1);
        for f in again {
            c.frame(f, &mut w);
        }
        let open = w.segments.iter().position(|s| s.discontinuity).unwrap();
        assert!(w.segments[open - 1].complete);
        assert!(c.decode > decode_before);
        let msns: Vec<u64> = w.segments.iter().map(|s| s.msn).collect();
        assert!(msns.windows(2).all(|m| m[1] == m[0] + 1), "{msns:?}");
        let text = w.render();
        assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{text}");
        // Same parameters: the same init segment.
        assert_eq!(text.matches("#EXT-X-MAP").count(), 1, "{text}");
    }

    #[test]
    fn playlist_text() {
        let mut w = Window::default();
        let mut c = Cutter::new();
        c.params(params(), &mut w, 0).unwrap();
        for f in frames(60, 25, 0) {
            c.frame(f, &mut w);
        }
        let text = w.render();
        assert!(text.starts_with("#EXTM3U\n"));
        for line in [
            "#EXT-X-TARGETDURATION:1",
            "#EXT-X-PART-INF:PART-TARGET=0.200",
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.600",
            "#EXT-X-MEDIA-SEQUENCE:0",
            "#EXT-X-MAP:URI=\"init-1.mp4\"",
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z",
            "#EXT-X-PART:DURATION=0.20000,URI=\"0.0.mp4\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.20000,URI=\"0.1.mp4\"",
            "#EXTINF:1.00000,\n0.mp4",
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"2.1.mp4\"",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn blocking_reload_decisions() {
        let mut w = Window::default();
        assert!(!w.started());
        let mut c = Cutter::new();
        c.params(params(), &mut w, 0).unwrap();
        for f in frames(33, 25, 0) {
            c.frame(f, &mut w);
        }
        // Segment 0 complete (5 parts), segment 1 open with 1 part (frames 25..30).
        assert!(w.started());
        assert_eq!(w.next_part(), (1, 1));
        assert_eq!(w.has(0, None), Have::Yes);
        assert_eq!(w.has(1, None), Have::NotYet);
        assert_eq!(w.has(1, Some(0)), Have::Yes);
        assert_eq!(w.has(1, Some(1)), Have::NotYet);
        assert_eq!(
            w.has(0, Some(9)),
            Have::Yes,
            "a later segment's part counts"
        );
        assert_eq!(w.has(3, None), Have::NotYet);
        assert_eq!(w.has(5, Some(0)), Have::TooFar);
        assert!(w.part(1, 0).is_some() && w.part(1, 1).is_none());
        assert!(w.segment(1).is_none() && w.segment(0).is_some());
    }

    #[test]
    fn numbering_from_a_base() {
        let mut w = Window::starting_at(17_962_704_000);
        let mut c = Cutter::starting_at(17_962_704_000);
        c.params(params(), &mut w, 0).unwrap();
        for f in frames(30, 25, 0) {
            c.frame(f, &mut w);
        }
        let text = w.render();
        assert!(
            text.contains("#EXT-X-MEDIA-SEQUENCE:17962704000\n"),
            "{text}"
        );
        assert!(
            text.contains("#EXT-X-MAP:URI=\"init-17962704001.mp4\""),
            "{text}"
        );
        assert!(text.contains("URI=\"17962704001.0.mp4\""), "{text}");
        assert!(w.init(17_962_704_001).is_some());
        assert_eq!(w.has(17_962_704_000, None), Have::Yes);
    }

    #[test]
    fn request_parsing() {
        assert_eq!(Asset::parse("index.m3u8"), Some(Asset::Playlist));
        assert_eq!(Asset::parse("init-3.mp4"), Some(Asset::Init(3)));
        assert_eq!(Asset::parse("17.mp4"), Some(Asset::Segment(17)));
        assert_eq!(Asset::parse("17.4.mp4"), Some(Asset::Part(17, 4)));
        for bad in [
            "x.mp4",
            "17.4.5.mp4",
            "17",
            "init-.mp4",
            "../17.mp4",
            "-1.mp4",
        ] {
            assert_eq!(Asset::parse(bad), None, "{bad}");
        }
        assert_eq!(blocking_query(None), Ok(None));
        assert_eq!(
            blocking_query(Some("_HLS_msn=4&_HLS_part=2")),
            Ok(Some((4, Some(2))))
        );
        assert_eq!(
            blocking_query(Some("_HLS_msn=4&_HLS_skip=YES")),
            Ok(Some((4, None)))
        );
        assert!(blocking_query(Some("_HLS_part=2")).is_err());
        assert!(blocking_query(Some("_HLS_msn=x")).is_err());
    }
}
