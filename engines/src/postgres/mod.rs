//! The `postgres` engine: PostgreSQL 15+ streaming replication driven through
//! tokio-postgres and the PostgreSQL tools.
//!
//! - **Start**: the engine builds the `postgres` command line ([`PostgresSettings`]).
//!   `prepare` initialises an empty data directory (initdb with data checksums) and leaves
//!   `standby.signal` in place, so *every* start is a standby start: a restarted former
//!   primary never takes writes by itself; only [`Engine::promote`] (`pg_promote()`) makes
//!   a server writable, which also starts a new timeline.
//! - **Positions** are (timeline, LSN): a primary's flushed WAL, a standby's replayed WAL.
//! - **Follow** repoints `primary_conninfo` with a reload when the local history is on the
//!   primary's; otherwise (a former primary with WAL the new one lacks) it stops the server,
//!   rewinds it with `pg_rewind` and starts it as a standby; when the rewind fails it
//!   reports [`EngineError::NeedsRebuild`].
//! - **Fence** is SQL-level and immediate (see [`fence`]); the demotion to a standby happens
//!   when the node follows the new primary.
//! - **Replicas**: the primary's agent keeps the replication role, one slot per member and
//!   `synchronous_standby_names` (`durability: sync`) in step with the cluster.
//!
//! - **Backups** (`dump`, `restore`, `check`, `scratch`): `pg_basebackup` or `pg_dumpall` +
//!   `pg_dump` streams as a least-privilege backup role; restores into a new directory and
//!   a scratch server that checks them with `pg_amcheck`.
//!
//! This file holds the engine, its connections and the [`Engine`] impl; the role operations
//! (promote, follow, fence, catch up, clone, replicas) are in `replication.rs`.

mod check;
mod controldata;
mod datadir;
pub mod dump;
mod fence;
mod migrate;
mod pitr;
mod probe;
mod replicas;
mod replication;
mod restore;
mod scratch;
pub mod settings;
pub mod sql;
mod tarscan;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use handlers::ExecSpec;
use nix::sys::signal::Signal;
use tokio_postgres::Client;
use tracing::{info, warn};

pub use settings::{
    Credentials, DEFAULT_MAX_SLOT_WAL_KEEP_SIZE, Durability, PostgresSettings, RESERVED_PARAMETERS,
    WalSpool,
};

use crate::MainControl;
use crate::backups::{BackupSpec, CheckReport, Restore, RestoreSpec, StreamPlan, ToolStream};
use crate::engine::{
    Engine, EngineError, MainStart, Probe, Receiver, Replication, ServerStatus, StopMode,
};
use crate::role_ops::{Member, Peer, Position, RemoteFence};
use cluster::wire::{ReplicaState, StreamingReplica};
use sql::{SqlError, Status};

/// How long a server may take to accept connections after a start (crash recovery included).
const READY_LIMIT: Duration = Duration::from_secs(120);

/// The PostgreSQL engine.
#[derive(Debug)]
pub struct PostgresEngine {
    /// What it was configured with.
    settings: PostgresSettings,
    /// The server command line, built once.
    command: ExecSpec,
    /// Stops and restarts the server for clone, rewind and demotion.
    control: MainControl,
    /// The other members' names, as last given to `set_replicas` (primary only).
    members: Mutex<Option<Vec<String>>>,
    /// Their node ids, to name the standbys a probe sees.
    member_ids: Mutex<Vec<String>>,
    /// Serialises the operations that change the server's role or settings (the role
    /// actor runs engine operations in tasks: a fence and an unfence must not interleave).
    ops: tokio::sync::Mutex<()>,
    /// A kept connection for the frequent read-only queries (probe, position): a SCRAM
    /// login costs real CPU, and the probe runs every second. Dropped after any error.
    reader: tokio::sync::Mutex<Option<std::sync::Arc<Client>>>,
    /// The data directory holds the database `prepare` initialised in this run and nothing
    /// made it the cluster's yet (no bootstrap, promotion or unfence): a clone empties it
    /// instead of keeping it aside. Only in memory: after an agent restart the data counts
    /// as real and is kept.
    fresh: AtomicBool,
}

