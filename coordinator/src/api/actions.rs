//! Routes that change a cluster, by writing the requests the agents already act on:
//! `switchover` (planned hand-over), `failover` (forced, to a named candidate) and
//! `maintenance` (no automatic role change while on).
//!
//! A forced failover writes the same `switchover` request, naming the candidate:
//! - with a primary, the primary fences itself and hands over to the candidate, which first
//!   catches up to the old primary's final position (no write is lost);
//! - without a primary, the agents' election ranks the named candidate first among equally
//!   advanced nodes; if a more advanced node wins, it hands over to the candidate right
//!   after (the request is still pending). Agents do **not** bypass their own safety rules
//!   for it: the failover cooldown, `max_lag_on_failover` and `nofailover` still apply.
//!
//! Before writing, the coordinator refuses (409 `candidate_behind`) a candidate whose
//! published position is behind another node's, unless `force: true`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use cluster::store::Store;
use cluster::wire::{self, MaintenanceDoc, NodeDoc, Position, SwitchoverDoc, Timestamp, TokenRole};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiPath, Body, json};
use super::gate;
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterDoc, ClusterPath};

/// Body of `POST …/switchover`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// Node id to promote; omit to let the agents pick the best replica.
    #[serde(default)]
    pub candidate: Option<String>,
}

/// Body of `POST …/failover`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// Node id to promote.
    pub candidate: String,
    /// Write the request even when the candidate is behind another node (may lose the
    /// writes only that node has, if the agents cannot catch the candidate up).
    #[serde(default)]
    pub force: bool,
}

/// Body of `PUT …/maintenance`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// On (no automatic role change) or off.
    pub enabled: bool,
    /// Why, for humans.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer to an accepted switchover or failover request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// `switchover` or `failover`.
    pub action: String,
    /// `handover` when a primary will hand over; `election` when there is no primary and the
    /// candidate is preferred in the election.
    pub mode: String,
    /// The primary when the request was written (`null`: none).
    pub from: Option<String>,
    /// The requested candidate (`null`: the best replica).
    pub candidate: Option<String>,
    /// etcd revision of the cluster read before writing; follow the outcome with
    /// `GET …/events?since=<revision>`.
    pub revision: i64,
    /// Things the caller should know (e.g. a forced request for a lagging candidate).
    pub warnings: Vec<String>,
}

fn not_in_maintenance(c: &ClusterDoc) -> Result<(), Problem> {
    if c.maintenance.as_ref().is_some_and(|m| m.enabled) {
        return Err(Problem::conflict(
            "maintenance_enabled",
            "the cluster is in maintenance mode, where agents make no role change; turn it \
             off first (`autopilotctl resume`)",
        ));
    }
    Ok(())
}

fn find<'a>(c: &'a ClusterDoc, id: &str) -> Result<&'a NodeDoc, Problem> {
    c.nodes.iter().find(|n| n.id == id).ok_or_else(|| {
        Problem::conflict(
            "candidate_not_found",
            format!("no live node {id:?} in this cluster; pick one from `autopilotctl nodes`"),
        )
    })
}

fn not_primary(c: &ClusterDoc, id: &str) -> Result<(), Problem> {
    if c.primary.as_ref().is_some_and(|p| p.id == id) {
        return Err(Problem::conflict(
            "candidate_is_primary",
            format!("{id:?} is already the primary; name another node"),
        ));
    }
    Ok(())
}

/// Writes the `switchover` request iff none is pending.
async fn write_request(
    st: &AppState,
    p: &ClusterPath,
    candidate: Option<String>,
    failover: bool,
    by: &str,
) -> Result<(), Problem> {
    let keys = p.keys(st)?;
    let doc = SwitchoverDoc {
        schema: wire::SCHEMA_VERSION,
        candidate,
        failover,
        requested_by: Some(by.to_owned()),
        time: Some(Timestamp::now()),
    };
    let created = st
        .store()
        .create_if_absent(&keys.switchover(), wire::encode(&doc), None)
        .await
        .map_err(|e| Problem::store(&e))?;
    if !created {
        return Err(Problem::conflict(
            "switchover_pending",
            format!(
                "a switchover request is already pending for this cluster; wait for it to \
                 finish (`autopilotctl events {}/{}/{} --follow`) and try again",
                p.namespace, p.project, p.cluster
            ),
        ));
    }
    Ok(())
}

/// Writes the `switchover` request for `candidate` (a rolling upgrade's step); 409
/// `switchover_pending` when one is pending.
pub(crate) async fn write_switchover(
    st: &AppState,
    p: &ClusterPath,
    candidate: Option<String>,
    by: &str,
) -> Result<(), Problem> {
    write_request(st, p, candidate, false, by).await
}

