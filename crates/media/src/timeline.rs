//! Mapping a camera's RTP clock to UTC.
//!
//! Segment keys carry UTC milliseconds, but the only precise clock in a stream is the camera's
//! RTP timestamp (90 kHz for video). Deriving every time from RTP deltas makes consecutive
//! segments tile exactly (the end of one segment and the start of the next are the same RTP
//! timestamp, hence the same millisecond). The RTP clock is tied to UTC by the receipt times:
//!
//! * **Anchor.** For every frame, `receipt - mapped(ts)` is the frame's apparent latency. A frame
//!   can never arrive before it was captured, so the *smallest* apparent latency is the best
//!   estimate of the anchor; until the first segment is closed the anchor is moved back to the
//!   earliest-arriving frame. This rejects the burst of buffered frames some cameras send right
//!   after PLAY (those arrive late, not early).
//! * **Drift.** Camera crystals are off by tens of ppm (50 ppm = 4.3 s a day). At every segment
//!   boundary the timeline is re-based *continuously* (the boundary keeps its time) and the rate
//!   is slewed in proportion to the smallest apparent latency seen during the last segment,
//!   limited to ±1000 ppm. Proportional control leaves a steady error of
//!   `clock error × HORIZON` (6 ms at 100 ppm), far below one frame.
//! * **Steps.** If the error exceeds `STEP_US` at two boundaries in a row (the host clock was
//!   stepped, the camera's clock jumped), slewing would take hours, so the timeline jumps; the
//!   keys then show a hole or an overlap of that size at one boundary, which readers handle like
//!   any other. One segment's worth of late frames (a congested link, an overloaded camera) is
//!   not enough: it is only slewed, by at most 1000 ppm.
//! * **Early frames.** A frame that arrives more than `EARLY_STEP_US` *before* its mapped time
//!   is proof that the anchor is late (nothing arrives before it is captured; congestion only
//!   makes frames later), so the timeline steps back at that boundary at once. This happens
//!   when a session starts on a starved machine: its first frames arrive late all together
//!   for longer than the settling second, and the anchor locks up to a second late (issue 18).
//!   Slewing that away at 1000 ppm would take a quarter of an hour, during which every key,
//!   and the start of the next outage, would be misdated; the backward step instead overlaps
//!   the previous key, which loses nothing.
//!
//! RTCP sender reports are not used: many cameras send NTP times from an unsynchronised clock.

/// Time over which a measured offset is slewed away.
const HORIZON_US: f64 = 60e6;
/// Largest rate correction, parts per million.
const MAX_PPM: f64 = 1000.0;
/// Offsets larger than this are stepped, not slewed.
pub const STEP_US: i64 = 2_000_000;
/// Frames arriving this much earlier than their mapped time step the timeline back at once.
/// Far above what slewing leaves (the steady error is `clock error × HORIZON`: 60 ms at the
/// 1000 ppm limit) and above jitter of a path whose latency falls after the start.
pub const EARLY_STEP_US: i64 = 150_000;

#[derive(Clone, Debug)]
pub struct Timeline {
    clock_rate: u32,
    base_ts: i64,
    base_wall_us: i64,
    ppm: f64,
    locked: bool,
    seg_min_err_us: Option<i64>,
    /// RTP time of the last frame that moved the unlocked anchor by more than `SETTLE_US`.
    last_move_ts: i64,
    /// A step-sized error seen at the previous boundary, waiting for confirmation.
    pending_step: Option<i64>,
}

/// An anchor that moved less than this during the last second is settled.
const SETTLE_US: i64 = 20_000;

/// What `boundary` did, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Adjust {
    /// First boundary: the anchor is fixed from now on.
    Locked,
    /// Rate set to this many ppm.
    Slewed(f64),
    /// Offset too large; jumped by this many microseconds.
    Stepped(i64),
}

