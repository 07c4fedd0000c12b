//! Checking a restored data directory ([`crate::Engine::check_restored`]): a [`Scratch`]
//! server on it and `pg_amcheck --all --install-missing --heapallindexed` — every table and
//! B-tree index of every database, the heap checked against each index. It installs the
//! `amcheck` extension where it is missing, so the restored databases gain it.

use std::path::Path;
use std::time::{Duration, Instant};

use handlers::exec::{Captured, RunOutcome, run_capture};

use super::restore::at;
use super::scratch::Scratch;
use super::settings::PostgresSettings;
use crate::backups::CheckReport;
use crate::engine::EngineError;

/// How long `pg_amcheck` may take.
const AMCHECK_LIMIT: Duration = Duration::from_secs(6 * 3600);

fn failed(operation: &'static str, reason: impl Into<String>) -> EngineError {
    EngineError::Failed {
        operation,
        reason: reason.into(),
    }
}

/// See [`crate::Engine::check_restored`].
pub async fn check(s: &PostgresSettings, dir: &Path) -> Result<CheckReport, EngineError> {
    let op = "test a restore";
    if !dir.join("PG_VERSION").exists() {
        return Err(failed(
            op,
            format!(
                "{} is not a PostgreSQL data directory (no PG_VERSION)",
                dir.display()
            ),
        ));
    }
    let t = at(s, dir);
    let scratch = Scratch::start(&t, dir, op).await?;
    let started = Instant::now();
    let checked = amcheck(&scratch).await;
    let check_time = started.elapsed();
    let databases = match scratch.connect().await {
        Ok(c) => super::sql::row(&c, "SELECT count(*) FROM pg_database WHERE datallowconn")
            .await
            .ok()
            .and_then(|r| r.into_iter().next().flatten()),
        Err(_) => None,
    };
    let start_time = scratch.start_time;
    let stopped = scratch.stop().await;
    checked?;
    stopped?;
    Ok(CheckReport {
        summary: format!(
            "pg_amcheck --all --heapallindexed: {} databases, every table and B-tree index, no corruption",
            databases.as_deref().unwrap_or("all")
        ),
        start_time,
        check_time,
    })
}

/// `pg_amcheck` over every database; on corruption its first report lines.
async fn amcheck(scratch: &Scratch) -> Result<(), EngineError> {
    let op = "test a restore";
    let spec = scratch.tool(
        "pg_amcheck",
        vec![
            "--all".to_owned(),
            "--install-missing".to_owned(),
            "--heapallindexed".to_owned(),
        ],
        AMCHECK_LIMIT,
    );
    let env = vec![("LC_ALL".to_owned(), "C".to_owned())];
    match run_capture("pg_amcheck", &spec, &env).await {
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            ..
        }) if st.success() => Ok(()),
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            stdout,
            failure,
        }) => {
            let found: Vec<&str> = stdout
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(10)
                .collect();
            let reason = if found.is_empty() {
                format!(
                    "pg_amcheck exited with {st}: {}",
                    failure.unwrap_or_else(|| "see its output in the agent log".to_owned())
                )
            } else {
                format!("pg_amcheck found corruption ({st}): {}", found.join(" | "))
            };
            Err(failed(op, reason))
        }
        Ok(Captured {
            outcome: RunOutcome::TimedOut,
            ..
        }) => Err(failed(
            op,
            format!("pg_amcheck timed out after {AMCHECK_LIMIT:?}"),
        )),
        Err(e) => Err(failed(op, handlers::error_chain(&e))),
    }
}