impl PostgresEngine {
    /// What the probe read, in the engine-neutral form of the node documents.
    fn server_status(&self, f: &probe::Figures, standbys: Vec<probe::Standby>) -> ServerStatus {
        let receiver = f.in_recovery.then(|| Receiver {
            source: f.sender.clone(),
            state: match f.receiver_status.as_str() {
                "streaming" => ReplicaState::Streaming,
                // PostgreSQL keeps retrying: a failed connection shows as no receiver at
                // all, its error only in the server log.
                "" if !f.has_source => ReplicaState::Stopped,
                _ => ReplicaState::Connecting,
            },
            last_error: None,
            lag_seconds: Some(f.replay_lag_seconds),
            lag_bytes: Some(f.replay_lag_bytes),
            lag_transactions: None,
        });
        let ids = self
            .member_ids
            .lock()
            .expect("the member ids lock is never poisoned")
            .clone();
        let replicas = standbys
            .into_iter()
            .map(|s| StreamingReplica {
                name: ids
                    .iter()
                    .find(|id| settings::slot_name(id) == s.application_name)
                    .cloned()
                    .unwrap_or(s.application_name),
                synchronous: Some(s.synchronous),
                lag_seconds: s.lag_seconds,
                lag_bytes: s.lag_bytes,
            })
            .collect();
        ServerStatus {
            version: Some(f.version.clone()),
            uptime_seconds: Some(f.uptime_seconds as u64),
            connections: Some(f.connections),
            max_connections: Some(f.max_connections),
            storage: crate::storage_of(&self.settings.data_dir),
            receiver,
            replicas,
            gtid: None,
        }
    }

    /// An engine for `settings`; `control` is the agent's handle on the main process.
    pub fn new(settings: PostgresSettings, control: MainControl) -> Self {
        let command = settings.server_command();
        Self {
            settings,
            command,
            control,
            members: Mutex::new(None),
            member_ids: Mutex::new(Vec::new()),
            ops: tokio::sync::Mutex::new(()),
            reader: tokio::sync::Mutex::new(None),
            fresh: AtomicBool::new(false),
        }
    }

    /// The settings the engine runs with.
    pub fn settings(&self) -> &PostgresSettings {
        &self.settings
    }

    fn local(&self) -> (&str, u16) {
        (self.settings.listen.as_str(), self.settings.port)
    }

    async fn connect_local(&self, operation: &'static str) -> Result<Client, EngineError> {
        let (host, port) = self.local();
        sql::connect(host, port, &self.settings.superuser)
            .await
            .map_err(|e| match e {
                SqlError::Unreachable(_) => EngineError::NotRunning,
                other => other.into_engine(operation),
            })
    }

    async fn connect_peer(
        &self,
        peer: &Peer,
        operation: &'static str,
    ) -> Result<Client, EngineError> {
        sql::connect(&peer.host, peer.port, &self.settings.superuser)
            .await
            .map_err(|e| e.into_engine(operation))
    }

    async fn local_status(&self, operation: &'static str) -> Result<Status, EngineError> {
        let client = self.reader(operation).await?;
        let st = sql::status(&client).await;
        if st.is_err() {
            self.forget_reader().await;
        }
        st.map_err(|e| e.into_engine(operation))
    }

    /// The kept read-only connection, opened when missing or closed.
    async fn reader(&self, operation: &'static str) -> Result<std::sync::Arc<Client>, EngineError> {
        let mut kept = self.reader.lock().await;
        if let Some(c) = kept.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(self.connect_local(operation).await?);
        *kept = Some(c.clone());
        Ok(c)
    }

    async fn forget_reader(&self) {
        *self.reader.lock().await = None;
    }

    fn sync_names(&self) -> String {
        let members = self
            .members
            .lock()
            .expect("the members lock is never poisoned");
        fence::sync_names(
            self.settings.durability == Durability::Sync,
            members.as_deref(),
        )
    }

