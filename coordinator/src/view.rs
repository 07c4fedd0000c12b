//! Reading clusters from etcd into API documents: the list of clusters (from key names only)
//! and one cluster's keys decoded into a [`ClusterDoc`].

use std::collections::BTreeMap;

use cluster::store::{Entry, EtcdStore, RangeQuery, Store};
use cluster::wire::{
    self, ClusterKey, ClusterKeys, ClusterStateDoc, Health, HistoryDoc, InitializedDoc,
    MaintenanceDoc, MemberDoc, NodeAction, NodeDoc, PrimaryDoc, ReplicaState, RequestDoc,
    RestorePoint, Role, SwitchoverDoc, Timestamp,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::members::{self, MemberState, MemberView};
use crate::problem::Problem;
use crate::state::AppState;

/// The three names of a cluster in a URL.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClusterPath {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project within the namespace.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
}

impl ClusterPath {
    /// `ns/project/cluster`, for audit targets and messages.
    pub fn target(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.project, self.cluster)
    }
    /// The names as a scope-check triple.
    pub fn triple(&self) -> (&str, &str, &str) {
        (&self.namespace, &self.project, &self.cluster)
    }
    /// The cluster's keys; invalid names (and the reserved `_…` namespaces) are simply
    /// not found.
    pub fn keys(&self, state: &AppState) -> Result<ClusterKeys, Problem> {
        let names = [&self.namespace, &self.project, &self.cluster];
        if names
            .iter()
            .any(|n| crate::names::name_problem(n).is_some())
        {
            return Err(self.not_found());
        }
        ClusterKeys::new(
            state.prefix(),
            &self.namespace,
            &self.project,
            &self.cluster,
        )
        .map_err(|_| self.not_found())
    }
    /// The 404 for this cluster.
    pub fn not_found(&self) -> Problem {
        Problem::cluster_not_found(&self.namespace, &self.project, &self.cluster)
    }
}

/// One cluster in a listing: `has_primary` and `nodes` from key names only (cheap for many
/// clusters, what the cluster gauges use); the rest from one small read of the cluster's
/// `maintenance`, `members/`, `nodes/` and `primary` keys ([`summarize`], `GET /v1/clusters`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterSummary {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
    /// Whether a `primary` key exists.
    pub has_primary: bool,
    /// Live agents (`nodes/<id>` keys).
    pub nodes: usize,
    /// The primary's node id (`null`: none).
    #[serde(default)]
    pub primary: Option<String>,
    /// Members other than the primary, live or down.
    #[serde(default)]
    pub replicas: usize,
    /// Of those, the replicas that are healthy and receive from the primary (streaming, or
    /// catching up on a lag; not while connecting).
    #[serde(default)]
    pub healthy_replicas: usize,
    /// Members whose agent is down (`members/<id>` without a node key).
    #[serde(default)]
    pub stopped: usize,
    /// Whether maintenance mode is on.
    #[serde(default)]
    pub maintenance: bool,
}

/// A request to one node's agent that it has not carried out yet (`requests/<node>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingRequest {
    /// The node it is for.
    pub node: String,
    /// What it asks.
    pub action: NodeAction,
    /// Who asked.
    pub requested_by: Option<String>,
    /// When.
    pub time: Option<Timestamp>,
    /// For `restore`: the point the cluster is rewound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<RestorePoint>,
}

/// Everything etcd holds about one cluster, decoded (events and history have their own
/// endpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterDoc {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
    /// etcd revision of the read; `GET …/events?since=<revision>` continues from here.
    pub revision: i64,
    /// The primary, if there is one.
    pub primary: Option<PrimaryDoc>,
    /// Every live node, by id.
    pub nodes: Vec<NodeDoc>,
    /// The bootstrap marker.
    pub initialized: Option<InitializedDoc>,
    /// The maintenance switch, when set.
    pub maintenance: Option<MaintenanceDoc>,
    /// A pending switchover request.
    pub switchover: Option<SwitchoverDoc>,
    /// The primary's summary document, when written.
    pub state: Option<ClusterStateDoc>,
    /// Keys whose documents could not be read (written by a newer version, or by hand).
    pub unreadable: Vec<String>,
    /// The database engine (`postgres`, `mariadb`, `process`): `initialized.database.engine`,
    /// else what the nodes' versions say; `null` when unknown.
    #[serde(default)]
    pub engine: Option<String>,
    /// Every member as `autopilotctl show` prints it: the live nodes and the members whose
    /// agent is down (state `stopped`), the primary first, then by id.
    #[serde(default)]
    pub members: Vec<MemberView>,
    /// Requests to single nodes (reinit, restart, reload, restore) their agents have not carried out
    /// yet.
    #[serde(default)]
    pub requests: Vec<PendingRequest>,
}

