//! The role machine's [`ClusterView`], built from the session's [`ClusterSnapshot`] (where
//! every document was decoded once). What the documents *mean* for the machine is decided
//! here: an unreadable `primary` still exists, an unreadable `maintenance` means "hands off",
//! only `failover` entries of `history` count for the cooldown (I5), a switchover request is
//! addressed to the primary of its time.

use super::types::{ClusterView, Millis, NodeAction, NodeInfo, PrimaryKey, Role, Switchover};
use cluster::snapshot::{ClusterSnapshot, Observed};
use cluster::wire::{self, HistoryEntry, HistoryReason, NodeDoc};

/// Placeholder holder of a `primary` key that cannot be decoded: it still exists (nobody may
/// claim over it) but names nobody this node could follow.
pub const UNREADABLE: &str = "<unreadable>";

impl ClusterView {
    /// The view of one linearizable read.
    pub fn from_snapshot(snap: &ClusterSnapshot) -> ClusterView {
        let mut view = ClusterView {
            linearizable: true,
            revision: u64::try_from(snap.revision).unwrap_or_default(),
            initialized: snap.initialized.exists(),
            identity: snap
                .initialized
                .doc()
                .map(|d| d.database.system_id.clone())
                .filter(|id| !id.is_empty()),
            // An unreadable maintenance request still means "hands off".
            maintenance: match &snap.maintenance {
                Observed::Absent => false,
                Observed::Present(d) => d.enabled,
                Observed::Unreadable(_) => true,
            },
            history_rev: u64::try_from(snap.history_revision).unwrap_or_default(),
            ..ClusterView::default()
        };
        view.primary = match &snap.primary {
            Observed::Absent => None,
            Observed::Present(d) => {
                view.primary_starting = d.status == wire::NodeStatus::Starting;
                Some(PrimaryKey {
                    address: address(&d.ip_address, d.port),
                    node: d.id.clone(),
                })
            }
            Observed::Unreadable(_) => Some(PrimaryKey {
                node: UNREADABLE.into(),
                address: String::new(),
            }),
        };
        view.nodes = snap
            .nodes
            .iter()
            .filter_map(|(id, d)| d.doc().map(|d| node_info(id.clone(), d)))
            .collect();
        let entries = snap.history.doc().map_or(&[][..], |h| &h.entries[..]);
        (view.last_failover_at, view.history_last) = history_facts(entries);
        // A request is addressed to the primary of its time: the key holder, or, once the key
        // is gone (the primary handed over), the last primary in `history`. Without the latter
        // the candidates would take a completed hand-over for a failover (cooldown, history
        // reason).
        view.switchover = snap.switchover.doc().map(|s| Switchover {
            from: view
                .primary
                .as_ref()
                .or(view.history_last.as_ref())
                .map(|p| p.node.clone())
                .unwrap_or_default(),
            to: s.candidate.clone(),
            forced: s.failover,
        });
        view.requests = snap
            .requests
            .iter()
            .map(|(id, (doc, rev))| {
                let action = doc.doc().map_or(NodeAction::Unknown, |d| d.action);
                (id.clone(), action, u64::try_from(*rev).unwrap_or_default())
            })
            .collect();
        view.restore_points = snap
            .requests
            .iter()
            .filter_map(|(id, (doc, _))| Some((id.clone(), doc.doc()?.restore_to.clone()?)))
            .collect();
        view.upgrade_orders = snap
            .requests
            .iter()
            .filter_map(|(id, (doc, _))| Some((id.clone(), doc.doc()?.upgrade.clone()?)))
            .collect();
        // Unreadable: no term is known, and none is checked.
        view.term = snap.initialized.doc().map_or(0, |d| d.term.max(1));
        view.standby_of = snap.initialized.doc().and_then(|d| d.standby_of.clone());
        view
    }
}

