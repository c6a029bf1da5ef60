//! Frame-level coverage: which frames the camera produced are in the store.
//!
//! Segment keys say what time a segment claims to cover; only the frames say what is in it. The
//! camera simulator burns `"<name> YYYY-MM-DDTHH:MM:SS.mmmZ #<n>"` into every frame with its 5x7
//! font (e2e/camera-sim/font5x7.py, drawn by `Camera._on_draw` in camera_sim.py), and with
//! `--frame-log DIR` it writes `DIR/<name>.frames`, one line `"<n> <UTC ms>"` per frame that left
//! its encoder, where the UTC ms is exactly the time burnt into that frame. So:
//!
//! * [`decode_segment`] decodes a stored segment (ffmpeg, only the strip of text, as gray) and
//!   reads each frame's burnt-in time ([`read_time`]: 5x7 template matching) and its
//!   presentation time in the file;
//! * [`read_frame_log`] reads the frames the camera actually produced (a frame the camera never
//!   encoded is not held against the recorder);
//! * [`frame_coverage`] compares the two: frames present vs expected, and the missing runs in
//!   frames and seconds.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// What can go wrong reading frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("running {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("ffmpeg failed on {path}: {stderr}")]
    Decode { path: String, stderr: String },
    #[error("ffmpeg gave {bytes} bytes of pixels for {frames} frames of {frame_bytes} bytes")]
    FrameCount {
        bytes: usize,
        frames: usize,
        frame_bytes: usize,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not \"<count> <utc ms>\"")]
    LogLine { path: String, line: usize },
    #[error("the overlay of camera {name:?} does not fit a {width} px wide picture unscaled")]
    DoesNotFit { name: String, width: u32 },
}

/// Columns of the digits in the simulator's 5x7 font: bit 0 is the top row.
const DIGITS: [[u8; 5]; 10] = [
    [0x3E, 0x51, 0x49, 0x45, 0x3E],
    [0x00, 0x42, 0x7F, 0x40, 0x00],
    [0x42, 0x61, 0x51, 0x49, 0x46],
    [0x21, 0x41, 0x45, 0x4B, 0x31],
    [0x18, 0x14, 0x12, 0x7F, 0x10],
    [0x27, 0x45, 0x45, 0x45, 0x39],
    [0x3C, 0x4A, 0x49, 0x49, 0x30],
    [0x01, 0x71, 0x09, 0x05, 0x03],
    [0x36, 0x49, 0x49, 0x49, 0x36],
    [0x06, 0x49, 0x49, 0x29, 0x1E],
];

/// A glyph cell is 6 x 9 font pixels (5 x 7 plus spacing and padding), each `scale` px square.
const GLYPH_W: u32 = 6;
const GLYPH_H: u32 = 9;
/// `YYYY-MM-DDTHH:MM:SS.mmm`: the part of the time that is read.
const TIME_CHARS: u32 = 23;
/// Character positions of the 17 digits in `TIME_CHARS`.
const DIGIT_AT: [u32; 17] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
/// Most font pixels of a digit that may be misread before the cell counts as unreadable.
const MAX_WRONG_DOTS: u32 = 5;
/// How many font pixels the best glyph must beat the second best by.
const MIN_MARGIN_DOTS: u32 = 3;

/// Where the simulator draws the time in the picture of one camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    /// Font pixel size in picture pixels.
    pub scale: u32,
    /// Top left of the time text (its first digit), picture pixels.
    pub x: u32,
    pub y: u32,
}

impl Overlay {
    /// The simulator's layout (`TextRenderer(scale=max(2, height // 180))`, drawn at
    /// `8 * scale, 8 * scale`) for camera `name` in a `width` x `height` picture. Fails when the
    /// text with a counter of up to 5 digits (111 min at 15 fps) is wider than the picture: the simulator then
    /// squeezes it and the glyphs no longer sit on whole pixels.
    pub fn for_camera(name: &str, width: u32, height: u32) -> Result<Overlay, FrameError> {
        let scale = (height / 180).max(2);
        let margin = 8 * scale;
        let chars = name.len() as u32 + 1 + TIME_CHARS + 1 + 2 + 5; // "Z #nnnnn"
        if margin + chars * GLYPH_W * scale > width {
            return Err(FrameError::DoesNotFit {
                name: name.to_string(),
                width,
            });
        }
        Ok(Overlay {
            scale,
            x: margin + (name.len() as u32 + 1) * GLYPH_W * scale,
            y: margin,
        })
    }

