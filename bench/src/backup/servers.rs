//! The servers `bench backup` backs up: one PostgreSQL 15 and one MariaDB server started
//! the way the e2e tests start them (driven by the engine alone, no agent), and the data
//! set generated in each.
//!
//! The settings are a function of `(dir, port)` only, so the worker process
//! (`bench backup-worker`) builds an engine on the same server from the same two values.
//!
//! The data: rows of 512 random bytes (incompressible) beside 512 bytes of text that
//! compresses very well (an MD5 repeated), so the stream compresses to about half; the
//! ratio measured is reported. PostgreSQL stores both columns `PLAIN` (no TOAST
//! compression: the pipeline sees the bytes as generated). `bench pitr` generates the same
//! rows in its clusters ([`PG_TABLE`], [`pg_rows`], [`MARIADB_TABLE`], [`mariadb_rows`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::harness::util::free_port;
use e2e::mariadb::server::{MARIADB_CLI, MARIADBD};
use e2e::postgres::server::{EngineNode, SUPERUSER_PASSWORD, Sql};
use engines::mariadb::{
    Account, Durability as MariaDurability, Flavour, MariadbEngine, MariadbSettings,
};
use engines::postgres::{Durability, PostgresSettings};
use engines::{Engine, MainControl, MainRequest};
use handlers::ManagedChild;
use handlers::exec::RunOutcome;

/// Rows inserted per statement.
pub const BATCH_ROWS: u64 = 25_000;
/// How long one batch may take.
pub const BATCH_LIMIT: Duration = Duration::from_secs(900);
/// The MariaDB admin account the engine creates.
pub const MARIADB_ADMIN: (&str, &str) = ("autopilot", "admin-secret-bench");
/// PostgreSQL: the data set's table, `bench`, empty (both columns `PLAIN`: no TOAST
/// compression).
pub const PG_TABLE: &str = "CREATE EXTENSION IF NOT EXISTS pgcrypto; \
     CREATE TABLE bench(id bigint PRIMARY KEY, noise bytea, words text); \
     ALTER TABLE bench ALTER noise SET STORAGE PLAIN, ALTER words SET STORAGE PLAIN";
/// PostgreSQL: the table's size on disk, bytes.
pub const PG_SIZE: &str = "SELECT pg_total_relation_size('bench')";
/// MariaDB: the data set's database and table, `bench.t`, empty; one statement each.
pub const MARIADB_TABLE: [&str; 2] = [
    "CREATE DATABASE bench",
    "CREATE TABLE bench.t(id BIGINT PRIMARY KEY, noise VARBINARY(512), words VARCHAR(512)) \
     ENGINE=InnoDB CHARACTER SET latin1",
];
/// MariaDB: the table's file, below the data directory (its size is the table's size).
pub const MARIADB_FILE: &str = "bench/t.ibd";

/// PostgreSQL: inserts rows `from..=to` of the data set (512 random bytes beside 512 bytes
/// of a repeated MD5 each).
pub fn pg_rows(from: u64, to: u64) -> String {
    format!(
        "INSERT INTO bench SELECT g, gen_random_bytes(512), repeat(md5(g::text), 16) \
         FROM generate_series({from}, {to}) g"
    )
}

/// MariaDB: inserts rows `from..=to` of the data set, as [`pg_rows`].
pub fn mariadb_rows(from: u64, to: u64) -> String {
    format!(
        "INSERT INTO bench.t SELECT seq, RANDOM_BYTES(512), REPEAT(MD5(seq), 16) \
         FROM bench.seq_{from}_to_{to}"
    )
}

/// Which engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL 15.
    Postgres,
    /// MariaDB 10.11.
    Mariadb,
}

impl Kind {
    /// `postgres` or `mariadb`.
    pub fn parse(s: &str) -> Option<Kind> {
        match s.trim() {
            "postgres" | "postgresql" => Some(Kind::Postgres),
            "mariadb" => Some(Kind::Mariadb),
            _ => None,
        }
    }

    /// The name used on the command line and in the worker's job.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgres => "postgres",
            Kind::Mariadb => "mariadb",
        }
    }

    /// The name in the table.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Postgres => "PostgreSQL 15",
            Kind::Mariadb => "MariaDB 10.11",
        }
    }
}

