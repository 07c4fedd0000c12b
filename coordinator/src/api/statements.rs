//! `GET …/{cluster}/statements`: every live node's top statements, asked of the node's own
//! agent (`agent_url` in its node document) at once, each bounded by `--agent-timeout`. One
//! node's failure (agent down, frozen, no statistics) is that node's `error`, never the
//! request's. The coordinator still touches no database: each agent reads its own.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use cluster::wire::{NodeDoc, Role, StatementStats, Timestamp};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::clusters::read_gate;
use super::extract::{ApiPath, ApiQuery};
use crate::agents::FetchError;
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::ClusterPath;

/// Most statements per node one request may ask for.
pub const MAX_LIMIT: u32 = 100;

/// Agents asked at once (clusters have a handful of nodes; this bounds a bogus one).
const CONCURRENCY: usize = 16;

/// Query of `GET …/statements`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatementsQuery {
    /// Statements per node, most total execution time first (1–100; default: each agent's
    /// `telemetry.top_statements`, 10 unless configured).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// Why a node's statements are missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeError {
    /// Stable code: `no_agent_url`, `invalid_agent_url`, `agent_ca_missing`,
    /// `agent_timeout`, `agent_unreachable`, `no_statistics` (the agent's 503: statistics
    /// off or the database down), `agent_refused`, `agent_unsupported`, `agent_redirect`,
    /// `invalid_answer`, `wrong_node`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
}

impl From<FetchError> for NodeError {
    fn from(e: FetchError) -> Self {
        Self {
            code: e.code.to_owned(),
            message: e.message,
        }
    }
}

/// One node's top statements, or why there are none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeTop {
    /// The node id.
    pub node: String,
    /// Its role as its node document says.
    pub role: Role,
    /// Where its agent was asked (`null`: the node publishes no listener).
    pub agent_url: Option<String>,
    /// When the agent read the statistics; `null` with `error`.
    pub time: Option<Timestamp>,
    /// The top statements, most total execution time first; `null` with `error`.
    pub statements: Option<Vec<StatementStats>>,
    /// Why there are no statements; `null` when there are.
    pub error: Option<NodeError>,
}

/// Answer of `GET …/statements`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatements {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
    /// The `limit` asked for (`null`: each agent's default).
    pub limit: Option<u32>,
    /// Every live node: the primary first, then by id.
    pub nodes: Vec<NodeTop>,
}

/// The order nodes are shown in: the primary (the `primary` key's holder, else a node whose
/// document says primary) first, then by id.
pub fn ordered(mut nodes: Vec<NodeDoc>, primary: Option<&str>) -> Vec<NodeDoc> {
    nodes.sort_by(|a, b| {
        let rank = |n: &NodeDoc| match primary {
            Some(p) => n.id != p,
            None => n.role != Role::Primary,
        };
        (rank(a), &a.id).cmp(&(rank(b), &b.id))
    });
    nodes
}

/// Asks every node in `nodes` (in that order) with `fetch(node id, agent_url)`, at most
/// [`CONCURRENCY`] at once, and keeps the order.
pub async fn gather<F, Fut>(nodes: Vec<NodeDoc>, fetch: F) -> Vec<NodeTop>
where
    F: Fn(String, String) -> Fut,
    Fut: Future<Output = Result<cluster::wire::NodeStatements, FetchError>>,
{
    futures::stream::iter(nodes.into_iter().map(|n| {
        let asked = n
            .agent_url
            .clone()
            .filter(|u| !u.is_empty())
            .map(|u| fetch(n.id.clone(), u));
        async move {
            let result = match asked {
                Some(f) => f.await.map_err(NodeError::from),
                None => Err(NodeError {
                    code: "no_agent_url".into(),
                    message: "the node publishes no agent_url (its agent has no listener, \
                              telemetry.listen: off, or is older than this coordinator)"
                        .into(),
                }),
            };
            let (time, statements, error) = match result {
                Ok(s) => (Some(s.time), Some(s.statements), None),
                Err(e) => (None, None, Some(e)),
            };
            NodeTop {
                node: n.id,
                role: n.role,
                agent_url: n.agent_url,
                time,
                statements,
                error,
            }
        }
    }))
    .buffered(CONCURRENCY)
    .collect()
    .await
}

