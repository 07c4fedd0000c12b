//! The coordinator's own endpoints, without a token: `/healthz` (and etcd reachability),
//! `/metrics` (Prometheus text) and `/v1/openapi.json`.

use autopilot::store::Store;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;
use crate::state::AppState;

/// Answer of `/healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Healthz {
    /// `ok`.
    pub status: String,
    /// This build's version.
    pub version: String,
}

/// Liveness and etcd reachability: 200 when etcd answered a read, 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, body = Healthz), (status = 503, body = Problem)))]
pub async fn healthz(State(st): State<AppState>) -> Result<Json<Healthz>, Problem> {
    let key = format!("{}/_coordinator/healthz", st.prefix());
    st.store().get(&key).await.map_err(|e| Problem::store(&e))?;
    Ok(Json(Healthz {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Prometheus metrics of this coordinator.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let body = st.metrics().map(|h| h.render()).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi(State(st): State<AppState>) -> Response {
    let body = st.openapi_json().get().cloned().unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
