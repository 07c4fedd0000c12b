//! Tokens: issue (`POST /v1/tokens`, admin), list, revoke; and agent registration
//! (`POST /v1/agents/register`, operator on the namespace) which issues a token that reads
//! one cluster only. The token string is in the answer once and never stored.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use cluster::wire::{self, Timestamp, TokenCluster, TokenDoc, TokenRole};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, Body, json};
use super::gate::{Gate, Need, admit};
use crate::auth::{Caller, token};
use crate::problem::Problem;
use crate::state::AppState;

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Who or what uses it (1–128 characters).
    pub name: String,
    /// `viewer`, `operator` or `admin` (agent tokens come from `/v1/agents/register`).
    pub role: TokenRole,
    /// Namespaces it may see; `["*"]` for all. Must be within the caller's own.
    pub namespaces: Vec<String>,
    /// Lifetime in seconds; omit for a token that never expires.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// Body of `POST /v1/agents/register`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// The agent's namespace.
    pub namespace: String,
    /// The agent's project.
    pub project: String,
    /// The agent's cluster.
    pub cluster: String,
    /// The agent's node id.
    pub node: String,
    /// Lifetime in seconds; omit for no expiry.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// A token as shown by the API: everything but the hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Token id (also the middle part of the token string).
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: TokenRole,
    /// Visible namespaces (`*`: all).
    pub namespaces: Vec<String>,
    /// Agent tokens: their cluster.
    pub cluster: Option<TokenCluster>,
    /// Agent tokens: their node id.
    pub node: Option<String>,
    /// Issued at.
    pub created_at: Timestamp,
    /// Id of the issuing token.
    pub created_by: String,
    /// Expiry, if any.
    pub expires_at: Option<Timestamp>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<Timestamp>,
    /// Id of the revoking token.
    pub revoked_by: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

impl From<&TokenDoc> for TokenInfo {
    fn from(d: &TokenDoc) -> Self {
        let status = if d.revoked_at.is_some() {
            "revoked"
        } else if d.expires_at.is_some_and(|t| t <= Timestamp::now()) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: d.id.clone(),
            name: d.name.clone(),
            role: d.role,
            namespaces: d.namespaces.clone(),
            cluster: d.cluster.clone(),
            node: d.node.clone(),
            created_at: d.created_at,
            created_by: d.created_by.clone(),
            expires_at: d.expires_at,
            revoked_at: d.revoked_at,
            revoked_by: d.revoked_by.clone(),
            status: status.into(),
        }
    }
}

/// A newly issued token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedToken {
    /// The bearer token. Shown this once: store it now, it cannot be read again.
    pub token: String,
    /// Its details.
    pub info: TokenInfo,
}

/// Answer of `GET /v1/tokens`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    /// Tokens within the caller's namespaces, by id.
    pub tokens: Vec<TokenInfo>,
}

/// Token id in a URL.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    /// Token id.
    pub id: String,
}

fn valid_segment(s: &str) -> bool {
    crate::names::name_problem(s).is_none()
}

/// The longest lifetime a token may be given: 100 years (timestamps end at year 9999).
const MAX_LIFETIME_SECS: u64 = 100 * 366 * 24 * 3600;

/// When a token asked to live `secs` expires; never later than its issuer (`parent`), so a
/// token cannot outlive the token that made it.
fn expiry(secs: Option<u64>, parent: Option<Timestamp>) -> Result<Option<Timestamp>, Problem> {
    let own = match secs {
        None => None,
        Some(0) => {
            return Err(Problem::bad_request(
                "invalid_body",
                "expires_in_seconds must be at least 1; omit it for no expiry",
            ));
        }
        Some(s) if s > MAX_LIFETIME_SECS => {
            return Err(Problem::bad_request(
                "invalid_body",
                format!(
                    "expires_in_seconds must be at most {MAX_LIFETIME_SECS} (100 years); omit it \
                     for no expiry"
                ),
            ));
        }
        Some(s) => Some(
            std::time::SystemTime::now()
                .checked_add(Duration::from_secs(s))
                .map(Timestamp::from)
                .ok_or_else(|| {
                    Problem::bad_request("invalid_body", "expires_in_seconds is too large")
                })?,
        ),
    };
    Ok(match (own, parent) {
        (Some(o), Some(p)) => Some(o.min(p)),
        (o, p) => o.or(p),
    })
}

