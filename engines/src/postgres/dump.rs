//! Backups of the local PostgreSQL server through its own tools (issue 17; the interface is
//! [`crate::backups`]).
//!
//! - **Physical**: one stream, `base`: `pg_basebackup -D - -F tar -X fetch
//!   --checkpoint=fast`, the whole server as one tar on stdout with the WAL it needs to be
//!   consistent inside (`-X stream` cannot write to stdout) and the backup manifest as its
//!   last member. Works on a standby (where backups normally run). The position is the end
//!   of the backup's WAL, read from that manifest as the stream passes ([`super::tarscan`]).
//!   PostgreSQL 15 has no incremental base backups: `Incremental` is refused.
//! - **Logical**: `globals` first (`pg_dumpall --globals-only`: roles with their password
//!   hashes, memberships, tablespaces), then one stream `db-<name>` per database
//!   (`pg_dump -Fc --create`: the archive also carries the database's own properties —
//!   owner, encoding, settings, privileges — which `pg_restore --create` brings back).
//!   No databases named means every database that accepts connections and is not a
//!   template, `postgres` included (it holds whatever users put there). No position: each
//!   `pg_dump` reads its own snapshot, so a logical backup has no single point in the WAL.
//!
//! The tools connect to the server the way the agent does (TCP to `listen:port`: the
//! engine runs the server without a Unix socket) as the backup role, or as the superuser when
//! none is configured. The password reaches them in the child's environment only
//! (`PGPASSWORD`), never on a command line or in a log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use handlers::exec::{Captured, RunOutcome, run_capture};
use handlers::{ExecSpec, ManagedChild, Pipe, Piped};
use nix::sys::signal::Signal;

use super::settings::PostgresSettings;
use super::{PostgresEngine, sql, tarscan};
use crate::backups::{BackupMethod, BackupSpec, BackupType, StreamDone, StreamPlan, ToolStream};
use crate::engine::EngineError;

/// The physical backup's one stream.
pub const BASE: &str = "base";
/// The logical backup's roles and tablespaces.
pub const GLOBALS: &str = "globals";
/// What a logical backup's database streams start with.
const DB_PREFIX: &str = "db-";
/// How long a tool may take to exit once its output ended.
const EXIT_LIMIT: Duration = Duration::from_secs(120);
/// How long `--version` may take.
const VERSION_LIMIT: Duration = Duration::from_secs(10);
/// The `application_name` of the backup tools' sessions (visible in `pg_stat_activity`).
const APPLICATION: &str = "autopilot-backup";

fn failed(operation: &'static str, reason: impl Into<String>) -> EngineError {
    EngineError::Failed {
        operation,
        reason: reason.into(),
    }
}

/// Refuses what PostgreSQL cannot do: incremental base backups (PostgreSQL 17 has them, 15
/// does not), and methods or types this build does not know.
pub fn check_spec(method: BackupMethod, backup_type: BackupType) -> Result<(), EngineError> {
    let op = "take a backup";
    match backup_type {
        BackupType::Full => {}
        BackupType::Incremental => {
            return Err(failed(
                "take an incremental backup",
                "PostgreSQL 15 has no incremental base backups (PostgreSQL 17 adds them); \
                 use type: full",
            ));
        }
        BackupType::Unknown => {
            return Err(failed(
                op,
                "the backup type is unknown to this agent; expected full",
            ));
        }
    }
    match method {
        BackupMethod::Physical | BackupMethod::Logical => Ok(()),
        BackupMethod::Unknown => Err(failed(
            op,
            "the backup method is unknown to this agent; expected physical or logical",
        )),
    }
}

/// The stream of database `db`: `db-<name>`, when the name can be one segment of a
/// repository key (ASCII letters, digits, `.`, `_`, `-`; not starting with `.`), the rule the
/// backup repositories apply to stream names.
pub fn stream_name(db: &str) -> Result<String, EngineError> {
    let ok = !db.is_empty()
        && !db.starts_with('.')
        && db
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(format!("{DB_PREFIX}{db}"))
    } else {
        Err(failed(
            "plan a logical backup",
            format!(
                "database {db:?} cannot be a backup stream (db-<name>): stream names allow only \
                 ASCII letters, digits, '.', '_' and '-'; rename the database or name the \
                 others in the job's `databases`"
            ),
        ))
    }
}

/// The database a `db-<name>` stream holds.
pub fn database_of(stream: &str) -> Option<&str> {
    stream.strip_prefix(DB_PREFIX).filter(|d| !d.is_empty())
}

