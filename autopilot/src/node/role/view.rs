//! From a prefix read of the cluster to the role machine's [`ClusterView`].

use crate::role::{ClusterView, NodeInfo, Position, PrimaryKey, Role, Switchover};
use crate::store::{Entry, Revision};
use crate::wire::{
    self, ClusterKey, ClusterKeys, HistoryDoc, MaintenanceDoc, NodeDoc, PrimaryDoc, SwitchoverDoc,
};

/// Placeholder holder of a `primary` key that cannot be decoded: it still exists (nobody may
/// claim over it) but names nobody this node could follow.
pub const UNREADABLE: &str = "<unreadable>";

/// The view, plus the history document and its revision (the next claim appends to it).
pub struct Read {
    pub view: ClusterView,
    pub history: HistoryDoc,
}

/// Build the view of one linearizable prefix read.
pub fn from_entries(keys: &ClusterKeys, entries: &[Entry], revision: Revision) -> Read {
    let mut view = ClusterView {
        linearizable: true,
        revision: u64::try_from(revision).unwrap_or_default(),
        ..ClusterView::default()
    };
    let mut history = HistoryDoc {
        schema: 1,
        entries: Vec::new(),
    };
    let mut switchover = None;
    for e in entries {
        match keys.parse(&e.key) {
            Some(ClusterKey::Primary) => {
                view.primary = Some(match wire::decode::<PrimaryDoc>(&e.value) {
                    Ok(d) => PrimaryKey {
                        address: address(&d.ip_address, d.port),
                        node: d.id,
                    },
                    Err(_) => PrimaryKey {
                        node: UNREADABLE.into(),
                        address: String::new(),
                    },
                });
            }
            Some(ClusterKey::Initialized) => view.initialized = true,
            // An unreadable maintenance request still means "hands off".
            Some(ClusterKey::Maintenance) => {
                view.maintenance = wire::decode::<MaintenanceDoc>(&e.value)
                    .map(|d| d.enabled)
                    .unwrap_or(true);
            }
            Some(ClusterKey::History) => {
                view.history_rev = u64::try_from(e.mod_revision).unwrap_or_default();
                if let Ok(doc) = wire::decode::<HistoryDoc>(&e.value) {
                    history = doc;
                }
            }
            Some(ClusterKey::Switchover) => {
                switchover = wire::decode::<SwitchoverDoc>(&e.value).ok();
            }
            Some(ClusterKey::Node(id)) => {
                if let Ok(d) = wire::decode::<NodeDoc>(&e.value) {
                    view.nodes.push(node_info(id, &d));
                }
            }
            _ => {}
        }
    }
    view.last_failover_at = history
        .entries
        .iter()
        .rev()
        .find(|h| h.reason == "failover")
        .map(|h| h.time.unix_millis());
    view.history_last = history.entries.last().and_then(|h| {
        Some(PrimaryKey {
            node: h.to.clone(),
            address: h.to_address.clone()?,
        })
    });
    view.switchover = switchover.map(|s| Switchover {
        from: view
            .primary
            .as_ref()
            .map(|p| p.node.clone())
            .unwrap_or_default(),
        to: s.candidate,
    });
    Read { view, history }
}

fn node_info(id: String, d: &NodeDoc) -> NodeInfo {
    let role = match (d.role, d.fenced) {
        (_, true) => Role::Fenced,
        (wire::Role::Primary, false) => Role::Primary,
        (wire::Role::Replica, false) => Role::Replica,
        (wire::Role::Unknown, false) => Role::Unknown,
    };
    NodeInfo {
        id,
        address: address(&d.ip_address, d.port),
        role,
        position: Position {
            epoch: d.replication.position.epoch,
            offset: d.replication.position.offset,
        },
        priority: d.priority,
        eligible: d.eligible,
    }
}

/// `host:port`, bracketing IPv6 hosts.
pub fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
