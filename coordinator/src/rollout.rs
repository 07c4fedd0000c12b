//! The rolling upgrade driver: every [`TICK`] it takes the next step of every active rollout
//! (`<cluster>/upgrade`, [`UpgradeDoc`]), so a restarted coordinator resumes where the
//! document says. The order is decided afresh at each step from the cluster as it is (a
//! failover meanwhile changes who is primary): the replicas not yet upgraded, one at a time,
//! by id; then a planned switchover from the primary, the last node not upgraded, to an
//! upgraded replica; then that former primary. A step begins only while the cluster has a
//! primary and, besides the node it takes out, a healthy streaming replica when it had two or
//! more: the cluster is never left without a primary and a replica it had.
//!
//! A replica's step is its `upgrade` request; its outcome is the node's event (`upgraded`,
//! `upgrade_rolled_back`, `upgrade_failed`, or `request_failed` when it refused). Anything but
//! `upgraded` stops the rollout (`failed`, with the node's words); the node itself rolled
//! back. Every write of the document is conditional on its revision, so a pause or resume
//! from the API is never overwritten.

use std::time::Duration;

use cluster::store::Store;
use cluster::wire::{
    self, ClusterKeys, EventDoc, EventKind, NodeAction, RequestDoc, RolloutState, RolloutStep,
    StepKind, StepOutcome, Timestamp, UpgradeDoc, UpgradeOrder,
};
use tracing::{info, warn};

use crate::audit::CancelOnDrop;
use crate::members::MemberState;
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterPath, Read};

/// How often the rollouts are advanced.
pub const TICK: Duration = Duration::from_secs(1);
/// How long a switchover may take before the rollout calls it failed.
const SWITCHOVER_LIMIT: Duration = Duration::from_secs(60);
/// How long the node being upgraded may have no live agent before the rollout fails.
const AGENT_GONE_LIMIT: Duration = Duration::from_secs(120);
/// Who writes the requests.
const BY: &str = "rollout";
/// Beyond twice the deadline, how long an upgrade step may go without an outcome (the
/// upgrade and rollback hooks' own time).
const STEP_SLACK: Duration = Duration::from_secs(1800);
/// How long a node may leave its `upgrade` request untaken (no `upgrading` event).
const TAKEN_LIMIT: Duration = Duration::from_secs(120);
/// The driver lock's lease: another coordinator takes over this long after the driver
/// stopped.
const DRIVER_TTL: Duration = Duration::from_secs(10);

/// Advance every active rollout every [`TICK`] until the guard is dropped, while this
/// coordinator holds the driver lock (`_coordinator/rollouts/driver`, bound to a lease of
/// [`DRIVER_TTL`]): of several coordinators, one drives.
pub fn spawn(state: AppState) -> CancelOnDrop {
    CancelOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lease = None;
        let me = format!("coordinator-{}", std::process::id());
        loop {
            tick.tick().await;
            if !drives(&state, &mut lease, &me).await {
                continue;
            }
            let Ok(clusters) = view::list(&state, None).await else {
                continue;
            };
            for c in clusters {
                let p = ClusterPath {
                    namespace: c.namespace,
                    project: c.project,
                    cluster: c.cluster,
                };
                if let Err(e) = advance(&state, &p).await {
                    warn!(cluster = %p.target(), cause = %e.detail, "the rolling upgrade could not advance; retrying");
                }
            }
        }
    }))
}

/// Whether this coordinator holds the driver lock now (taking it when it is free).
async fn drives(st: &AppState, lease: &mut Option<cluster::store::LeaseId>, me: &str) -> bool {
    let store = st.store();
    if let Some(l) = *lease
        && store.keep_alive_once(l).await.is_err()
    {
        *lease = None;
    }
    if lease.is_none() {
        *lease = store.grant_lease(DRIVER_TTL).await.ok();
    }
    let Some(l) = *lease else {
        return false;
    };
    let key = wire::CoordinatorKeys::new(st.prefix()).rollout_driver();
    if store
        .create_if_absent(&key, me.as_bytes().to_vec(), Some(l))
        .await
        .unwrap_or(false)
    {
        info!(driver = me, "this coordinator drives the rolling upgrades");
        return true;
    }
    matches!(store.get(&key).await, Ok(Some((v, _))) if v == me.as_bytes())
}