    /// Size of the strip holding the time text, picture pixels.
    pub fn strip(&self) -> (u32, u32) {
        (TIME_CHARS * GLYPH_W * self.scale, GLYPH_H * self.scale)
    }
}

/// Reads the 5x7 digit in the glyph cell starting at column `cx` of a gray `strip`.
fn read_digit(strip: &[u8], stride: usize, cx: usize, scale: usize) -> Option<u32> {
    // Mean brightness of each font pixel (the inner part of its square, away from blur).
    let inset = usize::from(scale > 2);
    let mut dots = [[0u32; 7]; 5];
    for (col, column) in dots.iter_mut().enumerate() {
        for (row, dot) in column.iter_mut().enumerate() {
            let (x0, y0) = (cx + col * scale, (row + 1) * scale);
            let (mut sum, mut n) = (0u32, 0u32);
            for y in y0 + inset..y0 + scale - inset {
                for x in x0 + inset..x0 + scale - inset {
                    sum += u32::from(*strip.get(y * stride + x)?);
                    n += 1;
                }
            }
            *dot = sum / n.max(1);
        }
    }
    // White text on a darkened background: split at the middle of this cell's range.
    let (lo, hi) = dots
        .iter()
        .flatten()
        .fold((u32::MAX, 0), |(lo, hi), &d| (lo.min(d), hi.max(d)));
    if hi < lo + 64 {
        return None;
    }
    let cut = (lo + hi) / 2;
    let mut best = (u32::MAX, 0u32);
    let mut second = u32::MAX;
    for (digit, glyph) in DIGITS.iter().enumerate() {
        let mut wrong = 0;
        for (bits, column) in glyph.iter().zip(&dots) {
            for (row, &dot) in column.iter().enumerate() {
                let lit = (bits >> row) & 1 == 1;
                if lit != (dot > cut) {
                    wrong += 1;
                }
            }
        }
        if wrong < best.0 {
            second = best.0;
            best = (wrong, digit as u32);
        } else if wrong < second {
            second = wrong;
        }
    }
    // A digit blurred by the encoder can sit between two glyphs (a 9 read as an 8): only a
    // clear winner counts.
    (best.0 <= MAX_WRONG_DOTS && second >= best.0 + MIN_MARGIN_DOTS).then_some(best.1)
}

/// The UTC milliseconds burnt into one frame, from the gray strip `overlay.strip()` in size
/// cut out at `(overlay.x, overlay.y)`; `None` when any digit is unreadable or the date is not
/// a date.
pub fn read_time(strip: &[u8], overlay: &Overlay) -> Option<i64> {
    let (w, h) = overlay.strip();
    if strip.len() < (w * h) as usize {
        return None;
    }
    let s = overlay.scale as usize;
    let mut d = [0i64; 17];
    for (i, &at) in DIGIT_AT.iter().enumerate() {
        d[i] = i64::from(read_digit(
            strip,
            w as usize,
            at as usize * GLYPH_W as usize * s,
            s,
        )?);
    }
    let num = |r: std::ops::Range<usize>| d[r].iter().fold(0i64, |a, &x| a * 10 + x);
    let (year, month, day) = (num(0..4), num(4..6), num(6..8));
    let (hour, minute, second, ms) = (num(8..10), num(10..12), num(12..14), num(14..17));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// One decoded frame of a segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentFrame {
    /// Presentation time in the file, seconds (ffmpeg's `pts_time`).
    pub pts_seconds: f64,
    /// UTC ms burnt into the frame, `None` when unreadable.
    pub burnt_ms: Option<i64>,
}

/// Decodes every video frame of a segment (only the strip of text, as gray, no frame dropped or
/// duplicated) and reads its burnt-in time and presentation time.
pub fn decode_segment(path: &Path, overlay: &Overlay) -> Result<Vec<SegmentFrame>, FrameError> {
    let (w, h) = overlay.strip();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "info", "-i"])
        .arg(path)
        .args(["-an", "-fps_mode", "passthrough", "-vf"])
        .arg(format!(
            "crop={w}:{h}:{}:{},format=gray,showinfo",
            overlay.x, overlay.y
        ))
        .args(["-f", "rawvideo", "-"])
        .output()
        .map_err(|source| FrameError::Spawn {
            tool: "ffmpeg",
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(FrameError::Decode {
            path: path.display().to_string(),
            stderr: stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        });
    }
    let pts: Vec<f64> = stderr
        .lines()
        .filter(|l| l.contains("Parsed_showinfo") && l.contains(" n:"))
        .filter_map(|l| {
            let v = l.split("pts_time:").nth(1)?.split_whitespace().next()?;
            v.parse().ok()
        })
        .collect();
    let frame_bytes = (w * h) as usize;
    if out.stdout.len() != pts.len() * frame_bytes {
        return Err(FrameError::FrameCount {
            bytes: out.stdout.len(),
            frames: pts.len(),
            frame_bytes,
        });
    }
    Ok(out
        .stdout
        .chunks_exact(frame_bytes)
        .zip(pts)
        .map(|(strip, pts_seconds)| SegmentFrame {
            pts_seconds,
            burnt_ms: read_time(strip, overlay),
        })
        .collect())
}

