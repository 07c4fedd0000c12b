//! The agent's status documents on its HTTP listener, as Patroni's `/patroni`, `/cluster` and
//! `/history` are to its operators: `GET /status` (this node: its node document as last
//! built, the cluster it belongs to, the primary, maintenance), `GET /cluster` (every member
//! as this agent last read the store, stopped ones included), `GET /history` (changes of
//! primary) and `GET /config` (the effective configuration, secrets shown only by where they
//! come from). The role actor feeds [`AgentView`]; a standalone agent serves its health only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use cluster::snapshot::ClusterSnapshot;
use cluster::wire::{self, HistoryDoc, MaintenanceDoc, MemberDoc, NodeDoc};
use serde::Serialize;
use tokio::sync::watch;

use crate::telemetry::NodeStatus;

/// What the role actor knows, for the status routes.
#[derive(Clone, Debug, Default)]
pub struct AgentView {
    /// This node's document as last built (written or not: the write economy may skip it).
    pub node: Option<NodeDoc>,
    /// The latest read of the cluster.
    pub snapshot: Option<std::sync::Arc<ClusterSnapshot>>,
    /// The lease the node key is bound to, while the session holds one (the backup agent
    /// binds its slot locks to it).
    pub lease: Option<cluster::store::LeaseId>,
}

/// The routes' state.
#[derive(Clone)]
struct StatusState {
    view: watch::Receiver<AgentView>,
    health: watch::Receiver<NodeStatus>,
    cluster: Option<ClusterName>,
    node: String,
    /// The effective configuration as JSON (from its YAML rendering).
    config: std::sync::Arc<serde_json::Value>,
}

/// `namespace/project/name` of the node's cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterName {
    /// Tenant.
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster.
    pub name: String,
}

/// The routes; `config` is the effective configuration as YAML (no secret values), served
/// as JSON.
pub fn routes(
    view: watch::Receiver<AgentView>,
    health: watch::Receiver<NodeStatus>,
    cluster: Option<ClusterName>,
    node: String,
    config: String,
) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/cluster", get(cluster_members))
        .route("/history", get(history))
        .route("/config", get(config_route))
        .with_state(StatusState {
            view,
            health,
            cluster,
            node,
            config: std::sync::Arc::new(
                yaml_serde::from_str::<serde_json::Value>(&config)
                    .unwrap_or(serde_json::Value::String(config)),
            ),
        })
}

/// `GET /status`.
#[derive(Serialize)]
struct Status {
    node: String,
    cluster: Option<ClusterName>,
    agent_version: &'static str,
    /// The health actor's latest verdict (as `/health` serves it).
    health: serde_json::Value,
    /// This node's document as the agent last built it (`null` for a standalone agent or
    /// before the first one).
    document: Option<NodeDoc>,
    /// The primary's node id as last read (`null`: none).
    primary: Option<String>,
    maintenance: Option<MaintenanceDoc>,
    /// A switchover or forced failover is pending.
    switchover_pending: bool,
}

async fn status(State(st): State<StatusState>) -> impl IntoResponse {
    let view = st.view.borrow().clone();
    let snap = view.snapshot.as_deref();
    Json(Status {
        node: st.node.clone(),
        cluster: st.cluster.clone(),
        agent_version: env!("CARGO_PKG_VERSION"),
        health: serde_json::to_value(&*st.health.borrow()).unwrap_or_default(),
        document: view.node,
        primary: snap.and_then(|s| s.primary.doc().map(|p| p.id.clone())),
        maintenance: snap.and_then(|s| s.maintenance.doc().cloned()),
        switchover_pending: snap.is_some_and(|s| s.switchover.exists()),
    })
}

/// One member in `GET /cluster`.
#[derive(Serialize)]
struct Member {
    id: String,
    /// `running` with a live node key, `stopped` for a member whose agent holds no lease.
    state: &'static str,
    /// Its node document (`null` when stopped).
    document: Option<NodeDoc>,
    /// Its member document (`null` for agents older than members).
    member: Option<MemberDoc>,
}

/// `GET /cluster`.
#[derive(Serialize)]
struct ClusterBody {
    cluster: Option<ClusterName>,
    primary: Option<String>,
    maintenance: Option<MaintenanceDoc>,
    switchover_pending: bool,
    members: Vec<Member>,
}

async fn cluster_members(State(st): State<StatusState>) -> axum::response::Response {
    let view = st.view.borrow().clone();
    let Some(snap) = view.snapshot.as_deref() else {
        return not_yet();
    };
    let mut members: Vec<Member> = snap
        .nodes
        .iter()
        .filter_map(|(id, d)| d.doc().map(|d| (id, d)))
        .map(|(id, d)| Member {
            id: id.clone(),
            state: "running",
            document: Some(d.clone()),
            member: snap.members.get(id).and_then(|m| m.doc().cloned()),
        })
        .collect();
    for m in snap.members.values().filter_map(|m| m.doc()) {
        if !members.iter().any(|x| x.id == m.id) {
            members.push(Member {
                id: m.id.clone(),
                state: "stopped",
                document: None,
                member: Some(m.clone()),
            });
        }
    }
    members.sort_by(|a, b| a.id.cmp(&b.id));
    Json(ClusterBody {
        cluster: st.cluster.clone(),
        primary: snap.primary.doc().map(|p| p.id.clone()),
        maintenance: snap.maintenance.doc().cloned(),
        switchover_pending: snap.switchover.exists(),
        members,
    })
    .into_response()
}

async fn history(State(st): State<StatusState>) -> axum::response::Response {
    let view = st.view.borrow().clone();
    match view.snapshot.as_deref() {
        None => not_yet(),
        Some(s) => Json(s.history.doc().cloned().unwrap_or(HistoryDoc {
            schema: wire::SCHEMA_VERSION,
            entries: Vec::new(),
        }))
        .into_response(),
    }
}

/// `GET /config`: the effective configuration as JSON, as `check-config --effective` prints
/// it in YAML (defaults filled in, paths absolute, secrets only by where they come from).
async fn config_route(State(st): State<StatusState>) -> impl IntoResponse {
    Json((*st.config).clone())
}

fn not_yet() -> axum::response::Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({
            "error": "this agent has not read its cluster yet (standalone, or still connecting to etcd)"
        })),
    )
        .into_response()
}
