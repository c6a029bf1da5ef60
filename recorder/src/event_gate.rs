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
//!
//! Spill (issue #17): the newest GOPs stay in memory up to `mem_bytes`; older whole GOPs of the
//! pre-event window are handed to the caller to append to a file ([`Out::Spill`]); the gate keeps
//! only their start times and sizes. GOPs that age out of the window (or exceed the total bound)
//! are dropped oldest first, spilled ones before the ones in memory ([`Out::SpillTrim`] tells
//! the caller which spilled GOPs are still wanted). An event releases the spilled GOPs from
//! the one containing `event − pre` ([`Out::Unspill`]) ahead of those in memory. When the caller
//! cannot write (disk full), it calls [`EventGate::spill_lost`]: every spilled GOP is dropped
//! and counted, the ones in memory stay, recording goes on.

use std::collections::VecDeque;

use vigil_media::segmenter::{AudioIn, VideoIn};

/// What the segmenter is to be given.
#[derive(Debug)]
pub enum Out {
    Video(VideoIn),
    Audio(AudioIn),
    /// End the running recording (`Segmenter::finish`) before anything that follows.
    Finish,
    /// Append this whole GOP to the spill file (it is newer than everything spilled before).
    Spill(SpillGop),
    /// Spilled GOPs starting before `keep_from_ts` are no longer wanted (`i64::MAX`: none is).
    SpillTrim {
        keep_from_ts: i64,
    },
    /// Give the segmenter the spilled GOPs from the one starting at `from_ts` on, in order,
    /// before anything that follows; then the spill is empty.
    Unspill {
        from_ts: i64,
    },
}

/// A whole GOP for the spill file: a keyframe first, then the frames (and audio) after it.
#[derive(Debug)]
pub struct SpillGop {
    pub start_ts: i64,
    pub items: Vec<Item>,
}

#[derive(Debug)]
pub enum Item {
    Video(VideoIn),
    Audio(AudioIn),
}

impl Item {
    pub fn bytes(&self) -> usize {
        match self {
            Item::Video(v) => v.data.len(),
            Item::Audio(a) => a.data.len(),
        }
    }
}

/// A spilled GOP: the data is in the caller's file.
#[derive(Debug)]
struct Spilled {
    start_ts: i64,
    bytes: usize,
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
    /// Bytes held in the pre-event buffer in memory now.
    pub buffered_bytes: usize,
    /// Bytes of the pre-event buffer in the spill file now.
    pub spilled_bytes: usize,
    /// GOPs dropped from the pre-event buffer because of the byte bound (not because they
    /// aged out): the pre-event time was shorter than asked for.
    pub overflow_gops: u64,
    /// Pre-event bytes dropped early: byte bound or spill write errors.
    pub dropped_bytes: u64,
    /// Spill write or read errors reported by the caller.
    pub spill_failures: u64,
    /// Recordings started by events.
    pub recordings: u64,
}

#[derive(Debug)]
pub struct EventGate {
    pre_ticks: i64,
    post_ticks: i64,
    /// Bound of memory plus spill.
    max_bytes: usize,
    /// Bound of the GOPs held in memory (the one being filled stays in memory regardless).
    mem_bytes: usize,
    spilled: VecDeque<Spilled>,
    spilled_bytes: usize,
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
    /// A gate holding everything in memory (up to `max_bytes`).
    pub fn new(pre_seconds: u32, post_seconds: u32, max_bytes: usize) -> Self {
        Self::with_spill(pre_seconds, post_seconds, max_bytes, usize::MAX)
    }

    /// A gate keeping at most `mem_bytes` of complete GOPs in memory and spilling older ones
    /// (up to `max_bytes` in all).
    pub fn with_spill(
        pre_seconds: u32,
        post_seconds: u32,
        max_bytes: usize,
        mem_bytes: usize,
    ) -> Self {
        EventGate {
            pre_ticks: i64::from(pre_seconds) * TICKS_PER_SECOND,
            post_ticks: i64::from(post_seconds) * TICKS_PER_SECOND,
            max_bytes,
            mem_bytes,
            spilled: VecDeque::new(),
            spilled_bytes: 0,
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
            spilled_bytes: self.spilled_bytes,
            ..self.stats
        }
    }

    /// The caller could not write (or read back) the spill: every spilled GOP is lost. They
    /// are counted as dropped; the GOPs in memory stay and recording goes on.
    pub fn spill_lost(&mut self) {
        self.stats.spill_failures += 1;
        self.stats.dropped_bytes += self.spilled_bytes as u64;
        self.spilled.clear();
        self.spilled_bytes = 0;
    }

