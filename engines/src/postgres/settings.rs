//! What the PostgreSQL engine is configured with, and the server command line it builds.
//!
//! The engine owns the settings replication and failover depend on (`wal_level`,
//! `hot_standby`, `wal_log_hints`, WAL senders and slots, listen address and port, no Unix
//! sockets); they are passed with `-c` on the command line, which outranks every
//! configuration file, so neither `postgresql.conf` nor `ALTER SYSTEM` can break them.
//! Settings the agent changes at run time (`synchronous_standby_names`,
//! `default_transaction_read_only`, `primary_conninfo`) are deliberately *not* on the
//! command line: they live in `postgresql.auto.conf` and are changed with `ALTER SYSTEM` and
//! a reload.

use std::fmt;
use std::path::PathBuf;

use handlers::{ExecSpec, RunAs};

/// How commits are acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// The primary acknowledges after its own WAL flush; a failover can lose the last
    /// commits when the old primary's database is unreachable.
    Async,
    /// The primary acknowledges only once at least one replica flushed the commit
    /// (`synchronous_standby_names = 'ANY 1 (...)'`).
    Sync,
}

/// A user name and its password (the password is never shown by `Debug`).
#[derive(Clone)]
pub struct Credentials {
    /// The role name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<secret>")
            .finish()
    }
}

/// Settings the engine's own callers may not pass as `parameters` (the engine sets them, or
/// they would break replication, fencing or the agent's connection).
pub const RESERVED_PARAMETERS: &[&str] = &[
    "port",
    "listen_addresses",
    "data_directory",
    "config_file",
    "hba_file",
    "unix_socket_directories",
    "wal_level",
    "hot_standby",
    "wal_log_hints",
    "max_wal_senders",
    "max_replication_slots",
    "synchronous_standby_names",
    "default_transaction_read_only",
    "primary_conninfo",
    "primary_slot_name",
    "restore_command",
    "recovery_target_timeline",
    "max_slot_wal_keep_size",
    "archive_mode",
    "archive_command",
    "archive_library",
    "archive_timeout",
];

/// Default `max_slot_wal_keep_size`: the most WAL a replica's slot may hold back on the
/// primary before PostgreSQL invalidates the slot (the replica then needs a rebuild), so a
/// dead replica cannot fill the primary's disk.
pub const DEFAULT_MAX_SLOT_WAL_KEEP_SIZE: &str = "4GB";

/// Everything the PostgreSQL engine needs.
#[derive(Clone, Debug)]
pub struct PostgresSettings {
    /// This node's id: its replication slot and `application_name` are derived from it.
    pub node_id: String,
    /// Where `postgres`, `initdb`, `pg_basebackup` and `pg_rewind` live
    /// (Debian: `/usr/lib/postgresql/15/bin`).
    pub bin_dir: PathBuf,
    /// The data directory (created, owned by `run_as`, mode 0700).
    pub data_dir: PathBuf,
    /// `listen_addresses`, and the host the agent connects to for its own database.
    pub listen: String,
    /// The port.
    pub port: u16,
    /// The superuser the agent connects as (probe, fence, promote, pg_rewind).
    pub superuser: Credentials,
    /// The role replicas stream and clone with (created by the primary's agent).
    pub replication: Credentials,
    /// The least-privilege role backups run as (created by the primary's agent, see
    /// `replicas::ensure_backup_role`); `None`: backups run as the superuser.
    pub backup: Option<Credentials>,
    /// How commits are acknowledged.
    pub durability: Durability,
    /// The OS user PostgreSQL and its tools run as (PostgreSQL refuses root); `None` runs
    /// them as the agent's user.
    pub run_as: Option<RunAs>,
    /// `max_slot_wal_keep_size` (a PostgreSQL size such as `4GB`, or `-1` for no limit).
    pub max_slot_wal_keep_size: String,
    /// Extra `-c name=value` settings, after the engine's own (names are checked against
    /// [`RESERVED_PARAMETERS`] at configuration time).
    pub parameters: Vec<(String, String)>,
    /// Grace period after the stop signal (for the main command's `kill_grace`).
    pub stop_timeout: std::time::Duration,
    /// Continuous WAL archiving into a local spool the agent uploads from (`backup.archive`).
    pub archive: Option<WalSpool>,
}

