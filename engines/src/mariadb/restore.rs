//! Restoring MariaDB backups ([`crate::backups::Restore`]) into a new data directory.
//!
//! - **Physical** chain: the full backup's `base` stream is extracted with `mbstream -x`
//!   into the target, each incremental's into a temporary directory beside it; `finish`
//!   prepares the target (`mariadb-backup --prepare`) and applies each incremental in order
//!   (`--prepare --incremental-dir`, MariaDB 10.11's documented procedure: no
//!   `--apply-log-only`), removes the temporary directories and hands the target to the
//!   server's OS user.
//! - **Logical**: `mariadb-install-db` into the target, a scratch server on it (socket only,
//!   `scratch.rs`), a temporary account that loads each stream through the `mariadb`
//!   client, in the order they were taken (the databases, then `users`: a table-level grant
//!   needs its table, while a routine's or view's definer may be created before its account);
//!   `finish` drops the temporary account and stops the server cleanly.
//!
//! The target must not exist or be empty: anything else is refused before anything is
//! written. A failed restore leaves what it wrote in the target (for inspection); remove it
//! before trying again.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::backup;
use super::conn::{self, quote};
use super::dump::{BASE_STREAM, DB_PREFIX, USERS_STREAM};
use super::prepare::{self, INSTALL_DB};
use super::scratch::{self, Listen, Scratch};
use super::settings::{Account, MariadbSettings};
use super::tools::{self, WorkDir, failed};
use crate::backups::{BackupMethod, Restore, RestoreSink, RestoreSpec, RestoreSteps, StreamPlan};
use crate::engine::EngineError;
use handlers::{Pipe, Piped, RunAs};

/// How long `mariadb-backup --prepare` and `mariadb-install-db` may take.
const PREPARE_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// How long a restore step's consumer may take once its input ended (the `mariadb` client
/// still executes the statements it read last).
const STEP_EXIT_LIMIT: Duration = Duration::from_secs(600);
/// The account a logical restore loads with (dropped at the end).
const RESTORE_USER: &str = "autopilot_restore";
/// MariaDB's command-line client (package `mariadb-client`).
const CLIENT: &str = "mariadb";

type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, EngineError>> + Send + 'a>>;

/// Start restoring `spec`: the target is checked and created, a logical restore's scratch
/// server started.
pub async fn begin(s: &MariadbSettings, spec: &RestoreSpec) -> Result<Restore, EngineError> {
    let op = "restore a backup";
    check_chain(spec).map_err(|reason| failed(op, reason))?;
    let target = &spec.target_dir;
    if !prepare::is_empty_dir(target)? {
        return Err(failed(
            op,
            format!(
                "the target {} exists and is not empty; restore into a new or empty directory (nothing was written)",
                target.display()
            ),
        ));
    }
    let owner = backup::run_as(s)?;
    std::fs::create_dir_all(target)
        .map_err(|e| failed(op, format!("create {}: {e}", target.display())))?;
    let name = target
        .file_name()
        .map_or_else(|| "restore".into(), |n| n.to_string_lossy().into_owned());
    // Beside the target (same file system), for the incrementals and the tools' stderr.
    let work = WorkDir::create(
        "create the restore's work directory",
        target.with_file_name(tools::unique(&format!(".{name}.restore"))),
        owner,
    )?;
    let inner: Box<dyn RestoreSteps> = match spec.method {
        BackupMethod::Physical => Box::new(Physical {
            env: s.env.clone(),
            owner,
            target: target.clone(),
            steps: spec.chain.len(),
            next: 0,
            work,
        }),
        BackupMethod::Logical => Box::new(Logical::begin(s, spec, owner, work).await?),
        BackupMethod::Unknown => {
            return Err(failed(
                op,
                "the backup method is unknown to this agent".into(),
            ));
        }
    };
    Ok(Restore { inner })
}

