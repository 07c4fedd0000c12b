//! A cluster's rolling upgrade (`<cluster>/upgrade`, driven by [`crate::rollout`]):
//!
//! - `POST …/upgrade` (operator): begin one — `{version?, deadline_seconds?}`; 409
//!   `rollout_active` while one runs or is paused, `maintenance_on` (no switchover could
//!   happen), `no_primary`.
//! - `GET …/upgrade`: the rollout document (404 `no_rollout`).
//! - `POST …/upgrade/pause`, `…/upgrade/resume` (operator): the step in flight finishes, no
//!   new one begins until it is resumed.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use cluster::store::Store;
use cluster::wire::{self, RolloutState, Timestamp, TokenRole, UpgradeDoc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::clusters::read_gate;
use super::extract::{ApiPath, Body, json};
use super::gate;
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterPath};

/// Default of `deadline_seconds`.
pub const DEFAULT_DEADLINE: u64 = 300;

/// Body of `POST …/upgrade` (may be empty).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// Passed to each node's upgrade hook as `AUTOPILOT_UPGRADE_VERSION` (letters, digits and
    /// `.+:~_-`, at most 128); omit to let the hook choose.
    #[serde(default)]
    pub version: Option<String>,
    /// How long each node has, once its database runs again, to be healthy and caught up
    /// (10 to 86400; default 300).
    #[serde(default)]
    pub deadline_seconds: Option<u64>,
}

fn check(req: &UpgradeRequest) -> Result<u64, Problem> {
    if let Some(v) = &req.version {
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+:~_-".contains(c));
        if !ok {
            return Err(Problem::bad_request(
                "invalid_version",
                "version must be 1 to 128 letters, digits or .+:~_- (a package version like \
                 1:10.11.11-0+deb12u1); omit it to let the upgrade hook choose",
            ));
        }
    }
    let deadline = req.deadline_seconds.unwrap_or(DEFAULT_DEADLINE);
    if !(10..=86_400).contains(&deadline) {
        return Err(Problem::bad_request(
            "invalid_deadline",
            format!(
                "deadline_seconds {deadline} is out of range; expected 10 to 86400 (default \
                 {DEFAULT_DEADLINE})"
            ),
        ));
    }
    Ok(deadline)
}

async fn current(st: &AppState, p: &ClusterPath) -> Result<Option<(UpgradeDoc, i64)>, Problem> {
    let keys = p.keys(st)?;
    let got = st
        .store()
        .get(&keys.upgrade())
        .await
        .map_err(|e| Problem::store(&e))?;
    Ok(got.and_then(|(raw, rev)| wire::decode::<UpgradeDoc>(&raw).ok().map(|d| (d, rev))))
}

/// Begin a rolling upgrade: the replicas one at a time, a switchover to an upgraded replica,
/// then the former primary.
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/upgrade", tag = "actions",
    params(ClusterPath), request_body(content = UpgradeRequest, description = "may be empty"),
    responses((status = 202, body = UpgradeDoc), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn start(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<UpgradeDoc>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.upgrade",
        TokenRole::Operator,
        &p,
    )
    .await?;
    let run = async {
        let req: UpgradeRequest = if body.is_empty() {
            UpgradeRequest::default()
        } else {
            json(&body)?
        };
        let deadline = check(&req)?;
        let c = view::read(&st, &p).await?.doc;
        if c.maintenance.is_some() {
            return Err(Problem::conflict(
                "maintenance_on",
                format!(
                    "cluster {} is in maintenance: a rolling upgrade needs its switchover; turn \
                     it off first (`autopilotctl resume {}`)",
                    p.target(),
                    p.target()
                ),
            ));
        }
        if c.primary.is_none() {
            return Err(Problem::conflict(
                "no_primary",
                format!(
                    "cluster {} has no primary right now; try again once it has one",
                    p.target()
                ),
            ));
        }
        let keys = p.keys(&st)?;
        if let Some((old, rev)) = current(&st, &p).await? {
            if old.state.active() {
                return Err(Problem::conflict(
                    "rollout_active",
                    format!(
                        "cluster {} already has a rolling upgrade ({:?} since {}: {}); follow it \
                         with `autopilotctl upgrade status {}`, or wait until it ends",
                        p.target(),
                        old.state,
                        old.started,
                        old.detail,
                        p.target()
                    ),
                ));
            }
            // The previous rollout's record gives way to the new one.
            st.store()
                .delete_if_revision(&keys.upgrade(), rev)
                .await
                .map_err(|e| Problem::store(&e))?;
        }
        let now = Timestamp::now();
        let doc = UpgradeDoc {
            schema: wire::SCHEMA_VERSION,
            requested_by: Some(g.caller.name.clone()),
            started: now,
            updated: now,
            version: req.version.clone(),
            deadline_seconds: deadline,
            state: RolloutState::Running,
            detail: "starting".to_owned(),
            upgraded: vec![],
            step: None,
            steps: vec![],
        };
        let created = st
            .store()
            .create_if_absent(&keys.upgrade(), wire::encode(&doc), None)
            .await
            .map_err(|e| Problem::store(&e))?;
        if !created {
            return Err(Problem::conflict(
                "rollout_active",
                format!(
                    "cluster {} got another rolling upgrade meanwhile",
                    p.target()
                ),
            ));
        }
        Ok((StatusCode::ACCEPTED, Json(doc)))
    };
    let res = run.await;
    let detail = res.as_ref().ok().map(|(_, d)| {
        format!(
            "version={} deadline_seconds={}",
            d.version.as_deref().unwrap_or("<hook's choice>"),
            d.deadline_seconds
        )
    });
    g.finish(res, detail).await
}

