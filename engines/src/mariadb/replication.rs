//! Replication operations on a MariaDB server: positions, following with errant-transaction
//! detection, applying the relay log, promotion and fencing.

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::{self, bounded, int, quote, text};
use super::gtid::GtidSet;
use super::settings::{Account, Durability, MariadbSettings};
use crate::engine::EngineError;
use crate::role_ops::{Peer, Position};

/// How long promotion waits for the relay log to be applied.
const APPLY_LIMIT: Duration = Duration::from_secs(30);
/// How long `follow` watches the new replication connection for an immediate refusal.
const FOLLOW_CHECK: Duration = Duration::from_secs(2);
/// Server error a primary sends when it lacks a GTID the replica asks to start after.
const ER_MASTER_FATAL_READING_BINLOG: i64 = 1236;

/// The replica threads as `SHOW SLAVE STATUS` reports them.
#[derive(Clone, Debug, Default)]
pub struct SlaveStatus {
    /// Where it replicates from.
    pub master: Option<Peer>,
    /// `Slave_IO_Running` (`Yes`, `No`, `Connecting`).
    pub io_running: String,
    /// `Slave_SQL_Running` is `Yes`.
    pub sql_running: bool,
    /// `Seconds_Behind_Master`, NULL when not replicating.
    pub seconds_behind: Option<i64>,
    /// Last receive error.
    pub io_errno: i64,
    /// Its message.
    pub io_error: String,
    /// Last apply error.
    pub sql_errno: i64,
    /// Its message.
    pub sql_error: String,
    /// What the receiver fetched (`Gtid_IO_Pos`).
    pub io_pos: String,
}

/// `SHOW SLAVE STATUS`; `None` when the server is not configured as a replica.
pub async fn slave_status(c: &mut Conn) -> Result<Option<SlaveStatus>, EngineError> {
    let row: Option<mysql_async::Row> = bounded(
        "read the replica status",
        false,
        c.query_first("SHOW SLAVE STATUS"),
    )
    .await?;
    Ok(row.map(|r| SlaveStatus {
        master: text(&r, "Master_Host").and_then(|h| {
            let port = int(&r, "Master_Port")?;
            Some(Peer {
                host: h,
                port: u16::try_from(port).ok()?,
                agent: None,
                standby: false,
            })
        }),
        io_running: text(&r, "Slave_IO_Running").unwrap_or_default(),
        sql_running: text(&r, "Slave_SQL_Running").as_deref() == Some("Yes"),
        seconds_behind: int(&r, "Seconds_Behind_Master"),
        io_errno: int(&r, "Last_IO_Errno").unwrap_or(0),
        io_error: text(&r, "Last_IO_Error").unwrap_or_default(),
        sql_errno: int(&r, "Last_SQL_Errno").unwrap_or(0),
        sql_error: text(&r, "Last_SQL_Error").unwrap_or_default(),
        io_pos: text(&r, "Gtid_IO_Pos").unwrap_or_default(),
    }))
}

/// A GTID variable (`gtid_current_pos`, `gtid_binlog_pos`) as a set.
pub async fn gtid_var(c: &mut Conn, var: &'static str) -> Result<GtidSet, EngineError> {
    let sql = format!("SELECT @@{var}");
    let value: Option<String> = bounded("read the GTID position", false, c.query_first(sql))
        .await?
        .flatten();
    parse_set(&value.unwrap_or_default())
}

fn parse_set(text: &str) -> Result<GtidSet, EngineError> {
    GtidSet::parse(text).map_err(|e| EngineError::Failed {
        operation: "read the GTID position",
        reason: format!("the server reported {text:?}: {e}"),
    })
}

/// The local position: everything applied (`gtid_current_pos`), projected on the domain.
pub async fn position(s: &MariadbSettings, c: &mut Conn) -> Result<Position, EngineError> {
    Ok(gtid_var(c, "gtid_current_pos")
        .await?
        .position(s.gtid_domain_id))
}

/// Wait until the SQL thread applied everything the IO thread received (when the SQL thread
/// runs; an operator who stopped it keeps it stopped). Replication keeps running.
pub async fn apply_received(c: &mut Conn, limit: Duration) -> Result<(), EngineError> {
    let Some(st) = slave_status(c).await? else {
        return Ok(());
    };
    if !st.sql_running || st.io_pos.is_empty() {
        return Ok(());
    }
    wait_applied(c, &st.io_pos, limit).await
}

