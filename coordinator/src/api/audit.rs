//! `GET /v1/audit`: the audit log, newest first, for admins. An admin scoped to some
//! namespaces sees only the cluster records of those namespaces, and of refusals there not
//! who was refused (another tenant's token id and address).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use cluster::wire::{AuditDoc, AuditOutcome, TokenRole};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::ApiQuery;
use super::gate::{Need, admit};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// Paging of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many records (1–1000, default 100).
    pub limit: Option<u32>,
    /// Only records older than this record id (the `next_before` of the previous page).
    pub before: Option<String>,
}

/// One record with its id.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Record id: 13-digit Unix milliseconds, `-`, random suffix.
    pub id: String,
    /// The record.
    #[serde(flatten)]
    pub record: AuditDoc,
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    /// Records, newest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `before` to get the next (older) page; `null` on the last page.
    pub next_before: Option<String>,
}

/// A refusal seen by an admin scoped to some namespaces: who was refused (token id, client
/// address) may be another tenant probing, and is not theirs to see — unless it was them.
fn redact(caller: &Caller, mut r: AuditDoc) -> AuditDoc {
    if !caller.sees_all()
        && r.outcome == AuditOutcome::Denied
        && r.token_id.as_deref() != Some(caller.id.as_str())
    {
        r.token_id = None;
        r.role = None;
        r.client = "(hidden)".into();
    }
    r
}

/// Read the audit log (admin).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn list_audit(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, Problem> {
    let g = admit(
        &st,
        &headers,
        client,
        Need {
            action: "audit.list",
            target: "audit".into(),
            role: TokenRole::Admin,
            cluster: None,
        },
    )
    .await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    if let Some(b) = &q.before
        && (b.is_empty() || b.contains('/'))
    {
        return Err(Problem::bad_request(
            "invalid_query",
            "before must be a record id from a previous page",
        ));
    }
    let rows = st
        .auditor()
        .list(i64::from(limit), q.before.as_deref())
        .await
        .map_err(|e| Problem::store(&e))?;
    let full = rows.len() == limit as usize;
    let next_before = if full {
        rows.last().map(|(id, _)| id.clone())
    } else {
        None
    };
    let caller = &g.caller;
    let records = rows
        .into_iter()
        .filter(|(_, r)| {
            caller.sees_all()
                || (r.action.starts_with("cluster.")
                    && r.target
                        .split('/')
                        .next()
                        .is_some_and(|ns| caller.sees_namespace(ns)))
        })
        .map(|(id, record)| AuditRecord {
            id,
            record: redact(caller, record),
        })
        .collect();
    Ok(Json(AuditList {
        records,
        next_before,
    }))
}
