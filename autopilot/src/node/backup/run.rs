//! Taking one backup: the job's pre-backup handler, each stream from the engine's tool
//! through the pipeline into every destination, the manifest, the records, the post-backup
//! handler and the webhooks.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use backup::catalog::{BackupRecord, Finished, Status};
use backup::manifest::{
    self, BackupType, Compression, Encryption, Manifest, StreamEntry, ToolInfo,
};
use backup::pipeline::{PipelineError, StoreOptions, store};
use backup::repo::{BackupId, Repository, StreamLocation, rfc3339};
use cluster::store::{LeaseId, Store};
use cluster::wire::{self, BackupSlotDoc, BackupStatus, EventKind, Timestamp};
use engines::Engine;
use engines::backups::{BackupSpec, StreamDone};
use metrics::{counter, gauge};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Ctx, Slot, notify, records};
use crate::config::BackupJobConfig;

/// What a run ended with.
pub(crate) struct Outcome {
    pub status: BackupStatus,
    pub backup_id: Option<String>,
}

/// Takes one backup of `job` for `slot`.
pub(crate) async fn take(
    ctx: &Arc<Ctx>,
    job: &BackupJobConfig,
    slot: &Slot,
    lease: LeaseId,
    cancel: &CancellationToken,
) -> Outcome {
    let started = SystemTime::now();
    let id = match BackupId::generate(started) {
        Ok(id) => id,
        Err(e) => {
            warn!(job = %job.name, cause = %e, "cannot make a backup id (no OS randomness)");
            return Outcome {
                status: BackupStatus::Failed,
                backup_id: None,
            };
        }
    };
    // An incremental builds on this node's own newest backup of the job; without one (or
    // when its chain is long enough) it is a full, and the record says why.
    let (parent, why_full) = match job.kind {
        BackupType::Incremental => match incremental_parent(ctx, job).await {
            Ok(m) => (Some(m), None),
            Err(why) => (None, Some(why)),
        },
        _ => (None, None),
    };
    let (kind, set_id, parent_id, incremental_lsn) = match &parent {
        Some(p) => (
            BackupType::Incremental,
            p.set_id.clone(),
            Some(p.backup_id.clone()),
            p.incremental_lsn.clone(),
        ),
        None => (BackupType::Full, id.clone(), None, None),
    };
    let mut description = job.description.clone();
    if let Some(why) = why_full {
        description = Some(format!(
            "{}full: {why}",
            description.map(|d| format!("{d}; ")).unwrap_or_default()
        ));
    }
    let retention = match (job.keep_last, job.keep_within) {
        (Some(n), Some(w)) => format!(
            "keep_last {n}, keep_within {}",
            humantime::format_duration(w)
        ),
        (Some(n), None) => format!("keep_last {n}"),
        (None, Some(w)) => format!("keep_within {}", humantime::format_duration(w)),
        (None, None) => "kept".into(),
    };
    let mut record = BackupRecord {
        id: id.to_string(),
        set_id: set_id.to_string(),
        parent_id: parent_id.as_ref().map(ToString::to_string),
        cluster: ctx.cluster.to_string(),
        node: ctx.node.clone(),
        job: job.name.clone(),
        description,
        engine: engine_word(ctx).into(),
        engine_version: Some(ctx.engine_version()).filter(|v| !v.is_empty()),
        method: job.method,
        kind,
        tool: Vec::new(),
        databases: job.databases.clone(),
        data_dir: ctx.data_dir.clone(),
        repositories: job.destinations.clone(),
        credentials: ctx
            .config
            .repositories
            .iter()
            .filter(|r| job.destinations.contains(&r.name))
            .filter(|r| matches!(r.location, crate::config::RepositoryLocation::S3(_)))
            .map(|r| format!("{}:s3-keys", r.name))
            .collect(),
        manifest: None,
        started_ms: ms(started),
        ended_ms: None,
        size_plain: None,
        size_stored: None,
        checksums: Vec::new(),
        position: None,
        status: Status::Running,
        error: None,
        retention: Some(retention),
        schedule: Some(if slot.request.is_some() {
            format!("requested by {}", slot.by)
        } else {
            format!("{} ({})", job.schedule, job.time_zone)
        }),
        verified_ms: None,
        restore_tested_ms: None,
        restore_time_ms: None,
        expired_ms: None,
    };
    if let Err(e) = ctx.catalog(|c| c.put(&record)) {
        warn!(job = %job.name, cause = %e, "cannot write the catalog; the backup does not start");
        counter!("autopilot_backup_failures_total", "backup_job" => job.name.clone()).increment(1);
        records::event(
            ctx,
            EventKind::BackupFailed,
            format!(
                "{id} ({}): cannot write the catalog ({e}); the backup did not start",
                job.name
            ),
        );
        return Outcome {
            status: BackupStatus::Failed,
            backup_id: None,
        };
    }
    let key = ctx.keys.backup_slot(&slot.job_segment, &slot.slot);
    let claim = BackupSlotDoc {
        schema: wire::SCHEMA_VERSION,
        holder: ctx.node.clone(),
        backup_id: Some(id.to_string()),
        status: BackupStatus::Running,
        started: Timestamp::now(),
        finished: None,
    };
    let _ = ctx
        .store
        .put_if_lease(&key, wire::encode(&claim), lease)
        .await;
    records::publish(ctx, &record, &[]).await;
    info!(backup = %id, job = %job.name, method = job.method.as_str(), r#type = kind.as_str(), "backup started");
    records::event(
        ctx,
        EventKind::BackupStarted,
        format!(
            "{id} ({}, {} {})",
            job.name,
            job.method.as_str(),
            kind.as_str()
        ),
    );
    gauge!("autopilot_backup_running", "backup_job" => job.name.clone()).set(1.0);

    let spec = BackupSpec {
        method: job.method,
        backup_type: kind,
        incremental_lsn,
        databases: job.databases.clone(),
        tool: job.tool.clone(),
        extra_args: job.tool_args.clone(),
    };
    let repos = ctx.repos_named(&job.destinations);
    let estimate = records::newest_done(ctx, &job.name)
        .await
        .map(|r| r.size_plain)
        .unwrap_or_default();
    let result = tokio::select! {
        r = streams(ctx, job, &spec, &repos, &id, estimate, &mut record) => r,
        () = cancel.cancelled() => Err("cancelled: this node lost its lease (another node may run the slot) or the agent is stopping".to_owned()),
    };
    gauge!("autopilot_backup_running", "backup_job" => job.name.clone()).set(0.0);
    gauge!("autopilot_backup_progress_bytes", "backup_job" => job.name.clone()).set(0.0);
    let ended = records::now_ms();
    let (status, streams) = match result {
        Ok((entries, done)) => {
            let streams: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
            let m = Manifest {
                format: manifest::FORMAT,
                backup_id: id.clone(),
                set_id: set_id.clone(),
                parent_id: parent_id.clone(),
                cluster: ctx.cluster.clone(),
                node: ctx.node.clone(),
                engine: manifest::EngineInfo {
                    kind: ctx.engine_kind,
                    version: record.engine_version.clone().unwrap_or_default(),
                },
                method: job.method,
                backup_type: kind,
                tool: ToolInfo {
                    name: record.tool.first().cloned().unwrap_or_default(),
                    version: done.tool_version.clone(),
                    parameters: record.tool.iter().skip(1).cloned().collect(),
                },
                started_at: rfc3339(started),
                finished_at: Some(rfc3339(SystemTime::now())),
                position: done.position.clone(),
                incremental_lsn: done.incremental_lsn.clone(),
                databases: job.databases.clone(),
                streams: entries.clone(),
                compression: Compression {
                    algorithm: "zstd".into(),
                    level: ctx.config.compression_level,
                    threads: ctx.config.compression_threads,
                },
                encryption: Encryption {
                    scheme: "age".into(),
                    recipients: ctx.config.recipients.clone(),
                },
                status: manifest::Status::Complete,
                error: None,
            };
            match write_manifests(&repos, &m).await {
                Ok(object) => {
                    let finished = Finished {
                        size_plain: entries.iter().map(|e| e.summary.plain_bytes).sum(),
                        size_stored: entries.iter().map(|e| e.summary.stored_bytes).sum(),
                        checksums: entries
                            .iter()
                            .map(|e| format!("{}={}", e.name, e.summary.plain_sha256))
                            .collect(),
                        position: done.position.clone(),
                        manifest: Some(object),
                    };
                    let _ = ctx.catalog(|c| c.finish(id.as_str(), ended, Ok(finished)));
                    (BackupStatus::Done, streams)
                }
                Err(why) => {
                    fail(ctx, &repos, &id, ended, &why).await;
                    (BackupStatus::Failed, Vec::new())
                }
            }
        }
        Err(why) => {
            fail(ctx, &repos, &id, ended, &why).await;
            (BackupStatus::Failed, Vec::new())
        }
    };
    let record = ctx.catalog(|c| c.get(id.as_str())).unwrap_or(record);
    records::publish(ctx, &record, &streams).await;
    records::backup_metrics(&record);
    records::age_metrics(ctx);
    let detail = match status {
        BackupStatus::Done => format!(
            "{id} ({}): {} plain, {} stored, in {:.1} s",
            job.name,
            human(record.size_plain.unwrap_or_default()),
            human(record.size_stored.unwrap_or_default()),
            record.duration().unwrap_or_default().as_secs_f64()
        ),
        _ => format!(
            "{id} ({}): {}",
            job.name,
            record.error.clone().unwrap_or_default()
        ),
    };
    if status == BackupStatus::Done {
        info!(backup = %id, job = %job.name, "backup done: {detail}");
        records::event(ctx, EventKind::BackupDone, detail);
    } else {
        warn!(backup = %id, job = %job.name, "backup failed: {detail}");
        records::event(ctx, EventKind::BackupFailed, detail);
    }
    if let Some(h) = &job.post_backup {
        let env = handler_env(ctx, job, &id, Some(status));
        if let Err(why) = run_handler("post_backup", h, &env).await {
            warn!(backup = %id, job = %job.name, "post_backup: {why}");
        }
    }
    notify::send(ctx, job, &record, status).await;
    Outcome {
        status,
        backup_id: Some(id.to_string()),
    }
}

/// The parent of an incremental: this node's newest done backup of the job (read from its
/// manifest, which holds the LSN to start from). `Err` says why this one is a full instead.
async fn incremental_parent(ctx: &Ctx, job: &BackupJobConfig) -> Result<Manifest, String> {
    let list = ctx
        .catalog(|c| c.list(Some(&ctx.cluster.to_string())))
        .map_err(|e| format!("the catalog cannot be read ({e})"))?;
    let mine: Vec<_> = list
        .into_iter()
        .filter(|r| r.job == job.name && r.status == Status::Done && r.node == ctx.node)
        .collect();
    let newest = mine
        .iter()
        .max_by(|a, b| a.id.cmp(&b.id))
        .ok_or("no earlier backup of this job on this node to build on")?;
    let chain = mine.iter().filter(|r| r.set_id == newest.set_id).count();
    if chain >= job.full_every as usize {
        return Err(format!(
            "the chain reached full_every ({} backups)",
            job.full_every
        ));
    }
    let id = BackupId::parse(&newest.id).map_err(|e| e.to_string())?;
    for repo in ctx.repos_named(&job.destinations) {
        match repo.read_manifest(&ctx.cluster, &id).await {
            Ok(m) if m.incremental_lsn.is_some() => return Ok(m),
            Ok(_) => return Err(format!("the parent {id} records no LSN to build on")),
            Err(e) => {
                warn!(backup = %id, repository = repo.name(), cause = %e, "cannot read the parent's manifest")
            }
        }
    }
    Err(format!("the parent {id}'s manifest cannot be read"))
}

/// Each stream: the tool, the pipeline, the tool's verdict.
async fn streams(
    ctx: &Ctx,
    job: &BackupJobConfig,
    spec: &BackupSpec,
    repos: &[Repository],
    id: &BackupId,
    estimate: u64,
    record: &mut BackupRecord,
) -> Result<(Vec<StreamEntry>, StreamDone), String> {
    if repos.is_empty() {
        return Err("no destination repository is configured".into());
    }
    if let Some(h) = &job.pre_backup {
        let env = handler_env(ctx, job, id, None);
        run_handler("pre_backup", h, &env)
            .await
            .map_err(|why| format!("pre_backup: {why}"))?;
    }
    let plans = ctx
        .engine
        .backup_streams(spec)
        .await
        .map_err(|e| e.to_string())?;
    let options = StoreOptions {
        zstd_level: ctx.config.compression_level,
        zstd_threads: ctx.config.compression_threads,
        ..StoreOptions::default()
    };
    let progress = Arc::new(AtomicU64::new(0));
    let reporter = tokio::spawn(report_progress(
        job.name.clone(),
        progress.clone(),
        estimate,
    ));
    let mut entries = Vec::new();
    let mut done = StreamDone::default();
    let result: Result<(), String> = async {
        for plan in &plans {
            let tool = ctx
                .engine
                .start_backup_stream(spec, plan)
                .await
                .map_err(|e| e.to_string())?;
            if record.tool.is_empty() {
                record.tool.push(tool.tool.clone());
                record.tool.extend(tool.parameters.iter().cloned());
            }
            let location = StreamLocation {
                cluster: ctx.cluster.clone(),
                backup_id: id.clone(),
                stream: plan.name.clone(),
            };
            let name = tool.name.clone();
            let mut counted = Counted {
                inner: tool.output,
                count: progress.clone(),
            };
            let stored = store(&mut counted, repos, &location, &ctx.recipients, &options).await;
            let tool_result = ToolStreamEnd {
                finisher: tool.finisher,
            }
            .finish(counted.inner)
            .await;
            // The tool's own failure explains a broken stream better than the pipeline's,
            // unless the pipeline failed on its writing side (a repository refused, a disk
            // was full): then the tool only saw its output close, and the pipeline's error
            // (with its causes: the object, the 403, "No space left") is the one to report.
            let summary = match (stored, tool_result) {
                (Err(e), _) if !matches!(e, PipelineError::Read(_) | PipelineError::Cancelled) => {
                    return Err(format!("stream {name}: {}", handlers::error_chain(&e)));
                }
                (_, Err(e)) => return Err(format!("stream {name}: {e}")),
                (Err(e), Ok(_)) => {
                    return Err(format!("stream {name}: {}", handlers::error_chain(&e)));
                }
                (Ok(s), Ok(d)) => {
                    if done.position.is_none() {
                        done.position = d.position;
                    }
                    if done.incremental_lsn.is_none() {
                        done.incremental_lsn = d.incremental_lsn;
                    }
                    if done.tool_version.is_none() {
                        done.tool_version = d.tool_version;
                    }
                    s
                }
            };
            entries.push(StreamEntry {
                name: plan.name.clone(),
                summary,
            });
        }
        Ok(())
    }
    .await;
    reporter.abort();
    result.map(|()| (entries, done))
}

/// The finishing half of a tool stream, once its output was consumed.
struct ToolStreamEnd {
    finisher: Pin<Box<dyn Future<Output = Result<StreamDone, engines::EngineError>> + Send>>,
}

impl ToolStreamEnd {
    async fn finish(
        self,
        output: engines::backups::BoxRead,
    ) -> Result<StreamDone, engines::EngineError> {
        drop(output);
        self.finisher.await
    }
}

/// Counts the bytes read (the progress metrics).
struct Counted {
    inner: engines::backups::BoxRead,
    count: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

/// Publishes bytes done, the rate and the estimated total while a backup runs.
async fn report_progress(job: String, done: Arc<AtomicU64>, estimate: u64) {
    let start = Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let bytes = done.load(Ordering::Relaxed);
        let rate = bytes as f64 / start.elapsed().as_secs_f64().max(0.001);
        gauge!("autopilot_backup_progress_bytes", "backup_job" => job.clone()).set(bytes as f64);
        gauge!("autopilot_backup_rate_bytes_per_second", "backup_job" => job.clone()).set(rate);
        gauge!("autopilot_backup_estimated_total_bytes", "backup_job" => job.clone())
            .set(estimate.max(bytes) as f64);
    }
}

/// Writes the manifest into every repository; returns its object name in the first.
async fn write_manifests(repos: &[Repository], m: &Manifest) -> Result<String, String> {
    for repo in repos {
        repo.write_manifest(m).await.map_err(|e| e.to_string())?;
    }
    let first = &repos[0];
    first
        .manifest_path(&m.cluster, &m.backup_id)
        .map(|p| first.describe(&p))
        .map_err(|e| e.to_string())
}

/// Records a failure and removes what was stored.
async fn fail(ctx: &Ctx, repos: &[Repository], id: &BackupId, ended: i64, why: &str) {
    for repo in repos {
        match repo.delete_backup(&ctx.cluster, id).await {
            Ok(n) if n > 0 => {
                info!(backup = %id, repository = repo.name(), objects = n, "removed a failed backup's objects")
            }
            Ok(_) => {}
            Err(e) => {
                warn!(backup = %id, repository = repo.name(), cause = %e, "cannot remove a failed backup's objects (retention tries again)")
            }
        }
    }
    let _ = ctx.catalog(|c| c.finish(id.as_str(), ended, Err(why.to_owned())));
}

/// The variables a pre/post-backup handler gets.
fn handler_env(
    ctx: &Ctx,
    job: &BackupJobConfig,
    id: &BackupId,
    status: Option<BackupStatus>,
) -> Vec<(String, String)> {
    // The role and primary as they are now (the base values were taken at start).
    let mut base = ctx.env.with_event("backup");
    {
        let view = ctx.view.borrow();
        if let Some(doc) = &view.node {
            base.role = match doc.role {
                cluster::wire::Role::Primary => "primary",
                cluster::wire::Role::Replica => "replica",
                cluster::wire::Role::Unknown => "unknown",
            }
            .to_owned();
        }
        if let Some(p) = view.snapshot.as_ref().and_then(|s| s.primary.doc()) {
            base.primary_address = format!("{}:{}", p.ip_address, p.port);
        }
    }
    let mut env = base.vars();
    env.push(("AUTOPILOT_BACKUP_ID".into(), id.to_string()));
    env.push(("AUTOPILOT_BACKUP_JOB".into(), job.name.clone()));
    if let Some(s) = status {
        env.push((
            "AUTOPILOT_BACKUP_STATUS".into(),
            match s {
                BackupStatus::Done => "done",
                _ => "failed",
            }
            .into(),
        ));
    }
    env
}

/// Runs a pre/post-backup handler; `Err` with why when it did not exit 0.
async fn run_handler(
    name: &str,
    h: &crate::config::HandlerConfig,
    env: &[(String, String)],
) -> Result<(), String> {
    let spec = crate::node::specs::handler_spec(h);
    match handlers::exec::run(name, &spec, env).await {
        Ok(handlers::exec::RunOutcome::Exited(st)) if st.success() => Ok(()),
        Ok(handlers::exec::RunOutcome::Exited(st)) => Err(format!("exited with {st}")),
        Ok(handlers::exec::RunOutcome::TimedOut) => Err(format!(
            "did not finish within its timeout ({:?})",
            h.timeout
        )),
        Err(e) => Err(handlers::error_chain(&e).to_string()),
    }
}

fn engine_word(ctx: &Ctx) -> &'static str {
    match ctx.engine_kind {
        manifest::EngineKind::Mariadb => "mariadb",
        manifest::EngineKind::Postgres => "postgres",
    }
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `1.5 GiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
