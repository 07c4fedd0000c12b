//! The etcd documents this node writes (`nodes/<id>`, `primary`, `history`, `initialized`,
//! `lock`, `events/*`), built from what the role actor knows.

use crate::role::{ClaimReason, Facts, Notice, Position, Role};
use cluster::wire::{
    self, Connections, DatabaseIdentity, EventDoc, EventKind, Health, HistoryDoc, HistoryEntry,
    InitializedDoc, LockDoc, LockPurpose, NodeDoc, NodeReplication, NodeStatus, NodeTags,
    PrimaryDoc, PrimaryReplication, Storage, Timestamp,
};

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

/// `nodes/<id>`.
pub fn node(me: &Identity, role: Role, pos: Position, flags: NodeFlags) -> NodeDoc {
    let NodeFlags {
        eligible,
        healthy,
        needs_rebuild,
        caught_up_term,
        database_killed,
        replication,
    } = flags;
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
        Role::Unknown if needs_rebuild => (wire::Role::Unknown, NodeStatus::Rebuilding),
        Role::Unknown => (wire::Role::Unknown, NodeStatus::Starting),
    };
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
            caught_up_term,
            receiving,
            replicas_streaming,
            replicas_synchronous,
            ..NodeReplication::default()
        },
        priority: me.priority,
        tags: NodeTags {
            nofailover: me.nofailover,
        },
        fenced: role == Role::Fenced,
        needs_rebuild,
        database_killed,
        database_exit: None,
        eligible,
        agent_url: me.agent_url.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        connections: Connections::default(),
        storage: Storage::default(),
        last_updated: Timestamp::now(),
        ttlseconds: me.ttl_seconds,
    }
}

/// What the node says about itself besides role and position.
#[derive(Clone, Copy, Debug, Default)]
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
}

/// `primary`: `starting` when claimed, `online` once promoted. The session fills in the
/// lease it is bound to.
pub fn primary(me: &Identity, pos: Position, status: NodeStatus) -> PrimaryDoc {
    PrimaryDoc {
        schema: 1,
        id: me.id.clone(),
        name: me.id.clone(),
        hostname: me.hostname.clone(),
        ip_address: me.host.clone(),
        port: me.port,
        status,
        version: env!("CARGO_PKG_VERSION").into(),
        replication: PrimaryReplication {
            position: pos,
            ..PrimaryReplication::default()
        },
        connections: Connections::default(),
        storage: Storage::default(),
        last_updated: Timestamp::now(),
        ttlseconds: me.ttl_seconds,
        lease: String::new(),
    }
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
pub fn initialized(me: &Identity) -> InitializedDoc {
    InitializedDoc {
        schema: 1,
        database: DatabaseIdentity {
            engine: me.engine.into(),
            system_id: String::new(),
        },
        time: Timestamp::now(),
        node: me.id.clone(),
    }
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