pub(super) async fn wait_applied(
    c: &mut Conn,
    target: &str,
    limit: Duration,
) -> Result<(), EngineError> {
    let operation = "apply the relay log";
    let sql = format!(
        "SELECT MASTER_GTID_WAIT({}, {})",
        quote(target),
        limit.as_secs_f64()
    );
    let wait = tokio::time::timeout(limit + Duration::from_secs(2), c.query_first(sql)).await;
    match wait {
        Ok(Ok(Some(0i64))) => Ok(()),
        Ok(Ok(_)) => Err(EngineError::Failed {
            operation,
            reason: format!("the relay log was not applied up to {target} within {limit:?}"),
        }),
        Ok(Err(e)) => Err(conn::failed(operation, &e, false)),
        Err(_) => Err(EngineError::Failed {
            operation,
            reason: "no answer".into(),
        }),
    }
}

/// Make the local server the writable primary: stop receiving, apply the whole relay log,
/// forget the old primary, accept writes.
pub async fn promote(s: &MariadbSettings, c: &mut Conn) -> Result<Position, EngineError> {
    if let Some(st) = slave_status(c).await? {
        let op = "stop replication";
        bounded(op, false, c.query_drop("STOP SLAVE IO_THREAD")).await?;
        let st = slave_status(c).await?.unwrap_or(st);
        if !st.sql_running {
            bounded(op, false, c.query_drop("START SLAVE SQL_THREAD")).await?;
        }
        if !st.io_pos.is_empty() {
            wait_applied(c, &st.io_pos, APPLY_LIMIT).await?;
        }
        bounded(op, false, c.query_drop("STOP SLAVE")).await?;
        bounded(op, false, c.query_drop("RESET SLAVE ALL")).await?;
    }
    let semi_sync = match s.durability {
        Durability::Sync { .. } => "ON",
        Durability::Async => "OFF",
    };
    let op = "accept writes";
    let sql = format!("SET GLOBAL rpl_semi_sync_master_enabled = {semi_sync}");
    bounded(op, false, c.query_drop(sql)).await?;
    bounded(op, false, c.query_drop("SET GLOBAL read_only = 0")).await?;
    position(s, c).await
}

