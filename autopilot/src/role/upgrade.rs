//! An `upgrade` request on a replica (a rolling upgrade's step, written by the coordinator):
//! the database is stopped, the node's upgrade hook runs (with the order's version) and the
//! database starts again (`UpgradeDatabase` → `Upgraded`). From then on the node follows the
//! primary as any replica, but stays out of the failover candidates until it has proven
//! itself within the order's deadline: a healthy probe after the start, receiving from the
//! primary, and at or past the position the primary had published when it started. When a
//! step fails or the deadline passes, the rollback hook runs the same way
//! (`RollbackDatabase` → `RolledBack`) and the node must prove itself again; the outcome is
//! one event: `upgraded`, `upgrade_rolled_back` or `upgrade_failed`.

use cluster::wire::UpgradeOrder;

use super::machine::Cx;
use super::state::{Phase, UpgradeCheck};
use super::types::{Action, ClusterView, EngineResult, Notice};

/// Take the request: `Upgrading` until the engine answers.
pub(super) fn begin(cx: &mut Cx<'_>, order: &UpgradeOrder) {
    let deadline = order.deadline_seconds.saturating_mul(1000);
    let version = order
        .version
        .as_deref()
        .map(|v| format!(" (version {v})"))
        .unwrap_or_default();
    let fallback = if cx.p.rollback_hook {
        "else the rollback hook runs"
    } else {
        "else it is reported failed (no rollback hook: handlers.rollback)"
    };
    cx.notice(
        Notice::Upgrading,
        format!(
            "upgrade: stopping the database and running the upgrade hook{version}; once it runs \
             again it must be healthy and caught up with the primary within {} s, {fallback}",
            order.deadline_seconds
        ),
    );
    cx.s.upgrade = Some(UpgradeCheck {
        since: cx.now,
        deadline,
        until: None,
        target: None,
        failed: None,
        seen_healthy: false,
    });
    cx.emit(Action::UpgradeDatabase {
        version: order.version.clone(),
    });
    cx.s.phase = Phase::Upgrading;
    cx.publish();
}

/// The engine's answer to `UpgradeDatabase` or `RollbackDatabase`; `false` for other
/// results.
pub(super) fn engine(cx: &mut Cx<'_>, result: &EngineResult) -> bool {
    match result {
        EngineResult::Upgraded(Ok(())) | EngineResult::RolledBack(Ok(())) => {
            started(cx);
            true
        }
        EngineResult::Upgraded(Err(e)) => {
            fail(cx, format!("the upgrade failed: {e}"));
            true
        }
        EngineResult::RolledBack(Err(e)) => {
            let why =
                cx.s.upgrade
                    .as_ref()
                    .and_then(|u| u.failed.clone())
                    .unwrap_or_default();
            give_up(cx, format!("{why}; the rollback failed too: {e}"));
            true
        }
        _ => false,
    }
}

/// The database runs again: follow the primary, and start the deadline.
fn started(cx: &mut Cx<'_>) {
    if let Some(u) = cx.s.upgrade.as_mut() {
        u.until = Some(cx.now + u.deadline);
        u.target = cx.s.last_primary_position;
        u.seen_healthy = false;
    }
    back_to_replica(cx);
}

/// Follow the primary again, as after any start.
fn back_to_replica(cx: &mut Cx<'_>) {
    if cx.s.phase != Phase::Upgrading {
        return;
    }
    cx.s.phase = Phase::Replica { following: None };
    cx.s.announced_primary = None;
    if let Some(view) = cx.s.view.clone() {
        super::failover::replica_view(cx, &view);
    }
    cx.publish();
}

/// A probe's verdict: a healthy one after the start counts.
pub(super) fn health(cx: &mut Cx<'_>, healthy: bool) {
    if let Some(u) = cx.s.upgrade.as_mut()
        && u.until.is_some()
        && healthy
    {
        u.seen_healthy = true;
    }
    check(cx);
}

/// Whether the node has proven itself (then the outcome is told), or its deadline passed
/// (then the rollback runs, or the upgrade is given up).
pub(super) fn check(cx: &mut Cx<'_>) {
    let Some(u) = cx.s.upgrade.clone() else {
        return;
    };
    let Some(until) = u.until else {
        return; // the engine works
    };
    let following = matches!(cx.s.phase, Phase::Replica { following: Some(_) });
    let caught_up = u.target.is_none_or(|t| cx.s.position >= t);
    let receiving = cx.s.not_receiving_since.is_none() && !cx.s.stalled;
    if following && u.seen_healthy && cx.s.healthy && receiving && caught_up {
        let took = cx.now.saturating_sub(u.since);
        cx.s.upgrade = None;
        match u.failed {
            None => cx.notice(
                Notice::Upgraded,
                format!(
                    "upgrade: the database runs the upgraded program, healthy and caught up with \
                     the primary, {}.{:03} s after the request",
                    took / 1000,
                    took % 1000
                ),
            ),
            Some(why) => cx.notice(
                Notice::UpgradeRolledBack,
                format!(
                    "{why}; rolled back: the database runs the previous program again, healthy \
                     and caught up with the primary"
                ),
            ),
        }
        cx.publish();
        return;
    }
    if cx.now < until {
        return;
    }
    let secs = u.deadline / 1000;
    let why = if !(u.seen_healthy && cx.s.healthy) {
        format!("it was not healthy within {secs} s of its start")
    } else if !following {
        format!("it did not follow the primary within {secs} s of its start")
    } else if !receiving {
        format!("it did not receive from the primary within {secs} s of its start")
    } else {
        format!(
            "it did not catch up within {secs} s of its start (at {}, the primary at {})",
            cx.s.position,
            u.target.unwrap_or_default()
        )
    };
    match u.failed {
        None => fail(cx, format!("the upgrade failed: {why}")),
        Some(first) => give_up(cx, format!("{first}; after the rollback {why}")),
    }
}

/// The upgrade failed: roll back when there is a hook, else give up.
fn fail(cx: &mut Cx<'_>, why: String) {
    if !cx.p.rollback_hook {
        give_up(
            cx,
            format!(
                "{why}; there is no rollback hook (handlers.rollback): the node is left as it is"
            ),
        );
        return;
    }
    if let Some(u) = cx.s.upgrade.as_mut() {
        u.failed = Some(why);
        u.until = None;
        u.target = None;
    }
    cx.emit(Action::RollbackDatabase);
    cx.s.phase = Phase::Upgrading;
    cx.publish();
}

/// The node could not be brought back: say so; it follows the primary as it can (a node
/// that is not healthy is no candidate anyway).
fn give_up(cx: &mut Cx<'_>, why: String) {
    cx.s.upgrade = None;
    cx.notice(
        Notice::UpgradeFailed,
        format!("{why}. Look at the agent's log and the database's, repair the node by hand (or rebuild it: autopilotctl reinit)"),
    );
    back_to_replica(cx);
    cx.publish();
}

/// The terms of our `upgrade` request in `view`.
pub(super) fn order<'a>(cx: &Cx<'_>, view: &'a ClusterView) -> Option<&'a UpgradeOrder> {
    view.upgrade_orders
        .iter()
        .find(|(id, _)| *id == cx.p.node_id)
        .map(|(_, o)| o)
}
