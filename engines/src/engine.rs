//! The [`Engine`] trait and the enum that dispatches over the engines this build knows.

use std::future::Future;

use handlers::ExecSpec;
use nix::sys::signal::Signal;

use crate::backups::{BackupSpec, CheckReport, Restore, RestoreSpec, StreamPlan, ToolStream};
use crate::mariadb::MariadbEngine;
use crate::postgres::PostgresEngine;
use crate::process::ProcessEngine;
use crate::role_ops::{Member, Peer, Position, RemoteFence};

/// How urgently the main process should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Let clients finish and the database write everything out (SIGTERM for most programs).
    Graceful,
    /// Abort open work but shut down cleanly; e.g. PostgreSQL "fast" shutdown is SIGINT
    /// (<https://www.postgresql.org/docs/15/server-shutdown.html>).
    Fast,
}

/// When the main process starts after [`Engine::prepare_to_clone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MainStart {
    /// Now, as after [`Engine::prepare`].
    Now,
    /// Not before the clone: there is no database to run yet, and the clone starts it.
    AfterClone,
}

/// What a probe of the running main process found.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The engine considers the program able to serve.
    pub healthy: bool,
    /// Why not, when not healthy; shown in `/health` and logs.
    pub reason: Option<String>,
    /// What the probe saw of replication.
    pub replication: Replication,
    /// What the server said about itself (published in the node's etcd documents).
    pub server: ServerStatus,
}

/// What a probe read of the server itself: the facts the node and primary documents carry
/// (docs/etcd-keys.md). `None` and empty mean the engine does not know.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ServerStatus {
    /// The server's version string.
    pub version: Option<String>,
    /// Seconds since the server started.
    pub uptime_seconds: Option<u64>,
    /// Client connections now.
    pub connections: Option<u64>,
    /// The configured maximum of client connections.
    pub max_connections: Option<u64>,
    /// The file system holding the data directory.
    pub storage: Option<cluster::wire::Storage>,
    /// On a replica: its receiver.
    pub receiver: Option<Receiver>,
    /// On a source: the replicas streaming from it.
    pub replicas: Vec<cluster::wire::StreamingReplica>,
    /// MariaDB: `gtid_current_pos`, the position in the server's own notation.
    pub gtid: Option<String>,
}

/// A replica's view of its replication (`SHOW SLAVE STATUS`, `pg_stat_wal_receiver`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Receiver {
    /// `host:port` it replicates from.
    pub source: Option<String>,
    /// Its receiver's state.
    pub state: cluster::wire::ReplicaState,
    /// The last replication error, receiving or applying.
    pub last_error: Option<String>,
    /// Apply lag, seconds.
    pub lag_seconds: Option<f64>,
    /// Received but not replayed, bytes (PostgreSQL).
    pub lag_bytes: Option<u64>,
    /// Received but not applied, transactions (MariaDB).
    pub lag_transactions: Option<u64>,
}

/// The file system holding `dir`: total, used and available bytes (`None` when it cannot
/// be read, e.g. before the directory exists).
// The block counts' C types differ between platforms (`u64` on Linux x86_64).
#[allow(clippy::useless_conversion)]
pub fn storage_of(dir: &std::path::Path) -> Option<cluster::wire::Storage> {
    let v = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = u64::from(v.fragment_size());
    let total = u64::from(v.blocks()).saturating_mul(frag);
    let free = u64::from(v.blocks_free()).saturating_mul(frag);
    let available = u64::from(v.blocks_available()).saturating_mul(frag);
    Some(cluster::wire::Storage {
        total_bytes: total,
        used_bytes: total.saturating_sub(free),
        free_bytes: available,
    })
}

impl Probe {
    /// Healthy, with nothing known of replication.
    pub fn healthy() -> Self {
        Self {
            healthy: true,
            reason: None,
            replication: Replication::Unknown,
            server: ServerStatus::default(),
        }
    }
}

