//! PostgreSQL for tests: the Debian binaries, the `postgres` OS user the servers run as,
//! a small blocking SQL client with tight timeouts, and [`EngineNode`] — a PostgreSQL
//! server driven directly through `engines::postgres` (no agent), with a
//! [`engines::MainControl`] served by a task that starts and stops the real server.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use engines::postgres::{Credentials, Durability, PostgresEngine, PostgresSettings};
use engines::{MainControl, MainRequest, StopMode};
use handlers::RunAs;
use nix::sys::signal::Signal;

use crate::harness::util::{free_port, signal_and_wait, system_bin};

/// Debian's PostgreSQL 15 programs.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser the tests configure.
pub const SUPERUSER: &str = "postgres";
/// Its password (test only; given to agents through a file).
pub const SUPERUSER_PASSWORD: &str = "su-secret-e2e";
/// The replication role the tests configure.
pub const REPLICATOR: &str = "replicator";
/// Its password.
pub const REPLICATOR_PASSWORD: &str = "repl-secret-e2e";
/// The backup role's password (`engine.postgres.backup`).
pub const BACKUP_PASSWORD: &str = "bak-secret-e2e";

/// Fails (never skips) when PostgreSQL 15 is not installed.
pub fn check_installed() {
    system_bin(&format!("{BIN_DIR}/postgres"), "postgresql-15");
    system_bin(&format!("{BIN_DIR}/pg_rewind"), "postgresql-15");
}

/// The Debian `postgres` OS user (PostgreSQL refuses to run as root).
pub fn os_user() -> RunAs {
    let u = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres user")
        .expect("the postgres OS user exists (package postgresql-15)");
    RunAs {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }
}

/// A temp dir the `postgres` user can traverse and write (mode 0777 on the dir itself).
pub fn temp_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .context("create a temp dir")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
        .context("make the temp dir usable by postgres")?;
    Ok(dir)
}

/// A blocking SQL client: each call opens its own connection with a bounded connect and a
/// bounded wait for the answer (nothing is cancelled server-side: a cancelled wait for a
/// synchronous standby would report COMMIT as successful).
pub struct Sql {
    rt: tokio::runtime::Runtime,
    /// The address of the server on a port, when not 127.0.0.1 (nodes on a test LAN).
    hosts: std::collections::HashMap<u16, String>,
}

impl Default for Sql {
    fn default() -> Self {
        Self::new()
    }
}