/// A chain a MariaDB restore can take: physical, every step one `base` stream; logical, one
/// step (no incrementals) of `db-*` and `users` streams.
fn check_chain(spec: &RestoreSpec) -> Result<(), String> {
    if spec.chain.is_empty() {
        return Err("the chain is empty; expected the full backup first".into());
    }
    let names = |step: &[StreamPlan]| step.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    match spec.method {
        BackupMethod::Physical => {
            for (i, step) in spec.chain.iter().enumerate() {
                if names(step) != [BASE_STREAM] {
                    return Err(format!(
                        "step {i} of a physical chain has streams {:?}; expected [\"base\"]",
                        names(step)
                    ));
                }
            }
        }
        BackupMethod::Logical => {
            if spec.chain.len() > 1 {
                return Err(
                    "a logical backup has no incrementals; expected a chain of one backup".into(),
                );
            }
            if let Some(bad) = spec.chain[0]
                .iter()
                .find(|p| p.name != USERS_STREAM && !p.name.starts_with(DB_PREFIX))
            {
                return Err(format!(
                    "a logical backup has no stream {:?}; expected db-<name> and users",
                    bad.name
                ));
            }
        }
        BackupMethod::Unknown => {
            return Err(
                "the backup method is unknown to this agent (written by a newer version); expected physical or logical"
                    .into(),
            );
        }
    }
    Ok(())
}

/// An error of one step's stream, named.
fn in_step(e: EngineError, step: usize, stream: &str) -> EngineError {
    match e {
        EngineError::Failed { operation, reason } => EngineError::Failed {
            operation,
            reason: format!("step {step}, stream {stream}: {reason}"),
        },
        other => other,
    }
}

/// A physical chain being restored.
struct Physical {
    env: Vec<(String, String)>,
    owner: Option<RunAs>,
    target: PathBuf,
    /// How many backups the chain has.
    steps: usize,
    /// The step whose stream comes next.
    next: usize,
    /// Incremental directories (`inc-<step>`) and stderr files; removed at the end.
    work: WorkDir,
}

impl Physical {
    fn inc_dir(&self, step: usize) -> PathBuf {
        self.work.path().join(format!("inc-{step}"))
    }
}

impl RestoreSteps for Physical {
    fn sink<'a>(&'a mut self, step: usize, stream: &'a str) -> Fut<'a, RestoreSink> {
        Box::pin(async move {
            let op = "extract a physical backup (mbstream)";
            if step != self.next || stream != BASE_STREAM {
                return Err(failed(
                    op,
                    format!(
                        "got step {step}, stream {stream:?}; expected step {}, stream \"base\" (streams in the chain's order)",
                        self.next
                    ),
                ));
            }
            let dir = if step == 0 {
                self.target.clone()
            } else {
                let d = self.inc_dir(step);
                std::fs::create_dir(&d).map_err(|e| failed(op, format!("{}: {e}", d.display())))?;
                d
            };
            // mbstream runs as the agent; `finish` hands the result to the server's user.
            let stderr = self.work.path().join(format!("mbstream-{step}.log"));
            let (mut child, stdin) = tools::spawn_mbstream(op, &self.env, None, &dir, &stderr)
                .map_err(|e| in_step(e, step, stream))?;
            self.next += 1;
            let stream = stream.to_owned();
            Ok(RestoreSink {
                input: Box::pin(stdin),
                finisher: Box::pin(async move {
                    tools::wait_tool(op, tools::MBSTREAM, &mut child, STEP_EXIT_LIMIT, &stderr)
                        .await
                        .map_err(|e| in_step(e, step, &stream))
                }),
            })
        })
    }

    fn finish(self: Box<Self>) -> Fut<'static, ()> {
        Box::pin(async move {
            if self.next < self.steps {
                return Err(failed(
                    "restore a backup",
                    format!(
                        "only {} of the chain's {} backups were given; restore every step",
                        self.next, self.steps
                    ),
                ));
            }
            tools::prepare_dir(&self.env, None, &self.target, None, PREPARE_LIMIT)
                .await
                .map_err(|e| in_step(e, 0, BASE_STREAM))?;
            for step in 1..self.steps {
                let inc = self.inc_dir(step);
                tools::prepare_dir(&self.env, None, &self.target, Some(&inc), PREPARE_LIMIT)
                    .await
                    .map_err(|e| in_step(e, step, BASE_STREAM))?;
                let _ = std::fs::remove_dir_all(&inc);
            }
            tools::give_tree(&self.target, self.owner)?;
            drop(self.work);
            Ok(())
        })
    }
}