/// One step of `p`'s rollout, if it has an active one.
async fn advance(st: &AppState, p: &ClusterPath) -> Result<(), Problem> {
    let keys = p.keys(st)?;
    let Some((raw, rev)) = st
        .store()
        .get(&keys.upgrade())
        .await
        .map_err(|e| Problem::store(&e))?
    else {
        return Ok(());
    };
    let Ok(mut doc) = wire::decode::<UpgradeDoc>(&raw) else {
        return Ok(()); // a newer coordinator's: not ours to drive
    };
    if !doc.state.active() {
        return Ok(());
    }
    let before = doc.clone();
    let r = view::read(st, p).await?;
    let action = step(st, &keys, &r, &mut doc).await?;
    if doc == before {
        return Ok(());
    }
    doc.updated = Timestamp::now();
    let written = st
        .store()
        .put_if_revision(&keys.upgrade(), wire::encode(&doc), rev)
        .await
        .map_err(|e| Problem::store(&e))?;
    if !written {
        return Ok(()); // changed meanwhile (a pause): decided again at the next tick
    }
    if doc.state != before.state {
        info!(cluster = %p.target(), state = ?doc.state, detail = %doc.detail, "rolling upgrade");
    }
    // The step is recorded; now its request. One that cannot be written (another request
    // pending for the node, a switchover pending) leaves the step without an outcome, which
    // `follow` ends after its limit.
    match action {
        Some(Action::Upgrade(node)) => {
            let req = RequestDoc {
                upgrade: Some(UpgradeOrder {
                    version: doc.version.clone(),
                    deadline_seconds: doc.deadline_seconds,
                }),
                ..crate::api::nodes::request(NodeAction::Upgrade, BY)
            };
            if !crate::api::nodes::write_request(st, &keys, &node, &req).await? {
                warn!(cluster = %p.target(), node, "another request is pending for the node; the upgrade step waits for it to be taken");
            }
        }
        Some(Action::Switchover(candidate)) => {
            crate::api::actions::write_switchover(st, p, Some(candidate), BY).await?;
        }
        None => {}
    }
    Ok(())
}

/// The request a step needs written once it is recorded.
enum Action {
    /// `requests/<node>` with action `upgrade`.
    Upgrade(String),
    /// `switchover` to the candidate.
    Switchover(String),
}

/// Decide and take the next step (or follow the one in flight), changing `doc`.
async fn step(
    st: &AppState,
    keys: &ClusterKeys,
    r: &Read,
    doc: &mut UpgradeDoc,
) -> Result<Option<Action>, Problem> {
    if let Some(current) = doc.step.clone() {
        follow(st, keys, r, doc, current).await?;
        return Ok(None);
    }
    if doc.state == RolloutState::Paused {
        return Ok(None);
    }
    let c = &r.doc;
    let members: Vec<&crate::members::MemberView> = c.members.iter().collect();
    let pending: Vec<&str> = members
        .iter()
        .map(|m| m.id.as_str())
        .filter(|id| !doc.upgraded.iter().any(|u| u == id))
        .collect();
    if pending.is_empty() {
        let switchovers = doc
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::Switchover)
            .count();
        doc.state = RolloutState::Done;
        doc.detail = format!(
            "every node runs the upgraded program ({} node(s), {switchovers} switchover(s))",
            doc.upgraded.len()
        );
        return Ok(None);
    }
    let Some(primary) = c.primary.as_ref().map(|p| p.id.clone()) else {
        doc.detail = "waiting: the cluster has no primary".to_owned();
        return Ok(None);
    };
    let healthy = |id: &str| {
        members
            .iter()
            .any(|m| m.id == id && m.live && m.state == MemberState::Streaming)
    };
    let replicas = members.iter().filter(|m| m.id != primary).count();
    if let Some(next) = pending.iter().find(|id| **id != primary) {
        let others = members
            .iter()
            .filter(|m| m.id != primary && m.id != *next && healthy(&m.id))
            .count();
        if !members.iter().any(|m| m.id == *next && m.live) {
            doc.detail = format!("waiting: {next}'s agent is down");
            return Ok(None);
        }
        if replicas >= 2 && others == 0 {
            doc.detail = format!(
                "waiting: {next} is the only replica that streams; it is taken out once another \
                 streams again"
            );
            return Ok(None);
        }
        if c.requests.iter().any(|q| q.node == *next) {
            doc.detail = format!("waiting: {next} has another request pending");
            return Ok(None);
        }
        doc.detail = format!("upgrading {next}");
        doc.step = Some(RolloutStep {
            kind: StepKind::Upgrade,
            node: (*next).to_owned(),
            from: None,
            started: Timestamp::now(),
            revision: c.revision,
            ended: None,
            outcome: None,
            detail: None,
        });
        return Ok(Some(Action::Upgrade((*next).to_owned())));
    }
    // Only the primary is left: hand over to an upgraded replica that streams and is eligible.
    let candidate = doc
        .upgraded
        .iter()
        .find(|u| healthy(u) && c.nodes.iter().any(|n| n.id == **u && n.eligible))
        .cloned();
    let Some(candidate) = candidate else {
        doc.detail = format!(
            "waiting: no upgraded replica streams and is eligible to take over from {primary}"
        );
        return Ok(None);
    };
    if c.switchover.is_some() || c.maintenance.is_some() {
        doc.detail = "waiting: a switchover is pending or maintenance is on".to_owned();
        return Ok(None);
    }
    doc.detail = format!("switching over from {primary} to {candidate}");
    doc.step = Some(RolloutStep {
        kind: StepKind::Switchover,
        node: candidate.clone(),
        from: Some(primary),
        started: Timestamp::now(),
        revision: c.revision,
        ended: None,
        outcome: None,
        detail: None,
    });
    Ok(Some(Action::Switchover(candidate)))
}

