//! The periodic probe: is the server answering, what does its replication look like, and
//! the gauges Prometheus scrapes (`autopilot_mysql_*`).

use metrics::{counter, gauge};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::conn::bounded;
use super::replication::{gtid_var, slave_status};
use super::settings::MariadbSettings;
use crate::engine::{EngineError, Probe, Receiver, Replication, ServerStatus};
use crate::role_ops::Member;
use cluster::wire::{ReplicaState, StreamingReplica};

/// Probe over `c` and publish the gauges. Unhealthy means the server cannot apply what it
/// receives (an SQL thread error) or its primary refuses it (error 1236); a receiver that
/// cannot reach a dead primary is expected during a failover and stays healthy.
pub async fn probe(
    s: &MariadbSettings,
    c: &mut Conn,
    members: &[Member],
) -> Result<Probe, EngineError> {
    let op = "probe the server";
    let vars: Option<(i64, String, i64)> = bounded(
        op,
        false,
        c.query_first("SELECT @@read_only, @@version, @@max_connections"),
    )
    .await?;
    let (read_only, version, max_connections) = vars.unwrap_or_default();
    let status: Vec<(String, String)> = bounded(
        op,
        false,
        c.query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', 'Uptime', \
             'Questions', 'Rpl_semi_sync_master_status', 'Rpl_semi_sync_master_clients', \
             'Rpl_semi_sync_slave_status')",
        ),
    )
    .await?;
    let num = |name: &str| -> f64 {
        status
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or(0.0, |(_, v)| match v.as_str() {
                "ON" => 1.0,
                "OFF" => 0.0,
                v => v.parse().unwrap_or(0.0),
            })
    };
    gauge!("autopilot_mysql_up").set(1.0);
    gauge!("autopilot_mysql_read_only").set(if read_only != 0 { 1.0 } else { 0.0 });
    gauge!("autopilot_mysql_connections").set(num("Threads_connected"));
    #[allow(clippy::cast_precision_loss)]
    gauge!("autopilot_mysql_max_connections").set(max_connections as f64);
    gauge!("autopilot_mysql_uptime_seconds").set(num("Uptime"));
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    counter!("autopilot_mysql_queries_total").absolute(num("Questions") as u64);
    gauge!("autopilot_mysql_semi_sync_primary_on").set(num("Rpl_semi_sync_master_status"));
    gauge!("autopilot_mysql_semi_sync_primary_clients").set(num("Rpl_semi_sync_master_clients"));
    gauge!("autopilot_mysql_semi_sync_replica_on").set(num("Rpl_semi_sync_slave_status"));
    let gtid = gtid_var(c, "gtid_current_pos").await?;
    #[allow(clippy::cast_precision_loss)]
    gauge!("autopilot_mysql_gtid_seq").set(gtid.position(s.gtid_domain_id).offset as f64);
    let st = slave_status(c).await?;
    let (io, sql, lag) = match &st {
        Some(st) => (
            st.io_running == "Yes",
            st.sql_running,
            st.seconds_behind.map_or(-1.0, |l| l as f64),
        ),
        None => (false, false, 0.0),
    };
    gauge!("autopilot_mysql_replica_io_running").set(f64::from(u8::from(io)));
    gauge!("autopilot_mysql_replica_sql_running").set(f64::from(u8::from(sql)));
    #[allow(clippy::cast_precision_loss)]
    gauge!("autopilot_mysql_replication_lag_seconds").set(lag);
    let reason = match &st {
        Some(st) if st.sql_errno != 0 => Some(format!(
            "replication apply error {}: {}",
            st.sql_errno, st.sql_error
        )),
        Some(st) if st.io_errno == 1236 => Some(format!(
            "the primary refuses to serve this replica: {}",
            st.io_error
        )),
        _ => None,
    };
    let replication = match &st {
        // The IO thread receives; a stopped SQL thread lags (and an apply error is unhealthy).
        Some(_) => Replication::Replica { receiving: io },
        None => {
            let dumps: Option<i64> = bounded(
                op,
                false,
                c.query_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE COMMAND LIKE 'Binlog Dump%'",
                ),
            )
            .await?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Replication::Source {
                streaming: u32::try_from(dumps.unwrap_or(0)).unwrap_or(0),
                synchronous: num("Rpl_semi_sync_master_clients") as u32,
                synchronous_required: matches!(
                    s.durability,
                    super::settings::Durability::Sync { .. }
                ),
            }
        }
    };
    let receiver = st.as_ref().map(|st| {
        let received = super::gtid::GtidSet::parse(&st.io_pos)
            .map(|io| io.position(s.gtid_domain_id).offset)
            .unwrap_or(0);
        Receiver {
            source: st.master.as_ref().map(|m| format!("{}:{}", m.host, m.port)),
            state: match st.io_running.as_str() {
                _ if st.sql_errno != 0 || (st.io_errno != 0 && st.io_running != "Yes") => {
                    ReplicaState::Error
                }
                // Receiving; a stopped applier shows as lag.
                "Yes" => ReplicaState::Streaming,
                "Connecting" => ReplicaState::Connecting,
                _ => ReplicaState::Stopped,
            },
            last_error: if st.sql_errno != 0 {
                Some(format!("error {}: {}", st.sql_errno, st.sql_error))
            } else if st.io_errno != 0 {
                Some(format!("error {}: {}", st.io_errno, st.io_error))
            } else {
                None
            },
            lag_seconds: st.seconds_behind.map(|l| l.max(0) as f64),
            lag_transactions: Some(received.saturating_sub(gtid.position(s.gtid_domain_id).offset)),
            lag_bytes: None,
        }
    });
    let replicas = match replication {
        Replication::Source { synchronous, .. } => {
            let hosts = slave_hosts(c).await?;
            let n = u32::try_from(hosts.len()).unwrap_or(u32::MAX);
            // Semi-sync counts its clients without naming them: all or none is exact.
            let sync = (synchronous == 0)
                .then_some(false)
                .or((synchronous >= n).then_some(true));
            hosts
                .into_iter()
                .map(|(server_id, host, port)| StreamingReplica {
                    name: members
                        .iter()
                        .find(|m| {
                            (m.peer.host == host && i64::from(m.peer.port) == port)
                                || i64::from(super::settings::server_id_for(&m.id)) == server_id
                        })
                        .map_or_else(|| format!("{host}:{port}"), |m| m.id.clone()),
                    synchronous: sync,
                    lag_seconds: None,
                    lag_bytes: None,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let server = ServerStatus {
        version: Some(version),
        uptime_seconds: Some(num("Uptime") as u64),
        connections: Some(num("Threads_connected") as u64),
        max_connections: u64::try_from(max_connections).ok(),
        storage: crate::storage_of(&s.datadir),
        receiver,
        replicas,
        gtid: Some(gtid.to_string()),
    };
    Ok(Probe {
        healthy: reason.is_none(),
        reason,
        replication,
        server,
    })
}

/// `SHOW SLAVE HOSTS`: the replicas registered with this server (server id, reported host
/// and port).
async fn slave_hosts(c: &mut Conn) -> Result<Vec<(i64, String, i64)>, EngineError> {
    let rows: Vec<mysql_async::Row> =
        bounded("list the replicas", false, c.query("SHOW SLAVE HOSTS")).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let id = r
                .get_opt::<i64, _>("Server_id")
                .and_then(Result::ok)
                .unwrap_or(0);
            let host = r
                .get_opt::<String, _>("Host")
                .and_then(Result::ok)
                .unwrap_or_default();
            let port = r
                .get_opt::<i64, _>("Port")
                .and_then(Result::ok)
                .unwrap_or(0);
            (id, host, port)
        })
        .collect())
}

