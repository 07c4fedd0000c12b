//! Talking to a PostgreSQL server: short-lived connections with tight timeouts, LSN and
//! timeline parsing, and the status queries the engine's operations share.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::settings::Credentials;
use crate::engine::EngineError;
use crate::role_ops::Position;

/// How long connecting may take; a frozen or unreachable server must not stall the agent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long one statement may take (promotion waits longer, see its caller).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `application_name` of the agents' own connections: fencing never terminates them
/// (two agents fencing at once must not cut each other off; they never write user data).
pub const AGENT_APPLICATION: &str = "autopilot-agent";

/// Why a connection or statement failed, split so callers can tell "not there" apart.
#[derive(Debug)]
pub enum SqlError {
    /// The server could not be reached (refused, timed out, shutting down).
    Unreachable(String),
    /// It answered with an error.
    Failed(String),
    /// The agent could not open a socket (out of file descriptors): nothing is known about
    /// the server, which must not be read as unreachable.
    AgentOutOfFiles,
}

impl SqlError {
    /// As an engine error for `operation`.
    pub fn into_engine(self, operation: &'static str) -> EngineError {
        match self {
            SqlError::Unreachable(reason) | SqlError::Failed(reason) => {
                EngineError::Failed { operation, reason }
            }
            SqlError::AgentOutOfFiles => EngineError::AgentOutOfFiles { operation },
        }
    }
}

fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

/// Connect to `host:port` as `who` (database `postgres`); the connection task is spawned
/// and ends when the client is dropped.
pub async fn connect(host: &str, port: u16, who: &Credentials) -> Result<Client, SqlError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&who.user)
        .password(&who.password)
        .dbname("postgres")
        .application_name(AGENT_APPLICATION)
        .connect_timeout(CONNECT_TIMEOUT);
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls));
    match connecting.await {
        Err(_) => Err(SqlError::Unreachable(format!(
            "connect to {host}:{port}: timed out"
        ))),
        Ok(Err(e)) if crate::out_of_files(&e) => Err(SqlError::AgentOutOfFiles),
        Ok(Err(e)) => {
            let is_db = e.as_db_error().is_some();
            let msg = format!("connect to {host}:{port}: {}", pg_error(&e));
            // "the database system is starting up / shutting down" count as unreachable.
            let transient = e
                .code()
                .is_some_and(|c| c.code() == "57P03" || c.code() == "57P01");
            if is_db && !transient {
                Err(SqlError::Failed(msg))
            } else {
                Err(SqlError::Unreachable(msg))
            }
        }
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
    }
}

/// Run `sql` (one or more statements, no parameters) with the statement timeout.
pub async fn execute(client: &Client, sql: &str) -> Result<(), SqlError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, client.batch_execute(sql)).await {
        Err(_) => Err(SqlError::Unreachable(format!(
            "run `{}`: timed out",
            short(sql)
        ))),
        Ok(Err(e)) => Err(SqlError::Failed(format!(
            "run `{}`: {}",
            short(sql),
            pg_error(&e)
        ))),
        Ok(Ok(())) => Ok(()),
    }
}

/// Run a query and return every row's columns as text (`None` for NULL).
pub async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, SqlError> {
    let run = client.simple_query(sql);
    let messages = match tokio::time::timeout(STATEMENT_TIMEOUT, run).await {
        Err(_) => {
            return Err(SqlError::Unreachable(format!(
                "run `{}`: timed out",
                short(sql)
            )));
        }
        Ok(Err(e)) => {
            return Err(SqlError::Failed(format!(
                "run `{}`: {}",
                short(sql),
                pg_error(&e)
            )));
        }
        Ok(Ok(m)) => m,
    };
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The first row of a query; an error when there is none.
pub async fn row(client: &Client, sql: &str) -> Result<Vec<Option<String>>, SqlError> {
    rows(client, sql)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| SqlError::Failed(format!("run `{}`: no row", short(sql))))
}

fn short(sql: &str) -> String {
    let one_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(80).collect()
}

/// Parse an LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX)).then_some((hi << 32) | lo)
}

/// Format an LSN the way PostgreSQL does.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// The status of a server as the engine needs it.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// The latest timeline the server knows: its own on a primary; on a standby the
    /// highest of the last checkpoint's and of the WAL segment files holding its furthest WAL.
    pub timeline: u64,
    /// Primary: `pg_current_wal_flush_lsn()`. Standby: `pg_last_wal_replay_lsn()`.
    pub lsn: u64,
    /// Standby: `pg_last_wal_receive_lsn()` (WAL flushed locally by the walreceiver).
    pub receive_lsn: Option<u64>,
}

impl Status {
    /// As a role position: (timeline, LSN). A standby counts everything it holds, replayed
    /// or only received: promotion replays all of it first, so a replica that received more
    /// WAL has more data even before its replay caught up.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.timeline,
            offset: if self.in_recovery {
                self.furthest()
            } else {
                self.lsn
            },
        }
    }

    /// The furthest WAL this server holds (replayed or only received).
    pub fn furthest(&self) -> u64 {
        self.lsn.max(self.receive_lsn.unwrap_or(0))
    }
}

