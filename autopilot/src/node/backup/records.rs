//! What the backup agent records: the catalog (the node's whole record), the summary in
//! `backup/records/<id>`, `events/*`, and the metrics.

use backup::catalog::{BackupRecord, Status};
use backup::repo::BackupId;
use cluster::store::Store;
use cluster::wire::{
    self, BackupRecordDoc, BackupStatus, ClusterKeys, EventDoc, EventKind, Timestamp,
};
use metrics::{counter, gauge};
use tracing::warn;

use super::Ctx;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(u64::try_from(ms).unwrap_or_default())
}

/// The etcd summary of a catalog record.
pub(crate) fn doc(r: &BackupRecord, streams: &[String]) -> BackupRecordDoc {
    BackupRecordDoc {
        schema: wire::SCHEMA_VERSION,
        id: r.id.clone(),
        set_id: r.set_id.clone(),
        parent_id: r.parent_id.clone(),
        job: r.job.clone(),
        node: r.node.clone(),
        engine: r.engine.clone(),
        engine_version: r.engine_version.clone(),
        method: r.method,
        backup_type: r.kind,
        status: match r.status {
            Status::Running => BackupStatus::Running,
            Status::Done => BackupStatus::Done,
            Status::Failed | Status::Expired => BackupStatus::Failed,
        },
        started: ts(r.started_ms),
        finished: r.ended_ms.map(ts),
        position: r.position.clone(),
        size_plain: r.size_plain.unwrap_or_default(),
        size_stored: r.size_stored.unwrap_or_default(),
        repositories: r.repositories.clone(),
        databases: r.databases.clone(),
        streams: streams.to_vec(),
        error: r.error.clone(),
        verified: r.verified_ms.map(ts),
        restore_tested: r.restore_tested_ms.map(ts),
        restore_seconds: r.restore_time_ms.map(|ms| ms as f64 / 1000.0),
    }
}

/// Writes the summary of `r` (best effort: the catalog and the manifest hold the record).
pub(crate) async fn publish(ctx: &Ctx, r: &BackupRecord, streams: &[String]) {
    let key = ctx.keys.backup_record(&r.id);
    if let Err(e) = ctx
        .store
        .put(&key, wire::encode(&doc(r, streams)), None)
        .await
    {
        warn!(%key, cause = %handlers::error_chain(&e), "cannot write the backup record to etcd (the catalog has it)");
    }
}