impl Sql {
    /// A client with its own small runtime (also routes the engine's logs to the test's
    /// output, so a failing tool's stderr shows up).
    pub fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("build a tokio runtime");
        Sql {
            rt,
            hosts: Default::default(),
        }
    }

    /// A client that reaches the server on port `p` at `hosts[p]` (127.0.0.1 for the rest).
    pub fn with_hosts(hosts: std::collections::HashMap<u16, String>) -> Self {
        Sql {
            hosts,
            ..Self::new()
        }
    }

    fn host(&self, port: u16) -> String {
        self.hosts
            .get(&port)
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".to_owned())
    }

    /// Run `sql` (simple protocol, may hold several statements) on 127.0.0.1:`port` as the
    /// superuser; every row's columns as text. `Err` on error or when `limit` passed.
    pub fn query(
        &self,
        port: u16,
        sql: &str,
        limit: Duration,
    ) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        self.query_as(port, SUPERUSER, SUPERUSER_PASSWORD, sql, limit)
    }

    /// Like [`Sql::query`] as another user.
    pub fn query_as(
        &self,
        port: u16,
        user: &str,
        password: &str,
        sql: &str,
        limit: Duration,
    ) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        let sql = sql.to_owned();
        let (user, password) = (user.to_owned(), password.to_owned());
        let host = self.host(port);
        self.rt.block_on(async move {
            let work = async {
                let mut config = tokio_postgres::Config::new();
                config
                    .host(&host)
                    .port(port)
                    .user(&user)
                    .password(&password)
                    .dbname("postgres")
                    .connect_timeout(limit);
                let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let msgs = client.simple_query(&sql).await?;
                Ok::<_, tokio_postgres::Error>(
                    msgs.into_iter()
                        .filter_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                            }
                            _ => None,
                        })
                        .collect(),
                )
            };
            match tokio::time::timeout(limit, work).await {
                Err(_) => anyhow::bail!("no answer from port {port} within {limit:?}"),
                Ok(r) => r.map_err(|e| anyhow::anyhow!("port {port}: {}", pg_error(&e))),
            }
        })
    }

    /// Like [`Sql::query`] on a kept connection. A missing connection is opened in the
    /// background (a SCRAM login can take longer than a probe may) and this call fails at
    /// once; the connection is dropped after a timeout (a timed-out commit is abandoned,
    /// never cancelled) or when the server closed it.
    pub fn query_kept(
        &self,
        kept: &Arc<Kept>,
        port: u16,
        sql: &str,
        limit: Duration,
    ) -> anyhow::Result<Vec<Vec<Option<String>>>> {
        let client = kept.client.lock().expect("kept lock").take();
        let Some(client) = client.filter(|c| !c.is_closed()) else {
            if !kept
                .connecting
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                let k = kept.clone();
                let host = self.host(port);
                self.rt.spawn(async move {
                    let mut config = tokio_postgres::Config::new();
                    config
                        .host(&host)
                        .port(port)
                        .user(SUPERUSER)
                        .password(SUPERUSER_PASSWORD)
                        .dbname("postgres")
                        .connect_timeout(Duration::from_secs(5));
                    let opened = tokio::time::timeout(
                        Duration::from_secs(5),
                        config.connect(tokio_postgres::NoTls),
                    )
                    .await;
                    if let Ok(Ok((client, conn))) = opened {
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                        *k.client.lock().expect("kept lock") = Some(client);
                    }
                    k.connecting
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                });
            }
            anyhow::bail!("port {port}: connecting");
        };
        let sql = sql.to_owned();
        let (result, back) = self.rt.block_on(async move {
            match tokio::time::timeout(limit, client.simple_query(&sql)).await {
                Err(_) => (
                    Err(anyhow::anyhow!(
                        "no answer from port {port} within {limit:?}"
                    )),
                    None,
                ),
                Ok(Err(e)) => {
                    let keep = e.as_db_error().is_some() && !client.is_closed();
                    (
                        Err(anyhow::anyhow!("port {port}: {}", pg_error(&e))),
                        keep.then_some(client),
                    )
                }
                Ok(Ok(msgs)) => {
                    let rows = msgs
                        .into_iter()
                        .filter_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => {
                                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                            }
                            _ => None,
                        })
                        .collect();
                    (Ok(rows), Some(client))
                }
            }
        });
        if let Some(c) = back {
            let mut slot = kept.client.lock().expect("kept lock");
            if slot.is_none() {
                *slot = Some(c);
            }
        }
        result
    }

    /// The first column of the first row, as text.
    pub fn scalar(&self, port: u16, sql: &str) -> anyhow::Result<String> {
        self.query(port, sql, Duration::from_secs(5))?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten())
            .context("no value")
    }

    /// Run a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// The postmaster's pid of the server on `data_dir` (first line of `postmaster.pid`), only
/// while that process still runs on `data_dir`: a file left by a killed server may name a
/// pid that now belongs to another process.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    crate::harness::util::runs_with(pid, data_dir).then_some(pid)
}

/// Waits up to `within` until the server on `port` no longer answers `SELECT 1`; whether it
/// stopped answering.
pub fn wait_down(sql: &Sql, port: u16, within: Duration) -> bool {
    crate::harness::util::eventually(within, Duration::from_millis(20), || {
        sql.query(port, "SELECT 1", Duration::from_millis(300))
            .is_err()
            .then_some(())
    })
    .is_some()
}

/// A PostgreSQL error with the server's message (tokio-postgres shows only "db error").
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A connection kept between calls of [`Sql::query_kept`].
#[derive(Default)]
pub struct Kept {
    /// The open connection, if any.
    client: Mutex<Option<tokio_postgres::Client>>,
    /// Set while a background connect runs.
    connecting: std::sync::atomic::AtomicBool,
}

/// Engine settings for a test node named `name` in `dir` on `port`.
pub fn settings(name: &str, dir: &Path, port: u16, durability: Durability) -> PostgresSettings {
    PostgresSettings {
        node_id: name.to_owned(),
        bin_dir: PathBuf::from(BIN_DIR),
        data_dir: dir.join(format!("data-{name}")),
        listen: "127.0.0.1".to_owned(),
        port,
        superuser: Credentials {
            user: SUPERUSER.to_owned(),
            password: SUPERUSER_PASSWORD.to_owned(),
        },
        replication: Credentials {
            user: REPLICATOR.to_owned(),
            password: REPLICATOR_PASSWORD.to_owned(),
        },
        backup: None,
        durability,
        run_as: Some(os_user()),
        parameters: vec![
            ("shared_buffers".to_owned(), "16MB".to_owned()),
            ("max_connections".to_owned(), "40".to_owned()),
            ("fsync".to_owned(), "off".to_owned()),
        ],
        stop_timeout: Duration::from_secs(10),
        archive: None,
        max_slot_wal_keep_size: engines::postgres::DEFAULT_MAX_SLOT_WAL_KEEP_SIZE.to_owned(),
    }
}

