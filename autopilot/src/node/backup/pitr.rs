//! Restoring to a point in time (issue 18): the newest base backup whose consistent point is
//! before the target, the archive from there on (PostgreSQL WAL; MariaDB binary logs, the
//! chain that reaches the target), and the engine's replay up to the target
//! ([`Engine::recover`]). Everything is checked before the target directory is
//! touched (a target before the oldest backup, nothing archived after it, a gap on the way);
//! a failure afterwards leaves the directory as it was (empty or absent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use backup::archive::{self, Kind, wal};
use backup::manifest::{EngineKind, Manifest, Method, Status};
use backup::pipeline::Identity;
use backup::repo::{BackupId, ClusterId, Repository};
use engines::Engine;
use engines::backups::RecoveryTarget;

/// What to restore and to which point.
pub(crate) struct PitrSource<'a> {
    pub repo: &'a Repository,
    pub cluster: &'a ClusterId,
    pub identities: &'a [Identity],
    pub target: RecoveryTarget,
    /// The base backup; default the newest before the target.
    pub base: Option<BackupId>,
}

/// What a point-in-time restore used and reached.
#[derive(Clone, Debug)]
pub(crate) struct PitrDone {
    pub base: String,
    pub base_position: Option<String>,
    pub archive_files: usize,
    pub first_file: Option<String>,
    pub last_file: Option<String>,
    pub position: String,
    pub elapsed: Duration,
}

/// A base backup's consistent point: `(timeline, LSN)` from `0/502B0E0 on timeline 2`.
fn base_point(m: &Manifest) -> Option<(u32, u64)> {
    let p = m.position.as_deref()?;
    let (lsn, tli) = p.split_once(" on timeline ")?;
    Some((tli.trim().parse().ok()?, wal::parse_lsn(lsn)?))
}

fn finished(m: &Manifest) -> Option<SystemTime> {
    m.finished_at
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
}

/// Restores `source` to its target into `target_dir` (must not exist or be empty).
pub(crate) async fn restore_to<E: Engine>(
    engine: &E,
    source: PitrSource<'_>,
    target_dir: &Path,
) -> Result<PitrDone, String> {
    let started = Instant::now();
    let PitrSource {
        repo,
        cluster,
        identities,
        target,
        base,
    } = source;
    let kind = match engine.kind() {
        "postgres" => EngineKind::Postgres,
        "mariadb" => EngineKind::Mariadb,
        other => {
            return Err(format!(
                "point-in-time recovery is for MariaDB and PostgreSQL; this configuration's engine is {other}"
            ));
        }
    };
    match (&target, kind) {
        (RecoveryTarget::Lsn(_), EngineKind::Mariadb) => {
            return Err(
                "--lsn is a PostgreSQL position; MariaDB restores to a GTID (--gtid 0-1-2143) or a time (--time)"
                    .to_owned(),
            );
        }
        (RecoveryTarget::Gtid(_), EngineKind::Postgres) => {
            return Err(
                "--gtid is a MariaDB position; PostgreSQL restores to an LSN (--lsn 0/5000100) or a time (--time)"
                    .to_owned(),
            );
        }
        _ => {}
    }
    if let Ok(mut entries) = std::fs::read_dir(target_dir)
        && entries.next().is_some()
    {
        return Err(format!(
            "{} is not empty; a restore never writes into a directory that holds anything: pass a new or empty directory",
            target_dir.display()
        ));
    }
    let base = choose_base(repo, cluster, kind, &target, base.as_ref()).await?;
    // What to fetch: (archive kind, archived name, name in the fetch directory), in replay
    // order; checked against gaps before anything is written.
    let plan = match kind {
        EngineKind::Postgres => plan_wal(repo, cluster, &base, &target).await?,
        EngineKind::Mariadb => plan_binlogs(repo, cluster, &base, &target).await?,
    };
    // Fetch into a directory beside the target, removed at the end whatever happens.
    let name = target_dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let fetch_dir = target_dir.with_file_name(format!("{name}.archive"));
    let _ = std::fs::remove_dir_all(&fetch_dir);
    std::fs::create_dir_all(&fetch_dir)
        .map_err(|e| format!("create {}: {e}", fetch_dir.display()))?;
    let result = async {
        let mut histories = BTreeMap::new();
        for (archived, local) in &plan.files {
            let bytes = archive::get(repo, cluster, plan.kind, archived, identities)
                .await
                .map_err(|e| handlers::error_chain(&e).to_string())?;
            if let Some(wal::WalFile::History { timeline }) = wal::parse(archived)
                && let Some(&b) = wal::parse_history(&String::from_utf8_lossy(&bytes)).last()
            {
                histories.insert(timeline, b);
            }
            tokio::fs::write(fetch_dir.join(local), &bytes)
                .await
                .map_err(|e| format!("write {}: {e}", fetch_dir.join(local).display()))?;
        }
        let mut gaps = Vec::new();
        if plan.kind == Kind::Wal {
            let (tli, lsn) = base_point(&base).unwrap_or_default();
            let _ = tli;
            let base_seg = wal::segment_of(lsn);
            let g: Vec<wal::Gap> = wal::gaps(&plan.listed, &histories)
                .into_iter()
                .filter(|g| g.last >= base_seg)
                .collect();
            if let Some(g) = g.first() {
                let blocked = match &target {
                    // PostgreSQL would stop at the gap and call that the end: refuse instead.
                    RecoveryTarget::Latest => true,
                    RecoveryTarget::Lsn(l) => {
                        wal::parse_lsn(l).is_some_and(|l| wal::segment_of(l) >= g.first)
                    }
                    // Where the time falls is known only while replaying: PostgreSQL stops
                    // with "recovery ended before … target" if it is past the gap (named
                    // below).
                    RecoveryTarget::Time(_) | RecoveryTarget::Gtid(_) => false,
                };
                if blocked {
                    return Err(format!(
                        "the archive misses WAL {g} after backup {}: the replay cannot cross it to reach {target}; choose a target before it (--lsn or --time), or restore a backup taken after it",
                        base.backup_id
                    ));
                }
            }
            gaps = g.iter().map(|g| format!("WAL {g}")).collect();
        }
        let bytes = Arc::new(AtomicU64::new(0));
        super::restore::restore(
            engine,
            super::restore::Source {
                repo,
                cluster,
                id: &base.backup_id,
                identities,
            },
            target_dir,
            super::restore::Progress {
                on_stream: |_: &str, _: &str, _: u64| {},
                bytes: &bytes,
            },
        )
        .await?;
        match engine.recover(target_dir, &fetch_dir, &target).await {
            Ok(r) => Ok(r),
            Err(e) => {
                empty(target_dir);
                let mut msg = handlers::error_chain(&e).to_string();
                if !gaps.is_empty() {
                    msg += &format!("; the archive misses {}", gaps.join(", "));
                }
                Err(msg)
            }
        }
    }
    .await;
    let _ = std::fs::remove_dir_all(&fetch_dir);
    let reached = result?;
    Ok(PitrDone {
        base: base.backup_id.to_string(),
        base_position: base.position.clone(),
        archive_files: plan.files.len(),
        first_file: plan.first,
        last_file: plan.last,
        position: reached.position,
        elapsed: started.elapsed(),
    })
}

