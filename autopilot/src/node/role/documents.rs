//! The etcd documents this node writes (`nodes/<id>`, `primary`, `history`, `initialized`,
//! `lock`, `events/*`), built from what the role actor knows.

use crate::role::{ClaimReason, Facts, Notice, Position, Role};
use cluster::snapshot::ClusterSnapshot;
use cluster::wire::{
    self, Connections, DatabaseIdentity, EventDoc, EventKind, Health, HistoryDoc, HistoryEntry,
    InitializedDoc, LockDoc, LockPurpose, NodeDoc, NodeReplication, NodeStatus, NodeTags,
    PrimaryDoc, PrimaryReplication, Storage, Timestamp,
};
use cluster::wire::{ClusterKeys, ClusterNode, ClusterStateDoc, Service};
use engines::ServerStatus;

/// Who this node is, as written into every document.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `node.name`: the node id.
    pub id: String,
    /// The host name of the machine.
    pub hostname: String,
    /// `node.address`.
    pub host: String,
    /// `engine.port`.
    pub port: u16,
    /// `node.priority`.
    pub priority: u32,
    /// `node.nofailover`.
    pub nofailover: bool,
    /// Lease TTL in seconds.
    pub ttl_seconds: u64,
    /// The engine kind, for `initialized`.
    pub engine: &'static str,
    /// The agent's HTTP base URL, for `nodes/<id>`.
    pub agent_url: Option<String>,
}

/// `nodes/<id>`: the machine's view of the node (role, position, flags) with what the
/// last engine probe read of the server.
pub fn node(
    me: &Identity,
    role: Role,
    pos: Position,
    flags: &NodeFlags,
    server: &ServerStatus,
) -> NodeDoc {
    let NodeFlags {
        eligible,
        healthy,
        needs_rebuild,
        caught_up_term,
        database_killed,
        replication,
        ref source,
        ref refused,
        ref ineligible,
        ref waiting,
    } = *flags;
    let (receiving, replicas_streaming, replicas_synchronous) = match replication {
        engines::Replication::Replica { receiving } => (Some(receiving), None, None),
        engines::Replication::Source {
            streaming,
            synchronous,
            ..
        } => (None, Some(streaming), Some(synchronous)),
        engines::Replication::Unknown => (None, None, None),
    };
    let (wire_role, status) = match role {
        Role::Primary => (wire::Role::Primary, NodeStatus::Online),
        Role::Replica => (wire::Role::Replica, NodeStatus::Online),
        Role::Fenced => (wire::Role::Unknown, NodeStatus::Fenced),
        Role::Unknown if refused.is_some() => (wire::Role::Unknown, NodeStatus::Refused),
        Role::Unknown if needs_rebuild => (wire::Role::Unknown, NodeStatus::Rebuilding),
        Role::Unknown => (wire::Role::Unknown, NodeStatus::Starting),
    };
    // A primary has no receiver, except a standby leader (a live migration), which
    // replicates from the source.
    let receiver = server.receiver.as_ref().filter(|_| {
        role != Role::Primary || matches!(replication, engines::Replication::Replica { .. })
    });
    NodeDoc {
        schema: 1,
        id: me.id.clone(),
        name: me.id.clone(),
        hostname: me.hostname.clone(),
        ip_address: me.host.clone(),
        port: me.port,
        role: wire_role,
        status,
        health: if healthy {
            Health::Healthy
        } else {
            Health::Unhealthy
        },
        replication: NodeReplication {
            position: pos,
            lag_seconds: receiver.and_then(|r| r.lag_seconds),
            lag_bytes: receiver.and_then(|r| r.lag_bytes),
            lag_transactions: receiver.and_then(|r| r.lag_transactions),
            source: source.clone(),
            source_address: receiver.and_then(|r| r.source.clone()),
            state: receiver.map(|r| r.state),
            last_error: receiver.and_then(|r| r.last_error.clone()),
            gtid: server.gtid.clone(),
            caught_up_term,
            receiving,
            replicas_streaming,
            replicas_synchronous,
        },
        priority: me.priority,
        tags: NodeTags {
            nofailover: me.nofailover,
        },
        fenced: role == Role::Fenced,
        needs_rebuild,
        term: None,
        database_killed,
        database_exit: None,
        refused: refused.clone(),
        eligible,
        ineligible: ineligible.clone(),
        waiting: waiting.clone(),
        agent_url: me.agent_url.clone(),
        version: version(me, server),
        agent_version: Some(env!("CARGO_PKG_VERSION").into()),
        uptime_seconds: server.uptime_seconds,
        connections: connections(server),
        storage: server.storage.unwrap_or_default(),
        packages: None,
        last_updated: Timestamp::now(),
        ttlseconds: me.ttl_seconds,
    }
}

