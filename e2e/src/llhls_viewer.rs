//! A headless LL-HLS viewer for the live tests: it plays a camera's LL-HLS playlist through the
//! access point as a low-latency player does (RFC 8216bis: blocking playlist reloads
//! `_HLS_msn`/`_HLS_part` for the next part, then that part, starting at the newest independent
//! part) and keeps every part with the time it arrived. Afterwards [`Recording::frames`] decodes
//! the parts (init segment + the parts of each segment, ffmpeg) and reads the clock the camera
//! simulator burns into every frame, so a test can tell when the picture moved and how long it
//! froze.
//!
//! A `503` (the access point held the blocking request for its maximum without a new part) or a
//! failed connection is retried after 100 ms, as players do; each is counted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vigil_testkit::frames::{Overlay, decode_segment};

/// One part as listed by the playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub msn: u64,
    pub part: u32,
    pub uri: String,
    /// The `EXT-X-MAP` URI in force.
    pub init: String,
    pub independent: bool,
    /// Its segment follows an `EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

/// The parts a media playlist lists (`EXT-X-PART`), in order. Parts whose URI is not
/// `<msn>.<part>.mp4` (the access point's naming) are left out.
pub fn listed_parts(playlist: &str) -> Vec<Listed> {
    let mut out = vec![];
    let mut init = String::new();
    let mut pending_disc = false;
    let mut disc_msn: Option<u64> = None;
    for line in playlist.lines() {
        if line == "#EXT-X-DISCONTINUITY" {
            pending_disc = true;
        } else if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            if let Some(u) = attr(rest, "URI") {
                init = u;
            }
        } else if let Some(rest) = line.strip_prefix("#EXT-X-PART:") {
            let Some(uri) = attr(rest, "URI") else {
                continue;
            };
            let Some((msn, part)) = part_numbers(&uri) else {
                continue;
            };
            if pending_disc {
                disc_msn = Some(msn);
                pending_disc = false;
            }
            out.push(Listed {
                msn,
                part,
                uri,
                init: init.clone(),
                independent: rest.contains("INDEPENDENT=YES"),
                discontinuity: disc_msn == Some(msn),
            });
        } else if !line.starts_with('#') && !line.is_empty() {
            // A complete segment's URI (`<msn>.mp4`) ends that segment.
            if pending_disc {
                disc_msn = line.strip_suffix(".mp4").and_then(|m| m.parse().ok());
                pending_disc = false;
            }
        }
    }
    out
}

/// The value of attribute `name` in an attribute list (`A=1,URI="x",B=YES`).
fn attr(list: &str, name: &str) -> Option<String> {
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let (v, n) = q.split_once('"')?;
            (v, n.strip_prefix(',').unwrap_or(n))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

/// `(msn, part)` of a part URI `<msn>.<part>.mp4`.
fn part_numbers(uri: &str) -> Option<(u64, u32)> {
    let (m, p) = uri.strip_suffix(".mp4")?.split_once('.')?;
    Some((m.parse().ok()?, p.parse().ok()?))
}

/// The number of samples (frames) in an fMP4 fragment: its `moof/traf/trun` sample count.
pub fn fragment_samples(data: &[u8]) -> Option<u32> {
    fn child<'a>(mut b: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
        while b.len() >= 8 {
            let size = u32::from_be_bytes(b[0..4].try_into().ok()?) as usize;
            if size < 8 || size > b.len() {
                return None;
            }
            if &b[4..8] == kind {
                return Some(&b[8..size]);
            }
            b = &b[size..];
        }
        None
    }
    let trun = child(child(child(data, b"moof")?, b"traf")?, b"trun")?;
    Some(u32::from_be_bytes(trun.get(4..8)?.try_into().ok()?))
}

/// A part as the viewer got it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub listed: Listed,
    /// Unix ms when its last byte arrived.
    pub arrived_ms: i64,
    pub data: Vec<u8>,
}

