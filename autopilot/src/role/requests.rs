//! Operators' requests to this node (`requests/<id>`, written by the coordinator for
//! `autopilotctl reinit | restart | reload`): carried out once each, when the node's phase
//! allows, and refused with the reason when it never will (on the primary: switch over first).
//! A request this node cannot act on yet (no online primary to clone from, an election in
//! progress) waits in the store, visible to `autopilotctl show`.

use super::machine::Cx;
use super::state::Phase;
use super::types::{
    Action, ClusterView, EngineResult, NodeAction, Notice, PrimaryKey, RestoreFailure, Role,
};

/// React to our request in `view`, if there is one we have not handled.
pub(super) fn view(cx: &mut Cx<'_>, view: &ClusterView) {
    let Some((_, action, rev)) = view
        .requests
        .iter()
        .find(|(id, _, _)| *id == cx.p.node_id)
        .cloned()
    else {
        return;
    };
    if cx.s.requests_handled >= rev {
        return; // carried out; the delete is on its way
    }
    let online_primary = view
        .primary
        .as_ref()
        .filter(|pk| !view.primary_starting && pk.node != cx.p.node_id)
        .cloned();
    let replica = matches!(
        cx.s.phase,
        Phase::Replica { .. } | Phase::NeedsRebuild | Phase::Rejoining { .. }
    );
    let primary = matches!(
        cx.s.phase,
        Phase::Primary | Phase::SelfFenced { .. } | Phase::CuttingOver { .. }
    ) || matches!(cx.s.phase, Phase::Promoting { .. } | Phase::Claiming { .. });
    let runs = replica || matches!(cx.s.phase, Phase::Primary | Phase::SelfFenced { .. });
    let refuse = |cx: &mut Cx<'_>, why: String| {
        cx.s.requests_handled = rev;
        cx.emit(Action::ClearRequest);
        cx.notice(Notice::RequestFailed, why);
    };
    match action {
        NodeAction::Reinit | NodeAction::Restart if primary => refuse(
            cx,
            format!(
                "{} refused: this node is the primary; switch over first (autopilotctl \
                 switchover), then ask again",
                action.as_str()
            ),
        ),
        NodeAction::Reinit if replica => {
            let Some(pk) = online_primary else {
                return; // wait for an online primary to clone from
            };
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            cx.notice(
                Notice::RequestDone,
                format!(
                    "reinit: rebuilding this replica from primary {} at an operator's request \
                     (the old data directory is moved aside)",
                    pk.node
                ),
            );
            rebuild_from(cx, pk);
        }
        NodeAction::Restore if !primary => refuse(
            cx,
            "restore refused: an in-place restore runs on the primary; ask for it with \
             `autopilotctl restore CLUSTER`, which addresses the primary"
                .to_owned(),
        ),
        NodeAction::Restore if view.standby_of.is_some() => refuse(
            cx,
            "restore refused: the cluster replicates from an external source (a live \
             migration); cut over first (autopilotctl migrate cutover), then restore"
                .to_owned(),
        ),
        NodeAction::Restore if cx.s.phase != Phase::Primary => {} // not now: it waits
        NodeAction::Restore if !view.maintenance => refuse(
            cx,
            "restore refused: the cluster is not in maintenance (`autopilotctl restore` turns \
             it on, so that no failover happens while the primary restores)"
                .to_owned(),
        ),
        NodeAction::Restore => {
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            let Some(point) = view
                .restore_points
                .iter()
                .find(|(id, _)| *id == cx.p.node_id)
                .map(|(_, p)| p.clone())
            else {
                cx.notice(
                    Notice::RequestFailed,
                    "restore refused: the request names no point to restore to (`restore_to`)"
                        .to_owned(),
                );
                return;
            };
            cx.notice(
                Notice::NewTerm,
                format!(
                    "restore: restoring the cluster in place to {point} at an operator's request; \
                     the primary serves until the restored data is ready, then it is swapped in \
                     (the current data directory is kept aside)"
                ),
            );
            cx.emit(Action::RestoreInPlace { point });
            cx.s.phase = Phase::Restoring;
            cx.publish();
        }
        NodeAction::Cutover if !primary => refuse(
            cx,
            "cutover refused: it runs on the standby leader (the primary key's holder); ask \
             with `autopilotctl migrate cutover CLUSTER`, which addresses it"
                .to_owned(),
        ),
        NodeAction::Cutover if view.standby_of.is_none() => refuse(
            cx,
            "cutover refused: the cluster does not replicate from an external source \
             (`initialized` names none): there is nothing to cut over"
                .to_owned(),
        ),
        NodeAction::Cutover if cx.s.phase != Phase::Primary => {} // not now: it waits
        NodeAction::Cutover => {
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            let source = view.standby_of.clone().unwrap_or_default();
            cx.notice(
                Notice::Cutover,
                format!(
                    "cutover: making the source {source} refuse writes; this standby leader is \
                     promoted once it has everything the source committed"
                ),
            );
            cx.emit(Action::StopSource);
            cx.s.phase = Phase::CuttingOver { since: cx.now };
            cx.publish();
        }
        NodeAction::Restart if replica => {
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            cx.emit(Action::RestartDatabase);
            cx.s.phase = Phase::Restarting;
            cx.publish();
        }
        NodeAction::Upgrade if primary => refuse(
            cx,
            "upgrade refused: this node is the primary; a rolling upgrade (autopilotctl upgrade) \
             switches over to an upgraded replica first"
                .to_owned(),
        ),
        NodeAction::Upgrade if !cx.p.upgrade_hook => refuse(
            cx,
            "upgrade refused: this node has no upgrade hook (handlers.upgrade in its \
             configuration)"
                .to_owned(),
        ),
        NodeAction::Upgrade if cx.s.phase == Phase::NeedsRebuild => refuse(
            cx,
            "upgrade refused: this node's data must be rebuilt first (autopilotctl reinit)"
                .to_owned(),
        ),
        NodeAction::Upgrade if matches!(cx.s.phase, Phase::Replica { following: Some(_) }) => {
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            match super::upgrade::order(cx, view).cloned() {
                Some(order) => super::upgrade::begin(cx, &order),
                None => cx.notice(
                    Notice::RequestFailed,
                    "upgrade refused: the request carries no terms (upgrade.deadline_seconds)"
                        .to_owned(),
                ),
            }
        }
        NodeAction::Reload if runs => {
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            cx.emit(Action::ReloadDatabase);
        }
        NodeAction::Unknown => refuse(
            cx,
            "a request this agent does not know (written by a newer coordinator?) was ignored"
                .to_owned(),
        ),
        _ => {} // not now (starting, cloning, electing): it waits in the store
    }
}