/// The PostgreSQL server's Unix socket directory (pgBackRest connects through it; the
/// engine itself runs the server without one).
pub fn pg_socket_dir(dir: &Path) -> PathBuf {
    dir.join("pg-socket")
}

/// PostgreSQL settings for the server in `dir` on `port`: the e2e harness's, with a Unix
/// socket for pgBackRest.
pub fn pg_settings(dir: &Path, port: u16) -> PostgresSettings {
    let mut s = e2e::postgres::server::settings("bench", dir, port, Durability::Async);
    s.parameters.push((
        "unix_socket_directories".to_owned(),
        pg_socket_dir(dir).display().to_string(),
    ));
    // Generating the data set makes a lot of WAL; fewer forced checkpoints.
    s.parameters
        .push(("max_wal_size".to_owned(), "4GB".to_owned()));
    s
}

/// MariaDB settings for the server in `dir` on `port` (as the e2e tests'; a larger buffer
/// pool and a relaxed log flush only to generate the data faster).
pub fn mariadb_settings(dir: &Path, port: u16) -> MariadbSettings {
    let account = |(user, password): (&str, &str)| Account {
        user: user.to_owned(),
        password: password.to_owned(),
    };
    MariadbSettings {
        flavour: Flavour::MariaDb,
        program: vec![
            MARIADBD.to_owned(),
            "--no-defaults".to_owned(),
            "--innodb-buffer-pool-size=256M".to_owned(),
            "--innodb-log-file-size=512M".to_owned(),
            "--innodb-flush-log-at-trx-commit=2".to_owned(),
        ],
        env: vec![],
        datadir: dir.join("maria-data"),
        run_dir: dir.join("maria-run"),
        bind_address: "127.0.0.1".to_owned(),
        port,
        server_id: 17,
        gtid_domain_id: 0,
        os_user: Some("mysql".to_owned()),
        durability: MariaDurability::Async,
        admin: account(MARIADB_ADMIN),
        replication: account(("repl", "repl-secret-bench")),
        backup: Some(account(("backup", "backup-secret-bench"))),
        stop_timeout: Duration::from_secs(60),
        cluster: "bench/backup/maria".to_owned(),
        node_id: "n1".to_owned(),
        statement_stats: false,
        peer_ca: None,
    }
}

/// A running server with the data set.
pub enum Server {
    /// PostgreSQL: the harness's engine node and its SQL client.
    Postgres {
        /// The server (stopped on drop).
        node: EngineNode,
        /// Its SQL client (owns the runtime the node's control task runs on).
        sql: Sql,
    },
    /// MariaDB: the engine and the `mariadbd` it prepared.
    Mariadb {
        /// The server, stopped by [`Server::stop`] (killed on drop).
        child: Option<ManagedChild>,
        /// The engine that prepared it (boxed: it is large).
        engine: Box<MariadbEngine>,
        /// Nobody serves these: the benchmark never clones; kept so the channel stays open.
        _requests: tokio::sync::mpsc::Receiver<MainRequest>,
        /// The runtime the server's child handle lives on.
        rt: tokio::runtime::Runtime,
    },
}