/// What [`identify_frames`] made of one segment's frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identified {
    /// UTC ms of every frame: read, or inferred from its presentation time.
    pub times_ms: Vec<i64>,
    /// Frames whose time could not be read (inferred instead).
    pub unreadable: usize,
    /// Frames whose reading disagrees with their presentation time by more than half a frame
    /// (a misread digit, or a frame out of place in the file; inferred instead).
    pub disagreeing: usize,
}

/// Identifies the frames of one segment. Within a file, burnt-in time minus presentation time
/// is constant for every frame (both come from the camera's clock), so its median over the
/// readable frames dates the segment; a frame whose reading is missing, or disagrees with that
/// by more than half a frame, is dated by its presentation time instead. A hole inside a
/// segment still shows (its frames are not there); a file whose times are wrong throughout
/// shows as `disagreeing` frames.
pub fn identify_frames(frames: &[SegmentFrame], frame_ms: i64) -> Identified {
    let pts_ms = |f: &SegmentFrame| (f.pts_seconds * 1000.0).round() as i64;
    let mut offsets: Vec<i64> = frames
        .iter()
        .filter_map(|f| Some(f.burnt_ms? - pts_ms(f)))
        .collect();
    offsets.sort_unstable();
    let mut out = Identified::default();
    let Some(&offset) = offsets.get(offsets.len() / 2) else {
        out.unreadable = frames.len();
        return out;
    };
    for f in frames {
        let inferred = pts_ms(f) + offset;
        match f.burnt_ms {
            Some(ms) if (ms - inferred).abs() * 2 <= frame_ms => out.times_ms.push(ms),
            Some(_) => {
                out.disagreeing += 1;
                out.times_ms.push(inferred);
            }
            None => {
                out.unreadable += 1;
                out.times_ms.push(inferred);
            }
        }
    }
    out
}

/// The UTC ms of every frame a camera's encoder produced, from the simulator's
/// `--frame-log DIR/<name>.frames` (sorted, without duplicates). A last line cut short by a
/// write in progress is ignored.
pub fn read_frame_log(path: &Path) -> Result<Vec<i64>, FrameError> {
    let text = std::fs::read_to_string(path).map_err(|source| FrameError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let complete = text.rsplit_once('\n').map_or("", |(done, _)| done);
    let mut out = BTreeSet::new();
    for (i, line) in complete.lines().enumerate() {
        let mut parts = line.split_whitespace();
        let ms = parts
            .next()
            .and_then(|_| parts.next())
            .and_then(|ms| ms.parse::<i64>().ok())
            .ok_or_else(|| FrameError::LogLine {
                path: path.display().to_string(),
                line: i + 1,
            })?;
        out.insert(ms);
    }
    Ok(out.into_iter().collect())
}

/// A run of consecutive produced frames none of which is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingRun {
    /// UTC ms of its first and last frame.
    pub first_ms: i64,
    pub last_ms: i64,
    pub frames: usize,
}

impl MissingRun {
    /// The time the run takes on screen: from its first frame to the end of its last.
    pub fn seconds(&self, frame_ms: i64) -> f64 {
        (self.last_ms + frame_ms - self.first_ms) as f64 / 1000.0
    }
}

/// Frames of one camera in a window: produced by the camera vs found in the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameCoverage {
    pub expected: usize,
    pub present: usize,
    pub missing: Vec<MissingRun>,
    /// Stored frames whose burnt-in time the camera never logged (a misread that still parsed).
    pub unknown: usize,
}

impl FrameCoverage {
    pub fn missing_frames(&self) -> usize {
        self.expected - self.present
    }
}

