//! Smoothed bitrate: an exponentially weighted moving average over stream time.
//!
//! Each observation is "this many bytes over this much stream time" (one fragment). Weighting
//! by duration with `alpha = 1 - exp(-dt/tau)` makes the result independent of how often it is
//! fed: a 1 s sample and ten 0.1 s samples of the same rate move it identically, so the reported
//! bitrate does not depend on GOP length or fragment size.

#[derive(Clone, Debug)]
pub struct BitrateEwma {
    tau_secs: f64,
    bps: Option<f64>,
}

impl BitrateEwma {
    /// `tau_secs`: time constant; after `tau` of a new steady rate, 63% of the step is reflected.
    pub fn new(tau_secs: f64) -> Self {
        BitrateEwma {
            tau_secs: tau_secs.max(1e-3),
            bps: None,
        }
    }

    /// Adds `bytes` received over `secs` of stream time. Non-positive durations are ignored
    /// (they carry no rate information).
    pub fn observe(&mut self, bytes: u64, secs: f64) {
        if secs.is_nan() || secs <= 0.0 || !secs.is_finite() {
            return;
        }
        let sample = bytes as f64 * 8.0 / secs;
        self.bps = Some(match self.bps {
            // The first sample is the best estimate we have; starting from 0 would under-report
            // new cameras for several time constants and mislead placement.
            None => sample,
            Some(v) => {
                let alpha = 1.0 - (-secs / self.tau_secs).exp();
                v + alpha * (sample - v)
            }
        });
    }

    pub fn bits_per_second(&self) -> Option<f64> {
        self.bps
    }

    pub fn kbps(&self) -> Option<u32> {
        self.bps
            .map(|b| (b / 1000.0).round().clamp(0.0, u32::MAX as f64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn converges_to_steady_rate() {
        let mut e = BitrateEwma::new(10.0);
        for _ in 0..100 {
            e.observe(500_000, 1.0); // 4 Mbit/s
        }
        assert_eq!(e.kbps(), Some(4000));
    }

    #[test]
    fn step_response_follows_time_constant() {
        let mut e = BitrateEwma::new(10.0);
        e.observe(125_000, 1.0); // 1 Mbit/s
        for _ in 0..10 {
            e.observe(250_000, 1.0); // 2 Mbit/s for tau seconds
        }
        let v = e.bits_per_second().unwrap();
        let expect = 2e6 - 1e6 * (-1.0f64).exp();
        assert!((v - expect).abs() < 1.0, "{v} vs {expect}");
    }

    #[test]
    fn ignores_empty_durations() {
        let mut e = BitrateEwma::new(10.0);
        e.observe(100, 0.0);
        e.observe(100, f64::NAN);
        assert_eq!(e.kbps(), None);
    }

    proptest! {
        #[test]
        fn split_samples_equal_whole(rate in 1_000u64..20_000_000, parts in 1usize..20, prior in 1_000u64..20_000_000) {
            // Same rate fed in one piece or in `parts` pieces gives the same average.
            let mut a = BitrateEwma::new(10.0);
            let mut b = BitrateEwma::new(10.0);
            a.observe(prior / 8, 1.0);
            b.observe(prior / 8, 1.0);
            a.observe(rate / 8, 1.0);
            for _ in 0..parts {
                b.observe(rate / 8 / parts as u64, 1.0 / parts as f64);
            }
            let (x, y) = (a.bits_per_second().unwrap(), b.bits_per_second().unwrap());
            // Integer division of the bytes loses up to `parts` bytes per second.
            prop_assert!((x - y).abs() <= 8.0 * parts as f64 * 2.0 + 1e-6 * x, "{} {}", x, y);
        }

        #[test]
        fn stays_between_min_and_max(samples in proptest::collection::vec((0u64..10_000_000, 0.01f64..5.0), 1..50)) {
            let mut e = BitrateEwma::new(10.0);
            let mut lo = f64::MAX;
            let mut hi = 0f64;
            for (bytes, secs) in samples {
                e.observe(bytes, secs);
                let r = bytes as f64 * 8.0 / secs;
                lo = lo.min(r);
                hi = hi.max(r);
                let v = e.bits_per_second().unwrap();
                prop_assert!(v >= lo * (1.0 - 1e-9) - 1e-9 && v <= hi * (1.0 + 1e-9) + 1e-9);
            }
        }
    }
}
