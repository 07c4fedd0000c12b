//! Bootstrap (design §4 steps 1–4) and joining a primary: discover, lock, re-check,
//! initialise, claim; clone, restore, follow, rejoin. I3 lives here: a node never sends
//! `Initialize` unless it holds the lock and a read *under the lock* showed neither
//! `initialized` nor `primary`, and the claim that records `initialized` is one transaction.

use super::machine::Cx;
use super::state::{BootStep, Phase};
use super::types::{Action, ClaimReason, ClusterView, EngineResult, Notice, PrimaryKey, Role};

/// Decide how to start from a view (Discovering, WaitingForData, or after an aborted step).
pub(super) fn discover(cx: &mut Cx<'_>, view: &ClusterView) {
    match &view.primary {
        Some(pk) if pk.node == cx.p.node_id => {
            // Our previous incarnation's key, bound to a lease we no longer hold: wait until
            // it expires (we cannot prove it is ours), then take part normally.
            cx.s.phase = Phase::Discovering;
        }
        Some(_) if view.primary_starting => cx.s.phase = Phase::Discovering, // wait until online
        Some(pk) => join(cx, pk.clone()),
        None if !view.initialized => {
            if view.maintenance {
                cx.s.phase = Phase::Discovering; // no automatic role change (I4)
            } else {
                cx.emit(Action::AcquireLock);
                cx.s.phase = Phase::Bootstrap(BootStep::Locking);
            }
        }
        None if cx.s.has_data => {
            // An initialised cluster without a primary, and we have data: take part in the
            // election like any replica (design §4 step 4, second half).
            cx.s.phase = Phase::Replica { following: None };
            cx.announce(Role::Replica, None);
            super::failover::replica_view(cx, view);
        }
        None if cx.p.restore_from_backup => {
            cx.emit(Action::RestoreFromBackup);
            cx.s.phase = Phase::Cloning { source: None };
        }
        None => {
            // I3: never initialise an initialised cluster; wait for a node with data.
            if cx.s.phase != Phase::WaitingForData {
                cx.notice(
                    Notice::WaitingForData,
                    "cluster initialised, no primary, no local data".to_owned(),
                );
            }
            cx.s.phase = Phase::WaitingForData;
        }
    }
}

/// Start following `pk`: clone first if we have nothing, else let the engine check for
/// errant data and rewind if it must.
pub(super) fn join(cx: &mut Cx<'_>, pk: PrimaryKey) {
    // A new source: its receiver gets `stall_after` to connect, from now.
    cx.s.not_receiving_since = None;
    if cx.s.has_data {
        cx.emit(Action::Follow {
            primary: pk.clone(),
        });
        cx.s.phase = Phase::Rejoining { target: pk };
    } else {
        cx.emit(Action::CloneFrom {
            primary: pk.clone(),
        });
        cx.s.phase = Phase::Cloning { source: Some(pk) };
    }
}

/// Stop here until an operator rebuilds the node; say so in the node key and an event.
fn needs_rebuild(cx: &mut Cx<'_>, detail: String) {
    cx.s.phase = Phase::NeedsRebuild;
    cx.notice(Notice::NeedsRebuild, detail);
    cx.announce(Role::Unknown, None);
    cx.publish();
}

/// Answer to `AcquireLock`.
pub(super) fn lock_result(cx: &mut Cx<'_>, acquired: bool) {
    if cx.s.phase != Phase::Bootstrap(BootStep::Locking) {
        if acquired {
            cx.emit(Action::ReleaseLock); // a stale answer; do not keep what we do not use
        }
        return;
    }
    if acquired {
        cx.emit(Action::ReadCluster);
        cx.s.phase = Phase::Bootstrap(BootStep::Rechecking);
    } else {
        cx.s.phase = Phase::Discovering; // someone else bootstraps; watch and re-read
    }
}

/// A view while bootstrapping: only the re-check under the lock acts on it.
pub(super) fn recheck(cx: &mut Cx<'_>, step: BootStep, view: &ClusterView) {
    if step != BootStep::Rechecking {
        return;
    }
    if !view.initialized && view.primary.is_none() && !view.maintenance {
        cx.emit(Action::Initialize);
        cx.s.phase = Phase::Bootstrap(BootStep::Initializing);
    } else {
        cx.emit(Action::ReleaseLock);
        cx.s.phase = Phase::Discovering;
        discover(cx, view);
    }
}

