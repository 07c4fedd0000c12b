//! The HTTP listener: `/metrics` for Prometheus, `/health` for load balancers and humans.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use super::status::NodeStatus;

/// What the routes read: the recorder's handle and the latest node status.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the Prometheus text format.
    pub metrics: PrometheusHandle,
    /// The latest status published by the health actor.
    pub status: watch::Receiver<NodeStatus>,
}

/// The routes, ready to serve.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
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

/// 200 with the status when healthy, 503 with the same body when not.
async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    let status = state.status.borrow().clone();
    let code = if status.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(status))
}