/// The cluster's rolling upgrade: where it is, the steps taken, why it stopped.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/upgrade", tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = UpgradeDoc), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn status(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<UpgradeDoc>, Problem> {
    read_gate(&st, &headers, client, "cluster.upgrade_status", &p).await?;
    match current(&st, &p).await? {
        Some((doc, _)) => Ok(Json(doc)),
        None => Err(no_rollout(&p)),
    }
}

fn no_rollout(p: &ClusterPath) -> Problem {
    Problem::not_found(
        "no_rollout",
        format!(
            "cluster {} has no rolling upgrade; begin one with `autopilotctl upgrade start {}`",
            p.target(),
            p.target()
        ),
    )
}

/// Pause the rolling upgrade: the step in flight finishes, no new one begins.
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/upgrade/pause", tag = "actions",
    params(ClusterPath),
    responses((status = 200, body = UpgradeDoc), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn pause(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<(StatusCode, Json<UpgradeDoc>), Problem> {
    switch(st, client, headers, p, RolloutState::Paused).await
}

/// Resume a paused rolling upgrade.
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/upgrade/resume", tag = "actions",
    params(ClusterPath),
    responses((status = 200, body = UpgradeDoc), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn resume(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<(StatusCode, Json<UpgradeDoc>), Problem> {
    switch(st, client, headers, p, RolloutState::Running).await
}

async fn switch(
    st: AppState,
    client: SocketAddr,
    headers: HeaderMap,
    p: ClusterPath,
    to: RolloutState,
) -> Result<(StatusCode, Json<UpgradeDoc>), Problem> {
    let action = if to == RolloutState::Paused {
        "cluster.upgrade_pause"
    } else {
        "cluster.upgrade_resume"
    };
    let g = gate::cluster(&st, &headers, client, action, TokenRole::Operator, &p).await?;
    let run = async {
        let keys = p.keys(&st)?;
        // A write between the read and the conditional write is retried a few times.
        for _ in 0..5 {
            let Some((mut doc, rev)) = current(&st, &p).await? else {
                return Err(no_rollout(&p));
            };
            if !doc.state.active() {
                return Err(Problem::conflict(
                    "rollout_not_active",
                    format!(
                        "the rolling upgrade of {} has ended ({:?}: {}); there is nothing to \
                         pause or resume",
                        p.target(),
                        doc.state,
                        doc.detail
                    ),
                ));
            }
            if doc.state == to {
                return Ok((StatusCode::OK, Json(doc)));
            }
            doc.state = to;
            doc.updated = Timestamp::now();
            if to == RolloutState::Paused {
                doc.detail = format!("paused by {}", g.caller.name);
            }
            if st
                .store()
                .put_if_revision(&keys.upgrade(), wire::encode(&doc), rev)
                .await
                .map_err(|e| Problem::store(&e))?
            {
                return Ok((StatusCode::OK, Json(doc)));
            }
        }
        Err(Problem::conflict(
            "rollout_busy",
            "the rolling upgrade document kept changing; try again",
        ))
    };
    let res = run.await;
    g.finish(res, None).await
}