/// What a point-in-time restore fetches from the archive.
struct Plan {
    kind: Kind,
    /// (archived name, name in the fetch directory), in replay order.
    files: Vec<(String, String)>,
    /// Every archived name (for the gap check).
    listed: Vec<String>,
    /// The first and last data file replayed (segments, binary logs).
    first: Option<String>,
    last: Option<String>,
}

/// PostgreSQL: the history files, and the segments from the base's consistent point on.
async fn plan_wal(
    repo: &Repository,
    cluster: &ClusterId,
    base: &Manifest,
    target: &RecoveryTarget,
) -> Result<Plan, String> {
    let (base_tli, base_lsn) = base_point(base).ok_or_else(|| {
        format!(
            "backup {} records no position (\"LSN on timeline N\"); it cannot start a point-in-time recovery",
            base.backup_id
        )
    })?;
    let listed = archive::list(repo, cluster, Kind::Wal)
        .await
        .map_err(|e| handlers::error_chain(&e).to_string())?;
    let base_seg = wal::segment_of(base_lsn);
    let wanted: Vec<String> = listed
        .iter()
        .map(|f| f.name.clone())
        .filter(|n| match wal::parse(n) {
            Some(wal::WalFile::History { .. }) => true,
            Some(wal::WalFile::Segment { timeline, segment }) => {
                timeline >= base_tli && segment >= base_seg
            }
            _ => false,
        })
        .collect();
    let segments: Vec<&String> = wanted
        .iter()
        .filter(|n| matches!(wal::parse(n), Some(wal::WalFile::Segment { .. })))
        .collect();
    if segments.is_empty() && *target != RecoveryTarget::Latest {
        return Err(format!(
            "the archive in {} holds no WAL after backup {} (consistent at {}): is backup.archive configured, and has it run since? Restore the backup itself without --time/--lsn",
            repo.name(),
            base.backup_id,
            base.position.as_deref().unwrap_or("?")
        ));
    }
    Ok(Plan {
        kind: Kind::Wal,
        first: segments.first().map(|s| (*s).clone()),
        last: segments.last().map(|s| (*s).clone()),
        files: wanted.iter().map(|n| (n.clone(), n.clone())).collect(),
        listed: listed.into_iter().map(|f| f.name).collect(),
    })
}

