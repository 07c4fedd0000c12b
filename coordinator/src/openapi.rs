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
        description = "Clusters, nodes, switchover, failover, maintenance, backups, tokens and \
            the audit log of the databases Autopilot agents run. Errors are RFC 9457 problem documents \
            (`application/problem+json`) with a stable `code`. See docs/api.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem)),
    tags(
        (name = "clusters", description = "Read clusters, nodes, primary, history, events"),
        (name = "actions", description = "Switchover, forced failover, maintenance"),
        (name = "backups", description = "Backups: records, manual restore instructions, requests to back up, verify, test-restore"),
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

/// Fills what the attributes leave out but OpenAPI requires or the server does: every
/// response gets a `description` (the HTTP reason phrase unless one was written); every error
/// body is `application/problem+json`; every `/v1` operation declares what the gate and the
/// listener may answer (400, 401, 429, 503, and 413/415 where a body is taken).
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for (path, item) in doc.paths.paths.iter_mut() {
        let gated = path.starts_with("/v1/") && path != "/v1/openapi.json";
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if gated {
                let mut codes = vec![400u16, 401, 429, 503];
                if op.request_body.is_some() {
                    codes.extend([413, 415]);
                }
                for code in codes {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| RefOr::T(problem_response(code)));
                }
            }
            for (code, r) in op.responses.responses.iter_mut() {
                let RefOr::T(r) = r else { continue };
                if let Some(RefOr::T(stream)) = r.content.get_mut("text/event-stream") {
                    stream.schema = Some(RefOr::T(sse_event()));
                }
                let status = code.parse::<u16>().ok();
                if r.description.is_empty() {
                    r.description = status
                        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Response")
                        .to_owned();
                }
                if status.is_some_and(|c| c >= 400)
                    && let Some(body) = r.content.shift_remove("application/json")
                {
                    r.content.insert(PROBLEM_JSON.to_owned(), body);
                }
            }
        }
    }
}

/// One server-sent event as OpenAPI before 3.2 describes the items of `text/event-stream`:
/// `data` is JSON text (a `StreamData`: a `ClusterEvent`, or a `Problem` on `event: error`).
fn sse_event() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let text = |what: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(what))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "One server-sent event; `data` is the JSON text of a StreamData (see components)",
        ))
        .property(
            "event",
            text("`event`, `primary`, `node`, `maintenance`, `switchover`, `history` or `error`"),
        )
        .property(
            "id",
            text("the etcd revision of the change; resume with Last-Event-ID"),
        )
        .property(
            "data",
            text("JSON: a ClusterEvent, or a Problem when `event` is `error`"),
        )
        .property(
            "retry",
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .description(Some("reconnection time, ms (not sent)")),
        )
        .required("data")
        .into()
}

/// The media type of every error body.
const PROBLEM_JSON: &str = "application/problem+json";

fn problem_response(code: u16) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let why = match code {
        400 => "The request is malformed (path, query, header or body); see `detail`",
        401 => "No token, or a token that is not valid, expired or revoked",
        413 => "The body is larger than the coordinator's --body-limit",
        415 => "The body is not `application/json`",
        429 => "Too many requests for this token, or too many failures from this address",
        503 => "etcd is unreachable or refuses writes, or the coordinator is at a limit",
        _ => "Error",
    };
    ResponseBuilder::new()
        .description(why)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}
