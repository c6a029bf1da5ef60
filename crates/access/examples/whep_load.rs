//! WebRTC viewers per core (issue 14, docs/benchmarks.md): N WHEP viewers of one camera, each
//! a real WebRTC receiver (str0m: ICE, DTLS, SRTP) on its own UDP socket, without a browser.
//!
//! `whep_load --url URL --viewers N --seconds S [--pid PID] [--rec-pid PID] [--ramp-ms MS]
//! [--warmup S]`
//!
//! Opens N sessions one after another (`--ramp-ms` apart, default 20), waits `--warmup`
//! seconds (default 4) after the last one connected, then counts for S seconds what every
//! viewer receives (RTP payload bytes, packets, H.264 keyframes) and, with `--pid`, the CPU time
//! (utime + stime from `/proc/PID/stat`) and resident memory of that process (the access point)
//! over the same window (and with `--rec-pid` the recorder's CPU). Also prints each viewer's
//! time from its offer to its first keyframe.
//! Prints one `density:` line with the figures, and per-viewer bitrates (min / p10 / median /
//! max); `served` counts the viewers that received at least 90 % of `--expect-kbps` (the
//! camera's bitrate), and viewers per core is served viewers / access point CPU. With N = 0 it
//! measures the process alone (the baseline).
//!
//! `e2e/ui/live_load.sh` starts the simulator, a recorder and access points and runs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, RtcConfig};
use tokio::net::UdpSocket;

type Fail = Box<dyn std::error::Error + Send + Sync>;

#[derive(Default)]
struct Stats {
    bytes: AtomicU64,
    packets: AtomicU64,
    keyframes: AtomicU64,
    /// Offer → ICE/DTLS connected, and offer → first keyframe packet (ms; 0: not yet).
    connected_ms: AtomicU64,
    first_key_ms: AtomicU64,
    failed: AtomicBool,
}

/// Whether an H.264 RTP payload (RFC 6184) starts an IDR slice: alone, or the first fragment
/// of an FU-A (the parameter sets before it come in their own packet).
fn starts_keyframe(p: &[u8]) -> bool {
    match p.first().map(|b| b & 0x1f) {
        Some(28) => p.get(1).is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
        Some(t) => t == 5,
        None => false,
    }
}

async fn viewer(
    http: reqwest::Client,
    url: String,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Fail> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let start = Instant::now();
    let mut rtc = RtcConfig::new()
        .clear_codecs()
        .enable_h264(true)
        .set_rtp_mode(true)
        .build(start);
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().ok_or("no offer")?;
    let resp = http
        .post(&url)
        .header("content-type", "application/sdp")
        .body(offer.to_sdp_string())
        .send()
        .await?;
    let status = resp.status();
    let body = resp.text().await?;
    if status.as_u16() != 201 {
        return Err(format!("WHEP answered {status}: {body}").into());
    }
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&body)?)?;
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let deadline = loop {
            match rtc.poll_output()? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(Event::Connected) => {
                    let ms = start.elapsed().as_millis().max(1) as u64;
                    stats.connected_ms.store(ms, Ordering::Relaxed);
                }
                Output::Event(Event::RtpPacket(p)) => {
                    stats
                        .bytes
                        .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
                    stats.packets.fetch_add(1, Ordering::Relaxed);
                    if starts_keyframe(&p.payload) {
                        stats.keyframes.fetch_add(1, Ordering::Relaxed);
                        if stats.first_key_ms.load(Ordering::Relaxed) == 0 {
                            let ms = start.elapsed().as_millis().max(1) as u64;
                            stats.first_key_ms.store(ms, Ordering::Relaxed);
                        }
                    }
                }
                Output::Event(_) => {}
            }
        };
        if !rtc.is_alive() {
            return Err("session ended".into());
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        let input = tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                let Ok(contents) = buf[..n].try_into() else { continue };
                Input::Receive(Instant::now(), Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: local,
                    contents,
                })
            }
            _ = tokio::time::sleep(wait) => Input::Timeout(Instant::now()),
        };
        rtc.handle_input(input)?;
    }
    Ok(())
}