/// MariaDB: the chain of binary logs from the base's GTID position to the target, refused
/// when a hole is in the way or the target is past the archive's end.
async fn plan_binlogs(
    repo: &Repository,
    cluster: &ClusterId,
    base: &Manifest,
    target: &RecoveryTarget,
) -> Result<Plan, String> {
    use backup::archive::binlog::{self, Binlog};
    use engines::mariadb::gtid::{Gtid, GtidSet};
    let base_pos = GtidSet::parse(base.position.as_deref().unwrap_or("")).map_err(|e| {
        format!(
            "backup {} records no GTID position ({e}); it cannot start a point-in-time recovery",
            base.backup_id
        )
    })?;
    let listed = archive::list(repo, cluster, Kind::Binlog)
        .await
        .map_err(|e| handlers::error_chain(&e).to_string())?;
    let files: Vec<Binlog> = listed
        .iter()
        .filter_map(|f| Binlog::parse(&f.name))
        .collect();
    let target_gtid =
        match target {
            RecoveryTarget::Gtid(g) => Some(g.parse::<Gtid>().map_err(|e| {
                format!("{g:?} is not a GTID (DOMAIN-SERVER-SEQ, e.g. 0-1-2143): {e}")
            })?),
            _ => None,
        };
    // The cluster's replication domain: the target's, else the archive's (one only).
    let mut domains: Vec<u32> = files.iter().map(|b| b.domain).collect();
    domains.sort_unstable();
    domains.dedup();
    let domain = match (target_gtid, domains.as_slice()) {
        (Some(g), _) => g.domain,
        (None, [d]) => *d,
        (None, []) => base_pos.iter().next().map_or(0, |g| g.domain),
        (None, many) => {
            return Err(format!(
                "the archive in {} holds binary logs of domains {many:?}; name the transaction to stop at with --gtid DOMAIN-SERVER-SEQ",
                repo.name()
            ));
        }
    };
    let after = base_pos.get(domain).map_or(0, |g| g.seq);
    let describe_end = |c: &binlog::Chain<'_>| match c.files.last() {
        Some(f) => format!(
            "ends at GTID sequence {} (written {})",
            c.reached,
            humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + Duration::from_secs(f.last_time)
            )
        ),
        None => format!("holds nothing after the backup's position {base_pos}"),
    };
    let chain = match target {
        RecoveryTarget::Gtid(_) => {
            let until = target_gtid.map(|g| g.seq).unwrap_or(after);
            let c = binlog::chain(&files, domain, after, Some(until));
            if c.reached < until {
                return Err(match &c.gap {
                    Some(g) => format!(
                        "the archive misses {g} after backup {}: the replay cannot cross it to reach {target}; choose a target before it, or restore a backup taken after it",
                        base.backup_id
                    ),
                    None => format!(
                        "{target} is after the end of the archive in {}, which {}; choose an earlier transaction or --latest",
                        repo.name(),
                        describe_end(&c)
                    ),
                });
            }
            c
        }
        RecoveryTarget::Latest => {
            let c = binlog::chain(&files, domain, after, None);
            if let Some(g) = &c.gap {
                return Err(format!(
                    "the archive misses {g} after backup {}: the replay cannot cross it to reach {target}; choose a target before it (--gtid or --time), or restore a backup taken after it",
                    base.backup_id
                ));
            }
            c
        }
        RecoveryTarget::Time(t) => {
            let at = humantime::parse_rfc3339_weak(t)
                .map_err(|e| format!("{t:?} is not an RFC 3339 time: {e}"))?
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut c = binlog::chain(&files, domain, after, None);
            // Up to the first file with an event at or after the target's second.
            match c.files.iter().position(|f| f.last_time >= at) {
                Some(i) => c.files.truncate(i + 1),
                None => {
                    return Err(match &c.gap {
                        Some(g) => format!(
                            "the archive misses {g} after backup {}: the replay cannot cross it to reach {target}; choose a target before it, or restore a backup taken after it",
                            base.backup_id
                        ),
                        None => format!(
                            "{target} is after the newest archived change: the archive in {} {}; choose an earlier time, or --latest for everything archived",
                            repo.name(),
                            describe_end(&c)
                        ),
                    });
                }
            }
            c
        }
        RecoveryTarget::Lsn(_) => unreachable!("refused above"),
    };
    let names: Vec<String> = chain.files.iter().map(|b| b.name()).collect();
    Ok(Plan {
        kind: Kind::Binlog,
        first: names.first().cloned(),
        last: names.last().cloned(),
        files: names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), format!("{:06}.{n}", i + 1)))
            .collect(),
        listed: listed.into_iter().map(|f| f.name).collect(),
    })
}