/// What a viewer got.
#[derive(Debug, Default)]
pub struct Recording {
    pub parts: Vec<Fetched>,
    pub inits: BTreeMap<String, Vec<u8>>,
    pub playlists: usize,
    /// Requests answered with something other than 200, or failed: (unix ms, what).
    pub errors: Vec<(i64, String)>,
    /// Parts listed after the last one fetched that the viewer never saw (it fell behind).
    pub skipped: usize,
}

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub msn: u64,
    pub part: u32,
    /// When the part holding it arrived (unix ms).
    pub arrived_ms: i64,
    /// The UTC ms burnt into it; `None` when unreadable.
    pub burnt_ms: Option<i64>,
}

impl Recording {
    /// Every frame of the parts, in playlist order: each segment's run of parts from its first
    /// (independent) part, behind its init segment, decoded with ffmpeg (`dir` holds the files).
    pub fn frames(&self, overlay: &Overlay, dir: &Path) -> Vec<Frame> {
        let mut out = vec![];
        let mut by_segment: BTreeMap<u64, Vec<&Fetched>> = BTreeMap::new();
        for p in &self.parts {
            by_segment.entry(p.listed.msn).or_default().push(p);
        }
        for (msn, parts) in by_segment {
            // The run from the first part on: a later part cannot be decoded alone.
            let run: Vec<&Fetched> = parts
                .iter()
                .enumerate()
                .take_while(|(i, p)| {
                    p.listed.part == *i as u32 && p.listed.init == parts[0].listed.init
                })
                .map(|(_, p)| *p)
                .collect();
            let (Some(first), Some(init)) = (run.first(), self.inits.get(&parts[0].listed.init))
            else {
                continue;
            };
            if !first.listed.independent {
                continue;
            }
            let file = dir.join(format!("{msn}.mp4"));
            let mut bytes = init.clone();
            for p in &run {
                bytes.extend_from_slice(&p.data);
            }
            if std::fs::write(&file, &bytes).is_err() {
                continue;
            }
            let decoded = match decode_segment(&file, overlay) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("segment {msn}: {e}");
                    continue;
                }
            };
            let mut frames = decoded.iter();
            for p in &run {
                for _ in 0..fragment_samples(&p.data).unwrap_or(0) {
                    let Some(f) = frames.next() else { break };
                    out.push(Frame {
                        msn,
                        part: p.listed.part,
                        arrived_ms: p.arrived_ms,
                        burnt_ms: f.burnt_ms,
                    });
                }
            }
        }
        out
    }
}

/// A minimal HTTP/1.0 GET on loopback: status and body.
fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    let sock = addr
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad address {addr}")))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1))?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut all = vec![];
    s.read_to_end(&mut all)?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&all[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, all[end + 4..].to_vec()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A viewer running on its own thread until [`Viewer::stop`].
pub struct Viewer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Recording>,
}

impl Viewer {
    /// Starts watching `/api/v1/cameras/{ns}/{name}/llhls/` on the access point at `addr`.
    pub fn start(addr: &str, namespace: &str, camera: &str) -> Viewer {
        let stop = Arc::new(AtomicBool::new(false));
        let base = format!("/api/v1/cameras/{namespace}/{camera}/llhls");
        let (addr, flag) = (addr.to_string(), stop.clone());
        let thread = std::thread::spawn(move || watch(&addr, &base, &flag));
        Viewer { stop, thread }
    }

    /// Stops (within one blocking request) and returns what was seen.
    pub fn stop(self) -> Recording {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the LL-HLS viewer thread")
    }
}

