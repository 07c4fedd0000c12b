//! The OpenAPI 3 document. Paths come from the `#[utoipa::path]` attributes of the handlers,
//! registered together with their routes (`utoipa_axum::routes!` in `api/mod.rs`), so the
//! document and the router cannot drift apart; `tests/tests/coordinator_openapi.rs` checks
//! it against the running server.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::problem::Problem;

/// The document's fixed parts.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Autopilot coordinator API",
        description = "Clusters, nodes, switchover, failover, maintenance, tokens and the audit \
            log of the databases Autopilot agents run. Errors are RFC 9457 problem documents \
            (`application/problem+json`) with a stable `code`. See docs/api.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem)),
    tags(
        (name = "clusters", description = "Read clusters, nodes, primary, history, events"),
        (name = "actions", description = "Switchover, forced failover, maintenance"),
        (name = "tokens", description = "API tokens and agent registration"),
        (name = "audit", description = "The audit log"),
        (name = "meta", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme every `/v1` route uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`apt_<id>_<secret>` issued by POST /v1/tokens, or the admin token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Fills what the attributes leave out but OpenAPI requires: every response needs a
/// `description` (the HTTP reason phrase unless one was written).
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            for (code, r) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = r
                    && r.description.is_empty()
                {
                    r.description = code
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Response")
                        .to_owned();
                }
            }
        }
    }
}
