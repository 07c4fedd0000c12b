//! Read-only cluster routes: the list, one cluster, its nodes, primary and history.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use cluster::wire::{HistoryEntry, NodeDoc, PrimaryDoc, TokenRole};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, ApiQuery};
use super::gate::{Need, admit};
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterDoc, ClusterPath, ClusterSummary};

/// Filters of `GET /v1/clusters`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only clusters of this namespace.
    pub namespace: Option<String>,
    /// Only clusters of this project (in any visible namespace).
    pub project: Option<String>,
}

/// Answer of `GET /v1/clusters`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClusterList {
    /// Visible clusters, sorted by namespace, project, name.
    pub clusters: Vec<ClusterSummary>,
}

/// Answer of `GET …/history`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct History {
    /// Role changes, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// The cluster's engine (`postgres`, `mariadb`, …), to print positions in its notation;
    /// `null` when unknown.
    #[serde(default)]
    pub engine: Option<String>,
}

/// Node id in a URL.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
    /// Node id.
    pub id: String,
}

/// Answer of `GET …/nodes`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    /// Live nodes, by id.
    pub nodes: Vec<NodeDoc>,
}

/// Admits a read of cluster `p` (any role whose scope holds it) and reads it.
pub(super) async fn read_gate(
    st: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    action: &'static str,
    p: &ClusterPath,
) -> Result<view::Read, Problem> {
    admit(
        st,
        headers,
        client,
        Need {
            action,
            target: p.target(),
            role: TokenRole::Agent,
            cluster: Some(p.triple()),
        },
    )
    .await?;
    view::read(st, p).await
}

/// List the clusters the token can see.
#[utoipa::path(get, path = "/v1/clusters", tag = "clusters", params(ListQuery),
    responses((status = 200, body = ClusterList), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn list_clusters(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ClusterList>, Problem> {
    let visible = visible(
        &st,
        &headers,
        client,
        "cluster.list",
        q.namespace.as_deref(),
    )
    .await?
    .into_iter()
    .filter(|c| q.project.as_ref().is_none_or(|p| p == &c.project))
    .collect();
    let clusters = view::summarize(&st, visible).await?;
    Ok(Json(ClusterList { clusters }))
}

/// The clusters the caller may see (of `namespace`, when given), after the gate for
/// `action`; none for a namespace it does not see or that cannot be one.
pub(super) async fn visible(
    st: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    action: &'static str,
    namespace: Option<&str>,
) -> Result<Vec<ClusterSummary>, Problem> {
    let gate = admit(
        st,
        headers,
        client,
        Need {
            action,
            target: "*".into(),
            role: TokenRole::Agent,
            cluster: None,
        },
    )
    .await?;
    let caller = &gate.caller;
    if let Some(ns) = namespace
        && (ns.is_empty() || ns.contains('/') || !caller.sees_namespace(ns))
    {
        return Ok(vec![]);
    }
    Ok(view::list(st, namespace)
        .await?
        .into_iter()
        .filter(|c| caller.sees_cluster(&c.namespace, &c.project, &c.cluster))
        .collect())
}

/// One cluster: primary, nodes, every member (stopped ones too) with its state, lag,
/// position and eligibility, maintenance, pending switchover and node requests, bootstrap
/// marker, engine.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}", tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = ClusterDoc), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_cluster(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<ClusterDoc>, Problem> {
    let r = read_gate(&st, &headers, client, "cluster.get", &p).await?;
    Ok(Json(r.doc))
}

/// The cluster's live nodes.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/nodes", tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = NodeList), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn list_nodes(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<NodeList>, Problem> {
    let r = read_gate(&st, &headers, client, "cluster.nodes", &p).await?;
    Ok(Json(NodeList { nodes: r.doc.nodes }))
}

/// One node's document.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/nodes/{id}", tag = "clusters",
    params(NodePath),
    responses((status = 200, body = NodeDoc), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_node(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(n): ApiPath<NodePath>,
) -> Result<Json<NodeDoc>, Problem> {
    let p = ClusterPath {
        namespace: n.namespace,
        project: n.project,
        cluster: n.cluster,
    };
    let r = read_gate(&st, &headers, client, "cluster.node", &p).await?;
    r.doc
        .nodes
        .into_iter()
        .find(|d| d.id == n.id)
        .map(Json)
        .ok_or_else(|| {
            Problem::not_found(
                "node_not_found",
                format!(
                    "cluster {} has no live node {:?}; list them with `autopilotctl nodes`",
                    p.target(),
                    n.id
                ),
            )
        })
}

/// The primary's document; 404 `no_primary` while the cluster has none.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/primary", tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = PrimaryDoc), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_primary(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<PrimaryDoc>, Problem> {
    let r = read_gate(&st, &headers, client, "cluster.primary", &p).await?;
    r.doc.primary.map(Json).ok_or_else(|| {
        Problem::not_found(
            "no_primary",
            format!(
                "cluster {} has no primary right now (failover in progress, maintenance, or \
                 no eligible node); see `autopilotctl show` and `autopilotctl failover`",
                p.target()
            ),
        )
    })
}

/// Every change of primary, oldest first.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/history", tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = History), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_history(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<History>, Problem> {
    let r = read_gate(&st, &headers, client, "cluster.history", &p).await?;
    Ok(Json(History {
        entries: r.history.entries,
        engine: r.doc.engine,
    }))
}
