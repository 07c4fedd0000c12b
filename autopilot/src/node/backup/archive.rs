//! Continuous archiving (issue 18): PostgreSQL writes every WAL file it completes into this
//! node's spool (`archive_command`, on every node: `archive_mode = always`); this task ships
//! the spool to the repositories.
//!
//! - The primary holds the archive lock (`backup/slots/_archive/lock`, bound to its lease) and
//!   uploads its spool in order, each file sealed like a backup chunk (zstd, age), removing
//!   each once every destination has it. One node archives at a time; a former primary
//!   releases the lock when it steps down, and its lease's expiry releases it when it dies.
//! - The other nodes keep their copies until the repositories have them, and upload a file
//!   themselves when the archiver has not shipped it within [`FILL_AFTER`] (the old primary
//!   died with files unshipped): the archive is filled from whichever node still has them.
//! - A file the spool had no room for leaves a `.dropped` marker, and the archiver compares
//!   the repository's listing with the timelines' history: either way a gap is reported as
//!   an `archive_gap` event, the `autopilot_archive_gaps` gauge and an alert, never skipped
//!   silently. Point-in-time recovery refuses to cross one.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use backup::archive::{self, Kind, wal};
use backup::repo::Repository;
use cluster::store::{LeaseId, Store};
use cluster::wire::{self, BackupSlotDoc, BackupStatus, EventKind, Timestamp};
use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Ctx, records};
use crate::config::ArchiveConfig;

/// How often the spool is looked at.
const TICK: Duration = Duration::from_secs(1);
/// How often a node that does not archive checks its spool against the repositories.
const FOLLOWER_EVERY: Duration = Duration::from_secs(10);
/// How often the archiver checks the repository for gaps.
const GAP_CHECK_EVERY: Duration = Duration::from_secs(30);
/// The `<job>` segment of the archive lock's key.
const LOCK_SEGMENT: &str = "_archive";

/// Starts the archiver; it stops with `cancel`.
pub(crate) fn spawn(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let Some(config) = ctx.config.archive.clone() else {
        return;
    };
    if ctx.engine_kind == backup::manifest::EngineKind::Mariadb {
        super::binlogs::spawn(ctx, config, cancel);
        return;
    }
    tokio::spawn(async move {
        let mut a = Archiver {
            repos: ctx.repos_named(&config.destinations),
            ctx,
            config,
            holding: None,
            last_follower_pass: None,
            last_gap_check: None,
            gaps: HashSet::new(),
        };
        info!(spool = %a.config.spool.display(), interval = ?a.config.interval, "WAL archiver started");
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
            }
            a.tick().await;
        }
        a.release().await;
    });
}

/// A file the archiver has not shipped within this long (after it was spooled) is shipped
/// by whichever node has it.
fn fill_after(config: &ArchiveConfig) -> Duration {
    config.interval * 2 + Duration::from_secs(30)
}

struct Archiver {
    ctx: Arc<Ctx>,
    config: ArchiveConfig,
    repos: Vec<Repository>,
    /// The lease the lock is held under.
    holding: Option<LeaseId>,
    last_follower_pass: Option<Instant>,
    last_gap_check: Option<Instant>,
    /// Gaps already reported (by their text).
    gaps: HashSet<String>,
}

impl Archiver {
    async fn tick(&mut self) {
        let (is_primary, lease) = primary_lease(&self.ctx);
        let spool = match spool_files(&self.config.spool) {
            Ok(s) => s,
            Err(e) => {
                warn!(spool = %self.config.spool.display(), cause = %e, "cannot read the archive spool");
                return;
            }
        };
        gauge!("autopilot_archive_spool_files").set(spool.files.len() as f64);
        gauge!("autopilot_archive_spool_bytes").set(spool.bytes as f64);
        for marker in &spool.dropped {
            self.report_gap(marker.clone(), marker.clone(), format!(
                "{marker}: dropped, the spool ({}) was full ({} MiB); raise backup.archive.spool_limit_mb or check the repositories",
                self.config.spool.display(),
                self.config.spool_limit_mb
            ));
            let _ = std::fs::remove_file(self.config.spool.join(format!("{marker}.dropped")));
        }
        match (is_primary, lease) {
            (true, Some(lease)) => {
                if self.holding != Some(lease) {
                    self.holding = self.acquire(lease).await.then_some(lease);
                    if self.holding.is_some() {
                        info!("holding the archive lock: shipping the WAL spool");
                    }
                }
            }
            _ => {
                self.release().await;
                // The archiver's figure: a node that does not archive reports none.
                gauge!("autopilot_archive_gaps").set(0.0);
            }
        }
        if self.holding.is_some() {
            for f in &spool.files {
                if !self.ship(f, "archived").await {
                    break;
                }
            }
            if self
                .last_gap_check
                .is_none_or(|t| t.elapsed() >= GAP_CHECK_EVERY)
            {
                self.last_gap_check = Some(Instant::now());
                self.check_gaps().await;
            }
        } else if self
            .last_follower_pass
            .is_none_or(|t| t.elapsed() >= FOLLOWER_EVERY)
        {
            self.last_follower_pass = Some(Instant::now());
            self.follower_pass(&spool.files).await;
        }
    }

