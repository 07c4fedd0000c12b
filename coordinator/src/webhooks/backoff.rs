//! The retry policy of one webhook: exponential backoff with jitter, capped.
//!
//! Before attempt `n + 1` (after `n` failed ones) the nominal wait is
//! `min(max, initial × 2^(n-1))`; the actual wait is drawn uniformly from its upper half
//! (`[nominal/2, nominal]`), so coordinators and endpoints that failed together do not retry
//! in lockstep, while the wait still grows. A `Retry-After` of a 429 or 503 answer counts as
//! the nominal wait when it is longer (capped by `max` too).

use std::time::Duration;

/// How often and how long to retry one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts per event, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Nominal wait after the first failed attempt.
    pub initial: Duration,
    /// Cap on every wait.
    pub max: Duration,
}

impl Backoff {
    /// The nominal wait after `failed` failed attempts (`failed >= 1`), before jitter.
    pub fn nominal(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait after `failed` failed attempts: the upper half of the nominal wait, placed by
    /// `unit` (in `[0, 1)`; a random draw in production, fixed in tests). `retry_after`, the
    /// receiver's own request, raises the nominal wait (never above `max`).
    pub fn wait(&self, failed: u32, unit: f64, retry_after: Option<Duration>) -> Duration {
        let nominal = self
            .nominal(failed)
            .max(retry_after.unwrap_or_default().min(self.max));
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        nominal / 2 + (nominal / 2).mul_f64(unit)
    }

    /// Whether another attempt follows `failed` failed ones.
    pub fn again(&self, failed: u32) -> bool {
        failed < self.max_attempts
    }
}

/// A uniform draw in `[0, 1)` from the OS; 0.5 if the OS has none to give.
pub fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> Backoff {
        Backoff {
            max_attempts: 5,
            initial: 100 * MS,
            max: 1000 * MS,
        }
    }

    #[test]
    fn doubles_and_is_capped() {
        let b = policy();
        let nominal: Vec<_> = (1..=7).map(|n| b.nominal(n)).collect();
        assert_eq!(
            nominal,
            [100, 200, 400, 800, 1000, 1000, 1000].map(|m| m * MS)
        );
        assert_eq!(b.nominal(u32::MAX), 1000 * MS, "no overflow");
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let b = policy();
        assert_eq!(b.wait(1, 0.0, None), 50 * MS);
        assert_eq!(b.wait(1, 1.0, None), 100 * MS);
        assert_eq!(b.wait(3, 0.5, None), 300 * MS);
        assert_eq!(b.wait(9, 0.999_999, None).as_millis(), 999);
        assert_eq!(b.wait(2, f64::NAN, None), 100 * MS);
        for _ in 0..1000 {
            let w = b.wait(4, unit_random(), None);
            assert!((400 * MS..=800 * MS).contains(&w), "{w:?}");
        }
    }

    #[test]
    fn retry_after_raises_but_never_past_the_cap() {
        let b = policy();
        assert_eq!(b.wait(1, 1.0, Some(600 * MS)), 600 * MS);
        assert_eq!(b.wait(1, 1.0, Some(Duration::from_secs(3600))), 1000 * MS);
        assert_eq!(
            b.wait(4, 1.0, Some(10 * MS)),
            800 * MS,
            "shorter is ignored"
        );
    }

    #[test]
    fn attempts() {
        let b = policy();
        assert!(b.again(1) && b.again(4));
        assert!(!b.again(5));
        let once = Backoff {
            max_attempts: 1,
            ..b
        };
        assert!(!once.again(1));
    }

    #[test]
    fn random_units_are_in_range() {
        for _ in 0..1000 {
            let u = unit_random();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