/// utime + stime (clock ticks) and VmRSS (KiB) of a process.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: Option<T>) -> Result<T, Fail> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name}: bad value").into()),
        None => default.ok_or_else(|| format!("{name} is required").into()),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Fail> {
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, "--url", None)?;
    let n: usize = arg(&args, "--viewers", None)?;
    let secs: f64 = arg(&args, "--seconds", Some(10.0))?;
    let pid: u32 = arg(&args, "--pid", Some(0))?;
    let rec_pid: u32 = arg(&args, "--rec-pid", Some(0))?;
    let ramp = Duration::from_millis(arg(&args, "--ramp-ms", Some(20))?);
    let warmup = Duration::from_secs_f64(arg(&args, "--warmup", Some(4.0))?);
    let clk_tck: f64 = arg(&args, "--clk-tck", Some(100.0))?;
    // The camera's bitrate: a viewer receiving at least 90 % of it counts as served.
    let expect_kbps: f64 = arg(&args, "--expect-kbps", Some(0.0))?;
    str0m::crypto::from_feature_flags().install_process_default();

    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let stats: Vec<Arc<Stats>> = (0..n).map(|_| Arc::default()).collect();
    let rss_before = if pid > 0 { proc_usage(pid) } else { None };
    let mut tasks = Vec::new();
    for s in &stats {
        let (http, url, s, stop) = (http.clone(), url.clone(), s.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = viewer(http, url, s.clone(), stop).await {
                s.failed.store(true, Ordering::Relaxed);
                eprintln!("viewer failed: {e}");
            }
        }));
        tokio::time::sleep(ramp).await;
    }
    // Until every viewer connected (or failed), at most 30 s, then the warm-up.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30)
        && stats.iter().any(|s| {
            s.connected_ms.load(Ordering::Relaxed) == 0 && !s.failed.load(Ordering::Relaxed)
        })
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(warmup).await;

    let b0: Vec<u64> = stats
        .iter()
        .map(|s| s.bytes.load(Ordering::Relaxed))
        .collect();
    let p0: u64 = stats
        .iter()
        .map(|s| s.packets.load(Ordering::Relaxed))
        .sum();
    let k0: Vec<u64> = stats
        .iter()
        .map(|s| s.keyframes.load(Ordering::Relaxed))
        .collect();
    let u0 = if pid > 0 { proc_usage(pid) } else { None };
    let r0 = if rec_pid > 0 {
        proc_usage(rec_pid)
    } else {
        None
    };
    let t0 = Instant::now();
    println!("MEASURE_START viewers={n}");
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let u1 = if pid > 0 { proc_usage(pid) } else { None };
    let r1 = if rec_pid > 0 {
        proc_usage(rec_pid)
    } else {
        None
    };
    let window = t0.elapsed().as_secs_f64();
    let p1: u64 = stats
        .iter()
        .map(|s| s.packets.load(Ordering::Relaxed))
        .sum();
    stop.store(true, Ordering::Relaxed);

    let mut kbps: Vec<f64> = stats
        .iter()
        .zip(&b0)
        .map(|(s, b)| (s.bytes.load(Ordering::Relaxed) - b) as f64 * 8.0 / window / 1000.0)
        .collect();
    let keys_min = stats
        .iter()
        .zip(&k0)
        .map(|(s, k)| s.keyframes.load(Ordering::Relaxed) - k)
        .min()
        .unwrap_or(0);
    let connected = stats
        .iter()
        .filter(|s| s.connected_ms.load(Ordering::Relaxed) > 0)
        .count();
    let failed = stats
        .iter()
        .filter(|s| s.failed.load(Ordering::Relaxed))
        .count();
    let mut first_key: Vec<f64> = stats
        .iter()
        .map(|s| s.first_key_ms.load(Ordering::Relaxed) as f64)
        .filter(|&ms| ms > 0.0)
        .collect();
    first_key.sort_by(f64::total_cmp);
    kbps.sort_by(f64::total_cmp);
    let total_mbps = kbps.iter().sum::<f64>() / 1000.0;
    let served = kbps.iter().filter(|&&k| k >= 0.9 * expect_kbps).count();
    let (cpu, rss) = match (u0, u1) {
        (Some((c0, _)), Some((c1, r1))) => ((c1 - c0) as f64 / clk_tck / window, r1),
        _ => (0.0, 0),
    };
    let rec_cpu = match (r0, r1) {
        (Some((c0, _)), Some((c1, _))) => (c1 - c0) as f64 / clk_tck / window,
        _ => 0.0,
    };
    let rss0 = rss_before.map(|(_, r)| r).unwrap_or(0);
    println!(
        "viewer kbps: min {:.0} p10 {:.0} median {:.0} max {:.0}; keyframes per viewer in the window (min) {keys_min}; \
         offer→first keyframe ms: p50 {:.0} p95 {:.0} max {:.0} ({} of {n})",
        percentile(&kbps, 0.0),
        percentile(&kbps, 0.1),
        percentile(&kbps, 0.5),
        percentile(&kbps, 1.0),
        percentile(&first_key, 0.5),
        percentile(&first_key, 0.95),
        percentile(&first_key, 1.0),
        first_key.len(),
    );
    println!(
        "density: viewers={n} connected={connected} failed={failed} served={served} window_s={window:.1} \
         received_mbps={total_mbps:.1} rtp_packets_per_s={:.0} access_cpu_cores={cpu:.3} \
         served_viewers_per_core={:.0} rss_kib_before={rss0} rss_kib_during={rss} kib_per_viewer={:.0} \
         recorder_cpu_cores={rec_cpu:.3}",
        (p1 - p0) as f64 / window,
        if cpu > 0.0 { served as f64 / cpu } else { 0.0 },
        if n > 0 {
            (rss as f64 - rss0 as f64) / n as f64
        } else {
            0.0
        },
    );
    for t in tasks {
        t.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn keyframe_starts() {
        use super::starts_keyframe;
        assert!(starts_keyframe(&[0x65, 0x88]));
        assert!(!starts_keyframe(&[0x67, 0x42]));
        assert!(!starts_keyframe(&[0x41, 0x9a]));
        // FU-A start of an IDR; FU-A middle of an IDR.
        assert!(starts_keyframe(&[0x7c, 0x85]));
        assert!(!starts_keyframe(&[0x7c, 0x05]));
        assert!(!starts_keyframe(&[]));
    }
}