/// Seeding a standby from the repository (`engine.seed`): copies the archived WAL after
/// backup `base` (history files, and segments from its consistent point on) into the
/// restored data directory's `pg_wal`, owned as the directory is, so the standby replays
/// them before it streams from the primary: the primary then needs to hold only what was
/// not archived yet. The number of files; none when the archive holds nothing after it.
pub(crate) async fn wal_into_pg_wal(
    repo: &Repository,
    cluster: &ClusterId,
    identities: &[Identity],
    base: &BackupId,
    data_dir: &Path,
) -> Result<usize, String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = repo
        .read_manifest(cluster, base)
        .await
        .map_err(|e| handlers::error_chain(&e).to_string())?;
    let Some((tli, lsn)) = base_point(&m) else {
        return Ok(0);
    };
    let pg_wal = data_dir.join("pg_wal");
    let owner = std::fs::metadata(&pg_wal).map_err(|e| format!("{}: {e}", pg_wal.display()))?;
    let base_seg = wal::segment_of(lsn);
    let listed = archive::list(repo, cluster, Kind::Wal)
        .await
        .map_err(|e| handlers::error_chain(&e).to_string())?;
    let mut n = 0;
    for f in listed {
        let wanted = match wal::parse(&f.name) {
            Some(wal::WalFile::History { .. }) => true,
            Some(wal::WalFile::Segment { timeline, segment }) => {
                timeline >= tli && segment >= base_seg
            }
            _ => false,
        };
        if !wanted {
            continue;
        }
        let bytes = archive::get(repo, cluster, Kind::Wal, &f.name, identities)
            .await
            .map_err(|e| handlers::error_chain(&e).to_string())?;
        let path = pg_wal.join(&f.name);
        tokio::fs::write(&path, &bytes)
            .await
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(owner.uid())),
            Some(nix::unistd::Gid::from_raw(owner.gid())),
        )
        .map_err(|e| format!("chown {}: {e}", path.display()))?;
        n += 1;
    }
    Ok(n)
}

/// Removes what a failed recovery left in `dir` (it was empty or absent before).
fn empty(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let p: PathBuf = entry.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// The base backup for `target`: `base` when given (checked to be before it), else the
/// newest complete physical backup whose consistent point is before the target.
async fn choose_base(
    repo: &Repository,
    cluster: &ClusterId,
    kind: EngineKind,
    target: &RecoveryTarget,
    base: Option<&BackupId>,
) -> Result<Manifest, String> {
    let ids = match base {
        Some(id) => vec![id.clone()],
        None => repo
            .list_backups(cluster)
            .await
            .map_err(|e| handlers::error_chain(&e).to_string())?,
    };
    let mut usable = Vec::new();
    for id in ids.iter().rev() {
        let m = match repo.read_manifest(cluster, id).await {
            Ok(m) => m,
            Err(e) if base.is_some() => return Err(handlers::error_chain(&e).to_string()),
            Err(_) => continue,
        };
        if m.status == Status::Complete && m.method == Method::Physical && m.engine.kind == kind {
            usable.push(m);
        }
    }
    if usable.is_empty() {
        return Err(match base {
            Some(id) => format!(
                "backup {id} is not a complete physical {kind:?} backup; point-in-time recovery starts from one"
            ),
            None => format!(
                "{} holds no complete physical backup of {cluster}; point-in-time recovery starts from one",
                repo.name()
            ),
        });
    }
    let before = |m: &Manifest| -> bool {
        match target {
            RecoveryTarget::Latest => true,
            // Its end time is to the second: one second of margin keeps its consistent point
            // before the target.
            RecoveryTarget::Time(t) => match (finished(m), humantime::parse_rfc3339_weak(t)) {
                (Some(end), Ok(t)) => end + Duration::from_secs(1) <= t,
                _ => false,
            },
            RecoveryTarget::Lsn(l) => match (base_point(m), wal::parse_lsn(l)) {
                (Some((_, end)), Some(l)) => end <= l,
                _ => false,
            },
            RecoveryTarget::Gtid(g) => {
                use engines::mariadb::gtid::{Gtid, GtidSet};
                match (
                    g.parse::<Gtid>(),
                    GtidSet::parse(m.position.as_deref().unwrap_or("")),
                ) {
                    (Ok(g), Ok(at)) => at.get(g.domain).is_none_or(|b| b.seq <= g.seq),
                    _ => false,
                }
            }
        }
    };
    // `usable` is newest first.
    match usable.iter().find(|m| before(m)) {
        Some(m) => Ok(m.clone()),
        None => {
            let oldest = usable.last().expect("not empty");
            Err(format!(
                "{target} is before the consistent point of {} (backup {}, finished {}, at {}): choose a later target",
                if base.is_some() {
                    "the backup named"
                } else {
                    "the oldest backup"
                },
                oldest.backup_id,
                oldest.finished_at.as_deref().unwrap_or("?"),
                oldest.position.as_deref().unwrap_or("?")
            ))
        }
    }
}