impl Timeline {
    /// Starts a timeline with the first frame of a session: RTP time `ts`, received at
    /// `recv_wall_us` (UTC microseconds).
    pub fn new(clock_rate: u32, ts: i64, recv_wall_us: i64) -> Self {
        Timeline {
            clock_rate: clock_rate.max(1),
            base_ts: ts,
            base_wall_us: recv_wall_us,
            ppm: 0.0,
            locked: false,
            seg_min_err_us: None,
            last_move_ts: ts,
            pending_step: None,
        }
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// UTC microseconds of RTP time `ts`.
    pub fn map_us(&self, ts: i64) -> i64 {
        let dt = (ts - self.base_ts) as f64 * 1e6 / self.clock_rate as f64;
        self.base_wall_us + (dt * (1.0 + self.ppm * 1e-6)).round() as i64
    }

    /// The RTP time that maps to UTC microseconds `wall_us` (inverse of `map_us`), used to put
    /// audio frames on the video clock.
    pub fn inverse(&self, wall_us: i64) -> i64 {
        let dt_us = (wall_us - self.base_wall_us) as f64 / (1.0 + self.ppm * 1e-6);
        self.base_ts + (dt_us * self.clock_rate as f64 / 1e6).round() as i64
    }

    /// UTC milliseconds of RTP time `ts` (floor, so that equal `ts` give equal keys).
    pub fn map_ms(&self, ts: i64) -> i64 {
        self.map_us(ts).div_euclid(1000)
    }

    /// Feeds the receipt time of a frame.
    pub fn observe(&mut self, ts: i64, recv_wall_us: i64) {
        let err = recv_wall_us - self.map_us(ts);
        if !self.locked {
            if err < 0 {
                self.base_wall_us += err;
                if err < -SETTLE_US {
                    self.last_move_ts = ts;
                }
            }
        } else {
            self.seg_min_err_us = Some(self.seg_min_err_us.map_or(err, |m| m.min(err)));
        }
    }

    /// True when the anchor has not moved by more than 20 ms during the last second of stream
    /// time before `ts`. Cameras that send a burst of buffered frames after PLAY keep moving it
    /// until real-time frames arrive; locking before that would misdate the whole session.
    pub fn settled(&self, ts: i64) -> bool {
        ts - self.last_move_ts >= i64::from(self.clock_rate)
    }

    /// Fixes the anchor without a boundary (once the first fragment is on disk, so that the
    /// first segment's start time, and the gap before it, can be reported right away).
    pub fn lock(&mut self) {
        self.locked = true;
    }

    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// Called at a segment boundary at RTP time `ts`: the time of `ts` stays what it was (so the
    /// closing segment's end equals the next segment's start) and the rate is corrected.
    pub fn boundary(&mut self, ts: i64) -> Adjust {
        let here = self.map_us(ts);
        self.base_ts = ts;
        self.base_wall_us = here;
        if !self.locked {
            self.locked = true;
            self.seg_min_err_us = None;
            return Adjust::Locked;
        }
        if self.seg_min_err_us.is_none() {
            return Adjust::Slewed(self.ppm);
        }
        let Some(err) = self.seg_min_err_us.take() else {
            return Adjust::Slewed(self.ppm);
        };
        if err < -EARLY_STEP_US {
            self.base_wall_us += err;
            self.ppm = 0.0;
            self.pending_step = None;
            return Adjust::Stepped(err);
        }
        if err.abs() > STEP_US {
            if let Some(prev) = self.pending_step.take()
                && prev.signum() == err.signum()
            {
                self.base_wall_us += err;
                self.ppm = 0.0;
                return Adjust::Stepped(err);
            }
            self.pending_step = Some(err);
        } else {
            self.pending_step = None;
        }
        self.ppm = (err as f64 / HORIZON_US * 1e6).clamp(-MAX_PPM, MAX_PPM);
        Adjust::Slewed(self.ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_segment_anchor_takes_earliest_arrival() {
        // Frames at 25 fps; the first three arrive in a burst 400 ms late.
        let mut t = Timeline::new(90_000, 1000, 10_400_000);
        t.observe(1000 + 3600, 10_400_100);
        t.observe(1000 + 7200, 10_400_200);
        t.observe(1000 + 10_800, 10_130_000); // 120 ms of latency, captured at 10.010 s
        assert_eq!(t.map_us(1000), 10_010_000);
    }

    #[test]
    fn burst_after_play_is_not_taken_as_real_time() {
        // 2 s of buffered frames arrive at once at t = 10 s, then frames arrive in real time:
        // frame k (k >= 50) at 10 s + (k - 50) * 40 ms + 5 ms.
        let base = 10_000_000;
        let mut t = Timeline::new(90_000, 0, base);
        let mut settled_at = None;
        for k in 1..150i64 {
            let ts = k * 3600;
            let recv = if k < 50 {
                base + k * 10
            } else {
                base + (k - 50) * 40_000 + 5_000
            };
            t.observe(ts, recv);
            if settled_at.is_none() && k % 25 == 0 && t.settled(ts) {
                settled_at = Some(k);
            }
        }
        // Capture of frame 0 was 2 s before the burst; the anchor finds it within 10 ms.
        assert!(
            (t.map_us(0) - (base - 2_000_000)).abs() < 10_000,
            "{}",
            t.map_us(0)
        );
        // Not settled during the burst: only a second after real-time frames began.
        assert!(settled_at.is_some_and(|k| k >= 75), "{settled_at:?}");
    }

    #[test]
    fn boundary_keeps_time_continuous() {
        let mut t = Timeline::new(90_000, 0, 0);
        t.boundary(900_000);
        let before = t.map_ms(1_800_000);
        for i in 0..250 {
            // The camera clock runs 500 ppm slow: receipts drift later.
            let ts = 900_000 + i * 3600;
            t.observe(ts, ((ts as f64 / 0.09) * 1.0005) as i64);
        }
        let adj = t.boundary(1_800_000);
        assert!(matches!(adj, Adjust::Slewed(p) if p > 0.0), "{adj:?}");
        assert_eq!(t.map_ms(1_800_000), before);
    }

    #[test]
    fn inverse_round_trips() {
        let mut t = Timeline::new(90_000, 12_345, 1_700_000_000_000_000);
        t.boundary(12_345);
        t.observe(12_345 + 900_000, 1_700_000_010_030_000);
        t.boundary(12_345 + 900_000);
        for ts in [12_345 + 900_000, 12_345 + 1_000_000, 99_999_999] {
            assert!((t.inverse(t.map_us(ts)) - ts).abs() <= 1);
        }
    }

    #[test]
    fn large_offset_steps_once_confirmed() {
        let mut t = Timeline::new(90_000, 0, 0);
        t.boundary(0);
        // One segment of late frames is only slewed.
        t.observe(90_000, 1_000_000 + 5_000_000);
        assert_eq!(t.boundary(90_000), Adjust::Slewed(MAX_PPM));
        let here = t.map_us(180_000);
        // The next segment confirms it: step.
        t.observe(180_000, here + 5_000_000);
        assert_eq!(t.boundary(180_000), Adjust::Stepped(5_000_000));
        assert_eq!(t.map_us(180_000), here + 5_000_000);
    }

    #[test]
    fn a_late_segment_then_normal_does_not_step() {
        let mut t = Timeline::new(90_000, 0, 0);
        t.boundary(0);
        t.observe(900_000, 10_000_000 + 2_500_000);
        assert!(matches!(t.boundary(900_000), Adjust::Slewed(_)));
        let here = t.map_us(1_800_000);
        t.observe(1_800_000, here);
        assert!(matches!(t.boundary(1_800_000), Adjust::Slewed(_)));
    }

    #[test]
    fn a_starved_start_is_stepped_back_at_the_first_boundary() {
        // 25 fps. On a starved machine every frame of the first 2 s arrives 1.1 s late (more
        // than the settling second, so the anchor locks 1.1 s late); then frames arrive on time
        // (5 ms of latency). Frame k is captured at 10 s + k * 40 ms.
        let cap = |k: i64| 10_000_000 + k * 40_000;
        let mut t = Timeline::new(90_000, 0, cap(0) + 1_100_000);
        for k in 1..50 {
            t.observe(k * 3600, cap(k) + 1_100_000);
        }
        assert!(t.settled(49 * 3600));
        t.lock();
        assert_eq!(
            t.map_us(0),
            cap(0) + 1_100_000,
            "locked late, as on the starved machine"
        );
        for k in 50..100 {
            t.observe(k * 3600, cap(k) + 5_000);
        }
        // First boundary after the lock: the early frames prove the anchor late; it steps back
        // by the whole error at once, and times are right to within the latency from then on.
        let adj = t.boundary(100 * 3600);
        assert_eq!(adj, Adjust::Stepped(-1_095_000));
        assert_eq!(t.map_us(100 * 3600), cap(100) + 5_000);
        assert_eq!(t.map_us(150 * 3600), cap(150) + 5_000);
    }

    #[test]
    fn a_path_that_gets_a_little_faster_is_slewed_not_stepped() {
        // Latency 80 ms while settling, 10 ms later: 70 ms early is within what slewing handles.
        let cap = |k: i64| 10_000_000 + k * 40_000;
        let mut t = Timeline::new(90_000, 0, cap(0) + 80_000);
        for k in 1..50 {
            t.observe(k * 3600, cap(k) + 80_000);
        }
        t.lock();
        for k in 50..100 {
            t.observe(k * 3600, cap(k) + 10_000);
        }
        assert!(matches!(t.boundary(100 * 3600), Adjust::Slewed(_)));
    }

    proptest! {
        /// An hour of 10 s segments from a camera whose clock is off by up to ±200 ppm, with
        /// 5..60 ms of network latency: the mapped times track the true capture times.
        #[test]
        fn tracks_drifting_camera(ppm in -200.0f64..200.0, seed in any::<u64>()) {
            let mut rng = crate::backoff::SplitMix64(seed);
            let rate = 90_000i64;
            let frame = 3600i64;
            let start_us = 1_700_000_000_000_000i64;
            // true capture time of RTP ts: camera ticks run (1 + ppm) fast.
            let truth = |ts: i64| start_us + ((ts as f64 / rate as f64) * 1e6 / (1.0 + ppm * 1e-6)) as i64;
            let lat = |r: u64| 5_000 + (r % 55_000) as i64;
            let mut t = Timeline::new(rate as u32, 0, truth(0) + lat(rng.next_u64()));
            let mut worst = 0i64;
            for seg in 0..360i64 {
                for i in 0..250i64 {
                    let ts = (seg * 250 + i) * frame;
                    t.observe(ts, truth(ts) + lat(rng.next_u64()));
                }
                let cut = (seg + 1) * 250 * frame;
                let end_before = t.map_ms(cut);
                t.boundary(cut);
                prop_assert_eq!(t.map_ms(cut), end_before);
                if seg > 30 {
                    worst = worst.max((t.map_us(cut) - truth(cut)).abs());
                }
            }
            // Within the minimum latency (5 ms) plus the slew's steady error plus jitter.
            prop_assert!(worst < 40_000, "worst error {} us", worst);
        }
    }
}