/// A logical backup being loaded into a scratch server.
struct Logical {
    env: Vec<(String, String)>,
    owner: Option<RunAs>,
    target: PathBuf,
    /// The streams, in the order they are loaded.
    streams: Vec<String>,
    /// How many were given.
    next: usize,
    /// The server the streams are loaded into.
    scratch: Scratch,
    /// The temporary account, and its options file for the client.
    account: Account,
    cnf: PathBuf,
    /// Stderr files; removed at the end.
    work: WorkDir,
}

impl Logical {
    async fn begin(
        s: &MariadbSettings,
        spec: &RestoreSpec,
        owner: Option<RunAs>,
        work: WorkDir,
    ) -> Result<Logical, EngineError> {
        let target = spec.target_dir.clone();
        tools::give(&target, owner)?;
        let mut argv = vec![
            INSTALL_DB.to_owned(),
            "--no-defaults".to_owned(),
            format!("--datadir={}", target.display()),
            format!("--tmpdir={}", work.path().display()),
            // root@localhost without a password, reachable only through the scratch
            // server's private socket, and switched to unix_socket before anything loads.
            "--auth-root-authentication-method=normal".to_owned(),
            "--skip-test-db".to_owned(),
            "--cross-bootstrap".to_owned(),
        ];
        if let Some(user) = &s.os_user {
            argv.push(format!("--user={user}"));
        }
        tools::run_tool(
            "initialise the data directory to load into (mariadb-install-db)",
            &s.env,
            None,
            argv,
            PREPARE_LIMIT,
        )
        .await?;
        let root = Account {
            user: "root".to_owned(),
            password: String::new(),
        };
        let scratch = scratch::start(s, &target, Listen::SocketOnly, &root).await?;
        let account = Account {
            user: RESTORE_USER.to_owned(),
            password: random_password()?,
        };
        let op = "create the restore's temporary account";
        let mut c = conn::on_socket(&scratch.socket(), &root)
            .await
            .map_err(|e| conn::failed(op, &e, true))?;
        let user = format!("{}@'localhost'", quote(&account.user));
        let statements = [
            format!(
                "CREATE USER {user} IDENTIFIED BY {}",
                quote(&account.password)
            ),
            format!("GRANT ALL PRIVILEGES ON *.* TO {user} WITH GRANT OPTION"),
            // The `users` stream grants root PROXY, which only a holder of it may grant.
            format!("GRANT PROXY ON ''@'%' TO {user} WITH GRANT OPTION"),
            // The backup's `users` stream replaces root with the backed-up server's (the
            // engine's data has it on unix_socket); until then nobody logs in without one.
            "ALTER USER root@localhost IDENTIFIED VIA unix_socket".to_owned(),
        ];
        for sql in statements {
            conn::bounded(op, true, c.query_drop(sql)).await?;
        }
        let _ = c.disconnect().await;
        let cnf = work.path().join("client.cnf");
        backup::write_private(&cnf, &backup::client_options(&account), None)?;
        Ok(Logical {
            env: s.env.clone(),
            owner,
            target,
            streams: spec.chain[0].iter().map(|p| p.name.clone()).collect(),
            next: 0,
            scratch,
            account,
            cnf,
            work,
        })
    }
}

/// A password for the temporary account: 32 hex digits from the OS.
fn random_password() -> Result<String, EngineError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| {
        failed(
            "create the restore's temporary account",
            format!("no random password from the OS: {e}"),
        )
    })?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