/// Replication as one probe saw it (served on `/health` as `replication`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum Replication {
    /// Not known: an engine without replication, or a server that did not tell.
    #[default]
    Unknown,
    /// The server takes writes (or would, unfenced): who replicates from it now.
    Source {
        /// Replicas streaming from it.
        streaming: u32,
        /// Of those, replicas a commit waits for (semi-sync clients, sync/quorum standbys).
        synchronous: u32,
        /// Commits wait for a replica (`durability: sync`): with none, commits hang.
        synchronous_required: bool,
    },
    /// The server replicates from a source: whether it receives from it right now.
    Replica {
        /// The receiver is connected and streaming (PostgreSQL walreceiver `streaming`,
        /// MariaDB IO thread running).
        receiving: bool,
    },
}

/// Errors of engine operations; callers branch on the variant.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The main process is not running, so the operation cannot apply.
    #[error("the main process is not running")]
    NotRunning,
    /// The agent itself ran out of file descriptors (`EMFILE`/`ENFILE`) opening what the
    /// operation needs: says nothing about the database, which was not reached.
    #[error(
        "{operation}: the agent is out of file descriptors, so the database was not checked (raise LimitNOFILE)"
    )]
    AgentOutOfFiles {
        /// What was attempted, as a verb phrase.
        operation: &'static str,
    },
    /// This engine (as configured) cannot do that.
    #[error("{operation} is not supported by this engine as configured")]
    Unsupported {
        /// What was asked, as a verb phrase.
        operation: &'static str,
    },
    /// Following refused: the local data has writes the primary lacks and cannot be rewound.
    #[error("the local data diverged from the primary: {reason}")]
    NeedsRebuild {
        /// What the engine found.
        reason: String,
    },
    /// The other side serves the same operation to someone else right now (a primary's
    /// agent streams one clone at a time): trying again shortly is the expected course.
    #[error("{operation}: {reason}")]
    Busy {
        /// What was attempted, as a verb phrase.
        operation: &'static str,
        /// What the other side said.
        reason: String,
    },
    /// The operation ran and failed.
    #[error("{operation} failed: {reason}")]
    Failed {
        /// What was attempted, as a verb phrase ("prepare data directory").
        operation: &'static str,
        /// What went wrong, in words an operator can act on.
        reason: String,
    },
}

impl EngineError {
    /// The failure is the agent's own (no descriptors), not the database's: callers keep
    /// their last verdict about the database instead of reading this as "down".
    pub fn is_agent_trouble(&self) -> bool {
        matches!(self, EngineError::AgentOutOfFiles { .. })
    }
}

/// Whether `e`, or an error it wraps, means this process (`EMFILE`) or the system
/// (`ENFILE`) ran out of file descriptors.
pub fn out_of_files(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.raw_os_error().map(nix::errno::Errno::from_raw),
                Some(nix::errno::Errno::EMFILE | nix::errno::Errno::ENFILE)
            )
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// What the supervisor needs from an engine.
///
/// The engine does not own the child process: the agent's process actor does (it spawns
/// [`Engine::main_command`] through the `handlers` crate, which owns reaping). Engines map
/// What [`Engine::restart`] runs while the database is stopped.
pub type Between = std::pin::Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>>;

/// A plain restart: nothing runs while the database is stopped.
pub fn nothing_between() -> Between {
    Box::pin(async { Ok(()) })
}