/// Compares the frames `produced` (UTC ms, sorted, from [`read_frame_log`]) inside
/// `[from_ms, to_ms)` with the frames `stored` (UTC ms from [`identify_frames`], any order,
/// duplicates allowed). A stored time counts for the produced frame nearest to it, if that is
/// within a third of a frame (`frame_ms`): read times match exactly, inferred ones within ms.
pub fn frame_coverage(
    produced: &[i64],
    stored: &[i64],
    from_ms: i64,
    to_ms: i64,
    frame_ms: i64,
) -> FrameCoverage {
    let produced_set: BTreeSet<i64> = produced.iter().copied().collect();
    let mut matched = BTreeSet::new();
    let mut unknown = 0;
    for &ms in stored {
        let below = produced_set.range(..=ms).next_back();
        let above = produced_set.range(ms..).next();
        let nearest = below
            .into_iter()
            .chain(above)
            .min_by_key(|&&p| (p - ms).abs())
            .filter(|&&p| (p - ms).abs() * 3 <= frame_ms);
        match nearest {
            Some(&p) => {
                matched.insert(p);
            }
            None => unknown += 1,
        }
    }
    let stored = matched;
    let mut c = FrameCoverage {
        unknown,
        ..FrameCoverage::default()
    };
    let mut run: Option<MissingRun> = None;
    for &ms in produced.iter().filter(|&&ms| ms >= from_ms && ms < to_ms) {
        c.expected += 1;
        if stored.contains(&ms) {
            c.present += 1;
            c.missing.extend(run.take());
        } else {
            let r = run.get_or_insert(MissingRun {
                first_ms: ms,
                last_ms: ms,
                frames: 0,
            });
            r.last_ms = ms;
            r.frames += 1;
        }
    }
    c.missing.extend(run);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Renders `text` with the simulator's own renderer (font5x7.py) composited the way the
    /// overlay does it (white text, black at alpha 170) over a picture of bars and noise, and
    /// returns the gray strip at the time's position.
    fn rendered_by_simulator(name: &str, time: &str, width: u32, height: u32) -> Vec<u8> {
        let ov = Overlay::for_camera(name, width, height).unwrap();
        let text = format!("{name} {time} #1234");
        let script = format!(
            "import sys; sys.path.insert(0, {dir:?}); from font5x7 import TextRenderer\n\
             d, w, h = TextRenderer(scale={s}).render({text:?})\n\
             sys.stdout.buffer.write(w.to_bytes(4, 'little') + h.to_bytes(4, 'little') + d)",
            dir = crate::repo_root()
                .join("e2e/camera-sim")
                .to_string_lossy()
                .to_string(),
            s = ov.scale,
        );
        let out = Command::new("/usr/bin/python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tw = u32::from_le_bytes(out.stdout[0..4].try_into().unwrap()) as usize;
        let th = u32::from_le_bytes(out.stdout[4..8].try_into().unwrap()) as usize;
        let bgra = &out.stdout[8..];
        // Background: vertical bars of several grays plus pseudo-random noise.
        let mut seed = 12345u32;
        let mut pic = vec![0u8; (width * height) as usize];
        for y in 0..height as usize {
            for x in 0..width as usize {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let bar = [235u32, 210, 170, 145, 106, 81, 41, 16][x * 8 / width as usize];
                pic[y * width as usize + x] =
                    (bar as i32 + (seed >> 28) as i32 - 8).clamp(0, 255) as u8;
            }
        }
        let m = (8 * ov.scale) as usize;
        for y in 0..th {
            for x in 0..tw {
                let p = &bgra[(y * tw + x) * 4..][..4];
                let (luma, a) = (u32::from(p[1]), u32::from(p[3]));
                let dst = &mut pic[(m + y) * width as usize + m + x];
                *dst = ((luma * a + u32::from(*dst) * (255 - a)) / 255) as u8;
            }
        }
        let (sw, sh) = ov.strip();
        let mut strip = vec![];
        for y in 0..sh {
            let row = ((ov.y + y) * width + ov.x) as usize;
            strip.extend_from_slice(&pic[row..row + sw as usize]);
        }
        strip
    }

    #[test]
    fn reads_the_time_the_simulator_renders() {
        for (name, time, ms) in [
            ("cam-00", "2026-12-02T11:25:03.969", 1_796_210_703_969),
            ("c", "1999-02-28T23:59:59.999", 920_246_399_999),
            ("edge-265", "2031-07-04T00:00:00.000", 1_940_889_600_000),
        ] {
            let mut sizes = 0;
            for (w, h) in [(480, 270), (640, 360), (1280, 720)] {
                // A long name does not fit the smallest picture.
                let Ok(ov) = Overlay::for_camera(name, w, h) else {
                    continue;
                };
                let strip = rendered_by_simulator(name, time, w, h);
                assert_eq!(read_time(&strip, &ov), Some(ms), "{name} {time} at {w}x{h}");
                sizes += 1;
            }
            assert!(sizes >= 2, "{name}");
        }
    }

    #[test]
    fn a_blank_or_damaged_strip_reads_as_nothing() {
        let ov = Overlay::for_camera("cam-00", 480, 270).unwrap();
        let (w, h) = ov.strip();
        assert_eq!(read_time(&vec![90u8; (w * h) as usize], &ov), None);
        let mut strip = rendered_by_simulator("cam-00", "2026-12-02T11:25:03.969", 480, 270);
        // Wipe the last millisecond digit.
        let s = ov.scale as usize;
        for y in 0..h as usize {
            for x in 22 * 6 * s..23 * 6 * s {
                strip[y * w as usize + x] = 40;
            }
        }
        assert_eq!(read_time(&strip, &ov), None);
    }

    #[test]
    fn an_overlay_too_wide_for_the_picture_is_refused() {
        assert!(matches!(
            Overlay::for_camera("cam-00", 320, 180),
            Err(FrameError::DoesNotFit { .. })
        ));
        assert_eq!(
            Overlay::for_camera("cam-00", 480, 270).unwrap(),
            Overlay {
                scale: 2,
                x: 16 + 7 * 12,
                y: 16
            }
        );
    }

    #[test]
    fn missing_runs_are_counted_in_frames_and_seconds() {
        let produced: Vec<i64> = (0..30).map(|i| 1000 + i * 67).collect();
        let mut stored: Vec<i64> = produced.clone();
        stored.retain(|ms| !(1000 + 5 * 67..1000 + 10 * 67).contains(ms) && *ms != 1000 + 29 * 67);
        stored.push(1000 + 3 * 67); // a duplicate from an overlap
        stored.push(1000 + 4 * 67 + 5); // inferred from its pts, a few ms off
        stored.push(7); // never produced
        stored.push(1000 + 10 * 67 + 30); // between two frames
        let c = frame_coverage(&produced, &stored, 1000, 1000 + 30 * 67, 67);
        assert_eq!((c.expected, c.present, c.unknown), (30, 24, 2));
        assert_eq!(
            c.missing,
            vec![
                MissingRun {
                    first_ms: 1000 + 5 * 67,
                    last_ms: 1000 + 9 * 67,
                    frames: 5
                },
                MissingRun {
                    first_ms: 1000 + 29 * 67,
                    last_ms: 1000 + 29 * 67,
                    frames: 1
                },
            ]
        );
        assert_eq!(c.missing[0].seconds(67), 0.335);
        // Only the window counts.
        let c = frame_coverage(&produced, &stored, 1000, 1000 + 5 * 67, 67);
        assert_eq!((c.expected, c.present, c.missing.len()), (5, 5, 0));
    }

    #[test]
    fn frames_are_dated_by_their_reading_or_their_presentation_time() {
        let f = |pts_seconds: f64, burnt_ms: Option<i64>| SegmentFrame {
            pts_seconds,
            burnt_ms,
        };
        // Five frames at 15 fps, captured from 5000 ms on: one unreadable, one misread by 1 s.
        let frames = [
            f(0.0, Some(5000)),
            f(0.066667, None),
            f(0.133333, Some(5133)),
            f(0.2, Some(4200)),
            f(0.266667, Some(5267)),
        ];
        let id = identify_frames(&frames, 67);
        assert_eq!(id.times_ms, vec![5000, 5067, 5133, 5200, 5267]);
        assert_eq!((id.unreadable, id.disagreeing), (1, 1));
        // Nothing readable: nothing dated.
        let id = identify_frames(&[f(0.0, None)], 67);
        assert_eq!((id.times_ms.len(), id.unreadable), (0, 1));
    }

    #[test]
    fn the_frame_log_is_read_up_to_its_last_complete_line() {
        let dir = std::env::temp_dir().join(format!("vigil-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cam.frames");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"1 1000\n2 1067\n3 11").unwrap();
        assert_eq!(read_frame_log(&path).unwrap(), vec![1000, 1067]);
        std::fs::write(&path, "1 1000\nbad\n").unwrap();
        assert!(matches!(
            read_frame_log(&path),
            Err(FrameError::LogLine { line: 2, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 2), 20_789);
    }
}