    /// GOPs held (spilled ones first).
    fn len(&self) -> usize {
        self.spilled.len() + self.gops.len()
    }

    /// Start of the `i`-th oldest GOP held.
    fn start(&self, i: usize) -> i64 {
        match self.spilled.get(i) {
            Some(s) => s.start_ts,
            None => self.gops[i - self.spilled.len()].start_ts,
        }
    }

    /// Drops the oldest GOP held (a spilled one first); true if it was a spilled one.
    fn drop_oldest(&mut self) -> bool {
        match self.spilled.pop_front() {
            Some(s) => {
                self.spilled_bytes -= s.bytes;
                true
            }
            None => {
                self.drop_front();
                false
            }
        }
    }

    /// Drops GOPs older than the one containing `from`; tells the caller if spilled ones went.
    fn keep_from(&mut self, from: i64, out: &mut Vec<Out>) {
        let mut trimmed = false;
        while self.len() >= 2 && self.start(1) <= from {
            trimmed |= self.drop_oldest();
        }
        if trimmed {
            self.trim_out(out);
        }
    }

    fn trim_out(&self, out: &mut Vec<Out>) {
        out.push(Out::SpillTrim {
            keep_from_ts: self.spilled.front().map_or(i64::MAX, |s| s.start_ts),
        });
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
        self.keep_from(from, out);
        self.need_key = self.len() == 0;
        if let Some(s) = self.spilled.front() {
            out.push(Out::Unspill {
                from_ts: s.start_ts,
            });
            self.spilled.clear();
            self.spilled_bytes = 0;
        }
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
        self.push(Item::Video(f), out);
        // Age: the GOP containing `now − pre` is the oldest one an event now could need.
        self.keep_from(ts - self.pre_ticks, out);
    }

    pub fn audio(&mut self, a: AudioIn, out: &mut Vec<Out>) {
        if self.open {
            if !self.need_key {
                out.push(Out::Audio(a));
            }
        } else if !self.skip_to_key && !self.gops.is_empty() {
            self.push(Item::Audio(a), out);
        }
    }

