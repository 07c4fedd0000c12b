//! Routes about one member of a cluster, the operator's first-hour verbs:
//!
//! - `POST …/nodes/{id}/reinit`, `…/restart`, `…/reload` and `POST …/reload` (every live
//!   node) write `requests/<node>` (`RequestDoc`), which that node's agent carries out, records
//!   as an event and deletes. One request per node at a time (409 `request_pending`). The
//!   primary is never rebuilt or restarted from here (409 `node_is_primary`: switch over
//!   first).
//! - `POST …/restore` (in `super::restore`) writes the primary's `requests/<node>` with
//!   action `restore` through the same [`write_request`].
//! - `DELETE …/members/{id}` forgets a member that is gone (`members/<id>`), refused while its
//!   agent is alive (`nodes/<id>` exists).
//! - `GET …/nodes/{id}/config` asks the node's agent for its effective configuration
//!   (`GET <agent_url>/config`, secrets redacted by the agent), through the same bounded
//!   client as top statements.
//!
//! The mutating routes pass the gate like `switchover` and record their outcome in the audit
//! log (`Gate::finish`).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use cluster::store::Store;
use cluster::wire::{
    self, ClusterKeys, MemberDoc, NodeAction, RequestDoc, Role, Timestamp, TokenRole,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::clusters::NodePath;
use super::extract::ApiPath;
use super::gate::{self, Gate};
use crate::agents::FetchError;
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterPath, Read};

/// Answer to an accepted node request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeRequestAccepted {
    /// `reinit`, `restart` or `reload`.
    pub action: NodeAction,
    /// The nodes a request was written for.
    pub nodes: Vec<String>,
    /// etcd revision of the cluster read before writing; follow the outcome with
    /// `GET …/events?since=<revision>`.
    pub revision: i64,
    /// Things the caller should know (a node skipped, an agent that is down).
    pub warnings: Vec<String>,
}

/// Answer of `DELETE …/members/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberRemoved {
    /// The node forgotten.
    pub node: String,
    /// Its member document as it was.
    pub member: MemberDoc,
}

/// Answer of `GET …/nodes/{id}/config`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeConfig {
    /// The node.
    pub node: String,
    /// Where its agent was asked.
    pub agent_url: String,
    /// The agent's effective configuration as it answers it (secrets redacted by the agent,
    /// shown by origin only).
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

fn split(n: NodePath) -> (ClusterPath, String) {
    (
        ClusterPath {
            namespace: n.namespace,
            project: n.project,
            cluster: n.cluster,
        },
        n.id,
    )
}

fn no_member(p: &ClusterPath, id: &str) -> Problem {
    Problem::not_found(
        "node_not_found",
        format!(
            "cluster {} has no member {:?}; list them with `autopilotctl show {}`",
            p.target(),
            crate::audit::bounded(id, 100),
            p.target()
        ),
    )
}

/// The cluster read, after checking that `id` is one of its members (404 otherwise).
async fn member_read(st: &AppState, p: &ClusterPath, id: &str) -> Result<Read, Problem> {
    if ClusterKeys::check_node_id(id).is_err() {
        return Err(no_member(p, id));
    }
    let r = view::read(st, p).await?;
    if !r.is_member(id) {
        return Err(no_member(p, id));
    }
    Ok(r)
}

fn is_primary(r: &Read, id: &str) -> bool {
    match &r.doc.primary {
        Some(p) => p.id == id,
        None => r.node(id).is_some_and(|n| n.role == Role::Primary),
    }
}

fn node_down(p: &ClusterPath, id: &str, what: &str) -> Problem {
    Problem::conflict(
        "node_down",
        format!(
            "{id:?} has no live agent (no node key): {what}; start its agent, or forget a \
             node that is gone with `autopilotctl remove {} {id}`",
            p.target()
        ),
    )
}

/// A request for `action` by `by`, now, without terms (a `restore` sets `restore_to`, an
/// `upgrade` its `upgrade`).
pub(crate) fn request(action: NodeAction, by: &str) -> RequestDoc {
    RequestDoc {
        schema: wire::SCHEMA_VERSION,
        action,
        requested_by: Some(by.to_owned()),
        time: Some(Timestamp::now()),
        restore_to: None,
        upgrade: None,
    }
}

/// Writes `requests/<id>` iff none is pending; `Ok(false)` when one is.
pub(crate) async fn write_request(
    st: &AppState,
    keys: &ClusterKeys,
    id: &str,
    doc: &RequestDoc,
) -> Result<bool, Problem> {
    st.store()
        .create_if_absent(&keys.request(id), wire::encode(doc), None)
        .await
        .map_err(|e| Problem::store(&e))
}

