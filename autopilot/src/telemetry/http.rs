//! The HTTP listener: `/metrics` for Prometheus; `/health`, `/primary`, `/replica`
//! (optionally `?lag=16MB` or `?lag=10s`), `/read-only`, `/sync` and `/async` for load
//! balancers and humans, as Patroni's operators know them; and whatever routes the node adds
//! (the MariaDB clone stream, `node::clone`).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use super::status::NodeStatus;
use crate::role::Role;

/// What the routes read: the recorder's handle and the latest node status.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the Prometheus text format.
    pub metrics: PrometheusHandle,
    /// The latest status published by the health actor.
    pub status: watch::Receiver<NodeStatus>,
    /// The node's role, published by the role actor; `None` for a standalone agent.
    pub role: Option<watch::Receiver<super::PublishedRole>>,
}

impl HttpState {
    fn role(&self) -> Option<Role> {
        let now = std::time::Instant::now();
        self.role.as_ref().map(|r| r.borrow().at(now))
    }

    /// On a healthy replica: whether the primary's commits wait for it (`None` when not a
    /// healthy replica or not known).
    fn replica_synchronous(&self) -> Option<bool> {
        let healthy = self.status.borrow().healthy;
        let role = *self.role.as_ref()?.borrow();
        (healthy && role.at(std::time::Instant::now()) == Role::Replica)
            .then_some(role.synchronous)
            .flatten()
    }

    /// The status with the role, as `/health`, `/primary` and `/replica` report it.
    fn body(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(&*self.status.borrow()).unwrap_or_default();
        body["role"] = self.role().map_or("standalone", Role::label).into();
        if let Some(sync) = self.role.as_ref().and_then(|r| r.borrow().synchronous) {
            body["synchronous"] = sync.into();
        }
        body
    }
}

/// The routes, ready to serve, with the node's own `extra` routes beside them.
pub fn router(state: HttpState, extra: Router) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/primary", get(primary))
        .route("/replica", get(replica))
        .route("/read-only", get(read_only))
        .route("/sync", get(sync))
        .route("/async", get(asynchronous))
        .with_state(state)
        .merge(extra)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

fn answer(ok: bool, state: &HttpState) -> (StatusCode, Json<serde_json::Value>) {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(state.body()))
}

/// 200 with the status when healthy, 503 with the same body when not.
async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    answer(state.status.borrow().healthy, &state)
}

/// 200 only on the node that holds the primary key and is not fenced (for load balancers
/// routing writes).
async fn primary(State(state): State<HttpState>) -> impl IntoResponse {
    answer(state.role() == Some(Role::Primary), &state)
}

/// The query of `/replica`.
#[derive(Debug, serde::Deserialize)]
struct ReplicaQuery {
    /// The most lag the caller accepts: bytes (`1048576`, `16MB`) or a duration (`10s`).
    lag: Option<String>,
}

/// 200 on healthy replicas (for load balancers routing reads); with `?lag=`, only on those
/// streaming within that lag. 400 when `lag` cannot be read, or asks for bytes on an engine
/// that counts lag otherwise (MariaDB: use a duration).
async fn replica(
    State(state): State<HttpState>,
    Query(q): Query<ReplicaQuery>,
) -> axum::response::Response {
    let max = match q.lag.as_deref().map(parse_lag).transpose() {
        Ok(max) => max,
        Err(e) => return bad_request(&e),
    };
    let ok = state.role() == Some(Role::Replica) && state.status.borrow().healthy;
    let within = match max {
        None => Ok(true),
        Some(max) => within_lag(state.status.borrow().server.receiver.as_ref(), max),
    };
    match within {
        Ok(within) => answer(ok && within, &state).into_response(),
        Err(e) => bad_request(&e),
    }
}

/// 200 on healthy nodes that serve reads: the primary and the replicas.
async fn read_only(State(state): State<HttpState>) -> impl IntoResponse {
    let ok = matches!(state.role(), Some(Role::Primary | Role::Replica))
        && state.status.borrow().healthy;
    answer(ok, &state)
}

/// 200 on healthy replicas the primary's commits wait for (its `primary` document says so).
async fn sync(State(state): State<HttpState>) -> impl IntoResponse {
    answer(state.replica_synchronous() == Some(true), &state)
}

/// 200 on healthy replicas the primary's commits do not wait for.
async fn asynchronous(State(state): State<HttpState>) -> impl IntoResponse {
    answer(state.replica_synchronous() == Some(false), &state)
}

fn bad_request(error: &str) -> axum::response::Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "error": error })),
    )
        .into_response()
}

