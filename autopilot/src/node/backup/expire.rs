//! Retention: after each successful backup of a job, the job's backups the policy no longer
//! keeps ([`backup::retention`]) are removed from every repository they are in, their etcd
//! summaries deleted, their catalog records marked expired (kept as the record of what was
//! removed), and an event says so.

use std::time::SystemTime;

use backup::repo::BackupId;
use backup::retention::{Item, Policy, expired};
use cluster::store::Store;
use cluster::wire::{BackupStatus, EventKind};
use metrics::counter;
use tracing::{info, warn};

use super::{Ctx, records};
use crate::config::BackupJobConfig;

/// Applies `job`'s retention to the cluster's done backups of that job.
pub(crate) async fn job(ctx: &Ctx, job: &BackupJobConfig) {
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
        counter!("autopilot_backups_expired_total", "job" => job.name.clone()).increment(1);
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
