//! A node's top statements by total execution time (`GET /statements` of an agent, and the
//! coordinator's per-cluster view of them). Not an etcd document: read live from the
//! database's own statistics (PostgreSQL `pg_stat_statements`, MariaDB
//! `performance_schema.events_statements_summary_by_digest`), cumulative since they were
//! last reset (a restart, or an operator's reset).

use serde::{Deserialize, Serialize};

use super::common::Timestamp;

/// One normalised statement (literals replaced by placeholders) and what it cost.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementStats {
    /// 1 for the statement with the most total execution time.
    pub rank: u32,
    /// The database's id of the normalised statement (`queryid`, MariaDB's digest).
    pub id: String,
    /// The normalised text, cut to 500 characters.
    pub query: String,
    /// The database (schema) it ran in, when the database says.
    #[serde(default)]
    pub database: Option<String>,
    /// Executions.
    pub calls: u64,
    /// Total execution time, seconds.
    pub total_seconds: f64,
    /// Mean execution time, seconds.
    pub mean_seconds: f64,
    /// Rows returned or affected.
    pub rows: u64,
}

/// `GET /statements` of an agent: its database's top statements.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeStatements {
    /// The node id.
    pub node: String,
    /// When they were read.
    pub time: Timestamp,
    /// The top statements, most expensive first.
    pub statements: Vec<StatementStats>,
}