/// A cluster read: the document, its history, and the raw entries.
pub struct Read {
    /// The decoded cluster.
    pub doc: ClusterDoc,
    /// Its history (empty when none).
    pub history: HistoryDoc,
    /// The member documents (`members/<id>`), live or not.
    pub member_docs: Vec<MemberDoc>,
}

impl Read {
    /// Whether `id` is a member: a live node or a `members/<id>` document.
    pub fn is_member(&self, id: &str) -> bool {
        self.doc.nodes.iter().any(|n| n.id == id) || self.member_docs.iter().any(|m| m.id == id)
    }
    /// The live node `id`.
    pub fn node(&self, id: &str) -> Option<&NodeDoc> {
        self.doc.nodes.iter().find(|n| n.id == id)
    }
}

/// Every key under `base` except the coordinator's own (`_coordinator/`: tokens and the
/// audit log, which may hold far more keys than every cluster together): two key-only range
/// reads around that range, so listing clusters never scans the audit log.
async fn list_skipping_coordinator(
    state: &AppState,
    base: &str,
) -> Result<Vec<String>, cluster::store::StoreError> {
    let own = state.coordinator_keys();
    let own = own.root();
    let end = EtcdStore::prefix_end(base).unwrap_or_default();
    let mut keys = state.store().list_keys_between(base, own).await?;
    if let Some(after) = EtcdStore::prefix_end(own) {
        keys.extend(state.store().list_keys_between(&after, &end).await?);
    }
    Ok(keys)
}

/// Lists clusters under `<prefix>/` (or `<prefix>/<namespace>/`), skipping `_…` namespaces.
pub async fn list(
    state: &AppState,
    namespace: Option<&str>,
) -> Result<Vec<ClusterSummary>, Problem> {
    let base = format!("{}/", state.prefix());
    // `_…` is never a namespace (it is where the coordinator keeps its own keys).
    if namespace.is_some_and(|ns| ns.starts_with('_') || ns.contains('/')) {
        return Ok(Vec::new());
    }
    let scan = match namespace {
        Some(ns) => format!("{base}{ns}/"),
        None => base.clone(),
    };
    let keys = match namespace {
        Some(_) => state.store().list_keys(&scan).await.map(|(k, _)| k),
        None => list_skipping_coordinator(state, &base).await,
    }
    .map_err(|e| Problem::store(&e))?;
    let mut out: BTreeMap<(String, String, String), ClusterSummary> = BTreeMap::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(&base) else {
            continue;
        };
        let mut parts = rest.splitn(4, '/');
        let (Some(ns), Some(p), Some(c), Some(k)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if ns.is_empty() || ns.starts_with('_') || p.is_empty() || c.is_empty() {
            continue;
        }
        let s = out
            .entry((ns.to_owned(), p.to_owned(), c.to_owned()))
            .or_insert_with(|| ClusterSummary {
                namespace: ns.to_owned(),
                project: p.to_owned(),
                cluster: c.to_owned(),
                has_primary: false,
                nodes: 0,
                primary: None,
                replicas: 0,
                healthy_replicas: 0,
                stopped: 0,
                maintenance: false,
            });
        if k == "primary" {
            s.has_primary = true;
        } else if k.strip_prefix("nodes/").is_some_and(|id| !id.is_empty()) {
            s.nodes += 1;
        }
    }
    Ok(out.into_values().collect())
}

/// Clusters summarised at once by [`summarize`].
const SUMMARIES_AT_ONCE: usize = 8;

/// Fills in each listed cluster's primary, replica counts and maintenance: per cluster one
/// range read of `maintenance` … `primary` (maintenance, members, nodes, primary; never its
/// events or history).
pub async fn summarize(
    state: &AppState,
    clusters: Vec<ClusterSummary>,
) -> Result<Vec<ClusterSummary>, Problem> {
    futures::stream::iter(clusters.into_iter().map(|c| async move {
        let keys = ClusterKeys::new(state.prefix(), &c.namespace, &c.project, &c.cluster)
            .map_err(|_| Problem::cluster_not_found(&c.namespace, &c.project, &c.cluster))?;
        let q = RangeQuery {
            from: Some(keys.maintenance()),
            to: EtcdStore::prefix_end(&keys.primary()),
            limit: 0,
            descending: false,
        };
        let (entries, revision) = state
            .store()
            .get_range(&keys.cluster_prefix(), &q)
            .await
            .map_err(|e| Problem::store(&e))?;
        Ok(summary(c, &decode(&keys, &entries, revision).doc))
    }))
    .buffered(SUMMARIES_AT_ONCE)
    .collect::<Vec<Result<ClusterSummary, Problem>>>()
    .await
    .into_iter()
    .collect()
}