/// The logical backup's plan for `databases`: `globals`, then each database's stream.
pub fn logical_plan(databases: &[String]) -> Result<Vec<StreamPlan>, EngineError> {
    let mut plan = vec![StreamPlan {
        name: GLOBALS.to_owned(),
        database: None,
    }];
    for db in databases {
        let name = stream_name(db)?;
        if plan.iter().any(|p| p.name == name) {
            continue;
        }
        plan.push(StreamPlan {
            name,
            database: Some(db.clone()),
        });
    }
    Ok(plan)
}

/// The program a stream runs: `spec.tool` for the main tool (`pg_basebackup`, `pg_dump`),
/// and for `pg_dumpall` the program of that name beside it; the engine's bin directory
/// without one.
fn program(s: &PostgresSettings, spec: &BackupSpec, name: &str, main: bool) -> PathBuf {
    match &spec.tool {
        Some(t) if main => t.clone(),
        Some(t) => t.with_file_name(name),
        None => s.bin_dir.join(name),
    }
}

/// The connection options every tool takes (no password: that is in the environment).
fn login_args(s: &PostgresSettings) -> Vec<String> {
    vec![
        "-h".to_owned(),
        s.listen.clone(),
        "-p".to_owned(),
        s.port.to_string(),
        "-U".to_owned(),
        s.backup_login().user.clone(),
        "--no-password".to_owned(),
    ]
}

/// The child's environment: the password (never logged: `ExecSpec` shows keys only),
/// messages in English, a bounded connect, the session's name.
fn tool_env(s: &PostgresSettings) -> Vec<(String, String)> {
    vec![
        ("PGPASSWORD".to_owned(), s.backup_login().password.clone()),
        ("PGCONNECT_TIMEOUT".to_owned(), "10".to_owned()),
        ("PGAPPNAME".to_owned(), APPLICATION.to_owned()),
        ("LC_ALL".to_owned(), "C".to_owned()),
    ]
}

/// The tool's version line (`pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`), when it
/// says.
async fn tool_version(s: &PostgresSettings, program: &Path) -> Option<String> {
    let mut spec = ExecSpec::new([program.display().to_string(), "--version".to_owned()]);
    spec.timeout = Some(VERSION_LIMIT);
    spec.kill_grace = Duration::from_secs(2);
    spec.user = s.run_as;
    match run_capture("version", &spec, &[]).await {
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            stdout,
            ..
        }) if st.success() => stdout
            .lines()
            .next()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty()),
        _ => None,
    }
}

impl PostgresEngine {
    /// See [`crate::Engine::backup_streams`].
    pub(super) async fn plan_backup(
        &self,
        spec: &BackupSpec,
    ) -> Result<Vec<StreamPlan>, EngineError> {
        check_spec(spec.method, spec.backup_type)?;
        if spec.method == BackupMethod::Physical {
            return Ok(vec![StreamPlan {
                name: BASE.to_owned(),
                database: None,
            }]);
        }
        if spec.databases.is_empty() {
            logical_plan(&self.databases().await?)
        } else {
            logical_plan(&spec.databases)
        }
    }