/// The step in flight: has it ended?
async fn follow(
    st: &AppState,
    keys: &ClusterKeys,
    r: &Read,
    doc: &mut UpgradeDoc,
    mut current: RolloutStep,
) -> Result<(), Problem> {
    let age = current.started.system_time().elapsed().unwrap_or_default();
    let outcome = match current.kind {
        StepKind::Switchover => {
            let events = events_after(st, keys, current.revision).await?;
            let rejected = events
                .iter()
                .find(|e| e.kind == EventKind::SwitchoverRejected);
            if r.doc.primary.as_ref().is_some_and(|p| p.id == current.node) {
                Some((
                    StepOutcome::Done,
                    format!("{} is the primary", current.node),
                ))
            } else if let Some(e) = rejected {
                Some((StepOutcome::Failed, e.detail.clone()))
            } else if age > SWITCHOVER_LIMIT {
                Some((
                    StepOutcome::Failed,
                    format!(
                        "the switchover to {} did not happen within {} s",
                        current.node,
                        SWITCHOVER_LIMIT.as_secs()
                    ),
                ))
            } else {
                None
            }
        }
        StepKind::Upgrade | StepKind::Unknown => {
            let events = events_after(st, keys, current.revision).await?;
            let told = events.iter().find_map(|e| {
                if e.node != current.node {
                    return None;
                }
                match e.kind {
                    EventKind::Upgraded => Some((StepOutcome::Done, e.detail.clone())),
                    EventKind::UpgradeRolledBack => {
                        Some((StepOutcome::RolledBack, e.detail.clone()))
                    }
                    EventKind::UpgradeFailed => Some((StepOutcome::Failed, e.detail.clone())),
                    EventKind::RequestFailed if e.detail.starts_with("upgrade") => {
                        Some((StepOutcome::Failed, e.detail.clone()))
                    }
                    _ => None,
                }
            });
            let agent_gone = r.doc.nodes.iter().all(|n| n.id != current.node);
            let taken = events
                .iter()
                .any(|e| e.node == current.node && e.kind == EventKind::Upgrading);
            // A node whose agent restarted mid-upgrade forgot it: no outcome ever comes.
            let limit = Duration::from_secs(doc.deadline_seconds.saturating_mul(2)) + STEP_SLACK;
            match told {
                Some(t) => Some(t),
                None if age > limit => Some((
                    StepOutcome::Failed,
                    format!(
                        "{} reported no outcome within {} s (its agent restarted during the \
                         upgrade?); look at its events and log",
                        current.node,
                        limit.as_secs()
                    ),
                )),
                None if !taken && age > TAKEN_LIMIT => Some((
                    StepOutcome::Failed,
                    format!(
                        "{} did not take its upgrade request within {} s (another request \
                         pending, or the node does not follow a primary)",
                        current.node,
                        TAKEN_LIMIT.as_secs()
                    ),
                )),
                None if agent_gone && age > AGENT_GONE_LIMIT => Some((
                    StepOutcome::Failed,
                    format!(
                        "{}'s agent is gone (no node key) and reported no outcome",
                        current.node
                    ),
                )),
                None => None,
            }
        }
    };
    let Some((outcome, detail)) = outcome else {
        return Ok(());
    };
    current.ended = Some(Timestamp::now());
    current.outcome = Some(outcome);
    current.detail = Some(detail.clone());
    doc.step = None;
    let node = current.node.clone();
    let kind = current.kind;
    doc.steps.push(current);
    match (kind, outcome) {
        (StepKind::Upgrade, StepOutcome::Done) => {
            doc.upgraded.push(node.clone());
            doc.detail = format!("{node} upgraded");
        }
        (StepKind::Switchover, StepOutcome::Done) => {
            doc.detail = format!("switched over to {node}");
        }
        (_, StepOutcome::RolledBack) => {
            doc.state = RolloutState::Failed;
            doc.detail = format!(
                "stopped: the upgrade of {node} failed and it was rolled back (it runs the \
                 previous program, healthy): {detail}"
            );
        }
        _ => {
            doc.state = RolloutState::Failed;
            doc.detail = format!(
                "stopped: the {} step of {node} failed: {detail}",
                kind_label(kind)
            );
        }
    }
    Ok(())
}

fn kind_label(k: StepKind) -> &'static str {
    match k {
        StepKind::Upgrade => "upgrade",
        StepKind::Switchover => "switchover",
        StepKind::Unknown => "unknown",
    }
}

/// The cluster's events written after `revision`.
async fn events_after(
    st: &AppState,
    keys: &ClusterKeys,
    revision: i64,
) -> Result<Vec<EventDoc>, Problem> {
    let (entries, _) = st
        .store()
        .get_prefix(&keys.events_prefix())
        .await
        .map_err(|e| Problem::store(&e))?;
    Ok(entries
        .into_iter()
        .filter(|e| e.mod_revision > revision)
        .filter_map(|e| wire::decode::<EventDoc>(&e.value).ok())
        .collect())
}
