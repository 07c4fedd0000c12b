//! Store metrics (Prometheus names; see design §7).

use std::time::Duration;

/// Counter `autopilot_store_requests_total{op,outcome}`.
pub(crate) fn request(op: &'static str, outcome: &'static str) {
    metrics::counter!("autopilot_store_requests_total", "op" => op, "outcome" => outcome)
        .increment(1);
}

/// Histogram `autopilot_lease_keepalive_duration_seconds`.
pub(crate) fn keepalive_duration(d: Duration) {
    metrics::histogram!("autopilot_lease_keepalive_duration_seconds").record(d.as_secs_f64());
}