/// Ask the primary to hand over to `candidate` (or the best replica).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/switchover", tag = "actions",
    params(ClusterPath), request_body(content = SwitchoverRequest, description = "may be empty"),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn switchover(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Accepted>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.switchover",
        TokenRole::Operator,
        &p,
    )
    .await?;
    let run = async {
        let req: SwitchoverRequest = json(&body)?;
        let c = view::read(&st, &p).await?.doc;
        not_in_maintenance(&c)?;
        let Some(primary) = &c.primary else {
            return Err(Problem::conflict(
                "no_primary",
                "the cluster has no primary to hand over; use a forced failover to a named \
                 node (`autopilotctl failover --candidate <node>`)",
            ));
        };
        match &req.candidate {
            Some(id) => {
                let n = find(&c, id)?;
                not_primary(&c, id)?;
                if !n.eligible {
                    return Err(Problem::conflict(
                        "candidate_not_eligible",
                        format!(
                            "{id:?} does not take part in failovers now (unhealthy, lagging, \
                             tagged nofailover or rebuilding); the primary would reject the \
                             request: pick an eligible node or omit the candidate"
                        ),
                    ));
                }
            }
            None => {
                if !c.nodes.iter().any(|n| n.eligible && n.id != primary.id) {
                    return Err(Problem::conflict(
                        "no_eligible_replica",
                        "no replica is eligible to take over right now; check `autopilotctl \
                         nodes`",
                    ));
                }
            }
        }
        write_request(&st, &p, req.candidate.clone(), false, &g.caller.name).await?;
        Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                action: "switchover".into(),
                mode: "handover".into(),
                from: Some(primary.id.clone()),
                candidate: req.candidate,
                revision: c.revision,
                warnings: vec![],
            }),
        ))
    };
    let res = run.await;
    let detail = res
        .as_ref()
        .ok()
        .map(|(_, a)| format!("candidate={}", a.candidate.as_deref().unwrap_or("<best>")));
    g.finish(res, detail).await
}

/// The most advanced published position among nodes other than `id` (and the primary's).
fn best_other(c: &ClusterDoc, id: &str) -> Option<(String, Position)> {
    let nodes = c
        .nodes
        .iter()
        .filter(|n| n.id != id)
        .map(|n| (n.id.clone(), n.replication.position));
    let primary = c
        .primary
        .iter()
        .filter(|p| p.id != id)
        .map(|p| (p.id.clone(), p.replication.position));
    nodes.chain(primary).max_by_key(|(_, pos)| *pos)
}

/// Promote a named node now: a hand-over when a primary exists, otherwise the preferred
/// candidate of the election. Refused when the candidate is behind another node unless
/// `force` is set.
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/failover", tag = "actions",
    params(ClusterPath), request_body = FailoverRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn failover(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<Accepted>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.failover",
        TokenRole::Admin,
        &p,
    )
    .await?;
    let run = async {
        let req: FailoverRequest = json(&body)?;
        let c = view::read(&st, &p).await?.doc;
        not_in_maintenance(&c)?;
        let n = find(&c, &req.candidate)?;
        not_primary(&c, &req.candidate)?;
        let mut warnings = Vec::new();
        if let Some((other, pos)) = best_other(&c, &req.candidate)
            && pos > n.replication.position
        {
            let what = format!(
                "{:?} is at position {}/{}, behind {other:?} at {}/{}",
                req.candidate,
                n.replication.position.epoch,
                n.replication.position.offset,
                pos.epoch,
                pos.offset
            );
            if !req.force {
                return Err(Problem::conflict(
                    "candidate_behind",
                    format!(
                        "{what}: promoting it could lose writes; pick the most advanced node, \
                         or set \"force\": true (autopilotctl failover --force) to accept that"
                    ),
                ));
            }
            warnings.push(format!("forced although {what}"));
        }
        if !n.eligible {
            warnings.push(format!(
                "{:?} reports itself not eligible: agents act on the request once it is",
                req.candidate
            ));
        }
        write_request(&st, &p, Some(req.candidate.clone()), true, &g.caller.name).await?;
        let mode = if c.primary.is_some() {
            "handover"
        } else {
            "election"
        };
        Ok((
            StatusCode::ACCEPTED,
            Json(Accepted {
                action: "failover".into(),
                mode: mode.into(),
                from: c.primary.as_ref().map(|p| p.id.clone()),
                candidate: Some(req.candidate),
                revision: c.revision,
                warnings,
            }),
        ))
    };
    let res = run.await;
    let detail = res.as_ref().ok().map(|(_, a)| {
        format!(
            "candidate={} mode={} forced={}",
            a.candidate.as_deref().unwrap_or(""),
            a.mode,
            !a.warnings.is_empty()
        )
    });
    g.finish(res, detail).await
}

/// Turn maintenance mode on (no automatic role change) or off.
#[utoipa::path(put, path = "/v1/clusters/{namespace}/{project}/{cluster}/maintenance", tag = "actions",
    params(ClusterPath), request_body = MaintenanceRequest,
    responses((status = 200, body = MaintenanceDoc), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn maintenance(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<MaintenanceDoc>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.maintenance",
        TokenRole::Operator,
        &p,
    )
    .await?;
    let run = async {
        let req: MaintenanceRequest = json(&body)?;
        if let Some(why) = req
            .reason
            .as_deref()
            .and_then(|r| crate::names::text_problem(r, 1024))
        {
            return Err(Problem::bad_request(
                "invalid_body",
                format!("reason {why}; give one line of plain text"),
            ));
        }
        view::read(&st, &p).await?;
        let keys = p.keys(&st)?;
        let doc = MaintenanceDoc {
            schema: wire::SCHEMA_VERSION,
            enabled: req.enabled,
            reason: req.reason,
            by: Some(g.caller.name.clone()),
            time: Some(Timestamp::now()),
        };
        st.store()
            .put(&keys.maintenance(), wire::encode(&doc), None)
            .await
            .map_err(|e| Problem::store(&e))?;
        Ok((StatusCode::OK, Json(doc)))
    };
    let res = run.await;
    let detail = res
        .as_ref()
        .ok()
        .map(|(_, d)| format!("enabled={}", d.0.enabled));
    g.finish(res, detail).await
}