/// `c` with the figures of the decoded cluster `d`.
pub fn summary(mut c: ClusterSummary, d: &ClusterDoc) -> ClusterSummary {
    c.primary = d.primary.as_ref().map(|p| p.id.clone());
    c.has_primary = d.primary.is_some();
    c.nodes = d.nodes.len();
    c.maintenance = d.maintenance.as_ref().is_some_and(|m| m.enabled);
    c.stopped = d.members.iter().filter(|m| !m.live).count();
    let replicas = d.members.iter().filter(|m| m.role != Role::Primary);
    c.replicas = replicas.clone().count();
    c.healthy_replicas = replicas
        .filter(|m| matches!(m.state, MemberState::Streaming | MemberState::CatchingUp))
        .filter(|m| {
            // Healthy, and receiving: a replica still connecting is not counted.
            d.nodes.iter().any(|n| {
                n.id == m.id
                    && n.health == Health::Healthy
                    && n.replication.state != Some(ReplicaState::Connecting)
            })
        })
        .count();
    c
}

/// Reads one cluster; 404 when etcd holds no key of it.
pub async fn read(state: &AppState, path: &ClusterPath) -> Result<Read, Problem> {
    let keys = path.keys(state)?;
    let (entries, revision) = state
        .store()
        .get_prefix(&keys.cluster_prefix())
        .await
        .map_err(|e| Problem::store(&e))?;
    if entries.is_empty() {
        return Err(path.not_found());
    }
    Ok(decode(&keys, &entries, revision))
}

fn decode(keys: &ClusterKeys, entries: &[Entry], revision: i64) -> Read {
    let mut doc = ClusterDoc {
        namespace: keys.namespace().to_owned(),
        project: keys.project().to_owned(),
        cluster: keys.cluster().to_owned(),
        revision,
        primary: None,
        nodes: Vec::new(),
        initialized: None,
        maintenance: None,
        switchover: None,
        state: None,
        unreadable: Vec::new(),
        engine: None,
        members: Vec::new(),
        requests: Vec::new(),
    };
    let mut history = HistoryDoc::default();
    let mut member_docs = Vec::new();
    for e in entries {
        let Some(k) = keys.parse(&e.key) else {
            continue;
        };
        let rel = e.key[keys.cluster_prefix().len()..].to_owned();
        let ok = match k {
            ClusterKey::Primary => set(&mut doc.primary, &e.value),
            ClusterKey::Node(_) => match wire::decode::<NodeDoc>(&e.value) {
                Ok(n) => {
                    doc.nodes.push(n);
                    true
                }
                Err(_) => false,
            },
            ClusterKey::Initialized => set(&mut doc.initialized, &e.value),
            ClusterKey::Maintenance => set(&mut doc.maintenance, &e.value),
            ClusterKey::Switchover => set(&mut doc.switchover, &e.value),
            ClusterKey::State => set(&mut doc.state, &e.value),
            ClusterKey::History => match wire::decode::<HistoryDoc>(&e.value) {
                Ok(h) => {
                    history = h;
                    true
                }
                Err(_) => false,
            },
            ClusterKey::Member(_) => match wire::decode::<MemberDoc>(&e.value) {
                Ok(m) => {
                    member_docs.push(m);
                    true
                }
                Err(_) => false,
            },
            ClusterKey::Request(node) => match wire::decode::<RequestDoc>(&e.value) {
                Ok(r) => {
                    doc.requests.push(PendingRequest {
                        node,
                        action: r.action,
                        requested_by: r.requested_by,
                        time: r.time,
                        restore_to: r.restore_to,
                    });
                    true
                }
                Err(_) => false,
            },
            _ => true,
        };
        if !ok {
            doc.unreadable.push(rel);
        }
    }
    doc.engine = members::engine(
        doc.initialized.as_ref().map(|i| i.database.engine.as_str()),
        &doc.nodes,
    );
    doc.members = members::members(
        doc.engine.as_deref(),
        doc.primary.as_ref(),
        &doc.nodes,
        &member_docs,
    );
    Read {
        doc,
        history,
        member_docs,
    }
}

fn set<T: wire::Document>(slot: &mut Option<T>, bytes: &[u8]) -> bool {
    match wire::decode::<T>(bytes) {
        Ok(v) => {
            *slot = Some(v);
            true
        }
        Err(_) => false,
    }
}
