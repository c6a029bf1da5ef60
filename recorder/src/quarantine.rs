//! Holding off a camera whose sessions keep exceeding the receive limits — pure logic, no I/O.
//!
//! The RTSP client ends a session as soon as a camera makes it buffer more than its limits
//! (message, head, partial frame; see docs/architecture.md, "Hostile cameras"), so a hostile or
//! broken camera costs a bounded amount of memory once. Reconnecting to it at the usual backoff
//! would still cost that again and again; after `strikes` violations within `window` the
//! camera is quarantined: not contacted for a hold-off that doubles with each quarantine in a
//! row, up to `max_hold`. A session that records footage and ends without a violation forgives
//! the past quarantines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuarantinePolicy {
    /// Violations within `window` that quarantine the camera.
    pub strikes: usize,
    pub window: Duration,
    /// Hold-off of the first quarantine; doubled for each further one in a row.
    pub first_hold: Duration,
    pub max_hold: Duration,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        QuarantinePolicy {
            strikes: 3,
            window: Duration::from_secs(600),
            first_hold: Duration::from_secs(30),
            max_hold: Duration::from_secs(600),
        }
    }
}

impl QuarantinePolicy {
    /// The one-line status message of a quarantine; `last` is the recorder's own description
    /// of the last violation.
    pub fn message(&self, hold: Duration, last: &str) -> String {
        format!(
            "quarantined for {} s: {} sessions within {} min exceeded the receive limits or failed in the RTSP client (last: {last})",
            hold.as_secs(),
            self.strikes,
            self.window.as_secs() / 60,
        )
    }
}

/// How one session ended, as far as the quarantine is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The camera made the session exceed a receive limit, or crash the RTSP client.
    LimitExceeded,
    /// Footage was recorded and the session ended for another reason.
    Recorded,
    /// Anything else (refused, timed out, no keyframe): neither counts.
    Other,
}

#[derive(Debug)]
pub struct Quarantine {
    policy: QuarantinePolicy,
    /// Times of the recent violations, oldest first.
    recent: VecDeque<Instant>,
    /// Quarantines in a row (not forgiven by a healthy session).
    level: u32,
}

impl Quarantine {
    pub fn new(policy: QuarantinePolicy) -> Self {
        Quarantine {
            policy,
            recent: VecDeque::new(),
            level: 0,
        }
    }

    /// Records how a session ended at `now`; returns the hold-off if the camera is now
    /// quarantined.
    pub fn session_ended(&mut self, now: Instant, outcome: SessionOutcome) -> Option<Duration> {
        match outcome {
            SessionOutcome::Recorded => {
                self.level = 0;
                None
            }
            SessionOutcome::Other => None,
            SessionOutcome::LimitExceeded => {
                while self
                    .recent
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > self.policy.window)
                {
                    self.recent.pop_front();
                }
                self.recent.push_back(now);
                if self.recent.len() < self.policy.strikes.max(1) {
                    return None;
                }
                self.recent.clear();
                let hold = hold_for(self.level, self.policy);
                self.level = self.level.saturating_add(1);
                Some(hold)
            }
        }
    }

    /// Violations counted towards the next quarantine.
    pub fn strikes(&self) -> usize {
        self.recent.len()
    }
}

/// The hold-off of the quarantine after `level` earlier ones in a row.
pub fn hold_for(level: u32, policy: QuarantinePolicy) -> Duration {
    let factor = 1u32.checked_shl(level.min(31)).unwrap_or(u32::MAX);
    policy
        .first_hold
        .saturating_mul(factor)
        .min(policy.max_hold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> QuarantinePolicy {
        QuarantinePolicy::default()
    }

    #[test]
    fn third_violation_in_the_window_quarantines_with_doubling_hold_off() {
        let mut q = Quarantine::new(policy());
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut holds = Vec::new();
        for i in 0..21u32 {
            if let Some(h) = q.session_ended(t0 + s * i, SessionOutcome::LimitExceeded) {
                holds.push(h.as_secs());
            }
        }
        assert_eq!(holds, [30, 60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn violations_outside_the_window_do_not_add_up() {
        let mut q = Quarantine::new(policy());
        let t0 = Instant::now();
        let eleven_min = Duration::from_secs(660);
        for i in 0..10u32 {
            assert_eq!(
                q.session_ended(t0 + eleven_min * i, SessionOutcome::LimitExceeded),
                None
            );
            assert_eq!(q.strikes(), 1);
        }
    }

    #[test]
    fn a_recording_session_forgives_earlier_quarantines() {
        let mut q = Quarantine::new(policy());
        let t0 = Instant::now();
        for _ in 0..6 {
            q.session_ended(t0, SessionOutcome::LimitExceeded);
        }
        q.session_ended(t0, SessionOutcome::Recorded);
        let hold = (0..3).find_map(|_| q.session_ended(t0, SessionOutcome::LimitExceeded));
        assert_eq!(hold, Some(Duration::from_secs(30)));
    }

    #[test]
    fn other_endings_neither_count_nor_forgive() {
        let mut q = Quarantine::new(policy());
        let t0 = Instant::now();
        q.session_ended(t0, SessionOutcome::LimitExceeded);
        q.session_ended(t0, SessionOutcome::Other);
        q.session_ended(t0, SessionOutcome::LimitExceeded);
        assert!(q.session_ended(t0, SessionOutcome::LimitExceeded).is_some());
    }

    proptest! {
        #[test]
        fn hold_off_is_within_bounds(level in 0u32..100) {
            let h = hold_for(level, policy());
            prop_assert!(h >= policy().first_hold && h <= policy().max_hold);
        }
    }
}
