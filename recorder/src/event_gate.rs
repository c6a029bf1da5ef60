//! `Event` recording mode: which frames reach the segmenter. Pure, no I/O.
//!
//! Outside events the gate keeps the newest whole GOPs in memory, enough to start a recording
//! `pre` before an event (the GOP containing `event − pre` and every later one), bounded in
//! bytes. An event opens the gate: the kept GOPs from that one on are released in their
//! original order, then frames pass through. While an event is active, or until `post` after
//! it ended, the gate stays open; another event in that time extends the recording. After that
//! the gate closes at the next keyframe (so the recording ends on a whole GOP), the segmenter is
//! told to finish (its segments close), and buffering starts again with that keyframe.
//!
//! Hence what is recorded for an event is `[event − pre, event end + post]` widened to GOP
//! boundaries: at most one GOP before and one after. Times are video RTP ticks (90 kHz) on the
//! session's timeline; the caller maps event times (UTC) onto it.

use std::collections::VecDeque;

use vigil_media::segmenter::{AudioIn, VideoIn};

/// What the segmenter is to be given.
#[derive(Debug)]
pub enum Out {
    Video(VideoIn),
    Audio(AudioIn),
    /// End the running recording (`Segmenter::finish`) before anything that follows.
    Finish,
}

#[derive(Debug)]
enum Item {
    Video(VideoIn),
    Audio(AudioIn),
}

impl Item {
    fn bytes(&self) -> usize {
        match self {
            Item::Video(v) => v.data.len(),
            Item::Audio(a) => a.data.len(),
        }
    }
}

#[derive(Debug)]
struct Gop {
    start_ts: i64,
    items: Vec<Item>,
    bytes: usize,
}

/// Counters for status and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Bytes held in the pre-event buffer now.
    pub buffered_bytes: usize,
    /// GOPs dropped from the pre-event buffer because of the byte bound (not because they
    /// aged out): the pre-event time was shorter than asked for.
    pub overflow_gops: u64,
    /// Recordings started by events.
    pub recordings: u64,
}

#[derive(Debug)]
pub struct EventGate {
    pre_ticks: i64,
    post_ticks: i64,
    max_bytes: usize,
    gops: VecDeque<Gop>,
    bytes: usize,
    /// Frames pass to the segmenter.
    open: bool,
    /// An event is in progress (no end seen yet).
    active: bool,
    /// After the last event ended: keep recording until this tick.
    until_ts: Option<i64>,
    /// A GOP was dropped whole for exceeding the bound: skip to the next keyframe.
    skip_to_key: bool,
    /// Open, but nothing was buffered to start from: pass nothing before a keyframe.
    need_key: bool,
    stats: GateStats,
}

pub const TICKS_PER_SECOND: i64 = 90_000;

impl EventGate {
    pub fn new(pre_seconds: u32, post_seconds: u32, max_bytes: usize) -> Self {
        EventGate {
            pre_ticks: i64::from(pre_seconds) * TICKS_PER_SECOND,
            post_ticks: i64::from(post_seconds) * TICKS_PER_SECOND,
            max_bytes,
            gops: VecDeque::new(),
            bytes: 0,
            open: false,
            active: false,
            until_ts: None,
            skip_to_key: false,
            need_key: false,
            stats: GateStats::default(),
        }
    }

