//! Restoring a PostgreSQL backup into a new directory, and checking a restored one (the
//! interface is [`crate::backups`]).
//!
//! - **Physical**: the `base` tar is extracted (`tar -x`, as the database's OS user) into
//!   the target; `finish` then makes it a standalone server's directory: no
//!   `standby.signal`/`recovery.signal`, none of the run-time settings the engine keeps in
//!   `postgresql.auto.conf` (`primary_conninfo`, `primary_slot_name`,
//!   `synchronous_standby_names`, `default_transaction_read_only`: the operator's own
//!   `ALTER SYSTEM` settings stay), no replication password file. Its first start replays
//!   the WAL inside the backup up to the end point the backup recorded.
//! - **Logical**: `initdb` into the target (as the engine initialises a node: checksums,
//!   UTF8, the configured superuser), a [`Scratch`] server on it, `psql -f` of the globals
//!   (roles with their password hashes), then per database `pg_restore --create --clean
//!   --if-exists --exit-on-error` from the stream on stdin (a custom-format archive read
//!   sequentially; parallel restore would need a file), and a clean stop.
//!
//! Checking a restored directory is `check.rs`.
//!
//! PostgreSQL 15 backups are full backups: a chain of more than one is refused.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use handlers::exec::{Captured, RunOutcome, run_capture};
use handlers::{ManagedChild, Pipe, Piped};
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt as _;

use super::datadir::{self, PASSFILE, give, write_file};
use super::dump::{BASE, GLOBALS, database_of};
use super::scratch::Scratch;
use super::settings::PostgresSettings;
use crate::backups::{BackupMethod, Restore, RestoreSink, RestoreSpec, RestoreSteps, StreamPlan};
use crate::engine::EngineError;

/// How long `tar` may take once its input ended.
const TAR_LIMIT: Duration = Duration::from_secs(600);
/// How long `pg_restore` may take once its input ended (indexes and constraints are built
/// after the data).
const PG_RESTORE_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// How long the globals may take to apply.
const PSQL_LIMIT: Duration = Duration::from_secs(600);
/// The most a globals stream may hold (roles and tablespaces: kilobytes in practice).
const GLOBALS_MAX: u64 = 256 << 20;
/// Settings the engine writes into `postgresql.auto.conf` (`ALTER SYSTEM`, or while the
/// server is down) that tie a directory to its cluster's replication.
const ENGINE_AUTO_SETTINGS: &[&str] = &[
    "primary_conninfo",
    "primary_slot_name",
    "synchronous_standby_names",
    "default_transaction_read_only",
];

fn failed(operation: &'static str, reason: impl Into<String>) -> EngineError {
    EngineError::Failed {
        operation,
        reason: reason.into(),
    }
}

/// The settings with `data_dir` pointing at the target (initdb, file ownership).
pub(super) fn at(s: &PostgresSettings, target: &Path) -> PostgresSettings {
    let mut t = s.clone();
    t.data_dir = target.to_path_buf();
    t
}

/// See [`crate::Engine::begin_restore`].
pub async fn begin(s: &PostgresSettings, spec: &RestoreSpec) -> Result<Restore, EngineError> {
    let op = "restore a backup";
    let streams = match spec.chain.as_slice() {
        [full] => full.clone(),
        [] => return Err(failed(op, "the chain to restore is empty; name a backup")),
        chain => {
            return Err(failed(
                op,
                format!(
                    "PostgreSQL backups are full backups, but the chain has {} backups; restore \
                     the full backup alone",
                    chain.len()
                ),
            ));
        }
    };
    check_streams(spec.method, &streams)?;
    let target = &spec.target_dir;
    if target.is_file() || target.is_symlink() {
        return Err(failed(
            op,
            format!("{} exists and is not a directory", target.display()),
        ));
    }
    let occupied = std::fs::read_dir(target)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(failed(
            op,
            format!(
                "{} exists and is not empty; restore into a new or empty directory",
                target.display()
            ),
        ));
    }
    let t = at(s, target);
    datadir::ensure_dir(&t).map_err(|e| failed(op, e))?;
    let inner: Box<dyn RestoreSteps> = match spec.method {
        BackupMethod::Logical => {
            datadir::initdb(&t).await?;
            let scratch = Scratch::start(&t, target, "start a server to restore into").await?;
            Box::new(Logical {
                s: t,
                scratch: Some(scratch),
                expected: streams.into_iter().map(|p| p.name).collect(),
            })
        }
        _ => Box::new(Physical {
            s: t,
            expected: streams.into_iter().map(|p| p.name).collect(),
        }),
    };
    Ok(Restore { inner })
}

