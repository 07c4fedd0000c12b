//! `engine.mariadb:` → [`MariadbConfig`]: the MariaDB engine's own settings. Part of
//! [`Validator`]; see `validate.rs` for how problems are recorded and located.

use std::path::PathBuf;
use std::time::Duration;

use super::locate::{FieldPath, Target};
use super::model::DbAccount;
use super::raw_mariadb::{RawCredentials, RawMariadb};
use super::validate::Validator;

/// The MariaDB engine's settings (`engine.mariadb`), validated.
#[derive(Clone, Debug)]
pub struct MariadbConfig {
    /// The data directory (`mariadb-install-db` initialises it when empty).
    pub datadir: PathBuf,
    /// Whether commits wait for a replica (`sync`, semi-synchronous) or not (`async`).
    pub durability: MariadbDurability,
    /// `server_id`; `None` derives it from the node name.
    pub server_id: Option<u32>,
    /// OS user the server runs as when the agent is root. Default `mysql`.
    pub os_user: String,
    /// All privileges; used for probes, promotion and fencing (also of other nodes).
    pub admin: DbAccount,
    /// Replicas connect to the primary with it.
    pub replication: DbAccount,
    /// The backup tools (`mariadb-backup`, `mariadb-dump`) log in with it over the local
    /// socket; the engine creates it with only the privileges they need. `None`: they use
    /// the admin account.
    pub backup: Option<DbAccount>,
}

/// Commit durability of the MariaDB engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MariadbDurability {
    /// Asynchronous replication.
    Async,
    /// Semi-synchronous replication (`AFTER_SYNC`); `fallback_after: None` never falls
    /// back to async.
    Sync {
        /// `rpl_semi_sync_master_timeout`, when the operator accepts a fallback.
        fallback_after: Option<Duration>,
    },
}

impl Validator<'_> {
    /// `engine.mariadb:`; `None` (with problems recorded) when unusable.
    pub(super) fn mariadb(
        &mut self,
        at: &FieldPath,
        raw: Option<RawMariadb>,
    ) -> Option<MariadbConfig> {
        let Some(raw) = raw else {
            self.problem(
                at,
                Target::Key,
                "required with kind: mariadb; expected mariadb: {datadir: PATH, credentials: {admin: {...}, replication: {...}}}",
            );
            return None;
        };
        let RawMariadb {
            datadir,
            durability,
            semi_sync_timeout,
            server_id,
            os_user,
            flavour,
            credentials,
        } = raw;
        match flavour.as_deref() {
            None | Some("mariadb") => {}
            Some("mysql") => self.problem(
                &at.key("flavour"),
                Target::Value,
                "mysql is not supported yet (only MariaDB 10.11 is tested); expected mariadb",
            ),
            Some(f) => self.problem(
                &at.key("flavour"),
                Target::Value,
                format!("unknown flavour {f:?}; expected mariadb"),
            ),
        }
        let datadir = match datadir.as_deref() {
            Some("") => {
                self.problem(
                    &at.key("datadir"),
                    Target::Value,
                    "is empty; expected a directory path",
                );
                None
            }
            Some(d) => Some(self.resolve(d)),
            None => {
                self.problem(
                    &at.key("datadir"),
                    Target::Key,
                    "required; expected the data directory, e.g. datadir: /var/lib/mysql",
                );
                None
            }
        };
        let fallback_after = semi_sync_timeout.map(|d| d.0);
        let durability = match durability.as_deref() {
            None | Some("sync") => Some(MariadbDurability::Sync { fallback_after }),
            Some("async") => {
                if fallback_after.is_some() {
                    self.problem(
                        &at.key("semi_sync_timeout"),
                        Target::Key,
                        "is only for durability: sync; expected no semi_sync_timeout with async",
                    );
                }
                Some(MariadbDurability::Async)
            }
            Some(d) => {
                self.problem(
                    &at.key("durability"),
                    Target::Value,
                    format!("unknown durability {d:?}; expected sync or async"),
                );
                None
            }
        };
        if server_id == Some(0) {
            self.problem(
                &at.key("server_id"),
                Target::Value,
                "0 cannot replicate; expected a number from 1 to 4294967295 or no server_id",
            );
        }
        let os_user = os_user.unwrap_or_else(|| "mysql".to_owned());
        let (admin, replication, backup) = self.credentials(&at.key("credentials"), credentials);
        Some(MariadbConfig {
            datadir: datadir?,
            durability: durability?,
            server_id,
            os_user,
            admin: admin?,
            replication: replication?,
            backup,
        })
    }

    fn credentials(
        &mut self,
        at: &FieldPath,
        raw: Option<RawCredentials>,
    ) -> (Option<DbAccount>, Option<DbAccount>, Option<DbAccount>) {
        let Some(RawCredentials {
            admin,
            replication,
            backup,
        }) = raw
        else {
            self.problem(
                at,
                Target::Key,
                "required; expected credentials: {admin: {user: U, password_file: F}, replication: {user: R, password_env: V}}",
            );
            return (None, None, None);
        };
        let admin = self.db_account(&at.key("admin"), admin, 80, "autopilot");
        let replication = self.db_account(&at.key("replication"), replication, 80, "replicator");
        let backup = backup.and_then(|b| self.db_account(&at.key("backup"), Some(b), 80, "backup"));
        // The engine sets the backup account's password and privileges (few, read-only):
        // shared with another account it would take that one's away.
        if let Some(b) = &backup {
            for (other, name) in [(&admin, "admin"), (&replication, "replication")] {
                if other.as_ref().is_some_and(|o| o.user == b.user) {
                    self.problem(
                        &at.key("backup").key("user"),
                        Target::Value,
                        format!(
                            "{:?} is also the {name} account's user; expected an account of its own, e.g. user: backup",
                            b.user
                        ),
                    );
                }
            }
        }
        (admin, replication, backup)
    }
}
