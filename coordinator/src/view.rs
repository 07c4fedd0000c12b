//! Reading clusters from etcd into API documents: the list of clusters (from key names only)
//! and one cluster's keys decoded into a [`ClusterDoc`].

use std::collections::BTreeMap;

use cluster::store::{Entry, EtcdStore, Store};
use cluster::wire::{
    self, ClusterKey, ClusterKeys, ClusterStateDoc, HistoryDoc, InitializedDoc, MaintenanceDoc,
    NodeDoc, PrimaryDoc, SwitchoverDoc,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

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

/// One cluster in a listing (from key names only: cheap for many clusters).
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
}

/// A cluster read: the document, its history, and the raw entries.
pub struct Read {
    /// The decoded cluster.
    pub doc: ClusterDoc,
    /// Its history (empty when none).
    pub history: HistoryDoc,
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
            });
        if k == "primary" {
            s.has_primary = true;
        } else if k.strip_prefix("nodes/").is_some_and(|id| !id.is_empty()) {
            s.nodes += 1;
        }
    }
    Ok(out.into_values().collect())
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
    };
    let mut history = HistoryDoc::default();
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
            _ => true,
        };
        if !ok {
            doc.unreadable.push(rel);
        }
    }
    Read { doc, history }
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