async fn issue(st: &AppState, mut doc: TokenDoc) -> Result<IssuedToken, Problem> {
    let issued = token::issue().map_err(|e| {
        tracing::error!(cause = %e, "failed to read the OS random number generator");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not generate a token; see the coordinator's log",
        )
    })?;
    doc.id = issued.id;
    doc.hash = issued.hash;
    if !st
        .tokens()
        .create(&doc)
        .await
        .map_err(|e| Problem::store(&e))?
    {
        return Err(Problem::conflict(
            "token_id_taken",
            "a random token id collided; retry",
        ));
    }
    Ok(IssuedToken {
        token: issued.token,
        info: TokenInfo::from(&doc),
    })
}

fn visible(caller: &Caller, d: &TokenDoc) -> bool {
    match &d.cluster {
        Some(c) => caller.sees_all() || caller.sees_namespace(&c.namespace),
        None => caller.covers(&d.namespaces),
    }
}

async fn admin_gate(
    st: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    action: &'static str,
    target: String,
) -> Result<Gate, Problem> {
    admit(
        st,
        headers,
        client,
        Need {
            action,
            target,
            role: TokenRole::Admin,
            cluster: None,
        },
    )
    .await
}

/// Issue a user token (admin).
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = IssuedToken), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn create_token(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    let g = admin_gate(&st, &headers, client, "token.create", "tokens".into()).await?;
    let run = async {
        let req: CreateToken = json(&body)?;
        if req.name.trim().is_empty() || crate::names::text_problem(&req.name, 128).is_some() {
            return Err(Problem::bad_request(
                "invalid_body",
                "name must be 1 to 128 characters of plain text (no control characters)",
            ));
        }
        if !matches!(
            req.role,
            TokenRole::Viewer | TokenRole::Operator | TokenRole::Admin
        ) {
            return Err(Problem::bad_request(
                "invalid_role",
                "role must be viewer, operator or admin; agent tokens come from \
                 POST /v1/agents/register",
            ));
        }
        let all = req.namespaces.len() == 1 && req.namespaces[0] == "*";
        if req.namespaces.is_empty() || !all && !req.namespaces.iter().all(|n| valid_segment(n)) {
            return Err(Problem::bad_request(
                "invalid_scope",
                "namespaces must be [\"*\"] or a non-empty list of namespace names (1-253 \
                 characters; no '/', whitespace or control characters; not `*`, `.`, `..`; \
                 not starting with '_')",
            ));
        }
        if req.role.rank() > g.caller.role.rank() {
            return Err(Problem::forbidden(
                "a token cannot grant a role above its issuer's; lower `role`",
            ));
        }
        if !g.caller.covers(&req.namespaces) {
            return Err(Problem::forbidden(
                "a token cannot grant namespaces its issuer does not see; narrow `namespaces`",
            ));
        }
        let doc = TokenDoc {
            schema: wire::SCHEMA_VERSION,
            id: String::new(),
            name: req.name,
            role: req.role,
            namespaces: req.namespaces,
            cluster: None,
            node: None,
            hash: String::new(),
            created_at: Timestamp::now(),
            created_by: g.caller.id.clone(),
            expires_at: expiry(req.expires_in_seconds, g.caller.expires_at)?,
            revoked_at: None,
            revoked_by: None,
        };
        Ok((StatusCode::CREATED, Json(issue(&st, doc).await?)))
    };
    let res = run.await;
    let detail = res.as_ref().ok().map(|(_, t)| {
        format!(
            "id={} role={} namespaces={}",
            t.info.id,
            t.info.role.as_str(),
            t.info.namespaces.join(",")
        )
    });
    g.finish(res, detail).await
}

