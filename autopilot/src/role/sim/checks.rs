//! Invariant checks run by the simulator after every action.

use super::super::*;
use super::World;

impl World {
    /// I1: at most one database accepts writes.
    pub(super) fn check_i1(&mut self) {
        let w: Vec<usize> = (0..self.dbs.len())
            .filter(|&i| self.dbs[i].running && self.dbs[i].writable)
            .collect();
        if w.len() > 1 {
            self.violations
                .push(format!("I1 at {}: writable {w:?}", self.now));
        }
    }

    /// I3, I4 at the moment an action is emitted.
    pub(super) fn check_action(&mut self, i: usize, a: &Action) {
        let maint = self.nodes[i].state.maintenance();
        match a {
            Action::Initialize if self.store.initialized => self.violations.push(format!(
                "I3 at {}: n{i} initialises an initialised cluster",
                self.now
            )),
            Action::Promote | Action::ReleasePrimary | Action::ClaimPrimary { .. } if maint => self
                .violations
                .push(format!("I4 at {}: n{i} {a:?} in maintenance", self.now)),
            // Only the primary configures replication for the others (slots, sync standbys).
            Action::SetReplicas { members } => {
                let phase = &self.nodes[i].state.phase;
                if *phase != Phase::Primary {
                    self.violations.push(format!(
                        "at {}: n{i} sets replicas while {phase:?}",
                        self.now
                    ));
                }
                if members.iter().any(|(id, _)| *id == format!("n{i}")) {
                    self.violations
                        .push(format!("at {}: n{i} lists itself as a replica", self.now));
                }
            }
            _ => {}
        }
    }

    /// I5: failovers recorded in history are at least a cooldown apart.
    pub(super) fn check_i5(&mut self) {
        let cd = self.nodes[0].params.failover_cooldown;
        let f: Vec<Millis> = self
            .store
            .history
            .iter()
            .filter(|h| h.2 == ClaimReason::Failover)
            .map(|h| h.0)
            .collect();
        if f.windows(2).any(|w| w[1] < w[0] + cd) {
            self.violations
                .push(format!("I5 at {}: failovers at {f:?}", self.now));
        }
    }

    /// I3 (no empty primary) and the election quality check (settle + yield): the new primary
    /// is at least as advanced as every reachable peer that advertised itself eligible.
    pub(super) fn check_promote(&mut self, i: usize) {
        if !self.dbs[i].has_data {
            self.violations
                .push(format!("I3 at {}: n{i} promotes without data", self.now));
        }
        let reason = self.store.history.last().map(|h| h.2);
        self.promotions
            .push((self.now, i, reason.unwrap_or(ClaimReason::Bootstrap)));
        let prev = self
            .store
            .history
            .iter()
            .rev()
            .nth(1)
            .map(|h| h.1.node.clone());
        for (j, (info, _)) in &self.store.nodes {
            let (j, n) = (*j, &self.nodes[*j]);
            let ok = j != i
                && info.eligible
                && n.agent_up
                && !n.frozen
                && !n.partitioned
                && self.dbs[j].running;
            // The peer's data includes what it received but has not replayed yet.
            let has = Position {
                epoch: self.dbs[j].epoch,
                offset: self.dbs[j].received.len() as u64,
            };
            if ok && Some(&n.params.node_id) != prev.as_ref() && has > self.dbs[i].pos() {
                self.violations.push(format!(
                    "ELECTION at {}: n{i} promoted at {:?} but eligible n{j} has {:?}",
                    self.now,
                    self.dbs[i].pos(),
                    has
                ));
            }
        }
    }
}