/// A PostgreSQL server driven by the engine alone; the task serving its `MainControl`
/// starts and stops the real server.
pub struct EngineNode {
    /// The engine under test.
    pub engine: Arc<PostgresEngine>,
    /// The port.
    pub port: u16,
    /// The running server, shared with the control task.
    child: Arc<Mutex<Option<Child>>>,
    /// The server's stdout/stderr.
    log: PathBuf,
}

/// Start `postgres` with the engine's command line for `settings` (as its OS user), its
/// output appended to `log`; not waited for.
pub fn spawn_server(settings: &PostgresSettings, log: &Path) -> anyhow::Result<Child> {
    let spec = settings.server_command();
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .context("open the server log")?;
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .stdin(Stdio::null())
        .stdout(out.try_clone().context("clone log handle")?)
        .stderr(out);
    if let Some(u) = spec.user {
        cmd.uid(u.uid).gid(u.gid);
    }
    cmd.spawn().context("spawn postgres")
}

impl EngineNode {
    /// Prepare (initdb when empty) and start the server; the control task runs on `sql`'s
    /// runtime. Does not wait for readiness.
    pub fn start(sql: &Sql, settings: PostgresSettings, dir: &Path) -> anyhow::Result<EngineNode> {
        check_installed();
        let (control, mut requests) = MainControl::channel();
        let port = settings.port;
        let log = dir.join(format!("{}.log", settings.node_id));
        let engine = Arc::new(PostgresEngine::new(settings.clone(), control));
        sql.block_on(engines::Engine::prepare(engine.as_ref()))
            .map_err(|e| anyhow::anyhow!("prepare: {e}"))?;
        let child = Arc::new(Mutex::new(Some(spawn_server(&settings, &log)?)));
        let (c2, log2) = (child.clone(), log.clone());
        sql.block_on(async {
            tokio::spawn(async move {
                while let Some(req) = requests.recv().await {
                    match req {
                        MainRequest::Stop { mode, reply } => {
                            let sig = match mode {
                                StopMode::Fast => Signal::SIGINT,
                                StopMode::Graceful => Signal::SIGTERM,
                            };
                            let c = c2.clone();
                            let done = tokio::task::spawn_blocking(move || {
                                let mut guard = c.lock().expect("child lock");
                                signal_and_wait(&mut guard, sig, Duration::from_secs(30))
                            })
                            .await
                            .unwrap_or(false);
                            let _ = reply.send(if done {
                                Ok(())
                            } else {
                                Err("did not stop".into())
                            });
                        }
                        MainRequest::Start { reply } => {
                            let r = spawn_server(&settings, &log2).map_err(|e| format!("{e:#}"));
                            let r = r.map(|ch| {
                                *c2.lock().expect("child lock") = Some(ch);
                            });
                            let _ = reply.send(r);
                        }
                    }
                }
            });
        });
        Ok(EngineNode {
            engine,
            port,
            child,
            log,
        })
    }

    /// Wait until the server answers `SELECT 1`.
    pub fn wait_ready(&self, sql: &Sql) {
        let ok = crate::harness::util::eventually(
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                sql.query(self.port, "SELECT 1", Duration::from_secs(1))
                    .ok()
            },
        );
        assert!(
            ok.is_some(),
            "postgres on {} not ready\n{}",
            self.port,
            self.log()
        );
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL the postmaster (its children exit when they notice).
    pub fn kill(&self) {
        let mut guard = self.child.lock().expect("child lock");
        signal_and_wait(&mut guard, Signal::SIGKILL, Duration::from_secs(10));
    }
}

impl Drop for EngineNode {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.child.lock()
            && !signal_and_wait(&mut guard, Signal::SIGINT, Duration::from_secs(10))
        {
            signal_and_wait(&mut guard, Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}

/// A free port for a test server.
pub fn port() -> u16 {
    free_port()
}
