//! Retention: after each successful backup of a job, the job's backups the policy no longer
//! keeps ([`backup::retention`]) are removed from every repository they are in, their etcd
//! summaries deleted, their catalog records marked expired (kept as the record of what was
//! removed), and an event says so. Then the objects of this node's recently failed backups
//! of the job are removed again ([`sweep_failed`]): a failure while a repository was down
//! could not remove them (nor abort its open multipart uploads) then.

use std::time::SystemTime;

use backup::catalog::Status;
use backup::repo::BackupId;
use backup::retention::{Item, Policy, expired};
use cluster::store::Store;
use cluster::wire::{BackupStatus, EventKind};
use metrics::counter;
use tracing::{info, warn};

use super::{Ctx, records};
use crate::config::BackupJobConfig;

/// How far back [`sweep_failed`] looks.
const SWEEP_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// The most failed backups [`sweep_failed`] looks at (newest first).
const SWEEP_MAX: usize = 20;

/// Applies `job`'s retention to the cluster's done backups of that job, then sweeps the
/// job's recently failed backups.
pub(crate) async fn job(ctx: &Ctx, job: &BackupJobConfig) {
    expire(ctx, job).await;
    sweep_failed(ctx, job).await;
    forget_failed(ctx, job).await;
}

/// Deletes the etcd summaries of the job's failed backups older than [`SWEEP_WINDOW_MS`]
/// (the catalogs keep them): the cluster's records show recent failures, not every one.
async fn forget_failed(ctx: &Ctx, job: &BackupJobConfig) {
    let before = records::now_ms().saturating_sub(SWEEP_WINDOW_MS);
    for r in records::all(ctx).await {
        let old = i64::try_from(r.started.unix_millis()).unwrap_or(i64::MAX) < before;
        if r.job == job.name && r.status == BackupStatus::Failed && old {
            let _ = ctx.store.delete(&ctx.keys.backup_record(&r.id)).await;
        }
    }
}

/// Removes what is left of the job's failed backups this node ran in the last
/// [`SWEEP_WINDOW_MS`] (at most [`SWEEP_MAX`]): objects and open multipart uploads. Removing
/// a backup that is already gone costs one listing per repository.
async fn sweep_failed(ctx: &Ctx, job: &BackupJobConfig) {
    let since = records::now_ms().saturating_sub(SWEEP_WINDOW_MS);
    let Ok(mut failed) = ctx.catalog(|c| c.list(Some(&ctx.cluster.to_string()))) else {
        return;
    };
    failed.retain(|r| {
        r.job == job.name
            && r.node == ctx.node
            && r.status == Status::Failed
            && r.started_ms >= since
    });
    failed.sort_by(|a, b| b.id.cmp(&a.id));
    for r in failed.iter().take(SWEEP_MAX) {
        let Ok(id) = BackupId::parse(&r.id) else {
            continue;
        };
        for repo in ctx.repos_named(&r.repositories) {
            match repo.delete_backup(&ctx.cluster, &id).await {
                Ok(0) => {}
                Ok(n) => {
                    info!(backup = %r.id, repository = repo.name(), objects = n, "removed the objects a failed backup left behind")
                }
                Err(e) => {
                    warn!(backup = %r.id, repository = repo.name(), cause = %e, "cannot remove a failed backup's objects; it tries again after the next backup")
                }
            }
        }
    }
}

async fn expire(ctx: &Ctx, job: &BackupJobConfig) {
    let docs: Vec<_> = records::all(ctx)
        .await
        .into_iter()
        .filter(|r| r.job == job.name && r.status == BackupStatus::Done)
        .collect();
    let items: Vec<Item> = docs
        .iter()
        .map(|r| Item {
            id: r.id.clone(),
            parent_id: r.parent_id.clone(),
            started: r.started.system_time(),
            verified: r.verified.is_some() || r.restore_tested.is_some(),
        })
        .collect();
    let policy = Policy {
        keep_last: job.keep_last,
        keep_within: job.keep_within,
    };
    for id in expired(&items, policy, SystemTime::now()) {
        let Some(doc) = docs.iter().find(|d| d.id == id) else {
            continue;
        };
        let Ok(bid) = BackupId::parse(&id) else {
            continue;
        };
        let mut removed = 0;
        let mut complete = true;
        for repo in ctx.repos_named(&doc.repositories) {
            match repo.delete_backup(&ctx.cluster, &bid).await {
                Ok(n) => removed += n,
                Err(e) => {
                    complete = false;
                    warn!(backup = %id, repository = repo.name(), cause = %e, "retention cannot remove an expired backup; it tries again after the next backup");
                }
            }
        }
        if !complete {
            continue;
        }
        let _ = ctx.store.delete(&ctx.keys.backup_record(&id)).await;
        let _ = ctx.catalog(|c| c.mark_expired(&id, records::now_ms()));
        counter!("autopilot_backups_expired_total", "backup_job" => job.name.clone()).increment(1);
        info!(backup = %id, job = %job.name, objects = removed, "retention removed an expired backup");
        records::event(
            ctx,
            EventKind::BackupExpired,
            format!(
                "{id} ({}): {removed} objects removed from {}",
                job.name,
                doc.repositories.join(", ")
            ),
        );
    }
}