impl Server {
    /// Starts the server of `kind` in `dir` (a directory the database's OS user can use).
    pub fn start(kind: Kind, dir: &Path) -> Result<Server> {
        let port = free_port();
        match kind {
            Kind::Postgres => {
                std::fs::create_dir_all(pg_socket_dir(dir))?;
                std::fs::set_permissions(
                    pg_socket_dir(dir),
                    std::os::unix::fs::PermissionsExt::from_mode(0o777),
                )?;
                let sql = Sql::new();
                let node = EngineNode::start(&sql, pg_settings(dir, port), dir)?;
                node.wait_ready(&sql);
                sql.block_on(node.engine.promote())
                    .map_err(|e| anyhow::anyhow!("promote: {e}"))?;
                Ok(Server::Postgres { node, sql })
            }
            Kind::Mariadb => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?;
                let (control, requests) = MainControl::channel();
                let engine = MariadbEngine::new(mariadb_settings(dir, port), control);
                let child = rt.block_on(async {
                    engine
                        .prepare()
                        .await
                        .map_err(|e| anyhow::anyhow!("prepare MariaDB: {e}"))?;
                    start_mariadbd(&engine).await
                })?;
                Ok(Server::Mariadb {
                    child: Some(child),
                    engine: Box::new(engine),
                    _requests: requests,
                    rt,
                })
            }
        }
    }

    /// `(dir, port)`: what the worker builds its engine from.
    pub fn port(&self) -> u16 {
        match self {
            Server::Postgres { node, .. } => node.port,
            Server::Mariadb { engine, .. } => engine.settings().port,
        }
    }

    /// Fills the server with about `size_mb` MiB of rows (see the module docs); the table's
    /// size on disk in bytes and its row count.
    pub fn generate(&mut self, size_mb: u64) -> Result<(u64, u64)> {
        let want = size_mb * 1024 * 1024;
        let mut rows = 0;
        match self {
            Server::Postgres { node, sql } => {
                sql.query(node.port, PG_TABLE, Duration::from_secs(30))?;
                let size = |sql: &Sql| -> Result<u64> {
                    sql.scalar(node.port, PG_SIZE)?
                        .parse()
                        .context("parse the table size")
                };
                while size(sql)? < want {
                    sql.query(
                        node.port,
                        &pg_rows(rows + 1, rows + BATCH_ROWS),
                        BATCH_LIMIT,
                    )?;
                    rows += BATCH_ROWS;
                }
                // Hint bits set now, not during the first backup; everything on disk.
                sql.query(node.port, "VACUUM (FREEZE, ANALYZE) bench", BATCH_LIMIT)?;
                sql.query(node.port, "CHECKPOINT", BATCH_LIMIT)?;
                Ok((size(sql)?, rows))
            }
            Server::Mariadb {
                engine, rt, child, ..
            } => {
                let settings = engine.settings();
                let run = |q: &str| rt.block_on(mariadb_sql(settings, q));
                run(&MARIADB_TABLE.join("; "))?;
                let file = settings.datadir.join(MARIADB_FILE);
                let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                while size() < want {
                    run(&mariadb_rows(rows + 1, rows + BATCH_ROWS))?;
                    rows += BATCH_ROWS;
                }
                // A clean restart: InnoDB checkpoints on shutdown, so a backup copies the
                // data files and not the redo of the whole generation as well.
                rt.block_on(async {
                    if let Some(mut c) = child.take() {
                        c.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(120))
                            .await;
                    }
                    *child = Some(start_mariadbd(engine).await?);
                    anyhow::Ok(())
                })?;
                Ok((size(), rows))
            }
        }
    }

    /// Stops the server cleanly.
    pub fn stop(mut self) {
        if let Server::Mariadb { child, rt, .. } = &mut self
            && let Some(mut c) = child.take()
        {
            rt.block_on(c.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(60)));
        }
        // PostgreSQL: the node's Drop sends SIGINT and waits.
    }
}

/// Starts `mariadbd` as the engine prepared it; returns once it answers and accepts writes.
async fn start_mariadbd(engine: &MariadbEngine) -> Result<ManagedChild> {
    let child =
        ManagedChild::spawn("mariadbd", engine.main_command(), &[]).context("start mariadbd")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match engine.position().await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => bail!("MariaDB did not answer within 120 s: {e}"),
        }
    }
    engine
        .promote()
        .await
        .map_err(|e| anyhow::anyhow!("promote MariaDB: {e}"))?;
    Ok(child)
}

/// Runs `statements` with the `mariadb` client over the server's socket as the admin; its
/// output. Spawned through `handlers` (its reaper owns every child of this process).
pub async fn mariadb_sql(s: &MariadbSettings, statements: &str) -> Result<String> {
    let spec = handlers::ExecSpec::new([
        MARIADB_CLI.to_owned(),
        format!("--socket={}", s.socket().display()),
        format!("--user={}", s.admin.user),
        "--batch".to_owned(),
        "--skip-column-names".to_owned(),
        "-e".to_owned(),
        statements.to_owned(),
    ]);
    let env = [("MYSQL_PWD".to_owned(), s.admin.password.clone())];
    let out = handlers::exec::run_capture("mariadb", &spec, &env).await?;
    match out.outcome {
        RunOutcome::Exited(st) if st.success() => Ok(out.stdout.trim().to_owned()),
        other => bail!(
            "mariadb -e {statements:?}: {other:?}: {}",
            out.failure.unwrap_or_default()
        ),
    }
}

/// The PostgreSQL superuser's password (the raw `pg_basebackup` logs in with it).
pub fn pg_password() -> &'static str {
    SUPERUSER_PASSWORD
}
