//! An external MariaDB server for the live-migration scenarios (issue 18): a plain
//! [`MariaDb`] (binary log, GTIDs, no agent) with the database `mig`, its table `t (n)` and
//! rows 1..=`rows`, an application account `app` that may only read and insert there (so
//! `read_only` applies to it), the migration account `migrator` (ALL), an account named as
//! the cluster's replication account with another password (the copy must keep the
//! cluster's), and the `migrate_from` flow YAML that points a cluster at it.

use std::time::Duration;

use anyhow::Context as _;

use super::server::MariaDb;
use super::workload::Sql;

/// The source: its server and directory.
pub struct Source {
    /// The server (killed on drop).
    pub server: MariaDb,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Source {
    /// Starts the source with its accounts and rows 1..=`rows`.
    pub fn start(rows: u64) -> anyhow::Result<Source> {
        let server = MariaDb::start("source")?;
        let port = server.port();
        server.sql(&format!(
            "CREATE USER migrator@'%' IDENTIFIED BY 'migrator-pw'; \
             GRANT ALL ON *.* TO migrator@'%' WITH GRANT OPTION; \
             CREATE USER app@'%' IDENTIFIED BY 'app-pw'; \
             CREATE USER repl@'%' IDENTIFIED BY 'the-source-s-own-repl-pw'; \
             GRANT REPLICATION SLAVE ON *.* TO repl@'%'; \
             CREATE DATABASE mig; CREATE TABLE mig.t (n BIGINT PRIMARY KEY) ENGINE=InnoDB; \
             GRANT SELECT, INSERT ON mig.* TO app@'%'; \
             INSERT INTO mig.t SELECT seq FROM mig.seq_1_to_{rows}"
        ))?;
        let dir = tempfile::tempdir().context("temp dir")?;
        std::fs::write(dir.path().join("source.pw"), "migrator-pw")
            .context("write the source password")?;
        Ok(Source { server, port, dir })
    }

    /// `cluster.bootstrap.migrate_from` for a cluster on this machine, as flow YAML.
    pub fn migrate_from(&self) -> String {
        format!(
            "{{ host: 127.0.0.1, port: {}, account: {{ user: migrator, password_file: {} }} }}",
            self.port,
            self.dir.path().join("source.pw").display()
        )
    }

    /// The application account on the server at `port`.
    pub fn app(port: u16) -> Sql {
        Sql {
            host: "127.0.0.1".into(),
            port,
            user: "app".into(),
            password: "app-pw".into(),
        }
    }

    /// Whether `port` acknowledged row `n` (as the application account, 2 s bound).
    pub fn insert(port: u16, n: u64) -> bool {
        Self::app(port)
            .run(
                &[&format!("INSERT INTO mig.t VALUES ({n})")],
                Duration::from_secs(2),
            )
            .is_ok()
    }
}
