//! The engine probe: is the server answering, and the figures exported as metrics —
//! replay lag (seconds and bytes), timeline, connections, transactions (a counter: take its
//! `rate()`), synchronous state.

use metrics::{counter, gauge};
use tokio_postgres::Client;

use super::sql::{SqlError, row};

/// What one probe read (also the metrics it sets).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Standby: received but not yet replayed WAL, in bytes.
    pub replay_lag_bytes: u64,
    /// Standby: age of the last replayed transaction while WAL is waiting to be replayed.
    pub replay_lag_seconds: f64,
    /// Client backends.
    pub connections: u64,
    /// Committed plus rolled back transactions since the statistics were reset.
    pub transactions: u64,
    /// Primary: replicas streaming from it.
    pub streaming: u64,
    /// Primary: replicas counted for synchronous commit (`sync` or `quorum`).
    pub synchronous: u64,
    /// Seconds since the postmaster started.
    pub uptime_seconds: f64,
    /// `server_version_num`.
    pub version_num: u64,
    /// Standby: the walreceiver streams from the primary.
    pub receiving: bool,
    /// `version()`.
    pub version: String,
    /// `max_connections`.
    pub max_connections: u64,
    /// Standby: the walreceiver's status (`streaming`, `starting`, `waiting`, ...), empty
    /// when none runs.
    pub receiver_status: String,
    /// Standby: the `host:port` the walreceiver is connected to.
    pub sender: Option<String>,
    /// Standby: `primary_conninfo` is set (a standby without one follows nobody).
    pub has_source: bool,
}

/// Read the figures in one round trip.
pub async fn figures(client: &Client) -> Result<Figures, SqlError> {
    let r = row(
        client,
        "SELECT pg_is_in_recovery()::text, \
           COALESCE(CASE WHEN pg_is_in_recovery() THEN \
             pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END, 0)::bigint::text, \
           COALESCE(CASE WHEN pg_is_in_recovery() \
             AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() \
             THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END, 0)::float8::text, \
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::text, \
           (SELECT COALESCE(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database)::bigint::text, \
           (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming')::text, \
           (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))::text, \
           extract(epoch FROM now() - pg_postmaster_start_time())::float8::text, \
           current_setting('server_version_num'), \
           (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming')::text, \
           version(), \
           current_setting('max_connections'), \
           (SELECT status FROM pg_stat_wal_receiver LIMIT 1), \
           (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver LIMIT 1), \
           (current_setting('primary_conninfo') <> '')::text",
    )
    .await?;
    let text = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
    let int = |i: usize| {
        text(i)
            .parse::<i64>()
            .map_or(0, |v| v.max(0).unsigned_abs())
    };
    let float = |i: usize| text(i).parse::<f64>().unwrap_or(0.0).max(0.0);
    Ok(Figures {
        in_recovery: text(0) == "true",
        replay_lag_bytes: int(1),
        replay_lag_seconds: float(2),
        connections: int(3),
        transactions: int(4),
        streaming: int(5),
        synchronous: int(6),
        uptime_seconds: float(7),
        version_num: int(8),
        receiving: int(9) > 0,
        version: text(10),
        max_connections: int(11),
        receiver_status: text(12),
        sender: r.get(13).cloned().flatten(),
        has_source: text(14) == "true",
    })
}

/// One standby as `pg_stat_replication` shows it on the primary.
#[derive(Clone, Debug, PartialEq)]
pub struct Standby {
    /// Its `application_name` (`autopilot_<node id>` for the cluster's members).
    pub application_name: String,
    /// `sync_state` is `sync` or `quorum`.
    pub synchronous: bool,
    /// `replay_lag` in seconds; `None` while PostgreSQL has no figure (an idle standby).
    pub lag_seconds: Option<f64>,
    /// WAL written on the primary but not yet replayed on the standby, bytes.
    pub lag_bytes: Option<u64>,
}

