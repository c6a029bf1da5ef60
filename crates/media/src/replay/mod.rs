//! Replay client: pulls recorded footage from a camera's edge storage over RTSP.
//!
//! * ONVIF Profile G replay: `Require: onvif-replay`, `Range: clock=<start>-<end>`,
//!   `Rate-Control: no` (as fast as the link allows); every frame is placed at its absolute
//!   time from the RTP header extension 0xABAC.
//! * Vendor playback URLs (Hikvision/Dahua templates): plain RTSP in real time; frame times are
//!   the window start plus the RTP time since the first frame.
//!
//! Only the video stream is set up (backfill stores video; audio stays on the SD card).

pub mod depack;
pub mod rtp;
pub mod rtsp;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{debug, info};
use url::Url;

use crate::error::{Error, Result};
use depack::{Codec, Depacketizer};
use rtsp::{Conn, Message};
use vigil_api::redact::Credentials;
use vigil_api::redact::redact_url;

/// A token bucket on bytes read; rate 0 means unlimited.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_s: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    pub fn new(mbps: f64) -> Self {
        let bytes_per_s = if mbps > 0.0 { mbps * 1e6 / 8.0 } else { 0.0 };
        Throttle {
            bytes_per_s,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    /// Accounts for `n` bytes read, sleeping while the bucket is in debt. Burst: 0.25 s.
    pub async fn take(&mut self, n: usize) {
        if self.bytes_per_s <= 0.0 {
            return;
        }
        let now = Instant::now();
        let burst = self.bytes_per_s / 4.0;
        self.tokens = (self.tokens
            + now.duration_since(self.last).as_secs_f64() * self.bytes_per_s)
            .min(burst);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / self.bytes_per_s)).await;
        }
    }
}

/// Largest camera/recorder clock offset corrected by `align_ms`. The live recorder stamps
/// frames on receipt, so its timeline trails the camera's by the stream's latency (measured
/// ~0.5 s against the simulator); beyond this the first replayed keyframe is not taken to be
/// the live boundary's (with 1 s GOPs it could be the neighbouring one).
pub const MAX_ALIGN_MS: i64 = 750;

/// A video access unit placed on the wall clock.
#[derive(Debug)]
pub struct Frame {
    pub unix_us: i64,
    /// 4-byte length-prefixed NAL units.
    pub data: Vec<u8>,
    pub key: bool,
    pub damaged: bool,
    /// The camera says the footage is not continuous before this frame (ONVIF D flag).
    pub discontinuity: bool,
}

/// Receives the stream.
pub trait Sink {
    /// The sink's own error (e.g. the store's), into which the replay's errors convert.
    type Error: From<Error>;
    /// Called once, before the first frame, with the SDP's format parameters.
    fn start(&mut self, codec: Codec, fmtp: Option<&str>) -> Result<(), Self::Error>;
    fn frame(&mut self, f: Frame) -> impl std::future::Future<Output = Result<(), Self::Error>>;
}

/// How frame times are found.
#[derive(Clone, Copy, Debug)]
pub enum Timing {
    /// ONVIF replay asking for `[start_ms, end_ms)`, absolute times from 0xABAC, frames at or
    /// after `clip_end_ms` dropped. With `align_ms`, the first frame (a keyframe) is taken to
    /// be the one the live recorder stamped `align_ms` when they are within
    /// `MAX_ALIGN_MS`: live times come from the recorder's receive clock, replay times from the
    /// camera's, and without this the two disagree by the stream's latency (tens of ms) or the
    /// camera's clock error, leaving overlaps or slivers at the seams.
    Onvif {
        start_ms: i64,
        end_ms: i64,
        clip_end_ms: i64,
        align_ms: Option<i64>,
    },
    /// Plain RTSP: the first frame is at `base_ms`; stop at `end_ms`.
    Relative { base_ms: i64, end_ms: i64 },
}

#[derive(Clone, Debug, Default)]
pub struct PlayStats {
    pub frames: u64,
    pub bytes: u64,
    pub first_us: Option<i64>,
    pub last_us: Option<i64>,
    pub stopped: &'static str,
}

/// `20260102T030405.123Z`, the ONVIF `Range: clock=` format.
pub fn clock_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
}

