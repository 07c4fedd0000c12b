//! The simulated executor: what the Role actor will do with each [`Action`].

use super::super::*;
use super::World;

impl World {
    /// The executor: one action, its effect, its answer.
    pub(super) fn execute(&mut self, i: usize, a: Action) {
        let now = self.now;
        // A hung database answers nothing: every local engine operation fails (times out).
        let local_engine = matches!(
            a,
            Action::Initialize
                | Action::CloneFrom { .. }
                | Action::Follow { .. }
                | Action::CatchUpTo { .. }
                | Action::Promote
                | Action::Fence
                | Action::FenceToHandOver
                | Action::Unfence
        );
        if local_engine && self.dbs[i].hung {
            self.engine(i, EngineResult::Failed);
            return;
        }
        match a {
            Action::GrantLease => self.nodes[i].want_lease = true,
            Action::ReadCluster => {
                if self.store_ok(i) {
                    let view = self.store.view(true);
                    self.answer(i, Event::Cluster { now, view });
                }
            }
            Action::PublishNode {
                role,
                position,
                eligible,
                caught_up_term,
                database_killed,
                ..
            } => {
                if self.store_ok(i) {
                    self.put_node(i, role, position, eligible, caught_up_term, database_killed);
                }
            }
            Action::AcquireLock => {
                let acquired = match self.my_lease_ok(i) {
                    Some(l) if self.store.lock.is_none() => {
                        self.store.lock = Some((i, l));
                        self.changed();
                        true
                    }
                    _ => false,
                };
                self.answer(i, Event::LockResult { now, acquired });
            }
            Action::ReleaseLock => {
                if self.store_ok(i) && self.store.lock.is_some_and(|l| l.0 == i) {
                    self.store.lock = None;
                    self.changed();
                }
            }
            Action::ClaimPrimary {
                reason,
                history_rev,
                write_initialized,
                ..
            } => {
                let won = match self.my_lease_ok(i) {
                    Some(l)
                        if self.store.primary.is_none()
                            && history_rev.is_none_or(|r| r == self.store.history_rev) =>
                    {
                        let me = PrimaryKey {
                            node: self.nodes[i].params.node_id.clone(),
                            address: self.nodes[i].params.address.clone(),
                        };
                        self.store.primary = Some((me.clone(), l));
                        self.store.history.push((now, me, reason));
                        self.store.history_rev = self.store.rev + 1;
                        self.store.initialized |= write_initialized;
                        self.changed();
                        self.check_i5();
                        true
                    }
                    _ => false,
                };
                self.answer(i, Event::ClaimResult { now, won });
            }
            Action::ReleasePrimary => {
                if self.my_lease_ok(i).is_some()
                    && self
                        .store
                        .primary
                        .as_ref()
                        .is_some_and(|p| Some(p.1) == self.nodes[i].lease)
                {
                    self.store.primary = None;
                    self.changed();
                }
            }
            Action::RevokeLease => {
                if let Some(l) = self.my_lease_ok(i) {
                    self.store.drop_lease(l);
                    self.changed();
                }
                self.nodes[i].lease = None;
            }
            Action::ClearSwitchover => {
                if self.store_ok(i) && self.store.switchover.take().is_some() {
                    self.changed();
                }
            }
            Action::PublishEvent { .. }
            | Action::WriteMarker { .. }
            | Action::RestoreInPlace { .. }
            | Action::BeginTerm { .. }
            | Action::LeadStandby
            | Action::StopSource
            | Action::EndMigration
            | Action::ClearMarker
            | Action::SetReplicas { .. }
            | Action::OnChange { .. }
            | Action::WakeAt { .. }
            | Action::Waiting { .. }
            | Action::ClearRequest => {}
            // Operators' requests are not among the simulated faults.
            Action::RestartDatabase => self.engine(i, EngineResult::Restarted(Ok(()))),
            Action::ReloadDatabase => self.engine(i, EngineResult::Reloaded(Ok(()))),
            Action::UpgradeDatabase { .. } => self.engine(i, EngineResult::Upgraded(Ok(()))),
            Action::RollbackDatabase => self.engine(i, EngineResult::RolledBack(Ok(()))),
            Action::Initialize => {
                let d = &mut self.dbs[i];
                if !d.has_data {
                    d.epoch = 1;
                }
                d.has_data = true;
                let position = d.pos();
                self.engine(i, EngineResult::Initialized { position });
            }
            Action::CloneFrom { primary } => {
                let r = match self.idx(&primary.node) {
                    Some(u)
                        if self.dbs[u].running
                            && self.dbs[u].has_data
                            && self.reach(i, u)
                            && self.dbs[i].running =>
                    {
                        let src = self.dbs[u].clone();
                        let d = &mut self.dbs[i];
                        (d.received, d.epoch, d.has_data, d.upstream) =
                            (src.log.clone(), src.epoch, true, Some(u));
                        d.log = src.log;
                        EngineResult::Cloned { position: d.pos() }
                    }
                    _ => EngineResult::Failed,
                };
                self.engine(i, r);
            }
            Action::RestoreFromBackup | Action::RunPrePromote => {
                self.engine(i, EngineResult::Failed)
            }
            Action::Follow { primary } => {
                let r = match self.idx(&primary.node) {
                    Some(u) if self.dbs[i].running => {
                        let src = self.dbs[u].log.clone();
                        let d = &mut self.dbs[i];
                        // pg_rewind-like: drop what the new primary lacks.
                        let common = d.log.iter().zip(&src).take_while(|(a, b)| a == b).count();
                        d.log.truncate(common);
                        d.received.clone_from(&d.log);
                        d.upstream = Some(u);
                        d.writable = false;
                        EngineResult::Following { position: d.pos() }
                    }
                    _ => EngineResult::Failed,
                };
                self.engine(i, r);
            }
            Action::CatchUp { term } => {
                self.dbs[i].upstream = None;
                let d = &mut self.dbs[i];
                d.log.clone_from(&d.received);
                let position = self.dbs[i].pos();
                // Replaying a relay log or WAL backlog takes a while: the answer (and so the
                // published final position) may come well after the settle window.
                let at = now + self.rng.below(self.max_catch_up_delay + 1);
                let result = EngineResult::ElectionCaughtUp { term, position };
                self.nodes[i]
                    .inbox
                    .push_back((at, Event::Engine { now: at, result }));
            }
            Action::FenceRemote { node, .. } => {
                let r = match self.idx(&node) {
                    Some(u) if !self.reach(i, u) || self.dbs[u].hung => EngineResult::Failed,
                    Some(u) if self.dbs[u].running => {
                        self.dbs[u].writable = false;
                        EngineResult::RemoteFenced {
                            final_position: Some(self.dbs[u].pos()),
                        }
                    }
                    _ => EngineResult::RemoteFenced {
                        final_position: None,
                    },
                };
                self.engine(i, r);
            }
            Action::CatchUpTo { from, .. } => {
                let u = self.nodes.iter().position(|n| n.params.address == from);
                if let Some(u) =
                    u.filter(|&u| self.dbs[u].running && !self.dbs[u].hung && self.reach(i, u))
                {
                    let src = self.dbs[u].clone();
                    if src.log.starts_with(&self.dbs[i].received) {
                        (self.dbs[i].log, self.dbs[i].epoch) = (src.log.clone(), src.epoch);
                        self.dbs[i].received = src.log;
                    }
                }
                let position = self.dbs[i].pos();
                self.engine(i, EngineResult::CaughtUp { position });
            }
            Action::Promote => {
                let r = if self.dbs[i].running {
                    self.check_promote(i);
                    let epoch = self.dbs.iter().map(|d| d.epoch).max().unwrap_or(0) + 1;
                    let d = &mut self.dbs[i];
                    d.received.clone_from(&d.log); // unapplied tail is discarded, as promote does
                    (d.writable, d.epoch, d.upstream) = (true, epoch, None);
                    EngineResult::Promoted { position: d.pos() }
                } else {
                    EngineResult::Failed
                };
                self.engine(i, r);
            }
            Action::Fence | Action::FenceToHandOver => {
                let d = &mut self.dbs[i];
                let r = if d.running {
                    d.writable = false;
                    EngineResult::Fenced { position: d.pos() }
                } else {
                    EngineResult::Failed
                };
                self.engine(i, r);
            }
            Action::Unfence => {
                if self.dbs[i].running {
                    self.dbs[i].writable = true;
                }
                self.engine(i, EngineResult::Unfenced);
            }
            Action::KillDatabase => {
                // SIGKILL of the group: the server is gone however hung it was; the process
                // actor reports the exit (the restart policy starts it again later).
                let d = &mut self.dbs[i];
                (d.running, d.writable, d.hung, d.upstream) = (false, false, false, None);
                self.engine(i, EngineResult::Killed);
                self.nodes[i].inbox.push_back((
                    now,
                    Event::DatabaseExited {
                        now,
                        detail: "killed".to_owned(),
                    },
                ));
            }
            Action::Exit => {
                self.crash(i);
            }
        }
    }
}