/// The 409 for a node that already has a request pending, naming it.
pub(super) fn pending(r: &Read, p: &ClusterPath, id: &str) -> Problem {
    let what = r
        .doc
        .requests
        .iter()
        .find(|q| q.node == id)
        .map(|q| {
            format!(
                " ({} by {} at {})",
                q.action.as_str(),
                q.requested_by.as_deref().unwrap_or("?"),
                q.time.map(|t| t.to_string()).unwrap_or_else(|| "?".into())
            )
        })
        .unwrap_or_default();
    Problem::conflict(
        "request_pending",
        format!(
            "a request for {id:?} is already pending{what}; wait until its agent has carried it \
             out (`autopilotctl events {} --follow`) and try again",
            p.target()
        ),
    )
}

/// Reinit, restart or reload of one node.
async fn one(
    st: &AppState,
    g: &Gate,
    p: &ClusterPath,
    id: &str,
    action: NodeAction,
) -> Result<(StatusCode, Json<NodeRequestAccepted>), Problem> {
    let r = member_read(st, p, id).await?;
    let mut warnings = Vec::new();
    let live = r.node(id).is_some();
    match action {
        NodeAction::Reinit => {
            if is_primary(&r, id) {
                return Err(Problem::conflict(
                    "node_is_primary",
                    format!(
                        "{id:?} is the primary: its data cannot be rebuilt from itself; switch \
                         over first (`autopilotctl switchover {}`), then reinit it as a replica",
                        p.target()
                    ),
                ));
            }
            if !live {
                warnings.push(format!(
                    "{id:?} has no live agent: it rebuilds when its agent starts"
                ));
            }
        }
        NodeAction::Restart => {
            if is_primary(&r, id) {
                return Err(Problem::conflict(
                    "node_is_primary",
                    format!(
                        "{id:?} is the primary: restarting it would stop the writes; switch \
                         over first (`autopilotctl switchover {}`), then restart it as a \
                         replica",
                        p.target()
                    ),
                ));
            }
            if !live {
                return Err(node_down(p, id, "there is no database to restart"));
            }
        }
        NodeAction::Reload
        | NodeAction::Restore
        | NodeAction::Cutover
        | NodeAction::Upgrade
        | NodeAction::Unknown => {
            if !live {
                return Err(node_down(p, id, "there is no database to reload"));
            }
        }
    }
    let keys = p.keys(st)?;
    if !write_request(st, &keys, id, &request(action, &g.caller.name)).await? {
        return Err(pending(&r, p, id));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(NodeRequestAccepted {
            action,
            nodes: vec![id.to_owned()],
            revision: r.doc.revision,
            warnings,
        }),
    ))
}

fn detail(res: &Result<(StatusCode, Json<NodeRequestAccepted>), Problem>) -> Option<String> {
    res.as_ref()
        .ok()
        .map(|(_, a)| format!("action={} nodes={}", a.action.as_str(), a.nodes.join(",")))
}

/// One node verb: admit an operator, write `requests/<id>`, audit the outcome.
async fn node_verb(
    st: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    n: NodePath,
    audit: &'static str,
    action: NodeAction,
) -> Result<(StatusCode, Json<NodeRequestAccepted>), Problem> {
    let (p, id) = split(n);
    let g = gate::cluster(st, headers, client, audit, TokenRole::Operator, &p).await?;
    let res = one(st, &g, &p, &id, action).await;
    let d = detail(&res);
    g.finish(res, d).await
}

