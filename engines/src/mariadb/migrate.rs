//! A live migration from a MariaDB server Autopilot does not manage (issue 18).
//!
//! - **Copy** (the node that bootstraps the cluster, its server prepared as for a first
//!   start): `mariadb-dump --single-transaction --gtid --master-data=2` of every database of
//!   the source but its system ones, piped into the local server with `sql_log_bin = 0`;
//!   then its accounts and roles, read with `SHOW CREATE USER` and `SHOW GRANTS` and created
//!   here with `IF NOT EXISTS` (the local engine's own accounts are kept; `mariadb-dump
//!   --system=users` stops at the first stale host entry, e.g. the `root@<hostname>` that
//!   `mariadb-install-db` leaves in `mysql.proxies_priv`). The dump's end names the GTID position of its snapshot; the local
//!   binary log then continues from it (as after a restored backup) and the server
//!   replicates from the source with GTID auto-positioning, read-only.
//! - **Standby leader**: the primary key's holder replicates from the source
//!   ([`lead`]); the cluster's other nodes clone and follow it as usual (every node binlogs
//!   what it applies).
//! - **Cutover** ([`stop_source`]): the source is fenced as a former primary is
//!   (`read_only`, every client session but replication ended), its `gtid_binlog_pos` then
//!   is everything it acknowledged, and this node waits until it applied that; the role
//!   logic then promotes it. Accounts with READ_ONLY ADMIN (or SUPER) ignore `read_only`:
//!   their writers must be stopped by the operator (docs/operations.md).

use std::time::Duration;

use handlers::{Pipe, Piped};
use mysql_async::Conn;
use mysql_async::prelude::Queryable as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::conn::{self, bounded};
use super::gtid::GtidSet;
use super::settings::{Account, MariadbSettings};
use super::tools::{self, WorkDir, failed};
use super::{backup, clone, dump, replication};
use crate::engine::EngineError;
use crate::role_ops::{Position, Source};

/// MariaDB's client.
const CLIENT: &str = "mariadb";
/// How long the copy's dump and load may take.
const COPY_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// How long the cutover waits for this node to apply what the source acknowledged.
const APPLY_LIMIT: Duration = Duration::from_secs(120);
/// How much of the dump's end is kept to read its position from.
const TAIL: usize = 64 * 1024;

fn account(source: &Source) -> Account {
    Account {
        user: source.user.clone(),
        password: source.password.clone(),
    }
}

/// Connect to the source as the migration account.
async fn connect(source: &Source, op: &'static str) -> Result<Conn, EngineError> {
    conn::remote_as(&source.peer, &account(source))
        .await
        .map_err(|e| conn::failed(op, &e, true))
}

/// Copy the source into the local (running, fresh) server and replicate from it.
pub async fn copy(s: &MariadbSettings, source: &Source) -> Result<Position, EngineError> {
    let op = "copy the migration source";
    let mut remote = connect(source, op).await?;
    let names: Vec<String> = bounded(op, false, remote.query("SHOW DATABASES")).await?;
    let _ = remote.disconnect().await;
    let databases: Vec<String> = names
        .into_iter()
        .filter(|n| !dump::SYSTEM_DATABASES.contains(&n.as_str()))
        .collect();
    let owner = backup::run_as(s)?;
    let work = WorkDir::create(
        "create the migration work directory",
        s.run_dir.join("migrate-work").join(tools::unique("copy")),
        owner,
    )?;
    let src_cnf = work.path().join("source.cnf");
    backup::write_private(&src_cnf, &backup::client_options(&account(source)), owner)?;
    let local_cnf = work.path().join("local.cnf");
    backup::write_private(&local_cnf, &backup::client_options(&s.admin), owner)?;
    let dump_base = |cnf: &std::path::Path| {
        vec![
            dump::DUMP.to_owned(),
            format!("--defaults-extra-file={}", cnf.display()),
            format!("--host={}", source.peer.host),
            format!("--port={}", source.peer.port),
            "--protocol=TCP".to_owned(),
        ]
    };
    let mut data = dump_base(&src_cnf);
    data.extend(
        [
            "--single-transaction",
            "--gtid",
            "--master-data=2",
            "--routines",
            "--events",
            "--triggers",
            "--hex-blob",
            "--max-allowed-packet=1G",
            "--databases",
        ]
        .map(str::to_owned),
    );
    data.extend(databases.iter().cloned());
    let load = vec![
        CLIENT.to_owned(),
        format!("--defaults-extra-file={}", local_cnf.display()),
        format!("--socket={}", s.socket().display()),
        "--init-command=SET SESSION sql_log_bin = 0".to_owned(),
        "--binary-mode".to_owned(),
        "--max-allowed-packet=1G".to_owned(),
    ];
    let tail = if databases.is_empty() {
        Vec::new()
    } else {
        pipe(s, op, owner, &work, "data", data, load).await?
    };
    let accounts = copy_accounts(s, source).await?;
    let pos = if databases.is_empty() {
        // Nothing to copy: the source's position now is where replication starts.
        let mut remote = connect(source, op).await?;
        let p = replication::gtid_var(&mut remote, "gtid_binlog_pos").await;
        let _ = remote.disconnect().await;
        p?
    } else {
        let text = dump::dump_position(&tail).ok_or_else(|| {
            failed(
                op,
                "the source's dump names no GTID position (is its binary log on, and log_bin \
                 with gtid_strict_mode set?)"
                    .to_owned(),
            )
        })?;
        GtidSet::parse(&text)
            .map_err(|e| failed(op, format!("the dump's position {text:?}: {e}")))?
    };
    clone::start_history(s, &pos).await?;
    tracing::info!(source = %source.peer, databases = databases.len(), accounts, gtid = %pos, "copied the migration source");
    lead(s, source).await
}

