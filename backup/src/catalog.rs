//! The node's local catalog: every backup this node made or knows of, the runs of its jobs,
//! and (for point-in-time recovery, issue 18) the archive it shipped and any gap in it. It
//! lives in one SQLite file under the agent's state directory, so a node keeps scheduling,
//! recording and answering `autopilot backup list` while etcd and the coordinator are down.
//! The repositories stay the source of truth for what can be restored (each backup's manifest
//! describes it); the catalog is the node's memory of it, rebuilt from the manifests when lost.
//!
//! SQLite is synchronous: callers on the async runtime use `tokio::task::spawn_blocking` (or
//! an actor of their own) around these calls. One connection per [`Catalog`]; WAL journal
//! mode, so readers (the CLI) never block the agent's writes.
//!
//! The schema is versioned with `PRAGMA user_version`; [`Catalog::open`] migrates an older
//! file forward and refuses a newer one (written by a newer agent) rather than guess.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// Why the catalog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// SQLite failed (file unreadable, disk full, corrupt database).
    #[error("backup catalog {path}: {source}")]
    Sqlite {
        /// The catalog file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file was written by a newer agent.
    #[error(
        "backup catalog {path}: schema version {found} is newer than this agent's {SCHEMA_VERSION}; \
         run the newer agent, or move the file aside to rebuild it from the repositories"
    )]
    Newer {
        /// The catalog file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// A record that must exist does not.
    #[error("backup catalog {path}: no backup {id:?}")]
    NotFound {
        /// The catalog file.
        path: PathBuf,
        /// The backup id asked for.
        id: String,
    },
    /// A stored value this build cannot read (a newer agent's enum value, say).
    #[error("backup catalog {path}: backup {id:?} has an unreadable {field}: {value:?}")]
    Unreadable {
        /// The catalog file.
        path: PathBuf,
        /// The record.
        id: String,
        /// The column.
        field: &'static str,
        /// What it held.
        value: String,
    },
}

pub use crate::manifest::{BackupType as Kind, Method};

/// Where a backup stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being taken.
    Running,
    /// Taken, stored in every destination and checked after upload.
    Done,
    /// Did not finish; `error` says why. Its partial objects are removed.
    Failed,
    /// Removed by retention (`expired_at` says when); kept as a record of what was removed.
    Expired,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// The text stored in the catalog and shown to people.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)+ _ => None }
            }
        }
    };
}
// (the same words the manifests use: `Method` and `Kind` are the manifest's types)
text_enum!(Status { Running => "running", Done => "done", Failed => "failed", Expired => "expired" });

/// One backup as the catalog records it (the seed's backup record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// Sorts by time: `20261203T153000Z-1a2b3c4d`.
    pub id: String,
    /// The full backup this one belongs to (its own id for a full).
    pub set_id: String,
    /// The backup an incremental builds on.
    pub parent_id: Option<String>,
    /// `namespace/project/cluster`.
    pub cluster: String,
    /// The node that took it.
    pub node: String,
    /// The job that made it (a requested backup runs a configured job; `schedule` says who asked).
    pub job: String,
    /// Free text from the job or the request.
    pub description: Option<String>,
    /// `mariadb`, `postgres`.
    pub engine: String,
    /// The database server's version string.
    pub engine_version: Option<String>,
    /// Physical or logical.
    pub method: Method,
    /// Full or incremental.
    pub kind: Kind,
    /// The tool and the parameters it ran with (no secrets).
    pub tool: Vec<String>,
    /// The databases in it (empty: all).
    pub databases: Vec<String>,
    /// The data directory it was taken from.
    pub data_dir: Option<String>,
    /// The repositories it was written to, by name.
    pub repositories: Vec<String>,
    /// The credentials' names it used (never their values).
    pub credentials: Vec<String>,
    /// Where it is: the manifest's object name in each repository.
    pub manifest: Option<String>,
    /// When it started and ended (Unix milliseconds).
    pub started_ms: i64,
    /// `None` while running.
    pub ended_ms: Option<i64>,
    /// Plain bytes read from the tool.
    pub size_plain: Option<u64>,
    /// Bytes stored (compressed and encrypted), per repository.
    pub size_stored: Option<u64>,
    /// SHA-256 of the plain stream(s), hex (one per stream, `name=hex`).
    pub checksums: Vec<String>,
    /// The engine position it is consistent at, in the engine's notation
    /// (`0/5000000 on timeline 2`, `0-1-2143`).
    pub position: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// Why it failed.
    pub error: Option<String>,
    /// The job's retention class (`daily`, `keep_last 7`, …), for people.
    pub retention: Option<String>,
    /// The job's schedule, for people.
    pub schedule: Option<String>,
    /// When it was last re-read and re-hashed in full (`autopilot backup verify`).
    pub verified_ms: Option<i64>,
    /// When it was last restored into a scratch server and checked, and how long that took.
    pub restore_tested_ms: Option<i64>,
    /// The measured restore time of that test, milliseconds.
    pub restore_time_ms: Option<u64>,
    /// When retention removed it.
    pub expired_ms: Option<i64>,
}

