//! [`StreamSlots`]: caps on the event streams one coordinator holds, in total and per token.
//! A stream takes a [`StreamSlot`] before it starts and gives it back when it ends (the
//! client went away, or the stream failed), so one token cannot hold the coordinator's
//! memory and descriptors with thousands of idle streams.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use crate::problem::Problem;

/// Streams held now.
#[derive(Debug, Default)]
struct Held {
    /// All streams.
    total: usize,
    /// Streams per token id.
    per_token: HashMap<String, usize>,
}

/// The stream caps of one coordinator; cheap to clone.
#[derive(Clone, Debug)]
pub struct StreamSlots {
    /// Streams at once.
    max: usize,
    /// Streams per token.
    per_token: usize,
    /// What is held.
    held: Arc<Mutex<Held>>,
}

/// One stream's place; given back on drop.
#[derive(Debug)]
pub struct StreamSlot {
    token: String,
    held: Arc<Mutex<Held>>,
}

impl StreamSlots {
    /// At most `max` streams, `per_token` per token.
    pub fn new(max: usize, per_token: usize) -> Self {
        Self {
            max,
            per_token,
            held: Arc::default(),
        }
    }

    /// A place for a stream of token `token`, or the problem to answer: 429 when the token
    /// holds its share, 503 when the coordinator is full.
    pub fn take(&self, token: &str) -> Result<StreamSlot, Problem> {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = h.per_token.get(token).copied().unwrap_or(0);
        if mine >= self.per_token {
            metrics::counter!("autopilot_coordinator_streams_refused_total", "reason" => "per_token").increment(1);
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "this token already holds {mine} event streams, the most one token may hold \
                     (--max-event-streams-per-token): close one first"
                ),
            )
            .retry_after(5));
        }
        if h.total >= self.max {
            metrics::counter!("autopilot_coordinator_streams_refused_total", "reason" => "total")
                .increment(1);
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "this coordinator serves {} event streams, its limit (--max-event-streams): \
                     retry later or use another coordinator",
                    h.total
                ),
            )
            .retry_after(5));
        }
        h.total += 1;
        *h.per_token.entry(token.to_owned()).or_insert(0) += 1;
        metrics::gauge!("autopilot_coordinator_event_streams").set(h.total as f64);
        Ok(StreamSlot {
            token: token.to_owned(),
            held: self.held.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        h.total = h.total.saturating_sub(1);
        if let Some(n) = h.per_token.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                h.per_token.remove(&self.token);
            }
        }
        metrics::gauge!("autopilot_coordinator_event_streams").set(h.total as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_token_then_total_caps_and_slots_come_back() {
        let s = StreamSlots::new(3, 2);
        let a1 = s.take("a").expect("a1");
        let _a2 = s.take("a").expect("a2");
        let p = s.take("a").expect_err("a3");
        assert_eq!((p.status, p.code.as_str()), (429, "too_many_streams"));
        let _b1 = s.take("b").expect("b1");
        let p = s.take("c").expect_err("full");
        assert_eq!(p.status, 503);
        drop(a1);
        s.take("c").expect("a slot came back");
    }
}