/// The server's version string; the engine kind when the engine cannot tell.
fn version(me: &Identity, server: &ServerStatus) -> String {
    server
        .version
        .clone()
        .unwrap_or_else(|| me.engine.to_owned())
}

fn connections(server: &ServerStatus) -> Connections {
    Connections {
        current: server.connections.unwrap_or(0),
        max: server.max_connections.unwrap_or(0),
    }
}

/// What the node says about itself besides role and position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFlags {
    /// It would take part in a failover now.
    pub eligible: bool,
    /// Its latest health verdict.
    pub healthy: bool,
    /// Its data diverged from the primary's; an operator (or `auto_rebuild`) must rebuild it.
    pub needs_rebuild: bool,
    /// The election round its position is final for (see [`NodeReplication::caught_up_term`]).
    pub caught_up_term: Option<u64>,
    /// Its agent killed its database (see [`wire::NodeDoc::database_killed`]).
    pub database_killed: bool,
    /// What its last engine probe saw of replication.
    pub replication: engines::Replication,
    /// The primary it follows, while a replica.
    pub source: Option<String>,
    /// Why it refuses to join.
    pub refused: Option<String>,
    /// Why it is not eligible (with `eligible: false`).
    pub ineligible: Option<wire::Ineligible>,
    /// What it waits for.
    pub waiting: Option<wire::Waiting>,
}

/// Why the node is not eligible, for its node key.
pub fn ineligible(why: crate::role::Ineligible) -> wire::Ineligible {
    use crate::role::Ineligible as I;
    use wire::IneligibleCode as C;
    let code = match why {
        I::NoFailover => C::Nofailover,
        I::Unhealthy => C::Unhealthy,
        I::NoData => C::NoData,
        I::Backoff { .. } => C::Backoff,
        I::Stalled => C::Stalled,
        I::NeedsRebuild => C::NeedsRebuild,
        I::Refused => C::Refused,
        I::HandingOver => C::HandingOver,
        I::Restarting => C::Restarting,
        I::Upgrading => C::Upgrading,
        I::OldTerm { .. } => C::OldTerm,
        I::Restoring => C::Restoring,
        I::NoSource => C::NoSource,
        I::Stopping => C::Stopping,
        I::Lagging { .. } => C::Lagging,
    };
    wire::Ineligible {
        code,
        reason: why.to_string(),
    }
}

/// What the node waits for, for its node key.
pub fn waiting(w: &crate::role::Wait, since: u64) -> wire::Waiting {
    use crate::role::Wait as W;
    wire::Waiting {
        kind: match w {
            W::Cooldown { .. } => wire::WaitKind::Cooldown,
            W::Maintenance => wire::WaitKind::Maintenance,
            W::PeerPositions { .. } => wire::WaitKind::PeerPositions,
            W::PrimaryOnline { .. } => wire::WaitKind::PrimaryOnline,
            W::Data => wire::WaitKind::Data,
        },
        since: Timestamp::from_unix_millis(since),
        until: w.until().map(Timestamp::from_unix_millis),
        detail: w.to_string(),
    }
}