/// Every live node's top statements by total execution time, from its own agent.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/statements",
    tag = "clusters", params(ClusterPath, StatementsQuery),
    responses((status = 200, body = ClusterStatements), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_statements(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    ApiQuery(q): ApiQuery<StatementsQuery>,
) -> Result<Json<ClusterStatements>, Problem> {
    let r = read_gate(&st, &headers, client, "cluster.statements", &p).await?;
    if let Some(n) = q.limit
        && !(1..=MAX_LIMIT).contains(&n)
    {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_LIMIT} (got {n})"),
        ));
    }
    let primary = r.doc.primary.as_ref().map(|d| d.id.clone());
    let nodes = ordered(r.doc.nodes, primary.as_deref());
    let agents = st.agents();
    let nodes = gather(nodes, |id, url| async move {
        agents.statements(&id, &url, q.limit).await
    })
    .await;
    Ok(Json(ClusterStatements {
        namespace: r.doc.namespace,
        project: r.doc.project,
        cluster: r.doc.cluster,
        limit: q.limit,
        nodes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::wire::NodeStatements;

    fn node(id: &str, role: Role, url: Option<&str>) -> NodeDoc {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "hostname": "h", "ip_address": "127.0.0.1", "port": 1,
            "role": role, "status": "online", "health": "healthy",
            "replication": {"position": {"epoch": 1, "offset": 1}}, "priority": 1,
            "agent_url": url, "version": "t", "last_updated": "2026-01-01T00:00:00Z",
            "ttlseconds": 10
        }))
        .expect("a node document")
    }

    fn ids(nodes: &[NodeDoc]) -> Vec<&str> {
        nodes.iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn the_primary_comes_first_then_by_id() {
        let nodes = || {
            vec![
                node("c", Role::Replica, None),
                node("b", Role::Primary, None),
                node("a", Role::Replica, None),
            ]
        };
        assert_eq!(ids(&ordered(nodes(), Some("c"))), ["c", "a", "b"]);
        assert_eq!(ids(&ordered(nodes(), None)), ["b", "a", "c"]);
        assert_eq!(ids(&ordered(nodes(), Some("gone"))), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn each_node_gets_its_statements_or_its_own_error() {
        let nodes = vec![
            node("p", Role::Primary, Some("http://p:1")),
            node("r1", Role::Replica, Some("http://r1:1")),
            node("r2", Role::Replica, None),
            node("r3", Role::Replica, Some("")),
        ];
        let out = gather(nodes, |id, url| async move {
            if id == "r1" {
                // The slow one must not reorder the answer.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                return Err(FetchError {
                    code: "agent_timeout",
                    message: format!("{url} did not answer"),
                });
            }
            Ok(NodeStatements {
                node: id,
                time: Timestamp::from_unix_millis(1),
                statements: vec![],
            })
        })
        .await;
        let names: Vec<&str> = out.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["p", "r1", "r2", "r3"]);
        assert_eq!(out[0].statements, Some(vec![]));
        assert_eq!(out[0].error, None);
        assert_eq!(out[0].time, Some(Timestamp::from_unix_millis(1)));
        let e = out[1].error.as_ref().expect("r1's error");
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("agent_timeout", "http://r1:1 did not answer")
        );
        assert_eq!(out[1].statements, None);
        for n in &out[2..] {
            assert_eq!(
                n.error.as_ref().map(|e| e.code.as_str()),
                Some("no_agent_url")
            );
        }
        let json = serde_json::to_value(&out[1]).expect("json");
        assert_eq!(json["agent_url"], "http://r1:1");
        assert_eq!(json["role"], "replica");
        assert!(json["statements"].is_null(), "{json}");
    }
}
