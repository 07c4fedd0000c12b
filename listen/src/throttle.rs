//! [`Throttle`]: lets one log line through per period and counts the ones it held back, so a
//! hostile client cannot turn each refused request into a log line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one event per `period` passes; the rest are counted for the next one.
#[derive(Debug)]
pub struct Throttle {
    /// When this throttle was made; times are kept as milliseconds since then.
    origin: Instant,
    /// The period, in milliseconds.
    period_ms: u64,
    /// When the last event passed (ms since `origin`, plus one; 0 = never).
    last: AtomicU64,
    /// Events held back since the last one that passed.
    held: AtomicU64,
}

impl Throttle {
    /// A throttle letting one event through per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            origin: Instant::now(),
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this event may be logged, `n` being how many were held back before it;
    /// `None` when it should be dropped (it is counted).
    pub fn pass(&self) -> Option<u64> {
        let now = u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_period_passes_and_the_rest_are_counted() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.pass(), Some(0));
        for _ in 0..5 {
            assert_eq!(t.pass(), None);
        }
        let t = Throttle::new(Duration::ZERO);
        assert_eq!(t.pass(), Some(0));
        assert_eq!(t.pass(), Some(0));
    }
}