/// Publishes the summary of catalog record `id` as it now stands, keeping its stream names.
pub(crate) async fn republish(ctx: &Ctx, id: &str) {
    let Ok(r) = ctx.catalog(|c| c.get(id)) else {
        return;
    };
    let key = ctx.keys.backup_record(id);
    let streams = match ctx.store.get(&key).await {
        Ok(Some((bytes, _))) => wire::decode::<BackupRecordDoc>(&bytes)
            .map(|d| d.streams)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    publish(ctx, &r, &streams).await;
}

/// Writes an event (queued; the log has it too).
pub(crate) fn event(ctx: &Ctx, kind: EventKind, detail: String) {
    let time = Timestamp::now();
    let doc = EventDoc {
        schema: wire::SCHEMA_VERSION,
        time,
        kind,
        node: ctx.node.clone(),
        detail,
        from: None,
        to: None,
        position: None,
    };
    // Its own id space (`<ms>-<node>.backup`): never collides with the role actor's events.
    let id = ClusterKeys::event_id(time, &format!("{}.backup", ctx.node));
    ctx.events.publish(ctx.keys.event(&id), wire::encode(&doc));
}

/// Backups left `running` by an earlier life of this agent died with it: mark them failed,
/// remove their partial objects, and say so.
pub(crate) async fn fail_leftovers(ctx: &Ctx) {
    let Ok(running) = ctx.catalog(|c| c.running()) else {
        return;
    };
    for r in running {
        let why = "the agent stopped during the backup".to_owned();
        warn!(backup = %r.id, job = %r.job, "{why}: marking it failed and removing its objects");
        if let Ok(id) = BackupId::parse(&r.id) {
            for repo in ctx.repos_named(&r.repositories) {
                if let Err(e) = repo.delete_backup(&ctx.cluster, &id).await {
                    warn!(backup = %r.id, repository = repo.name(), cause = %e, "cannot remove a failed backup's objects");
                }
            }
        }
        let _ = ctx.catalog(|c| c.finish(&r.id, now_ms(), Err(why.clone())));
        counter!("autopilot_backup_failures_total", "backup_job" => r.job.clone()).increment(1);
        republish(ctx, &r.id).await;
        event(
            ctx,
            EventKind::BackupFailed,
            format!("{} ({}): {why}", r.id, r.job),
        );
    }
}

/// Records still `running` whose node holds no lease (its node key is gone: the agent died
/// or was partitioned away during the backup, and its slot was freed): marked failed and
/// their objects removed, so the cluster's records never show a backup running forever.
/// The node's own catalog says failed too when its agent comes back ([`fail_leftovers`]).
pub(crate) async fn fail_orphans(ctx: &Ctx) {
    let live: Vec<String> = match ctx.view.borrow().snapshot.as_ref() {
        Some(snap) => snap
            .nodes
            .iter()
            .filter(|(_, d)| d.doc().is_some())
            .map(|(id, _)| id.clone())
            .collect(),
        None => return,
    };
    for mut doc in all(ctx).await {
        if doc.status != BackupStatus::Running || doc.node == ctx.node || live.contains(&doc.node) {
            continue;
        }
        let why = format!(
            "node {} stopped during the backup (its lease expired)",
            doc.node
        );
        warn!(backup = %doc.id, job = %doc.job, "{why}: marking it failed and removing its objects");
        if let Ok(id) = BackupId::parse(&doc.id) {
            for repo in ctx.repos_named(&doc.repositories) {
                if let Err(e) = repo.delete_backup(&ctx.cluster, &id).await {
                    warn!(backup = %doc.id, repository = repo.name(), cause = %e, "cannot remove a failed backup's objects");
                }
            }
        }
        doc.status = BackupStatus::Failed;
        doc.finished = Some(Timestamp::now());
        doc.error = Some(why.clone());
        let key = ctx.keys.backup_record(&doc.id);
        if let Err(e) = ctx.store.put(&key, wire::encode(&doc), None).await {
            warn!(%key, cause = %handlers::error_chain(&e), "cannot mark an orphaned backup record failed");
            continue;
        }
        counter!("autopilot_backup_failures_total", "backup_job" => doc.job.clone()).increment(1);
        event(
            ctx,
            EventKind::BackupFailed,
            format!("{} ({}): {why}", doc.id, doc.job),
        );
    }
}

/// A request no node can carry out (an unknown job): delete it and say why.
pub(crate) fn refuse_request(ctx: &std::sync::Arc<Ctx>, id: &str, why: String) {
    warn!(request = %id, "{why}");
    event(ctx, EventKind::BackupFailed, format!("request {id}: {why}"));
    let ctx = ctx.clone();
    let key = ctx.keys.backup_request(id);
    tokio::spawn(async move {
        let _ = ctx.store.delete(&key).await;
    });
}

/// The cluster's backup summaries (empty when etcd cannot be read).
pub(crate) async fn all(ctx: &Ctx) -> Vec<BackupRecordDoc> {
    match ctx
        .store
        .get_prefix(&ctx.keys.backup_records_prefix())
        .await
    {
        Ok((entries, _)) => entries
            .iter()
            .filter_map(|e| wire::decode::<BackupRecordDoc>(&e.value).ok())
            .collect(),
        Err(e) => {
            warn!(cause = %handlers::error_chain(&e), "cannot read the backup records");
            Vec::new()
        }
    }
}

/// The newest done backup of `job` in the cluster.
pub(crate) async fn newest_done(ctx: &Ctx, job: &str) -> Option<BackupRecordDoc> {
    all(ctx)
        .await
        .into_iter()
        .filter(|r| r.job == job && r.status == BackupStatus::Done)
        .max_by(|a, b| a.id.cmp(&b.id))
}

/// Deletes finished slot keys of `segment` beyond the newest `keep`.
pub(crate) async fn prune_slots(ctx: &Ctx, segment: &str, keep: usize) {
    let prefix = ctx.keys.backup_slots_prefix(segment);
    let Ok((entries, _)) = ctx.store.get_prefix(&prefix).await else {
        return;
    };
    let finished: Vec<_> = entries
        .iter()
        .filter(|e| {
            wire::decode::<wire::BackupSlotDoc>(&e.value)
                .is_ok_and(|d| d.status != BackupStatus::Running)
        })
        .collect();
    for e in finished.iter().take(finished.len().saturating_sub(keep)) {
        let _ = ctx.store.delete_if_revision(&e.key, e.mod_revision).await;
    }
}

/// Wall-clock milliseconds now.
pub(crate) fn now_ms() -> i64 {
    i64::try_from(crate::node::role::now_millis()).unwrap_or(i64::MAX)
}

/// Metrics after a backup of `job` ended.
pub(crate) fn backup_metrics(r: &BackupRecord) {
    let job = r.job.clone();
    match r.status {
        Status::Done => {
            let end = r.ended_ms.unwrap_or(r.started_ms) as f64 / 1000.0;
            gauge!("autopilot_backup_last_success_timestamp_seconds", "backup_job" => job.clone())
                .set(end);
            if let Some(d) = r.duration() {
                gauge!("autopilot_backup_last_duration_seconds", "backup_job" => job.clone())
                    .set(d.as_secs_f64());
            }
            gauge!("autopilot_backup_last_size_bytes", "backup_job" => job.clone(), "stage" => "plain")
                .set(r.size_plain.unwrap_or_default() as f64);
            gauge!("autopilot_backup_last_size_bytes", "backup_job" => job.clone(), "stage" => "stored")
                .set(r.size_stored.unwrap_or_default() as f64);
            counter!("autopilot_backups_total", "backup_job" => job, "outcome" => "done")
                .increment(1);
        }
        _ => {
            counter!("autopilot_backups_total", "backup_job" => job.clone(), "outcome" => "failed")
                .increment(1);
            counter!("autopilot_backup_failures_total", "backup_job" => job).increment(1);
        }
    }
}

/// Sets the age metrics of the newest done and newest verified backups from the catalog
/// (this node's view; the coordinator sees the whole cluster's in etcd).
pub(crate) fn age_metrics(ctx: &Ctx) {
    let Ok(list) = ctx.catalog(|c| c.list(None)) else {
        return;
    };
    if let Some(v) = list
        .iter()
        .filter(|r| r.status == Status::Done)
        .filter_map(|r| r.verified_ms.max(r.restore_tested_ms))
        .max()
    {
        gauge!("autopilot_backup_newest_verified_timestamp_seconds").set(v as f64 / 1000.0);
    }
    if let Some(t) = list
        .iter()
        .filter(|r| r.status == Status::Done)
        .filter_map(|r| r.restore_tested_ms)
        .max()
    {
        gauge!("autopilot_backup_newest_restore_tested_timestamp_seconds").set(t as f64 / 1000.0);
    }
}

/// At start: the counters exported at 0 and each job's last-success gauge set from the
/// cluster's newest done backup of it, so a restarted agent neither silences the "no backup
/// for a day" alert nor makes a first failure look like no change.
pub(crate) async fn init_metrics(ctx: &Ctx) {
    let records = all(ctx).await;
    for job in &ctx.config.jobs {
        let name = job.name.clone();
        counter!("autopilot_backup_failures_total", "backup_job" => name.clone()).increment(0);
        for outcome in ["done", "failed"] {
            counter!("autopilot_backups_total", "backup_job" => name.clone(), "outcome" => outcome)
                .increment(0);
        }
        gauge!("autopilot_backup_running", "backup_job" => name.clone()).set(0.0);
        if let Some(newest) = records
            .iter()
            .filter(|r| r.job == job.name && r.status == BackupStatus::Done)
            .filter_map(|r| r.finished)
            .max_by_key(|t| t.unix_millis())
        {
            gauge!("autopilot_backup_last_success_timestamp_seconds", "backup_job" => name)
                .set(newest.unix_millis() as f64 / 1000.0);
        }
    }
    if let Some(v) = records
        .iter()
        .filter(|r| r.status == BackupStatus::Done)
        .filter_map(|r| r.verified.max(r.restore_tested))
        .max_by_key(|t| t.unix_millis())
    {
        gauge!("autopilot_backup_newest_verified_timestamp_seconds")
            .set(v.unix_millis() as f64 / 1000.0);
    }
    if let Some(t) = records
        .iter()
        .filter(|r| r.status == BackupStatus::Done)
        .filter_map(|r| r.restore_tested)
        .max_by_key(|t| t.unix_millis())
    {
        gauge!("autopilot_backup_newest_restore_tested_timestamp_seconds")
            .set(t.unix_millis() as f64 / 1000.0);
    }
}