    fn push(&mut self, item: Item, out: &mut Vec<Out>) {
        let n = item.bytes();
        if let Some(g) = self.gops.back_mut() {
            g.bytes += n;
            g.items.push(item);
            self.bytes += n;
        }
        // Complete GOPs beyond the memory bound go to the spill file, oldest first.
        while self.bytes > self.mem_bytes && self.gops.len() >= 2 {
            if let Some(g) = self.gops.pop_front() {
                self.bytes -= g.bytes;
                self.spilled_bytes += g.bytes;
                self.spilled.push_back(Spilled {
                    start_ts: g.start_ts,
                    bytes: g.bytes,
                });
                out.push(Out::Spill(SpillGop {
                    start_ts: g.start_ts,
                    items: g.items,
                }));
            }
        }
        let mut trimmed = false;
        while self.bytes + self.spilled_bytes > self.max_bytes {
            self.stats.overflow_gops += 1;
            if let Some(s) = self.spilled.pop_front() {
                self.spilled_bytes -= s.bytes;
                self.stats.dropped_bytes += s.bytes as u64;
                trimmed = true;
                continue;
            }
            if self.gops.len() == 1 {
                self.stats.dropped_bytes += self.bytes as u64;
                // One GOP larger than the bound: nothing of it can be kept.
                self.gops.clear();
                self.bytes = 0;
                self.skip_to_key = true;
                break;
            }
            self.stats.dropped_bytes += self.gops.front().map_or(0, |g| g.bytes) as u64;
            self.drop_front();
        }
        if trimmed {
            self.trim_out(out);
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
        run_with(gate, &mut Vec::new(), from, to, events)
    }

    /// [`run`] with a spill "file": GOPs are appended, trimmed and read back as the camera task
    /// does with its file.
    fn run_with(
        gate: &mut EventGate,
        file: &mut Vec<SpillGop>,
        from: i64,
        to: i64,
        events: &[(i64, bool)],
    ) -> Vec<(i64, i64)> {
        let mut runs: Vec<(i64, i64)> = Vec::new();
        let mut current: Option<(i64, i64)> = None;
        let mut out = Vec::new();
        let video = |v: VideoIn, current: &mut Option<(i64, i64)>| {
            let k = v.ts / FRAME;
            *current = Some(current.map_or((k, k), |(a, b)| {
                assert_eq!(k, b + 1, "frames in order, none lost");
                (a, k)
            }));
        };
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
                    Out::Video(v) => video(v, &mut current),
                    Out::Finish => runs.extend(current.take()),
                    Out::Audio(_) => {}
                    Out::Spill(g) => {
                        assert!(file.last().is_none_or(|l| l.start_ts < g.start_ts));
                        assert!(matches!(g.items.first(), Some(Item::Video(v)) if v.key));
                        file.push(g);
                    }
                    Out::SpillTrim { keep_from_ts } => file.retain(|g| g.start_ts >= keep_from_ts),
                    Out::Unspill { from_ts } => {
                        for g in file.drain(..).filter(|g| g.start_ts >= from_ts) {
                            for i in g.items {
                                if let Item::Video(v) = i {
                                    video(v, &mut current);
                                }
                            }
                        }
                    }
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

    #[test]
    fn spilled_gops_are_recorded_ahead_of_those_in_memory() {
        // pre 10 s = 250 frames = 10 GOPs of 2500 bytes; memory 6000 bytes: two whole GOPs
        // plus the one being filled, the rest spilled.
        let mut g = EventGate::with_spill(10, 2, usize::MAX, 6000);
        let mut file = Vec::new();
        assert!(run_with(&mut g, &mut file, 0, 1000, &[]).is_empty());
        let s = g.stats();
        assert!(s.buffered_bytes <= 6000 + 2500, "{s:?}");
        // 10 GOPs of the window (plus the one containing now − pre), minus those in memory.
        assert!((20_000..=27_500).contains(&s.spilled_bytes), "{s:?}");
        assert_eq!(
            file.iter().map(|g| g.items.len() * 100).sum::<usize>(),
            s.spilled_bytes,
            "the file holds what the gate counts"
        );
        assert_eq!(s.dropped_bytes, 0);
        let runs = run_with(
            &mut g,
            &mut file,
            1000,
            1400,
            &[(1010, true), (1020, false)],
        );
        // As without spill: from the GOP containing 1010 − 250 = 760 (starts at 750).
        assert_eq!(runs, vec![(750, 1074)]);
        // Buffering (and spilling) started again after the recording; the file holds only
        // what the gate counts.
        assert_eq!(
            file.iter().map(|g| g.items.len() * 100).sum::<usize>(),
            g.stats().spilled_bytes
        );
    }

    #[test]
    fn a_lost_spill_drops_the_oldest_pre_event_data_only() {
        let mut g = EventGate::with_spill(10, 0, usize::MAX, 6000);
        let mut file = Vec::new();
        run_with(&mut g, &mut file, 0, 1000, &[]);
        let spilled = g.stats().spilled_bytes;
        assert!(spilled > 0);
        // The disk is full: the caller reports it and drops its file.
        g.spill_lost();
        file.clear();
        let s = g.stats();
        assert_eq!(
            (s.spill_failures, s.dropped_bytes, s.spilled_bytes),
            (1, spilled as u64, 0)
        );
        // Recording goes on with what is in memory: the two complete GOPs and the current one.
        let runs = run_with(&mut g, &mut file, 1000, 1100, &[(1010, true)]);
        assert_eq!(runs, vec![(950, 1099)]);
    }

    #[test]
    fn the_total_bound_drops_spilled_gops_first() {
        // Total 10 000 bytes (four GOPs), memory 3000: the oldest spilled go first.
        let mut g = EventGate::with_spill(300, 0, 10_000, 3000);
        let mut file = Vec::new();
        run_with(&mut g, &mut file, 0, 2000, &[]);
        let s = g.stats();
        assert!(s.buffered_bytes + s.spilled_bytes <= 10_000, "{s:?}");
        assert!(s.overflow_gops > 0 && s.dropped_bytes > 0);
        let runs = run_with(&mut g, &mut file, 2000, 2100, &[(2010, true)]);
        assert_eq!(runs, vec![(1925, 2099)]);
    }

    proptest::proptest! {
        /// Whatever the memory bound, spilling changes nothing recorded.
        #[test]
        fn spilling_records_the_same_as_memory(
            mem in 0usize..20_000,
            pre in 0u32..12,
            post in 0u32..4,
            starts in proptest::collection::vec((0i64..3000, 1i64..200), 0..5),
        ) {
            let mut events: Vec<(i64, bool)> = Vec::new();
            let mut starts = starts;
            starts.sort();
            let mut t = 0;
            for (s, len) in starts {
                let s = s.max(t + 1);
                events.push((s, true));
                events.push((s + len, false));
                t = s + len;
            }
            let mut a = EventGate::new(pre, post, usize::MAX);
            let want = run(&mut a, 0, 3500, &events);
            let mut b = EventGate::with_spill(pre, post, usize::MAX, mem);
            let mut file = Vec::new();
            let got = run_with(&mut b, &mut file, 0, 3500, &events);
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert!(b.stats().buffered_bytes <= mem + 2500);
        }
    }
}