/// Rebuild a replica: its agent moves its data aside and clones the primary again.
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/reinit",
    tag = "actions", params(NodePath),
    responses((status = 202, body = NodeRequestAccepted), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reinit(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(n): ApiPath<NodePath>,
) -> Result<(StatusCode, Json<NodeRequestAccepted>), Problem> {
    node_verb(&st, &headers, client, n, "node.reinit", NodeAction::Reinit).await
}

/// Restart a replica's database (the primary: switch over first).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/restart",
    tag = "actions", params(NodePath),
    responses((status = 202, body = NodeRequestAccepted), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn restart(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(n): ApiPath<NodePath>,
) -> Result<(StatusCode, Json<NodeRequestAccepted>), Problem> {
    node_verb(
        &st,
        &headers,
        client,
        n,
        "node.restart",
        NodeAction::Restart,
    )
    .await
}

/// Have one node's database re-read its configuration without a restart.
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/reload",
    tag = "actions", params(NodePath),
    responses((status = 202, body = NodeRequestAccepted), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reload_node(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(n): ApiPath<NodePath>,
) -> Result<(StatusCode, Json<NodeRequestAccepted>), Problem> {
    node_verb(&st, &headers, client, n, "node.reload", NodeAction::Reload).await
}

/// Have every live node's database re-read its configuration; nodes with a request pending
/// are skipped (listed in `warnings`).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/reload",
    tag = "actions", params(ClusterPath),
    responses((status = 202, body = NodeRequestAccepted), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reload_all(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<(StatusCode, Json<NodeRequestAccepted>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.reload",
        TokenRole::Operator,
        &p,
    )
    .await?;
    let run = async {
        let r = view::read(&st, &p).await?;
        if r.doc.nodes.is_empty() {
            return Err(Problem::conflict(
                "no_live_node",
                format!(
                    "cluster {} has no live node to reload; see `autopilotctl show {}`",
                    p.target(),
                    p.target()
                ),
            ));
        }
        let keys = p.keys(&st)?;
        let (mut nodes, mut warnings) = (Vec::new(), Vec::new());
        for n in &r.doc.nodes {
            let doc = request(NodeAction::Reload, &g.caller.name);
            if write_request(&st, &keys, &n.id, &doc).await? {
                nodes.push(n.id.clone());
            } else {
                warnings.push(format!(
                    "{:?} skipped: a request for it is already pending",
                    n.id
                ));
            }
        }
        if nodes.is_empty() {
            return Err(Problem::conflict(
                "request_pending",
                format!(
                    "every live node already has a request pending; wait until their agents \
                     have carried them out (`autopilotctl events {} --follow`) and try again",
                    p.target()
                ),
            ));
        }
        Ok((
            StatusCode::ACCEPTED,
            Json(NodeRequestAccepted {
                action: NodeAction::Reload,
                nodes,
                revision: r.doc.revision,
                warnings,
            }),
        ))
    };
    let res = run.await;
    let d = detail(&res);
    g.finish(res, d).await
}

/// Forget a member that is gone (`members/<id>`); refused while its agent is alive.
#[utoipa::path(delete, path = "/v1/clusters/{namespace}/{project}/{cluster}/members/{id}",
    tag = "actions", params(NodePath),
    responses((status = 200, body = MemberRemoved), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(n): ApiPath<NodePath>,
) -> Result<(StatusCode, Json<MemberRemoved>), Problem> {
    let (p, id) = split(n);
    let g = gate::cluster(&st, &headers, client, "member.remove", TokenRole::Admin, &p).await?;
    let run = async {
        let r = member_read(&st, &p, &id).await?;
        if r.node(&id).is_some() || is_primary(&r, &id) {
            return Err(Problem::conflict(
                "node_alive",
                format!(
                    "{id:?} has a live agent (its node key exists): stop its agent first, then \
                     remove it"
                ),
            ));
        }
        let keys = p.keys(&st)?;
        let key = keys.member(&id);
        let Some((bytes, revision)) = st.store().get(&key).await.map_err(|e| Problem::store(&e))?
        else {
            return Err(no_member(&p, &id));
        };
        let member: MemberDoc = wire::decode(&bytes).map_err(|_| {
            Problem::conflict(
                "member_unreadable",
                format!(
                    "members/{id} holds a document this coordinator cannot read (a newer \
                     agent?); remove it with etcdctl if you are sure"
                ),
            )
        })?;
        // Only the version read: an agent that started meanwhile rewrote it.
        if !st
            .store()
            .delete_if_revision(&key, revision)
            .await
            .map_err(|e| Problem::store(&e))?
        {
            return Err(Problem::conflict(
                "node_alive",
                format!(
                    "{id:?} changed while being removed (its agent started?): check `autopilotctl show {}`",
                    p.target()
                ),
            ));
        }
        // A request for a node that is gone would wait forever.
        st.store()
            .delete(&keys.request(&id))
            .await
            .map_err(|e| Problem::store(&e))?;
        Ok((
            StatusCode::OK,
            Json(MemberRemoved {
                node: id.clone(),
                member,
            }),
        ))
    };
    let res = run.await;
    let d = res.as_ref().ok().map(|(_, m)| format!("node={}", m.node));
    g.finish(res, d).await
}

/// The problem for an agent that did not give its configuration.
fn agent_problem(id: &str, e: FetchError) -> Problem {
    let status = match e.code {
        "agent_timeout" => StatusCode::GATEWAY_TIMEOUT,
        "invalid_agent_url" | "agent_ca_missing" | "agent_unsupported" => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    };
    Problem::new(
        status,
        e.code,
        format!("{id:?}: {}", crate::audit::bounded(&e.message, 500)),
    )
}

/// One node's effective configuration, from its agent (secrets redacted by the agent).
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}/config",
    tag = "clusters", params(NodePath),
    responses((status = 200, body = NodeConfig), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 502, body = Problem), (status = 504, body = Problem)))]
pub async fn config(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(n): ApiPath<NodePath>,
) -> Result<Json<NodeConfig>, Problem> {
    let (p, id) = split(n);
    gate::cluster(&st, &headers, client, "node.config", TokenRole::Viewer, &p).await?;
    let r = member_read(&st, &p, &id).await?;
    let Some(node) = r.node(&id) else {
        return Err(node_down(&p, &id, "there is no agent to ask"));
    };
    let Some(url) = node.agent_url.clone().filter(|u| !u.is_empty()) else {
        return Err(Problem::conflict(
            "no_agent_url",
            format!(
                "{id:?} publishes no agent_url (its agent has no listener, telemetry.listen: \
                 off, or is older than this coordinator)"
            ),
        ));
    };
    let config = st
        .agents()
        .config(&id, &url)
        .await
        .map_err(|e| agent_problem(&id, e))?;
    Ok(Json(NodeConfig {
        node: id,
        agent_url: url,
        config,
    }))
}
