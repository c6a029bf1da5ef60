//! The per-site stream-open rate limit of the rendezvous service (`vigil-rendezvous
//! --site-streams-per-minute`): each stream a recorder opens to a site's camera costs the site's
//! gateway a camera dial and a TLS handshake, so a recorder credential (or a recorder in a
//! reconnect loop) may open only so many per minute per site; the rest are refused
//! (`vigil_rendezvous_refusals_total{reason="rate_limited"}`) and the recorder retries with its
//! backoff. A token bucket per site: the rate per minute, bursts of up to a quarter minute's
//! worth (at least 10: a site's cameras all reconnecting at once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// How many sites' buckets are kept before the idle (full) ones are dropped.
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Slot {
    tokens: f64,
    last: Instant,
}

/// Stream opens per minute per site; unlimited until [`SiteRate::set_per_minute`].
#[derive(Debug, Default)]
pub struct SiteRate {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    per_minute: Option<u32>,
    sites: HashMap<(String, String), Slot>,
}

impl SiteRate {
    /// Sets the limit (`None` or 0: unlimited).
    pub fn set_per_minute(&self, per_minute: Option<u32>) {
        let mut i = self.lock();
        i.per_minute = per_minute.filter(|n| *n > 0);
        i.sites.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a stream to `namespace/site` may open at `now` (and takes a token when it may).
    pub fn allow(&self, namespace: &str, site: &str, now: Instant) -> bool {
        let mut i = self.lock();
        let Some(per_minute) = i.per_minute else {
            return true;
        };
        let rate = f64::from(per_minute) / 60.0;
        let burst = (f64::from(per_minute) / 4.0).max(10.0);
        if i.sites.len() >= MAX_TRACKED {
            // Sites whose bucket has refilled lose nothing by being forgotten.
            i.sites.retain(|_, s| {
                s.tokens + now.saturating_duration_since(s.last).as_secs_f64() * rate < burst
            });
        }
        let slot = i
            .sites
            .entry((namespace.to_string(), site.to_string()))
            .or_insert(Slot {
                tokens: burst,
                last: now,
            });
        slot.tokens = (slot.tokens + now.saturating_duration_since(slot.last).as_secs_f64() * rate)
            .min(burst);
        slot.last = now;
        if slot.tokens >= 1.0 {
            slot.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unlimited_until_set() {
        let r = SiteRate::default();
        let t = Instant::now();
        assert!((0..10_000).all(|_| r.allow("a", "b", t)));
        r.set_per_minute(Some(0));
        assert!((0..100).all(|_| r.allow("a", "b", t)), "0 is unlimited");
    }

    #[test]
    fn a_site_gets_its_burst_then_the_rate_and_other_sites_are_not_affected() {
        let r = SiteRate::default();
        r.set_per_minute(Some(120)); // 2/s, burst 30
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| r.allow("a", "branch", t0)).count();
        assert_eq!(allowed, 30, "the burst");
        assert!(r.allow("a", "other", t0), "another site has its own bucket");
        assert!(
            r.allow("b", "branch", t0),
            "same name in another namespace too"
        );
        // Half a second later: one more; over 10 s at most 20.
        assert!(r.allow("a", "branch", t0 + Duration::from_millis(500)));
        assert!(!r.allow("a", "branch", t0 + Duration::from_millis(600)));
        let mut n = 0;
        for ms in (600..10_600).step_by(50) {
            if r.allow("a", "branch", t0 + Duration::from_millis(ms)) {
                n += 1;
            }
        }
        assert!((19..=21).contains(&n), "{n} in 10 s at 2/s");
    }

    #[test]
    fn idle_sites_are_forgotten_when_many_are_tracked() {
        let r = SiteRate::default();
        r.set_per_minute(Some(60));
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED {
            assert!(r.allow("a", &format!("s{i}"), t0));
        }
        // A minute later every bucket is full again: all are dropped at the next insert.
        assert!(r.allow("a", "new", t0 + Duration::from_secs(60)));
        assert_eq!(r.lock().sites.len(), 1);
    }
}