/// The standbys streaming (or catching up) from this primary.
pub async fn standbys(client: &Client) -> Result<Vec<Standby>, SqlError> {
    let rows = super::sql::rows(
        client,
        "SELECT application_name, sync_state, \
           extract(epoch FROM replay_lag)::float8::text, \
           pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint::text \
         FROM pg_stat_replication WHERE state IN ('streaming', 'catchup') \
         ORDER BY application_name",
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let text = |i: usize| r.get(i).cloned().flatten();
            let lag_bytes = text(3)
                .and_then(|v| v.parse::<i64>().ok())
                .map(|v| v.max(0).unsigned_abs());
            Standby {
                application_name: text(0).unwrap_or_default(),
                synchronous: matches!(text(1).as_deref(), Some("sync" | "quorum")),
                // PostgreSQL forgets the lag of a standby that is caught up and idle.
                lag_seconds: text(2)
                    .and_then(|v| v.parse::<f64>().ok())
                    .or_else(|| (lag_bytes == Some(0)).then_some(0.0)),
                lag_bytes,
            }
        })
        .collect())
}

/// Export the figures (and the timeline) as `autopilot_postgres_*` metrics.
pub fn export(f: &Figures, timeline: u64) {
    gauge!("autopilot_postgres_in_recovery").set(if f.in_recovery { 1.0 } else { 0.0 });
    gauge!("autopilot_postgres_replay_lag_bytes").set(f.replay_lag_bytes as f64);
    gauge!("autopilot_postgres_replay_lag_seconds").set(f.replay_lag_seconds);
    gauge!("autopilot_postgres_timeline").set(timeline as f64);
    gauge!("autopilot_postgres_connections").set(f.connections as f64);
    counter!("autopilot_postgres_transactions_total").absolute(f.transactions);
    gauge!("autopilot_postgres_replicas_streaming").set(f.streaming as f64);
    gauge!("autopilot_postgres_synchronous_replicas").set(f.synchronous as f64);
    gauge!("autopilot_postgres_uptime_seconds").set(f.uptime_seconds);
    gauge!("autopilot_postgres_server_version_num").set(f.version_num as f64);
    gauge!("autopilot_postgres_wal_receiver_streaming").set(if f.receiving { 1.0 } else { 0.0 });
}

/// The top `limit` statements of `pg_stat_statements` by total execution time; on a primary
/// that lacks the extension, it is created first (it replicates to the standbys).
pub async fn top_statements(
    client: &Client,
    limit: u32,
) -> Result<Vec<cluster::wire::StatementStats>, SqlError> {
    let exists = row(
        client,
        "SELECT (count(*) > 0)::text FROM pg_extension WHERE extname = 'pg_stat_statements'",
    )
    .await?;
    if exists.first().cloned().flatten().as_deref() != Some("true") {
        let primary = row(client, "SELECT (NOT pg_is_in_recovery())::text").await?;
        if primary.first().cloned().flatten().as_deref() != Some("true") {
            return Err(SqlError::Failed(
                "pg_stat_statements is not created yet: the primary creates it, and it replicates"
                    .into(),
            ));
        }
        super::sql::execute(client, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements").await?;
    }
    let rows = super::sql::rows(
        client,
        &format!(
            "SELECT s.queryid::text, left(s.query, 500), d.datname, s.calls::text, \
               (s.total_exec_time / 1000)::float8::text, (s.mean_exec_time / 1000)::float8::text, \
               s.rows::text \
             FROM pg_stat_statements s LEFT JOIN pg_database d ON d.oid = s.dbid \
             WHERE s.queryid IS NOT NULL AND s.query !~* 'password' \
             ORDER BY s.total_exec_time DESC LIMIT {limit}"
        ),
    )
    .await?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let text = |k: usize| r.get(k).cloned().flatten();
            let int = |k: usize| text(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            let float = |k: usize| text(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            cluster::wire::StatementStats {
                rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
                id: text(0).unwrap_or_default(),
                query: text(1).unwrap_or_default(),
                database: text(2),
                calls: int(3),
                total_seconds: float(4),
                mean_seconds: float(5),
                rows: int(6),
            }
        })
        .collect())
}
