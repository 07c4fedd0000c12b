//! An external PostgreSQL primary for the live-migration scenarios (issue 18): a plain server
//! (`initdb`, `postgres` started by the test; no agent, no engine: the engine's tools run
//! under the agents' child reaper, which would reap the test's own children), with the
//! cluster's roles (a physical copy takes the source's roles), the table `mig (n bigint)` with
//! rows 1..=`rows`, and the `migrate_from` flow YAML that points a cluster at it (the
//! superuser, whose password is in a file, and the slot `autopilot_migration`).

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;

use super::server::{
    BIN_DIR, REPLICATOR, REPLICATOR_PASSWORD, SUPERUSER, SUPERUSER_PASSWORD, Sql, check_installed,
    os_user, temp_dir,
};
use crate::harness::util::{eventually, signal_and_wait};

/// The source: its server, its directory, its port.
pub struct Source {
    /// A client.
    pub sql: Sql,
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Source {
    /// Initialises and starts the source and writes rows 1..=`rows`.
    pub fn start(rows: u64) -> anyhow::Result<Source> {
        check_installed();
        let dir = temp_dir("pg-source-")?;
        let data = dir.path().join("data");
        let port = super::server::port();
        let user = os_user();
        let pwfile = dir.path().join("initdb.pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).context("write the password file")?;
        std::os::unix::fs::chown(&pwfile, Some(user.uid), Some(user.gid))
            .context("chown the password file")?;
        let out = Command::new(format!("{BIN_DIR}/initdb"))
            .args([
                "-D",
                &data.display().to_string(),
                "-U",
                SUPERUSER,
                "-A",
                "scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C")
            .uid(user.uid)
            .gid(user.gid)
            .stdin(Stdio::null())
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
             shared_buffers = 16MB\nmax_connections = 40\nfsync = off\n",
            dir.path().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).context("read postgresql.conf")?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).context("write postgresql.conf")?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n\
             host replication all 127.0.0.1/32 scram-sha-256\n",
        )
        .context("write pg_hba.conf")?;
        let log = dir.path().join("source.log");
        let file = std::fs::File::create(&log).context("create the server log")?;
        std::os::unix::fs::chown(&log, Some(user.uid), Some(user.gid)).context("chown the log")?;
        let child = Command::new(format!("{BIN_DIR}/postgres"))
            .args(["-D", &data.display().to_string()])
            .uid(user.uid)
            .gid(user.gid)
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("clone the log handle")?)
            .stderr(file)
            .spawn()
            .context("start postgres")?;
        let sql = Sql::new();
        let src = Source {
            sql,
            port,
            child: Some(child),
            log,
            dir,
        };
        let up = eventually(Duration::from_secs(60), Duration::from_millis(50), || {
            src.sql.query(port, "SELECT 1", Duration::from_secs(1)).ok()
        });
        if up.is_none() {
            bail!("the source did not start:\n{}", src.log());
        }
        let t = Duration::from_secs(30);
        src.sql.query(
            port,
            &format!("CREATE ROLE {REPLICATOR} LOGIN REPLICATION PASSWORD '{REPLICATOR_PASSWORD}'"),
            t,
        )?;
        src.sql
            .query(port, "CREATE TABLE mig (n bigint PRIMARY KEY)", t)?;
        src.sql.query(
            port,
            &format!("INSERT INTO mig SELECT g FROM generate_series(1, {rows}) g"),
            t,
        )?;
        std::fs::write(src.dir.path().join("source.pw"), SUPERUSER_PASSWORD)
            .context("write the source password")?;
        Ok(src)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `cluster.bootstrap.migrate_from` for a cluster on this machine, as flow YAML.
    pub fn migrate_from(&self) -> String {
        format!(
            "{{ host: 127.0.0.1, port: {}, account: {{ user: {SUPERUSER}, password_file: {} }}, slot: autopilot_migration }}",
            self.port,
            self.dir.path().join("source.pw").display()
        )
    }

    /// Whether `port` acknowledged row `n` (a new connection each time, 2 s bound).
    pub fn insert(sql: &Sql, port: u16, n: u64) -> bool {
        sql.query(
            port,
            &format!("INSERT INTO mig VALUES ({n})"),
            Duration::from_secs(2),
        )
        .is_ok()
    }

    /// The rows of the server on `port`, in order.
    pub fn rows(sql: &Sql, port: u16) -> Option<Vec<u64>> {
        sql.query(
            port,
            "SELECT n FROM mig ORDER BY n",
            Duration::from_secs(10),
        )
        .ok()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.first().cloned().flatten()?.parse().ok())
                .collect()
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if !signal_and_wait(&mut self.child, Signal::SIGINT, Duration::from_secs(10)) {
            signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}
