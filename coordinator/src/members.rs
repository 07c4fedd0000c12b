//! Every member of a cluster as one row, the way `autopilotctl show` prints it and
//! `GET /v1/clusters/{ns}/{p}/{c}` returns it in `members`: the live nodes (`nodes/<id>`) and
//! the members whose agent is down (`members/<id>` without a node key, shown `stopped`),
//! each with its state, sync state, lag, position in the engine's own notation and
//! eligibility with the reason. Computed from the documents only (a pure function, unit
//! tested), so scripts read exactly what the table shows.

use cluster::wire::{
    Ineligible, MemberDoc, NodeDoc, NodeStatus, PrimaryDoc, ReplicaState, Role, Waiting,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a member is doing, as one word (the table prints it with spaces for underscores).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// The primary, serving.
    Running,
    /// A replica receiving from its primary, nothing waiting to be applied.
    Streaming,
    /// A replica behind its primary (lag above zero) or (re)connecting to it.
    CatchingUp,
    /// A replica that does not replicate (stopped, or stopped by an error: see its node's
    /// `replication.last_error`).
    NotReplicating,
    /// Its agent is down (a member without a node key), or its database is not running.
    Stopped,
    /// Made read-only by Autopilot.
    Fenced,
    /// Being rebuilt (cloned) from the primary.
    Rebuilding,
    /// Its data diverged from the primary's: it waits to be rebuilt (`autopilotctl reinit`).
    NeedsRebuild,
    /// Its data belongs to another database: it refuses to join.
    Refused,
    /// Its database is starting or recovering.
    Starting,
    /// Its database is shutting down.
    Stopping,
    /// Anything else (a role not decided yet, a value from a newer agent).
    Unknown,
}

impl MemberState {
    /// The state as the table prints it (`catching up`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Streaming => "streaming",
            Self::CatchingUp => "catching up",
            Self::NotReplicating => "not replicating",
            Self::Stopped => "stopped",
            Self::Fenced => "fenced",
            Self::Rebuilding => "rebuilding",
            Self::NeedsRebuild => "needs rebuild",
            Self::Refused => "refused",
            Self::Starting => "starting",
            Self::Stopping => "stopping",
            Self::Unknown => "unknown",
        }
    }
}

/// Whether commits wait for a replica, as the primary's database reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Commits wait for it.
    Sync,
    /// It streams; commits do not wait for it.
    Async,
}

/// One member of a cluster, as `autopilotctl show` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// Node id.
    pub id: String,
    /// `ip:port` its database listens on.
    pub host: String,
    /// Its role; `unknown` for a member whose agent is down.
    pub role: Role,
    /// What it is doing.
    pub state: MemberState,
    /// Whether its agent is up (a `nodes/<id>` key exists).
    pub live: bool,
    /// On a replica the primary lists as streaming: whether commits wait for it; `null`
    /// otherwise, and when the primary's database does not say per replica.
    pub sync: Option<SyncState>,
    /// Replication lag in bytes of WAL (PostgreSQL replicas).
    pub lag_bytes: Option<u64>,
    /// Replication lag in transactions (MariaDB replicas).
    pub lag_transactions: Option<u64>,
    /// Replication lag in seconds, as the database reports it.
    pub lag_seconds: Option<f64>,
    /// PostgreSQL: the timeline (the position's `epoch`).
    pub timeline: Option<u64>,
    /// PostgreSQL: the LSN (`0/11C88BB8`).
    pub lsn: Option<String>,
    /// MariaDB: `gtid_current_pos` (`0-1-2143`), when the agent publishes it.
    pub gtid: Option<String>,
    /// Other engines: the position as `epoch/offset`.
    pub position: Option<String>,
    /// Whether it would take part in a failover now.
    pub eligible: bool,
    /// Why not, when it is not eligible (`code` `unknown` with a generic reason when its
    /// agent gives none).
    pub ineligible: Option<Ineligible>,
    /// What it waits for before it acts (a failover held by the cooldown, …).
    pub waiting: Option<Waiting>,
    /// Base URL of its agent's listener.
    pub agent_url: Option<String>,
}

/// The engine of a cluster: `initialized.database.engine`, else what the nodes' version
/// strings say (`PostgreSQL 15.14 …`, `10.11.6-MariaDB…`, or the engine kind itself).
pub fn engine(initialized: Option<&str>, nodes: &[NodeDoc]) -> Option<String> {
    if let Some(e) = initialized.filter(|e| !e.is_empty()) {
        return Some(e.to_owned());
    }
    nodes.iter().find_map(|n| {
        let v = n.version.to_ascii_lowercase();
        if v.contains("postgres") {
            Some("postgres".to_owned())
        } else if v.contains("mariadb") {
            Some("mariadb".to_owned())
        } else {
            None
        }
    })
}

