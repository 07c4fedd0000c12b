//! Point-in-time recovery ([`crate::Engine::recover`]): a restored base backup, the archived
//! WAL it needs in a directory beside it, and a [`Scratch`] server that replays the WAL
//! (`restore_command` copies from that directory, `recovery_target_*`, the latest timeline)
//! and promotes at the target, which starts a new timeline: the data directory then stands
//! exactly at the target and never replays the archive's later history by mistake. A target
//! the archive does not reach makes PostgreSQL stop with "recovery ended before configured
//! recovery target was reached": an error, not a silent stop short of it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::restore::at;
use super::scratch::Scratch;
use super::settings::PostgresSettings;
use super::{datadir, sql};
use crate::backups::{Recovered, RecoveryTarget};
use crate::engine::EngineError;

/// How long the replay may take.
const RECOVERY_LIMIT: Duration = Duration::from_secs(6 * 3600);

fn failed(reason: impl Into<String>) -> EngineError {
    EngineError::Failed {
        operation: "recover to a point in time",
        reason: reason.into(),
    }
}

/// See [`crate::Engine::recover`].
pub async fn recover(
    s: &PostgresSettings,
    dir: &Path,
    archive_dir: &Path,
    target: &RecoveryTarget,
) -> Result<Recovered, EngineError> {
    let op = "recover to a point in time";
    if !dir.join("PG_VERSION").exists() {
        return Err(failed(format!(
            "{} is not a PostgreSQL data directory (no PG_VERSION)",
            dir.display()
        )));
    }
    let t = at(s, dir);
    // The server's user reads the archive copies.
    datadir::give(&t, archive_dir).map_err(failed)?;
    for entry in std::fs::read_dir(archive_dir)
        .map_err(|e| failed(format!("{}: {e}", archive_dir.display())))?
        .flatten()
    {
        datadir::give(&t, &entry.path()).map_err(failed)?;
    }
    datadir::write_file(&t, &dir.join("recovery.signal"), "", 0o600).map_err(failed)?;
    let _ = std::fs::remove_file(dir.join("standby.signal"));
    let quoted = archive_dir.display().to_string().replace('\'', "'\\''");
    let mut extra: Vec<(&str, String)> = vec![
        ("restore_command", format!("cp '{quoted}/%f' '%p'")),
        ("recovery_target_timeline", "latest".to_owned()),
        ("recovery_target_action", "promote".to_owned()),
        ("hot_standby", "on".to_owned()),
    ];
    // The promoted data records the settings it ran with; a hot standby later refuses to
    // start with lower ones (`max_connections` …): run the replay with the engine's own.
    let own: Vec<(&str, String)> = [
        ("max_wal_senders", "10".to_owned()),
        ("max_replication_slots", "10".to_owned()),
    ]
    .into_iter()
    .chain(
        s.parameters
            .iter()
            .filter(|(n, _)| {
                matches!(
                    n.as_str(),
                    "max_connections"
                        | "max_worker_processes"
                        | "max_prepared_transactions"
                        | "max_locks_per_transaction"
                )
            })
            .map(|(n, v)| (n.as_str(), v.clone())),
    )
    .collect();
    extra.extend(own);
    match target {
        RecoveryTarget::Time(time) => extra.push(("recovery_target_time", pg_time(time))),
        RecoveryTarget::Lsn(lsn) => extra.push(("recovery_target_lsn", lsn.clone())),
        RecoveryTarget::Latest => {}
        RecoveryTarget::Gtid(_) => {
            return Err(failed(
                "PostgreSQL has no GTID target: name an LSN (--lsn) or a time (--time)".to_owned(),
            ));
        }
    }
    let mut scratch = Scratch::start_with(&t, dir, op, &extra).await?;
    let deadline = Instant::now() + RECOVERY_LIMIT;
    let reached = loop {
        if scratch.has_exited() {
            break Err(failed(format!(
                "PostgreSQL stopped before it reached {target} (see its log lines above: \"recovery ended before configured recovery target was reached\" means the archive ends before the target or has a gap)"
            )));
        }
        if let Ok(c) = scratch.connect().await
            && let Ok(r) = sql::row(
                &c,
                "SELECT pg_is_in_recovery()::text, \
                 CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END",
            )
            .await
            && r.first().cloned().flatten().as_deref() == Some("false")
        {
            let lsn = r.get(1).cloned().flatten().unwrap_or_default();
            break Ok(Recovered {
                position: lsn,
                last_commit: None,
            });
        }
        if Instant::now() >= deadline {
            break Err(failed(format!(
                "the replay did not reach {target} within {RECOVERY_LIMIT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stopped = scratch.stop().await;
    let r = reached?;
    stopped?;
    let _ = std::fs::remove_file(dir.join("recovery.signal"));
    Ok(r)
}

/// RFC 3339 as `recovery_target_time` takes it: PostgreSQL's parser wants a space, not `T`,
/// and an offset, not `Z`.
fn pg_time(t: &str) -> String {
    let t = t.trim().replacen(['T', 't'], " ", 1);
    match t.strip_suffix(['Z', 'z']) {
        Some(base) => format!("{base}+00"),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_times_become_postgres_times() {
        assert_eq!(
            super::pg_time("2026-12-04T03:23:50.208Z"),
            "2026-12-04 03:23:50.208+00"
        );
        assert_eq!(
            super::pg_time("2026-12-04T04:23:50+01:00"),
            "2026-12-04 04:23:50+01:00"
        );
    }
}