/// The streams must be what this engine's backups of `method` consist of.
fn check_streams(method: BackupMethod, streams: &[StreamPlan]) -> Result<(), EngineError> {
    let op = "restore a backup";
    let names: Vec<&str> = streams.iter().map(|p| p.name.as_str()).collect();
    let ok = match method {
        BackupMethod::Physical => names == [BASE],
        BackupMethod::Logical => {
            names.first() == Some(&GLOBALS) && names[1..].iter().all(|n| database_of(n).is_some())
        }
        BackupMethod::Unknown => false,
    };
    if ok {
        Ok(())
    } else {
        Err(failed(
            op,
            format!(
                "a {} PostgreSQL backup has the streams {}, not {names:?}",
                method.as_str(),
                match method {
                    BackupMethod::Physical => "[\"base\"]",
                    _ => "[\"globals\", \"db-<name>\", …]",
                }
            ),
        ))
    }
}

/// The next stream must be `stream` of step 0, in the chain's order.
fn take_next(
    expected: &mut VecDeque<String>,
    step: usize,
    stream: &str,
) -> Result<(), EngineError> {
    let op = "restore a backup stream";
    if step != 0 {
        return Err(failed(
            op,
            format!("PostgreSQL backups are full backups: there is no step {step}"),
        ));
    }
    match expected.front() {
        Some(next) if next == stream => {
            expected.pop_front();
            Ok(())
        }
        Some(next) => Err(failed(
            op,
            format!(
                "stream {stream:?} came before {next:?}; streams are restored in the backup's order"
            ),
        )),
        None => Err(failed(
            op,
            format!("stream {stream:?} is not part of the backup, or was restored already"),
        )),
    }
}

/// Every stream must have been restored before `finish`.
fn all_taken(expected: &VecDeque<String>) -> Result<(), EngineError> {
    match expected.front() {
        None => Ok(()),
        Some(next) => Err(failed(
            "finish the restore",
            format!("stream {next:?} was not restored ({} left)", expected.len()),
        )),
    }
}

/// Start `program` (a PostgreSQL program in `bin_dir`, or `tar`) as the OS user with its
/// stdin as the sink's input; the finisher waits (bounded by `limit` once the input closed).
fn piped_sink(
    s: &PostgresSettings,
    argv: Vec<String>,
    name: &'static str,
    stream: &str,
    limit: Duration,
    env: Vec<(String, String)>,
) -> Result<RestoreSink, EngineError> {
    let op = "restore a backup stream";
    let mut spec = handlers::ExecSpec::new(argv);
    spec.user = s.run_as;
    spec.kill_grace = Duration::from_secs(5);
    let (mut child, pipe) =
        ManagedChild::spawn_piped(name, &spec, &env, Piped::Stdin).map_err(|e| {
            failed(
                op,
                format!("stream {stream}: {}", handlers::error_chain(&e)),
            )
        })?;
    let Pipe::Stdin(input) = pipe else {
        return Err(failed(
            op,
            format!("stream {stream}: {name}'s input pipe is missing"),
        ));
    };
    let stream = stream.to_owned();
    let finisher = async move {
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(st) => st,
            Err(_) => {
                child.stop(Signal::SIGTERM, Duration::from_secs(5)).await;
                return Err(failed(
                    op,
                    format!(
                        "stream {stream}: {name} did not finish within {limit:?} after its input ended; stopped"
                    ),
                ));
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(failed(
                op,
                format!(
                    "stream {stream}: {name} exited with {status}; its messages are in the agent log (process = {name})"
                ),
            ))
        }
    };
    Ok(RestoreSink {
        input: Box::pin(input),
        finisher: Box::pin(finisher),
    })
}

