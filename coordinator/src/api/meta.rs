//! The coordinator's own endpoints, without a token: `/healthz` (and etcd reachability),
//! `/metrics` (Prometheus text) and `/v1/openapi.json`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cluster::store::Store;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;
use crate::state::AppState;

/// Answer of `/healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Healthz {
    /// `ok`, or `degraded` when etcd's database is near its quota (see `etcd`).
    pub status: String,
    /// This build's version.
    pub version: String,
    /// etcd's space, from the last reading (every 5 s); absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdSpaceBody>,
}

/// etcd's space as `/healthz` shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EtcdSpaceBody {
    /// Backend database size, bytes.
    pub db_size_bytes: u64,
    /// The quota, bytes.
    pub quota_bytes: u64,
    /// A NOSPACE alarm is raised (then `/healthz` answers 503).
    pub nospace_alarm: bool,
}

/// Liveness and etcd's ability to take writes: 200 when etcd answered a read and raised no
/// NOSPACE alarm (`status: degraded` from 90% of its quota on), 503 otherwise.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()),
    responses((status = 200, body = Healthz),
        (status = 503, description = "etcd unreachable or refusing writes (NOSPACE alarm)",
            body = Problem, content_type = "application/problem+json")))]
pub async fn healthz(State(st): State<AppState>) -> Result<Json<Healthz>, Problem> {
    let key = format!("{}/_coordinator/healthz", st.prefix());
    st.store().get(&key).await.map_err(|e| Problem::store(&e))?;
    let space = st.etcd_space();
    if let Some(s) = space.filter(|s| s.nospace_alarm) {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "etcd_nospace",
            format!(
                "etcd raised a NOSPACE alarm ({} of {} bytes used) and refuses every write: \
                 agents cannot keep their node keys; compact and defragment etcd, then \
                 `etcdctl alarm disarm` (docs/operations.md, \"etcd out of space\")",
                s.db_size, s.quota
            ),
        ));
    }
    let degraded = space.is_some_and(|s| s.near_full());
    Ok(Json(Healthz {
        status: if degraded { "degraded" } else { "ok" }.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        etcd: space.map(|s| EtcdSpaceBody {
            db_size_bytes: s.db_size,
            quota_bytes: s.quota,
            nospace_alarm: s.nospace_alarm,
        }),
    }))
}

/// Prometheus metrics of this coordinator.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(st): State<AppState>) -> Response {
    let mut body = st.metrics().map(|h| h.render()).unwrap_or_default();
    body.push_str(&st.cluster_gauges());
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
