//! One webhook's delivery task: takes events from its [`Outbox`] (a [`DropOldest`] queue the
//! dispatcher fills without waiting) and POSTs each, retrying with backoff until it is
//! delivered, refused for good, or out of attempts. Each webhook has its own task, queue and
//! HTTP client, so a slow or dead endpoint holds up nothing but itself.
//!
//! Outcomes (metric `autopilot_coordinator_webhook_deliveries_total{webhook,outcome}`):
//! `delivered` (a 2xx answer), `failed` (a 3xx or 4xx other than 429, or the last attempt
//! failed), `dropped` (pushed out of a full queue). Retried: connection errors, timeouts,
//! 429 and 5xx.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster::error_chain;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};

use super::backoff::{Backoff, unit_random};
use super::cloudevent::{CONTENT_TYPE as CE_CONTENT_TYPE, Mapped};
use super::config::Webhook;
use super::filter::Filter;
use super::queue::DropOldest;
use super::signature;
use crate::audit::CancelOnDrop;

/// Deliveries counter.
pub const DELIVERIES: &str = "autopilot_coordinator_webhook_deliveries_total";
/// Attempt duration histogram.
pub const DURATION: &str = "autopilot_coordinator_webhook_delivery_duration_seconds";
/// Retries counter.
pub const RETRIES: &str = "autopilot_coordinator_webhook_retries_total";
/// Queue length gauge.
pub const QUEUED: &str = "autopilot_coordinator_webhook_queued_events";

/// How often at most a webhook's dropped events are logged.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The dispatcher's end of one webhook.
pub struct Outbox {
    /// The webhook's name.
    pub name: String,
    /// Which events it gets.
    pub filter: Filter,
    /// Events waiting for its task.
    queue: DropOldest<Arc<Mapped>>,
    /// Dropped since the last log line, and when that was.
    dropped: (u64, Option<Instant>),
}

impl Outbox {
    /// Queues `ev` without waiting; a full queue drops (and counts) its oldest event.
    pub fn offer(&mut self, ev: Arc<Mapped>) {
        if let Some(old) = self.queue.push(ev) {
            metrics::counter!(DELIVERIES, "webhook" => self.name.clone(), "outcome" => "dropped")
                .increment(1);
            self.dropped.0 += 1;
            let due = self.dropped.1.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY);
            if due {
                tracing::warn!(
                    webhook = %self.name,
                    dropped = self.dropped.0,
                    oldest_id = %old.id,
                    "webhook queue full: dropped the oldest events (the endpoint is down or slow)"
                );
                self.dropped = (0, Some(Instant::now()));
            }
        }
        metrics::gauge!(QUEUED, "webhook" => self.name.clone()).set(self.queue.len() as f64);
    }
}

