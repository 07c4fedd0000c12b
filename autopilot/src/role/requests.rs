//! Operators' requests to this node (`requests/<id>`, written by the coordinator for
//! `autopilotctl reinit | restart | reload`): carried out once each, when the node's phase
//! allows, and refused with the reason when it never will (on the primary: switch over first).
//! A request this node cannot act on yet (no online primary to clone from, an election in
//! progress) waits in the store, visible to `autopilotctl show`.

use super::machine::Cx;
use super::state::Phase;
use super::types::{Action, ClusterView, EngineResult, NodeAction, Notice, Role};

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
    let primary = matches!(cx.s.phase, Phase::Primary | Phase::SelfFenced { .. })
        || matches!(cx.s.phase, Phase::Promoting { .. } | Phase::Claiming { .. });
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
        NodeAction::Restart if replica => {
            cx.s.requests_handled = rev;
            cx.emit(Action::ClearRequest);
            cx.emit(Action::RestartDatabase);
            cx.s.phase = Phase::Restarting;
            cx.publish();
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

/// The answer to `RestartDatabase` or `ReloadDatabase`; `false` when `result` is neither.
pub(super) fn engine(cx: &mut Cx<'_>, result: &EngineResult) -> bool {
    match result {
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