/// Answer to the bootstrap claim.
pub(super) fn claim_result(cx: &mut Cx<'_>, won: bool) {
    cx.emit(Action::ReleaseLock);
    if won {
        // A new cluster: the first term of its identity.
        cx.s.data_term = 1;
        cx.emit(Action::WriteMarker { term: 1 });
        let promotion = cx.promotion(true);
        cx.emit(promotion);
        cx.s.phase = Phase::Promoting {
            step: super::state::PromoteStep::Promoting,
            reason: ClaimReason::Bootstrap,
            from: None,
        };
    } else {
        cx.emit(Action::ReadCluster);
        cx.s.phase = Phase::Discovering;
    }
}

/// Engine answers during bootstrap, cloning and rejoining.
pub(super) fn engine(cx: &mut Cx<'_>, result: EngineResult) {
    match (cx.s.phase.clone(), result) {
        (Phase::Bootstrap(BootStep::Initializing), EngineResult::Initialized { position }) => {
            cx.s.has_data = true;
            // This data becomes the cluster's: the identity recorded now is its own.
            cx.s.identity = None;
            cx.s.position = position;
            cx.emit(Action::ClaimPrimary {
                reason: ClaimReason::Bootstrap,
                previous: None,
                position,
                at: cx.now,
                history_rev: None,
                write_initialized: true,
            });
            cx.s.phase = Phase::Bootstrap(BootStep::Claiming);
        }
        (Phase::Cloning { source }, EngineResult::Cloned { position }) => {
            cx.s.has_data = true;
            // A copy of the cluster's data: whatever identity the replaced data had is gone.
            cx.s.identity = None;
            cx.s.position = position;
            // A copy of the cluster's data as it was when the copy began.
            cx.s.data_term = cx.s.clone_term.max(1);
            cx.emit(Action::WriteMarker {
                term: cx.s.data_term,
            });
            let following =
                cx.s.view
                    .as_ref()
                    .filter(|v| !v.primary_starting)
                    .and_then(|v| v.primary.clone());
            // The clone ends replicating from its source. The view may name a newer primary
            // (a failover during the clone): follow that one then. A view without a primary
            // may be stale, so it starts no election here (the next view decides).
            let still_source = following.is_some() && following == source;
            cx.s.phase = Phase::Replica {
                following: following
                    .as_ref()
                    .filter(|_| still_source)
                    .map(|pk| pk.node.clone()),
            };
            cx.announce(Role::Replica, following.as_ref());
            cx.publish();
            if still_source && let Some(pk) = &following {
                cx.notice_with(Notice::Joined, "cloned", None, Some(pk.node.clone()));
            }
            if let Some(pk) = following.filter(|_| !still_source) {
                join(cx, pk);
            }
        }
        (Phase::Rejoining { target }, EngineResult::Following { position }) => {
            cx.s.position = position;
            cx.s.phase = Phase::Replica {
                following: Some(target.node.clone()),
            };
            cx.announce(Role::Replica, Some(&target));
            cx.publish();
            cx.notice_with(Notice::Joined, "following", None, Some(target.node.clone()));
            // Views were not acted on while the engine worked: the primary may have vanished
            // or changed meanwhile. Act on the latest at once (a no-op when it is `target`).
            if let Some(view) = cx.s.view.clone() {
                super::failover::replica_view(cx, &view);
            }
        }
        (Phase::Rejoining { target }, EngineResult::NeedsRebuild) if cx.p.auto_rebuild => {
            // The operator allowed it: replace the diverged data with a fresh clone. Until the
            // clone is done this node has no data (not eligible, and no marker on disk).
            cx.notice(
                Notice::NeedsRebuild,
                format!(
                    "local data diverged from primary {}; rebuilding from it (auto_rebuild)",
                    target.node
                ),
            );
            cx.s.has_data = false;
            cx.emit(Action::ClearMarker);
            cx.emit(Action::CloneFrom {
                primary: target.clone(),
            });
            cx.s.phase = Phase::Cloning {
                source: Some(target),
            };
            cx.announce(Role::Unknown, None);
            cx.publish();
        }
        (Phase::Rejoining { target }, EngineResult::NeedsRebuild) => {
            // A former primary with errant data never rejoins silently (design §4 step 5).
            needs_rebuild(
                cx,
                format!("local data diverged from primary {}", target.node),
            );
        }
        (Phase::Cloning { .. }, EngineResult::NeedsRebuild) => {
            needs_rebuild(cx, "the clone does not match the primary".to_owned());
        }
        (Phase::Bootstrap(BootStep::Initializing), EngineResult::Failed) => {
            cx.emit(Action::ReleaseLock);
            cx.s.phase = Phase::Discovering;
        }
        (Phase::Cloning { .. } | Phase::Rejoining { .. }, EngineResult::Failed) => {
            cx.s.phase = Phase::Discovering;
        }
        _ => {} // stale answers from an abandoned step
    }
}