/// supervisor intents to their program's conventions.
pub trait Engine: Send + Sync + 'static {
    /// Short name for logs and metrics (`process`, `mariadb`, `postgres`).
    fn kind(&self) -> &'static str;

    /// The command line of the main process.
    fn main_command(&self) -> &ExecSpec;

    /// The signal that asks the main process to stop in `mode`.
    fn stop_signal(&self, mode: StopMode) -> Signal;

    /// Make the node ready for its first start (e.g. initialise a data directory).
    /// Runs before the operator's preStart handler.
    fn prepare(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// [`prepare`](Self::prepare) for a node that will clone the primary (it has no
    /// bootstrap marker and the cluster is initialised): everything but creating a
    /// database, which the clone would only replace. [`MainStart::AfterClone`] when the
    /// main process must stay down until [`Engine::clone_from_primary`] starts it (through
    /// the engine's [`crate::MainControl`]); engines that clone by other means prepare as
    /// always and start it now.
    fn prepare_to_clone(&self) -> impl Future<Output = Result<MainStart, EngineError>> + Send {
        async { self.prepare().await.map(|()| MainStart::Now) }
    }

    /// Probe the running main process. `Ok` with `healthy: false` means it answered badly;
    /// `Err` means the probe itself could not run.
    fn probe(&self) -> impl Future<Output = Result<Probe, EngineError>> + Send;

    /// The local database's replication position (after everything received was applied,
    /// where the engine can tell).
    fn position(&self) -> impl Future<Output = Result<Position, EngineError>> + Send;

    /// Make the local database the writable primary; returns its position.
    fn promote(&self) -> impl Future<Output = Result<Position, EngineError>> + Send;

    /// Replicate from `primary` (rewinding first where the engine can); returns the local
    /// position. [`EngineError::NeedsRebuild`] when local data diverged beyond repair.
    fn follow(&self, primary: &Peer) -> impl Future<Output = Result<Position, EngineError>> + Send;

    /// Make the local database refuse writes; returns its final position.
    fn fence(&self) -> impl Future<Output = Result<Position, EngineError>> + Send;

    /// [`fence`](Self::fence) before this primary hands its role over on purpose: an engine
    /// whose former primary would otherwise have to rewind (PostgreSQL: the shutdown
    /// checkpoint written after the successor's promotion) also stops the server cleanly and
    /// starts it again as a replica with no source, and returns the position after its last
    /// record; the successor catches up to it before promoting.
    fn fence_to_hand_over(&self) -> impl Future<Output = Result<Position, EngineError>> + Send;

    /// Make a former primary's database refuse writes over its own connection.
    fn fence_remote(
        &self,
        target: &Peer,
    ) -> impl Future<Output = Result<RemoteFence, EngineError>> + Send;

    /// Undo [`Engine::fence`] on the local database.
    fn unfence(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Finish applying everything already received (relay log, WAL) and return the
    /// position. Replication keeps running: after a remote fence the role logic polls
    /// [`Engine::position`] until it reaches the fenced old primary's final position.
    fn catch_up(&self) -> impl Future<Output = Result<Position, EngineError>> + Send {
        self.position()
    }

    /// Replace the local data with a copy of `primary`'s and follow it. Called for a node
    /// without data joining a cluster that has a primary, and to rebuild a diverged node
    /// when the operator allowed it. Engines that need the main process down use their
    /// [`crate::MainControl`].
    fn clone_from_primary(
        &self,
        primary: &Peer,
    ) -> impl Future<Output = Result<Position, EngineError>> + Send {
        self.follow(primary)
    }

    /// On the primary: the other members of the cluster, right after promotion and whenever
    /// the set changes (replication slots, users, synchronous replication settings). The
    /// engine judges each replica's health from its own replication views.
    fn set_replicas(
        &self,
        members: &[Member],
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        let _ = members;
        async { Ok(()) }
    }

    /// The identity of the local data (PostgreSQL's system identifier, the identity MariaDB
    /// data got at bootstrap); `None` when the data has none (the `process` engine, data
    /// older than identities). A node whose data has another identity than the cluster's
    /// `initialized` document does not belong to the cluster.
    fn identity(&self) -> impl Future<Output = Result<Option<String>, EngineError>> + Send {
        async { Ok(None) }
    }

    /// The database's top `limit` statements by total execution time, from its own
    /// statistics; `Err(Failed)` naming the cause when it keeps none (the `process` engine,
    /// statistics switched off).
    fn top_statements(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<cluster::wire::StatementStats>, EngineError>> + Send {
        let _ = limit;
        async {
            Err(EngineError::Failed {
                operation: "read the top statements",
                reason: "this engine keeps no statement statistics".into(),
            })
        }
    }

    /// At bootstrap, before the cluster is recorded as initialised: the identity of the
    /// data this node bootstraps the cluster with, created if the engine keeps its own.
    fn create_identity(&self) -> impl Future<Output = Result<Option<String>, EngineError>> + Send {
        self.identity()
    }

    /// An operator's restart: stop the database (fast shutdown), run `between` (an upgrade
    /// or rollback hook; [`nothing_between`] for a plain restart), and start it again —
    /// also when `between` failed, whose error is then returned; returns once it is started
    /// (the role logic then follows the primary again).
    fn restart(&self, between: Between) -> impl Future<Output = Result<(), EngineError>> + Send {
        async {
            drop(between);
            Err(EngineError::Failed {
                operation: "restart the database",
                reason: "this engine cannot restart its program on request; restart the agent"
                    .into(),
            })
        }
    }

    /// An operator's reload: the database re-reads its configuration without a restart.
    fn reload(&self) -> impl Future<Output = Result<(), EngineError>> + Send {
        async {
            Err(EngineError::Failed {
                operation: "reload the configuration",
                reason: "this engine's program re-reads no configuration at run time; use \
                         restart"
                    .into(),
            })
        }
    }
    /// The bootstrap of a live migration: replace the local data with a copy of the
    /// external `source`'s and replicate from it, read-only; the position reached.
    fn copy_source(
        &self,
        _source: &crate::Source,
    ) -> impl Future<Output = Result<Position, EngineError>> + Send {
        async {
            Err(EngineError::Failed {
                operation: "copy the migration source",
                reason: "this engine cannot migrate from an external database".into(),
            })
        }
    }

    /// Lead the cluster while it migrates: replicate from the external `source`, read-only
    /// (a standby leader); the position.
    fn lead_standby(
        &self,
        _source: &crate::Source,
    ) -> impl Future<Output = Result<Position, EngineError>> + Send {
        async {
            Err(EngineError::Failed {
                operation: "replicate from the migration source",
                reason: "this engine cannot migrate from an external database".into(),
            })
        }
    }

    /// The cutover's first step: make the external `source` refuse writes (ending its
    /// client sessions), then wait until the local data has everything it committed; the
    /// local position then. The local database keeps replicating and stays read-only.
    fn stop_source(
        &self,
        _source: &crate::Source,
    ) -> impl Future<Output = Result<Position, EngineError>> + Send {
        async {
            Err(EngineError::Failed {
                operation: "stop writes on the migration source",
                reason: "this engine cannot migrate from an external database".into(),
            })
        }
    }

    /// The streams a backup of this node consists of, in the order they are taken and
    /// restored (see [`crate::backups`]).
    fn backup_streams(
        &self,
        _spec: &BackupSpec,
    ) -> impl Future<Output = Result<Vec<StreamPlan>, EngineError>> + Send {
        async {
            Err(EngineError::Unsupported {
                operation: "take a backup",
            })
        }
    }

    /// Starts the tool that produces one stream of a backup.
    fn start_backup_stream(
        &self,
        _spec: &BackupSpec,
        _plan: &StreamPlan,
    ) -> impl Future<Output = Result<ToolStream, EngineError>> + Send {
        async {
            Err(EngineError::Unsupported {
                operation: "take a backup",
            })
        }
    }

    /// Starts restoring a backup (a chain: full, then incrementals) into a new directory.
    /// Works without a running server (the command line uses it on any machine with the
    /// engine's tools).
    fn begin_restore(
        &self,
        _spec: &RestoreSpec,
    ) -> impl Future<Output = Result<Restore, EngineError>> + Send {
        async {
            Err(EngineError::Unsupported {
                operation: "restore a backup",
            })
        }
    }

    /// Starts a scratch server on a restored data directory (loopback, a free port, the
    /// database's OS user, its own socket directory), runs the engine's own checks
    /// (`mariadb-check`, `pg_amcheck`) and stops it. The directory is left as it is.
    fn check_restored(
        &self,
        _dir: &std::path::Path,
    ) -> impl Future<Output = Result<CheckReport, EngineError>> + Send {
        async {
            Err(EngineError::Unsupported {
                operation: "test a restore",
            })
        }
    }

    /// Where a restore that [`Engine::adopt_restored`] takes is made: beside the data
    /// directory, on its file system (adopting it is a rename). `None` when this engine
    /// cannot start from a restored backup.
    fn restore_staging(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// Point-in-time recovery: replays the archived changes in `archive_dir` (files named as
    /// the engine archives them) on the restored data directory `dir` up to `target`, on a
    /// scratch server (loopback, a free port, the database's OS user), then stops it: `dir`
    /// is then a data directory at that point, on a history of its own.
    fn recover(
        &self,
        _dir: &std::path::Path,
        _archive_dir: &std::path::Path,
        _target: &crate::backups::RecoveryTarget,
    ) -> impl Future<Output = Result<crate::backups::Recovered, EngineError>> + Send {
        async {
            Err(EngineError::Unsupported {
                operation: "recover to a point in time",
            })
        }
    }

    /// Replace the local data with `restored` (a data directory [`Engine::begin_restore`]
    /// made at [`Engine::restore_staging`]) and start the server on it; the replaced data is
    /// kept aside unless it never held the cluster's. `as_primary`: the data starts the
    /// cluster's history (it bootstraps a cluster); otherwise it is ready to follow the
    /// primary from the backup's position. Returns the position.
    fn adopt_restored(
        &self,
        _restored: &std::path::Path,
        _as_primary: bool,
    ) -> impl Future<Output = Result<Position, EngineError>> + Send {
        async {
            Err(EngineError::Unsupported {
                operation: "start from a restored backup",
            })
        }
    }
}

/// Dispatch over the engines this build knows; the agent holds one of these.
// One value per agent, held in an Arc: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyEngine {
    /// Any program.
    Process(ProcessEngine),
    /// MariaDB (the `mariadb` module).
    Mariadb(MariadbEngine),
    /// PostgreSQL streaming replication.
    Postgres(PostgresEngine),
}

impl Engine for AnyEngine {
    fn kind(&self) -> &'static str {
        match self {
            AnyEngine::Process(e) => e.kind(),
            AnyEngine::Mariadb(e) => e.kind(),
            AnyEngine::Postgres(e) => e.kind(),
        }
    }

    fn main_command(&self) -> &ExecSpec {
        match self {
            AnyEngine::Process(e) => e.main_command(),
            AnyEngine::Mariadb(e) => e.main_command(),
            AnyEngine::Postgres(e) => e.main_command(),
        }
    }

    fn stop_signal(&self, mode: StopMode) -> Signal {
        match self {
            AnyEngine::Process(e) => e.stop_signal(mode),
            AnyEngine::Mariadb(e) => e.stop_signal(mode),
            AnyEngine::Postgres(e) => e.stop_signal(mode),
        }
    }

    async fn prepare(&self) -> Result<(), EngineError> {
        match self {
            AnyEngine::Process(e) => e.prepare().await,
            AnyEngine::Mariadb(e) => e.prepare().await,
            AnyEngine::Postgres(e) => e.prepare().await,
        }
    }

    async fn prepare_to_clone(&self) -> Result<MainStart, EngineError> {
        match self {
            AnyEngine::Process(e) => e.prepare_to_clone().await,
            AnyEngine::Mariadb(e) => e.prepare_to_clone().await,
            AnyEngine::Postgres(e) => e.prepare_to_clone().await,
        }
    }

    async fn probe(&self) -> Result<Probe, EngineError> {
        match self {
            AnyEngine::Process(e) => e.probe().await,
            AnyEngine::Mariadb(e) => e.probe().await,
            AnyEngine::Postgres(e) => e.probe().await,
        }
    }

    async fn position(&self) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.position().await,
            AnyEngine::Mariadb(e) => e.position().await,
            AnyEngine::Postgres(e) => e.position().await,
        }
    }

    async fn promote(&self) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.promote().await,
            AnyEngine::Mariadb(e) => e.promote().await,
            AnyEngine::Postgres(e) => e.promote().await,
        }
    }

    async fn follow(&self, primary: &Peer) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.follow(primary).await,
            AnyEngine::Mariadb(e) => e.follow(primary).await,
            AnyEngine::Postgres(e) => e.follow(primary).await,
        }
    }

    async fn fence(&self) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.fence().await,
            AnyEngine::Mariadb(e) => e.fence().await,
            AnyEngine::Postgres(e) => e.fence().await,
        }
    }

    async fn fence_to_hand_over(&self) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.fence_to_hand_over().await,
            AnyEngine::Mariadb(e) => e.fence_to_hand_over().await,
            AnyEngine::Postgres(e) => e.fence_to_hand_over().await,
        }
    }

    async fn fence_remote(&self, target: &Peer) -> Result<RemoteFence, EngineError> {
        match self {
            AnyEngine::Process(e) => e.fence_remote(target).await,
            AnyEngine::Mariadb(e) => e.fence_remote(target).await,
            AnyEngine::Postgres(e) => e.fence_remote(target).await,
        }
    }

    async fn unfence(&self) -> Result<(), EngineError> {
        match self {
            AnyEngine::Process(e) => e.unfence().await,
            AnyEngine::Mariadb(e) => e.unfence().await,
            AnyEngine::Postgres(e) => e.unfence().await,
        }
    }

    async fn catch_up(&self) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.catch_up().await,
            AnyEngine::Mariadb(e) => e.catch_up().await,
            AnyEngine::Postgres(e) => e.catch_up().await,
        }
    }

    async fn clone_from_primary(&self, primary: &Peer) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.clone_from_primary(primary).await,
            AnyEngine::Mariadb(e) => e.clone_from_primary(primary).await,
            AnyEngine::Postgres(e) => e.clone_from_primary(primary).await,
        }
    }

    async fn set_replicas(&self, members: &[Member]) -> Result<(), EngineError> {
        match self {
            AnyEngine::Process(e) => e.set_replicas(members).await,
            AnyEngine::Mariadb(e) => e.set_replicas(members).await,
            AnyEngine::Postgres(e) => e.set_replicas(members).await,
        }
    }

    async fn identity(&self) -> Result<Option<String>, EngineError> {
        match self {
            AnyEngine::Process(e) => e.identity().await,
            AnyEngine::Mariadb(e) => e.identity().await,
            AnyEngine::Postgres(e) => e.identity().await,
        }
    }

    async fn top_statements(
        &self,
        limit: u32,
    ) -> Result<Vec<cluster::wire::StatementStats>, EngineError> {
        match self {
            AnyEngine::Process(e) => e.top_statements(limit).await,
            AnyEngine::Mariadb(e) => e.top_statements(limit).await,
            AnyEngine::Postgres(e) => e.top_statements(limit).await,
        }
    }

    async fn create_identity(&self) -> Result<Option<String>, EngineError> {
        match self {
            AnyEngine::Process(e) => e.create_identity().await,
            AnyEngine::Mariadb(e) => e.create_identity().await,
            AnyEngine::Postgres(e) => e.create_identity().await,
        }
    }

    async fn restart(&self, between: Between) -> Result<(), EngineError> {
        match self {
            AnyEngine::Process(e) => e.restart(between).await,
            AnyEngine::Mariadb(e) => e.restart(between).await,
            AnyEngine::Postgres(e) => e.restart(between).await,
        }
    }

    async fn reload(&self) -> Result<(), EngineError> {
        match self {
            AnyEngine::Process(e) => e.reload().await,
            AnyEngine::Mariadb(e) => e.reload().await,
            AnyEngine::Postgres(e) => e.reload().await,
        }
    }

    async fn copy_source(&self, source: &crate::Source) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.copy_source(source).await,
            AnyEngine::Mariadb(e) => e.copy_source(source).await,
            AnyEngine::Postgres(e) => e.copy_source(source).await,
        }
    }

    async fn lead_standby(&self, source: &crate::Source) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.lead_standby(source).await,
            AnyEngine::Mariadb(e) => e.lead_standby(source).await,
            AnyEngine::Postgres(e) => e.lead_standby(source).await,
        }
    }

    async fn stop_source(&self, source: &crate::Source) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.stop_source(source).await,
            AnyEngine::Mariadb(e) => e.stop_source(source).await,
            AnyEngine::Postgres(e) => e.stop_source(source).await,
        }
    }

    async fn backup_streams(&self, spec: &BackupSpec) -> Result<Vec<StreamPlan>, EngineError> {
        match self {
            AnyEngine::Process(e) => e.backup_streams(spec).await,
            AnyEngine::Mariadb(e) => e.backup_streams(spec).await,
            AnyEngine::Postgres(e) => e.backup_streams(spec).await,
        }
    }

    async fn start_backup_stream(
        &self,
        spec: &BackupSpec,
        plan: &StreamPlan,
    ) -> Result<ToolStream, EngineError> {
        match self {
            AnyEngine::Process(e) => e.start_backup_stream(spec, plan).await,
            AnyEngine::Mariadb(e) => e.start_backup_stream(spec, plan).await,
            AnyEngine::Postgres(e) => e.start_backup_stream(spec, plan).await,
        }
    }

    async fn begin_restore(&self, spec: &RestoreSpec) -> Result<Restore, EngineError> {
        match self {
            AnyEngine::Process(e) => e.begin_restore(spec).await,
            AnyEngine::Mariadb(e) => e.begin_restore(spec).await,
            AnyEngine::Postgres(e) => e.begin_restore(spec).await,
        }
    }

    async fn check_restored(&self, dir: &std::path::Path) -> Result<CheckReport, EngineError> {
        match self {
            AnyEngine::Process(e) => e.check_restored(dir).await,
            AnyEngine::Mariadb(e) => e.check_restored(dir).await,
            AnyEngine::Postgres(e) => e.check_restored(dir).await,
        }
    }

    async fn recover(
        &self,
        dir: &std::path::Path,
        archive_dir: &std::path::Path,
        target: &crate::backups::RecoveryTarget,
    ) -> Result<crate::backups::Recovered, EngineError> {
        match self {
            AnyEngine::Process(e) => e.recover(dir, archive_dir, target).await,
            AnyEngine::Mariadb(e) => e.recover(dir, archive_dir, target).await,
            AnyEngine::Postgres(e) => e.recover(dir, archive_dir, target).await,
        }
    }

    fn restore_staging(&self) -> Option<std::path::PathBuf> {
        match self {
            AnyEngine::Process(e) => e.restore_staging(),
            AnyEngine::Mariadb(e) => e.restore_staging(),
            AnyEngine::Postgres(e) => e.restore_staging(),
        }
    }

    async fn adopt_restored(
        &self,
        restored: &std::path::Path,
        as_primary: bool,
    ) -> Result<Position, EngineError> {
        match self {
            AnyEngine::Process(e) => e.adopt_restored(restored, as_primary).await,
            AnyEngine::Mariadb(e) => e.adopt_restored(restored, as_primary).await,
            AnyEngine::Postgres(e) => e.adopt_restored(restored, as_primary).await,
        }
    }
}

#[cfg(test)]
mod out_of_files_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect")]
    struct Wrapper(#[source] std::io::Error);

    #[test]
    fn emfile_and_enfile_are_the_agents_trouble_wherever_they_are_wrapped() {
        let emfile = std::io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        assert!(out_of_files(&emfile));
        assert!(out_of_files(&Wrapper(emfile)));
        let enfile = std::io::Error::from_raw_os_error(nix::errno::Errno::ENFILE as i32);
        assert!(out_of_files(&enfile));
        let refused = std::io::Error::from_raw_os_error(nix::errno::Errno::ECONNREFUSED as i32);
        assert!(!out_of_files(&Wrapper(refused)));
        assert!(EngineError::AgentOutOfFiles { operation: "probe" }.is_agent_trouble());
        assert!(!EngineError::NotRunning.is_agent_trouble());
    }
}
