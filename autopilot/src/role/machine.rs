//! [`decide`]: the entry point. Handles what is common to every phase (lease bookkeeping, the
//! I1 fencing clock, views, health, stop requests) and dispatches the rest to `bootstrap.rs`,
//! `failover.rs` and `primary.rs`.

use super::state::{Phase, RoleState, Wait};
use super::types::{
    Action, ClusterView, EngineResult, Event, Facts, Millis, Notice, PrimaryKey, Role, RoleParams,
};
use super::{bootstrap, failover, primary, requests, upgrade};

/// Outside an election, a position that merely moved is republished at most this often: it
/// is the reference for `max_lag_on_failover` (so that check may be this much behind), and
/// candidates publish their final positions themselves when it matters. The agent rewrites
/// the rest of the node document on the same cadence (`documents::REFRESH`).
pub const POSITION_REFRESH: Millis = 30_000;

/// One step of the machine: the next state and what to do. Pure: no I/O, no clock, no
/// randomness; `params` never change while an agent runs.
pub fn decide(params: &RoleParams, state: RoleState, event: Event) -> (RoleState, Vec<Action>) {
    let mut cx = Cx {
        p: params,
        s: state,
        now: event.now(),
        out: Vec::new(),
    };
    cx.step(event);
    cx.track_wait();
    (cx.s, cx.out)
}

/// The working set of one `decide` call.
pub(super) struct Cx<'a> {
    /// The node's parameters.
    pub p: &'a RoleParams,
    /// The state being built.
    pub s: RoleState,
    /// The event's time.
    pub now: Millis,
    /// Actions emitted so far, in execution order.
    pub out: Vec<Action>,
}

