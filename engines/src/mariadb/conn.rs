//! Connections to the local and remote servers, bounded in time, and the engine's accounts.
//!
//! Every operation opens its own connection (no pool): the engine runs a few statements per
//! second at most, and a fresh connection never carries state (a killed session, a changed
//! `read_only`) from an earlier operation. Every await is bounded by [`STATEMENT_LIMIT`].
//!
//! Accounts: on a fresh data directory `root@localhost` has an empty password (installed
//! with `--auth-root-authentication-method=normal`). The first time the admin account is
//! refused, the engine logs in as that root over the local socket, creates the admin and
//! replication accounts *without binary logging* (so every node creates its own and no GTID
//! is spent), and switches root to `unix_socket` authentication (only the OS root may use
//! it from then on). Passwords are never part of an error or log line.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};

use super::settings::{Account, MariadbSettings};
use crate::engine::{EngineError, out_of_files};
use crate::role_ops::Peer;

/// Written into the data directory right after `mariadb-install-db` (`prepare.rs`): the
/// accounts are still to be created. Not a database file: the server and mariadb-backup
/// leave it alone.
pub const ACCOUNTS_PENDING: &str = "autopilot-accounts-pending";

/// How long one connect or statement may take.
pub const STATEMENT_LIMIT: Duration = Duration::from_secs(5);

/// Server error: access denied for user.
const ER_ACCESS_DENIED: u16 = 1045;

/// An error with the operation named; server errors are shown with code and message,
/// except for statements that carry a password (`hide`), which show the code only.
pub fn failed(operation: &'static str, e: &mysql_async::Error, hide: bool) -> EngineError {
    let reason = match e {
        mysql_async::Error::Server(s) if hide => format!("server error {}", s.code),
        mysql_async::Error::Server(s) => format!("server error {}: {}", s.code, s.message),
        mysql_async::Error::Io(io) => format!("connection error: {io}"),
        other if hide => format!("client error ({})", error_kind(other)),
        other => other.to_string(),
    };
    EngineError::Failed { operation, reason }
}

fn error_kind(e: &mysql_async::Error) -> &'static str {
    match e {
        mysql_async::Error::Driver(_) => "driver",
        mysql_async::Error::Other(_) => "other",
        mysql_async::Error::Url(_) => "url",
        _ => "unexpected",
    }
}

fn timed_out(operation: &'static str) -> EngineError {
    EngineError::Failed {
        operation,
        reason: format!("no answer within {STATEMENT_LIMIT:?}"),
    }
}

/// Run `fut` within [`STATEMENT_LIMIT`].
pub async fn bounded<T>(
    operation: &'static str,
    hide: bool,
    fut: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(STATEMENT_LIMIT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(operation, &e, hide)),
        Err(_) => Err(timed_out(operation)),
    }
}

fn base_opts(account: Option<&Account>, user: &str) -> OptsBuilder {
    OptsBuilder::default()
        .user(Some(account.map_or(user, |a| a.user.as_str())))
        .pass(account.map(|a| a.password.clone()))
        .prefer_socket(false)
        .stmt_cache_size(0)
}