/// Copies the source's accounts and roles with their grants (`SHOW CREATE USER`, `SHOW
/// GRANTS`), without binary logging; an account that exists here already (the engine's own,
/// `root`) is left as it is, password and grants. Accounts the source lists but cannot show (a stale host
/// entry) are skipped. How many were copied.
async fn copy_accounts(s: &MariadbSettings, source: &Source) -> Result<usize, EngineError> {
    let op = "copy the migration source's accounts";
    let mut remote = connect(source, op).await?;
    let listed: Vec<(String, String, String)> = bounded(
        op,
        false,
        remote.query("SELECT User, Host, is_role FROM mysql.user"),
    )
    .await?;
    let mut statements = Vec::new();
    for (user, host, is_role) in listed {
        if user.is_empty() || user == "mariadb.sys" {
            continue;
        }
        let (create, name) = if is_role == "Y" {
            (
                format!("CREATE ROLE IF NOT EXISTS {}", ident(&user)),
                ident(&user),
            )
        } else {
            let name = format!("{}@{}", ident(&user), ident(&host));
            let shown: Option<String> = match bounded(
                op,
                false,
                remote.query_first(format!("SHOW CREATE USER {name}")),
            )
            .await
            {
                Ok(row) => row,
                Err(e) => {
                    tracing::debug!(account = %name, cause = %e, "skipping an account the source cannot show");
                    continue;
                }
            };
            let Some(shown) = shown else { continue };
            let Some(rest) = shown.strip_prefix("CREATE USER ") else {
                continue;
            };
            (format!("CREATE USER IF NOT EXISTS {rest}"), name)
        };
        let grants: Vec<String> =
            match bounded(op, false, remote.query(format!("SHOW GRANTS FOR {name}"))).await {
                Ok(g) => g,
                Err(e) => {
                    tracing::debug!(account = %name, cause = %e, "no grants read for an account");
                    Vec::new()
                }
            };
        statements.push((name, create, grants));
    }
    let _ = remote.disconnect().await;
    let mut c = conn::local(s).await?;
    let r = async {
        // An account that exists here (the engine's own, `root`) is left as it is: the first
        // line of `SHOW GRANTS` carries the source's password, which would replace ours.
        let here: Vec<(String, String, String)> = bounded(
            op,
            false,
            c.query("SELECT User, Host, is_role FROM mysql.user"),
        )
        .await?;
        let here: Vec<String> = here
            .into_iter()
            .map(|(user, host, is_role)| {
                if is_role == "Y" {
                    ident(&user)
                } else {
                    format!("{}@{}", ident(&user), ident(&host))
                }
            })
            .collect();
        bounded(op, false, c.query_drop("SET SESSION sql_log_bin = 0")).await?;
        let mut copied = 0;
        for (name, create, grants) in &statements {
            if here.contains(name) {
                continue;
            }
            bounded(op, true, c.query_drop(create.as_str())).await?;
            for g in grants {
                if let Err(e) = bounded(op, true, c.query_drop(g.as_str())).await {
                    tracing::warn!(account = %name, cause = %e, "a grant of the migration source could not be given here");
                }
            }
            copied += 1;
        }
        Ok(copied)
    }
    .await;
    let _ = c.disconnect().await;
    r
}