impl BackupRecord {
    /// How long it took, once ended.
    pub fn duration(&self) -> Option<Duration> {
        let ms = self.ended_ms?.checked_sub(self.started_ms)?;
        Some(Duration::from_millis(u64::try_from(ms).ok()?))
    }
}

/// The node's catalog file.
pub struct Catalog {
    path: PathBuf,
    conn: Connection,
}

const COLUMNS: &str = "id, set_id, parent_id, cluster, node, job, description, engine, \
     engine_version, method, kind, tool, databases, data_dir, repositories, credentials, \
     manifest, started_ms, ended_ms, size_plain, size_stored, checksums, position, status, \
     error, retention, schedule, verified_ms, restore_tested_ms, restore_time_ms, expired_ms";

impl Catalog {
    /// Opens (creating, with its directory) the catalog at `path`, migrating an older schema.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        let err = |source| CatalogError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // SQLite reports a missing directory only as "unable to open database file".
            std::fs::create_dir_all(dir).map_err(|e| {
                err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(format!("create directory {}: {e}", dir.display())),
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(CatalogError::Newer {
                path: path.to_path_buf(),
                found,
            });
        }
        if found < 1 {
            conn.execute_batch(SCHEMA_1).map_err(err)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> CatalogError + '_ {
        |source| CatalogError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a backup (a new one, usually `Running`), or replaces the record with that id.
    pub fn put(&self, b: &BackupRecord) -> Result<(), CatalogError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        self.conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO backups ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                 ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, \
                 ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    b.id,
                    b.set_id,
                    b.parent_id,
                    b.cluster,
                    b.node,
                    b.job,
                    b.description,
                    b.engine,
                    b.engine_version,
                    b.method.as_str(),
                    b.kind.as_str(),
                    json(&b.tool),
                    json(&b.databases),
                    b.data_dir,
                    json(&b.repositories),
                    json(&b.credentials),
                    b.manifest,
                    b.started_ms,
                    b.ended_ms,
                    b.size_plain.map(to_i64),
                    b.size_stored.map(to_i64),
                    json(&b.checksums),
                    b.position,
                    b.status.as_str(),
                    b.error,
                    b.retention,
                    b.schedule,
                    b.verified_ms,
                    b.restore_tested_ms,
                    b.restore_time_ms.map(to_i64),
                    b.expired_ms,
                ])
            })
            .map(drop)
            .map_err(self.err())
    }

    /// The backup with `id`.
    pub fn get(&self, id: &str) -> Result<BackupRecord, CatalogError> {
        let row = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM backups WHERE id = ?1"))
            .and_then(|mut st| st.query_row([id], RawRecord::read).optional())
            .map_err(self.err())?;
        match row {
            Some(raw) => raw.into_record(&self.path),
            None => Err(CatalogError::NotFound {
                path: self.path.clone(),
                id: id.to_owned(),
            }),
        }
    }

    /// Every backup, newest first; only `cluster`'s when given.
    pub fn list(&self, cluster: Option<&str>) -> Result<Vec<BackupRecord>, CatalogError> {
        let raws: Vec<RawRecord> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM backups WHERE (?1 IS NULL OR cluster = ?1) \
                 ORDER BY started_ms DESC, id DESC"
            ))
            .and_then(|mut st| {
                st.query_map([cluster], RawRecord::read)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.err())?;
        raws.into_iter()
            .map(|r| r.into_record(&self.path))
            .collect()
    }

    /// Ends a running backup: `Done` with its sizes, or `Failed` with the reason.
    pub fn finish(
        &self,
        id: &str,
        ended_ms: i64,
        outcome: Result<Finished, String>,
    ) -> Result<(), CatalogError> {
        let n = match outcome {
            Ok(f) => self.conn.execute(
                "UPDATE backups SET status = 'done', ended_ms = ?2, size_plain = ?3, \
                 size_stored = ?4, checksums = ?5, position = COALESCE(?6, position), \
                 manifest = ?7, error = NULL WHERE id = ?1",
                params![
                    id,
                    ended_ms,
                    to_i64(f.size_plain),
                    to_i64(f.size_stored),
                    serde_json::to_string(&f.checksums).unwrap_or_else(|_| "[]".into()),
                    f.position,
                    f.manifest,
                ],
            ),
            Err(why) => self.conn.execute(
                "UPDATE backups SET status = 'failed', ended_ms = ?2, error = ?3 WHERE id = ?1",
                params![id, ended_ms, why],
            ),
        }
        .map_err(self.err())?;
        self.found(id, n)
    }

    /// A backup was re-read and re-hashed in full.
    pub fn mark_verified(&self, id: &str, at_ms: i64) -> Result<(), CatalogError> {
        let n = self
            .conn
            .execute(
                "UPDATE backups SET verified_ms = ?2 WHERE id = ?1",
                params![id, at_ms],
            )
            .map_err(self.err())?;
        self.found(id, n)
    }

    /// A backup was restored into a scratch server and passed the engine's checks.
    pub fn mark_restore_tested(
        &self,
        id: &str,
        at_ms: i64,
        restore_time: Duration,
    ) -> Result<(), CatalogError> {
        let ms = u64::try_from(restore_time.as_millis()).unwrap_or(u64::MAX);
        let n = self
            .conn
            .execute(
                "UPDATE backups SET restore_tested_ms = ?2, restore_time_ms = ?3, \
                 verified_ms = MAX(COALESCE(verified_ms, 0), ?2) WHERE id = ?1",
                params![id, at_ms, to_i64(ms)],
            )
            .map_err(self.err())?;
        self.found(id, n)
    }

    /// Retention removed a backup's objects: the record stays, marked `Expired`.
    pub fn mark_expired(&self, id: &str, at_ms: i64) -> Result<(), CatalogError> {
        let n = self
            .conn
            .execute(
                "UPDATE backups SET status = 'expired', expired_ms = ?2 WHERE id = ?1",
                params![id, at_ms],
            )
            .map_err(self.err())?;
        self.found(id, n)
    }

    /// Backups still `Running` — after an agent restart, these died with the old agent: the
    /// caller marks them failed and removes their partial objects.
    pub fn running(&self) -> Result<Vec<BackupRecord>, CatalogError> {
        Ok(self
            .list(None)?
            .into_iter()
            .filter(|b| b.status == Status::Running)
            .collect())
    }

    /// Records a gap in `cluster`'s archive that could not be filled (once per detail).
    pub fn record_gap(&self, gap: &ArchiveGap) -> Result<(), CatalogError> {
        self.conn
            .execute(
                "INSERT INTO archive_gaps (cluster, start_pos, end_pos, found_ms, detail) \
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS \
                 (SELECT 1 FROM archive_gaps WHERE cluster = ?1 AND detail = ?5)",
                params![gap.cluster, gap.start, gap.end, gap.found_ms, gap.detail],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The gaps recorded for `cluster`, oldest first.
    pub fn gaps(&self, cluster: &str) -> Result<Vec<ArchiveGap>, CatalogError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT cluster, start_pos, end_pos, found_ms, detail FROM archive_gaps \
                 WHERE cluster = ?1 ORDER BY found_ms",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![cluster], |r| {
                Ok(ArchiveGap {
                    cluster: r.get(0)?,
                    start: r.get(1)?,
                    end: r.get(2)?,
                    found_ms: r.get(3)?,
                    detail: r.get(4)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    fn found(&self, id: &str, n: usize) -> Result<(), CatalogError> {
        if n == 0 {
            return Err(CatalogError::NotFound {
                path: self.path.clone(),
                id: id.to_owned(),
            });
        }
        Ok(())
    }
}

/// A hole in the change archive that no node could fill: point-in-time recovery cannot
/// cross it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveGap {
    /// `namespace/project/name`.
    pub cluster: String,
    /// Where it starts and ends, in the archive's terms (WAL file names, GTID sequences).
    pub start: String,
    pub end: String,
    /// When this node found it (unix ms).
    pub found_ms: i64,
    /// What the event said.
    pub detail: String,
}

/// What a finished backup adds to its record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finished {
    /// Plain bytes read from the tool.
    pub size_plain: u64,
    /// Bytes stored per repository.
    pub size_stored: u64,
    /// SHA-256 per stream, `name=hex`.
    pub checksums: Vec<String>,
    /// The engine position it is consistent at, when the tool reported it at the end.
    pub position: Option<String>,
    /// The manifest's object name.
    pub manifest: Option<String>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A row as stored, before its text columns are parsed.
struct RawRecord {
    id: String,
    set_id: String,
    parent_id: Option<String>,
    cluster: String,
    node: String,
    job: String,
    description: Option<String>,
    engine: String,
    engine_version: Option<String>,
    method: String,
    kind: String,
    tool: String,
    databases: String,
    data_dir: Option<String>,
    repositories: String,
    credentials: String,
    manifest: Option<String>,
    started_ms: i64,
    ended_ms: Option<i64>,
    size_plain: Option<i64>,
    size_stored: Option<i64>,
    checksums: String,
    position: Option<String>,
    status: String,
    error: Option<String>,
    retention: Option<String>,
    schedule: Option<String>,
    verified_ms: Option<i64>,
    restore_tested_ms: Option<i64>,
    restore_time_ms: Option<i64>,
    expired_ms: Option<i64>,
}

impl RawRecord {
    fn read(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            set_id: r.get(1)?,
            parent_id: r.get(2)?,
            cluster: r.get(3)?,
            node: r.get(4)?,
            job: r.get(5)?,
            description: r.get(6)?,
            engine: r.get(7)?,
            engine_version: r.get(8)?,
            method: r.get(9)?,
            kind: r.get(10)?,
            tool: r.get(11)?,
            databases: r.get(12)?,
            data_dir: r.get(13)?,
            repositories: r.get(14)?,
            credentials: r.get(15)?,
            manifest: r.get(16)?,
            started_ms: r.get(17)?,
            ended_ms: r.get(18)?,
            size_plain: r.get(19)?,
            size_stored: r.get(20)?,
            checksums: r.get(21)?,
            position: r.get(22)?,
            status: r.get(23)?,
            error: r.get(24)?,
            retention: r.get(25)?,
            schedule: r.get(26)?,
            verified_ms: r.get(27)?,
            restore_tested_ms: r.get(28)?,
            restore_time_ms: r.get(29)?,
            expired_ms: r.get(30)?,
        })
    }

    fn into_record(self, path: &Path) -> Result<BackupRecord, CatalogError> {
        let id = self.id.clone();
        let bad = |field: &'static str, value: &str| CatalogError::Unreadable {
            path: path.to_path_buf(),
            id: id.clone(),
            field,
            value: value.to_owned(),
        };
        let list = |field: &'static str, text: &str| {
            serde_json::from_str::<Vec<String>>(text).map_err(|_| bad(field, text))
        };
        let size = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        Ok(BackupRecord {
            method: Method::from_word(&self.method).ok_or_else(|| bad("method", &self.method))?,
            kind: Kind::from_word(&self.kind).ok_or_else(|| bad("kind", &self.kind))?,
            status: Status::parse(&self.status).ok_or_else(|| bad("status", &self.status))?,
            tool: list("tool", &self.tool)?,
            databases: list("databases", &self.databases)?,
            repositories: list("repositories", &self.repositories)?,
            credentials: list("credentials", &self.credentials)?,
            checksums: list("checksums", &self.checksums)?,
            id: self.id,
            set_id: self.set_id,
            parent_id: self.parent_id,
            cluster: self.cluster,
            node: self.node,
            job: self.job,
            description: self.description,
            engine: self.engine,
            engine_version: self.engine_version,
            data_dir: self.data_dir,
            manifest: self.manifest,
            started_ms: self.started_ms,
            ended_ms: self.ended_ms,
            size_plain: size(self.size_plain),
            size_stored: size(self.size_stored),
            position: self.position,
            error: self.error,
            retention: self.retention,
            schedule: self.schedule,
            verified_ms: self.verified_ms,
            restore_tested_ms: self.restore_tested_ms,
            restore_time_ms: size(self.restore_time_ms),
            expired_ms: self.expired_ms,
        })
    }
}

