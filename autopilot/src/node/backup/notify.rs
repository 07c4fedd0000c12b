//! A job's notifications: a JSON body POSTed to each configured webhook on success or on
//! failure, signed like the coordinator's deliveries (`Autopilot-Signature`, HMAC-SHA256 over
//! `"<t>.<body>"`, see `cluster::signature`), retried with backoff. They come from the agent
//! itself, so they work while the coordinator and etcd are down.

use std::time::Duration;

use backup::catalog::BackupRecord;
use cluster::signature;
use cluster::wire::BackupStatus;
use metrics::counter;
use tracing::warn;

use super::Ctx;
use crate::config::BackupJobConfig;

/// Attempts per webhook (the first and the retries).
const ATTEMPTS: u32 = 5;
/// The first retry's delay; doubled for each later one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The body: what a receiver needs to act, no secrets.
fn body(ctx: &Ctx, r: &BackupRecord, status: BackupStatus) -> Vec<u8> {
    let v = serde_json::json!({
        "type": if status == BackupStatus::Done { "backup_done" } else { "backup_failed" },
        "cluster": ctx.cluster.to_string(),
        "node": r.node,
        "job": r.job,
        "backup_id": r.id,
        "method": r.method.as_str(),
        "backup_type": r.kind.as_str(),
        "status": if status == BackupStatus::Done { "done" } else { "failed" },
        "error": r.error,
        "started_ms": r.started_ms,
        "ended_ms": r.ended_ms,
        "size_plain": r.size_plain,
        "size_stored": r.size_stored,
        "position": r.position,
        "repositories": r.repositories,
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Sends the job's notifications for `r` (each webhook in turn, bounded).
pub(crate) async fn send(ctx: &Ctx, job: &BackupJobConfig, r: &BackupRecord, status: BackupStatus) {
    let done = status == BackupStatus::Done;
    let bytes = body(ctx, r, status);
    for hook in job
        .notify
        .iter()
        .filter(|h| if done { h.on_success } else { h.on_failure })
    {
        let mut delay = FIRST_BACKOFF;
        let mut last = String::new();
        let mut delivered = false;
        for attempt in 1..=ATTEMPTS {
            let mut req = ctx
                .http
                .post(&hook.url)
                .header("content-type", "application/json")
                .body(bytes.clone());
            if let Some(secret) = &hook.secret {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                req = req.header(
                    signature::HEADER,
                    signature::sign(secret.expose().as_bytes(), t, &bytes),
                );
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(resp) => last = format!("HTTP {}", resp.status()),
                Err(e) => last = handlers::error_chain(&e).to_string(),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        let outcome = if delivered { "delivered" } else { "failed" };
        counter!("autopilot_backup_notifications_total", "outcome" => outcome).increment(1);
        if !delivered {
            warn!(url = %hook.url, job = %job.name, backup = %r.id, "backup notification not delivered after {ATTEMPTS} attempts: {last}");
        }
    }
}