    async fn acquire(&self, lease: LeaseId) -> bool {
        acquire(&self.ctx, lease).await
    }

    async fn release(&mut self) {
        if let Some(lease) = self.holding.take() {
            release(&self.ctx, lease).await;
        }
    }

    /// Uploads `name` to every destination and removes it from the spool; whether it did.
    async fn ship(&self, name: &str, how: &str) -> bool {
        let path = self.config.spool.join(name);
        let plain = match tokio::fs::read(&path).await {
            Ok(p) => p,
            Err(e) => {
                warn!(file = %path.display(), cause = %e, "cannot read a spooled WAL file");
                return false;
            }
        };
        if plain.len() as u64 > archive::MAX_FILE {
            warn!(file = %path.display(), "larger than the archive takes; not archived");
            return false;
        }
        let recipients = self.ctx.recipients.clone();
        let level = self.ctx.config.compression_level;
        let sealed =
            match tokio::task::spawn_blocking(move || archive::seal(&plain, &recipients, level))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(file = name, cause = %e, "cannot seal a WAL file");
                    return false;
                }
                Err(_) => return false,
            };
        for repo in &self.repos {
            if let Err(e) =
                archive::put(repo, &self.ctx.cluster, Kind::Wal, name, sealed.clone()).await
            {
                warn!(file = name, repository = repo.name(), cause = %handlers::error_chain(&e), "cannot archive a WAL file; retrying");
                counter!("autopilot_archive_failures_total").increment(1);
                return false;
            }
        }
        if let Err(e) = tokio::fs::remove_file(&path).await {
            warn!(file = %path.display(), cause = %e, "cannot remove a shipped WAL file from the spool");
        }
        counter!("autopilot_archive_files_total").increment(1);
        gauge!("autopilot_archive_last_archived_timestamp_seconds").set(unix_now());
        tracing::debug!(file = name, how, "WAL file archived");
        true
    }

    /// Not the archiver: drop what every destination has; ship what the archiver has not
    /// shipped within [`fill_after`].
    async fn follower_pass(&self, files: &[String]) {
        let overdue = fill_after(&self.config);
        for name in files {
            let mut everywhere = true;
            for repo in &self.repos {
                match archive::exists(repo, &self.ctx.cluster, Kind::Wal, name).await {
                    Ok(true) => {}
                    Ok(false) => everywhere = false,
                    Err(e) => {
                        warn!(file = name, cause = %handlers::error_chain(&e), "cannot check the archive");
                        return;
                    }
                }
            }
            if everywhere {
                let _ = std::fs::remove_file(self.config.spool.join(name));
                continue;
            }
            let age = std::fs::metadata(self.config.spool.join(name))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .unwrap_or_default();
            if age >= overdue && self.ship(name, "filled in").await {
                info!(
                    file = name,
                    "archived a WAL file the archiver had not shipped (filling the archive from this node's spool)"
                );
            }
        }
    }

    /// Lists the first destination and reports gaps not reported yet.
    async fn check_gaps(&mut self) {
        let Some(repo) = self.repos.first().cloned() else {
            return;
        };
        let listed = match archive::list(&repo, &self.ctx.cluster, Kind::Wal).await {
            Ok(l) => l,
            Err(e) => {
                warn!(cause = %handlers::error_chain(&e), "cannot list the archive for gaps");
                return;
            }
        };
        let names: Vec<String> = listed.into_iter().map(|f| f.name).collect();
        let branches = branches(&repo, &self.ctx, &names).await;
        // Only what a restore can still need: gaps after the newest physical backup's
        // consistent point (a new base backup is the remedy for an older one).
        let since = newest_base_segment(&self.ctx).await;
        let gaps: Vec<wal::Gap> = wal::gaps(&names, &branches)
            .into_iter()
            .filter(|g| since.is_none_or(|s| g.last >= s))
            .collect();
        gauge!("autopilot_archive_gaps").set(gaps.len() as f64);
        for g in gaps {
            self.report_gap(
                wal::segment_name(g.timeline, g.first),
                wal::segment_name(g.timeline, g.last),
                format!(
                    "WAL {g} is missing from {} and no node's spool supplied it",
                    repo.name()
                ),
            );
        }
    }

    fn report_gap(&mut self, start: String, end: String, detail: String) {
        report_gap(&self.ctx, &mut self.gaps, start, end, detail);
    }
}

