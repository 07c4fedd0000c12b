//! The agent's in-place upgrade (`autopilot upgrade-self`): when this node may hand its
//! running database and its lease over to the agent's next image, and how that image
//! takes the primary role back without an election.
//!
//! The next image inherits the lease (the primary key is bound to it) and adopts the
//! running database. Nobody else can hold the key while the lease lives, and the database
//! never stopped being the primary, so the machine resumes `Primary` at once when the key is
//! still its own under that lease — no claim, no promotion, no failover. A lost lease (the
//! hand-over took longer than the TTL) clears the adoption: the node then starts like any
//! restarted agent.

use super::machine::Cx;
use super::state::{Phase, RoleState};
use super::types::{ClusterView, Role};

/// The role the agent's next image resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverRole {
    /// Holds the primary key (bound to the handed-over lease) and takes writes.
    Primary,
    /// Follows the primary; the next image follows it again like a restarted agent.
    Replica,
}

/// Whether the agent may re-execute now, and as what; why not otherwise. Only in a steady
/// role: never half-way through a step whose answer the next image would not get.
pub fn ready(s: &RoleState) -> Result<HandoverRole, String> {
    let busy = |what: &str| Err(format!("the node is {what}; try again once it is done"));
    if s.stop_requested {
        return busy("stopping");
    }
    if !s.lease_alive || s.fence_deadline.is_some() {
        return Err("the node holds no live lease; try again once it does".to_owned());
    }
    if s.upgrade.is_some() {
        return busy("upgrading its database");
    }
    if s.unfencing {
        return busy("taking writes again after a fence");
    }
    match &s.phase {
        Phase::Primary if s.role == Role::Primary => Ok(HandoverRole::Primary),
        Phase::Replica { .. } => Ok(HandoverRole::Replica),
        other => Err(format!(
            "the node is not in a steady role ({other:?}); try again once it is the primary or a replica"
        )),
    }
}

/// A view after the start of an image that adopted a primary: the key is ours under the
/// inherited lease, so the database goes on as the primary. `false` when that does not
/// hold (the caller then discovers as usual).
pub(super) fn resume_primary(cx: &mut Cx<'_>, view: &ClusterView) -> bool {
    let mine = view
        .primary
        .as_ref()
        .is_some_and(|p| p.node == cx.p.node_id);
    if !(cx.s.adopted && mine && cx.s.lease_alive && cx.s.has_data) {
        return false;
    }
    cx.s.adopted = false;
    cx.s.phase = Phase::Primary;
    cx.s.healthy_as_primary = cx.s.healthy;
    let me = cx.me();
    cx.announce(Role::Primary, Some(&me));
    cx.publish();
    cx.s.replicas_sent = None;
    super::primary::set_replicas(cx, view);
    true
}