/// List the tokens within the caller's namespaces (admin). Hashes are never shown.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = TokenList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn list_tokens(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<TokenList>, Problem> {
    let g = admin_gate(&st, &headers, client, "token.list", "tokens".into()).await?;
    let docs = st.tokens().list().await.map_err(|e| Problem::store(&e))?;
    let tokens = docs
        .iter()
        .filter(|d| visible(&g.caller, d))
        .map(TokenInfo::from)
        .collect();
    Ok(Json(TokenList { tokens }))
}

/// Revoke a token (admin). Revoking twice is not an error.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(TokenPath),
    responses((status = 200, body = TokenInfo), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn revoke_token(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(TokenPath { id }): ApiPath<TokenPath>,
) -> Result<(StatusCode, Json<TokenInfo>), Problem> {
    let g = admin_gate(&st, &headers, client, "token.revoke", id.clone()).await?;
    let run = async {
        let not_found = || {
            Problem::not_found(
                "token_not_found",
                format!("no token {id:?} is visible to this token; see `autopilotctl token list`"),
            )
        };
        let valid_id = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid_id {
            return Err(not_found());
        }
        let mut doc = st
            .tokens()
            .get_fresh(&id)
            .await
            .map_err(|e| Problem::store(&e))?
            .filter(|d| visible(&g.caller, d))
            .ok_or_else(not_found)?;
        if doc.revoked_at.is_none() {
            doc.revoked_at = Some(Timestamp::now());
            doc.revoked_by = Some(g.caller.id.clone());
            st.tokens()
                .put(&doc)
                .await
                .map_err(|e| Problem::store(&e))?;
        }
        Ok((StatusCode::OK, Json(TokenInfo::from(&doc))))
    };
    let res = run.await;
    g.finish(res, None).await
}

/// Register an agent: an operator token of the cluster's namespace yields a token that reads
/// that one cluster only.
#[utoipa::path(post, path = "/v1/agents/register", tag = "tokens", request_body = RegisterAgent,
    responses((status = 201, body = IssuedToken), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn register_agent(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<(StatusCode, Json<IssuedToken>), Problem> {
    // The scope check needs the body; authenticate first so a stranger learns nothing from
    // body errors, then check the cluster.
    let pre = admit(
        &st,
        &headers,
        client,
        Need {
            action: "agent.register",
            target: "agents".into(),
            role: TokenRole::Agent,
            cluster: None,
        },
    )
    .await?;
    let req: RegisterAgent = match json(&body) {
        Ok(r) => r,
        Err(p) => return pre.finish::<Json<IssuedToken>>(Err(p), None).await,
    };
    if ![&req.namespace, &req.project, &req.cluster, &req.node]
        .iter()
        .all(|s| valid_segment(s))
    {
        let p = Problem::bad_request(
            "invalid_body",
            "namespace, project, cluster and node must be names of 1-253 characters without \
             '/', whitespace or control characters, not `*`, `.` or `..`, not starting with '_'",
        );
        return pre.finish::<Json<IssuedToken>>(Err(p), None).await;
    }
    let g = admit(
        &st,
        &headers,
        client,
        Need {
            action: "agent.register",
            target: format!("{}/{}/{}", req.namespace, req.project, req.cluster),
            role: TokenRole::Operator,
            cluster: Some((&req.namespace, &req.project, &req.cluster)),
        },
    )
    .await?;
    let run = async {
        let doc = TokenDoc {
            schema: wire::SCHEMA_VERSION,
            id: String::new(),
            name: format!("agent {}", req.node),
            role: TokenRole::Agent,
            namespaces: vec![req.namespace.clone()],
            cluster: Some(TokenCluster {
                namespace: req.namespace.clone(),
                project: req.project.clone(),
                cluster: req.cluster.clone(),
            }),
            node: Some(req.node.clone()),
            hash: String::new(),
            created_at: Timestamp::now(),
            created_by: g.caller.id.clone(),
            expires_at: expiry(req.expires_in_seconds, g.caller.expires_at)?,
            revoked_at: None,
            revoked_by: None,
        };
        Ok((StatusCode::CREATED, Json(issue(&st, doc).await?)))
    };
    let res = run.await;
    let detail = res
        .as_ref()
        .ok()
        .map(|(_, t)| format!("id={} node={}", t.info.id, req.node));
    g.finish(res, detail).await
}
