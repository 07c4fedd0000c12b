//! A real MariaDB server for tests: [`MariaDb`], on a random free loopback port in a temp dir,
//! killed and removed on `Drop` (recipes.md Part 3).
//!
//! Each server gets a fresh data dir from `mariadb-install-db` (root over TCP with an empty
//! password, no test db), a `my.cnf` with binary logging, `gtid_strict_mode` and ROW
//! binlogs, a socket inside the temp dir, and a server id no other server of this process
//! uses, so two of them can replicate from each other at once. The tests run as root, so
//! the dir is chowned to `mysql` and `mariadbd` runs with `--user=mysql`.
//!
//! A port picked by binding port 0 can be taken by somebody else before `mariadbd` binds it,
//! and a client would then silently talk to another server. So a start only succeeds once
//! `SELECT @@port, @@server_id` on the port answers with our port *and* our server id; on a
//! mismatch or an early exit it is retried on a new port.
//!
//! The API is synchronous (std only) and every wait is bounded.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;

use crate::harness::util::{free_port, signal_and_wait};

/// Debian's MariaDB server binary (package `mariadb-server`).
pub const MARIADBD: &str = "/usr/sbin/mariadbd";
/// Debian's data dir initialiser (package `mariadb-server`).
pub const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
/// Debian's MariaDB CLI (package `mariadb-client`).
pub const MARIADB_CLI: &str = "/usr/bin/mariadb";

/// How long `mariadb-install-db` may take (it takes ~3 s).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a start may take until the server answers as itself (warm: ~0.2 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop()` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a port was stolen or another server answered.
const START_ATTEMPTS: usize = 5;

/// A `mariadbd` we started, with its own data dir, config and port.
#[derive(Debug)]
pub struct MariaDb {
    /// Owns the data dir, config, socket and logs; removed on drop.
    dir: tempfile::TempDir,
    /// Loopback TCP port.
    port: u16,
    /// `server_id`, unique among the servers of this process.
    server_id: u32,
    /// The running server, `None` once stopped or killed.
    child: Option<Child>,
}