/// Read the server's recovery state, timeline and WAL positions in one round trip.
pub async fn status(client: &Client) -> Result<Status, SqlError> {
    let r = row(
        client,
        "SELECT pg_is_in_recovery(), \
           CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text \
                ELSE pg_current_wal_flush_lsn()::text END, \
           pg_last_wal_receive_lsn()::text, \
           CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())::text \
                ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END, \
           (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')",
    )
    .await?;
    let text = |i: usize| r.get(i).cloned().flatten();
    let in_recovery = text(0).as_deref() == Some("t");
    let lsn = text(1).as_deref().and_then(parse_lsn).unwrap_or(0);
    let receive_lsn = text(2).as_deref().and_then(parse_lsn);
    let tli = |i: usize| text(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let mut st = Status {
        in_recovery,
        timeline: tli(3),
        lsn,
        receive_lsn,
    };
    if in_recovery && let Some(seg_size) = text(4).and_then(|s| s.parse::<u64>().ok()) {
        // The timeline of the furthest WAL held: the highest timeline among the WAL segment
        // files of its segment. (A timeline history file alone proves nothing: a standby
        // fetches it before it can tell whether it can switch to that timeline.)
        let suffix = segment_suffix(st.furthest().saturating_sub(1), seg_size);
        let r = row(
            client,
            &format!(
                "SELECT max(('x' || substr(f, 1, 8))::bit(32)::int)::text FROM pg_ls_dir('pg_wal') AS f \
                 WHERE f ~ '^[0-9A-F]{{24}}$' AND substr(f, 9) = '{suffix}'"
            ),
        )
        .await?;
        if let Some(t) = r
            .first()
            .cloned()
            .flatten()
            .and_then(|t| t.parse::<u64>().ok())
        {
            st.timeline = st.timeline.max(t);
        }
    }
    Ok(st)
}

/// The last 16 hex digits of the name of the WAL segment holding `lsn`.
pub fn segment_suffix(lsn: u64, segment_size: u64) -> String {
    let size = segment_size.max(1);
    let per_id = (0x1_0000_0000 / size).max(1);
    let seg = lsn / size;
    format!("{:08X}{:08X}", seg / per_id, seg % per_id)
}

/// Parse a timeline history file (`parentTLI switchpoint reason` lines) into
/// `(parent timeline, switch point)` pairs.
pub fn parse_history(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let tli = parts.next()?.parse().ok()?;
            let lsn = parse_lsn(parts.next()?)?;
            Some((tli, lsn))
        })
        .collect()
}

/// Whether a node at (`local_tli`, furthest `local_lsn`) diverged from a primary on
/// `primary_tli` at `primary_lsn` whose timeline history is `history` (empty on timeline 1).
/// Not diverged means it can stream from the primary as it is.
pub fn diverged(
    local_tli: u64,
    local_lsn: u64,
    primary_tli: u64,
    primary_lsn: u64,
    history: &[(u64, u64)],
) -> bool {
    if local_tli == primary_tli {
        return local_lsn > primary_lsn;
    }
    if local_tli > primary_tli {
        return true;
    }
    match history.iter().find(|(tli, _)| *tli == local_tli) {
        Some((_, switch)) => local_lsn > *switch,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_and_print() {
        assert_eq!(parse_lsn("0/3000060"), Some(0x300_0060));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(format_lsn((0x16 << 32) | 0xB374_D848), "16/B374D848");
        assert_eq!(parse_lsn("x"), None);
        assert_eq!(parse_lsn("1/2/3"), None);
    }

    #[test]
    fn segment_names_follow_postgres() {
        // 0/503C710 with 16 MB segments is in segment 5: 000000XX 00000000 00000005.
        assert_eq!(segment_suffix(0x503_C710, 16 << 20), "0000000000000005");
        assert_eq!(
            segment_suffix((1 << 32) + 0x100_0000, 16 << 20),
            "0000000100000001"
        );
    }

    #[test]
    fn history_files_parse() {
        let h = parse_history("1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tx\n");
        assert_eq!(h, vec![(1, 0x300_0060), (2, 0x500_0000)]);
    }

    #[test]
    fn divergence_follows_the_switch_points() {
        let h = [(1, 100), (2, 200)];
        // Same timeline: behind is fine, ahead is not.
        assert!(!diverged(3, 250, 3, 300, &h));
        assert!(diverged(3, 350, 3, 300, &h));
        // An ancestor timeline: fine up to its switch point.
        assert!(!diverged(1, 100, 3, 300, &h));
        assert!(diverged(1, 101, 3, 300, &h));
        assert!(!diverged(2, 150, 3, 300, &h));
        // A timeline the primary never had, or a newer one.
        assert!(diverged(4, 10, 3, 300, &h));
        assert!(diverged(5, 10, 3, 300, &[(1, 100), (2, 200), (4, 250)]));
    }
}
