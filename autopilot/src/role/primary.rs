//! The primary side: keeping the key, losing it (self-fence, I1), getting it back (unfence),
//! planned handover (switchover, broken database) and graceful stop (I6).

use super::machine::Cx;
use super::state::Phase;
use super::types::{Action, ClusterView, EngineResult, Notice, Role};

/// A view while primary or self-fenced.
pub(super) fn view(cx: &mut Cx<'_>, view: &ClusterView) {
    let mine = view
        .primary
        .as_ref()
        .is_some_and(|p| p.node == cx.p.node_id);
    match cx.s.phase {
        Phase::Primary | Phase::CuttingOver { .. } if !mine => {
            cx.self_fence("primary key no longer ours")
        }
        Phase::Primary => {
            if let Some(sw) = &view.switchover {
                if sw.from != cx.p.node_id {
                    cx.emit(Action::ClearSwitchover); // not addressed to the current primary
                } else if !target_ok(cx, view) {
                    cx.emit(Action::ClearSwitchover); // no eligible target: reject, do not linger
                    cx.notice(Notice::SwitchoverRejected, "no eligible target".to_owned());
                } else if !view.maintenance {
                    hand_over(cx, "switchover requested");
                }
            }
            if cx.s.phase == Phase::Primary {
                set_replicas(cx, view);
            }
        }
        Phase::SelfFenced { fenced_at } => match &view.primary {
            Some(_) if mine => {
                // Unfence only with proof the lease outlived the fence: a keep-alive sent after
                // we fenced succeeded, recently. Then nobody else can have claimed the key.
                // And only once the fence answered: unfencing a database whose fence still
                // hangs would race it.
                let fresh = cx.s.lease_alive
                    && cx.s.fence_deadline.is_none()
                    && cx.s.lease_ok_sent_at >= fenced_at
                    && cx.now.saturating_sub(cx.s.lease_ok_sent_at) <= cx.p.fence_after();
                if fresh && !cx.s.stop_requested {
                    cx.unfence();
                    cx.s.phase = Phase::Primary;
                    let me = cx.me();
                    cx.announce(Role::Primary, Some(&me));
                }
            }
            Some(_) if view.primary_starting => {} // follow it once it is online
            Some(pk) => super::bootstrap::join(cx, pk.clone()),
            None if cx.s.lease_alive => {
                cx.s.phase = Phase::Replica { following: None };
                cx.announce(Role::Replica, None);
                super::failover::replica_view(cx, view);
            }
            None => {} // wait for the new lease
        },
        _ => {}
    }
}

/// Tell the engine who the other members are when that changed since we last told it.
pub(super) fn set_replicas(cx: &mut Cx<'_>, view: &ClusterView) {
    let mut members: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| n.id != cx.p.node_id)
        .map(|n| (n.id.clone(), n.address.clone()))
        .collect();
    members.sort();
    if cx.s.replicas_sent.as_ref() != Some(&members) {
        cx.s.replicas_sent = Some(members.clone());
        cx.emit(Action::SetReplicas { members });
    }
}

/// A named switchover target must be an eligible peer; otherwise the request is ignored.
fn target_ok(cx: &Cx<'_>, view: &ClusterView) -> bool {
    let Some(sw) = &view.switchover else {
        return false;
    };
    match &sw.to {
        Some(to) => view
            .nodes
            .iter()
            .any(|n| &n.id == to && n.eligible && n.id != cx.p.node_id),
        None => view
            .nodes
            .iter()
            .any(|n| n.eligible && n.id != cx.p.node_id),
    }
}

/// Step down on purpose: fence (stop writes, fix the final position), then release the key.
pub(super) fn hand_over(cx: &mut Cx<'_>, why: &str) {
    cx.emit(Action::FenceToHandOver);
    cx.notice(Notice::Handover, why.to_owned());
    cx.s.phase = Phase::HandingOver;
}

/// The database did not take the fence: kill it (its answer moves the hand-over, stop or
/// self-fence on like a fence would) and say so in the node key, so a candidate need not
/// reach it to fence it.
pub(super) fn kill_database(cx: &mut Cx<'_>) {
    cx.s.fence_deadline = None;
    cx.emit(Action::KillDatabase);
    cx.notice(
        Notice::DatabaseKilled,
        "the database did not take the fence; its process group was killed".to_owned(),
    );
    cx.s.database_killed = true;
}

/// Step down from a database that is not running (it exited; the restart policy brings it
/// back read-only): nothing can take writes there, release the key at once.
pub(super) fn hand_over_stopped(cx: &mut Cx<'_>, why: &str) {
    cx.notice(Notice::Handover, why.to_owned());
    release_key(cx);
}

/// Out of the next election for a while (the candidate catches up to our final position),
/// a replica from now on, and the key released.
fn release_key(cx: &mut Cx<'_>) {
    cx.s.ineligible_until = cx.now + 2 * cx.p.ttl;
    cx.s.phase = Phase::Replica { following: None };
    cx.announce(Role::Replica, None);
    cx.emit(Action::ReleasePrimary);
}

/// Step down from a database that does not answer at all: kill it, then release the key.
pub(super) fn hand_over_killing(cx: &mut Cx<'_>) {
    cx.notice(Notice::Handover, "database does not answer".to_owned());
    kill_database(cx);
    cx.s.phase = Phase::HandingOver;
}

/// Engine answers while primary, handing over, stopping or self-fenced.
pub(super) fn engine(cx: &mut Cx<'_>, result: EngineResult) {
    match (cx.s.phase.clone(), result) {
        // Only the fence's own answer moves the hand-over on (a late answer to something else
        // must not release the key while the database may still take writes).
        // The fence failed: the database may still take writes once it answers again (hung,
        // stopped). Kill it before the key goes; releasing first could let a successor
        // promote while the old server wakes up writable.
        (Phase::HandingOver | Phase::SelfFenced { .. } | Phase::Stopping, EngineResult::Failed) => {
            kill_database(cx)
        }
        (Phase::HandingOver, r @ (EngineResult::Fenced { .. } | EngineResult::Killed)) => {
            if let EngineResult::Fenced { position } = r {
                cx.s.position = position;
            }
            if cx.s.maintenance() {
                // Maintenance began meanwhile (I4): keep the key, fenced, until we re-learn.
                cx.s.phase = Phase::SelfFenced { fenced_at: cx.now };
                cx.emit(Action::ReadCluster);
                return;
            }
            release_key(cx);
        }
        (Phase::Stopping, EngineResult::Fenced { .. } | EngineResult::Killed) => {
            // No longer primary from here on (`/primary` answers 503 before the lease goes,
            // so it never overlaps with the successor's 200).
            if cx.s.role == Role::Primary {
                cx.announce(Role::Fenced, None);
            }
            cx.finish_stop()
        }
        (Phase::Stopping, _) => cx.emit(Action::Fence), // a late promote: fence again
        (Phase::SelfFenced { .. }, EngineResult::Fenced { position }) => {
            cx.s.position = position;
            cx.publish();
        }
        (Phase::SelfFenced { .. }, EngineResult::Killed) => cx.publish(),
        (Phase::Primary, EngineResult::Unfenced) => cx.s.unfencing = false,
        // The database did not take writes again (it hung meanwhile): try again once it is
        // healthy (`Cx::health`); a primary must not stay read-only.
        (Phase::Primary, EngineResult::Failed) if cx.s.unfencing => {
            cx.s.unfencing = false;
            cx.s.unfence_again = true;
        }
        _ => {}
    }
}