/// A physical restore: the base tar into the target.
struct Physical {
    /// The engine's settings with the target as data directory.
    s: PostgresSettings,
    /// Streams not restored yet.
    expected: VecDeque<String>,
}

impl RestoreSteps for Physical {
    fn sink<'a>(
        &'a mut self,
        step: usize,
        stream: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<RestoreSink, EngineError>> + Send + 'a>> {
        Box::pin(async move {
            take_next(&mut self.expected, step, stream)?;
            let argv = vec![
                "tar".to_owned(),
                "-x".to_owned(),
                "--no-same-owner".to_owned(),
                "-f".to_owned(),
                "-".to_owned(),
                "-C".to_owned(),
                self.s.data_dir.display().to_string(),
            ];
            piped_sink(&self.s, argv, "tar", stream, TAR_LIMIT, Vec::new())
        })
    }

    fn finish(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>> {
        Box::pin(async move {
            all_taken(&self.expected)?;
            standalone(&self.s).map_err(|e| failed("finish the restore", e))
        })
    }
}

/// Make an extracted base backup a standalone server's directory (see the module doc).
fn standalone(s: &PostgresSettings) -> Result<(), String> {
    let dir = &s.data_dir;
    if !dir.join("PG_VERSION").exists() {
        return Err(format!(
            "{} holds no PostgreSQL data directory after the base stream (no PG_VERSION)",
            dir.display()
        ));
    }
    for name in ["standby.signal", "recovery.signal", PASSFILE] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", path.display())),
        }
    }
    let auto = dir.join("postgresql.auto.conf");
    if auto.exists() {
        let text =
            std::fs::read_to_string(&auto).map_err(|e| format!("read {}: {e}", auto.display()))?;
        write_file(s, &auto, &without_engine_settings(&text), 0o600)?;
    }
    give(s, dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

/// `postgresql.auto.conf` without the settings the engine keeps there.
pub fn without_engine_settings(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let name = line
            .trim_start()
            .split(|c: char| c == '=' || c.is_whitespace())
            .next()
            .unwrap_or("");
        if ENGINE_AUTO_SETTINGS.contains(&name) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A logical restore: dumps loaded into a scratch server on a new cluster.
struct Logical {
    /// The engine's settings with the target as data directory.
    s: PostgresSettings,
    /// The server the dumps go into (taken by `finish`).
    scratch: Option<Scratch>,
    /// Streams not restored yet.
    expected: VecDeque<String>,
}

impl RestoreSteps for Logical {
    fn sink<'a>(
        &'a mut self,
        step: usize,
        stream: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<RestoreSink, EngineError>> + Send + 'a>> {
        Box::pin(async move {
            take_next(&mut self.expected, step, stream)?;
            let scratch = self
                .scratch
                .as_ref()
                .ok_or_else(|| failed("restore a backup stream", "the restore server is gone"))?;
            if stream == GLOBALS {
                return Ok(globals_sink(scratch));
            }
            let mut argv = vec![self.s.bin("pg_restore")];
            argv.extend(scratch.login_args());
            argv.extend(
                [
                    "--create",
                    "--clean",
                    "--if-exists",
                    "--exit-on-error",
                    "--dbname=template1",
                ]
                .map(str::to_owned),
            );
            let env = vec![("LC_ALL".to_owned(), "C".to_owned())];
            piped_sink(&self.s, argv, "pg_restore", stream, PG_RESTORE_LIMIT, env)
        })
    }

    fn finish(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send>> {
        Box::pin(async move {
            let Logical {
                s,
                scratch,
                expected,
            } = *self;
            let stopped = match scratch {
                Some(sc) => sc.stop().await,
                None => Ok(()),
            };
            all_taken(&expected)?;
            stopped?;
            give(&s, &s.data_dir).map_err(|e| failed("finish the restore", e))
        })
    }
}

/// The globals: collected (bounded), then applied with `psql` as one script that stops at
/// the first error. The one statement that must fail is left out: `CREATE ROLE` of the
/// superuser initdb made (the `ALTER ROLE` after it still sets its password hash and
/// attributes from the backup).
fn globals_sink(scratch: &Scratch) -> RestoreSink {
    let (input, mut output) = tokio::io::duplex(64 * 1024);
    let collect = tokio::spawn(async move {
        let mut text = Vec::new();
        (&mut output)
            .take(GLOBALS_MAX + 1)
            .read_to_end(&mut text)
            .await
            .map(|_| text)
    });
    let superuser = scratch.superuser.clone();
    let spec_for = {
        let file = scratch_file(scratch);
        let spec = scratch.tool(
            "psql",
            vec![
                "-X".to_owned(),
                "-q".to_owned(),
                "-v".to_owned(),
                "ON_ERROR_STOP=1".to_owned(),
                "--dbname=postgres".to_owned(),
                "-f".to_owned(),
                file.display().to_string(),
            ],
            PSQL_LIMIT,
        );
        (file, spec)
    };
    let owner = scratch_owner(scratch);
    let finisher = async move {
        let op = "restore a backup stream";
        let text = collect
            .await
            .map_err(|e| failed(op, format!("stream globals: {e}")))?
            .map_err(|e| failed(op, format!("stream globals: read: {e}")))?;
        if text.len() as u64 > GLOBALS_MAX {
            return Err(failed(
                op,
                format!("stream globals: larger than {GLOBALS_MAX} bytes; not a globals dump"),
            ));
        }
        let script = without_create_role(&String::from_utf8_lossy(&text), &superuser);
        let (file, spec) = spec_for;
        write_file(&owner, &file, &script, 0o600).map_err(|e| failed(op, e))?;
        let env = vec![("LC_ALL".to_owned(), "C".to_owned())];
        let ran = run_capture("psql", &spec, &env).await;
        let _ = std::fs::remove_file(&file);
        match ran {
            Ok(Captured {
                outcome: RunOutcome::Exited(st),
                ..
            }) if st.success() => Ok(()),
            Ok(Captured {
                outcome: RunOutcome::Exited(st),
                failure,
                ..
            }) => Err(failed(
                op,
                format!(
                    "stream globals: psql exited with {st}: {}",
                    failure.unwrap_or_else(|| "see its output in the agent log".to_owned())
                ),
            )),
            Ok(Captured {
                outcome: RunOutcome::TimedOut,
                ..
            }) => Err(failed(
                op,
                format!("stream globals: psql timed out after {PSQL_LIMIT:?}"),
            )),
            Err(e) => Err(failed(
                op,
                format!("stream globals: {}", handlers::error_chain(&e)),
            )),
        }
    };
    RestoreSink {
        input: Box::pin(input),
        finisher: Box::pin(finisher),
    }
}

/// Where the globals script is kept while `psql` runs: the scratch server's private
/// directory.
fn scratch_file(scratch: &Scratch) -> PathBuf {
    PathBuf::from(scratch.host()).join("globals.sql")
}

/// Settings whose only use is the file owner (the OS user) for [`write_file`].
fn scratch_owner(scratch: &Scratch) -> PostgresSettings {
    scratch.settings().clone()
}

/// `pg_dumpall --globals-only` output without `CREATE ROLE <superuser>;` (either quoting).
pub fn without_create_role(script: &str, superuser: &str) -> String {
    let plain = format!("CREATE ROLE {superuser};");
    let quoted = format!("CREATE ROLE {};", super::settings::ident(superuser));
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let l = line.trim();
        if l == plain || l == quoted {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_replication_settings_leave_postgresql_auto_conf() {
        let text = "# Do not edit this file manually!\n\
                    work_mem = '8MB'\n\
                    primary_conninfo = 'host=10.0.0.1 passfile=x'\n\
                    primary_slot_name = 'autopilot_b'\n\
                    synchronous_standby_names = 'ANY 1 (\"autopilot_b\")'\n\
                    default_transaction_read_only = 'on'\n";
        assert_eq!(
            without_engine_settings(text),
            "# Do not edit this file manually!\nwork_mem = '8MB'\n"
        );
    }

    #[test]
    fn only_the_bootstrap_superusers_create_role_is_left_out() {
        let g = "CREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nCREATE ROLE postgres;\n\
                 ALTER ROLE postgres WITH SUPERUSER PASSWORD 'SCRAM';\n";
        assert_eq!(
            without_create_role(g, "postgres"),
            "CREATE ROLE app;\nALTER ROLE app WITH LOGIN;\nALTER ROLE postgres WITH SUPERUSER PASSWORD 'SCRAM';\n"
        );
        let q = "CREATE ROLE \"Admin\";\nCREATE ROLE admin2;\n";
        assert_eq!(without_create_role(q, "Admin"), "CREATE ROLE admin2;\n");
    }

    #[test]
    fn chains_and_streams_are_checked() {
        let plan = |n: &[&str]| -> Vec<StreamPlan> {
            n.iter()
                .map(|n| StreamPlan {
                    name: (*n).to_owned(),
                    database: None,
                })
                .collect()
        };
        assert!(check_streams(BackupMethod::Physical, &plan(&["base"])).is_ok());
        assert!(check_streams(BackupMethod::Physical, &plan(&["globals"])).is_err());
        assert!(check_streams(BackupMethod::Logical, &plan(&["globals", "db-a", "db-b"])).is_ok());
        assert!(check_streams(BackupMethod::Logical, &plan(&["db-a", "globals"])).is_err());
        let mut expected: VecDeque<String> = ["globals", "db-a"].map(String::from).into();
        assert!(take_next(&mut expected, 0, "db-a").is_err());
        assert!(take_next(&mut expected, 1, "globals").is_err());
        assert!(take_next(&mut expected, 0, "globals").is_ok());
        assert!(all_taken(&expected).is_err());
        assert!(take_next(&mut expected, 0, "db-a").is_ok());
        assert!(all_taken(&expected).is_ok());
    }

    #[tokio::test]
    async fn a_chain_of_several_backups_or_a_non_empty_target_is_refused_before_anything_is_written()
     {
        let root = tempfile::tempdir().expect("tempdir");
        let s = PostgresSettings {
            node_id: "n".into(),
            bin_dir: "/nonexistent".into(),
            data_dir: root.path().join("data"),
            listen: "127.0.0.1".into(),
            port: 1,
            superuser: super::super::Credentials {
                user: "postgres".into(),
                password: "x".into(),
            },
            replication: super::super::Credentials {
                user: "r".into(),
                password: "x".into(),
            },
            backup: None,
            durability: super::super::Durability::Async,
            run_as: None,
            max_slot_wal_keep_size: "4GB".into(),
            parameters: Vec::new(),
            stop_timeout: Duration::from_secs(1),
            archive: None,
        };
        let base = vec![StreamPlan {
            name: "base".into(),
            database: None,
        }];
        let target = root.path().join("restore");
        let spec = RestoreSpec {
            method: BackupMethod::Physical,
            target_dir: target.clone(),
            chain: vec![base.clone(), base.clone()],
        };
        let e = begin(&s, &spec).await.expect_err("chain").to_string();
        assert!(e.contains("chain has 2 backups"), "{e}");
        assert!(!target.exists());
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("keep"), b"mine").expect("write");
        let spec = RestoreSpec {
            chain: vec![base],
            ..spec
        };
        let e = begin(&s, &spec).await.expect_err("occupied").to_string();
        assert!(e.contains(&target.display().to_string()), "{e}");
        assert!(e.contains("not empty"), "{e}");
        assert_eq!(std::fs::read(target.join("keep")).expect("kept"), b"mine");
        assert_eq!(std::fs::read_dir(&target).expect("dir").count(), 1);
    }
}
