//! Jittered exponential backoff for the gateway's reconnects.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, cur: min }
    }

    /// The next delay: uniformly in [cur/2, cur] by `jitter` (a random u32), then doubles `cur`
    /// up to `max`.
    pub fn next_with(&mut self, jitter: u32) -> Duration {
        let half = self.cur / 2;
        let spread = (self.cur - half).as_micros() as u64;
        let d = half + Duration::from_micros(spread * u64::from(jitter) / u64::from(u32::MAX));
        self.cur = (self.cur * 2).min(self.max);
        d
    }

    pub fn next_delay(&mut self) -> Duration {
        let mut b = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        self.next_with(u32::from_le_bytes(b))
    }

    pub fn reset(&mut self) {
        self.cur = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_jitters_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        assert_eq!(b.next_with(0), Duration::from_millis(100));
        assert_eq!(b.next_with(u32::MAX), Duration::from_millis(400));
        let d = b.next_with(u32::MAX / 2);
        assert!(
            d >= Duration::from_millis(400) && d <= Duration::from_millis(800),
            "{d:?}"
        );
        for _ in 0..10 {
            assert!(b.next_with(u32::MAX) <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