/// Replace the local data with a clone of `pk` (the old data directory is moved aside by the
/// engine); no data, no marker and no candidacy until the clone is done.
fn rebuild_from(cx: &mut Cx<'_>, pk: PrimaryKey) {
    cx.s.has_data = false;
    cx.s.stalled = false;
    cx.emit(Action::ClearMarker);
    cx.emit(Action::CloneFrom {
        primary: pk.clone(),
    });
    cx.s.phase = Phase::Cloning { source: Some(pk) };
    cx.announce(Role::Unknown, None);
    cx.publish();
}

/// Data of another term than the cluster's (an in-place restore began a newer one) is never
/// promoted (see [`super::state::RoleState::ineligible`]) and is rebuilt from the new term's
/// primary once that serves. Whether the view was handled here.
pub(super) fn old_term(cx: &mut Cx<'_>, view: &ClusterView) -> bool {
    if !cx.s.old_term() || cx.s.role == Role::Primary {
        return false;
    }
    if !matches!(
        cx.s.phase,
        Phase::Replica { .. } | Phase::Rejoining { .. } | Phase::NeedsRebuild
    ) {
        return false;
    }
    let Some(pk) = view
        .primary
        .as_ref()
        .filter(|pk| !view.primary_starting && pk.node != cx.p.node_id)
        .cloned()
    else {
        return false; // no primary of the new term serves yet: take no part, wait
    };
    let (ours, cluster) = (cx.s.data_term, view.term);
    cx.notice(
        Notice::NewTerm,
        format!(
            "this node's data belongs to term {ours} of the cluster's identity; an in-place \
             restore began term {cluster}: rebuilding from primary {} (the old data directory \
             is moved aside)",
            pk.node
        ),
    );
    rebuild_from(cx, pk);
    true
}

/// Engine answers while the primary restores the cluster in place.
pub(super) fn restored(cx: &mut Cx<'_>, result: EngineResult) {
    match result {
        EngineResult::RestoredInPlace(Ok(position)) => {
            // The restored data runs read-only; make it the primary's.
            cx.s.position = position;
            cx.emit(Action::Promote);
        }
        EngineResult::Promoted { position } => {
            let term = cx.s.cluster_term().max(1) + 1;
            cx.s.position = position;
            cx.s.data_term = term;
            cx.s.database_killed = false;
            cx.emit(Action::WriteMarker { term });
            let reason = format!("restored in place on {}", cx.p.node_id);
            cx.emit(Action::BeginTerm {
                term,
                reason: reason.clone(),
            });
            cx.s.phase = Phase::Primary;
            let me = cx.me();
            cx.announce(Role::Primary, Some(&me));
            // `request_done` once the term is recorded (`TermBegun`).
            cx.s.replicas_sent = None;
            if let Some(view) = cx.s.view.clone() {
                super::primary::set_replicas(cx, &view);
            }
            cx.publish();
        }
        EngineResult::RestoredInPlace(Err(RestoreFailure { reason, swapped })) => {
            let what = if swapped {
                "the data directory was already replaced (the previous one is kept aside, \
                 named in the agent's log): look at the agent's log, then restore again or \
                 move the previous data back"
            } else {
                "nothing was changed: the primary serves its data as before"
            };
            cx.notice(
                Notice::RequestFailed,
                format!("restore failed: {reason}; {what}. The cluster stays in maintenance"),
            );
            cx.s.phase = Phase::Primary;
            cx.publish();
        }
        EngineResult::Failed => {
            cx.notice(
                Notice::RequestFailed,
                "restore: the restored data could not be made writable; the cluster stays in \
                 maintenance"
                    .to_owned(),
            );
            cx.s.phase = Phase::Primary;
            cx.s.unfence_again = true;
            cx.publish();
        }
        _ => {}
    }
}

