//! The node status the health actor publishes and `/health` serves, and the role the role
//! actor publishes for `/primary` and `/replica`.

use std::time::Instant;

use serde::Serialize;

use crate::role::Role;

/// The role as the role actor publishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedRole {
    /// What the role logic last announced.
    pub role: Role,
    /// Until when the node's lease is provably alive: the send time of the last
    /// acknowledged keep-alive plus the fencing margin (the moment the role logic fences a
    /// primary that heard nothing since). Past it a primary answers as fenced, before the
    /// role logic has run at all: an agent woken from SIGSTOP serves its first requests
    /// before it processed the lease it lost meanwhile.
    pub lease_until: Option<Instant>,
    /// On a replica: whether the primary's commits wait for it, as the `primary` document
    /// lists it (`None`: not a replica, or not listed).
    pub synchronous: Option<bool>,
}

impl PublishedRole {
    /// Nothing known yet.
    pub fn unknown() -> Self {
        Self {
            role: Role::Unknown,
            lease_until: None,
            synchronous: None,
        }
    }

    /// The role to answer with at `now`: a primary whose lease is not provably alive is
    /// fenced as far as anyone routing writes is concerned.
    pub fn at(&self, now: Instant) -> Role {
        match self.role {
            Role::Primary if self.lease_until.is_none_or(|until| now >= until) => Role::Fenced,
            role => role,
        }
    }
}

/// Where the agent is in its life; published on `/health` and as `autopilot_lifecycle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Preparing the engine and running preStart.
    Starting,
    /// The main process runs (or is being restarted by policy).
    Running,
    /// The stop order (preStop → stop main → postStop) is under way.
    Stopping,
}

impl Lifecycle {
    /// Numeric value of the `autopilot_lifecycle` gauge (documented in docs/operations.md).
    pub fn as_gauge(self) -> f64 {
        match self {
            Lifecycle::Starting => 0.0,
            Lifecycle::Running => 1.0,
            Lifecycle::Stopping => 2.0,
        }
    }
}

/// What `/health` reports; a fresh value is published on every change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeStatus {
    /// The node can serve: main process up, engine probe and health handler passing.
    pub healthy: bool,
    /// Where the agent is in its life.
    pub lifecycle: Lifecycle,
    /// PID of the main process while it runs.
    pub main_pid: Option<u32>,
    /// Why the node is not healthy; `None` when it is.
    pub reason: Option<String>,
    /// What the last engine probe saw of replication.
    pub replication: engines::Replication,
    /// What the last healthy engine probe read of the server (version, connections,
    /// storage, replication details); empty while none has answered.
    pub server: engines::ServerStatus,
}

impl NodeStatus {
    /// The status before anything has started.
    pub fn starting() -> Self {
        Self {
            healthy: false,
            lifecycle: Lifecycle::Starting,
            main_pid: None,
            reason: Some("starting".into()),
            replication: engines::Replication::Unknown,
            server: engines::ServerStatus::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_primary_without_a_live_lease_answers_as_fenced() {
        let t0 = Instant::now();
        let mut p = PublishedRole {
            role: Role::Primary,
            lease_until: Some(t0 + Duration::from_secs(1)),
            synchronous: None,
        };
        assert_eq!(p.at(t0), Role::Primary);
        assert_eq!(p.at(t0 + Duration::from_secs(1)), Role::Fenced);
        p.lease_until = None;
        assert_eq!(p.at(t0), Role::Fenced);
        p.role = Role::Replica;
        assert_eq!(p.at(t0 + Duration::from_secs(9)), Role::Replica);
    }
}
