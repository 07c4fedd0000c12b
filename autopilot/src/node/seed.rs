//! Starting a node's data from a backup instead of from the primary (issue 18): a node
//! without data that joins a cluster (`engine.seed: backup | auto`, also for `auto_rebuild`),
//! the node that bootstraps a new cluster from a backup (`cluster.bootstrap.from_backup`),
//! and a node of a cluster whose every node lost its data. The restore goes through the same
//! code as `autopilot backup restore` into a directory beside the data directory, which the
//! engine then adopts ([`Engine::adopt_restored`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use backup::manifest::{Method, Status};
use backup::pipeline::Identity;
use backup::repo::{BackupId, ClusterId, Repository};
use engines::Engine;
use tracing::{info, warn};

use crate::config::{BackupChoice, Config, FromBackup, SeedSource};
use crate::role::Position;

/// Why a node restores a backup; decides which backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A node without data joins a cluster that has a primary: the cluster's newest backup.
    Join,
    /// The cluster is initialised, but no node has data: `from_backup` when configured, else
    /// the cluster's newest backup.
    Lost,
    /// This node bootstraps a new cluster: `from_backup`.
    Bootstrap,
}

/// What the node restores from, built from the configuration.
pub struct Seeder {
    seed: SeedSource,
    from_backup: Option<FromBackup>,
    repos: Vec<Repository>,
    identities: Vec<Identity>,
    cluster: ClusterId,
}