/// Engine answers while the standby leader cuts a live migration over.
pub(super) fn cut_over(cx: &mut Cx<'_>, result: EngineResult) {
    let Phase::CuttingOver { since } = cx.s.phase else {
        return;
    };
    let back = |cx: &mut Cx<'_>, why: String| {
        cx.notice(Notice::RequestFailed, why);
        cx.s.phase = Phase::Primary;
        cx.publish();
    };
    match result {
        EngineResult::SourceStopped(Ok(position)) => {
            cx.s.position = position;
            cx.emit(Action::EndMigration);
        }
        EngineResult::SourceStopped(Err(e)) => back(
            cx,
            format!(
                "cutover failed: {e}. This node stays the standby leader and replicates from \
                 the source; if the source was made read-only, its writers wait: ask again, or \
                 make the source writable again (SET GLOBAL read_only = OFF; or ALTER SYSTEM \
                 RESET default_transaction_read_only and pg_reload_conf())"
            ),
        ),
        EngineResult::MigrationEnded(Ok(())) => cx.emit(Action::Promote),
        EngineResult::MigrationEnded(Err(e)) => back(
            cx,
            format!(
                "cutover failed: the source refuses writes and this node has everything it \
                 committed, but the migration could not be ended in `initialized` ({e}): ask \
                 again"
            ),
        ),
        EngineResult::Promoted { position } => {
            cx.s.position = position;
            cx.s.database_killed = false;
            cx.s.phase = Phase::Primary;
            let outage = cx.now.saturating_sub(since);
            cx.notice(
                Notice::RequestDone,
                format!(
                    "cutover: this node is the primary and takes writes; the source refused \
                     writes for {}.{:03} s before (the write outage)",
                    outage / 1000,
                    outage % 1000
                ),
            );
            cx.s.replicas_sent = None;
            if let Some(view) = cx.s.view.clone() {
                super::primary::set_replicas(cx, &view);
            }
            cx.publish();
        }
        EngineResult::Failed => {
            // The migration ended (nobody leads the source any more): another node is
            // promoted plainly.
            cx.notice(
                Notice::RequestFailed,
                "cutover: the migration ended but this node could not be promoted; it hands \
                 over, and the next primary is promoted as after any failover"
                    .to_owned(),
            );
            cx.s.phase = Phase::Primary;
            super::primary::hand_over(cx, "the promotion after the cutover failed");
        }
        _ => {}
    }
}

/// The answer to `RestartDatabase`, `ReloadDatabase` or `BeginTerm`; `false` when `result` is
/// none of them.
pub(super) fn engine(cx: &mut Cx<'_>, result: &EngineResult) -> bool {
    match result {
        EngineResult::TermBegun { term, result } => {
            match result {
                Ok(()) => cx.notice(
                    Notice::RequestDone,
                    format!(
                        "restore: the restored data serves as the primary of term {term} of the \
                         cluster's identity; the other nodes rebuild from it"
                    ),
                ),
                Err(e) => cx.notice(
                    Notice::RequestFailed,
                    format!(
                        "restore: the restored data serves here, but term {term} could not be \
                         recorded in `initialized` ({e}); the cluster stays in maintenance and \
                         this node's data is of a term the cluster does not know: restore again"
                    ),
                ),
            }
            true
        }
        EngineResult::Reloaded(r) => {
            match r {
                Ok(()) => cx.notice(
                    Notice::RequestDone,
                    "reload: the database re-read its configuration".to_owned(),
                ),
                Err(e) => cx.notice(Notice::RequestFailed, format!("reload failed: {e}")),
            }
            true
        }
        EngineResult::Restarted(r) => {
            match r {
                Ok(()) => cx.notice(
                    Notice::RequestDone,
                    "restart: the database was stopped and started again".to_owned(),
                ),
                Err(e) => cx.notice(Notice::RequestFailed, format!("restart failed: {e}")),
            }
            if cx.s.phase == Phase::Restarting {
                // Follow the primary again, as after any start.
                cx.s.phase = Phase::Replica { following: None };
                cx.s.announced_primary = None;
                if let Some(view) = cx.s.view.clone() {
                    super::failover::replica_view(cx, &view);
                }
                cx.publish();
            }
            true
        }
        _ => false,
    }
}