/// `primary`: `starting` when claimed, `online` once promoted, with what the last engine
/// probe read of the server and its replicas. The session fills in the lease it is bound to.
pub fn primary(
    me: &Identity,
    pos: Position,
    status: NodeStatus,
    replication: engines::Replication,
    server: &ServerStatus,
) -> PrimaryDoc {
    let (synchronous, replicas_synchronous) = match replication {
        engines::Replication::Source {
            synchronous,
            synchronous_required,
            ..
        } => (synchronous_required, Some(synchronous)),
        _ => (false, None),
    };
    PrimaryDoc {
        schema: 1,
        id: me.id.clone(),
        name: me.id.clone(),
        hostname: me.hostname.clone(),
        ip_address: me.host.clone(),
        port: me.port,
        status,
        version: version(me, server),
        uptime_seconds: server.uptime_seconds,
        replication: PrimaryReplication {
            position: pos,
            replicas: u32::try_from(server.replicas.len()).unwrap_or(u32::MAX),
            max_lag_seconds: server
                .replicas
                .iter()
                .filter_map(|r| r.lag_seconds)
                .reduce(f64::max),
            synchronous,
            replicas_synchronous,
            streaming: server.replicas.clone(),
        },
        connections: connections(server),
        storage: server.storage.unwrap_or_default(),
        last_updated: Timestamp::now(),
        ttlseconds: me.ttl_seconds,
        lease: String::new(),
    }
}

/// How often a document is rewritten when nothing a reader acts on changed (uptime,
/// connections, storage, a lag within its bucket, a position outside an election).
pub const REFRESH: std::time::Duration =
    std::time::Duration::from_millis(crate::role::POSITION_REFRESH);

/// Lag buckets, seconds: a rewrite happens when a lag moves from one to another.
const LAG_BUCKETS: [f64; 5] = [1.0, 10.0, 60.0, 300.0, 3600.0];
/// Lag buckets in bytes of WAL (PostgreSQL).
const LAG_BYTES_BUCKETS: [u64; 4] = [1 << 20, 16 << 20, 256 << 20, 4 << 30];
/// Lag buckets in transactions (MariaDB).
const LAG_TRANSACTIONS_BUCKETS: [u64; 4] = [10, 100, 1_000, 10_000];

fn lag_bucket(lag: Option<f64>) -> Option<usize> {
    lag.map(|l| LAG_BUCKETS.iter().take_while(|b| l >= **b).count())
}

fn count_bucket(lag: Option<u64>, buckets: &[u64]) -> Option<usize> {
    lag.map(|l| buckets.iter().take_while(|b| l >= **b).count())
}

/// Whether `new` differs from `old` in something a reader acts on: everything but the
/// time stamp, uptime, connections, storage, lags within their bucket and the position
/// (which the role machine republishes when it matters).
pub fn node_changed(old: &NodeDoc, new: &NodeDoc) -> bool {
    let strip = |d: &NodeDoc| {
        let mut d = d.clone();
        d.last_updated = Timestamp::from_unix_millis(0);
        d.uptime_seconds = None;
        d.connections = Connections::default();
        d.storage = Storage::default();
        d.replication.position = Position::default();
        d.replication.lag_bytes = None;
        d.replication.lag_transactions = None;
        d.replication.lag_seconds = None;
        d
    };
    let (o, n) = (&old.replication, &new.replication);
    strip(old) != strip(new)
        || lag_bucket(o.lag_seconds) != lag_bucket(n.lag_seconds)
        || count_bucket(o.lag_bytes, &LAG_BYTES_BUCKETS)
            != count_bucket(n.lag_bytes, &LAG_BYTES_BUCKETS)
        || count_bucket(o.lag_transactions, &LAG_TRANSACTIONS_BUCKETS)
            != count_bucket(n.lag_transactions, &LAG_TRANSACTIONS_BUCKETS)
}