/// `name` as a quoted identifier (backticks doubled).
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Run `producer | consumer` (both as `owner`), the bytes copied here; the last [`TAIL`]
/// bytes of the stream.
async fn pipe(
    s: &MariadbSettings,
    op: &'static str,
    owner: Option<handlers::RunAs>,
    work: &WorkDir,
    what: &str,
    producer: Vec<String>,
    consumer: Vec<String>,
) -> Result<Vec<u8>, EngineError> {
    let from_err = work.path().join(format!("{what}-dump.err"));
    let to_err = work.path().join(format!("{what}-load.err"));
    let (mut from, out) =
        tools::spawn_logged(op, &s.env, owner, producer, &from_err, Piped::Stdout)?;
    let (mut to, input) =
        match tools::spawn_logged(op, &s.env, owner, consumer, &to_err, Piped::Stdin) {
            Ok(x) => x,
            Err(e) => {
                from.stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5))
                    .await;
                return Err(e);
            }
        };
    let (Pipe::Stdout(mut out), Pipe::Stdin(mut input)) = (out, input) else {
        return Err(failed(op, "the tools' pipes are missing".to_owned()));
    };
    let copied = async {
        let mut tail: Vec<u8> = Vec::with_capacity(TAIL * 2);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = out.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            input.write_all(&buf[..n]).await?;
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > TAIL * 2 {
                tail.drain(..tail.len() - TAIL);
            }
        }
        input.shutdown().await?;
        Ok::<_, std::io::Error>(tail)
    };
    let copied = tokio::time::timeout(COPY_LIMIT, copied).await;
    drop(input);
    let dumped = tools::wait_tool(
        op,
        dump::DUMP,
        &mut from,
        Duration::from_secs(60),
        &from_err,
    )
    .await;
    let loaded = tools::wait_tool(op, CLIENT, &mut to, Duration::from_secs(600), &to_err).await;
    dumped?;
    loaded?;
    match copied {
        Ok(Ok(tail)) => Ok(tail),
        Ok(Err(e)) => Err(failed(op, format!("copy the {what} from the source: {e}"))),
        Err(_) => Err(failed(
            op,
            format!("copying the {what} took over {COPY_LIMIT:?}"),
        )),
    }
}

/// Replicate from the source, read-only (the standby leader).
pub async fn lead(s: &MariadbSettings, source: &Source) -> Result<Position, EngineError> {
    let op = "replicate from the migration source";
    let remote = connect(source, op).await?;
    let mut c = conn::local(s).await?;
    let r = replication::follow_with(s, &mut c, &source.peer, remote, &account(source)).await;
    let _ = c.disconnect().await;
    r
}

/// Fence the source, then apply everything it acknowledged; the local position.
pub async fn stop_source(s: &MariadbSettings, source: &Source) -> Result<Position, EngineError> {
    let op = "make the migration source refuse writes";
    let mut remote = connect(source, op).await?;
    let fenced = async {
        replication::fence(s, &mut remote).await?;
        replication::gtid_var(&mut remote, "gtid_binlog_pos").await
    }
    .await;
    let _ = remote.disconnect().await;
    let target = fenced.map_err(|e| match e {
        EngineError::Failed { reason, .. }
            if reason.contains("denied") || reason.contains("privilege") =>
        {
            EngineError::Failed {
                operation: op,
                reason: format!(
                    "the source account {} may not make the source read-only ({reason}); grant \
                     it READ_ONLY ADMIN, CONNECTION ADMIN and PROCESS (or SUPER), or give the \
                     migration such an account (cluster.bootstrap.migrate_from.account)",
                    source.user
                ),
            }
        }
        e => e,
    })?;
    tracing::info!(source = %source.peer, gtid = %target, "the migration source refuses writes");
    let mut c = conn::local(s).await?;
    let r = async {
        if !target.is_empty() {
            replication::wait_applied(&mut c, &target.to_string(), APPLY_LIMIT).await?;
        }
        replication::position(s, &mut c).await
    }
    .await;
    let _ = c.disconnect().await;
    r
}