/// Starts `hook`'s delivery task; the task ends when the guard is dropped.
pub fn spawn(hook: Webhook) -> Result<(Outbox, CancelOnDrop), reqwest::Error> {
    let http = reqwest::Client::builder()
        .timeout(hook.timeout)
        .connect_timeout(hook.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let queue = DropOldest::new(hook.queue);
    for outcome in ["delivered", "failed", "dropped"] {
        metrics::counter!(DELIVERIES, "webhook" => hook.name.clone(), "outcome" => outcome)
            .increment(0);
    }
    metrics::counter!(RETRIES, "webhook" => hook.name.clone()).increment(0);
    metrics::gauge!(QUEUED, "webhook" => hook.name.clone()).set(0.0);
    let outbox = Outbox {
        name: hook.name.clone(),
        filter: hook.filter.clone(),
        queue: queue.clone(),
        dropped: (0, None),
    };
    let task = tokio::spawn(async move {
        loop {
            let ev = queue.pop().await;
            metrics::gauge!(QUEUED, "webhook" => hook.name.clone()).set(queue.len() as f64);
            deliver(&hook, &http, &ev).await;
        }
    });
    Ok((outbox, CancelOnDrop(task)))
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// Worth another attempt (5xx, 429, connection error, timeout), maybe after the
    /// receiver's `Retry-After`.
    Retry(Option<Duration>),
    /// Refused for good (3xx, 4xx other than 429).
    Refused,
}

/// Judges an answer's status (and its `Retry-After`, in seconds).
pub fn judge(status: StatusCode, headers: &HeaderMap) -> Verdict {
    if status.is_success() {
        Verdict::Delivered
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Verdict::Retry(after)
    } else {
        Verdict::Refused
    }
}

/// Delivers one event to one webhook, with every retry its policy allows.
async fn deliver(hook: &Webhook, http: &reqwest::Client, ev: &Mapped) {
    let policy: Backoff = hook.backoff;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let sig = signature::sign(hook.secret.expose().as_bytes(), t, &ev.body);
        let started = Instant::now();
        let sent = http
            .post(hook.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(CE_CONTENT_TYPE))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!(
                    "autopilot-coordinator/",
                    env!("CARGO_PKG_VERSION")
                )),
            )
            .header(signature::HEADER, sig)
            .header("Autopilot-Webhook", hook.name.as_str())
            .header("Autopilot-Delivery-Attempt", attempt.to_string())
            .body(ev.body.clone())
            .send()
            .await;
        metrics::histogram!(DURATION, "webhook" => hook.name.clone())
            .record(started.elapsed().as_secs_f64());
        let (verdict, status, cause) = match sent {
            Ok(resp) => {
                let status = resp.status();
                let verdict = judge(status, resp.headers());
                // Read (and bound) the body so the connection can be reused.
                let _ = tokio::time::timeout(hook.timeout, resp.bytes()).await;
                (verdict, Some(status.as_u16()), None)
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                // without_url: the URL's path or query may hold a token.
                let cause = format!("{what}: {}", error_chain(&e.without_url()));
                (Verdict::Retry(None), None, Some(cause))
            }
        };
        let status_text = status.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let cause_text = cause.as_deref().unwrap_or("");
        match verdict {
            Verdict::Delivered => {
                metrics::counter!(DELIVERIES, "webhook" => hook.name.clone(), "outcome" => "delivered")
                    .increment(1);
                tracing::debug!(
                    webhook = %hook.name, id = %ev.id, kind = %ev.kind, status = %status_text,
                    attempt, "webhook delivered"
                );
                return;
            }
            Verdict::Refused => {
                metrics::counter!(DELIVERIES, "webhook" => hook.name.clone(), "outcome" => "failed")
                    .increment(1);
                tracing::warn!(
                    webhook = %hook.name, endpoint = %hook.origin(), id = %ev.id, kind = %ev.kind,
                    status = %status_text, attempt,
                    "webhook refused the event (not retried: fix the receiver or the webhook's URL)"
                );
                return;
            }
            Verdict::Retry(after) if policy.again(attempt) => {
                let wait = policy.wait(attempt, unit_random(), after);
                metrics::counter!(RETRIES, "webhook" => hook.name.clone()).increment(1);
                tracing::info!(
                    webhook = %hook.name, endpoint = %hook.origin(), id = %ev.id,
                    status = %status_text, cause = %cause_text, attempt,
                    retry_in = ?wait, "webhook attempt failed; retrying"
                );
                tokio::time::sleep(wait).await;
            }
            Verdict::Retry(_) => {
                metrics::counter!(DELIVERIES, "webhook" => hook.name.clone(), "outcome" => "failed")
                    .increment(1);
                tracing::warn!(
                    webhook = %hook.name, endpoint = %hook.origin(), id = %ev.id, kind = %ev.kind,
                    status = %status_text, cause = %cause_text, attempts = attempt,
                    "webhook delivery failed after its last attempt; the event is not sent again"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_retried() {
        let none = HeaderMap::new();
        assert_eq!(judge(StatusCode::OK, &none), Verdict::Delivered);
        assert_eq!(judge(StatusCode::NO_CONTENT, &none), Verdict::Delivered);
        assert_eq!(
            judge(StatusCode::INTERNAL_SERVER_ERROR, &none),
            Verdict::Retry(None)
        );
        assert_eq!(judge(StatusCode::BAD_GATEWAY, &none), Verdict::Retry(None));
        assert_eq!(
            judge(StatusCode::TOO_MANY_REQUESTS, &none),
            Verdict::Retry(None)
        );
        let mut after = HeaderMap::new();
        after.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            judge(StatusCode::SERVICE_UNAVAILABLE, &after),
            Verdict::Retry(Some(Duration::from_secs(7)))
        );
        for s in [400, 401, 403, 404, 410, 422, 301, 302] {
            let s = StatusCode::from_u16(s).expect("status");
            assert_eq!(judge(s, &none), Verdict::Refused, "{s}");
        }
    }
}