    /// Wait until the local server accepts connections and answers.
    async fn wait_ready(&self, operation: &'static str) -> Result<Status, EngineError> {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        loop {
            let (host, port) = self.local();
            let last = match sql::connect(host, port, &self.settings.superuser).await {
                Ok(client) => match sql::status(&client).await {
                    Ok(s) => return Ok(s),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(last.into_engine(operation));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the server (fast shutdown), run `work` on the data directory, start it again
    /// and wait until it answers. The server is started again even when `work` failed,
    /// unless the data directory then holds no database (a clone that failed after it made
    /// room): it stays down, as a node without data does, until a clone succeeds.
    async fn offline<F, Fut>(&self, operation: &'static str, work: F) -> Result<Status, EngineError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), EngineError>>,
    {
        self.control.stop(StopMode::Fast).await?;
        let worked = work().await;
        if let Err(e) = worked {
            if !datadir::initialised(&self.settings) {
                info!(
                    operation,
                    "the data directory holds no database after the failure; the server stays down until a clone succeeds"
                );
                return Err(e);
            }
            warn!(operation, cause = %e, "offline work failed; starting the server again");
            self.control.start().await?;
            return Err(e);
        }
        self.control.start().await?;
        self.wait_ready(operation).await
    }
}

impl PostgresEngine {
    /// Make the data directory ready for a start: remove a failed clone's partial copy,
    /// initialise an empty one (`create`; else leave it empty and say the server waits for
    /// the clone), and write the files every start needs.
    async fn prepare_data_dir(&self, create: bool) -> Result<MainStart, EngineError> {
        let s = &self.settings;
        let op = "prepare the data directory";
        let err = |reason: String| EngineError::Failed {
            operation: op,
            reason,
        };
        let marker = datadir::clone_marker(&s.data_dir);
        if marker.exists() {
            // A clone that did not finish (the agent died meanwhile): its partial copy is
            // ours to remove; the node starts empty and clones again.
            warn!(data_dir = %s.data_dir.display(), "removing the partial copy a failed clone left");
            datadir::make_room(&s.data_dir, false).map_err(err)?;
            std::fs::remove_file(&marker).map_err(|e| err(format!("{}: {e}", marker.display())))?;
        }
        // Before the server first starts, whether now or after a clone: it archives at once.
        datadir::prepare_spool(s).map_err(err)?;
        if !datadir::initialised(s) {
            if !create {
                info!(data_dir = %s.data_dir.display(), "no database in the data directory: the server starts once a copy of the cluster's data (a clone of the primary, or a restored backup) is in place");
                return Ok(MainStart::AfterClone);
            }
            info!(data_dir = %s.data_dir.display(), "initialising an empty data directory");
            datadir::initdb(s).await?;
            self.fresh.store(true, Ordering::SeqCst);
        }
        datadir::ensure_dir(s).map_err(err)?;
        // The engine's own file, rewritten on every start: the roles it names (backup,
        // replication) follow the configuration without a new clone.
        datadir::write_hba(s).map_err(err)?;
        for path in datadir::set_aside_forked_history(s).await? {
            warn!(history = %path.display(), "a timeline history in pg_wal forks off before this server's last checkpoint (it would refuse to start); set aside as .forked, following the primary will rewind");
        }
        datadir::write_passfile(s).map_err(err)?;
        datadir::mark_standby(s).map_err(err)?;
        Ok(MainStart::Now)
    }

    /// Replace the data directory with `restored` and start the server on it as a standby
    /// without a source: it replays the WAL the backup holds up to its consistent point and
    /// waits there. The role logic then has it follow the primary (a replica) or promotes it
    /// (`as_primary`: a cluster bootstrapped from the backup, whose promotion starts a new
    /// timeline). The replaced data is kept aside unless it never held the cluster's.
    async fn adopt(
        &self,
        restored: &std::path::Path,
        as_primary: bool,
    ) -> Result<Position, EngineError> {
        let s = &self.settings;
        let op = "start from the restored backup";
        let err = |reason: String| EngineError::Failed {
            operation: op,
            reason,
        };
        let fresh = self.fresh.load(Ordering::SeqCst);
        let st = self
            .offline(op, || async {
                if let Some(aside) = datadir::make_room(&s.data_dir, fresh).map_err(err)? {
                    info!(kept = %aside.display(), data_dir = %s.data_dir.display(), "moved the local data directory aside and kept it; starting from the restored backup (delete it with `rm -rf {}` once it is not needed)", aside.display());
                }
                if s.data_dir.exists() {
                    std::fs::remove_dir(&s.data_dir)
                        .map_err(|e| err(format!("remove {}: {e}", s.data_dir.display())))?;
                }
                std::fs::rename(restored, &s.data_dir).map_err(|e| {
                    err(format!(
                        "move {} to {}: {e}",
                        restored.display(),
                        s.data_dir.display()
                    ))
                })?;
                datadir::ensure_dir(s).map_err(err)?;
                datadir::write_hba(s).map_err(err)?;
                datadir::write_passfile(s).map_err(err)?;
                datadir::write_auto_conf(s, None).map_err(err)?;
                if as_primary {
                    let marked = datadir::archive_new_timeline(s).map_err(err)?;
                    if !marked.is_empty() {
                        info!(files = %marked.join(" "), "the recovery's new timeline is archived from here");
                    }
                }
                datadir::mark_standby(s).map_err(err)
            })
            .await?;
        self.not_fresh();
        info!(position = %st.position().notation("postgres"), as_primary, "started from the restored backup");
        Ok(st.position())
    }

    /// The data now holds (or becomes) the cluster's: no clone may discard it any more.
    pub(super) fn not_fresh(&self) {
        self.fresh.store(false, Ordering::SeqCst);
    }
}

impl Engine for PostgresEngine {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn main_command(&self) -> &ExecSpec {
        &self.command
    }

    /// Both modes use PostgreSQL's *fast* shutdown (SIGINT): it rolls back open
    /// transactions, disconnects clients and writes a shutdown checkpoint that the standbys
    /// still receive. *Smart* shutdown (SIGTERM) waits for every client to disconnect,
    /// which pooled or kept connections never do, so a stop would always end in SIGKILL
    /// after `stop_timeout`. <https://www.postgresql.org/docs/15/server-shutdown.html>
    fn stop_signal(&self, _mode: StopMode) -> Signal {
        Signal::SIGINT
    }

    async fn prepare(&self) -> Result<(), EngineError> {
        self.prepare_data_dir(true).await.map(drop)
    }

    /// No initdb: pg_basebackup wants an empty data directory, so nothing is written into
    /// one (no `standby.signal`, no password file) and the server starts once the copy is
    /// in place. A data directory that holds a database is prepared as always.
    async fn prepare_to_clone(&self) -> Result<MainStart, EngineError> {
        self.prepare_data_dir(false).await
    }

    async fn probe(&self) -> Result<Probe, EngineError> {
        let op = "probe the server";
        // A server that does not accept connections is `NotRunning`, as on MariaDB: the
        // health actor tells a server the engine holds down (a clone, a rewind) from a crash.
        let client = self.reader(op).await?;
        let read = async {
            let st = sql::status(&client).await?;
            let f = probe::figures(&client).await?;
            let standbys = if f.in_recovery {
                Vec::new()
            } else {
                probe::standbys(&client).await?
            };
            Ok::<_, SqlError>((st, f, standbys))
        };
        let (st, f, standbys) = match read.await {
            Ok(v) => v,
            Err(e) => {
                self.forget_reader().await;
                return Err(e.into_engine(op));
            }
        };
        probe::export(&f, st.timeline);
        let replication = if f.in_recovery {
            Replication::Replica {
                receiving: f.receiving,
            }
        } else {
            Replication::Source {
                streaming: u32::try_from(f.streaming).unwrap_or(u32::MAX),
                synchronous: u32::try_from(f.synchronous).unwrap_or(u32::MAX),
                synchronous_required: self.settings.durability == Durability::Sync,
            }
        };
        let server = self.server_status(&f, standbys);
        Ok(Probe {
            healthy: true,
            reason: None,
            replication,
            server,
        })
    }

    async fn position(&self) -> Result<Position, EngineError> {
        Ok(self
            .local_status("read the replication position")
            .await?
            .position())
    }

    async fn promote(&self) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        self.promote_locked().await
    }

    async fn follow(&self, primary: &Peer) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        self.follow_locked(primary).await
    }

    async fn fence(&self) -> Result<Position, EngineError> {
        self.fence_local().await
    }

    async fn copy_source(&self, source: &crate::Source) -> Result<Position, EngineError> {
        self.copy_from_source(source).await
    }

    async fn lead_standby(&self, source: &crate::Source) -> Result<Position, EngineError> {
        self.lead_from_source(source).await
    }

    async fn stop_source(&self, source: &crate::Source) -> Result<Position, EngineError> {
        self.stop_writes_on_source(source).await
    }

    async fn fence_to_hand_over(&self) -> Result<Position, EngineError> {
        self.fence_for_hand_over().await
    }

    async fn fence_remote(&self, target: &Peer) -> Result<RemoteFence, EngineError> {
        self.fence_peer(target).await
    }

    async fn catch_up(&self) -> Result<Position, EngineError> {
        self.replay_received().await
    }

    async fn clone_from_primary(&self, primary: &Peer) -> Result<Position, EngineError> {
        self.clone_primary(primary).await
    }

    async fn restart(&self, between: crate::Between) -> Result<(), EngineError> {
        self.forget_reader().await;
        self.control.stop(crate::StopMode::Fast).await?;
        let between = between.await;
        self.control.start().await?;
        between
    }

    /// `pg_reload_conf()`: PostgreSQL re-reads `postgresql.conf`, `pg_hba.conf` and
    /// `pg_ident.conf` (settings that need a restart stay pending, see `pg_settings`).
    async fn reload(&self) -> Result<(), EngineError> {
        let op = "reload the configuration";
        let client = self.connect_local(op).await?;
        sql::execute(&client, "SELECT pg_reload_conf()")
            .await
            .map_err(|e| e.into_engine(op))
    }

    /// From `pg_stat_statements` (preloaded by the engine; the extension is created on the
    /// primary the first time, and replicates).
    async fn top_statements(
        &self,
        limit: u32,
    ) -> Result<Vec<cluster::wire::StatementStats>, EngineError> {
        let op = "read the top statements";
        let client = self.reader(op).await?;
        let read = probe::top_statements(&client, limit).await;
        if read.is_err() {
            self.forget_reader().await;
        }
        read.map_err(|e| e.into_engine(op))
    }

    /// The system identifier `initdb` gave the data: every standby cloned from it has it.
    async fn identity(&self) -> Result<Option<String>, EngineError> {
        let op = "read the system identifier";
        let client = self.reader(op).await?;
        match sql::row(
            &client,
            "SELECT system_identifier::text FROM pg_control_system()",
        )
        .await
        {
            Ok(r) => Ok(r.first().cloned().flatten()),
            Err(e) => {
                self.forget_reader().await;
                Err(e.into_engine(op))
            }
        }
    }

    /// At bootstrap the data becomes the cluster's: never discarded by a clone from now on.
    async fn create_identity(&self) -> Result<Option<String>, EngineError> {
        self.not_fresh();
        self.identity().await
    }

    async fn set_replicas(&self, members: &[Member]) -> Result<(), EngineError> {
        *self
            .member_ids
            .lock()
            .expect("the member ids lock is never poisoned") =
            members.iter().map(|m| m.id.clone()).collect();
        self.keep_replicas(members).await
    }

    async fn unfence(&self) -> Result<(), EngineError> {
        self.unfence_local().await
    }

    /// Physical: `base`; logical: `globals` and `db-<name>` for each database (see [`dump`]).
    async fn backup_streams(&self, spec: &BackupSpec) -> Result<Vec<StreamPlan>, EngineError> {
        self.plan_backup(spec).await
    }

    async fn start_backup_stream(
        &self,
        spec: &BackupSpec,
        plan: &StreamPlan,
    ) -> Result<ToolStream, EngineError> {
        self.start_stream(spec, plan).await
    }

    /// Needs no running server: the engine's settings only give the tools, the OS user and
    /// (logical) the superuser of the new cluster.
    async fn begin_restore(&self, spec: &RestoreSpec) -> Result<Restore, EngineError> {
        restore::begin(&self.settings, spec).await
    }

    async fn check_restored(&self, dir: &std::path::Path) -> Result<CheckReport, EngineError> {
        check::check(&self.settings, dir).await
    }

    fn restore_staging(&self) -> Option<std::path::PathBuf> {
        Some(datadir::restore_staging(&self.settings.data_dir))
    }

    async fn recover(
        &self,
        dir: &std::path::Path,
        archive_dir: &std::path::Path,
        target: &crate::backups::RecoveryTarget,
    ) -> Result<crate::backups::Recovered, EngineError> {
        pitr::recover(&self.settings, dir, archive_dir, target).await
    }

    async fn adopt_restored(
        &self,
        restored: &std::path::Path,
        as_primary: bool,
    ) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        let r = self.adopt(restored, as_primary).await;
        if r.is_err() && !restored.exists() {
            // Moved in, then failed: it never served as the cluster's data, so the next
            // attempt replaces it instead of keeping another copy aside.
            self.fresh.store(true, Ordering::SeqCst);
        }
        r
    }
}
