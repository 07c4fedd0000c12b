//! The backup documents (issue 17): `backup/records/<id>` (a short summary of each backup,
//! for the coordinator and other tools: the node's catalog and the repository's manifest
//! hold the whole record), `backup/requests/<id>` (an operator's order: a backup now, a
//! verify, a test restore) and `backup/slots/<job>/<slot>` (which node runs one scheduled
//! slot: bound to that node's lease while it runs, so exactly one node runs it, and another
//! retries it when the runner dies).

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Physical (the data files) or logical (dumps).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupMethod {
    /// The data files (`mariadb-backup`, `pg_basebackup`).
    #[default]
    Physical,
    /// Dumps (`mariadb-dump`, `pg_dump`).
    Logical,
    /// A value this reader does not know (written by a newer version).
    #[serde(other)]
    Unknown,
}

/// Full or incremental.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// Self-contained.
    #[default]
    Full,
    /// The changes since its parent (MariaDB physical only).
    Incremental,
    /// A value this reader does not know (written by a newer version).
    #[serde(other)]
    Unknown,
}

macro_rules! words {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// The word stored in documents, manifests and the catalog.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            /// The value for a stored word (`None` for a word this build does not know).
            pub fn from_word(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)+ _ => None }
            }
        }
    };
}
words!(BackupMethod { Physical => "physical", Logical => "logical", Unknown => "unknown" });
words!(BackupType { Full => "full", Incremental => "incremental", Unknown => "unknown" });

/// Where a backup stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Being taken.
    Running,
    /// Stored in every destination and checked after upload.
    Done,
    /// Did not finish; `error` says why.
    Failed,
    /// A value this reader does not know.
    #[serde(other)]
    Unknown,
}

/// Value of `<cluster>/backup/records/<backup id>` (no lease: it outlives its writer;
/// retention deletes it with the backup).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupRecordDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// The backup id (`20261203T153000Z-1a2b3c4d`, its start time first).
    pub id: String,
    /// The full backup it belongs with (its own id for a full).
    pub set_id: String,
    /// The backup an incremental builds on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The job that made it (a requested backup runs a configured job: its name).
    pub job: String,
    /// The node that took it.
    pub node: String,
    /// `mariadb` or `postgres`.
    pub engine: String,
    /// The database server's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// Physical or logical.
    pub method: BackupMethod,
    /// Full or incremental.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// Where it stands.
    pub status: BackupStatus,
    /// When it started.
    pub started: Timestamp,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
    /// The engine position it is consistent at, in the engine's notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Bytes the tool wrote.
    #[serde(default)]
    pub size_plain: u64,
    /// Bytes stored (compressed and encrypted) in each repository.
    #[serde(default)]
    pub size_stored: u64,
    /// The repositories it is in, by name.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// The databases in it (empty: all).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Its streams' names, in restore order (`base`; `globals`, `db-<name>`).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When every object was last re-read and re-hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Timestamp>,
    /// When it was last restored into a scratch server and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_tested: Option<Timestamp>,
    /// How long that restore took, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_seconds: Option<f64>,
}

impl Document for BackupRecordDoc {
    const KIND: &'static str = "backup record";
}

/// What an operator asks of the backup agents.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupAction {
    /// Run a job now (placed as its schedule would be).
    Backup,
    /// Re-read and re-hash every object of a backup.
    Verify,
    /// Restore a backup into a scratch server and run the engine's checks.
    TestRestore,
    /// A value this reader does not know (written by a newer version): ignored.
    #[default]
    #[serde(other)]
    Unknown,
}

/// Value of `<cluster>/backup/requests/<request id>`: written by the coordinator or an
/// operator; the node that carries it out writes an event and deletes the key.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRequestDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// What to do.
    pub action: BackupAction,
    /// `backup`: the job to run (its method, type, destinations, placement).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// `verify`, `test_restore`: the backup (default: the newest done one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Who asked (user or token name).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// When it was asked.
    #[serde(default)]
    pub time: Option<Timestamp>,
}

impl Document for BackupRequestDoc {
    const KIND: &'static str = "backup request";
}

/// Value of `<cluster>/backup/slots/<job>/<slot>`: a scheduled slot is
/// `<job name>/<its UTC time, 20261203T020000Z>`, the scheduled verification's
/// `_verify/<time>`, a request's `_requests/<request id>`. Created by the node that runs the slot, bound to
/// its lease; rewritten without a lease when the run ends, so a finished slot is never run
/// twice and a slot whose runner died (the key vanished with its lease) is retried.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSlotDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// The node running (or that ran) it.
    pub holder: String,
    /// The backup it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// `running`, `done`, `failed`.
    pub status: BackupStatus,
    /// When the run started.
    pub started: Timestamp,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
}

impl Document for BackupSlotDoc {
    const KIND: &'static str = "backup slot";
}
