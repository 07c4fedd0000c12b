//! The HTTP listener: `/metrics` for Prometheus, `/health`, `/primary` and `/replica` for
//! load balancers and humans, and whatever routes the node adds (the MariaDB clone stream,
//! `node::clone`).

use axum::extract::State;
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

    /// The status with the role, as `/health`, `/primary` and `/replica` report it.
    fn body(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(&*self.status.borrow()).unwrap_or_default();
        body["role"] = self.role().map_or("standalone", Role::label).into();
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

/// 200 on healthy replicas (for load balancers routing reads).
async fn replica(State(state): State<HttpState>) -> impl IntoResponse {
    let ok = state.role() == Some(Role::Replica) && state.status.borrow().healthy;
    answer(ok, &state)
}
