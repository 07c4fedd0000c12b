//! A scratch `mariadbd` on a restored data directory: loads a logical restore (socket only)
//! and checks restored data ([`check`]: loopback, a free port, `mariadb-check
//! --all-databases`). It runs as the server's OS user with its own socket, pid file, tmpdir
//! and error log in a private temporary directory, without binary log, without starting
//! replication (`--skip-slave-start`: a copy of a replica must not connect to its old
//! primary) and without running events; stopped with SIGTERM (bounded), then killed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use handlers::{ExecSpec, ManagedChild};
use nix::sys::signal::Signal;

use super::backup;
use super::settings::{Account, MariadbSettings};
use super::tools::{self, WorkDir, failed};
use super::{conn, prepare};
use crate::backups::CheckReport;
use crate::engine::EngineError;

/// How long the scratch server may take to answer (crash recovery of a big copy included).
const START_LIMIT: Duration = Duration::from_secs(300);
/// How long it may take to shut down cleanly before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(120);
/// How long `mariadb-check` may take.
const CHECK_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// Attempts with a new port when another program took the one found free.
const PORT_ATTEMPTS: usize = 3;
/// MariaDB's table checker (package `mariadb-client`).
const CHECK: &str = "mariadb-check";

/// How the scratch server listens besides its socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listen {
    /// Socket only (`--skip-networking`).
    SocketOnly,
    /// Also 127.0.0.1 on a free port.
    Loopback,
}

/// A running scratch server. Dropping it kills the server, then removes its directory.
#[derive(Debug)]
pub(super) struct Scratch {
    /// The server; killed (its group) on drop, before `dir` goes.
    child: ManagedChild,
    /// Socket, pid file, tmpdir, error log; removed on drop.
    dir: WorkDir,
    /// How long it took to answer.
    pub(super) start_time: Duration,
}

impl Scratch {
    /// Its socket.
    pub(super) fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadbd.sock")
    }

    /// Its private directory (for the clients' options files).
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of its error log.
    pub(super) fn log_tail(&self) -> String {
        tools::stderr_tail(&self.dir.path().join("error.log"))
    }

    /// Shut it down cleanly (SIGTERM, bounded); killed and an error when it does not exit
    /// in time or exits with an error.
    pub(super) async fn stop(mut self) -> Result<(), EngineError> {
        let op = "stop the scratch server";
        if let Err(e) = self.child.group().signal_leader(Signal::SIGTERM) {
            tracing::debug!(cause = %handlers::error_chain(&e), "the scratch server was gone already");
        }
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(failed(
                op,
                format!("mariadbd exited with {st}: {}", self.log_tail()),
            )),
            Err(_) => {
                self.child
                    .stop(Signal::SIGKILL, Duration::from_secs(5))
                    .await;
                Err(failed(
                    op,
                    format!(
                        "mariadbd did not shut down within {STOP_LIMIT:?}; killed it. Its log: {}",
                        self.log_tail()
                    ),
                ))
            }
        }
    }
}

/// A port nothing listens on now (the kernel's choice for port 0).
fn free_port() -> Result<u16, EngineError> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| failed("find a free port for the scratch server", e.to_string()))
}

/// Start a scratch server on `datadir` and wait (bounded) until `account` can log in over
/// its socket.
pub(super) async fn start(
    s: &MariadbSettings,
    datadir: &Path,
    listen: Listen,
    account: &Account,
) -> Result<Scratch, EngineError> {
    start_with(s, datadir, listen, account, &[]).await
}