impl MariaDb {
    /// Makes a temp dir (its name starts with `mariadb-<dir_name_hint>-`), initialises a
    /// data dir and starts `mariadbd` on a free loopback port; returns once the port answers
    /// with our port and server id. Fails (never skips) when MariaDB is not installed.
    pub fn start(dir_name_hint: &str) -> anyhow::Result<MariaDb> {
        check_installed()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("mariadb-{dir_name_hint}-"))
            .tempdir()
            .context("create MariaDB temp dir")?;
        let server_id = next_server_id();
        let mut db = MariaDb {
            dir,
            port: 0,
            server_id,
            child: None,
        };
        db.write_cnf(free_port())?;
        db.install()?;
        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                db.write_cnf(free_port())?;
            }
            match db.spawn().and_then(|()| db.wait_ready()) {
                Ok(()) => return Ok(db),
                Err(e) => {
                    db.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt ran"))
            .with_context(|| format!("start MariaDB in {}", db.dir().display()))
    }

    /// The loopback TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's `server_id` (also the server part of the GTIDs it writes).
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// The temp dir: `my.cnf`, `data/`, `tmp/`, `mariadb.sock`, `error.log`, `mariadbd.out`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.exited().is_none() && self.child.is_some()
    }

    /// Runs `sql` as root over TCP with the `mariadb` CLI (batch mode, no column names);
    /// returns stdout without the final newline: one line per row, tab-separated columns.
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        sql_on(self.port, sql)
    }

    /// Kills the server at once (SIGKILL) and reaps it; keeps the data.
    pub fn kill(&mut self) {
        signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(10));
    }

    /// Stops the server cleanly (SIGTERM, up to 30 s), then SIGKILL; keeps the data.
    pub fn stop(&mut self) {
        if !signal_and_wait(&mut self.child, Signal::SIGTERM, STOP_GRACE) {
            self.kill();
        }
    }

    fn cnf_path(&self) -> PathBuf {
        self.dir().join("my.cnf")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// Writes `my.cnf` for `port` (recipes.md Part 3).
    fn write_cnf(&mut self, port: u16) -> anyhow::Result<()> {
        self.port = port;
        let d = self.dir().display().to_string();
        let data = self.data_dir().display().to_string();
        let mut cnf = String::from("[mariadbd]\n");
        for (key, value) in [
            ("datadir", data.clone()),
            ("socket", format!("{d}/mariadb.sock")),
            ("pid-file", format!("{d}/mariadbd.pid")),
            ("port", port.to_string()),
            ("bind-address", "127.0.0.1".into()),
            ("server_id", self.server_id.to_string()),
            ("log_bin", format!("{data}/mariadb-bin")),
            ("log_slave_updates", "ON".into()),
            ("binlog_format", "ROW".into()),
            ("gtid_strict_mode", "ON".into()),
            ("gtid_domain_id", "0".into()),
            ("relay_log", format!("{data}/relay-bin")),
            ("log_error", format!("{d}/error.log")),
            // Our own tmpdir: in a shared /tmp, concurrent bootstraps (mariadb-install-db)
            // failed with "Could not remove temporary table '/tmp/#sql-temptable-..'".
            ("tmpdir", format!("{d}/tmp")),
            ("innodb_buffer_pool_size", "64M".into()),
            ("innodb_log_file_size", "48M".into()),
        ] {
            writeln!(cnf, "{key}={value}").expect("write to String");
        }
        cnf.push_str("skip-name-resolve\n");
        std::fs::write(self.cnf_path(), cnf).context("write my.cnf")?;
        std::fs::create_dir_all(self.dir().join("tmp")).context("create the server's tmpdir")?;
        chown_mysql(self.dir())
    }

    /// `mariadb-install-db` into `data/`, as root with `--user=mysql`.
    fn install(&self) -> anyhow::Result<()> {
        let log = self.dir().join("install.log");
        let out = File::create(&log).context("create install.log")?;
        let err = out.try_clone().context("clone install.log handle")?;
        let mut child = Command::new(INSTALL_DB)
            .arg(format!("--defaults-file={}", self.cnf_path().display()))
            .args([
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawn {INSTALL_DB}"))?;
        let deadline = Instant::now() + INSTALL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().context("wait for mariadb-install-db")? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{INSTALL_DB} did not finish within {INSTALL_TIMEOUT:?}; log:\n{}",
                    tail(&log)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!(
                "{INSTALL_DB} failed ({status}); error log:\n{}\ninstall log:\n{}",
                tail(&self.dir().join("error.log")),
                tail(&log)
            );
        }
        chown_mysql(self.dir())
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let out_path = self.dir().join("mariadbd.out");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .context("open mariadbd.out")?;
        let err = out.try_clone().context("clone mariadbd.out handle")?;
        let child = Command::new(MARIADBD)
            .arg(format!("--defaults-file={}", self.cnf_path().display()))
            .arg("--user=mysql")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawn {MARIADBD}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until our port answers with our port and server id.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let expected = format!("{}\t{}", self.port, self.server_id);
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "mariadbd on port {} exited during start ({status}); error log:\n{}",
                    self.port,
                    tail(&self.dir().join("error.log"))
                );
            }
            if let Ok(answer) = self.sql("SELECT @@port, @@server_id") {
                if answer == expected {
                    return Ok(());
                }
                bail!(
                    "port {} answers as {answer:?} (port, server_id), not as server {}: \
                     somebody else's MariaDB",
                    self.port,
                    self.server_id
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "mariadbd on port {} not answering within {START_TIMEOUT:?}; error log:\n{}",
                    self.port,
                    tail(&self.dir().join("error.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `Some(status)` when the process has exited.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        // The TempDir field then removes the dir.
    }
}

/// Runs `sql` as root on the MariaDB at 127.0.0.1:`port` (batch mode, no column names);
/// returns stdout without the final newline.
pub fn sql_on(port: u16, sql: &str) -> anyhow::Result<String> {
    let out = Command::new(MARIADB_CLI)
        .args(["-uroot", "-h127.0.0.1", "--protocol=TCP"])
        .arg(format!("-P{port}"))
        .args(["--batch", "--skip-column-names", "--connect-timeout=2"])
        .arg("-e")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {MARIADB_CLI} (apt-get install -y mariadb-client)"))?;
    if !out.status.success() {
        bail!(
            "mariadb -P{port} -e {sql:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

fn check_installed() -> anyhow::Result<()> {
    for bin in [MARIADBD, INSTALL_DB] {
        if !Path::new(bin).exists() {
            bail!("{bin} not found: install MariaDB with `apt-get install -y mariadb-server`");
        }
    }
    if !Path::new(MARIADB_CLI).exists() {
        bail!("{MARIADB_CLI} not found: install it with `apt-get install -y mariadb-client`");
    }
    Ok(())
}

/// A server id no other server of this process uses: the pid's low bits and a counter,
/// never 0 (0 refuses to replicate).
fn next_server_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(1);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 1000;
    (std::process::id() % 4_000_000) * 1000 + n.max(1)
}

/// `chown -R mysql:mysql dir`: the tests run as root, the server as `mysql`.
fn chown_mysql(dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .args(["-R", "mysql:mysql"])
        .arg(dir)
        .status()
        .context("run chown")?;
    if !status.success() {
        bail!("chown -R mysql:mysql {} failed ({status})", dir.display());
    }
    Ok(())
}

/// The last lines of a log file (empty if unreadable).
fn tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_check_rejects_a_foreign_server() {
        let db = MariaDb::start("identity").expect("start MariaDB");
        let mut impostor = MariaDb {
            dir: tempfile::tempdir().expect("temp dir"),
            port: db.port(),
            server_id: db.server_id() + 1,
            child: None,
        };
        let err = impostor
            .wait_ready()
            .expect_err("a foreign MariaDB must be detected");
        assert!(
            format!("{err:#}").contains("somebody else's MariaDB"),
            "{err:#}"
        );
    }

    #[test]
    fn server_ids_are_distinct_and_nonzero() {
        let ids: Vec<u32> = (0..100).map(|_| next_server_id()).collect();
        assert!(ids.iter().all(|&id| id != 0));
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