fn watch(addr: &str, base: &str, stop: &AtomicBool) -> Recording {
    let mut rec = Recording::default();
    let timeout = Duration::from_secs(10);
    // The last part fetched.
    let mut last: Option<(u64, u32)> = None;
    while !stop.load(Ordering::SeqCst) {
        let query = match last {
            Some((m, p)) => format!("?_HLS_msn={m}&_HLS_part={}", p + 1),
            None => String::new(),
        };
        let playlist = match get(addr, &format!("{base}/index.m3u8{query}"), timeout) {
            Ok((200, body)) => String::from_utf8_lossy(&body).into_owned(),
            Ok((code, _)) => {
                rec.errors.push((now_ms(), format!("playlist {code}")));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            Err(e) => {
                rec.errors.push((now_ms(), format!("playlist: {e}")));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        rec.playlists += 1;
        let listed = listed_parts(&playlist);
        let todo: Vec<Listed> = match last {
            Some(l) => listed.into_iter().filter(|p| (p.msn, p.part) > l).collect(),
            // Start at the newest independent part, as a player joining at the live edge.
            None => {
                let from = listed.iter().rposition(|p| p.independent).unwrap_or(0);
                listed.into_iter().skip(from).collect()
            }
        };
        for p in todo {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Some((m, n)) = last
                && (p.msn, p.part) != (m, n + 1)
                && (p.msn, p.part) != (m + 1, 0)
                && !(p.msn > m && p.part == 0 && p.discontinuity)
            {
                rec.skipped += 1;
            }
            if !rec.inits.contains_key(&p.init) {
                match get(addr, &format!("{base}/{}", p.init), timeout) {
                    Ok((200, body)) => {
                        rec.inits.insert(p.init.clone(), body);
                    }
                    other => {
                        rec.errors
                            .push((now_ms(), format!("init {}: {other:?}", p.init)));
                        break;
                    }
                }
            }
            match get(addr, &format!("{base}/{}", p.uri), timeout) {
                Ok((200, data)) => {
                    last = Some((p.msn, p.part));
                    rec.parts.push(Fetched {
                        listed: p,
                        arrived_ms: now_ms(),
                        data,
                    });
                }
                Ok((code, _)) => {
                    rec.errors
                        .push((now_ms(), format!("part {} {code}", p.uri)));
                    break;
                }
                Err(e) => {
                    rec.errors.push((now_ms(), format!("part {}: {e}", p.uri)));
                    break;
                }
            }
        }
    }
    rec
}

/// The picture a viewer saw around an event at `event_ms`: when it moved last before it and
/// again after it, and the longest it stood still.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Around {
    /// Frames decoded and read.
    pub frames: usize,
    pub unreadable: usize,
    /// The longest time between the arrival of two parts that moved the picture on (a later
    /// burnt-in time than any before), in the window, ms.
    pub longest_still_ms: i64,
    /// The same before the event only (the baseline: parts come every ~200 ms).
    pub still_before_ms: i64,
    /// `event_ms` → arrival of the first frame burnt after `event_ms + after_ms`, ms.
    pub back_after_ms: Option<i64>,
    /// The most the burnt-in clock went back between two frames in a row, ms (a replayed
    /// stretch of picture).
    pub rewind_ms: i64,
    /// Burnt-in time of the last frame minus that of the first frame after the event.
    pub moving_after_ms: i64,
}

/// Judges `frames` (in playlist order) around `event_ms`; see [`Around`].
pub fn around(frames: &[Frame], event_ms: i64, after_ms: i64) -> Around {
    let readable: Vec<(i64, i64)> = frames
        .iter()
        .filter_map(|f| Some((f.arrived_ms, f.burnt_ms?)))
        .collect();
    let mut longest_still_ms = 0;
    let mut still_before_ms = 0;
    let mut rewind_ms = 0;
    let mut newest: Option<(i64, i64)> = None; // (arrived, burnt) of the newest picture
    let mut prev_burnt: Option<i64> = None;
    for &(arrived, burnt) in &readable {
        if let Some(p) = prev_burnt {
            rewind_ms = rewind_ms.max(p - burnt);
        }
        prev_burnt = Some(burnt);
        match newest {
            Some((at, b)) if burnt > b => {
                longest_still_ms = longest_still_ms.max(arrived - at);
                if arrived <= event_ms {
                    still_before_ms = still_before_ms.max(arrived - at);
                }
                newest = Some((arrived, burnt));
            }
            None => newest = Some((arrived, burnt)),
            _ => {}
        }
    }
    let first_after = readable
        .iter()
        .find(|(_, b)| *b > event_ms + after_ms)
        .copied();
    Around {
        frames: frames.len(),
        unreadable: frames.len() - readable.len(),
        longest_still_ms,
        still_before_ms,
        back_after_ms: first_after.map(|(a, _)| a - event_ms),
        rewind_ms,
        moving_after_ms: match (first_after, readable.last()) {
            (Some((_, b0)), Some((_, b1))) => b1 - b0,
            _ => 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:1\n\
        #EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-MAP:URI=\"init-1.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2026-12-03T07:00:00.000Z\n#EXTINF:1.00000,\n10.mp4\n\
        #EXT-X-PART:DURATION=0.20000,URI=\"11.0.mp4\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.20000,URI=\"11.1.mp4\"\n#EXTINF:0.40000,\n11.mp4\n\
        #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-2.mp4\"\n\
        #EXT-X-PART:DURATION=0.20000,URI=\"12.0.mp4\",INDEPENDENT=YES\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"12.1.mp4\"\n";

    #[test]
    fn parts_of_a_playlist() {
        let l = listed_parts(PLAYLIST);
        let got: Vec<(u64, u32, &str, bool, bool)> = l
            .iter()
            .map(|p| {
                (
                    p.msn,
                    p.part,
                    p.init.as_str(),
                    p.independent,
                    p.discontinuity,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (11, 0, "init-1.mp4", true, false),
                (11, 1, "init-1.mp4", false, false),
                (12, 0, "init-2.mp4", true, true),
            ]
        );
        assert_eq!(attr("A=1,URI=\"x,y\",B=YES", "B").as_deref(), Some("YES"));
        assert_eq!(part_numbers("12.3.mp4"), Some((12, 3)));
        assert_eq!(part_numbers("12.mp4"), None);
    }

    #[test]
    fn samples_of_a_fragment() {
        // moof(mfhd, traf(tfhd, trun with 3 samples)) + mdat.
        let b = |kind: &[u8; 4], body: &[u8]| {
            let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            v.extend_from_slice(kind);
            v.extend_from_slice(body);
            v
        };
        let trun = b(b"trun", &[0, 0, 0, 1, 0, 0, 0, 3]);
        let traf = b(b"traf", &[b(b"tfhd", &[0; 8]), trun].concat());
        let moof = b(b"moof", &[b(b"mfhd", &[0; 8]), traf].concat());
        let part = [moof, b(b"mdat", &[1, 2, 3])].concat();
        assert_eq!(fragment_samples(&part), Some(3));
        assert_eq!(fragment_samples(&part[..20]), None);
        assert_eq!(fragment_samples(b"junk"), None);
    }

    #[test]
    fn freeze_and_return_around_an_event() {
        let f = |arrived_ms, burnt| Frame {
            msn: 0,
            part: 0,
            arrived_ms,
            burnt_ms: Some(burnt),
        };
        // Moving every 40 ms until 1000, event at 1000, nothing until 3000, then one second
        // replayed (from 800), then moving again.
        let mut frames: Vec<Frame> = (0..=25).map(|i| f(i * 40, i * 40 - 100)).collect();
        frames.push(Frame {
            burnt_ms: None,
            ..f(2900, 0)
        });
        frames.extend((0..50).map(|i| f(3000 + i * 40, 800 + i * 40)));
        let a = around(&frames, 1000, 500);
        assert_eq!(a.frames, 77);
        assert_eq!(a.unreadable, 1);
        assert_eq!(a.rewind_ms, 900 - 800);
        // The picture moved on at 1000 (burnt 900), next at arrival 3000+3*40 (burnt 920).
        assert_eq!(a.longest_still_ms, 3120 - 1000);
        assert_eq!(a.still_before_ms, 40);
        // First burnt after 1500: 800 + 18*40 = 1520, arrived 3000 + 18*40.
        assert_eq!(a.back_after_ms, Some(2720));
        assert_eq!(a.moving_after_ms, 800 + 49 * 40 - 1520);
    }
}
