//! A scratch PostgreSQL server on a data directory that is not the node's: a logical
//! restore loads its dumps into one, and [`crate::Engine::check_restored`] checks a
//! restored directory with one.
//!
//! It never reaches anything outside this host and never takes part in replication: it
//! listens on 127.0.0.1 on a free port, its Unix socket is in a private directory (mode
//! 0700, owned by the database's OS user) with an `hba_file` there that trusts local
//! connections only — so the tools log in as the restored cluster's superuser without
//! knowing the password the backup holds, and only the OS user (and root) can reach the
//! socket — and command-line settings (which outrank every file in the directory) switch
//! off streaming from a primary, archiving, synchronous standbys and read-only defaults.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use handlers::exec::FailureLine;
use handlers::{ExecSpec, ManagedChild};
use nix::sys::signal::Signal;
use tokio_postgres::Client;

use super::datadir::{give, write_file};
use super::settings::{Credentials, PostgresSettings};
use super::sql;
use crate::engine::EngineError;

/// How long the scratch server may take to accept connections (crash recovery of a large
/// base backup replays its WAL first).
const READY_LIMIT: Duration = Duration::from_secs(900);
/// How long a fast shutdown may take before the server is killed.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// Tries with a new port when another process took the one found free.
const PORT_TRIES: u32 = 3;

/// Numbers the scratch directories of this process.
static SEQ: AtomicU32 = AtomicU32::new(0);

fn failed(operation: &'static str, reason: impl Into<String>) -> EngineError {
    EngineError::Failed {
        operation,
        reason: reason.into(),
    }
}

/// A private directory for the socket and the `hba_file`, removed when dropped.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running scratch server; dropping it kills it.
#[derive(Debug)]
pub struct Scratch {
    /// The postmaster.
    child: ManagedChild,
    /// Its socket directory (and hba file).
    socket_dir: SocketDir,
    /// Its port (also in the socket's name).
    pub port: u16,
    /// The superuser the tools log in as.
    pub superuser: String,
    /// How long it took to accept connections.
    pub start_time: Duration,
    /// The settings the engine runs its tools with (OS user, bin directory).
    settings: PostgresSettings,
}

impl Scratch {
    /// Start a server on `data_dir` as the database's OS user and wait (bounded) until it
    /// accepts connections. `operation` names what it is for, in errors.
    pub async fn start(
        s: &PostgresSettings,
        data_dir: &Path,
        operation: &'static str,
    ) -> Result<Scratch, EngineError> {
        Self::start_with(s, data_dir, operation, &[]).await
    }

