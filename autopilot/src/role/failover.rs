//! Failover (design §4, "Failover"): a replica notices the primary key is gone, finishes
//! applying, publishes its final position for this round, waits out the settle window and for
//! every eligible peer's final position, yields to any better peer, otherwise claims the key in
//! one transaction, fences the old primary remotely, catches up to its final position, runs
//! prePromote and promotes. Also the planned-switchover candidate side.
//!
//! Why wait for the peers' final positions, not just the settle window: a peer whose replay
//! takes longer than the window (or that saw the deletion late) still advertises the position
//! it had before, and a candidate comparing against that could win with less data than the
//! peer holds — losing writes the peer acknowledged (semi-sync, `ANY 1`). The wait is bounded
//! by `settle + ttl`: a peer that neither publishes nor loses its key by then is hung, and the
//! election goes on with what it last published.

use super::machine::Cx;
use super::state::{Phase, PromoteStep, Wait};
use super::types::{Action, ClaimReason, ClusterView, EngineResult, NodeInfo, Notice, Role};
use std::cmp::Reverse;

/// A replica's reaction to a view.
pub(super) fn replica_view(cx: &mut Cx<'_>, view: &ClusterView) {
    let Phase::Replica { following } = cx.s.phase.clone() else {
        return;
    };
    match &view.primary {
        Some(pk) if pk.node == cx.p.node_id => {
            // A key we hold but do not want (a release that failed while cut off) or our
            // former incarnation's: delete it iff bound to our lease, so others can elect.
            if !view.maintenance && view.linearizable {
                cx.emit(Action::ReleasePrimary);
            }
        }
        Some(_) if view.primary_starting => {} // follow it once it is online
        Some(pk) if following.as_deref() != Some(pk.node.as_str()) => {
            super::bootstrap::join(cx, pk.clone())
        }
        Some(_) => {}
        None => {
            if following.is_some() {
                cx.s.phase = Phase::Replica { following: None };
                cx.announce(Role::Replica, None);
            }
            if view.maintenance || !cx.s.eligible(cx.p, cx.now) {
                return; // I4, or this node does not compete (nofailover, unhealthy, lagging…)
            }
            // Finish applying what was received, publish, and let everybody settle.
            cx.emit(Action::CatchUp {
                term: view.history_rev,
            });
            cx.s.phase = Phase::Electing {
                since: cx.now,
                term: view.history_rev,
            };
            cx.s.next_poll = cx.now + cx.p.settle; // read fresh exactly when the window ends
            cx.emit(Action::WakeAt { at: cx.s.next_poll });
        }
    }
}