/// What `history` tells the machine: the time of the last *failover* (the I5 cooldown runs
/// from it; bootstraps and switchovers do not count), and the latest primary (the one to fence
/// after winning, even when this node never saw its key).
pub fn history_facts(entries: &[HistoryEntry]) -> (Option<Millis>, Option<PrimaryKey>) {
    let last_failover_at = entries
        .iter()
        .rev()
        .find(|h| h.reason == HistoryReason::Failover)
        .map(|h| h.time.unix_millis());
    let last = entries.last().and_then(|h| {
        Some(PrimaryKey {
            node: h.to.clone(),
            address: h.to_address.clone()?,
        })
    });
    (last_failover_at, last)
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
        position: d.replication.position,
        priority: d.priority,
        eligible: d.eligible,
        caught_up_term: d.replication.caught_up_term,
        database_killed: d.database_killed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::store::Entry;
    use cluster::wire::{self, ClusterKeys, HistoryDoc, HistoryEntry, Position, Timestamp};

    fn entry(keys: &ClusterKeys, key: String, value: Vec<u8>, rev: i64) -> Entry {
        let _ = keys;
        Entry {
            key,
            value,
            mod_revision: rev,
        }
    }

    fn history_entry(
        at: u64,
        from: Option<&str>,
        to: &str,
        address: &str,
        reason: &str,
    ) -> HistoryEntry {
        HistoryEntry {
            time: Timestamp::from_unix_millis(at),
            from: from.map(Into::into),
            to: to.into(),
            to_address: Some(address.into()),
            reason: reason.into(),
            position: Position::default(),
        }
    }

    #[test]
    fn a_read_becomes_a_view() {
        let keys = ClusterKeys::new("/autopilot", "ns", "p", "c").expect("keys");
        let primary = cluster::wire::sample::sample_primary("db-1");
        let mut node = cluster::wire::sample::sample_node("db-2");
        node.replication.position = Position {
            epoch: 1,
            offset: 42,
        };
        node.eligible = true;
        let history = HistoryDoc {
            schema: 1,
            entries: vec![
                history_entry(1_000, None, "db-0", "10.0.0.1:6379", "failover"),
                history_entry(2_000, Some("db-0"), "db-1", "10.0.0.2:6379", "switchover"),
            ],
        };
        let entries = vec![
            entry(&keys, keys.primary(), wire::encode(&primary), 5),
            entry(&keys, keys.node("db-2"), wire::encode(&node), 6),
            entry(&keys, keys.initialized(), b"{}".to_vec(), 2),
            entry(&keys, keys.history(), wire::encode(&history), 7),
            entry(&keys, keys.maintenance(), b"not json".to_vec(), 8),
            entry(
                &keys,
                keys.switchover(),
                br#"{"candidate":"db-2"}"#.to_vec(),
                9,
            ),
        ];
        let snap = ClusterSnapshot::from_entries(&keys, &entries, 10);
        let v = ClusterView::from_snapshot(&snap);
        assert!(v.linearizable);
        assert_eq!(v.revision, 10);
        assert_eq!(v.primary.as_ref().map(|p| p.node.as_str()), Some("db-1"));
        assert!(v.initialized);
        assert!(v.maintenance, "an unreadable maintenance key counts as on");
        assert_eq!(v.history_rev, 7);
        assert_eq!(
            v.last_failover_at,
            Some(1_000),
            "only failovers count for the cooldown"
        );
        assert_eq!(
            v.history_last,
            Some(PrimaryKey {
                node: "db-1".into(),
                address: "10.0.0.2:6379".into()
            })
        );
        assert_eq!(
            v.switchover,
            Some(Switchover {
                forced: false,
                from: "db-1".into(),
                to: Some("db-2".into())
            })
        );
        assert_eq!(v.nodes.len(), 1);
        assert_eq!(
            v.nodes[0].position,
            Position {
                epoch: 1,
                offset: 42
            }
        );
        assert!(v.nodes[0].eligible);
        assert_eq!(snap.history.doc().map(|h| h.entries.len()), Some(2));
    }

    /// After the old primary released its key, the request is still addressed to it, so the
    /// candidates see a planned switchover rather than a failover.
    #[test]
    fn a_switchover_outlives_the_released_primary_key() {
        let keys = ClusterKeys::new("/autopilot", "ns", "p", "c").expect("keys");
        let history = HistoryDoc {
            schema: 1,
            entries: vec![history_entry(
                1_000,
                None,
                "db-1",
                "10.0.0.2:6379",
                "bootstrap",
            )],
        };
        let entries = vec![
            entry(&keys, keys.history(), wire::encode(&history), 4),
            entry(
                &keys,
                keys.switchover(),
                br#"{"candidate":"db-2"}"#.to_vec(),
                5,
            ),
        ];
        let v = ClusterView::from_snapshot(&ClusterSnapshot::from_entries(&keys, &entries, 6));
        assert!(v.primary.is_none());
        assert_eq!(
            v.switchover,
            Some(Switchover {
                forced: false,
                from: "db-1".into(),
                to: Some("db-2".into())
            })
        );
    }

    #[test]
    fn an_unreadable_primary_still_exists() {
        let keys = ClusterKeys::new("/autopilot", "ns", "p", "c").expect("keys");
        let entries = vec![entry(&keys, keys.primary(), b"garbage".to_vec(), 3)];
        let v = ClusterView::from_snapshot(&ClusterSnapshot::from_entries(&keys, &entries, 3));
        assert_eq!(v.primary.map(|p| p.node), Some(UNREADABLE.to_owned()));
    }
}
