//! `engine.postgres:` — the PostgreSQL engine's settings: raw form, validation, model.
//!
//! Kept in its own file so the shared config files only gain a field and a call.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de;

use super::locate::{FieldPath, Target};
use super::model::DbAccount;
use super::raw::RawAccount;
use super::validate::Validator;

/// Debian's PostgreSQL 15 programs.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// `engine.postgres:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPostgres {
    /// Where postgres, initdb, pg_basebackup and pg_rewind live.
    pub bin_dir: Option<String>,
    /// The data directory; required.
    pub data_dir: Option<String>,
    /// `listen_addresses`; default `node.address`.
    pub listen: Option<String>,
    /// async | sync; default async.
    pub durability: Option<String>,
    /// The superuser the agent connects as; required.
    pub superuser: Option<RawAccount>,
    /// The replication role; required.
    pub replication: Option<RawAccount>,
    /// The least-privilege role backups run as; optional.
    pub backup: Option<RawAccount>,
    /// `max_slot_wal_keep_size`; default [`DEFAULT_MAX_SLOT_WAL_KEEP_SIZE`].
    pub max_slot_wal_keep_size: Option<RawParam>,
    /// Extra server settings (`-c name=value`).
    pub parameters: BTreeMap<String, RawParam>,
}

/// A server setting's value: YAML text, number or boolean, passed on as text.
#[derive(Debug)]
pub(crate) struct RawParam(pub String);