/// Every member: the live nodes and the members whose agent is down, the primary first, then
/// by id.
pub fn members(
    engine: Option<&str>,
    primary: Option<&PrimaryDoc>,
    nodes: &[NodeDoc],
    members: &[MemberDoc],
) -> Vec<MemberView> {
    let mut out: Vec<MemberView> = nodes.iter().map(|n| live(engine, primary, n)).collect();
    for m in members {
        if !nodes.iter().any(|n| n.id == m.id) {
            out.push(stopped(m));
        }
    }
    let primary_id = primary.map(|p| p.id.as_str());
    out.sort_by(|a, b| {
        let rank = |m: &MemberView| match primary_id {
            Some(p) => m.id != p,
            None => m.role != Role::Primary,
        };
        (rank(a), &a.id).cmp(&(rank(b), &b.id))
    });
    out
}

fn stopped(m: &MemberDoc) -> MemberView {
    MemberView {
        id: m.id.clone(),
        host: format!("{}:{}", m.ip_address, m.port),
        role: Role::Unknown,
        state: MemberState::Stopped,
        live: false,
        sync: None,
        lag_bytes: None,
        lag_transactions: None,
        lag_seconds: None,
        timeline: None,
        lsn: None,
        gtid: None,
        position: None,
        eligible: false,
        ineligible: Some(Ineligible {
            code: cluster::wire::IneligibleCode::Unknown,
            reason: "its agent is down (no node key)".into(),
        }),
        waiting: None,
        agent_url: m.agent_url.clone(),
    }
}

fn live(engine: Option<&str>, primary: Option<&PrimaryDoc>, n: &NodeDoc) -> MemberView {
    let is_primary = primary.map_or(n.role == Role::Primary, |p| p.id == n.id);
    let r = &n.replication;
    let lagging = r.lag_bytes.is_some_and(|b| b > 0) || r.lag_transactions.is_some_and(|t| t > 0);
    let state = if n.fenced || n.status == NodeStatus::Fenced {
        MemberState::Fenced
    } else if n.status == NodeStatus::Refused || n.refused.is_some() {
        MemberState::Refused
    } else if n.status == NodeStatus::Rebuilding {
        MemberState::Rebuilding
    } else if n.needs_rebuild {
        MemberState::NeedsRebuild
    } else {
        match n.status {
            NodeStatus::Starting => MemberState::Starting,
            NodeStatus::Stopping => MemberState::Stopping,
            NodeStatus::Offline => MemberState::Stopped,
            NodeStatus::Online if is_primary => MemberState::Running,
            NodeStatus::Online if n.role == Role::Replica => match r.state {
                Some(ReplicaState::Streaming) if lagging => MemberState::CatchingUp,
                Some(ReplicaState::Streaming) => MemberState::Streaming,
                Some(ReplicaState::Connecting) => MemberState::CatchingUp,
                Some(ReplicaState::Stopped | ReplicaState::Error) => MemberState::NotReplicating,
                // Older agents publish no receiver state: judge by the lag alone.
                Some(ReplicaState::Unknown) | None if lagging => MemberState::CatchingUp,
                Some(ReplicaState::Unknown) | None if r.receiving == Some(true) => {
                    MemberState::Streaming
                }
                Some(ReplicaState::Unknown) | None => MemberState::Unknown,
            },
            NodeStatus::Online => MemberState::Running,
            _ => MemberState::Unknown,
        }
    };
    let sync = if is_primary {
        None
    } else {
        primary.and_then(|p| {
            let s = p.replication.streaming.iter().find(|s| s.name == n.id)?;
            match s.synchronous {
                Some(true) => Some(SyncState::Sync),
                Some(false) => Some(SyncState::Async),
                None if !p.replication.synchronous => Some(SyncState::Async),
                None => None,
            }
        })
    };
    let (timeline, lsn, gtid, position) = match engine {
        Some("postgres") => (Some(r.position.epoch), Some(r.position.lsn()), None, None),
        Some("mariadb") => (None, None, r.gtid.clone(), None),
        _ => (None, None, None, Some(r.position.to_string())),
    };
    let ineligible = match (&n.ineligible, n.eligible) {
        (_, true) => None,
        (Some(i), false) => Some(i.clone()),
        (None, false) => Some(Ineligible {
            code: cluster::wire::IneligibleCode::Unknown,
            reason: "its agent does not say why (an older agent)".into(),
        }),
    };
    let replica = !is_primary;
    MemberView {
        id: n.id.clone(),
        host: format!("{}:{}", n.ip_address, n.port),
        role: if is_primary { Role::Primary } else { n.role },
        state,
        live: true,
        sync,
        lag_bytes: r.lag_bytes.filter(|_| replica),
        lag_transactions: r.lag_transactions.filter(|_| replica),
        lag_seconds: r.lag_seconds.filter(|_| replica),
        timeline,
        lsn,
        gtid,
        position,
        eligible: n.eligible,
        ineligible,
        waiting: n.waiting.clone(),
        agent_url: n.agent_url.clone(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