    /// [`Scratch::start`] with `extra` settings after the scratch server's own (a later
    /// `-c` wins: a recovery's `restore_command` and target).
    pub async fn start_with(
        s: &PostgresSettings,
        data_dir: &Path,
        operation: &'static str,
        extra: &[(&str, String)],
    ) -> Result<Scratch, EngineError> {
        let dir = std::env::temp_dir().join(format!(
            "autopilot-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)
            .map_err(|e| failed(operation, format!("create {}: {e}", dir.display())))?;
        let mut socket_dir = SocketDir(dir);
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&socket_dir.0, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| failed(operation, format!("chmod {}: {e}", socket_dir.0.display())))?;
        }
        give(s, &socket_dir.0).map_err(|e| failed(operation, e))?;
        let hba = socket_dir.0.join("pg_hba.conf");
        write_file(
            s,
            &hba,
            "# A scratch server of autopilot: its private socket only.\nlocal all all trust\n",
            0o600,
        )
        .map_err(|e| failed(operation, e))?;
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            let port = free_port().map_err(|e| failed(operation, e))?;
            let spec = command(s, data_dir, &socket_dir.0, &hba, port, extra);
            let started = Instant::now();
            let (child, failure) = ManagedChild::spawn_reporting("postgres (scratch)", &spec, &[])
                .map_err(|e| failed(operation, handlers::error_chain(&e)))?;
            let mut scratch = Scratch {
                child,
                socket_dir,
                port,
                superuser: s.superuser.user.clone(),
                start_time: Duration::ZERO,
                settings: s.clone(),
            };
            match scratch.wait_ready(failure).await {
                Ok(()) => {
                    scratch.start_time = started.elapsed();
                    return Ok(scratch);
                }
                Err(Ready::PortTaken(line)) => {
                    last = line;
                    socket_dir = SocketDir(std::mem::take(&mut scratch.socket_dir.0));
                }
                Err(Ready::Failed(reason)) => {
                    let _ = scratch.stop().await;
                    return Err(failed(
                        operation,
                        format!(
                            "the scratch server on {} did not come up: {reason}",
                            data_dir.display()
                        ),
                    ));
                }
            }
        }
        Err(failed(
            operation,
            format!("no free port for the scratch server after {PORT_TRIES} tries: {last}"),
        ))
    }

    /// The engine's settings it runs with (OS user, bin directory).
    pub fn settings(&self) -> &PostgresSettings {
        &self.settings
    }

    /// The socket directory: the tools' `-h`.
    pub fn host(&self) -> String {
        self.socket_dir.0.display().to_string()
    }

    /// The connection options of the tools (`-h <socket dir> -p <port> -U <superuser>`).
    pub fn login_args(&self) -> Vec<String> {
        vec![
            "-h".to_owned(),
            self.host(),
            "-p".to_owned(),
            self.port.to_string(),
            "-U".to_owned(),
            self.superuser.clone(),
            "--no-password".to_owned(),
        ]
    }

    /// A connection as the superuser.
    pub async fn connect(&self) -> Result<Client, sql::SqlError> {
        let who = Credentials {
            user: self.superuser.clone(),
            // Trusted on the private socket: no password is asked for.
            password: String::new(),
        };
        sql::connect(&self.host(), self.port, &who).await
    }

    async fn wait_ready(&mut self, failure: Option<FailureLine>) -> Result<(), Ready> {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if self.child.try_status().is_some() {
                let line = match failure {
                    Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .flatten(),
                    None => None,
                }
                .unwrap_or_else(|| "it exited; see its log lines above".to_owned());
                if line.contains("could not bind") || line.contains("could not create any TCP/IP") {
                    return Err(Ready::PortTaken(line));
                }
                return Err(Ready::Failed(line));
            }
            let last = match self.connect().await {
                Ok(client) => match sql::row(&client, "SELECT 1").await {
                    Ok(_) => return Ok(()),
                    Err(e) => format!("{e:?}"),
                },
                Err(e) => format!("{e:?}"),
            };
            if Instant::now() >= deadline {
                return Err(Ready::Failed(format!(
                    "no connection within {READY_LIMIT:?}: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the server has exited (a recovery that could not reach its target exits).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_status().is_some()
    }

    /// Fast shutdown (SIGINT), bounded; killed (with every backend) when it does not stop.
    pub async fn stop(mut self) -> Result<(), EngineError> {
        let op = "stop the scratch server";
        if self.child.try_status().is_some() {
            return Ok(());
        }
        let group = self.child.group();
        let _ = group.signal_leader(Signal::SIGINT);
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(st) if st.success() => Ok(()),
            Ok(st) => Err(failed(
                op,
                format!("postgres exited with {st} on fast shutdown"),
            )),
            Err(_) => {
                let _ = group.kill_tree();
                let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
                Err(failed(
                    op,
                    format!("postgres did not shut down within {STOP_LIMIT:?}; killed"),
                ))
            }
        }
    }

    /// A PostgreSQL program as the OS user, pointed at this server.
    pub fn tool(&self, program: &str, args: Vec<String>, timeout: Duration) -> ExecSpec {
        let mut all = self.login_args();
        all.extend(args);
        self.settings.tool(program, all, timeout)
    }
}

/// Why the scratch server did not come up.
enum Ready {
    /// Another process took the port between the check and the bind.
    PortTaken(String),
    /// Anything else.
    Failed(String),
}

/// The scratch server's command line.
fn command(
    s: &PostgresSettings,
    data_dir: &Path,
    socket_dir: &Path,
    hba: &Path,
    port: u16,
    extra: &[(&str, String)],
) -> ExecSpec {
    let mut argv = vec![
        s.bin("postgres"),
        "-D".to_owned(),
        data_dir.display().to_string(),
    ];
    let settings = [
        ("port", port.to_string()),
        ("listen_addresses", "127.0.0.1".to_owned()),
        ("unix_socket_directories", socket_dir.display().to_string()),
        ("hba_file", hba.display().to_string()),
        // Never streams from a primary nor fetches archived WAL, never archives.
        ("primary_conninfo", String::new()),
        ("primary_slot_name", String::new()),
        ("restore_command", String::new()),
        ("archive_mode", "off".to_owned()),
        // A backup of a primary carries its run-time settings (postgresql.auto.conf): a
        // synchronous standby that never comes would make every commit wait, a fence
        // would refuse writes.
        ("synchronous_standby_names", String::new()),
        ("default_transaction_read_only", "off".to_owned()),
        // Libraries of the source may be missing here; the check needs none.
        ("shared_preload_libraries", String::new()),
        ("logging_collector", "off".to_owned()),
        ("cluster_name", "autopilot-scratch".to_owned()),
    ];
    for (name, value) in settings.iter().chain(extra) {
        argv.push("-c".to_owned());
        argv.push(format!("{name}={value}"));
    }
    let mut spec = ExecSpec::new(argv);
    spec.kill_grace = Duration::from_secs(10);
    spec.user = s.run_as;
    spec
}

/// A free TCP port on 127.0.0.1 (the kernel's pick; released at once for the server).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("find a free port on 127.0.0.1: {e}"))
}