/// The most lag a `/replica?lag=` caller accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxLag {
    /// Bytes of WAL received but not replayed (PostgreSQL).
    Bytes(u64),
    /// Seconds behind, as the database reports them.
    Duration(Duration),
}

/// `lag=` as Patroni reads it: bytes, bare or with a unit (`B`, `kB`, `MB`, `GB`, `TB`,
/// powers of 1024 as PostgreSQL counts them), or a duration with its unit (`500ms`, `10s`,
/// `1min`, `1h`).
pub fn parse_lag(text: &str) -> Result<MaxLag, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || {
        format!(
            "lag={text:?} is neither bytes (e.g. 1048576, 16MB) nor a duration (e.g. 10s, 500ms)"
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = |shift: u32| {
        n.checked_mul(1u64 << shift)
            .map(MaxLag::Bytes)
            .ok_or_else(bad)
    };
    match unit.trim() {
        "" | "B" => Ok(MaxLag::Bytes(n)),
        "kB" | "KB" => bytes(10),
        "MB" => bytes(20),
        "GB" => bytes(30),
        "TB" => bytes(40),
        _ => humantime::parse_duration(t)
            .map(MaxLag::Duration)
            .map_err(|_| bad()),
    }
}

/// Whether a replica's receiver is streaming within `max`; an error when the engine does
/// not count lag that way.
pub fn within_lag(receiver: Option<&engines::Receiver>, max: MaxLag) -> Result<bool, String> {
    let Some(r) = receiver.filter(|r| r.state == cluster::wire::ReplicaState::Streaming) else {
        return Ok(false);
    };
    match max {
        MaxLag::Bytes(max) => match (r.lag_bytes, r.lag_transactions) {
            (Some(lag), _) => Ok(lag <= max),
            (None, Some(_)) => Err(
                "this database counts replication lag in transactions, not bytes: give lag a duration (e.g. lag=10s)"
                    .into(),
            ),
            (None, None) => Ok(false),
        },
        MaxLag::Duration(max) => Ok(r.lag_seconds.is_some_and(|s| s <= max.as_secs_f64())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::wire::ReplicaState;

    #[test]
    fn lag_reads_bytes_and_durations_as_patroni_does() {
        assert_eq!(parse_lag("1048576"), Ok(MaxLag::Bytes(1 << 20)));
        assert_eq!(parse_lag("16MB"), Ok(MaxLag::Bytes(16 << 20)));
        assert_eq!(parse_lag("64kB"), Ok(MaxLag::Bytes(64 << 10)));
        assert_eq!(parse_lag("1GB"), Ok(MaxLag::Bytes(1 << 30)));
        assert_eq!(
            parse_lag("10s"),
            Ok(MaxLag::Duration(Duration::from_secs(10)))
        );
        assert_eq!(
            parse_lag("500ms"),
            Ok(MaxLag::Duration(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_lag("1min"),
            Ok(MaxLag::Duration(Duration::from_secs(60)))
        );
        for bad in [
            "",
            "fast",
            "-1",
            "10 parsecs",
            "99999999999999999999TB",
            "1.5MB",
        ] {
            let e = parse_lag(bad).expect_err(bad);
            assert!(
                e.contains("lag=") && e.contains("16MB") && e.contains("10s"),
                "{e}"
            );
        }
    }

    #[test]
    fn only_a_streaming_replica_within_the_lag_passes() {
        let pg = engines::Receiver {
            state: ReplicaState::Streaming,
            lag_seconds: Some(2.0),
            lag_bytes: Some(4096),
            ..engines::Receiver::default()
        };
        let bytes = |n| MaxLag::Bytes(n);
        let secs = |s| MaxLag::Duration(Duration::from_secs(s));
        assert_eq!(within_lag(Some(&pg), bytes(4096)), Ok(true));
        assert_eq!(within_lag(Some(&pg), bytes(4095)), Ok(false));
        assert_eq!(within_lag(Some(&pg), secs(2)), Ok(true));
        assert_eq!(within_lag(Some(&pg), secs(1)), Ok(false));
        let connecting = engines::Receiver {
            state: ReplicaState::Connecting,
            ..pg.clone()
        };
        assert_eq!(within_lag(Some(&connecting), bytes(1 << 30)), Ok(false));
        assert_eq!(within_lag(None, secs(60)), Ok(false));
        let maria = engines::Receiver {
            state: ReplicaState::Streaming,
            lag_seconds: Some(0.0),
            lag_transactions: Some(3),
            ..engines::Receiver::default()
        };
        assert_eq!(within_lag(Some(&maria), secs(1)), Ok(true));
        let e = within_lag(Some(&maria), bytes(1 << 20)).expect_err("bytes on MariaDB");
        assert!(e.contains("duration"), "{e}");
    }
}
