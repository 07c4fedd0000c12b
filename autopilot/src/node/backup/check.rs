//! Verification: re-read and re-hash every object of a backup in every repository it is in;
//! with `backup.identity`, also restore it into a scratch directory, start a scratch
//! server on it and run the engine's checks, measuring the restore time.

use std::time::{Duration, Instant};

use backup::repo::BackupId;
use backup::verify::verify as reread;
use cluster::store::Store;
use cluster::wire::{self, BackupRecordDoc, BackupStatus, EventKind, Timestamp};
use engines::Engine;
use metrics::gauge;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Ctx, records, restore};

/// Verifies `backup_id` (default: the cluster's newest done backup); `true` when it passed.
pub(crate) async fn verify(
    ctx: &Ctx,
    backup_id: Option<&str>,
    test_restore: bool,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        ok = run(ctx, backup_id, test_restore) => ok,
        () = cancel.cancelled() => {
            warn!("verification cancelled (lease lost or agent stopping)");
            false
        }
    }
}

async fn run(ctx: &Ctx, backup_id: Option<&str>, test_restore: bool) -> bool {
    let all = records::all(ctx).await;
    let target = match backup_id {
        Some(id) => all.iter().find(|r| r.id == id).cloned(),
        None => all
            .iter()
            .filter(|r| r.status == BackupStatus::Done)
            .max_by(|a, b| a.id.cmp(&b.id))
            .cloned(),
    };
    let Some(doc) = target else {
        let what = backup_id.map_or("no done backup to verify yet".to_owned(), |id| {
            format!("no backup {id} in this cluster's records")
        });
        warn!("verification: {what}");
        records::event(ctx, EventKind::BackupVerifyFailed, what);
        return false;
    };
    match check(ctx, &doc, test_restore).await {
        Ok(detail) => {
            info!(backup = %doc.id, "verified: {detail}");
            records::event(
                ctx,
                EventKind::BackupVerified,
                format!("{}: {detail}", doc.id),
            );
            true
        }
        Err(why) => {
            warn!(backup = %doc.id, "verification failed: {why}");
            records::event(
                ctx,
                EventKind::BackupVerifyFailed,
                format!("{}: {why}", doc.id),
            );
            gauge!("autopilot_backup_verify_failed").set(1.0);
            false
        }
    }
}

async fn check(ctx: &Ctx, doc: &BackupRecordDoc, test_restore: bool) -> Result<String, String> {
    let id = BackupId::parse(&doc.id).map_err(|e| e.to_string())?;
    let repos = ctx.repos_named(&doc.repositories);
    if repos.is_empty() {
        return Err(format!(
            "none of its repositories ({}) is configured on this node",
            doc.repositories.join(", ")
        ));
    }
    let identities = match ctx.config.identity.as_ref() {
        Some(secret) => {
            let lines: Vec<&str> = secret.expose().lines().collect();
            backup::pipeline::parse_identities(&lines)
                .map_err(|e| format!("backup.identity: {e}"))?
        }
        None => Vec::new(),
    };
    let mut chunks = 0;
    for repo in &repos {
        let m = repo
            .read_manifest(&ctx.cluster, &id)
            .await
            .map_err(|e| e.to_string())?;
        let v = reread(repo, &m, &identities)
            .await
            .map_err(|e| e.to_string())?;
        chunks += v.chunks;
    }
    let now = Timestamp::now();
    let mut detail = format!(
        "{chunks} objects re-read and re-hashed in {}{}",
        repos
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", "),
        if identities.is_empty() {
            ""
        } else {
            ", every stream decrypted and checked"
        }
    );
    let mut restore_time = None;
    // A test restore needs the key and a scratch directory (`backup.verification`): a node
    // with `backup.identity` for seeding only has no place to restore into.
    let scratch_dir = ctx
        .config
        .verification
        .as_ref()
        .map(|v| v.scratch_dir.clone())
        .filter(|_| test_restore && !identities.is_empty());
    if let Some(scratch_dir) = scratch_dir {
        let scratch = scratch_dir.join(&doc.id);
        let _ = std::fs::remove_dir_all(&scratch);
        if let Some(parent) = scratch.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        let started = Instant::now();
        let restored = restore::restore(
            &*ctx.engine,
            restore::Source {
                repo: &repos[0],
                cluster: &ctx.cluster,
                id: &id,
                identities: &identities,
            },
            &scratch,
            restore::Progress {
                on_stream: |_: &str, _: &str, _: u64| {},
                bytes: &Default::default(),
            },
        )
        .await;
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(format!("test restore: {e}"));
            }
        };
        let took = started.elapsed();
        let report = ctx.engine.check_restored(&scratch).await;
        let _ = std::fs::remove_dir_all(&scratch);
        let report = report.map_err(|e| format!("test restore: {e}"))?;
        restore_time = Some(took);
        detail = format!(
            "{detail}; restored ({} backups, {}) in {:.1} s, server started in {:.1} s, checks passed in {:.1} s: {}",
            restored.chain.len(),
            super::run::human(restored.bytes),
            took.as_secs_f64(),
            report.start_time.as_secs_f64(),
            report.check_time.as_secs_f64(),
            report.summary
        );
        gauge!("autopilot_backup_restore_test_duration_seconds").set(took.as_secs_f64());
    }
    mark(ctx, doc, now, restore_time).await;
    gauge!("autopilot_backup_verify_failed").set(0.0);
    Ok(detail)
}

/// Records the verification in the catalog (when this node took the backup) and in etcd.
async fn mark(ctx: &Ctx, doc: &BackupRecordDoc, at: Timestamp, restore: Option<Duration>) {
    let ms = i64::try_from(at.unix_millis()).unwrap_or(i64::MAX);
    let _ = ctx.catalog(|c| match restore {
        Some(d) => c.mark_restore_tested(&doc.id, ms, d),
        None => c.mark_verified(&doc.id, ms),
    });
    let key = ctx.keys.backup_record(&doc.id);
    let mut doc = match ctx.store.get(&key).await {
        Ok(Some((bytes, _))) => {
            wire::decode::<BackupRecordDoc>(&bytes).unwrap_or_else(|_| doc.clone())
        }
        _ => doc.clone(),
    };
    doc.verified = Some(at);
    if let Some(d) = restore {
        doc.restore_tested = Some(at);
        doc.restore_seconds = Some(d.as_secs_f64());
        gauge!("autopilot_backup_newest_restore_tested_timestamp_seconds")
            .set(at.unix_millis() as f64 / 1000.0);
    }
    gauge!("autopilot_backup_newest_verified_timestamp_seconds")
        .set(at.unix_millis() as f64 / 1000.0);
    if let Err(e) = ctx.store.put(&key, wire::encode(&doc), None).await {
        warn!(%key, cause = %handlers::error_chain(&e), "cannot record the verification in etcd");
    }
}
