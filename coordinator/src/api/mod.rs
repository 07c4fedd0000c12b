//! The HTTP API: one file per route group, the [`gate`] every `/v1` request passes, the
//! problem-document extractors, and [`router`] which assembles routes, OpenAPI document and
//! protections (body limit, timeout, panic catcher, metrics).

pub mod actions;
pub mod audit;
pub mod backups;
pub mod clusters;
pub mod events;
pub mod extract;
pub mod gate;
pub mod meta;
pub mod migration;
pub mod nodes;
pub mod packages;
pub mod restore;
pub mod statements;
pub mod tokens;
pub mod upgrade;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::ApiDoc;
use crate::problem::Problem;
use crate::state::AppState;

/// Every route and its OpenAPI operation, registered together.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(clusters::list_clusters))
        .routes(routes!(clusters::get_cluster))
        .routes(routes!(clusters::list_nodes))
        .routes(routes!(clusters::get_node))
        .routes(routes!(clusters::get_primary))
        .routes(routes!(clusters::get_history))
        .routes(routes!(statements::get_statements))
        .routes(routes!(events::events))
        .routes(routes!(actions::switchover))
        .routes(routes!(actions::failover))
        .routes(routes!(actions::maintenance))
        .routes(routes!(nodes::reinit))
        .routes(routes!(nodes::restart))
        .routes(routes!(nodes::reload_node))
        .routes(routes!(nodes::reload_all))
        .routes(routes!(nodes::remove))
        .routes(routes!(nodes::config))
        .routes(routes!(restore::restore))
        .routes(routes!(migration::get_migration))
        .routes(routes!(migration::cutover))
        .routes(routes!(packages::list_packages))
        .routes(routes!(upgrade::start, upgrade::status))
        .routes(routes!(upgrade::pause))
        .routes(routes!(upgrade::resume))
        .routes(routes!(backups::list_backups, backups::run_backup))
        .routes(routes!(backups::get_backup))
        .routes(routes!(backups::verify_backup))
        .routes(routes!(backups::test_restore_backup))
        .routes(routes!(tokens::create_token, tokens::list_tokens))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(tokens::register_agent))
        .routes(routes!(audit::list_audit))
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi))
}

/// The OpenAPI document alone (for tests and `coordinator openapi`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().split_for_parts().1;
    crate::openapi::finish(&mut doc);
    doc
}

/// The whole application: routes, fallbacks and protections.
pub fn router(state: AppState, body_limit: usize) -> Router {
    let (router, mut doc) = routes().split_for_parts();
    crate::openapi::finish(&mut doc);
    let json = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    let _ = state.openapi_json().set(json);
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .layer(CatchPanicLayer::custom(|_| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the coordinator hit a bug answering this request; see its log and report it",
            )
            .into_response()
        }))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found(
        "route_not_found",
        "no such endpoint; the API is described at /v1/openapi.json",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /v1/openapi.json",
    )
}

/// Bounds the time to an answer (event streams: to their first byte), counts and logs every
/// request (method, route, status — never headers or bodies).
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let t0 = Instant::now();
    let resp = match tokio::time::timeout(st.request_timeout(), next.run(req)).await {
        Ok(r) => r,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "no answer within the coordinator's request timeout; etcd may be slow: retry",
        )
        .into_response(),
    };
    let status = resp.status().as_u16();
    metrics::counter!("autopilot_coordinator_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status.to_string())
    .increment(1);
    metrics::histogram!("autopilot_coordinator_request_duration_seconds", "route" => route.clone())
        .record(t0.elapsed().as_secs_f64());
    tracing::debug!(%method, %route, status, elapsed_ms = t0.elapsed().as_millis() as u64, "request");
    resp
}
