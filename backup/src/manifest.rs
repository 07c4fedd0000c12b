//! The manifest written beside each backup's data (`…/backups/<id>/manifest.json`): what a
//! repository needs to describe itself, so a new machine with only the repository and the
//! private key can list, verify and restore every backup — no catalog, no etcd.
//!
//! The JSON is versioned by `format`. A reader refuses a `format` it does not know instead of
//! guessing. Within format 1 a reader ignores fields it does not know: a newer agent may add
//! optional fields (decided deliberately — an older CLI must still list and restore backups
//! written by a newer agent during a rolling upgrade); anything that changes the meaning of
//! an existing field bumps `format`.

use serde::{Deserialize, Serialize};

use crate::pipeline::StreamSummary;
use crate::repo::{BackupId, ClusterId};

/// The manifest format this code writes and the only one it reads.
pub const FORMAT: u32 = 1;

/// A manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or JSON without the fields of a manifest.
    #[error("{object}: corrupt manifest")]
    Corrupt {
        object: String,
        #[source]
        source: serde_json::Error,
    },
    /// A format this code does not know (written by a newer version?).
    #[error(
        "{object}: manifest format {found} is not supported (this version reads format {FORMAT})"
    )]
    UnknownFormat { object: String, found: String },
}

/// One backup, as its repository describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`] when written by this code; checked first when reading.
    pub format: u32,
    /// This backup's id (also its directory name).
    pub backup_id: BackupId,
    /// The full backup this one belongs with: its own id for a full, the full's id for an
    /// incremental. Retention keeps or drops a set as a whole.
    pub set_id: BackupId,
    /// The backup an incremental is taken against (`None` for a full); restore applies the
    /// chain parent first.
    pub parent_id: Option<BackupId>,
    /// The cluster, which is also the backup's place in the layout.
    pub cluster: ClusterId,
    /// The node that took it (for the record and for "which host's tools made this").
    pub node: String,
    /// The database engine and the version that wrote the data (restore needs the same major).
    pub engine: EngineInfo,
    /// Physical (data files) or logical (dumps).
    pub method: Method,
    /// Full or incremental.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// The tool that produced the streams, so `instructions` can print the exact commands.
    pub tool: ToolInfo,
    /// When the backup started, RFC 3339 UTC.
    pub started_at: String,
    /// When it ended (successfully or not), RFC 3339 UTC; `None` while running.
    pub finished_at: Option<String>,
    /// The engine position the data is consistent at, as text: `LSN 0/3000028 timeline 1` for
    /// PostgreSQL, a GTID set for MariaDB. PITR replays the archive from here.
    pub position: Option<String>,
    /// The engine LSN an incremental taken after this backup starts from (MariaDB's InnoDB
    /// `to_lsn`); only meaningful on the node that took it, whose data files it describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_lsn: Option<String>,
    /// The databases included; empty means all of them.
    pub databases: Vec<String>,
    /// The streams, in the order restore consumes them.
    pub streams: Vec<StreamEntry>,
    /// How the streams were compressed.
    pub compression: Compression,
    /// How they were encrypted: the recipients (public keys) they were encrypted to, so
    /// an operator knows which private key opens them (and a key rotation can be audited).
    pub encryption: Encryption,
    /// Whether the backup is usable.
    pub status: Status,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The engine that wrote the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Which engine.
    pub kind: EngineKind,
    /// The server version (`10.11.19`, `15.18`).
    pub version: String,
}

/// The database engines Autopilot supervises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// MariaDB (mariadb-backup, mariadb-dump).
    Mariadb,
    /// PostgreSQL (pg_basebackup, pg_dump).
    Postgres,
}

/// Physical or logical, full or incremental: the public contract's words (an unknown value,
/// written by a newer version, reads as `Unknown` and restore refuses it).
pub use cluster::wire::{BackupMethod as Method, BackupType};

/// The tool that produced the streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// The program (`mariadb-backup`, `pg_basebackup`).
    pub name: String,
    /// Its version, when known.
    pub version: Option<String>,
    /// The arguments it ran with (no secrets: those go through files or the environment).
    pub parameters: Vec<String>,
}

/// One stream of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEntry {
    /// The stream's name (its directory under `data/`).
    pub name: String,
    /// Sizes, checksums and chunks, as the pipeline stored them.
    pub summary: StreamSummary,
}

/// Compression settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Always `zstd` today; a name so a future codec needs no new format.
    pub algorithm: String,
    /// The zstd level.
    pub level: i32,
    /// zstd worker threads (0 = single-threaded); does not affect decompression.
    pub threads: u32,
}