/// Whether the primary document changed in something a reader acts on (see
/// [`node_changed`]): status, version, which replicas stream and which are synchronous, the
/// largest lag's bucket.
pub fn primary_changed(old: &PrimaryDoc, new: &PrimaryDoc) -> bool {
    let strip = |d: &PrimaryDoc| {
        let mut d = d.clone();
        d.last_updated = Timestamp::from_unix_millis(0);
        d.uptime_seconds = None;
        d.connections = Connections::default();
        d.storage = Storage::default();
        d.lease = String::new();
        d.replication.position = Position::default();
        d.replication.max_lag_seconds = None;
        for r in &mut d.replication.streaming {
            r.lag_seconds = None;
            r.lag_bytes = None;
        }
        d
    };
    strip(old) != strip(new)
        || lag_bucket(old.replication.max_lag_seconds)
            != lag_bucket(new.replication.max_lag_seconds)
}

/// `state`: the cluster in one document, as the primary read it: every node with its role,
/// status, health and address, and the client endpoints (the primary; the replicas that are
/// online and healthy).
pub fn state(keys: &ClusterKeys, me: &Identity, snap: &ClusterSnapshot) -> ClusterStateDoc {
    let nodes: Vec<ClusterNode> = snap
        .nodes
        .values()
        .filter_map(|n| n.doc())
        .map(|d| ClusterNode {
            id: d.id.clone(),
            name: d.name.clone(),
            ip_address: d.ip_address.clone(),
            port: d.port,
            role: d.role,
            status: d.status,
            health: d.health,
        })
        .collect();
    let replicas = nodes
        .iter()
        .filter(|n| {
            n.role == wire::Role::Replica
                && n.status == NodeStatus::Online
                && n.health == Health::Healthy
        })
        .map(|n| crate::role::address(&n.ip_address, n.port))
        .collect();
    ClusterStateDoc {
        schema: 1,
        namespace: keys.namespace().to_owned(),
        project: keys.project().to_owned(),
        cluster_name: keys.cluster().to_owned(),
        nodes,
        services: vec![
            Service {
                name: "primary".into(),
                endpoints: vec![crate::role::address(&me.host, me.port)],
            },
            Service {
                name: "replicas".into(),
                endpoints: replicas,
            },
        ],
        last_updated: Timestamp::now(),
    }
}

/// Whether two `state` documents say the same but for their time stamps.
pub fn state_same(a: &ClusterStateDoc, b: &ClusterStateDoc) -> bool {
    let mut b = b.clone();
    b.last_updated = a.last_updated;
    *a == b
}

/// `history` with one more entry for this claim.
pub fn history(
    mut doc: HistoryDoc,
    me: &Identity,
    reason: ClaimReason,
    previous: Option<String>,
    pos: Position,
    at_millis: u64,
) -> HistoryDoc {
    doc.schema = 1;
    doc.entries.push(HistoryEntry {
        time: Timestamp::from_unix_millis(at_millis),
        from: previous,
        to: me.id.clone(),
        to_address: Some(crate::role::address(&me.host, me.port)),
        reason: reason.into(),
        position: pos,
    });
    doc
}

/// `initialized`, written with the bootstrap claim.
pub fn initialized(
    me: &Identity,
    system_id: Option<String>,
    standby_of: Option<String>,
) -> InitializedDoc {
    InitializedDoc {
        schema: 1,
        database: DatabaseIdentity {
            engine: me.engine.into(),
            system_id: system_id.unwrap_or_default(),
        },
        time: Timestamp::now(),
        node: me.id.clone(),
        term: 1,
        term_since: None,
        term_reason: None,
        standby_of,
    }
}

/// The contents of the local bootstrap marker: the data belongs to this cluster, in `term`
/// of its identity.
pub fn marker(term: u64) -> String {
    format!("bootstrapped\nterm {term}\n")
}

/// The term a bootstrap marker records (1 for a marker from before terms).
pub fn marker_term(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("term ")?.trim().parse().ok())
        .unwrap_or(1)
}

/// `lock`, held during bootstrap.
pub fn lock(me: &Identity) -> LockDoc {
    LockDoc {
        schema: 1,
        holder: me.id.clone(),
        purpose: LockPurpose::Bootstrap,
        time: Timestamp::now(),
    }
}