/// Connect to the local server over its socket as the admin account, creating the
/// accounts first when the data directory is fresh.
pub async fn local(s: &MariadbSettings) -> Result<Conn, EngineError> {
    let socket = s.socket().display().to_string();
    // A data directory `mariadb-install-db` just made has no admin account yet: create it
    // before the first login, which the server would refuse with an `Access denied`
    // warning in its log.
    let pending = s.datadir.join(ACCOUNTS_PENDING);
    if pending.exists() {
        let root = base_opts(None, "root").socket(Some(socket.clone()));
        match tokio::time::timeout(STATEMENT_LIMIT, Conn::new(root)).await {
            Ok(Ok(c)) => {
                create_accounts_with(s, c, true).await?;
                let _ = std::fs::remove_file(&pending);
            }
            Ok(Err(mysql_async::Error::Io(mysql_async::IoError::Io(e)))) if out_of_files(&e) => {
                return Err(EngineError::AgentOutOfFiles {
                    operation: "connect to the local server",
                });
            }
            Ok(Err(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))) => {
                return Err(EngineError::NotRunning);
            }
            // Not the fresh directory it says it is (root refused): the usual way below.
            Ok(Err(_)) | Err(_) => {
                let _ = std::fs::remove_file(&pending);
            }
        }
    }
    let opts = base_opts(Some(&s.admin), "").socket(Some(socket.clone()));
    match tokio::time::timeout(STATEMENT_LIMIT, Conn::new(opts.clone())).await {
        Ok(Ok(c)) => return Ok(c),
        Ok(Err(mysql_async::Error::Server(e))) if e.code == ER_ACCESS_DENIED => {}
        // A socket the agent could not even open says nothing about the server.
        Ok(Err(mysql_async::Error::Io(mysql_async::IoError::Io(e)))) if out_of_files(&e) => {
            return Err(EngineError::AgentOutOfFiles {
                operation: "connect to the local server",
            });
        }
        Ok(Err(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_))) => {
            return Err(EngineError::NotRunning);
        }
        Ok(Err(e)) => return Err(failed("connect to the local server", &e, true)),
        Err(_) => return Err(timed_out("connect to the local server")),
    }
    create_accounts(s, &socket).await?;
    bounded("connect to the local server", true, Conn::new(opts)).await
}

/// Log in as root with an empty password over the socket and create the accounts.
async fn create_accounts(s: &MariadbSettings, socket: &str) -> Result<(), EngineError> {
    let operation = "create the admin and replication accounts";
    let root = base_opts(None, "root").socket(Some(socket.to_owned()));
    let c = match tokio::time::timeout(STATEMENT_LIMIT, Conn::new(root)).await {
        Ok(Ok(c)) => c,
        Ok(Err(mysql_async::Error::Server(e))) if e.code == ER_ACCESS_DENIED => {
            return Err(mismatch(s));
        }
        Ok(Err(e)) => return Err(failed(operation, &e, true)),
        Err(_) => return Err(timed_out(operation)),
    };
    create_accounts_with(s, c, false).await
}

/// Create the admin and replication accounts through `c` (root). An existing admin account
/// is never overwritten: when `fresh` (the directory was just initialised and another
/// caller was first) that is fine, otherwise the configured password is wrong.
async fn create_accounts_with(
    s: &MariadbSettings,
    mut c: Conn,
    fresh: bool,
) -> Result<(), EngineError> {
    let operation = "create the admin and replication accounts";
    let a = &s.admin;
    let r = &s.replication;
    // Never overwrite an existing admin account: a refused login then means the configured
    // password is wrong, and resetting it would hide that (and break the other nodes).
    let exists = format!(
        "SELECT COUNT(*) FROM mysql.user WHERE User = {}",
        quote(&a.user)
    );
    let n: Option<i64> = bounded(operation, false, c.query_first(exists)).await?;
    if n.unwrap_or(0) > 0 {
        let _ = c.disconnect().await;
        return if fresh { Ok(()) } else { Err(mismatch(s)) };
    }
    let statements = [
        "SET SESSION sql_log_bin = 0".to_owned(),
        format!(
            "CREATE OR REPLACE USER {}@'%' IDENTIFIED BY {}",
            quote(&a.user),
            quote(&a.password)
        ),
        format!(
            "GRANT ALL PRIVILEGES ON *.* TO {}@'%' WITH GRANT OPTION",
            quote(&a.user)
        ),
        format!(
            "CREATE OR REPLACE USER {}@'%' IDENTIFIED BY {}",
            quote(&r.user),
            quote(&r.password)
        ),
        format!(
            "GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, BINLOG MONITOR ON *.* TO {}@'%'",
            quote(&r.user)
        ),
        "ALTER USER root@localhost IDENTIFIED VIA unix_socket".to_owned(),
    ];
    for sql in statements.into_iter().chain(
        s.backup
            .as_ref()
            .map(backup_account_statements)
            .unwrap_or_default(),
    ) {
        bounded(operation, true, c.query_drop(sql)).await?;
    }
    let _ = c.disconnect().await;
    tracing::info!(admin = %a.user, replication = %r.user, "created the database accounts");
    Ok(())
}