/// [`start`] with `extra` server options (a point-in-time replay binlogs what it applies).
pub(super) async fn start_with(
    s: &MariadbSettings,
    datadir: &Path,
    listen: Listen,
    account: &Account,
    extra: &[String],
) -> Result<Scratch, EngineError> {
    let op = "start a scratch server on the restored data";
    let owner = backup::run_as(s)?;
    let program = s
        .program
        .first()
        .cloned()
        .unwrap_or_else(|| "mariadbd".to_owned());
    let mut last = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let dir = WorkDir::create(
            op,
            std::env::temp_dir().join(tools::unique("autopilot-mariadb-scratch")),
            owner,
        )?;
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).map_err(|e| failed(op, format!("{}: {e}", tmp.display())))?;
        tools::give(&tmp, owner)?;
        let d = dir.path();
        let mut argv = vec![
            program.clone(),
            // The operator's option files are for the real server, not for this one.
            "--no-defaults".to_owned(),
            format!("--datadir={}", datadir.display()),
            format!("--socket={}", d.join("mariadbd.sock").display()),
            format!("--pid-file={}", d.join("mariadbd.pid").display()),
            format!("--tmpdir={}", tmp.display()),
            format!("--log-error={}", d.join("error.log").display()),
            "--skip-slave-start".to_owned(),
            "--event-scheduler=DISABLED".to_owned(),
            "--skip-name-resolve".to_owned(),
            "--server-id=1".to_owned(),
        ];
        argv.extend(extra.iter().cloned());
        match listen {
            Listen::SocketOnly => argv.push("--skip-networking".to_owned()),
            Listen::Loopback => {
                argv.push("--bind-address=127.0.0.1".to_owned());
                argv.push(format!("--port={}", free_port()?));
            }
        }
        if let Some(user) = &s.os_user {
            argv.push(format!("--user={user}"));
        }
        let spec = ExecSpec {
            env: s.env.clone(),
            ..ExecSpec::new(argv)
        };
        let started = Instant::now();
        let child = ManagedChild::spawn("mariadbd-scratch", &spec, &[]).map_err(|e| {
            failed(
                op,
                format!("start {program}: {}", handlers::error_chain(&e)),
            )
        })?;
        let mut scratch = Scratch {
            child,
            dir,
            start_time: Duration::ZERO,
        };
        match wait_ready(&mut scratch, account).await {
            Ok(()) => {
                scratch.start_time = started.elapsed();
                return Ok(scratch);
            }
            Err(Ready::PortTaken) => {
                last = scratch.log_tail();
                continue;
            }
            Err(Ready::Failed(reason)) => return Err(failed(op, reason)),
        }
    }
    Err(failed(
        op,
        format!("no free port after {PORT_ATTEMPTS} attempts: {last}"),
    ))
}

enum Ready {
    /// It could not bind the port found free: try another.
    PortTaken,
    /// Why it did not come up.
    Failed(String),
}