impl std::fmt::Debug for Seeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seeder")
            .field("seed", &self.seed)
            .field("from_backup", &self.from_backup)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Seeder {
    /// `None` when the node cannot restore; an error when its configuration asks it to
    /// (`engine.seed`, `from_backup`) and it cannot. A node that does not have to restore but
    /// can (a backup section with the private key) restores the cluster in place when asked.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Self>>, String> {
        let seed = config.engine.seed();
        let from_backup = config.cluster.as_ref().and_then(|c| c.from_backup.clone());
        if seed == SeedSource::Primary && from_backup.is_none() {
            return Ok(Self::build(config, seed, None).ok().map(Arc::new));
        }
        Self::build(config, seed, from_backup).map(|s| Some(Arc::new(s)))
    }

    fn build(
        config: &Config,
        seed: SeedSource,
        from_backup: Option<FromBackup>,
    ) -> Result<Self, String> {
        // The configuration's validation requires these; a clear error all the same.
        let (Some(b), Some(c)) = (&config.backup, &config.cluster) else {
            return Err(
                "engine.seed and cluster.bootstrap.from_backup need a backup section and a cluster"
                    .into(),
            );
        };
        let identities = match &b.identity {
            Some(secret) => {
                let lines: Vec<&str> = secret.expose().lines().collect();
                backup::pipeline::parse_identities(&lines)
                    .map_err(|e| format!("backup.identity: {e}"))?
            }
            None => return Err("backup.identity: required to restore backups".into()),
        };
        let repos = b
            .repositories
            .iter()
            .map(|r| {
                r.open()
                    .map_err(|e| format!("backup.repositories {}: {e}", r.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Seeder {
            seed,
            from_backup,
            repos,
            identities,
            cluster: ClusterId {
                namespace: c.namespace.clone(),
                project: c.project.clone(),
                name: c.name.clone(),
            },
        })
    }

    /// An in-place restore of this cluster (on its primary, in maintenance): the newest base
    /// backup before `point` and the archive, from the first repository that has them,
    /// replayed into the staging directory while the database still serves; then the
    /// engine swaps it in (the current data directory is kept aside) and starts it
    /// read-only. The position it starts at.
    pub async fn restore_in_place<E: Engine>(
        &self,
        engine: &E,
        point: &cluster::wire::RestorePoint,
    ) -> Result<Position, crate::role::RestoreFailure> {
        let fail = |reason: String, swapped: bool| crate::role::RestoreFailure { reason, swapped };
        let started = Instant::now();
        let staging = engine.restore_staging().ok_or_else(|| {
            fail(
                format!("the {} engine cannot restore backups", engine.kind()),
                false,
            )
        })?;
        let target = match point {
            cluster::wire::RestorePoint::Latest => engines::backups::RecoveryTarget::Latest,
            cluster::wire::RestorePoint::Time(t) => {
                engines::backups::RecoveryTarget::Time(t.to_string())
            }
        };
        let mut errors = Vec::new();
        for repo in &self.repos {
            if staging.exists() {
                std::fs::remove_dir_all(&staging)
                    .map_err(|e| fail(format!("remove {}: {e}", staging.display()), false))?;
            }
            info!(repository = repo.name(), %point, "restoring the cluster in place: replaying a base backup and the archive beside the data");
            let done = match super::backup::pitr::restore_to(
                engine,
                super::backup::pitr::PitrSource {
                    repo,
                    cluster: &self.cluster,
                    identities: &self.identities,
                    target: target.clone(),
                    base: None,
                },
                &staging,
            )
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    warn!(repository = repo.name(), cause = %e, "cannot restore from this repository");
                    errors.push(format!("{}: {e}", repo.name()));
                    continue;
                }
            };
            info!(
                backup = %done.base,
                archive_files = done.archive_files,
                seconds = started.elapsed().as_secs_f64(),
                "restored beside the data; swapping it in"
            );
            return match engine.adopt_restored(&staging, true).await {
                Ok(position) => {
                    info!(
                        backup = %done.base,
                        %point,
                        seconds = started.elapsed().as_secs_f64(),
                        position = %position.notation(engine.kind()),
                        "the cluster's data is restored in place"
                    );
                    Ok(position)
                }
                Err(e) => {
                    // Moved in when the staging directory is gone.
                    let swapped = !staging.exists();
                    let _ = std::fs::remove_dir_all(&staging);
                    Err(fail(
                        format!(
                            "start the restored data of backup {}: {}",
                            done.base,
                            handlers::error_chain(&e)
                        ),
                        swapped,
                    ))
                }
            };
        }
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(fail(
            if errors.is_empty() {
                "no repository is configured".to_owned()
            } else {
                errors.join("; ")
            },
            false,
        ))
    }

    /// A joining node restores instead of cloning.
    pub fn seeds_replicas(&self) -> bool {
        self.seed != SeedSource::Primary
    }

    /// A failed restore falls back to cloning the primary.
    pub fn falls_back(&self) -> bool {
        self.seed == SeedSource::Auto
    }

    /// A new cluster starts from `from_backup`.
    pub fn bootstraps(&self) -> bool {
        self.from_backup.is_some()
    }

    /// Restores the backup `purpose` calls for into the engine's staging directory and has the
    /// engine adopt it (`as_primary` for a bootstrap). The position of the started server.
    pub async fn restore<E: Engine>(
        &self,
        engine: &E,
        purpose: Purpose,
    ) -> Result<Position, String> {
        let started = Instant::now();
        let (repo, cluster, id) = self.pick(engine, purpose).await?;
        let staging = engine
            .restore_staging()
            .ok_or_else(|| format!("the {} engine cannot start from a backup", engine.kind()))?;
        if staging.exists() {
            // Only a restore that did not finish leaves it: ours to remove.
            warn!(dir = %staging.display(), "removing what an unfinished restore left");
            std::fs::remove_dir_all(&staging)
                .map_err(|e| format!("remove {}: {e}", staging.display()))?;
        }
        if let Some(time) = self.from_backup.as_ref().and_then(|f| f.time.clone())
            && purpose != Purpose::Join
        {
            return self
                .restore_to_time(
                    engine, repo, &cluster, &id, time, &staging, purpose, started,
                )
                .await;
        }
        // A MariaDB replica replays the archived binary logs after the backup too, so the
        // primary serves only what was not archived yet; without an archive (or across a
        // gap) it restores the backup alone and the primary serves the rest.
        if purpose == Purpose::Join && engine.kind() == "mariadb" {
            match super::backup::pitr::restore_to(
                engine,
                super::backup::pitr::PitrSource {
                    repo,
                    cluster: &cluster,
                    identities: &self.identities,
                    target: engines::backups::RecoveryTarget::Latest,
                    base: Some(id.clone()),
                },
                &staging,
            )
            .await
            {
                Ok(done) => {
                    info!(
                        backup = %done.base,
                        archive_files = done.archive_files,
                        position = %done.position,
                        "restored the backup and replayed the archived binary logs after it"
                    );
                    return self
                        .adopt(engine, &staging, purpose, &done.base, started)
                        .await;
                }
                Err(e) => {
                    warn!(cause = %e, "cannot replay the archive after the backup; restoring the backup alone (the primary serves everything since)");
                    if staging.exists() {
                        std::fs::remove_dir_all(&staging)
                            .map_err(|e| format!("remove {}: {e}", staging.display()))?;
                    }
                }
            }
        }
        info!(backup = %id, repository = repo.name(), source = %cluster, ?purpose, "restoring a backup to start from");
        let bytes = Arc::new(AtomicU64::new(0));
        let restored = super::backup::restore::restore(
            engine,
            super::backup::restore::Source {
                repo,
                cluster: &cluster,
                id: &id,
                identities: &self.identities,
            },
            &staging,
            super::backup::restore::Progress {
                on_stream: |backup: &str, stream: &str, plain: u64| {
                    info!(backup, stream, bytes = plain, "restoring stream");
                },
                bytes: &bytes,
            },
        )
        .await
        .map_err(|e| format!("restore backup {id} from {}: {e}", repo.name()))?;
        // A PostgreSQL standby also replays the archive first: the primary then needs to
        // hold only what was not archived yet. Without an archive, or when it cannot be
        // read, the primary's WAL since the backup serves, as before.
        if purpose == Purpose::Join
            && engine.kind() == "postgres"
            && let Some(last) = restored.chain.last()
            && let Ok(last) = BackupId::parse(last)
        {
            match super::backup::pitr::wal_into_pg_wal(
                repo,
                &cluster,
                &self.identities,
                &last,
                &staging,
            )
            .await
            {
                Ok(0) => {}
                Ok(n) => info!(
                    files = n,
                    repository = repo.name(),
                    "added the archived WAL after the backup; the standby replays it before it streams"
                ),
                Err(e) => {
                    warn!(cause = %e, "cannot add the archived WAL after the backup; the standby streams everything since the backup from the primary")
                }
            }
        }
        let position = match engine
            .adopt_restored(&staging, purpose == Purpose::Bootstrap)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(format!(
                    "start from backup {id}: {}",
                    handlers::error_chain(&e)
                ));
            }
        };
        info!(
            backup = %id,
            chain = %restored.chain.join(" "),
            repository = repo.name(),
            source = %cluster,
            bytes = restored.bytes,
            seconds = started.elapsed().as_secs_f64(),
            position = %position.notation(engine.kind()),
            "started from a backup"
        );
        Ok(position)
    }

    /// Has the engine adopt the restored `staging` directory; its position.
    async fn adopt<E: Engine>(
        &self,
        engine: &E,
        staging: &std::path::Path,
        purpose: Purpose,
        base: &str,
        started: Instant,
    ) -> Result<Position, String> {
        let position = match engine
            .adopt_restored(staging, purpose == Purpose::Bootstrap)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(staging);
                return Err(format!(
                    "start from backup {base}: {}",
                    handlers::error_chain(&e)
                ));
            }
        };
        info!(
            backup = %base,
            seconds = started.elapsed().as_secs_f64(),
            position = %position.notation(engine.kind()),
            "started from a backup"
        );
        Ok(position)
    }

    /// `from_backup.time`: the base backup (`id` when named, else the newest before the
    /// time) and the archive, replayed to the time into `staging`, then adopted.
    #[allow(clippy::too_many_arguments)]
    async fn restore_to_time<E: Engine>(
        &self,
        engine: &E,
        repo: &Repository,
        cluster: &ClusterId,
        id: &BackupId,
        time: String,
        staging: &std::path::Path,
        purpose: Purpose,
        started: Instant,
    ) -> Result<Position, String> {
        let base = match self.from_backup.as_ref().map(|f| &f.backup) {
            Some(BackupChoice::Id(_)) => Some(id.clone()),
            _ => None,
        };
        info!(repository = repo.name(), source = %cluster, %time, ?purpose, "restoring a backup and the archive to a point in time to start from");
        let done = super::backup::pitr::restore_to(
            engine,
            super::backup::pitr::PitrSource {
                repo,
                cluster,
                identities: &self.identities,
                target: engines::backups::RecoveryTarget::Time(time.clone()),
                base,
            },
            staging,
        )
        .await
        .map_err(|e| format!("restore to {time} from {}: {e}", repo.name()))?;
        let position = match engine
            .adopt_restored(staging, purpose == Purpose::Bootstrap)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(staging);
                return Err(format!(
                    "start from backup {}: {}",
                    done.base,
                    handlers::error_chain(&e)
                ));
            }
        };
        info!(
            backup = %done.base,
            %time,
            archive_files = done.archive_files,
            first_segment = done.first_file.as_deref().unwrap_or("-"),
            last_segment = done.last_file.as_deref().unwrap_or("-"),
            seconds = started.elapsed().as_secs_f64(),
            position = %position.notation(engine.kind()),
            "started from a backup"
        );
        Ok(position)
    }

    /// The repository, cluster and backup to restore for `purpose`.
    async fn pick<E: Engine>(
        &self,
        engine: &E,
        purpose: Purpose,
    ) -> Result<(&Repository, ClusterId, BackupId), String> {
        let configured = match purpose {
            Purpose::Join => None,
            Purpose::Lost | Purpose::Bootstrap => self.from_backup.as_ref(),
        };
        let Some(fb) = configured else {
            if purpose == Purpose::Bootstrap {
                return Err("no cluster.bootstrap.from_backup configured".into());
            }
            let repos: Vec<&Repository> = self.repos.iter().collect();
            let (repo, id) = newest(engine, &repos, &self.cluster).await?;
            return Ok((repo, self.cluster.clone(), id));
        };
        let repo = self
            .repos
            .iter()
            .find(|r| r.name() == fb.repository)
            .ok_or_else(|| {
                format!(
                    "cluster.bootstrap.from_backup.repository: no repository {:?}",
                    fb.repository
                )
            })?;
        if purpose == Purpose::Lost
            && fb.cluster.as_ref().is_some_and(|(n, p, c)| {
                (n.as_str(), p.as_str(), c.as_str())
                    != (
                        self.cluster.namespace.as_str(),
                        self.cluster.project.as_str(),
                        self.cluster.name.as_str(),
                    )
            })
        {
            return Err(format!(
                "cluster {} is initialised with data of its own; restoring a backup of another cluster (cluster.bootstrap.from_backup.cluster) would be foreign data: restore one of this cluster's backups, or start a new cluster (new etcd keys)",
                self.cluster
            ));
        }
        let cluster = fb.cluster.as_ref().map_or_else(
            || self.cluster.clone(),
            |(namespace, project, name)| ClusterId {
                namespace: namespace.clone(),
                project: project.clone(),
                name: name.clone(),
            },
        );
        match &fb.backup {
            BackupChoice::Latest => {
                let (repo, id) = newest(engine, &[repo], &cluster).await?;
                Ok((repo, cluster, id))
            }
            BackupChoice::Id(id) => {
                let id = BackupId::parse(id).map_err(|e| e.to_string())?;
                Ok((repo, cluster, id))
            }
        }
    }
}