impl<'de> Deserialize<'de> for RawParam {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = RawParam;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a setting value (text, number or boolean), e.g. shared_buffers: 128MB")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawParam, E> {
                Ok(RawParam(s.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawParam, E> {
                Ok(RawParam(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawParam, E> {
                Ok(RawParam(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<RawParam, E> {
                Ok(RawParam(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<RawParam, E> {
                Ok(RawParam(if b { "on" } else { "off" }.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// How commits are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgDurability {
    /// After the primary's own flush.
    Async,
    /// After at least one replica flushed too (`ANY 1 (...)`).
    Sync,
}

/// The validated `engine.postgres:`.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// Where the PostgreSQL programs live.
    pub bin_dir: PathBuf,
    /// The data directory (relative paths resolve against the config file's directory).
    pub data_dir: PathBuf,
    /// `listen_addresses`, and the host the agent connects to; `None`: `node.address`.
    pub listen: Option<String>,
    /// How commits are acknowledged.
    pub durability: PgDurability,
    /// The superuser the agent connects as (probe, fence, promote, pg_rewind).
    pub superuser: DbAccount,
    /// The role replicas stream and clone with; created by the primary's agent.
    pub replication: DbAccount,
    /// The least-privilege role the backup tools log in as (`pg_basebackup`, `pg_dump`,
    /// `pg_dumpall --globals-only`), created and kept by the primary's agent; `None`:
    /// backups run as the superuser.
    pub backup: Option<DbAccount>,
    /// The most WAL a replica's slot may hold back on the primary (`4GB`, or `-1`: no limit).
    pub max_slot_wal_keep_size: String,
    /// Extra server settings, in name order.
    pub parameters: Vec<(String, String)>,
}

pub use engines::postgres::DEFAULT_MAX_SLOT_WAL_KEEP_SIZE;

/// A PostgreSQL size as `max_slot_wal_keep_size` takes it: `-1`, or digits with an optional
/// unit (`kB`, `MB`, `GB`, `TB`; none means MB); its bytes (`None` for -1), or why not.
fn wal_size(text: &str) -> Result<Option<u64>, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(None);
    }
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (num, unit) = text.split_at(digits);
    let unit_bytes: u64 = match unit.trim() {
        "" | "MB" => 1 << 20,
        "kB" => 1 << 10,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        other => {
            return Err(format!(
                "{other:?} is not a size unit; expected kB, MB, GB or TB (case matters), e.g. 4GB"
            ));
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size; expected e.g. 4GB, or -1 for no limit"))?;
    n.checked_mul(unit_bytes)
        .map(Some)
        .ok_or_else(|| format!("{text:?} is too large; expected e.g. 4GB, or -1 for no limit"))
}

/// The smallest `max_slot_wal_keep_size` accepted: below one 16 MB WAL segment a slot is
/// invalidated as soon as its replica lags at all.
const MIN_SLOT_WAL_KEEP: u64 = 16 << 20;

/// Settings the operator may not set: the engine owns them.
const RESERVED: &[&str] = engines::postgres::RESERVED_PARAMETERS;

impl Validator<'_> {
    /// `engine.postgres:`; `None` after reporting what is wrong.
    pub(super) fn postgres(
        &mut self,
        at: &FieldPath,
        raw: Option<RawPostgres>,
    ) -> Option<PostgresConfig> {
        let Some(raw) = raw else {
            self.problem(
                at,
                Target::Key,
                "required with kind: postgres; expected e.g. postgres: { data_dir: ./data, superuser: { user: postgres, password_file: su.pw }, replication: { user: replicator, password_file: repl.pw } }",
            );
            return None;
        };
        let RawPostgres {
            bin_dir,
            data_dir,
            listen,
            durability,
            superuser,
            replication,
            backup,
            max_slot_wal_keep_size,
            parameters,
        } = raw;
        let bin_dir = self.resolve(bin_dir.as_deref().unwrap_or(DEFAULT_BIN_DIR));
        if !bin_dir.join("postgres").exists() {
            self.problem(
                &at.key("bin_dir"),
                Target::Key,
                format!(
                    "{} has no `postgres` program; expected the PostgreSQL bin directory, e.g. {DEFAULT_BIN_DIR}",
                    bin_dir.display()
                ),
            );
        }
        let data_dir = match data_dir.filter(|d| !d.is_empty()) {
            Some(d) => Some(self.resolve(&d)),
            None => {
                self.problem(
                    &at.key("data_dir"),
                    Target::Key,
                    "required; expected the data directory, e.g. data_dir: /var/lib/postgresql/15/main",
                );
                None
            }
        };
        let durability = match durability.as_deref() {
            None | Some("async") => PgDurability::Async,
            Some("sync") => PgDurability::Sync,
            Some(other) => {
                self.problem(
                    &at.key("durability"),
                    Target::Value,
                    format!("{other:?} is not a durability; expected async or sync"),
                );
                PgDurability::Async
            }
        };
        let max_slot_wal_keep_size = match max_slot_wal_keep_size {
            None => DEFAULT_MAX_SLOT_WAL_KEEP_SIZE.to_owned(),
            Some(RawParam(v)) => match wal_size(&v) {
                Ok(Some(bytes)) if bytes < MIN_SLOT_WAL_KEEP => {
                    self.problem(
                        &at.key("max_slot_wal_keep_size"),
                        Target::Value,
                        format!(
                            "{v} is below one WAL segment (16MB): a replica's slot would be invalidated as soon as it lags; expected e.g. {DEFAULT_MAX_SLOT_WAL_KEEP_SIZE}, or -1 for no limit"
                        ),
                    );
                    v
                }
                Ok(_) => v.trim().to_owned(),
                Err(why) => {
                    self.problem(&at.key("max_slot_wal_keep_size"), Target::Value, why);
                    v
                }
            },
        };
        let superuser = self.db_account(&at.key("superuser"), superuser, 63, "postgres");
        let replication = self.db_account(&at.key("replication"), replication, 63, "replicator");
        let backup = backup.and_then(|b| self.db_account(&at.key("backup"), Some(b), 63, "backup"));
        if let Some(b) = &backup {
            // The backup role gets its own privileges and login rules (pg_hba): sharing a
            // name would change what the superuser or the replicas may do.
            for (other, name) in [(&superuser, "superuser"), (&replication, "replication")] {
                if other.as_ref().is_some_and(|o| o.user == b.user) {
                    self.problem(
                        &at.key("backup").key("user"),
                        Target::Value,
                        format!(
                            "{:?} is also the {name} user; expected a role of its own, e.g. user: backup",
                            b.user
                        ),
                    );
                }
            }
        }
        let mut params = Vec::new();
        for (name, RawParam(value)) in parameters {
            if RESERVED.contains(&name.as_str()) {
                self.problem(
                    &at.key("parameters").key(&name),
                    Target::Key,
                    format!("{name} is set by the engine (replication and fencing depend on it); remove it"),
                );
            } else if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                self.problem(
                    &at.key("parameters").key(&name),
                    Target::Key,
                    format!("{name:?} is not a setting name; expected letters, digits, _ and ."),
                );
            } else {
                params.push((name, value));
            }
        }
        Some(PostgresConfig {
            bin_dir,
            data_dir: data_dir?,
            listen: listen.filter(|l| !l.is_empty()),
            durability,
            superuser: superuser?,
            replication: replication?,
            backup,
            max_slot_wal_keep_size,
            parameters: params,
        })
    }
}