    /// The pre-event buffer's bound for a camera: `pre` seconds at up to 16 Mbit/s plus 8 MiB
    /// for the GOP being filled, at most 640 MiB.
    pub fn bound_for(pre_seconds: u32) -> usize {
        let per_s = 16_000_000 / 8;
        (pre_seconds as usize * per_s + (8 << 20)).min(640 << 20)
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn stats(&self) -> GateStats {
        GateStats {
            buffered_bytes: self.bytes,
            ..self.stats
        }
    }

    /// An event began at `at_ts`: record from `at_ts − pre` (widened to the GOP containing it).
    pub fn begin(&mut self, at_ts: i64, out: &mut Vec<Out>) {
        self.active = true;
        self.until_ts = None;
        if self.open {
            return;
        }
        self.open = true;
        self.stats.recordings += 1;
        let from = at_ts - self.pre_ticks;
        // Keep the GOP containing `from` and every later one.
        while self.gops.len() >= 2 && self.gops[1].start_ts <= from {
            self.drop_front();
        }
        self.need_key = self.gops.is_empty();
        for g in self.gops.drain(..) {
            out.extend(g.items.into_iter().map(|i| match i {
                Item::Video(v) => Out::Video(v),
                Item::Audio(a) => Out::Audio(a),
            }));
        }
        self.bytes = 0;
    }

    /// The event in progress ended at `at_ts`: record until `at_ts + post`.
    pub fn end(&mut self, at_ts: i64) {
        if !self.active {
            return;
        }
        self.active = false;
        self.until_ts = Some(at_ts + self.post_ticks);
    }

    pub fn video(&mut self, f: VideoIn, out: &mut Vec<Out>) {
        if self.open && self.need_key {
            if !f.key {
                return;
            }
            self.need_key = false;
        }
        if self.open {
            let over = !self.active && self.until_ts.is_some_and(|u| f.ts >= u);
            if !(over && f.key) {
                out.push(Out::Video(f));
                return;
            }
            self.open = false;
            self.until_ts = None;
            out.push(Out::Finish);
        }
        if f.key {
            self.skip_to_key = false;
            self.gops.push_back(Gop {
                start_ts: f.ts,
                items: Vec::new(),
                bytes: 0,
            });
        } else if self.skip_to_key || self.gops.is_empty() {
            return;
        }
        let ts = f.ts;
        self.push(Item::Video(f));
        // Age: the GOP containing `now − pre` is the oldest one an event now could need.
        while self.gops.len() >= 2 && self.gops[1].start_ts <= ts - self.pre_ticks {
            self.drop_front();
        }
    }

    pub fn audio(&mut self, a: AudioIn, out: &mut Vec<Out>) {
        if self.open {
            if !self.need_key {
                out.push(Out::Audio(a));
            }
        } else if !self.skip_to_key && !self.gops.is_empty() {
            self.push(Item::Audio(a));
        }
    }

    fn push(&mut self, item: Item) {
        let n = item.bytes();
        if let Some(g) = self.gops.back_mut() {
            g.bytes += n;
            g.items.push(item);
            self.bytes += n;
        }
        while self.bytes > self.max_bytes {
            self.stats.overflow_gops += 1;
            if self.gops.len() == 1 {
                // One GOP larger than the bound: nothing of it can be kept.
                self.gops.clear();
                self.bytes = 0;
                self.skip_to_key = true;
                break;
            }
            self.drop_front();
        }
    }

    fn drop_front(&mut self) {
        if let Some(g) = self.gops.pop_front() {
            self.bytes -= g.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: i64 = 3600; // 25 fps
    const GOP: i64 = 25;

    fn frame(n: i64) -> VideoIn {
        VideoIn {
            ts: n * FRAME,
            key: n % GOP == 0,
            new_params: false,
            data: vec![0; 100],
        }
    }

    /// Feeds frames `from..to`, applying `events` (frame number, begin?) before the frame of
    /// that number; returns the recorded runs as (first frame, last frame) and the gate.
    fn run(gate: &mut EventGate, from: i64, to: i64, events: &[(i64, bool)]) -> Vec<(i64, i64)> {
        let mut runs: Vec<(i64, i64)> = Vec::new();
        let mut current: Option<(i64, i64)> = None;
        let mut out = Vec::new();
        for n in from..to {
            for &(at, begin) in events.iter().filter(|e| e.0 == n) {
                if begin {
                    gate.begin(at * FRAME, &mut out);
                } else {
                    gate.end(at * FRAME);
                }
            }
            gate.video(frame(n), &mut out);
            for o in out.drain(..) {
                match o {
                    Out::Video(v) => {
                        let k = v.ts / FRAME;
                        current = Some(current.map_or((k, k), |(a, b)| {
                            assert_eq!(k, b + 1, "frames in order, none lost");
                            (a, k)
                        }));
                    }
                    Out::Finish => runs.extend(current.take()),
                    Out::Audio(_) => {}
                }
            }
        }
        runs.extend(current);
        runs
    }

    #[test]
    fn records_pre_to_post_widened_to_gops() {
        // pre 2 s (50 frames), post 3 s (75 frames); motion from frame 500 to 600.
        let mut g = EventGate::new(2, 3, usize::MAX);
        let runs = run(&mut g, 0, 1000, &[(500, true), (600, false)]);
        // From the GOP containing frame 450 (starts at 450), to the keyframe at or after 675.
        assert_eq!(runs, vec![(450, 674)]);
        let mut g = EventGate::new(2, 3, usize::MAX);
        let runs = run(&mut g, 0, 1000, &[(510, true), (610, false)]);
        // 510 − 50 = 460 lies in the GOP from 450; 610 + 75 = 685 → cut at key 700.
        assert_eq!(runs, vec![(450, 699)]);
        assert_eq!(g.stats().recordings, 1);
    }

    #[test]
    fn an_event_during_post_extends_the_recording() {
        let mut g = EventGate::new(1, 2, usize::MAX);
        let runs = run(
            &mut g,
            0,
            1000,
            &[(300, true), (310, false), (330, true), (340, false)],
        );
        assert_eq!(runs, vec![(275, 399)]);
        // Two events far apart: two recordings.
        let mut g = EventGate::new(1, 2, usize::MAX);
        let runs = run(
            &mut g,
            0,
            1000,
            &[(300, true), (310, false), (700, true), (710, false)],
        );
        assert_eq!(runs, vec![(275, 374), (675, 774)]);
    }

    #[test]
    fn zero_pre_starts_at_the_current_gop() {
        let mut g = EventGate::new(0, 0, usize::MAX);
        let runs = run(&mut g, 0, 400, &[(110, true), (120, false)]);
        assert_eq!(runs, vec![(100, 124)]);
    }

    #[test]
    fn nothing_is_recorded_without_events_and_memory_stays_bounded() {
        // Each frame 100 bytes, a GOP 2500; a bound of 6000 keeps at most two GOPs.
        let mut g = EventGate::new(300, 0, 6000);
        assert!(run(&mut g, 0, 2000, &[]).is_empty());
        assert!(g.stats().buffered_bytes <= 6000);
        assert!(g.stats().overflow_gops > 0);
        // pre 300 s would want everything; the bound gives the last two GOPs.
        let runs = run(&mut g, 2000, 2100, &[(2010, true)]);
        assert_eq!(runs, vec![(1950, 2099)]);
    }

    #[test]
    fn without_a_bound_the_buffer_holds_pre_plus_one_gop() {
        let mut g = EventGate::new(4, 0, usize::MAX);
        run(&mut g, 0, 3000, &[]);
        // 4 s = 100 frames; at most 4 GOPs + the one filling.
        let held = g.stats().buffered_bytes;
        assert!((10_000..=12_500).contains(&held), "{held}");
    }

    #[test]
    fn a_gop_larger_than_the_bound_is_skipped_whole() {
        let mut g = EventGate::new(10, 0, 900);
        assert!(run(&mut g, 0, 100, &[]).is_empty());
        assert_eq!(g.stats().buffered_bytes, 0);
        // An event then starts at the next keyframe (nothing partial before it).
        let runs = run(&mut g, 100, 200, &[(110, true)]);
        assert_eq!(runs, vec![(125, 199)]);
    }
}