impl RestoreSteps for Logical {
    fn sink<'a>(&'a mut self, step: usize, stream: &'a str) -> Fut<'a, RestoreSink> {
        Box::pin(async move {
            let op = "load a logical backup (mariadb)";
            let expected = self.streams.get(self.next);
            if step != 0 || expected.map(String::as_str) != Some(stream) {
                return Err(failed(
                    op,
                    format!(
                        "got step {step}, stream {stream:?}; expected step 0, stream {:?} (streams in the chain's order)",
                        expected.map_or("none: every stream was given", String::as_str)
                    ),
                ));
            }
            let argv = vec![
                CLIENT.to_owned(),
                format!("--defaults-extra-file={}", self.cnf.display()),
                format!("--socket={}", self.scratch.socket().display()),
                // A dump's binary column values reach the server as they are.
                "--binary-mode".to_owned(),
            ];
            let stderr = self.work.path().join(format!("{stream}.log"));
            let (mut child, pipe) =
                tools::spawn_logged(op, &self.env, None, argv, &stderr, Piped::Stdin)
                    .map_err(|e| in_step(e, step, stream))?;
            let Pipe::Stdin(stdin) = pipe else {
                return Err(failed(op, "the client's input pipe is missing".into()));
            };
            self.next += 1;
            let stream = stream.to_owned();
            Ok(RestoreSink {
                input: Box::pin(stdin),
                finisher: Box::pin(async move {
                    tools::wait_tool(op, CLIENT, &mut child, STEP_EXIT_LIMIT, &stderr)
                        .await
                        .map_err(|e| in_step(e, step, &stream))
                }),
            })
        })
    }

    fn finish(self: Box<Self>) -> Fut<'static, ()> {
        Box::pin(async move {
            let op = "finish loading the logical backup";
            if self.next < self.streams.len() {
                return Err(failed(
                    op,
                    format!(
                        "stream {:?} was not given; restore every stream of the backup",
                        self.streams[self.next]
                    ),
                ));
            }
            let mut c = conn::on_socket(&self.scratch.socket(), &self.account)
                .await
                .map_err(|e| conn::failed(op, &e, true))?;
            let drop_user = format!("DROP USER {}@'localhost'", quote(&self.account.user));
            let dropped = conn::bounded(op, false, c.query_drop(drop_user)).await;
            let _ = c.disconnect().await;
            dropped?;
            self.scratch.stop().await?;
            tools::give_tree(&self.target, self.owner)?;
            drop(self.work);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str) -> StreamPlan {
        StreamPlan {
            name: name.to_owned(),
            database: None,
        }
    }

    #[test]
    fn chains_are_checked_before_anything_is_written() {
        let spec = |method, chain: Vec<Vec<StreamPlan>>| RestoreSpec {
            method,
            target_dir: "/nonexistent".into(),
            chain,
        };
        assert!(check_chain(&spec(BackupMethod::Physical, vec![])).is_err());
        check_chain(&spec(
            BackupMethod::Physical,
            vec![vec![plan("base")], vec![plan("base")]],
        ))
        .expect("a full and an incremental");
        assert!(check_chain(&spec(BackupMethod::Physical, vec![vec![plan("db-x")]])).is_err());
        check_chain(&spec(
            BackupMethod::Logical,
            vec![vec![plan("db-a"), plan("users")]],
        ))
        .expect("logical");
        assert!(
            check_chain(&spec(
                BackupMethod::Logical,
                vec![vec![plan("users")], vec![plan("users")]]
            ))
            .is_err()
        );
        assert!(check_chain(&spec(BackupMethod::Logical, vec![vec![plan("base")]])).is_err());
    }

    /// A non-empty target is refused, named, and left exactly as it was.
    #[tokio::test]
    async fn a_non_empty_target_is_refused_untouched() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("t");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("keep"), b"mine").expect("write");
        let mut s = super::super::settings::tests::settings();
        s.os_user = None;
        let spec = RestoreSpec {
            method: BackupMethod::Physical,
            target_dir: target.clone(),
            chain: vec![vec![plan("base")]],
        };
        let err = begin(&s, &spec).await.expect_err("not empty");
        assert!(
            err.to_string().contains(&target.display().to_string())
                && err.to_string().contains("not empty"),
            "{err}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert_eq!(left.len(), 1, "nothing beside the target");
        assert_eq!(std::fs::read(target.join("keep")).expect("kept"), b"mine");
    }
}
