//! The agent's in-place upgrade (`autopilot upgrade-self`): when this node may hand its
//! running database and its lease over to the agent's next image, and how that image
//! takes the primary role back without an election.
//!
//! The next image inherits the lease (the primary key is bound to it) and adopts the
//! running database. Nobody else can hold the key while the lease lives, and the database
//! never stopped being the primary, so the machine starts as the primary — no claim, no
//! promotion, no failover — with the fencing clock of the previous image: a lease not
//! renewed in time fences it, a lost lease or a key found not its own fences it, and a
//! database that restarted meanwhile is handed over, all as for any primary.

use super::machine::Cx;
use super::state::{Phase, RoleState};
use super::types::{Millis, Role};

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

/// At the start of an image that adopted a primary: it is the primary from the first
/// moment, on the lease it took over, with that lease's last keep-alive as the fencing
/// reference. So it fences itself exactly when the previous image would have, should the
/// lease not be renewed in time (a partition during the hand-over), and the first cluster
/// read confirms the key or fences (`primary::view`), like for any primary.
pub(super) fn resume_primary(cx: &mut Cx<'_>, sent_at: Millis) {
    cx.s.phase = Phase::Primary;
    cx.s.lease_alive = true;
    cx.s.lease_ok_sent_at = sent_at;
    cx.s.replicas_sent = None;
    let me = cx.me();
    cx.announce(Role::Primary, Some(&me));
}