async fn wait_ready(scratch: &mut Scratch, account: &Account) -> Result<(), Ready> {
    let deadline = Instant::now() + START_LIMIT;
    let socket = scratch.socket();
    loop {
        if let Some(st) = scratch.child.try_status() {
            let tail = scratch.log_tail();
            if tail.contains("Address already in use") {
                return Err(Ready::PortTaken);
            }
            return Err(Ready::Failed(format!("mariadbd exited with {st}: {tail}")));
        }
        if socket.exists() {
            match conn::on_socket(&socket, account).await {
                Ok(c) => {
                    let _ = c.disconnect().await;
                    return Ok(());
                }
                Err(mysql_async::Error::Server(e)) if e.code == 1045 => {
                    return Err(Ready::Failed(format!(
                        "the restored data refused the account {:?} ({}); the check logs in with engine.mariadb.credentials.admin, which must exist in the backed-up server",
                        account.user, e.message
                    )));
                }
                Err(_) => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(Ready::Failed(format!(
                "mariadbd did not answer within {START_LIMIT:?}: {}",
                scratch.log_tail()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Start a scratch server on `dir`, run `mariadb-check --all-databases` as the admin
/// account, stop it.
pub(super) async fn check(s: &MariadbSettings, dir: &Path) -> Result<CheckReport, EngineError> {
    let op = "test the restored data";
    if !dir.join("mysql").is_dir() {
        return Err(failed(
            op,
            format!(
                "{} holds no MariaDB data (no mysql/ directory); restore a backup into it first",
                dir.display()
            ),
        ));
    }
    if prepare::is_empty_dir(dir)? {
        return Err(failed(op, format!("{} is empty", dir.display())));
    }
    let scratch = start(s, dir, Listen::Loopback, &s.admin).await?;
    let cnf = scratch.dir().join("check.cnf");
    backup::write_private(&cnf, &backup::client_options(&s.admin), None)?;
    let argv = vec![
        CHECK.to_owned(),
        format!("--defaults-extra-file={}", cnf.display()),
        format!("--socket={}", scratch.socket().display()),
        "--all-databases".to_owned(),
        "--check".to_owned(),
    ];
    let t0 = Instant::now();
    let ran = tools::run_tool(
        "check the restored tables (mariadb-check)",
        &s.env,
        None,
        argv,
        CHECK_LIMIT,
    )
    .await;
    let check_time = t0.elapsed();
    let start_time = scratch.start_time;
    let stopped = scratch.stop().await;
    let out = ran?;
    let checked = parse_check(&out)
        .map_err(|reason| failed("check the restored tables (mariadb-check)", reason))?;
    stopped?;
    Ok(CheckReport {
        summary: format!(
            "mariadb-check: {} tables in {} databases OK",
            checked.tables, checked.databases
        ),
        start_time,
        check_time,
    })
}

/// What `mariadb-check` reported.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Checked {
    /// Tables (and views) checked.
    pub tables: usize,
    /// Databases they are in.
    pub databases: usize,
}

/// `mariadb-check`'s output: `db.table   OK` per table, or the table's name alone followed
/// by `Note|Warning|Error|error|status : text` lines, the last of which is the verdict
/// (`status : OK`, `error : Corrupt`). It exits 0 either way, so the text is the verdict:
/// every table not OK is named.
pub(super) fn parse_check(out: &str) -> Result<Checked, String> {
    let mut tables = std::collections::BTreeSet::new();
    let mut bad: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut detail: Option<String> = None;
    for line in out
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
    {
        if let Some((kind, text)) = message(line) {
            let Some(table) = &current else { continue };
            match kind {
                "Error" if detail.is_none() => detail = Some(text.to_owned()),
                "error" => bad.push(match detail.take() {
                    Some(d) => format!("{table}: {d} ({text})"),
                    None => format!("{table}: {text}"),
                }),
                "status" if text != "OK" => bad.push(format!("{table}: {text}")),
                _ => {}
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        tables.insert(name.to_owned());
        detail = None;
        current = Some(name.to_owned());
        match rest.as_slice() {
            [] | ["OK"] => {}
            other => bad.push(format!("{name}: {}", other.join(" "))),
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "{} of {} tables are not OK: {}",
            bad.len(),
            tables.len(),
            bad.join("; ")
        ));
    }
    if tables.is_empty() {
        return Err("mariadb-check reported no table at all".to_owned());
    }
    let databases = tables
        .iter()
        .filter_map(|t| t.split_once('.').map(|(d, _)| d))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(Checked {
        tables: tables.len(),
        databases,
    })
}

/// `Kind : text` of a message line under a table.
fn message(line: &str) -> Option<(&str, &str)> {
    let (kind, text) = line.split_once(':')?;
    let kind = kind.trim();
    ["Note", "Warning", "Error", "error", "status", "info"]
        .contains(&kind)
        .then(|| (kind, text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_output_names_every_table_that_is_not_ok() {
        let ok = "d1.t                                               OK\nmysql.db    OK\nd2.v\nNote     : view is fine\nstatus   : OK\n";
        assert_eq!(
            parse_check(ok).expect("ok"),
            Checked {
                tables: 3,
                databases: 3
            }
        );
        let bad = "d1.t   OK\nd1.m\nError    : Incorrect file format 'm'\nerror    : Corrupt\nd1.x   OK\n";
        let err = parse_check(bad).expect_err("corrupt");
        assert!(
            err.contains("1 of 3 tables")
                && err.contains("d1.m: Incorrect file format 'm' (Corrupt)"),
            "{err}"
        );
        assert!(parse_check("").is_err());
        let err = parse_check("d1.y   Table is marked as crashed\n").expect_err("crashed");
        assert!(err.contains("d1.y: Table is marked as crashed"), "{err}");
    }
}