/// The newest complete physical backup of `cluster` taken with this engine, across `repos`
/// (by start time, which backup ids sort by).
async fn newest<'r, E: Engine>(
    engine: &E,
    repos: &[&'r Repository],
    cluster: &ClusterId,
) -> Result<(&'r Repository, BackupId), String> {
    let mut best: Option<(&Repository, BackupId)> = None;
    let mut problems = Vec::new();
    for repo in repos {
        let mut ids = match repo.list_backups(cluster).await {
            Ok(ids) => ids,
            Err(e) => {
                problems.push(format!("{}: {e}", repo.name()));
                continue;
            }
        };
        ids.sort();
        for id in ids.into_iter().rev() {
            if best.as_ref().is_some_and(|(_, b)| *b >= id) {
                break;
            }
            match repo.read_manifest(cluster, &id).await {
                Ok(m)
                    if m.status == Status::Complete
                        && m.method == Method::Physical
                        && format!("{:?}", m.engine.kind).eq_ignore_ascii_case(engine.kind()) =>
                {
                    best = Some((repo, id));
                    break;
                }
                Ok(_) => {}
                Err(e) => problems.push(format!("{}: {e}", repo.name())),
            }
        }
    }
    best.ok_or_else(|| {
        let names: Vec<&str> = repos.iter().map(|r| r.name()).collect();
        let mut msg = format!(
            "no complete physical {} backup of cluster {cluster} in {}",
            engine.kind(),
            names.join(", ")
        );
        if !problems.is_empty() {
            msg += &format!(" ({})", problems.join("; "));
        }
        msg
    })
}