/// An `events/*` entry: the notice is the event's kind, with its facts.
pub fn event(me: &Identity, notice: Notice, detail: &str, facts: Facts) -> EventDoc {
    let kind = match notice {
        Notice::Fenced => EventKind::Fenced,
        Notice::Promoted => EventKind::Promoted,
        Notice::Failover => EventKind::Failover,
        Notice::Switchover => EventKind::Switchover,
        Notice::LeaseLost => EventKind::LeaseLost,
        Notice::Joined => EventKind::Joined,
        Notice::PromotionAborted => EventKind::PromotionAborted,
        Notice::Handover => EventKind::Handover,
        Notice::DatabaseKilled => EventKind::DatabaseKilled,
        Notice::DatabaseExited => EventKind::DatabaseExited,
        Notice::NeedsRebuild => EventKind::NeedsRebuild,
        Notice::WaitingForData => EventKind::WaitingForData,
        Notice::ReplicationStalled => EventKind::ReplicationStalled,
        Notice::ReplicationResumed => EventKind::ReplicationResumed,
        Notice::SwitchoverRejected => EventKind::SwitchoverRejected,
        Notice::RequestDone => EventKind::RequestDone,
        Notice::RequestFailed => EventKind::RequestFailed,
        Notice::ForeignData => EventKind::ForeignData,
        Notice::NewTerm => EventKind::NewTerm,
        Notice::Cutover => EventKind::Cutover,
        Notice::Upgrading => EventKind::Upgrading,
        Notice::Upgraded => EventKind::Upgraded,
        Notice::UpgradeRolledBack => EventKind::UpgradeRolledBack,
        Notice::UpgradeFailed => EventKind::UpgradeFailed,
        Notice::AgentUpgraded => EventKind::AgentUpgraded,
    };
    let Facts { from, to, position } = facts;
    EventDoc {
        schema: 1,
        time: Timestamp::now(),
        kind,
        node: me.id.clone(),
        detail: detail.to_owned(),
        from,
        to,
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::wire::sample::sample_node;

    #[test]
    fn only_what_readers_act_on_forces_a_rewrite() {
        let old = sample_node("db-2");
        let mut new = old.clone();
        new.last_updated = Timestamp::from_unix_millis(old.last_updated.unix_millis() + 5_000);
        new.uptime_seconds = Some(9_999);
        new.connections.current += 40;
        new.storage.used_bytes += 1 << 20;
        new.replication.position.offset += 100;
        new.replication.lag_transactions = Some(7); // same bucket as 3
        new.replication.lag_bytes = None;
        new.replication.lag_seconds = Some(0.9); // same bucket as 0.5
        assert!(!node_changed(&old, &new));
        for change in [
            |d: &mut NodeDoc| d.replication.lag_seconds = Some(12.0),
            |d: &mut NodeDoc| d.replication.lag_transactions = Some(25),
            |d: &mut NodeDoc| d.replication.state = Some(wire::ReplicaState::Connecting),
            |d: &mut NodeDoc| d.replication.source = Some("db-3".into()),
            |d: &mut NodeDoc| d.replication.last_error = Some("error 2003".into()),
            |d: &mut NodeDoc| d.health = Health::Unhealthy,
            |d: &mut NodeDoc| d.eligible = false,
            |d: &mut NodeDoc| d.version = "11.4.2-MariaDB".into(),
        ] {
            let mut changed = new.clone();
            change(&mut changed);
            assert!(node_changed(&old, &changed), "{changed:?}");
        }
    }

    #[test]
    fn lag_buckets_are_ordered() {
        assert_eq!(lag_bucket(None), None);
        assert_eq!(lag_bucket(Some(0.0)), Some(0));
        assert_eq!(lag_bucket(Some(0.99)), Some(0));
        assert_eq!(lag_bucket(Some(1.0)), Some(1));
        assert_eq!(lag_bucket(Some(59.0)), Some(2));
        assert_eq!(lag_bucket(Some(1e9)), Some(5));
    }
}