/// Plays `url` (credentials out of the URL) into `sink`, connecting by `route` (only to an
/// address its policy allows, or through the camera's site tunnel).
#[allow(clippy::too_many_arguments)]
pub async fn play<S: Sink>(
    url: &Url,
    creds: Option<Credentials>,
    route: &crate::netguard::Route,
    timing: Timing,
    read_timeout: Duration,
    deadline: Instant,
    throttle: &mut Throttle,
    sink: &mut S,
) -> Result<PlayStats, S::Error> {
    let onvif = matches!(timing, Timing::Onvif { .. });
    let req_url = url.as_str().to_string();
    let mut conn = Conn::connect(url, creds, read_timeout, route).await?;
    let require: Vec<(&str, String)> = if onvif {
        vec![("Require", "onvif-replay".to_string())]
    } else {
        Vec::new()
    };
    conn.request("OPTIONS", &req_url, &[], throttle).await?;
    let mut h = require.clone();
    h.push(("Accept", "application/sdp".into()));
    let d = conn.request("DESCRIBE", &req_url, &h, throttle).await?;
    let base = d
        .header("content-base")
        .or_else(|| d.header("content-location"))
        .unwrap_or(&req_url)
        .to_string();
    let medias = rtsp::parse_sdp(&String::from_utf8_lossy(&d.body), &base);
    let video = medias
        .iter()
        .find(|m| m.kind == "video")
        .ok_or_else(|| Error::Stream(format!("{}: no video stream", redact_url(url))))?;
    let codec = match video.encoding.as_deref() {
        Some("h264") => Codec::H264,
        Some("h265") => Codec::H265,
        other => {
            return Err(Error::Stream(format!(
                "{}: unsupported video encoding {:?}",
                redact_url(url),
                other.map(vigil_api::redact::peer_summary)
            ))
            .into());
        }
    };
    let clock = i64::from(video.clock_rate.unwrap_or(90_000).max(1));
    let mut h = require.clone();
    h.push(("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1".into()));
    let s = conn.request("SETUP", &video.control, &h, throttle).await?;
    let channel = s
        .header("transport")
        .and_then(rtsp::interleaved_channel)
        .unwrap_or(0);
    let mut h = require.clone();
    match timing {
        Timing::Onvif {
            start_ms, end_ms, ..
        } => {
            h.push((
                "Range",
                format!("clock={}-{}", clock_time(start_ms), clock_time(end_ms)),
            ));
            h.push(("Rate-Control", "no".into()));
        }
        Timing::Relative { .. } => h.push(("Range", "npt=0.000-".into())),
    }
    let play_url = base.trim_end_matches('/').to_string();
    let p = conn.request("PLAY", &play_url, &h, throttle).await?;
    debug!(range = ?p.header("range"), "PLAY accepted");
    sink.start(codec, video.fmtp.as_deref())?;

    let (end_us, align_us) = match timing {
        Timing::Onvif {
            clip_end_ms,
            align_ms,
            ..
        } => (clip_end_ms * 1000, align_ms.map(|a| a * 1000)),
        Timing::Relative { end_ms, .. } => (end_ms * 1000, None),
    };
    let mut offset_us: Option<i64> = None;
    let mut depack = Depacketizer::new(codec);
    let mut stats = PlayStats::default();
    // First 0xABAC time seen per RTP timestamp (recent ones only).
    let mut ext_times: VecDeque<(u32, i64, bool)> = VecDeque::new();
    let mut last_ext: Option<(u32, i64)> = None;
    let mut first_rtp: Option<(u32, i64)> = None; // (ts, unwrapped)
    let mut prev_rtp: Option<(u32, i64)> = None;
    let mut pending: VecDeque<(u8, Vec<u8>)> = std::mem::take(&mut conn.pending).into();
    let mut done = false;
    // Servers keep sending RTCP after the last frame, so the end of a replay without the T
    // flag shows as video silence, not as a read timeout.
    let idle_limit = read_timeout.min(Duration::from_secs(5));
    let mut last_video = Instant::now();
    let mut terminal_seen = false;
    while !done {
        if stats.frames > 0 && last_video.elapsed() > idle_limit {
            stats.stopped = "idle";
            break;
        }
        if stats.frames == 0 && last_video.elapsed() > read_timeout {
            return Err(Error::Rtsp(format!(
                "{}: no video within {} s of PLAY",
                redact_url(url),
                read_timeout.as_secs()
            ))
            .into());
        }
        if Instant::now() > deadline {
            stats.stopped = "deadline";
            break;
        }
        let (ch, data) = match pending.pop_front() {
            Some(x) => x,
            None => match conn.next_message(throttle).await {
                Ok(Some(Message::Interleaved { channel, data })) => (channel, data),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    stats.stopped = "connection closed";
                    break;
                }
                // An idle connection after footage arrived is the end of the replay on
                // servers that do not set the T flag; what is missing shows in the re-list.
                Err(e) if stats.frames > 0 => {
                    debug!(error = %e, "replay idle; treating as end");
                    stats.stopped = "idle";
                    break;
                }
                Err(e) => return Err(e.into()),
            },
        };
        if ch != channel {
            continue;
        }
        last_video = Instant::now();
        if stats.frames == 0 {
            conn.read_timeout = idle_limit;
        }
        let Ok(pkt) = rtp::parse(&data) else { continue };
        if let Some(o) = pkt.onvif {
            if ext_times.back().is_none_or(|b| b.0 != pkt.timestamp) {
                ext_times.push_back((pkt.timestamp, o.unix_us, o.discontinuity));
                if ext_times.len() > 64 {
                    ext_times.pop_front();
                }
            }
            last_ext = Some((pkt.timestamp, o.unix_us));
        }
        // T marks the end of the replay; the access unit it belongs to ends at the marker.
        terminal_seen |= pkt.onvif.is_some_and(|o| o.terminal);
        let terminal = terminal_seen && pkt.marker;
        depack.push(pkt.sequence, pkt.timestamp, pkt.marker, pkt.payload);
        if terminal {
            depack.flush();
        }
        while let Some(au) = depack.pull() {
            let ts = au.rtp_timestamp;
            let unwrapped = match prev_rtp {
                None => i64::from(ts),
                Some((p, u)) => u + i64::from(ts.wrapping_sub(p) as i32),
            };
            prev_rtp = Some((ts, unwrapped));
            let first = *first_rtp.get_or_insert((ts, unwrapped));
            let (unix_us, disc) = match timing {
                Timing::Onvif { .. } => {
                    match ext_times.iter().rev().find(|e| e.0 == ts) {
                        Some(e) => (e.1, e.2),
                        None => match last_ext {
                            Some((lt, lu)) => (
                                lu + i64::from(ts.wrapping_sub(lt) as i32) * 1_000_000 / clock,
                                false,
                            ),
                            // No absolute time at all: cannot place the frame.
                            None => continue,
                        },
                    }
                }
                Timing::Relative { base_ms, .. } => (
                    base_ms * 1000 + (unwrapped - first.1) * 1_000_000 / clock,
                    false,
                ),
            };
            let off = *offset_us.get_or_insert_with(|| match align_us {
                Some(a) if (a - unix_us).abs() <= MAX_ALIGN_MS * 1000 => a - unix_us,
                _ => 0,
            });
            let unix_us = unix_us + off;
            if unix_us >= end_us {
                stats.stopped = "window end";
                done = true;
                break;
            }
            let key = depack::is_keyframe(codec, &au.data);
            stats.frames += 1;
            stats.bytes += au.data.len() as u64;
            stats.first_us.get_or_insert(unix_us);
            stats.last_us = Some(unix_us);
            sink.frame(Frame {
                unix_us,
                data: au.data,
                key,
                damaged: au.damaged,
                discontinuity: disc,
            })
            .await?;
        }
        if terminal {
            stats.stopped = "end of replay (T)";
            break;
        }
    }
    // Best effort: the server frees the session sooner.
    conn.read_timeout = Duration::from_secs(2);
    let _ = conn.request("TEARDOWN", &play_url, &[], throttle).await;
    stats.bytes = conn.bytes_read;
    info!(
        url = %redact_url(url),
        frames = stats.frames,
        bytes = stats.bytes,
        stopped = stats.stopped,
        "replay finished"
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_format() {
        assert_eq!(clock_time(1_767_323_045_123), "20260102T030405.123Z");
    }

    #[tokio::test]
    async fn throttle_paces() {
        let mut t = Throttle::new(8.0); // 1 MB/s
        let start = Instant::now();
        for _ in 0..10 {
            t.take(50_000).await;
        }
        // 500 kB at 1 MB/s: ~0.5 s minus the 0.25 s burst allowance never exceeded.
        assert!(start.elapsed() >= Duration::from_millis(400));
    }
}