/// Record that the server did not answer.
pub fn down() {
    gauge!("autopilot_mysql_up").set(0.0);
}

/// The top `limit` statement digests by total time from `performance_schema` (switched on by
/// the engine unless `telemetry.top_statements` is 0).
pub async fn top_statements(
    c: &mut Conn,
    limit: u32,
) -> Result<Vec<cluster::wire::StatementStats>, EngineError> {
    let op = "read the top statements";
    let on: Option<i64> = bounded(op, false, c.query_first("SELECT @@performance_schema")).await?;
    if on != Some(1) {
        return Err(EngineError::Failed {
            operation: op,
            reason: "performance_schema is off (telemetry.top_statements: 0, or the server was started without it)".into(),
        });
    }
    type Row = (
        Option<String>,
        Option<String>,
        Option<String>,
        u64,
        f64,
        f64,
        u64,
    );
    let rows: Vec<Row> = bounded(
        op,
        false,
        c.query(format!(
            "SELECT DIGEST, LEFT(DIGEST_TEXT, 500), SCHEMA_NAME, COUNT_STAR, \
               SUM_TIMER_WAIT / 1e12, AVG_TIMER_WAIT / 1e12, SUM_ROWS_SENT + SUM_ROWS_AFFECTED \
             FROM performance_schema.events_statements_summary_by_digest \
             WHERE DIGEST IS NOT NULL ORDER BY SUM_TIMER_WAIT DESC LIMIT {limit}"
        )),
    )
    .await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(
            |(i, (id, query, database, calls, total, mean, rows))| cluster::wire::StatementStats {
                rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
                id: id.unwrap_or_default(),
                query: query.unwrap_or_default(),
                database,
                calls,
                total_seconds: total,
                mean_seconds: mean,
                rows,
            },
        )
        .collect())
}
