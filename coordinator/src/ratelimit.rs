//! A token bucket per key (an API token, or a client address for failed requests), in this
//! coordinator's memory: `rate` requests per second on
//! average, bursts of up to `burst`. With several coordinators behind a load balancer each
//! one limits on its own, so the cluster-wide limit is at most `rate × coordinators`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets beyond this are pruned (full buckets are dropped: they carry no information).
const MAX_BUCKETS: usize = 10_000;

/// One bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Requests still allowed right now.
    tokens: f64,
    /// When `tokens` was last refilled.
    last: Instant,
}

/// Per-key token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    /// Refill per second; 0 disables limiting.
    rate: f64,
    /// Bucket size.
    burst: f64,
    /// key → bucket.
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `rate` requests per second, bursts of `burst` (at least 1).
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    /// Whether `key` could make a request now, without taking one: `Err(seconds)` when its
    /// bucket is empty.
    pub fn peek(&self, key: &str) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = buckets.get(key) else {
            return Ok(());
        };
        let tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * self.rate)
            .min(self.burst);
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(((1.0 - tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            // Whole seconds for Retry-After, at least 1.
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let rl = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check_at("a", t0).is_ok());
        }
        assert_eq!(rl.check_at("a", t0), Err(1));
        assert!(rl.check_at("b", t0).is_ok(), "buckets are per key");
        assert!(rl.check_at("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(rl.check_at("a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn zero_rate_disables_the_limit() {
        let rl = RateLimiter::new(0.0, 1);
        for _ in 0..100 {
            assert!(rl.check("a").is_ok());
        }
    }
}
