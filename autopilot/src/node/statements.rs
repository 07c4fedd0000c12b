//! The database's top statements by total execution time: `GET /statements?limit=N` on the
//! agent's listener (what `autopilotctl top` shows through the coordinator) and the
//! `autopilot_top_statement_*{rank}` gauges, refreshed every [`EXPORT_EVERY`]. The gauges
//! are keyed by rank only (`1..=telemetry.top_statements`), so their number is bounded
//! whatever the workload; `/statements` names the statements behind the ranks.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cluster::wire::{NodeStatements, StatementStats, Timestamp};
use engines::{AnyEngine, Engine};
use metrics::gauge;

/// How often the gauges are refreshed: the statistics are cumulative, and reading them
/// costs the database a scan of its digest table.
pub const EXPORT_EVERY: Duration = Duration::from_secs(15);
/// How long one read of the statistics may take.
const READ_LIMIT: Duration = Duration::from_secs(5);
/// The most statements one request may ask for.
pub const MAX_LIMIT: u32 = 100;

#[derive(Clone)]
struct StatementsState {
    engine: Arc<AnyEngine>,
    node: String,
    default_limit: u32,
}

/// `/statements`, for the telemetry listener.
pub fn routes(engine: Arc<AnyEngine>, node: String, default_limit: u32) -> Router {
    Router::new()
        .route("/statements", get(statements))
        .with_state(StatementsState {
            engine,
            node,
            default_limit,
        })
}

#[derive(Debug, serde::Deserialize)]
struct StatementsQuery {
    limit: Option<String>,
}

/// `limit=` of `/statements`: a whole number from 1 to [`MAX_LIMIT`].
pub fn parse_limit(text: Option<&str>, default: u32) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit={text:?} is not a whole number from 1 to {MAX_LIMIT}"
        )),
    }
}

fn error(code: StatusCode, text: &str) -> Response {
    (code, Json(serde_json::json!({ "error": text }))).into_response()
}

/// 200 with [`NodeStatements`]; 400 on a bad `limit`; 503 when the database keeps no
/// statistics or does not answer.
async fn statements(
    State(st): State<StatementsState>,
    Query(q): Query<StatementsQuery>,
) -> Response {
    let limit = match parse_limit(q.limit.as_deref(), st.default_limit) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match read(&st.engine, limit).await {
        Ok(statements) => Json(NodeStatements {
            node: st.node.clone(),
            time: Timestamp::now(),
            statements,
        })
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

async fn read(engine: &AnyEngine, limit: u32) -> Result<Vec<StatementStats>, String> {
    match tokio::time::timeout(READ_LIMIT, engine.top_statements(limit)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the database did not answer within {READ_LIMIT:?}")),
    }
}

/// Refresh the `autopilot_top_statement_*{rank}` gauges every [`EXPORT_EVERY`] while the
/// agent runs; ranks without a statement read 0. A database that keeps no statistics leaves
/// them at 0.
pub fn spawn_exporter(engine: Arc<AnyEngine>, top: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EXPORT_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let got = read(&engine, top).await.unwrap_or_default();
            for rank in 1..=top {
                let s = got.iter().find(|s| s.rank == rank);
                let label = rank.to_string();
                gauge!("autopilot_top_statement_time_seconds", "rank" => label.clone())
                    .set(s.map_or(0.0, |s| s.total_seconds));
                #[allow(clippy::cast_precision_loss)]
                gauge!("autopilot_top_statement_calls", "rank" => label.clone())
                    .set(s.map_or(0.0, |s| s.calls as f64));
                gauge!("autopilot_top_statement_mean_seconds", "rank" => label)
                    .set(s.map_or(0.0, |s| s.mean_seconds));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_a_whole_number_from_one_to_a_hundred() {
        assert_eq!(parse_limit(None, 10), Ok(10));
        assert_eq!(parse_limit(Some("1"), 10), Ok(1));
        assert_eq!(parse_limit(Some("100"), 10), Ok(100));
        for bad in ["0", "101", "-1", "abc", "", "2.5"] {
            let e = parse_limit(Some(bad), 10).expect_err(bad);
            assert!(e.contains("limit=") && e.contains("1 to 100"), "{e}");
        }
    }
}