/// A view while electing: follow a new primary, stop in maintenance, or decide after settling.
pub(super) fn electing_view(cx: &mut Cx<'_>, since: u64, term: u64, view: &ClusterView) {
    if let Some(pk) = &view.primary {
        if pk.node != cx.p.node_id {
            // Somebody won this round. Follow it once it is online (`replica_view`).
            cx.s.phase = Phase::Replica { following: None };
            replica_view(cx, view);
        } else {
            // A key with our name that we do not use: release it like a replica would.
            cx.s.phase = Phase::Replica { following: None };
            replica_view(cx, view);
        }
        return;
    }
    if view.maintenance || !cx.s.eligible(cx.p, cx.now) {
        cx.s.phase = Phase::Replica { following: None };
        cx.publish();
        return;
    }
    if view.history_rev > term {
        // Somebody won and lost the key meanwhile: a new round, with its own final positions.
        cx.s.phase = Phase::Replica { following: None };
        replica_view(cx, view);
        return;
    }
    if cx.now < since + cx.p.settle {
        return;
    }
    let finals = positions_final(cx, term, view);
    if !view.linearizable {
        // Decide only on a fresh read; a watch update that completes the picture asks for one
        // now rather than at the next poll.
        if finals {
            cx.emit(Action::ReadCluster);
        }
        return;
    }
    if !finals && cx.now < since + cx.p.settle + cx.p.ttl {
        return; // re-read on the next poll or watch update
    }
    let planned = planned(view);
    if let Some(until) = cooldown_until(cx, view) {
        cx.emit(Action::WakeAt { at: until }); // I5
        return;
    }
    if planned
        && view.switchover.as_ref().and_then(|sw| sw.to.as_ref()) == Some(&cx.p.node_id)
        && let Some(old) = &view.history_last
        && let Some(fin) = view
            .nodes
            .iter()
            .find(|n| n.id == old.node)
            .map(|n| n.position)
        && fin > cx.s.position
    {
        // Named switchover target: fetch the fenced old primary's final position first.
        cx.emit(Action::CatchUpTo {
            target: fin,
            from: old.address.clone(),
        });
        return;
    }
    if best_candidate(cx, view).as_deref() != Some(cx.p.node_id.as_str()) {
        return; // yield: a better peer should win; re-evaluated on the next read
    }
    let reason = if planned && view.switchover.as_ref().is_some_and(|sw| sw.forced) {
        ClaimReason::ManualFailover
    } else if planned {
        ClaimReason::Switchover
    } else {
        ClaimReason::Failover
    };
    let old = view
        .history_last
        .clone()
        .or_else(|| cx.s.last_primary.clone());
    cx.emit(Action::ClaimPrimary {
        reason,
        previous: old.as_ref().map(|o| o.node.clone()),
        position: cx.s.position,
        at: cx.now,
        history_rev: Some(view.history_rev),
        write_initialized: false,
    });
    cx.s.phase = Phase::Claiming { reason, old };
    cx.s.claimed_over_history = Some(view.history_rev);
}

/// Whether the vanished primary is the one a request asked to step down (a switchover or a
/// forced failover), so the election is planned: no cooldown, the named target preferred.
fn planned(view: &ClusterView) -> bool {
    view.switchover.as_ref().is_some_and(|sw| {
        view.history_last
            .as_ref()
            .is_some_and(|h| h.node == sw.from)
    })
}

/// When the failover cooldown (I5) ends, while it holds this unplanned election.
fn cooldown_until(cx: &Cx<'_>, view: &ClusterView) -> Option<u64> {
    let until = view.last_failover_at? + cx.p.failover_cooldown;
    (!planned(view) && cx.now < until).then_some(until)
}