/// The privileges the backup tools need, and no more: `mariadb-backup` (RELOAD for
/// `BACKUP STAGE`, PROCESS, LOCK TABLES, BINLOG MONITOR for the binary log position, SLAVE
/// MONITOR for `SHOW SLAVE STATUS` on a replica with `--slave-info`) and `mariadb-dump`
/// (SELECT, which includes reading `mysql.*` for `--system=users`, SHOW VIEW, TRIGGER,
/// EVENT, LOCK TABLES). Read-only: the account can change no data.
pub const BACKUP_PRIVILEGES: &str = "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, SLAVE MONITOR, SELECT, SHOW VIEW, TRIGGER, EVENT";

/// Create or update the backup account `'<user>'@'localhost'` (the tools log in over the
/// socket only): its password and exactly [`BACKUP_PRIVILEGES`]. Without binary logging,
/// like the other accounts: every node keeps its own and no GTID is spent (a replica
/// writing its own GTID would hold an errant transaction).
fn backup_account_statements(b: &Account) -> Vec<String> {
    let user = format!("{}@'localhost'", quote(&b.user));
    vec![
        "SET SESSION sql_log_bin = 0".to_owned(),
        format!(
            "CREATE USER IF NOT EXISTS {user} IDENTIFIED BY {}",
            quote(&b.password)
        ),
        format!("ALTER USER {user} IDENTIFIED BY {}", quote(&b.password)),
        format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {user}"),
        format!("GRANT {BACKUP_PRIVILEGES} ON *.* TO {user}"),
    ]
}

/// Before a backup: the configured backup account exists with its password and privileges
/// (created when the data directory was initialised; this also covers data from before the
/// account was configured and a changed password). Through `c`, the admin's connection.
pub async fn ensure_backup_account(s: &MariadbSettings, c: &mut Conn) -> Result<(), EngineError> {
    let Some(b) = &s.backup else { return Ok(()) };
    let operation = "create or update the backup account";
    for sql in backup_account_statements(b) {
        bounded(operation, true, c.query_drop(sql)).await?;
    }
    bounded(
        operation,
        false,
        c.query_drop("SET SESSION sql_log_bin = 1"),
    )
    .await
}

/// Connect over `socket` as `account` (a scratch server's).
pub async fn on_socket(
    socket: &std::path::Path,
    account: &Account,
) -> Result<Conn, mysql_async::Error> {
    let opts = base_opts(Some(account), "").socket(Some(socket.display().to_string()));
    match tokio::time::timeout(STATEMENT_LIMIT, Conn::new(opts)).await {
        Ok(r) => r,
        Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        ))),
    }
}

fn mismatch(s: &MariadbSettings) -> EngineError {
    EngineError::Failed {
        operation: "log in to the local server",
        reason: format!(
            "the server refused the admin account {:?}, which exists in this data directory: \
             the configured admin credentials do not match the server's (fix \
             engine.mariadb.credentials.admin, or the account's password in the server)",
            s.admin.user
        ),
    }
}

/// Connect to another node's server over TCP as the admin account.
pub async fn remote(s: &MariadbSettings, peer: &Peer) -> Result<Conn, mysql_async::Error> {
    remote_as(peer, &s.admin).await
}

/// Connect to a server outside the cluster (a migration source) over TCP as `account`.
pub async fn remote_as(peer: &Peer, account: &Account) -> Result<Conn, mysql_async::Error> {
    let opts = base_opts(Some(account), "")
        .ip_or_hostname(peer.host.clone())
        .tcp_port(peer.port);
    match tokio::time::timeout(STATEMENT_LIMIT, Conn::new(opts)).await {
        Ok(r) => r,
        Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
        ))),
    }
}

/// A SQL string literal: quotes and backslashes escaped.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for ch in text.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A column as text (`None` for NULL or a missing column).
pub fn text(row: &Row, column: &str) -> Option<String> {
    match row.get::<Value, _>(column)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        other => Some(other.as_sql(true)),
    }
}

/// A column as an integer (`None` for NULL, missing or not a number).
pub fn int(row: &Row, column: &str) -> Option<i64> {
    text(row, column)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote("a'b\\c"), "'a''b\\\\c'");
        assert_eq!(quote(""), "''");
    }
}