/// Reports a gap once (by its text): a warning, the counter, an `archive_gap` event and a
/// record in the local catalog (`autopilot backup list` shows it).
pub(super) fn report_gap(
    ctx: &Ctx,
    reported: &mut HashSet<String>,
    start: String,
    end: String,
    detail: String,
) {
    if !reported.insert(detail.clone()) {
        return;
    }
    warn!(%detail, "archive gap: point-in-time recovery cannot cross it");
    counter!("autopilot_archive_gaps_total").increment(1);
    let gap = backup::catalog::ArchiveGap {
        cluster: ctx.cluster.to_string(),
        start,
        end,
        found_ms: i64::try_from(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        )
        .unwrap_or(i64::MAX),
        detail: detail.clone(),
    };
    if let Err(e) = ctx.catalog(|c| c.record_gap(&gap)) {
        warn!(cause = %e, "cannot record the archive gap in the catalog");
    }
    records::event(ctx, EventKind::ArchiveGap, detail);
}

/// Takes the archive lock under `lease`; whether this node holds it.
pub(super) async fn acquire(ctx: &Ctx, lease: LeaseId) -> bool {
    let key = ctx.keys.backup_slot(LOCK_SEGMENT, "lock");
    let doc = BackupSlotDoc {
        schema: wire::SCHEMA_VERSION,
        holder: ctx.node.clone(),
        backup_id: None,
        status: BackupStatus::Running,
        started: Timestamp::now(),
        finished: None,
    };
    match ctx
        .store
        .create_if_absent(&key, wire::encode(&doc), Some(lease))
        .await
    {
        Ok(true) => true,
        // Held by another node, or by this node's previous lease: it goes with that lease.
        Ok(false) => false,
        Err(e) => {
            warn!(%key, cause = %handlers::error_chain(&e), "cannot take the archive lock");
            false
        }
    }
}

/// Releases the archive lock held under `lease`.
pub(super) async fn release(ctx: &Ctx, lease: LeaseId) {
    let key = ctx.keys.backup_slot(LOCK_SEGMENT, "lock");
    match ctx.store.delete_if_lease(&key, lease).await {
        Ok(_) => info!("released the archive lock"),
        Err(e) => {
            warn!(%key, cause = %handlers::error_chain(&e), "cannot release the archive lock; it goes with the lease")
        }
    }
}

/// Whether this node is the primary, and its lease.
pub(super) fn primary_lease(ctx: &Ctx) -> (bool, Option<LeaseId>) {
    let v = ctx.view.borrow();
    let primary = v
        .snapshot
        .as_ref()
        .and_then(|s| s.primary.doc().map(|p| p.id == ctx.node))
        .unwrap_or(false);
    (primary, v.lease)
}

/// The WAL segment of the newest done physical backup's consistent point
/// (`0/502B0E0 on timeline 2`), from the cluster's records.
async fn newest_base_segment(ctx: &Ctx) -> Option<u64> {
    records::all(ctx)
        .await
        .into_iter()
        .filter(|r| {
            r.status == BackupStatus::Done && r.method == cluster::wire::BackupMethod::Physical
        })
        .max_by(|a, b| a.id.cmp(&b.id))
        .and_then(|r| r.position)
        .and_then(|p| {
            p.split(" on timeline ")
                .next()
                .and_then(wal::parse_lsn)
                .map(wal::segment_of)
        })
}

/// Each archived timeline's branch point, from the history files among `names`.
async fn branches(repo: &Repository, ctx: &Ctx, names: &[String]) -> BTreeMap<u32, (u32, u64)> {
    let mut out = BTreeMap::new();
    for n in names {
        let Some(wal::WalFile::History { timeline }) = wal::parse(n) else {
            continue;
        };
        // Reading a history file needs the key; without it only in-timeline gaps are seen.
        let identities = identities(ctx);
        if identities.is_empty() {
            continue;
        }
        if let Ok(text) = archive::get(repo, &ctx.cluster, Kind::Wal, n, &identities).await
            && let Some(&(parent, lsn)) = wal::parse_history(&String::from_utf8_lossy(&text)).last()
        {
            out.insert(timeline, (parent, lsn));
        }
    }
    out
}

pub(super) fn identities(ctx: &Ctx) -> Vec<backup::pipeline::Identity> {
    ctx.config
        .identity
        .as_ref()
        .and_then(|s| {
            let lines: Vec<&str> = s.expose().lines().collect();
            backup::pipeline::parse_identities(&lines).ok()
        })
        .unwrap_or_default()
}

pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the spool holds.
struct Spool {
    /// Files to ship, history files first, then by name (timeline, then segment).
    files: Vec<String>,
    /// Names of files dropped for want of room.
    dropped: Vec<String>,
    bytes: u64,
}

fn spool_files(dir: &Path) -> std::io::Result<Spool> {
    let mut files = Vec::new();
    let mut dropped = Vec::new();
    let mut bytes = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Spool {
                files,
                dropped,
                bytes,
            });
        }
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // being written
        }
        if let Some(d) = name.strip_suffix(".dropped") {
            dropped.push(d.to_owned());
            continue;
        }
        bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push(name);
    }
    files.sort_by_key(|n| (!n.ends_with(".history"), n.clone()));
    dropped.sort();
    Ok(Spool {
        files,
        dropped,
        bytes,
    })
}