    /// Every database that accepts connections and is not a template, by name.
    async fn databases(&self) -> Result<Vec<String>, EngineError> {
        let op = "list the databases to back up";
        let client = self.connect_local(op).await?;
        let rows = sql::rows(
            &client,
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate \
             ORDER BY datname",
        )
        .await
        .map_err(|e| e.into_engine(op))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    /// See [`crate::Engine::start_backup_stream`].
    pub(super) async fn start_stream(
        &self,
        spec: &BackupSpec,
        plan: &StreamPlan,
    ) -> Result<ToolStream, EngineError> {
        check_spec(spec.method, spec.backup_type)?;
        let s = &self.settings;
        let (tool, mut args, main) = match (spec.method, plan.name.as_str()) {
            (BackupMethod::Physical, BASE) => (
                "pg_basebackup",
                vec![
                    "-D".to_owned(),
                    "-".to_owned(),
                    "-F".to_owned(),
                    "tar".to_owned(),
                    "-X".to_owned(),
                    "fetch".to_owned(),
                    "--checkpoint=fast".to_owned(),
                    "--label=autopilot".to_owned(),
                ],
                true,
            ),
            (BackupMethod::Logical, GLOBALS) => (
                "pg_dumpall",
                vec![
                    "--globals-only".to_owned(),
                    "--database=postgres".to_owned(),
                ],
                false,
            ),
            (BackupMethod::Logical, name) if database_of(name).is_some() => {
                let db = database_of(name).expect("matched above");
                // Checked again: the plan may come from elsewhere.
                stream_name(db)?;
                (
                    "pg_dump",
                    vec![
                        "--format=custom".to_owned(),
                        "--create".to_owned(),
                        format!("--dbname={db}"),
                    ],
                    true,
                )
            }
            (method, name) => {
                return Err(failed(
                    "start a backup stream",
                    format!(
                        "a {} backup of PostgreSQL has no stream {name:?}; expected {}",
                        method.as_str(),
                        if method == BackupMethod::Physical {
                            "base"
                        } else {
                            "globals or db-<name>"
                        }
                    ),
                ));
            }
        };
        let path = program(s, spec, tool, main);
        let mut parameters = login_args(s);
        parameters.append(&mut args);
        if main {
            parameters.extend(spec.extra_args.iter().cloned());
        }
        let version = tool_version(s, &path).await;
        let mut argv = vec![path.display().to_string()];
        argv.extend(parameters.iter().cloned());
        let mut exec = ExecSpec::new(argv);
        exec.kill_grace = Duration::from_secs(5);
        exec.user = s.run_as;
        let (mut child, pipe) = ManagedChild::spawn_piped(tool, &exec, &tool_env(s), Piped::Stdout)
            .map_err(|e| {
                failed(
                    "start a backup stream",
                    format!(
                        "{} (install postgresql-15's client programs or set the job's tool.path)",
                        handlers::error_chain(&e)
                    ),
                )
            })?;
        let Pipe::Stdout(stdout) = pipe else {
            return Err(failed(
                "start a backup stream",
                format!("{tool}'s output pipe is missing"),
            ));
        };
        let (output, position): (crate::backups::BoxRead, _) = if tool == "pg_basebackup" {
            let (tee, rx) = tarscan::ManifestTee::new(stdout);
            (Box::pin(tee), Some(rx))
        } else {
            (Box::pin(stdout), None)
        };
        let name = plan.name.clone();
        let finisher = async move {
            let op = "finish a backup stream";
            let status = match tokio::time::timeout(EXIT_LIMIT, child.wait()).await {
                Ok(st) => st,
                Err(_) => {
                    child.stop(Signal::SIGTERM, Duration::from_secs(5)).await;
                    return Err(failed(
                        op,
                        format!(
                            "{tool} (stream {name}) did not exit within {EXIT_LIMIT:?} after its output ended; stopped"
                        ),
                    ));
                }
            };
            if !status.success() {
                return Err(failed(
                    op,
                    format!(
                        "{tool} (stream {name}) exited with {status}; its messages are in the agent log (process = {tool})"
                    ),
                ));
            }
            let position = match position {
                Some(rx) => rx.await.ok().flatten().map(|p| p.notation("postgres")),
                None => None,
            };
            Ok(StreamDone {
                position,
                incremental_lsn: None,
                tool_version: version,
            })
        };
        Ok(ToolStream {
            name: plan.name.clone(),
            tool: tool.to_owned(),
            parameters,
            output,
            finisher: Box::pin(finisher),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_streams_are_named_db_and_refuse_what_a_key_cannot_hold() {
        assert_eq!(stream_name("shop").expect("ok"), "db-shop");
        assert_eq!(
            stream_name("Shop_2.eu-west").expect("ok"),
            "db-Shop_2.eu-west"
        );
        for bad in ["", "a/b", "my db", ".hidden", "café"] {
            let e = stream_name(bad).expect_err(bad).to_string();
            assert!(e.contains("cannot be a backup stream"), "{e}");
        }
        assert_eq!(database_of("db-shop"), Some("shop"));
        assert_eq!(database_of("db-"), None);
        assert_eq!(database_of("globals"), None);
    }

    #[test]
    fn a_logical_plan_starts_with_the_globals_and_names_each_database_once() {
        let plan = logical_plan(&["postgres".into(), "shop".into(), "shop".into()]).expect("plan");
        let names: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["globals", "db-postgres", "db-shop"]);
        assert_eq!(plan[0].database, None);
        assert_eq!(plan[2].database.as_deref(), Some("shop"));
    }

    #[test]
    fn incremental_backups_are_refused_with_the_reason() {
        let e = check_spec(BackupMethod::Physical, BackupType::Incremental)
            .expect_err("incremental")
            .to_string();
        assert!(
            e.contains("PostgreSQL 15 has no incremental base backups"),
            "{e}"
        );
        assert!(e.contains("PostgreSQL 17"), "{e}");
        assert!(check_spec(BackupMethod::Logical, BackupType::Full).is_ok());
        assert!(check_spec(BackupMethod::Unknown, BackupType::Full).is_err());
    }
}