/// WAL archiving into a local spool (issue 18). Every node archives (`archive_mode =
/// always`: a standby archives each segment it receives), so after a failover the new
/// primary's spool still holds what the old one had not shipped; the agent that holds the
/// archive lock uploads, the others keep their copies until the repository has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalSpool {
    /// The spool directory (created, owned by the server's user).
    pub dir: PathBuf,
    /// The most the spool may hold, in MiB: past it a segment is dropped (the archive records
    /// a gap) rather than kept in `pg_wal` until the disk is full.
    pub limit_mb: u64,
    /// `archive_timeout`: the longest a committed change waits before its segment is
    /// switched and archived (the archive's RPO under a quiet writer).
    pub timeout: std::time::Duration,
}

/// The name of the script PostgreSQL's `archive_command` runs, in the spool's parent.
pub const ARCHIVE_SCRIPT: &str = "archive-wal.sh";

impl WalSpool {
    /// The script `archive_command` runs (`<spool>/../archive-wal.sh %p %f`).
    pub fn script(&self) -> PathBuf {
        self.dir
            .parent()
            .map_or_else(|| PathBuf::from(ARCHIVE_SCRIPT), |p| p.join(ARCHIVE_SCRIPT))
    }

    /// The script's text: copy the file into the spool atomically (a temporary name, then a
    /// rename), once; when the spool is full, leave a `<name>.dropped` marker instead and
    /// report success, so the server recycles the segment and never fills its disk.
    pub fn script_text(&self) -> String {
        format!(
            r#"#!/bin/sh
# Written by the Autopilot agent (engine.postgres, backup.archive); rewritten at every start.
# PostgreSQL runs it as archive_command: archive-wal.sh %p %f
set -eu
spool='{spool}'
[ -f "$spool/$2" ] && exit 0
used=$(du -sm "$spool" | cut -f1)
if [ "$used" -ge {limit} ]; then
    : > "$spool/$2.dropped"
    exit 0
fi
cp "$1" "$spool/.$2.tmp"
mv "$spool/.$2.tmp" "$spool/$2"
"#,
            spool = self.dir.display(),
            limit = self.limit_mb
        )
    }
}

impl PostgresSettings {
    /// Path of a PostgreSQL program in `bin_dir`.
    pub fn bin(&self, program: &str) -> String {
        self.bin_dir.join(program).display().to_string()
    }

    /// Who the backup tools log in as: the backup role, or the superuser when none is
    /// configured (the agent's configuration check requires the role once backup jobs exist).
    pub fn backup_login(&self) -> &Credentials {
        self.backup.as_ref().unwrap_or(&self.superuser)
    }

    /// This node's replication slot (and `application_name`) on the primary: `autopilot_`
    /// plus the node id with every character outside `[a-z0-9_]` replaced by `_`.
    pub fn slot_name(&self) -> String {
        slot_name(&self.node_id)
    }

