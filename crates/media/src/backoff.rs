//! Capped exponential backoff with jitter for camera reconnects and upload retries.
//!
//! "Equal jitter": the n-th consecutive failure waits `d/2 + rand(0..=d/2)` with
//! `d = min(cap, base * 2^n)`. Keeping half of the delay fixed stops a fleet of recorders from
//! hammering a rebooting camera or a recovering S3 endpoint in lockstep, while never waiting
//! less than half the nominal delay.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    rng: SplitMix64,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            failures: 0,
            rng: SplitMix64(seed),
        }
    }

    /// Seeded from the process' random hasher keys, so that recorders started together
    /// still spread out.
    pub fn with_random_seed(base: Duration, cap: Duration) -> Self {
        Self::new(base, cap, random_seed())
    }

    /// Nominal delay (before jitter) of the next failure.
    pub fn nominal(&self) -> Duration {
        nominal_delay(self.base, self.cap, self.failures)
    }

    /// Records one more failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.nominal();
        self.failures = self.failures.saturating_add(1);
        jittered(d, self.rng.next_u64())
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Called after a success that lasted (a session that delivered footage for a while).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// `min(cap, base * 2^failures)` without overflow.
pub fn nominal_delay(base: Duration, cap: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// `d/2 + (r mod (d/2 + 1))` at millisecond resolution.
pub fn jittered(d: Duration, r: u64) -> Duration {
    let ms = d.as_millis().min(u64::MAX as u128) as u64;
    let half = ms / 2;
    Duration::from_millis(ms - half + r % (half + 1))
}

/// A small, good-enough PRNG for jitter (not for anything secret).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_and_caps() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(30);
        let got: Vec<u64> = (0..10)
            .map(|n| nominal_delay(base, cap, n).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [
                500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
            ]
        );
        assert_eq!(nominal_delay(base, cap, u32::MAX), cap);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8), 7);
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.nominal(), Duration::from_secs(8));
        b.reset();
        assert_eq!(b.nominal(), Duration::from_secs(1));
    }

    proptest! {
        #[test]
        fn jitter_stays_within_half_and_full(base_ms in 1u64..10_000, cap_ms in 1u64..600_000, n in 0u32..64, seed in any::<u64>()) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_millis(cap_ms);
            let mut b = Backoff::new(base, cap, seed);
            for _ in 0..n { b.next_delay(); }
            let nominal = b.nominal();
            let d = b.next_delay();
            prop_assert!(nominal <= cap.max(base));
            prop_assert!(d <= nominal);
            prop_assert!(d.as_millis() * 2 + 1 >= nominal.as_millis());
        }

        #[test]
        fn nominal_is_monotonic(base_ms in 1u64..10_000, cap_ms in 1u64..600_000, n in 0u32..200) {
            let base = Duration::from_millis(base_ms);
            let cap = Duration::from_millis(cap_ms).max(base);
            prop_assert!(nominal_delay(base, cap, n) <= nominal_delay(base, cap, n + 1));
        }
    }
}