impl Cx<'_> {
    fn step(&mut self, event: Event) {
        if self.s.phase == Phase::Stopped && !matches!(event, Event::Started { .. }) {
            return;
        }
        match event {
            Event::Started {
                has_data,
                position,
                identity,
                term,
                adopted,
                ..
            } => {
                // A restart forgets everything: the store is the only memory that counts.
                self.s = RoleState::new();
                self.s.has_data = has_data;
                self.s.position = position;
                self.s.identity = identity;
                self.s.data_term = if has_data { term.max(1) } else { 0 };
                self.emit(Action::GrantLease);
                if let Some(sent_at) = adopted
                    && has_data
                {
                    super::handover::resume_primary(self, sent_at);
                }
            }
            Event::LeaseGranted { .. } => {
                self.s.lease_alive = true;
                self.s.lease_ok_sent_at = self.now;
                if self.s.phase == Phase::Joining {
                    self.s.phase = Phase::Discovering;
                }
                self.publish();
                self.emit(Action::ReadCluster);
            }
            Event::KeepAliveOk { sent_at, .. } => {
                self.s.lease_ok_sent_at = self.s.lease_ok_sent_at.max(sent_at);
                // A renewed lease moves the expiry, and with it the kill of a slow fence (a
                // loaded machine's late keep-alive is no reason to kill a database).
                if self.s.fence_deadline.is_some() {
                    self.set_fence_deadline();
                }
                if let Phase::SelfFenced { fenced_at } = self.s.phase
                    && sent_at >= fenced_at
                {
                    // The lease survived our fence: learn whether the key is still ours.
                    self.emit(Action::ReadCluster);
                }
            }
            Event::KeepAliveFailed { .. } => self.check_fence(),
            Event::LeaseLost { .. } => self.lease_lost(),
            Event::Tick { .. } => {
                self.check_fence();
                self.check_fence_deadline();
                self.tick();
                upgrade::check(self);
            }
            Event::Health {
                healthy,
                answering,
                receiving,
                position,
                ..
            } => {
                self.replication(receiving);
                let healthy = self.health_verdict(healthy, answering);
                self.health(healthy, answering, position);
                upgrade::health(self, healthy && answering);
            }
            Event::StopRequested { .. } => self.stop(),
            Event::DatabaseRestarted { .. } => self.database_restarted(),
            Event::DatabaseExited { detail, .. } => self.database_exited(detail),
            Event::Cluster { view, .. } => {
                if self
                    .s
                    .view
                    .as_ref()
                    .is_some_and(|v| v.revision > view.revision)
                {
                    return; // a late watch delivery; we already know better
                }
                if !view.linearizable
                    && matches!(self.s.phase, Phase::Promoting { .. } | Phase::Primary)
                    && self
                        .s
                        .claimed_over_history
                        .is_some_and(|h| view.history_rev <= h)
                {
                    return; // a watch delivery from before our own claim
                }
                self.learn_primary(&view);
                self.s.view = Some(view.clone());
                self.cluster(&view);
            }
            Event::LockResult { acquired, .. } => bootstrap::lock_result(self, acquired),
            Event::ClaimResult { won, .. } => match self.s.phase {
                Phase::Bootstrap(_) => bootstrap::claim_result(self, won),
                _ => failover::claim_result(self, won),
            },
            Event::Engine { result, .. } => {
                if matches!(result, EngineResult::Fenced { .. } | EngineResult::Killed) {
                    self.s.fence_deadline = None;
                }
                self.engine(result)
            }
            Event::PrePromoteDone { ok, .. } => failover::pre_promote_done(self, ok),
        }
    }

    /// What the node waits for after this step; when that changed, say so once (the wait
    /// started, ended, or became another) and republish the node key, which carries it.
    fn track_wait(&mut self) {
        let now_waiting = match (&self.s.phase, self.s.view.clone()) {
            (Phase::WaitingForData, _) => Some(Wait::Data),
            (Phase::Stopping | Phase::Stopped, _) => None,
            (_, Some(view)) => failover::wait(self, &view),
            (_, None) => None,
        };
        if self.s.waiting.as_ref().map(|(w, _)| w) == now_waiting.as_ref() {
            return;
        }
        let ended = self
            .s
            .waiting
            .take()
            .map(|(w, since)| (w, self.now.saturating_sub(since)));
        self.s.waiting = now_waiting.map(|w| (w, self.now));
        self.emit(Action::Waiting {
            started: self.s.waiting.as_ref().map(|(w, _)| w.clone()),
            ended,
        });
        self.publish();
    }

    /// Phase-specific reaction to a new view.
    fn cluster(&mut self, view: &ClusterView) {
        if self.foreign(view) {
            return;
        }
        requests::view(self, view);
        if requests::old_term(self, view) {
            return;
        }
        match self.s.phase.clone() {
            Phase::Discovering | Phase::WaitingForData => bootstrap::discover(self, view),
            Phase::Bootstrap(step) => bootstrap::recheck(self, step, view),
            Phase::Replica { .. } => failover::replica_view(self, view),
            Phase::Electing { since, term } => failover::electing_view(self, since, term, view),
            Phase::Primary | Phase::SelfFenced { .. } | Phase::CuttingOver { .. } => {
                primary::view(self, view)
            }
            _ => {}
        }
    }

    /// A node whose data has another identity than the cluster's takes no part: it neither
    /// follows, nor clones over its data, nor competes (the data may be another cluster's,
    /// restored by mistake). Checked before anything else on every view, never against a
    /// running primary's own data.
    fn foreign(&mut self, view: &ClusterView) -> bool {
        if matches!(self.s.phase, Phase::Foreign { .. }) {
            return true;
        }
        let (Some(ours), Some(cluster)) = (&self.s.identity, &view.identity) else {
            return false;
        };
        if !self.s.has_data || ours == cluster || self.s.role == Role::Primary {
            return false;
        }
        let (ours, cluster) = (ours.clone(), cluster.clone());
        self.notice(
            Notice::ForeignData,
            format!(
                "the data in this node's data directory belongs to another database (identity \
                 {ours}; this cluster's is {cluster}): not joining, and the data is left as it is. \
                 Point the node at the right cluster, or move its data directory aside and \
                 restart the agent to clone the cluster's data"
            ),
        );
        self.s.phase = Phase::Foreign { ours, cluster };
        self.publish();
        true
    }

    /// An engine answer, to the step of the current phase.
    fn engine(&mut self, result: EngineResult) {
        if requests::engine(self, &result) || upgrade::engine(self, &result) {
            return;
        }
        match self.s.phase {
            Phase::Bootstrap(_) | Phase::Cloning { .. } | Phase::Rejoining { .. } => {
                bootstrap::engine(self, result)
            }
            Phase::Restoring => requests::restored(self, result),
            Phase::CuttingOver { .. } => requests::cut_over(self, result),
            Phase::Electing { .. } | Phase::Promoting { .. } => failover::engine(self, result),
            _ => primary::engine(self, result),
        }
    }

    /// Remember who the primary is and how far it got (fencing target, lag reference).
    fn learn_primary(&mut self, view: &ClusterView) {
        if let Some(pk) = &view.primary {
            if let Some(n) = view.nodes.iter().find(|n| n.id == pk.node) {
                self.s.last_primary_position = Some(n.position);
            }
            self.s.last_primary = Some(pk.clone());
        }
    }

    /// I1: a node whose database may accept writes fences it once the lease is no longer
    /// provably alive for the rest of the safety margin.
    fn check_fence(&mut self) {
        // A restoring primary serves until its restored data is swapped in.
        let may_write = matches!(
            self.s.phase,
            Phase::Primary | Phase::Restoring | Phase::CuttingOver { .. }
        ) || matches!(self.s.phase, Phase::Promoting { .. } if self.s.role == Role::Primary);
        if may_write && self.now.saturating_sub(self.s.lease_ok_sent_at) > self.p.fence_after() {
            self.self_fence("keep-alive overdue");
        }
    }

    /// The lease expires no earlier than TTL after the last successful keep-alive was sent,
    /// and a successor then still needs its settle window, a claim and a promotion: a fence
    /// that has not answered by then is replaced by a kill. A fence that starts later than
    /// that (the lease is lost already) still gets a tenth of the TTL.
    fn set_fence_deadline(&mut self) {
        let at = (self.s.lease_ok_sent_at + self.p.ttl).max(self.now + self.p.ttl / 10);
        self.s.fence_deadline = Some(at);
        self.emit(Action::WakeAt { at });
    }

    /// I1 when the fence hangs (MariaDB's `read_only` waits behind commits that wait for a
    /// semi-sync acknowledgement that cannot come): the database is killed before the lease
    /// can have expired, whatever the phase is by then.
    fn check_fence_deadline(&mut self) {
        if self.s.fence_deadline.is_some_and(|at| self.now >= at) {
            primary::kill_database(self);
        }
    }

    /// Our lease is gone: so are our keys. Fence if we could be writing, then start over.
    fn lease_lost(&mut self) {
        self.s.lease_alive = false;
        self.notice(
            Notice::LeaseLost,
            "the lease expired before it could be renewed",
        );
        match self.s.phase {
            Phase::Primary
            | Phase::Restoring
            | Phase::CuttingOver { .. }
            | Phase::Promoting { .. }
            | Phase::Claiming { .. }
            | Phase::HandingOver => self.self_fence("lease lost"),
            Phase::Bootstrap(_) | Phase::Electing { .. } | Phase::Cloning { .. } => {
                self.s.phase = Phase::Discovering
            }
            _ => {}
        }
        self.emit(Action::GrantLease);
    }

    /// Make the local database read-only and wait to learn the truth (I1).
    pub(super) fn self_fence(&mut self, why: &str) {
        self.emit(Action::Fence);
        self.s.phase = Phase::SelfFenced {
            fenced_at: self.now,
        };
        self.set_fence_deadline();
        self.notice(Notice::Fenced, why.to_owned());
        self.announce(Role::Fenced, None);
    }

    fn tick(&mut self) {
        let poll = matches!(
            self.s.phase,
            Phase::Discovering
                | Phase::WaitingForData
                | Phase::SelfFenced { .. }
                | Phase::Replica { .. }
        ) || matches!(self.s.phase, Phase::Electing { since, .. } if self.now >= since + self.p.settle);
        if poll && self.s.lease_alive && self.now >= self.s.next_poll {
            self.s.next_poll = self.now + self.poll_every();
            self.emit(Action::ReadCluster);
            self.emit(Action::WakeAt {
                at: self.s.next_poll,
            });
        }
    }

    /// How often a waiting node re-reads the cluster (watches can be late or lost).
    pub(super) fn poll_every(&self) -> Millis {
        (self.p.ttl / 4).max(1)
    }

    /// The probe's verdict with the grace of a primary that was healthy while primary (see
    /// [`RoleParams::health_grace`]).
    fn health_verdict(&mut self, healthy: bool, answering: bool) -> bool {
        let primary = self.s.role == Role::Primary;
        if healthy {
            self.s.healthy_as_primary = primary;
            self.s.unhealthy_since = None;
            return true;
        }
        let since = *self.s.unhealthy_since.get_or_insert(self.now);
        primary
            && self.s.healthy_as_primary
            && answering
            && self.now.saturating_sub(since) < self.p.health_grace
    }

    fn health(&mut self, healthy: bool, answering: bool, position: super::types::Position) {
        // Running healthy again: the last exit is history.
        let recovered = healthy && self.s.database_exit.take().is_some();
        let moved = self.s.position != position;
        let was_healthy = self.s.healthy;
        self.s.healthy = healthy;
        self.s.position = self.s.position.max(position);
        // Write economy: peers act on health and eligibility at once; a position that merely
        // moved matters during an election (published then as it changes) and as the lag
        // reference, refreshed every `POSITION_REFRESH`.
        let electing = matches!(
            self.s.phase,
            Phase::Electing { .. } | Phase::Claiming { .. } | Phase::Promoting { .. }
        );
        let changed = recovered
            || was_healthy != healthy
            || match self.s.published {
                None => true,
                Some((at, eligible)) => {
                    eligible != self.s.eligible(self.p, self.now)
                        || (moved && (electing || self.now >= at + POSITION_REFRESH))
                }
            };
        if self.s.phase == Phase::Primary && healthy && self.s.unfence_again {
            self.unfence();
        }
        if self.s.phase == Phase::Primary && !healthy && !self.s.maintenance() {
            // The database broke under a live agent: hand over at once (design §4). One that
            // does not answer would not take a fence either: kill it, then release the key.
            if answering {
                primary::hand_over(self, "database unhealthy");
            } else {
                primary::hand_over_killing(self);
            }
        } else if changed {
            self.publish();
        }
    }

    /// Track whether a replica receives from the primary it follows (see
    /// [`RoleState::stalled`]); publish when that changes its candidacy.
    fn replication(&mut self, receiving: Option<bool>) {
        let following = matches!(&self.s.phase, Phase::Replica { following: Some(_) })
            && self.s.view.as_ref().is_some_and(|v| !v.primary_starting);
        if !following {
            return;
        }
        match receiving {
            Some(true) => {
                self.s.not_receiving_since = None;
                if std::mem::take(&mut self.s.stalled) {
                    self.notice(
                        Notice::ReplicationResumed,
                        "receiving from the primary again".to_owned(),
                    );
                    self.publish();
                }
            }
            Some(false) => {
                let since = *self.s.not_receiving_since.get_or_insert(self.now);
                if !self.s.stalled && self.now >= since + self.p.stall_after() {
                    self.s.stalled = true;
                    self.notice(Notice::ReplicationStalled, format!(
                            "not receiving from the primary for {} ms: no failover candidate until it does",
                            self.now - since
                        ));
                    self.publish();
                }
            }
            None => {}
        }
    }

    fn database_exited(&mut self, detail: String) {
        self.s.healthy = false;
        self.notice(Notice::DatabaseExited, detail.clone());
        self.s.database_exit = Some(detail);
        match self.s.phase {
            // I4: in maintenance the key stays; the restart restores writes in place.
            Phase::Primary if self.s.maintenance() => {}
            // Nothing accepts writes now: release the key at once so a replica takes over
            // (the fence fails against a stopped server, which is what releases the key);
            // the database comes back read-only and follows the new primary.
            Phase::Primary => primary::hand_over_stopped(self, "database exited"),
            _ => self.publish(),
        }
    }

    fn database_restarted(&mut self) {
        match self.s.phase {
            // Still provably the key holder (else `check_fence` would have fenced): in
            // maintenance restore writes in place (no role change, I4); otherwise hand over.
            Phase::Primary if self.s.maintenance() => self.unfence(),
            Phase::Primary => primary::hand_over(self, "database restarted"),
            Phase::Replica { .. } | Phase::Electing { .. } => {
                // Replication stopped with the restart: re-point at whoever is primary now.
                self.s.phase = Phase::Replica { following: None };
                if let Some(view) = self.s.view.clone() {
                    failover::replica_view(self, &view);
                }
            }
            _ => {}
        }
    }

    /// Make the database writable again (the phase is already `Primary`); its answer
    /// comes as `Unfenced` or `Failed` (see `primary::engine`).
    pub(super) fn unfence(&mut self) {
        self.s.unfencing = true;
        self.s.unfence_again = false;
        self.emit(Action::Unfence);
    }

    fn stop(&mut self) {
        self.s.stop_requested = true;
        match self.s.phase {
            Phase::Primary
            | Phase::CuttingOver { .. }
            | Phase::Promoting { .. }
            | Phase::Claiming { .. }
            | Phase::HandingOver
            | Phase::SelfFenced { .. } => {
                // I6: stop writes first, then revoke so replicas elect at once.
                self.emit(Action::Fence);
                self.s.phase = Phase::Stopping;
            }
            Phase::Stopping => {}
            _ => self.finish_stop(),
        }
    }

    /// Release everything we hold in the store and let the process stop.
    pub(super) fn finish_stop(&mut self) {
        self.emit(Action::RevokeLease);
        self.emit(Action::Exit);
        self.s.phase = Phase::Stopped;
        self.s.lease_alive = false;
    }

    /// Publish our node key so peers can rank us.
    pub(super) fn publish(&mut self) {
        if self.s.lease_alive {
            let eligible = self.s.eligible(self.p, self.now);
            self.s.published = Some((self.now, eligible));
            let source = match self.s.role {
                Role::Replica => self
                    .s
                    .last_primary
                    .as_ref()
                    .filter(|p| p.node != self.p.node_id)
                    .map(|p| p.node.clone()),
                _ => None,
            };
            self.emit(Action::PublishNode {
                role: self.s.role,
                position: self.s.position,
                eligible,
                ineligible: self.s.ineligible(self.p, self.now),
                waiting: self.s.waiting.clone(),
                needs_rebuild: self.s.phase == Phase::NeedsRebuild,
                caught_up_term: self.s.caught_up_term,
                database_killed: self.s.database_killed,
                database_exit: self.s.database_exit.clone(),
                source,
                refused: match &self.s.phase {
                    Phase::Foreign { ours, cluster } => Some(format!(
                        "its data belongs to another database (identity {ours}, the cluster's is {cluster})"
                    )),
                    _ => None,
                },
            });
        }
    }

    /// Call onChange if the role or the primary changed.
    pub(super) fn announce(&mut self, role: Role, primary: Option<&PrimaryKey>) {
        let addr = primary.map(|p| p.address.clone());
        if role != self.s.role || addr != self.s.announced_primary {
            let previous = self.s.role;
            self.s.role = role;
            self.s.announced_primary = addr.clone();
            self.emit(Action::OnChange {
                role,
                previous,
                primary_address: addr,
            });
            self.publish();
        }
    }

    /// The engine action that makes this node the cluster's leader: `Promote`, or
    /// `LeadStandby` while the cluster migrates from an external source. `bootstrap`: the
    /// claim that wrote `initialized` just now, from this node's configuration (the view
    /// predates it).
    pub(super) fn promotion(&self, bootstrap: bool) -> Action {
        let migrating = if bootstrap {
            self.p.migrate_from.is_some()
        } else {
            self.s.view.as_ref().is_some_and(|v| v.standby_of.is_some())
        };
        if migrating {
            Action::LeadStandby
        } else {
            Action::Promote
        }
    }

    /// Our own primary-key value.
    pub(super) fn me(&self) -> PrimaryKey {
        PrimaryKey {
            node: self.p.node_id.clone(),
            address: self.p.address.clone(),
        }
    }

    pub(super) fn emit(&mut self, a: Action) {
        if matches!(a, Action::CloneFrom { .. } | Action::RestoreFromBackup) {
            // The copy is of the cluster's data as it is now: of this term, even when it ends
            // after an in-place restore began the next one (then it is rebuilt again).
            self.s.clone_term = self.s.cluster_term().max(1);
        }
        self.out.push(a);
    }

    /// Publish an event of `kind`, with this node's position.
    pub(super) fn notice(&mut self, kind: Notice, detail: impl Into<String>) {
        self.notice_with(kind, detail, None, None);
    }

    /// Publish an event of `kind` naming the primary before (`from`) and after (`to`).
    pub(super) fn notice_with(
        &mut self,
        kind: Notice,
        detail: impl Into<String>,
        from: Option<String>,
        to: Option<String>,
    ) {
        let facts = Facts {
            from,
            to,
            position: Some(self.s.position),
        };
        self.emit(Action::PublishEvent {
            kind,
            detail: detail.into(),
            facts,
        });
    }
}
