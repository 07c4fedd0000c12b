//! Continuous archiving of MariaDB's binary logs (issue 18).
//!
//! - The primary holds the archive lock (`backup/slots/_archive/lock`, bound to its lease,
//!   as for PostgreSQL). Every `backup.archive.interval` it closes the active binary log
//!   when a transaction was written since the last rotation (`FLUSH BINARY LOGS`: the
//!   archive's RPO, as `archive_timeout` is PostgreSQL's), and ships every closed binary log
//!   that reaches past the archive's end, oldest first, each sealed like a backup chunk
//!   (zstd, age) and named by its GTID range ([`backup::archive::binlog`]).
//! - The server's own binary logs are the spool: nothing is copied aside, and the archive
//!   never purges them (the server's `binlog_expire_logs_seconds` does; a file purged
//!   before it was shipped is a gap, reported).
//! - After a failover the new primary takes the lock and starts from the archive's end:
//!   every node binlogs what it applies (`log_slave_updates`), so the transactions the old
//!   primary had not shipped are in the new primary's own binary logs. Archived files that
//!   reach past the new primary's position (transactions no other node received) are first
//!   marked superseded: never replayed, kept; the part of one that the new primary shares
//!   (up to its position) stays live as a copy named up to it
//!   ([`binlog::kept_prefix`]).
//! - Every 30 s the holder compares the archive with itself: a hole after the newest
//!   physical backup's position is an `archive_gap` event, the `autopilot_archive_gaps`
//!   gauge and an alert; a restore refuses to cross it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backup::archive::binlog::{self, Binlog};
use backup::archive::{self, Kind};
use backup::repo::Repository;
use cluster::store::LeaseId;
use cluster::wire::BackupStatus;
use engines::AnyEngine;
use engines::mariadb::gtid::GtidSet;
use engines::mariadb::{MariadbSettings, binlog as engine_binlog};
use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::archive::{acquire, primary_lease, release, unix_now};
use super::{Ctx, records};
use crate::config::ArchiveConfig;

/// How often the archiver looks at the binary logs.
const TICK: Duration = Duration::from_secs(1);
/// How often the holder checks the repository for gaps.
const GAP_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Starts the binary log archiver; it stops with `cancel`.
pub(super) fn spawn(ctx: Arc<Ctx>, config: ArchiveConfig, cancel: CancellationToken) {
    let AnyEngine::Mariadb(engine) = &*ctx.engine else {
        return;
    };
    let settings = engine.settings().clone();
    tokio::spawn(async move {
        let mut a = BinlogArchiver {
            repos: ctx.repos_named(&config.destinations),
            domain: settings.gtid_domain_id,
            settings,
            ctx,
            config,
            holding: None,
            rotated: None,
            described: HashMap::new(),
            starts: HashMap::new(),
            unarchivable: Vec::new(),
            end: None,
            last_gap_check: None,
            gaps: HashSet::new(),
            term: 0,
        };
        info!(interval = ?a.config.interval, "binary log archiver started");
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
            }
            a.tick().await;
        }
        if let Some(lease) = a.holding.take() {
            release(&a.ctx, lease).await;
        }
    });
}

struct BinlogArchiver {
    ctx: Arc<Ctx>,
    settings: MariadbSettings,
    config: ArchiveConfig,
    repos: Vec<Repository>,
    /// The cluster's replication domain.
    domain: u32,
    /// The lease the lock is held under.
    holding: Option<LeaseId>,
    /// When the binary log was last rotated, and the server's position then.
    rotated: Option<(Instant, String)>,
    /// Local binary logs already read: what each holds (`None`: no transaction of the
    /// cluster's domain).
    described: HashMap<String, Option<Binlog>>,
    /// Where each local binary log starts (the sequence number before its first
    /// transaction), from its `Gtid_list` event.
    starts: HashMap<String, u64>,
    /// Ranges of local binary logs the archive cannot take (reported): gaps, not fillable.
    unarchivable: Vec<(u64, u64)>,
    /// The archive's end: the last sequence number of the newest live file (read when the
    /// lock is taken).
    end: Option<u64>,
    last_gap_check: Option<Instant>,
    /// Gaps already reported (by their text).
    gaps: HashSet<String>,
    /// The term of the cluster's identity when the archive's end was read: an in-place
    /// restore begins a new one, and what the old branch archived past the restored
    /// position is superseded then, as after a failover.
    term: u64,
}

/// The term of the cluster's identity as the session last read it (0: unknown).
fn cluster_term(ctx: &super::Ctx) -> u64 {
    ctx.view
        .borrow()
        .snapshot
        .as_ref()
        .and_then(|s| s.initialized.doc().map(|d| d.term))
        .unwrap_or(0)
}

