//! Backups and restores through the engines' own tools (issue 17).
//!
//! The agent's backup runner (crate `autopilot`, `node/backup`) asks an engine for the
//! streams a backup consists of ([`Engine::backup_streams`](crate::Engine::backup_streams)),
//! starts each in turn ([`Engine::start_backup_stream`](crate::Engine::start_backup_stream)),
//! pipes its output through the `backup` crate's pipeline and then calls
//! [`ToolStream::finish`] for the tool's verdict and the position. A restore goes the other
//! way: [`Engine::begin_restore`](crate::Engine::begin_restore) gives a [`Restore`] whose
//! [`Restore::sink`] takes each stored stream and whose [`Restore::finish`] leaves a ready
//! data directory. [`Engine::check_restored`](crate::Engine::check_restored) starts a scratch
//! server on such a directory (loopback, a free port, the database's OS user), runs the
//! engine's own checks and stops it.
//!
//! This module holds the engine-independent types; each engine implements them in its own
//! module (`mariadb::dump`, `postgres::dump`).

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

pub use cluster::wire::{BackupMethod, BackupType};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::EngineError;

/// What to back up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupSpec {
    /// Physical or logical.
    pub method: BackupMethod,
    /// Full or incremental (MariaDB physical only; the others refuse `Incremental`).
    pub backup_type: BackupType,
    /// Incremental: the parent backup's engine LSN ([`StreamDone::incremental_lsn`]).
    pub incremental_lsn: Option<String>,
    /// Logical: the databases to dump; empty means every user database.
    pub databases: Vec<String>,
    /// The tool's path instead of the engine's default (from its bin directory).
    pub tool: Option<PathBuf>,
    /// Extra parameters appended to the tool's command line.
    pub extra_args: Vec<String>,
}

/// One stream of a backup, as planned before any tool runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    /// The stream's name in the repository (`base`, `globals`, `db-<name>`); a key segment:
    /// no `/`.
    pub name: String,
    /// The database it holds (logical), `None` for the whole server or the globals.
    pub database: Option<String>,
}

/// A boxed reader of a tool's output.
pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed writer into a restore step.
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// A running backup tool. Its `output` must be read to the end before [`Self::finish`];
/// dropping it kills the tool and removes its work files.
pub struct ToolStream {
    /// The stream's name (from its [`StreamPlan`]).
    pub name: String,
    /// The tool's program name (`mariadb-backup`, `pg_basebackup`).
    pub tool: String,
    /// The arguments it runs with, without secrets (for the manifest and `instructions`).
    pub parameters: Vec<String>,
    /// What the tool writes.
    pub output: BoxRead,
    /// Waits for the tool and reports its outcome (engine-specific).
    pub finisher: Pin<Box<dyn Future<Output = Result<StreamDone, EngineError>> + Send>>,
}

impl std::fmt::Debug for ToolStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolStream")
            .field("name", &self.name)
            .field("tool", &self.tool)
            .field("parameters", &self.parameters)
            .finish_non_exhaustive()
    }
}

impl ToolStream {
    /// After the output was read to its end: waits for the tool (bounded), fails when it
    /// exited non-zero (its last error lines in the reason), and reports the position.
    pub async fn finish(self) -> Result<StreamDone, EngineError> {
        drop(self.output);
        self.finisher.await
    }
}

/// What a finished tool reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamDone {
    /// The engine position the data is consistent at, in the engine's notation
    /// (`0/5000100 on timeline 2`; a GTID set `0-1-2143`), when this stream knows it.
    pub position: Option<String>,
    /// The engine LSN a following incremental starts from (MariaDB InnoDB `to_lsn`).
    pub incremental_lsn: Option<String>,
    /// The tool's version line, when known.
    pub tool_version: Option<String>,
}

/// What to restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreSpec {
    /// How the backups were taken (every backup of a chain has the same method).
    pub method: BackupMethod,
    /// The directory to create; must not exist or be empty (checked, never overwritten).
    pub target_dir: PathBuf,
    /// The chain, full first then each incremental, each with its stream names in order.
    pub chain: Vec<Vec<StreamPlan>>,
}

/// A restore in progress (engine-specific state behind it).
pub struct Restore {
    /// The engine's implementation.
    pub inner: Box<dyn RestoreSteps>,
}

impl std::fmt::Debug for Restore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Restore")
    }
}

impl Restore {
    /// A writer for stream `stream` of backup `step` of the chain (0: the full). Streams are
    /// taken in the order of [`RestoreSpec::chain`]; the caller writes the whole stream and
    /// then calls [`RestoreSink::finish`].
    pub async fn sink(&mut self, step: usize, stream: &str) -> Result<RestoreSink, EngineError> {
        self.inner.sink(step, stream).await
    }

    /// After every stream: apply incrementals, prepare, set ownership; the target directory
    /// is then a data directory the engine can start on.
    pub async fn finish(self) -> Result<(), EngineError> {
        self.inner.finish().await
    }
}

/// One restore step's input.
pub struct RestoreSink {
    /// Where the stream's bytes go.
    pub input: BoxWrite,
    /// Waits for the consumer (bounded) once `input` is closed.
    pub finisher: Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>>,
}

impl std::fmt::Debug for RestoreSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RestoreSink")
    }
}

impl RestoreSink {
    /// After the whole stream was written and `input` shut down: the consumer's verdict.
    pub async fn finish(self) -> Result<(), EngineError> {
        drop(self.input);
        self.finisher.await
    }
}

/// The engine-specific half of a [`Restore`].
pub trait RestoreSteps: Send {
    /// See [`Restore::sink`].
    fn sink<'a>(
        &'a mut self,
        step: usize,
        stream: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<RestoreSink, EngineError>> + Send + 'a>>;
    /// See [`Restore::finish`].
    fn finish(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>>;
}

/// What the scratch server's checks found (the checks passed: a failure is an error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// What was checked, for the record (`pg_amcheck: 3 databases, 57 relations`).
    pub summary: String,
    /// How long the scratch server took to start on the restored data.
    pub start_time: Duration,
    /// How long the checks took.
    pub check_time: Duration,
}

/// Where a point-in-time recovery stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Just after the last transaction committed before this time (RFC 3339).
    Time(String),
    /// At this position (PostgreSQL LSN `0/5000100`).
    Lsn(String),
    /// Up to and including this transaction (MariaDB GTID `0-1-2143`).
    Gtid(String),
    /// The end of the archive.
    Latest,
}

impl std::fmt::Display for RecoveryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryTarget::Time(t) => write!(f, "time {t}"),
            RecoveryTarget::Lsn(l) => write!(f, "LSN {l}"),
            RecoveryTarget::Gtid(g) => write!(f, "GTID {g}"),
            RecoveryTarget::Latest => f.write_str("the end of the archive"),
        }
    }
}

/// What a point-in-time recovery reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The position the data ends at, in the engine's notation.
    pub position: String,
    /// The commit time of the last transaction replayed, when the engine tells.
    pub last_commit: Option<String>,
}

/// A closed file of the engine's own change log that the archive ships (a MariaDB binary
/// log), as the engine read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinlogFile {
    /// The file's name (`mariadb-bin.000007`).
    pub name: String,
    /// Its first transaction: (domain, server, sequence number); `None` when it holds none.
    pub first: Option<(u32, u32, u64)>,
    /// Its last transaction.
    pub last: Option<(u32, u32, u64)>,
    /// The replication domains of its transactions.
    pub domains: Vec<u32>,
    /// Its last event's time (unix seconds).
    pub last_time: Option<u64>,
}
