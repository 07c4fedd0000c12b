//! The cluster as one consistent prefix read shows it, every document decoded once:
//! [`ClusterSnapshot`] of [`Observed`] documents. The agent's session produces it, the role
//! machine's view is built from it (`autopilot::role::view`).

use std::collections::BTreeMap;

use crate::error_chain;
use crate::store::{Entry, Revision};
use crate::wire::{
    self, BackupRequestDoc, ClusterKey, ClusterKeys, Document, HistoryDoc, InitializedDoc, LockDoc,
    MaintenanceDoc, MemberDoc, NodeDoc, PrimaryDoc, RequestDoc, SwitchoverDoc,
};

/// A key as observed: absent, present with a document, or present but unreadable (e.g.
/// written by a newer schema). Presence alone matters for safety: an unreadable `primary`
/// still means "a primary exists", an unreadable `initialized` still means "initialised".
#[derive(Clone, Debug, PartialEq)]
pub enum Observed<T> {
    /// The key does not exist.
    Absent,
    /// The key exists and parsed.
    Present(T),
    /// The key exists but did not parse; the reason, for logs.
    Unreadable(String),
}

impl<T> Observed<T> {
    /// Whether the key exists (readable or not).
    pub fn exists(&self) -> bool {
        !matches!(self, Self::Absent)
    }
    /// The document, when present and readable.
    pub fn doc(&self) -> Option<&T> {
        match self {
            Self::Present(d) => Some(d),
            _ => None,
        }
    }
}

impl<T: Document> Observed<T> {
    /// Decodes a present value.
    pub fn decode(bytes: &[u8]) -> Self {
        match wire::decode::<T>(bytes) {
            Ok(d) => Self::Present(d),
            Err(e) => Self::Unreadable(error_chain(&e)),
        }
    }
}

/// The cluster as read in one consistent `get_prefix`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSnapshot {
    /// Store revision of the read; the watch continues from `revision + 1`.
    pub revision: Revision,
    /// The `primary` key.
    pub primary: Observed<PrimaryDoc>,
    /// Every `nodes/<id>` key (including this node's own), by id.
    pub nodes: BTreeMap<String, Observed<NodeDoc>>,
    /// The `initialized` key.
    pub initialized: Observed<InitializedDoc>,
    /// The `maintenance` key.
    pub maintenance: Observed<MaintenanceDoc>,
    /// The `switchover` key.
    pub switchover: Observed<SwitchoverDoc>,
    /// The `lock` key.
    pub lock: Observed<LockDoc>,
    /// The `history` key.
    pub history: Observed<HistoryDoc>,
    /// Modification revision of the `history` key (0 when absent): a failover claim is
    /// conditional on it.
    pub history_revision: Revision,
    /// Every `members/<id>` key, by id.
    pub members: BTreeMap<String, Observed<MemberDoc>>,
    /// Every `requests/<node>` key, by node id, with its modification revision.
    pub requests: BTreeMap<String, (Observed<RequestDoc>, Revision)>,
    /// Every `backup/requests/<id>` key, by request id, with its modification revision.
    pub backup_requests: BTreeMap<String, (Observed<BackupRequestDoc>, Revision)>,
}

impl ClusterSnapshot {
    /// Builds the snapshot from the entries of a prefix read.
    pub fn from_entries(keys: &ClusterKeys, entries: &[Entry], revision: Revision) -> Self {
        let mut s = Self {
            revision,
            primary: Observed::Absent,
            nodes: BTreeMap::new(),
            initialized: Observed::Absent,
            maintenance: Observed::Absent,
            switchover: Observed::Absent,
            lock: Observed::Absent,
            history: Observed::Absent,
            history_revision: 0,
            requests: BTreeMap::new(),
            backup_requests: BTreeMap::new(),
            members: BTreeMap::new(),
        };
        for e in entries {
            match keys.parse(&e.key) {
                Some(ClusterKey::Primary) => s.primary = Observed::decode(&e.value),
                Some(ClusterKey::Node(id)) => {
                    s.nodes.insert(id, Observed::decode(&e.value));
                }
                Some(ClusterKey::Initialized) => s.initialized = Observed::decode(&e.value),
                Some(ClusterKey::Maintenance) => s.maintenance = Observed::decode(&e.value),
                Some(ClusterKey::Switchover) => s.switchover = Observed::decode(&e.value),
                Some(ClusterKey::Lock) => s.lock = Observed::decode(&e.value),
                Some(ClusterKey::History) => {
                    s.history = Observed::decode(&e.value);
                    s.history_revision = e.mod_revision;
                }
                Some(ClusterKey::Member(id)) => {
                    s.members.insert(id, Observed::decode(&e.value));
                }
                Some(ClusterKey::Request(id)) => {
                    s.requests
                        .insert(id, (Observed::decode(&e.value), e.mod_revision));
                }
                Some(ClusterKey::BackupRequest(id)) => {
                    s.backup_requests
                        .insert(id, (Observed::decode(&e.value), e.mod_revision));
                }
                _ => {}
            }
        }
        s
    }
}