    /// The `postgres` server command line.
    pub fn server_command(&self) -> ExecSpec {
        let mut argv = vec![
            self.bin("postgres"),
            "-D".to_owned(),
            self.data_dir.display().to_string(),
        ];
        let own = [
            ("port", self.port.to_string()),
            ("listen_addresses", self.listen.clone()),
            // No Unix socket: its lock file in the data directory would be copied by
            // pg_basebackup and block a replica on the same host.
            ("unix_socket_directories", String::new()),
            ("wal_level", "replica".to_owned()),
            ("hot_standby", "on".to_owned()),
            // pg_rewind needs hint bits WAL-logged (initdb also enables data checksums).
            ("wal_log_hints", "on".to_owned()),
            ("max_wal_senders", "10".to_owned()),
            ("max_replication_slots", "10".to_owned()),
            ("hot_standby_feedback", "on".to_owned()),
            // pg_rewind reads the target's WAL back to the last checkpoint before the
            // divergence; keep some (the operator may raise it).
            ("wal_keep_size", "256MB".to_owned()),
            // A replica that is gone must not make its slot keep WAL until the disk is full.
            (
                "max_slot_wal_keep_size",
                self.max_slot_wal_keep_size.clone(),
            ),
            // A standby whose primary went away retries every second, not every five.
            ("wal_retrieve_retry_interval", "1s".to_owned()),
            ("cluster_name", self.node_id.clone()),
        ];
        let archive = self
            .archive
            .iter()
            .flat_map(|a| {
                [
                    ("archive_mode", "always".to_owned()),
                    (
                        "archive_command",
                        format!("'{}' %p %f", a.script().display()),
                    ),
                    (
                        "archive_timeout",
                        format!("{}s", a.timeout.as_secs().max(1)),
                    ),
                ]
            })
            .collect::<Vec<_>>();
        // Statement statistics (`top_statements`): added to the operator's preloads.
        let preload = self
            .parameters
            .iter()
            .find(|(n, _)| n == "shared_preload_libraries")
            .map(|(_, v)| v.clone());
        let preload = match preload {
            Some(v) if v.split(',').any(|l| l.trim() == "pg_stat_statements") => v,
            Some(v) if v.trim().is_empty() => "pg_stat_statements".to_owned(),
            Some(v) => format!("{v},pg_stat_statements"),
            None => "pg_stat_statements".to_owned(),
        };
        let extra = self
            .parameters
            .iter()
            .filter(|(n, _)| n != "shared_preload_libraries")
            .map(|(n, v)| (n.as_str(), v.clone()));
        let stats = [
            ("shared_preload_libraries", preload),
            ("pg_stat_statements.track", "top".to_owned()),
            // Utility statements keep their literals: `CREATE ROLE … PASSWORD '…'` would put
            // a password (hash) into `/statements`. Queries are what the list is for.
            ("pg_stat_statements.track_utility", "off".to_owned()),
        ];
        for (name, value) in own.into_iter().chain(archive).chain(stats).chain(extra) {
            argv.push("-c".to_owned());
            argv.push(format!("{name}={value}"));
        }
        let mut spec = ExecSpec::new(argv);
        spec.kill_grace = self.stop_timeout;
        spec.user = self.run_as;
        spec
    }

    /// A helper program (initdb, pg_basebackup, pg_rewind) as the PostgreSQL user, with a
    /// time limit; `PGPASSWORD` goes in `env` (never logged).
    pub fn tool(&self, program: &str, args: Vec<String>, timeout: std::time::Duration) -> ExecSpec {
        let mut argv = vec![self.bin(program)];
        argv.extend(args);
        let mut spec = ExecSpec::new(argv);
        spec.timeout = Some(timeout);
        spec.kill_grace = std::time::Duration::from_secs(5);
        spec.user = self.run_as;
        spec
    }
}

/// The slot name for node `id` (see [`PostgresSettings::slot_name`]).
pub fn slot_name(id: &str) -> String {
    let cleaned: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    let mut name = format!("autopilot_{cleaned}");
    name.truncate(63);
    name
}

/// Quote `s` as a PostgreSQL string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quote `s` as a PostgreSQL identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote `s` as a libpq connection-string value.
pub fn conn_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_valid_identifiers() {
        assert_eq!(slot_name("node-1"), "autopilot_node_1");
        assert_eq!(slot_name("DB.West"), "autopilot_db_west");
        assert!(slot_name(&"x".repeat(100)).len() <= 63);
    }

    #[test]
    fn quoting_escapes_quotes() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(conn_value(r"p'w\d"), r"'p\'w\\d'");
    }
}