impl BinlogArchiver {
    async fn tick(&mut self) {
        let (is_primary, lease) = primary_lease(&self.ctx);
        match (is_primary, lease) {
            (true, Some(lease)) => {
                if self.holding != Some(lease) {
                    self.holding = acquire(&self.ctx, lease).await.then_some(lease);
                    // The local binary logs may be others than when this node last held it
                    // (a clone or restore replaced its data, reusing the files' names).
                    self.forget_local();
                    if self.holding.is_some() {
                        info!("holding the archive lock: shipping the binary logs");
                    }
                }
            }
            _ => {
                if let Some(lease) = self.holding.take() {
                    release(&self.ctx, lease).await;
                }
                gauge!("autopilot_archive_gaps").set(0.0);
                return;
            }
        }
        if self.holding.is_none() {
            return;
        }
        let term = cluster_term(&self.ctx);
        if term != self.term {
            self.term = term;
            self.forget_local();
        }
        if self.end.is_none() && !self.take_over().await {
            return;
        }
        if self
            .rotated
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= self.config.interval)
        {
            let since = self.rotated.as_ref().map(|(_, p)| p.clone());
            match engine_binlog::rotate(&self.settings, since.as_deref()).await {
                Ok(pos) => self.rotated = Some((Instant::now(), pos)),
                Err(e) => {
                    debug!(cause = %handlers::error_chain(&e), "cannot rotate the binary log");
                    return;
                }
            }
        }
        self.ship_closed().await;
        if self
            .last_gap_check
            .is_none_or(|t| t.elapsed() >= GAP_CHECK_EVERY)
        {
            self.last_gap_check = Some(Instant::now());
            self.check_gaps().await;
        }
    }

    /// Forgets what it knew of the archive's end and of the local binary logs: the data was
    /// replaced (a new term) or it just took the lock. A restored server reuses file names
    /// the old data's binary logs had, with other transactions in them.
    fn forget_local(&mut self) {
        self.end = None;
        self.rotated = None;
        self.described.clear();
        self.starts.clear();
        self.unarchivable.clear();
    }

    /// Just took the lock: reads the archive's end and marks superseded what reaches past
    /// this server's position. Whether it could.
    async fn take_over(&mut self) -> bool {
        let Some(repo) = self.repos.first().cloned() else {
            return false;
        };
        let files = match list(&repo, &self.ctx).await {
            Ok(f) => f,
            Err(e) => {
                warn!(repository = repo.name(), cause = %e, "cannot list the binary log archive; retrying");
                return false;
            }
        };
        let (mine, mine_server) = match engine_binlog::rotate(&self.settings, None).await {
            Ok(pos) => {
                self.rotated = Some((Instant::now(), pos.clone()));
                GtidSet::parse(&pos)
                    .ok()
                    .and_then(|p| p.get(self.domain).map(|g| (g.seq, g.server)))
                    .unwrap_or((0, 0))
            }
            Err(e) => {
                debug!(cause = %handlers::error_chain(&e), "cannot read the server's position");
                return false;
            }
        };
        let mut kept_end = 0;
        for old in binlog::beyond(&files, self.domain, mine) {
            let marked = Binlog {
                superseded: true,
                ..old.clone()
            };
            // The history shared with this server stays live, before the file goes.
            let kept = binlog::kept_prefix(old, mine_server, mine);
            for r in &self.repos {
                if let Some(k) = &kept
                    && let Err(e) =
                        archive::copy(r, &self.ctx.cluster, Kind::Binlog, &old.name(), &k.name())
                            .await
                {
                    warn!(file = %old, repository = r.name(), cause = %handlers::error_chain(&e), "cannot keep the shared part of an archived binary log; retrying");
                    return false;
                }
                match archive::rename(
                    r,
                    &self.ctx.cluster,
                    Kind::Binlog,
                    &old.name(),
                    &marked.name(),
                )
                .await
                {
                    Ok(()) => {}
                    Err(e) => {
                        warn!(file = %old, repository = r.name(), cause = %handlers::error_chain(&e), "cannot mark an archived binary log superseded; retrying");
                        return false;
                    }
                }
            }
            if kept.is_some() {
                kept_end = mine;
            }
            let kept = kept.map_or(String::new(), |k| {
                format!(" (its transactions up to {mine} stay live as {})", k.name())
            });
            let detail = format!(
                "archived {old} holds transactions past this primary's position (sequence {mine}) that no other node received: marked superseded, never replayed{kept}"
            );
            // Not a gap (no acknowledged transaction is missing): a warning and a counter.
            warn!(%detail, "binary log archive");
            counter!("autopilot_archive_superseded_total").increment(1);
        }
        // Files past `mine` are superseded now: the end is the newest of the others and of
        // the kept parts.
        self.end = Some(
            files
                .iter()
                .filter(|f| !f.superseded && f.domain == self.domain && f.last <= mine)
                .map(|f| f.last)
                .max()
                .unwrap_or(0)
                .max(kept_end),
        );
        info!(end = ?self.end, position = mine, "archiving binary logs from the archive's end");
        true
    }

    /// Ships the closed binary logs that reach past the archive's end, oldest first. A file
    /// whose successor starts at or before the end holds nothing new and is not read.
    async fn ship_closed(&mut self) {
        let all = match engine_binlog::list(&self.settings).await {
            Ok(c) => c,
            Err(e) => {
                debug!(cause = %handlers::error_chain(&e), "cannot list the binary logs");
                return;
            }
        };
        // Purged binary logs are no longer this server's to ship.
        self.described
            .retain(|name, _| all.iter().any(|(n, _)| n == name));
        self.starts
            .retain(|name, _| all.iter().any(|(n, _)| n == name));
        for (name, _) in &all {
            if !self.starts.contains_key(name) {
                match engine_binlog::start_seq(&self.settings, name, self.domain).await {
                    Ok(seq) => {
                        self.starts.insert(name.clone(), seq);
                    }
                    Err(e) => {
                        warn!(file = name, cause = %handlers::error_chain(&e), "cannot read where a binary log starts; archiving waits");
                        return;
                    }
                }
            }
        }
        // The closed files still to ship: the spool's figures (the alert on a stalled
        // archive reads them as for PostgreSQL).
        let pending: Vec<u64> = all
            .windows(2)
            .filter(|w| {
                let upper = self.starts.get(&w[1].0).copied().unwrap_or(u64::MAX);
                self.end.is_none_or(|end| upper > end)
            })
            .map(|w| w[0].1)
            .collect();
        gauge!("autopilot_archive_spool_files").set(pending.len() as f64);
        gauge!("autopilot_archive_spool_bytes").set(pending.iter().sum::<u64>() as f64);
        for pair in all.windows(2) {
            let [(name, size), (next, _)] = pair else {
                continue;
            };
            let (name, size) = (name.clone(), *size);
            let upper = self.starts.get(next).copied().unwrap_or(u64::MAX);
            if self.end.is_some_and(|end| upper <= end) {
                continue; // everything in it is archived
            }
            if !self.described.contains_key(&name) {
                let path = engine_binlog::path_of(&self.settings, &name);
                match engine_binlog::describe(&self.settings, &path).await {
                    Ok(d) => {
                        let entry = self.entry(&name, &d);
                        self.described.insert(name.clone(), entry);
                    }
                    Err(e) => {
                        warn!(file = %path.display(), cause = %handlers::error_chain(&e), "cannot read a binary log; retrying");
                        return;
                    }
                }
            }
            let Some(Some(b)) = self.described.get(&name).cloned() else {
                continue;
            };
            if self.end.is_some_and(|end| b.last <= end) {
                continue;
            }
            if size > archive::MAX_FILE {
                self.report_gap(b.first, b.last, format!(
                    "binary log {name} is {size} bytes, more than the archive takes ({} bytes): GTID sequences {}–{} are not archived; keep transactions and max_binlog_size smaller",
                    archive::MAX_FILE,
                    b.first,
                    b.last
                ));
                self.unarchivable.push((b.first, b.last));
                self.end = Some(b.last);
                continue;
            }
            if !self.ship(&b).await {
                return;
            }
            self.end = Some(b.last);
        }
    }

    /// Whether this server's binary logs still hold sequence number `seq`: a file starts
    /// before it, and the next one at or after it (or it is the active one).
    fn holds(&self, all: &[(String, u64)], seq: u64) -> bool {
        let starts: Vec<Option<u64>> = all
            .iter()
            .map(|(n, _)| self.starts.get(n).copied())
            .collect();
        starts.iter().enumerate().any(|(i, start)| {
            start.is_some_and(|s| s < seq)
                && starts
                    .get(i + 1)
                    .is_none_or(|next| next.is_none_or(|n| n >= seq))
        })
    }

    /// What binary log `name` holds, as archived.
    fn entry(&mut self, name: &str, d: &engines::backups::BinlogFile) -> Option<Binlog> {
        let (Some((fd, _, first)), Some((ld, server, last))) = (d.first, d.last) else {
            return None;
        };
        if d.domains.iter().any(|&x| x != self.domain) || fd != self.domain || ld != self.domain {
            self.unarchivable.push((first, last));
            self.report_gap(first, last, format!(
                "binary log {name} holds transactions of replication domains {:?}; the archive keeps domain {} only (the cluster's gtid_domain_id): the others are not archived",
                d.domains, self.domain
            ));
            return None;
        }
        Some(Binlog {
            domain: self.domain,
            first,
            last,
            last_time: d.last_time.unwrap_or(0),
            server,
            file: name.to_owned(),
            superseded: false,
        })
    }

    /// Uploads `b` to every destination; whether it did.
    async fn ship(&self, b: &Binlog) -> bool {
        let path = engine_binlog::path_of(&self.settings, &b.file);
        let plain = match tokio::fs::read(&path).await {
            Ok(p) => p,
            Err(e) => {
                warn!(file = %path.display(), cause = %e, "cannot read a binary log");
                return false;
            }
        };
        let recipients = self.ctx.recipients.clone();
        let level = self.ctx.config.compression_level;
        let sealed =
            match tokio::task::spawn_blocking(move || archive::seal(&plain, &recipients, level))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    warn!(file = %b, cause = %e, "cannot seal a binary log");
                    return false;
                }
                Err(_) => return false,
            };
        let name = b.name();
        for repo in &self.repos {
            if let Err(e) =
                archive::put(repo, &self.ctx.cluster, Kind::Binlog, &name, sealed.clone()).await
            {
                warn!(file = %b, repository = repo.name(), cause = %handlers::error_chain(&e), "cannot archive a binary log; retrying");
                counter!("autopilot_archive_failures_total").increment(1);
                return false;
            }
        }
        counter!("autopilot_archive_files_total").increment(1);
        gauge!("autopilot_archive_last_archived_timestamp_seconds").set(unix_now());
        debug!(file = %b, "binary log archived");
        true
    }

    /// Lists the first destination and reports gaps not reported yet.
    async fn check_gaps(&mut self) {
        let Some(repo) = self.repos.first().cloned() else {
            return;
        };
        let files = match list(&repo, &self.ctx).await {
            Ok(f) => f,
            Err(e) => {
                warn!(cause = %e, "cannot list the archive for gaps");
                return;
            }
        };
        // Only what a restore can still need: after the newest physical backup's position.
        let Some(since) = newest_base_seq(&self.ctx, self.domain).await else {
            // No base backup yet: nothing to restore from, nothing to report.
            gauge!("autopilot_archive_gaps").set(0.0);
            return;
        };
        let mut gaps = binlog::gaps(&files, self.domain, since);
        // What this archiver shipped must be there too (an object removed at the end).
        let reached = binlog::chain(&files, self.domain, since, None).reached;
        let shipped = self.end.unwrap_or(0);
        if gaps.is_empty() && reached < shipped {
            gaps.push(binlog::Gap {
                domain: self.domain,
                first: reached + 1,
                last: shipped,
            });
        }
        // A gap this server's binary logs still cover is filled: shipped again from there.
        let all = engine_binlog::list(&self.settings)
            .await
            .unwrap_or_default();
        let mut unfilled = Vec::new();
        for g in gaps {
            // Held here but not archivable (too large, another domain): not fillable.
            let refused = self
                .unarchivable
                .iter()
                .any(|&(first, last)| first <= g.first && g.first <= last);
            let local = !refused && self.holds(&all, g.first);
            if local {
                info!(gap = %g, "the archive misses what this server's binary logs hold: shipping them again");
                self.end = Some(self.end.map_or(g.first - 1, |e| e.min(g.first - 1)));
            } else {
                unfilled.push(g);
            }
        }
        gauge!("autopilot_archive_gaps").set(unfilled.len() as f64);
        for g in unfilled {
            self.report_gap(
                g.first,
                g.last,
                format!(
                    "{g} is missing from {} and this primary's binary logs no longer hold it",
                    repo.name()
                ),
            );
        }
    }

    /// Reports a hole of GTID sequences `first`–`last` once.
    fn report_gap(&mut self, first: u64, last: u64, detail: String) {
        let domain = self.domain;
        super::archive::report_gap(
            &self.ctx,
            &mut self.gaps,
            format!("{domain}-{first}"),
            format!("{domain}-{last}"),
            detail,
        );
    }
}

/// The archived binary logs in `repo`.
async fn list(repo: &Repository, ctx: &Ctx) -> Result<Vec<Binlog>, String> {
    Ok(archive::list(repo, &ctx.cluster, Kind::Binlog)
        .await
        .map_err(|e| handlers::error_chain(&e).to_string())?
        .iter()
        .filter_map(|f| Binlog::parse(&f.name))
        .collect())
}

/// The sequence number (in `domain`) of the newest done physical backup's position.
async fn newest_base_seq(ctx: &Ctx, domain: u32) -> Option<u64> {
    records::all(ctx)
        .await
        .into_iter()
        .filter(|r| {
            r.status == BackupStatus::Done && r.method == cluster::wire::BackupMethod::Physical
        })
        .max_by(|a, b| a.id.cmp(&b.id))
        .and_then(|r| r.position)
        .and_then(|p| GtidSet::parse(&p).ok())
        .map(|p| p.get(domain).map_or(0, |g| g.seq))
}