/// What an electing or primary-less replica waits for now (see [`Wait`]); `None` when it
/// waits for nothing this module decides.
pub(super) fn wait(cx: &Cx<'_>, view: &ClusterView) -> Option<Wait> {
    match &cx.s.phase {
        Phase::Electing { since, term } if view.primary.is_none() => {
            if let Some(until) = cooldown_until(cx, view) {
                return Some(Wait::Cooldown {
                    last: view.last_failover_at.unwrap_or_default(),
                    until,
                });
            }
            let settled = since + cx.p.settle;
            let until = settled + cx.p.ttl;
            (cx.now >= settled
                && cx.now < until
                && view.history_rev <= *term
                && !positions_final(cx, *term, view))
            .then_some(Wait::PeerPositions { until })
        }
        Phase::Replica { .. } => match &view.primary {
            None if view.maintenance => Some(Wait::Maintenance),
            Some(pk) if view.primary_starting && pk.node != cx.p.node_id => {
                Some(Wait::PrimaryOnline {
                    primary: pk.node.clone(),
                })
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether this node and every eligible peer published their final position for round `term`.
fn positions_final(cx: &Cx<'_>, term: u64, view: &ClusterView) -> bool {
    cx.s.caught_up_term == Some(term)
        && view
            .nodes
            .iter()
            .filter(|n| n.eligible && n.id != cx.p.node_id)
            .all(|n| n.caught_up_term == Some(term))
}

/// The node that should win: the most advanced eligible node; ties go to the switchover
/// target, then higher priority, then lowest id. This node counts with its live state.
pub(super) fn best_candidate(cx: &Cx<'_>, view: &ClusterView) -> Option<String> {
    let me = NodeInfo {
        id: cx.p.node_id.clone(),
        address: cx.p.address.clone(),
        role: cx.s.role,
        position: cx.s.position,
        priority: cx.p.priority,
        eligible: true,
        caught_up_term: cx.s.caught_up_term,
        database_killed: cx.s.database_killed,
    };
    let peers = view
        .nodes
        .iter()
        .filter(|n| n.eligible && n.id != cx.p.node_id);
    let target = view.switchover.as_ref().and_then(|s| s.to.clone());
    // Position first, always: a named target that is behind must catch up before it can win
    // (see `electing_view`), otherwise the switchover would lose data the others have.
    std::iter::once(&me)
        .chain(peers)
        .max_by_key(|n| {
            (
                n.position,
                target.as_ref() == Some(&n.id),
                n.priority,
                Reverse(n.id.clone()),
            )
        })
        .map(|n| n.id.clone())
}

/// Answer to a failover/switchover claim.
pub(super) fn claim_result(cx: &mut Cx<'_>, won: bool) {
    let Phase::Claiming { reason, old } = cx.s.phase.clone() else {
        return;
    };
    let from = old.as_ref().map(|o| o.node.clone());
    if !won {
        cx.s.claimed_over_history = None;
        cx.s.phase = Phase::Replica { following: None };
        cx.emit(Action::ReadCluster);
        return;
    }
    let killed = |old: &super::types::PrimaryKey| {
        cx.s.view.as_ref().is_some_and(|v| {
            v.nodes
                .iter()
                .any(|n| n.id == old.node && n.database_killed)
        })
    };
    match old {
        // Its agent killed its database (it did not answer): nothing to fence or catch up
        // to, and a connection attempt could hang as long as the server does.
        Some(old) if old.node != cx.p.node_id && killed(&old) => after_catch_up(cx, reason, from),
        Some(old) if old.node != cx.p.node_id => {
            // Its agent may be frozen or cut off while its database still runs: fence it over
            // its own connection before we accept writes (I1), and learn its final position.
            cx.emit(Action::FenceRemote {
                node: old.node.clone(),
                address: old.address.clone(),
            });
            cx.s.phase = Phase::Promoting {
                step: PromoteStep::FencingOld {
                    address: old.address,
                },
                reason,
                from,
            };
        }
        _ => after_catch_up(cx, reason, from),
    }
}

/// Engine answers while electing or promoting.
pub(super) fn engine(cx: &mut Cx<'_>, result: EngineResult) {
    match (cx.s.phase.clone(), result) {
        (Phase::Electing { since, term }, EngineResult::ElectionCaughtUp { term: t, position })
            if t == term =>
        {
            cx.s.position = cx.s.position.max(position);
            cx.s.caught_up_term = Some(term);
            cx.publish();
            if cx.now >= since + cx.p.settle {
                // Our own final position was the last thing missing, perhaps: decide on a
                // fresh read now rather than at the next poll (our own key's change does not
                // come back to us as a view).
                cx.emit(Action::ReadCluster);
            }
        }
        // A late answer to an earlier round's or the election's `CatchUp` (replay can take
        // longer than the settle window): a lower bound of our position, not the answer any
        // step here waits for, and no reason to abort it.
        (_, EngineResult::ElectionCaughtUp { position, .. }) => {
            cx.s.position = cx.s.position.max(position);
        }
        (
            Phase::Promoting {
                step: PromoteStep::FencingOld { address },
                reason,
                from,
            },
            r,
        ) => {
            let target = match r {
                // `None`: unreachable; its agent, if alive, fenced itself before its lease
                // expired, and a database nobody can reach takes no writes.
                EngineResult::RemoteFenced { final_position } => final_position,
                // It may still run and take writes (a frozen agent): promoting now could split
                // the brain. Give the key back and let the election run again later.
                _ => {
                    abort(cx, "could not fence the former primary");
                    return;
                }
            };
            match target {
                Some(t) if t > cx.s.position => {
                    cx.emit(Action::CatchUpTo {
                        target: t,
                        from: address,
                    });
                    cx.s.phase = Phase::Promoting {
                        step: PromoteStep::CatchingUp,
                        reason,
                        from,
                    };
                }
                _ => after_catch_up(cx, reason, from),
            }
        }
        (
            Phase::Promoting {
                step: PromoteStep::CatchingUp,
                reason,
                from,
            },
            r,
        ) => {
            if let EngineResult::CaughtUp { position } = r {
                cx.s.position = cx.s.position.max(position);
            }
            after_catch_up(cx, reason, from);
        }
        (
            Phase::Promoting {
                step: PromoteStep::Promoting,
                reason,
                from,
            },
            EngineResult::Promoted { position },
        ) => {
            cx.s.position = position;
            cx.s.database_killed = false;
            cx.s.phase = Phase::Primary;
            let me = cx.me();
            cx.announce(Role::Primary, Some(&me));
            let (kind, detail) = match reason {
                ClaimReason::Bootstrap => (Notice::Promoted, "the cluster's first primary"),
                ClaimReason::Failover => (Notice::Failover, "promoted after the primary was lost"),
                ClaimReason::Switchover => (Notice::Switchover, "promoted by a switchover"),
                ClaimReason::ManualFailover => (
                    Notice::Failover,
                    "promoted by an operator's forced failover",
                ),
            };
            cx.notice_with(kind, detail, from, Some(cx.p.node_id.clone()));
            if matches!(
                reason,
                ClaimReason::Switchover | ClaimReason::ManualFailover
            ) {
                cx.emit(Action::ClearSwitchover);
            }
            cx.publish();
            cx.s.replicas_sent = None;
            if let Some(view) = cx.s.view.clone() {
                super::primary::set_replicas(cx, &view);
            }
        }
        (
            Phase::Promoting {
                step: PromoteStep::Promoting,
                ..
            },
            _,
        ) => abort(cx, "promote failed"),
        _ => {}
    }
}

/// Old primary fenced and caught up (or nothing to do): prePromote, then promote.
fn after_catch_up(cx: &mut Cx<'_>, reason: ClaimReason, from: Option<String>) {
    if cx.s.stop_requested {
        cx.emit(Action::ReleasePrimary);
        cx.finish_stop();
    } else if cx.p.pre_promote && reason != ClaimReason::Bootstrap {
        cx.emit(Action::RunPrePromote);
        cx.s.phase = Phase::Promoting {
            step: PromoteStep::PrePromote,
            reason,
            from,
        };
    } else {
        promote(cx, reason, from);
    }
}

fn promote(cx: &mut Cx<'_>, reason: ClaimReason, from: Option<String>) {
    let promotion = cx.promotion(false);
    cx.emit(promotion);
    cx.s.phase = Phase::Promoting {
        step: PromoteStep::Promoting,
        reason,
        from,
    };
}

/// The `prePromote` handler finished.
pub(super) fn pre_promote_done(cx: &mut Cx<'_>, ok: bool) {
    let Phase::Promoting {
        step: PromoteStep::PrePromote,
        reason,
        from,
    } = cx.s.phase.clone()
    else {
        return;
    };
    if ok {
        promote(cx, reason, from);
    } else {
        abort(cx, "prePromote failed");
    }
}

/// Give the key back and stay out of elections for a while so another node can try.
fn abort(cx: &mut Cx<'_>, why: &str) {
    cx.emit(Action::Fence);
    cx.emit(Action::ReleasePrimary);
    cx.notice(Notice::PromotionAborted, why.to_owned());
    cx.s.ineligible_until = cx.now + 2 * cx.p.ttl;
    cx.s.phase = Phase::Replica { following: None };
    cx.announce(Role::Replica, None);
    cx.publish();
}