/// Encryption settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// Always `age` today.
    pub scheme: String,
    /// The age recipients (`age1…` public keys) every stream was encrypted to.
    pub recipients: Vec<String>,
}

/// Whether a backup is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being written (a manifest may be written early to claim the id).
    Running,
    /// Every stream stored and checked.
    Complete,
    /// It failed; see `error`.
    Failed,
}

impl Manifest {
    /// The manifest as pretty JSON (humans read these when things go wrong).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }

    /// Parses a manifest read from `object` (named in errors): the format first, then the rest.
    pub fn from_json(bytes: &[u8], object: &str) -> Result<Self, ManifestError> {
        let corrupt = |source| ManifestError::Corrupt {
            object: object.to_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(corrupt)?;
        match value.get("format") {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(FORMAT)) => {}
            other => {
                let found = other.map_or_else(|| "(missing)".to_owned(), ToString::to_string);
                return Err(ManifestError::UnknownFormat {
                    object: object.to_owned(),
                    found,
                });
            }
        }
        serde_json::from_value(value).map_err(corrupt)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pipeline::ChunkSummary;

    /// A complete manifest for tests.
    pub(crate) fn sample(backup_id: BackupId) -> Manifest {
        Manifest {
            format: FORMAT,
            set_id: backup_id.clone(),
            backup_id,
            parent_id: None,
            cluster: ClusterId {
                namespace: "prod".into(),
                project: "shop".into(),
                name: "pg-main".into(),
            },
            node: "node-1".into(),
            engine: EngineInfo {
                kind: EngineKind::Postgres,
                version: "15.18".into(),
            },
            method: Method::Physical,
            backup_type: BackupType::Full,
            tool: ToolInfo {
                name: "pg_basebackup".into(),
                version: Some("15.18".into()),
                parameters: vec!["-Ft".into(), "-X".into(), "stream".into()],
            },
            started_at: "2026-12-03T15:30:00Z".into(),
            finished_at: Some("2026-12-03T15:31:00Z".into()),
            position: Some("LSN 0/3000028 timeline 1".into()),
            incremental_lsn: None,
            databases: vec![],
            streams: vec![StreamEntry {
                name: "base".into(),
                summary: StreamSummary {
                    plain_bytes: 3,
                    plain_sha256: "ab".repeat(32),
                    stored_bytes: 10,
                    chunks: vec![ChunkSummary {
                        name: "data/base/00000000.age".into(),
                        size: 10,
                        sha256: "cd".repeat(32),
                    }],
                },
            }],
            compression: Compression {
                algorithm: "zstd".into(),
                level: 3,
                threads: 0,
            },
            encryption: Encryption {
                scheme: "age".into(),
                recipients: vec!["age1xyz".into()],
            },
            status: Status::Complete,
            error: None,
        }
    }

    fn id() -> BackupId {
        BackupId::parse("20261203T153000Z-0123abcd").expect("valid id")
    }

    #[test]
    fn round_trips_and_names_the_type_field() {
        let m = sample(id());
        let json = m.to_json();
        let text = String::from_utf8(json.clone()).expect("JSON is UTF-8");
        assert!(text.contains("\"type\": \"full\""), "{text}");
        assert!(text.contains("\"format\": 1"), "{text}");
        assert_eq!(
            Manifest::from_json(&json, "r:x/manifest.json").expect("parses"),
            m
        );
    }

    #[test]
    fn rejects_unknown_format_and_corruption_naming_the_object() {
        let mut value: serde_json::Value =
            serde_json::from_slice(&sample(id()).to_json()).expect("JSON");
        value["format"] = 2.into();
        let err = Manifest::from_json(
            &serde_json::to_vec(&value).expect("JSON"),
            "r:a/manifest.json",
        )
        .expect_err("format 2");
        assert_eq!(
            err.to_string(),
            "r:a/manifest.json: manifest format 2 is not supported (this version reads format 1)"
        );

        let err = Manifest::from_json(b"{\"format\": 1, \"backup_id\": ", "r:b/manifest.json")
            .expect_err("truncated JSON");
        assert!(matches!(err, ManifestError::Corrupt { .. }), "{err:?}");
        assert_eq!(err.to_string(), "r:b/manifest.json: corrupt manifest");

        let err = Manifest::from_json(b"{\"format\": 1}", "r:c/manifest.json")
            .expect_err("fields missing");
        assert!(matches!(err, ManifestError::Corrupt { .. }), "{err:?}");

        let err = Manifest::from_json(b"[]", "r:d/manifest.json").expect_err("not an object");
        assert!(
            matches!(err, ManifestError::UnknownFormat { .. }),
            "{err:?}"
        );
    }
}