/// Make the server refuse writes from every client except replication: `read_only`, then
/// end every client session but ours and the replication threads. Returns the position
/// of everything it wrote (`gtid_binlog_pos`).
pub async fn fence(s: &MariadbSettings, c: &mut Conn) -> Result<Position, EngineError> {
    let op = "fence the server";
    bounded(op, false, c.query_drop("SET GLOBAL read_only = 1")).await?;
    let ids: Vec<u64> = bounded(
        op,
        false,
        c.query(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() \
             AND USER NOT IN ('system user', 'event_scheduler') \
             AND COMMAND NOT IN ('Binlog Dump', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker')",
        ),
    )
    .await?;
    for id in ids {
        // A session may end by itself meanwhile ("Unknown thread id"): that is fine.
        let _ = bounded(op, false, c.query_drop(format!("KILL CONNECTION {id}"))).await;
    }
    Ok(gtid_var(c, "gtid_binlog_pos")
        .await?
        .position(s.gtid_domain_id))
}

/// Replicate from `primary` with GTID auto-positioning. Refuses (`NeedsRebuild`) when the
/// local data has transactions the primary lacks: by comparing GTID sets first, then by
/// watching the primary's answer (error 1236: "the GTID you start after is not in my
/// binary log", which catches an errant transaction numbered below the primary's position).
pub async fn follow(
    s: &MariadbSettings,
    c: &mut Conn,
    primary: &Peer,
) -> Result<Position, EngineError> {
    let p = conn::remote(s, primary)
        .await
        .map_err(|e| conn::failed("connect to the primary", &e, true))?;
    follow_with(s, c, primary, p, &s.replication).await
}

/// [`follow`], checking the source over `p` and replicating with `account`.
pub async fn follow_with(
    s: &MariadbSettings,
    c: &mut Conn,
    primary: &Peer,
    mut p: Conn,
    account: &Account,
) -> Result<Position, EngineError> {
    let local = gtid_var(c, "gtid_current_pos").await?;
    let theirs = gtid_var(&mut p, "gtid_binlog_pos").await;
    let _ = p.disconnect().await;
    let theirs = theirs?;
    if primary.standby && !theirs.contains(&local) {
        // A standby leader (a live migration) and this node both hold the source's
        // transactions: it has not applied as far as this node yet. Try again later.
        return Err(EngineError::Failed {
            operation: "follow the standby leader",
            reason: format!(
                "the standby leader is at {theirs}, behind this node's {local}: it has not \
                 applied as much of the source yet"
            ),
        });
    }
    if !theirs.contains(&local) {
        return Err(EngineError::NeedsRebuild {
            reason: format!(
                "local GTIDs {local} are not all in the primary's binary log ({theirs}): errant transactions"
            ),
        });
    }
    let current = slave_status(c).await?;
    let same = current.as_ref().is_some_and(|st| {
        st.master
            .as_ref()
            .is_some_and(|m| m.host == primary.host && m.port == primary.port)
            && st.io_running != "No"
            && st.sql_running
    });
    if !same {
        let op = "start replication from the primary";
        bounded(op, false, c.query_drop("STOP SLAVE")).await?;
        bounded(op, false, c.query_drop("SET GLOBAL read_only = 1")).await?;
        let off = "SET GLOBAL rpl_semi_sync_master_enabled = OFF";
        bounded(op, false, c.query_drop(off)).await?;
        let change = format!(
            "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={}, MASTER_USER={}, MASTER_PASSWORD={}, \
             MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
            quote(&primary.host),
            primary.port,
            quote(&account.user),
            quote(&account.password)
        );
        bounded(op, true, c.query_drop(change)).await?;
        bounded(op, false, c.query_drop("START SLAVE")).await?;
        check_started(c).await?;
    }
    position(s, c).await
}

/// Watch the new replication connection briefly; the primary refuses an errant start at once.
async fn check_started(c: &mut Conn) -> Result<(), EngineError> {
    let start = tokio::time::Instant::now();
    let mut running_since = None;
    loop {
        let st = slave_status(c).await?.unwrap_or_default();
        if st.io_errno == ER_MASTER_FATAL_READING_BINLOG {
            let _ = bounded("stop replication", false, c.query_drop("STOP SLAVE")).await;
            return Err(EngineError::NeedsRebuild {
                reason: format!("the primary refused to serve our position: {}", st.io_error),
            });
        }
        let now = tokio::time::Instant::now();
        if st.io_running == "Yes" {
            // The refusal comes right after the connection; a receiver that stays up past
            // that was accepted.
            let since = *running_since.get_or_insert(now);
            if now - since >= Duration::from_millis(300) {
                return Ok(());
            }
        } else {
            running_since = None;
        }
        if now - start >= FOLLOW_CHECK {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The table that holds the identity a cluster's data got at bootstrap (MariaDB has no
/// system identifier of its own); it replicates and is cloned with the data.
pub const IDENTITY_TABLE: &str = "autopilot.identity";

/// The identity of the local data; `None` when it has none (data from before identities,
/// or never bootstrapped by Autopilot).
pub async fn identity(c: &mut Conn) -> Result<Option<String>, EngineError> {
    let op = "read the data's identity";
    let read = c.query_first::<String, _>(format!("SELECT id FROM {IDENTITY_TABLE} LIMIT 1"));
    match tokio::time::timeout(conn::STATEMENT_LIMIT, read).await {
        Ok(Ok(id)) => Ok(id),
        // No such database or table: data without an identity.
        Ok(Err(mysql_async::Error::Server(e))) if e.code == 1049 || e.code == 1146 => Ok(None),
        Ok(Err(e)) => Err(conn::failed(op, &e, false)),
        Err(_) => Err(EngineError::Failed {
            operation: op,
            reason: format!("no answer within {:?}", conn::STATEMENT_LIMIT),
        }),
    }
}

/// Give the local data an identity unless it has one, and return it. Runs on the node that
/// bootstraps the cluster, before `initialized` is written; the row replicates to every
/// replica and is copied by every clone.
pub async fn create_identity(c: &mut Conn) -> Result<String, EngineError> {
    let op = "record the data's identity";
    if let Some(id) = identity(c).await? {
        return Ok(id);
    }
    for sql in [
        "CREATE DATABASE IF NOT EXISTS autopilot".to_owned(),
        format!(
            "CREATE TABLE IF NOT EXISTS {IDENTITY_TABLE} (id VARCHAR(64) NOT NULL PRIMARY KEY, \
             created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB"
        ),
        format!("INSERT IGNORE INTO {IDENTITY_TABLE} (id) VALUES (UUID())"),
    ] {
        bounded(op, false, c.query_drop(sql)).await?;
    }
    identity(c).await?.ok_or_else(|| EngineError::Failed {
        operation: op,
        reason: format!("{IDENTITY_TABLE} is empty after the insert"),
    })
}
