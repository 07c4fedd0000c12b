//! Fencing a primary at the SQL level, locally (I1 self-fence) or over the network (a
//! former primary whose agent froze), and undoing it.
//!
//! PostgreSQL 15 cannot become a standby without a restart, so the fence makes sure no new
//! commit is *acknowledged*, immediately and without a restart:
//!
//! 1. `synchronous_standby_names` names a standby that never exists, so every commit waits
//!    for a confirmation that never comes (the client never sees COMMIT succeed);
//! 2. `default_transaction_read_only = on`, so ordinary clients cannot even write;
//! 3. a reload, confirmed in our own session;
//! 4. every client backend but ours is terminated (twice: before and after the reload took
//!    effect), so no session keeps the old settings.
//!
//! A client can turn (2) off for its session, but its commit still waits on (1). Only a
//! client that also sets `synchronous_commit = local` (or `off`) for its session could
//! get a commit acknowledged by a fenced server; documented in `docs/engines/postgres.md`.
//! WAL sender processes are not touched: replicas keep streaming everything the fenced
//! server wrote, which is how the winner of a failover catches up to its final position.

use std::time::Duration;

use tokio_postgres::Client;

use super::settings::literal;
use super::sql::{AGENT_APPLICATION, SqlError, Status, execute, parse_lsn, row, status};

/// The `application_name` no standby has: commits on a fenced server wait for it forever.
pub const NOBODY: &str = "autopilot_fenced_nobody";

/// How long the fenced server's WAL flush may take to reach its insert position.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

async fn terminate_clients(client: &Client) -> Result<(), SqlError> {
    row(
        client,
        &format!(
            "SELECT count(pg_terminate_backend(pid))::text FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
             AND application_name IS DISTINCT FROM {}",
            literal(AGENT_APPLICATION)
        ),
    )
    .await
    .map(|_| ())
}

/// Apply run-time settings with `ALTER SYSTEM` (each its own statement: it cannot run in a
/// transaction block) and reload; wait until this session sees `expect_read_only`.
pub async fn apply(
    client: &Client,
    settings: &[(&str, Option<String>)],
    expect_read_only: bool,
) -> Result<(), SqlError> {
    for (name, value) in settings {
        let sql = match value {
            Some(v) => format!("ALTER SYSTEM SET {name} = {}", literal(v)),
            None => format!("ALTER SYSTEM RESET {name}"),
        };
        execute(client, &sql).await?;
    }
    execute(client, "SELECT pg_reload_conf()").await?;
    let want = if expect_read_only { "on" } else { "off" };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let r = row(
            client,
            "SELECT current_setting('default_transaction_read_only')",
        )
        .await?;
        if r.first().cloned().flatten().as_deref() == Some(want) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SqlError::Failed(format!(
                "reload the configuration: default_transaction_read_only is still not {want} after 2s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fence the server `client` is connected to and return its final status: for a primary,
/// its WAL insert position once flushed (nothing can be acknowledged past it); a standby
/// takes no writes and is returned as it is.
pub async fn fence(client: &Client) -> Result<Status, SqlError> {
    let before = status(client).await?;
    if before.in_recovery {
        return Ok(before);
    }
    terminate_clients(client).await?;
    apply(
        client,
        &[
            ("synchronous_standby_names", Some(NOBODY.to_owned())),
            ("default_transaction_read_only", Some("on".to_owned())),
        ],
        true,
    )
    .await?;
    terminate_clients(client).await?;
    let insert = row(client, "SELECT pg_current_wal_insert_lsn()::text")
        .await?
        .first()
        .cloned()
        .flatten()
        .as_deref()
        .and_then(parse_lsn)
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + FLUSH_WAIT;
    loop {
        let now = status(client).await?;
        if now.lsn >= insert || tokio::time::Instant::now() >= deadline {
            return Ok(Status {
                lsn: now.lsn.max(insert),
                ..now
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `synchronous_standby_names` value for `durability` and the replicas' names.
pub fn sync_names(sync: bool, members: Option<&[String]>) -> String {
    if !sync {
        return String::new();
    }
    match members {
        Some(m) if !m.is_empty() => {
            let names: Vec<String> = m.iter().map(|n| super::settings::ident(n)).collect();
            format!("ANY 1 ({})", names.join(", "))
        }
        _ => "ANY 1 (*)".to_owned(),
    }
}

/// Undo the fence: writable again, commits acknowledged per `sync_names`.
pub async fn unfence(client: &Client, sync_names: String) -> Result<(), SqlError> {
    apply(
        client,
        &[
            ("default_transaction_read_only", None),
            ("synchronous_standby_names", Some(sync_names)),
        ],
        false,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_names_list_the_replicas_or_anyone() {
        assert_eq!(sync_names(false, Some(&["a".into()])), "");
        assert_eq!(sync_names(true, None), "ANY 1 (*)");
        assert_eq!(sync_names(true, Some(&[])), "ANY 1 (*)");
        assert_eq!(
            sync_names(true, Some(&["autopilot_a".into(), "autopilot_b".into()])),
            "ANY 1 (\"autopilot_a\", \"autopilot_b\")"
        );
    }
}