/// Version 1: backups, job runs, and the archive (for PITR, issue 18) with its gaps.
const SCHEMA_1: &str = "
BEGIN;
CREATE TABLE backups (
    id                TEXT PRIMARY KEY,
    set_id            TEXT NOT NULL,
    parent_id         TEXT REFERENCES backups(id),
    cluster           TEXT NOT NULL,
    node              TEXT NOT NULL,
    job               TEXT NOT NULL,
    description       TEXT,
    engine            TEXT NOT NULL,
    engine_version    TEXT,
    method            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    tool              TEXT NOT NULL DEFAULT '[]',
    databases         TEXT NOT NULL DEFAULT '[]',
    data_dir          TEXT,
    repositories      TEXT NOT NULL DEFAULT '[]',
    credentials       TEXT NOT NULL DEFAULT '[]',
    manifest          TEXT,
    started_ms        INTEGER NOT NULL,
    ended_ms          INTEGER,
    size_plain        INTEGER,
    size_stored       INTEGER,
    checksums         TEXT NOT NULL DEFAULT '[]',
    position          TEXT,
    status            TEXT NOT NULL,
    error             TEXT,
    retention         TEXT,
    schedule          TEXT,
    verified_ms       INTEGER,
    restore_tested_ms INTEGER,
    restore_time_ms   INTEGER,
    expired_ms        INTEGER
);
CREATE INDEX backups_by_cluster_time ON backups (cluster, started_ms);
CREATE INDEX backups_by_set ON backups (set_id);
-- One row per scheduled slot a job ran (or was skipped) on this node.
CREATE TABLE job_runs (
    job        TEXT NOT NULL,
    slot_ms    INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms   INTEGER,
    backup_id  TEXT REFERENCES backups(id),
    outcome    TEXT NOT NULL,
    detail     TEXT,
    PRIMARY KEY (job, slot_ms)
);
-- The continuous archive (issue 18): each shipped WAL segment or binary log range, and gaps
-- that could not be filled (recorded, never skipped silently).
CREATE TABLE archive (
    cluster     TEXT NOT NULL,
    name        TEXT NOT NULL,
    timeline    INTEGER,
    start_pos   TEXT NOT NULL,
    end_pos     TEXT NOT NULL,
    object      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size_stored INTEGER NOT NULL,
    shipped_ms  INTEGER NOT NULL,
    node        TEXT NOT NULL,
    PRIMARY KEY (cluster, name)
);
CREATE TABLE archive_gaps (
    cluster    TEXT NOT NULL,
    start_pos  TEXT NOT NULL,
    end_pos    TEXT NOT NULL,
    found_ms   INTEGER NOT NULL,
    detail     TEXT NOT NULL
);
PRAGMA user_version = 1;
COMMIT;
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_gaps_are_recorded_once_per_cluster() {
        let dir = tempfile::tempdir().expect("dir");
        let c = Catalog::open(&dir.path().join("catalog.db")).expect("open");
        let gap = ArchiveGap {
            cluster: "prod/billing/main".into(),
            start: "0-11".into(),
            end: "0-13".into(),
            found_ms: 1_000,
            detail: "GTID sequences 11–13 of domain 0 is missing".into(),
        };
        c.record_gap(&gap).expect("record");
        c.record_gap(&ArchiveGap {
            found_ms: 2_000,
            ..gap.clone()
        })
        .expect("again");
        assert_eq!(c.gaps("prod/billing/main").expect("gaps"), vec![gap]);
        assert!(c.gaps("other/x/y").expect("gaps").is_empty());
    }

    fn record(id: &str, started_ms: i64) -> BackupRecord {
        BackupRecord {
            id: id.into(),
            set_id: id.into(),
            parent_id: None,
            cluster: "prod/billing/main".into(),
            node: "db-2".into(),
            job: "nightly".into(),
            description: Some("nightly full".into()),
            engine: "postgres".into(),
            engine_version: Some("15.14".into()),
            method: Method::Physical,
            kind: Kind::Full,
            tool: vec!["pg_basebackup".into(), "-Ft".into()],
            databases: vec![],
            data_dir: Some("/var/lib/postgresql/15/main".into()),
            repositories: vec!["local".into(), "s3".into()],
            credentials: vec!["s3-backup".into()],
            manifest: None,
            started_ms,
            ended_ms: None,
            size_plain: None,
            size_stored: None,
            checksums: vec![],
            position: None,
            status: Status::Running,
            error: None,
            retention: Some("keep_last 7".into()),
            schedule: Some("0 3 * * * Europe/Berlin".into()),
            verified_ms: None,
            restore_tested_ms: None,
            restore_time_ms: None,
            expired_ms: None,
        }
    }

    #[test]
    fn records_round_trip_and_list_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Catalog::open(&dir.path().join("catalog.db")).expect("open");
        let a = record("20261203T030000Z-00000001", 1_000);
        let b = record("20261204T030000Z-00000002", 2_000);
        c.put(&a).expect("put");
        c.put(&b).expect("put");
        assert_eq!(c.get(&a.id).expect("get"), a);
        let ids: Vec<_> = c
            .list(None)
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![b.id.clone(), a.id.clone()]);
        assert!(c.list(Some("other/x/y")).expect("list").is_empty());
        assert_eq!(c.running().expect("running").len(), 2);
    }

    #[test]
    fn a_backup_finishes_fails_is_verified_and_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.db");
        let c = Catalog::open(&path).expect("open");
        c.put(&record("b1", 1_000)).expect("put");
        c.put(&record("b2", 2_000)).expect("put");
        c.finish(
            "b1",
            61_000,
            Ok(Finished {
                size_plain: 10 << 20,
                size_stored: 3 << 20,
                checksums: vec!["base.tar=ab12".into()],
                position: Some("0/5000000 on timeline 2".into()),
                manifest: Some("prod/billing/main/backups/b1/manifest.json".into()),
            }),
        )
        .expect("finish");
        c.finish("b2", 3_000, Err("pg_basebackup exited with 1: …".into()))
            .expect("fail");
        let b1 = c.get("b1").expect("b1");
        assert_eq!(b1.status, Status::Done);
        assert_eq!(b1.duration(), Some(Duration::from_secs(60)));
        assert_eq!(b1.position.as_deref(), Some("0/5000000 on timeline 2"));
        let b2 = c.get("b2").expect("b2");
        assert_eq!((b2.status, b2.error.is_some()), (Status::Failed, true));
        c.mark_restore_tested("b1", 70_000, Duration::from_millis(4_200))
            .expect("tested");
        let b1 = c.get("b1").expect("b1");
        assert_eq!(
            (b1.restore_tested_ms, b1.restore_time_ms, b1.verified_ms),
            (Some(70_000), Some(4_200), Some(70_000))
        );
        c.mark_expired("b1", 80_000).expect("expire");
        assert_eq!(c.get("b1").expect("b1").status, Status::Expired);
        assert!(c.running().expect("running").is_empty());
        // A second handle (the CLI) reads what the agent wrote.
        drop(c);
        let again = Catalog::open(&path).expect("reopen");
        assert_eq!(again.list(None).expect("list").len(), 2);
    }

    #[test]
    fn missing_records_newer_files_and_foreign_values_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.db");
        let c = Catalog::open(&path).expect("open");
        let e = c.get("nope").expect_err("no such backup");
        assert!(e.to_string().contains("no backup \"nope\""), "{e}");
        assert!(c.mark_verified("nope", 1).is_err());
        c.put(&record("b1", 1)).expect("put");
        c.conn
            .execute("UPDATE backups SET method = 'quantum' WHERE id = 'b1'", [])
            .expect("update");
        let e = c.get("b1").expect_err("unreadable");
        assert!(e.to_string().contains("method: \"quantum\""), "{e}");
        c.conn.pragma_update(None, "user_version", 9).expect("bump");
        drop(c);
        let e = Catalog::open(&path).err().expect("newer schema refused");
        assert!(e.to_string().contains("schema version 9 is newer"), "{e}");
        // Not a database at all.
        let junk = dir.path().join("junk.db");
        std::fs::write(
            &junk,
            b"this is not sqlite, it is a text file of some length",
        )
        .expect("write");
        let e = Catalog::open(&junk).err().expect("junk refused");
        assert!(e.to_string().contains("junk.db"), "{e}");
    }
}
