//! A small deterministic simulator: N nodes each running [`decide`], one simulated etcd with
//! real semantics (leases expiring `ttl` after the last keep-alive the server received,
//! create-if-absent transactions, revisions, watches delivered with random delay), simulated
//! databases (writable flag, a log of write ids), a simulated clock, and injectable faults.
//!
//! The executor here is what the Role actor will be: it applies each action to the store or the
//! database and feeds the answer back as an event. A node's events are processed to completion
//! before the next node's, like one actor mailbox each. Invariant checks record violations
//! instead of panicking so the property test can print the whole trace.
//!
//! Fault model limits (documented, not hidden): a node is never frozen and partitioned at once,
//! and a frozen agent's database never hangs (nor the other way round). A frozen agent whose
//! database is also unreachable to peers (cut off, or hung) cannot be fenced by anybody: when
//! both wake, the database takes writes until the agent fences it. That needs a watchdog
//! (open item).

mod checks;
mod exec;
mod store;

use super::*;
use std::collections::VecDeque;
pub use store::Db;
use store::{Rng, Store};

/// Simulated time step between ticks.
pub const TICK: Millis = 100;

/// Faults and operator requests the property test chooses from.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Let time pass (in ticks).
    Advance(u64),
    /// SIGSTOP the agent: no events, no keep-alives; its database keeps running.
    Freeze(usize),
    /// SIGCONT.
    Thaw(usize),
    /// Kill agent and database (PID 1 takes the database with it).
    CrashAgent(usize),
    /// Start agent and database again (database starts read-only).
    RestartAgent(usize),
    /// Kill only the database.
    CrashDb(usize),
    /// Start the database again, read-only.
    RestartDb(usize),
    /// The database hangs: it runs but answers nothing (its agent is fine).
    HangDb(usize),
    /// A hung database wakes up as it was (writable if it was).
    WakeDb(usize),
    /// Cut the node off from the store and its peers (its clients still reach it).
    Partition(usize),
    /// Reconnect.
    Heal(usize),
    /// The operator's health handler flips.
    Health(usize, bool),
    /// Set or clear the `maintenance` key.
    Maintenance(bool),
    /// Ask the current primary to hand over, to a named node or the best one.
    Switchover(Option<usize>),
    /// SIGTERM the agent (graceful stop, I6).
    Stop(usize),
    /// `autopilot upgrade-self`: when the node is ready to hand over, its agent re-executes;
    /// the new image keeps the lease and the running database (and its role, as primary).
    UpgradeInPlace(usize),
}

/// One simulated node.
pub struct Node {
    pub state: RoleState,
    pub params: RoleParams,
    pub agent_up: bool,
    pub frozen: bool,
    pub partitioned: bool,
    pub healthy: bool,
    lease: Option<u64>,
    want_lease: bool,
    inbox: VecDeque<(Millis, Event)>,
    next_keepalive: Millis,
}

/// The whole simulated world.
pub struct World {
    pub now: Millis,
    store: Store,
    pub nodes: Vec<Node>,
    pub dbs: Vec<Db>,
    rng: Rng,
    next_write: u64,
    max_watch_delay: Millis,
    /// Longest time a `CatchUp` takes to answer; longer than `settle` on purpose.
    max_catch_up_delay: Millis,
    /// Invariant violations found so far (empty = all good).
    pub violations: Vec<String>,
    /// (time, node, reason) of every promotion the executor carried out.
    pub promotions: Vec<(Millis, usize, ClaimReason)>,
    /// Print every event and action (debugging a shrunk failure).
    pub trace: bool,
}

/// Parameters every simulated node shares (ids and addresses differ).
pub fn params(i: usize) -> RoleParams {
    RoleParams {
        node_id: format!("n{i}"),
        address: format!("10.0.0.{i}:5432"),
        ttl: 3000,
        fence_after_permille: 500,
        settle: 1000,
        failover_cooldown: 8000,
        max_lag_on_failover: 1_000_000,
        priority: 100,
        nofailover: false,
        pre_promote: false,
        restore_from_backup: false,
        auto_rebuild: false,
        health_grace: 2000,
        migrate_from: None,
        upgrade_hook: true,
        rollback_hook: true,
    }
}

impl World {
    pub fn new(n: usize, seed: u64) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                state: RoleState::new(),
                params: params(i),
                agent_up: true,
                frozen: false,
                partitioned: false,
                healthy: true,
                lease: None,
                want_lease: false,
                inbox: VecDeque::from([(
                    0,
                    Event::Started {
                        now: 0,
                        has_data: false,
                        position: Position::default(),
                        identity: None,
                        term: 0,
                        adopted: None,
                    },
                )]),
                next_keepalive: 0,
            })
            .collect();
        let dbs = vec![
            Db {
                running: true,
                ..Db::default()
            };
            n
        ];
        Self {
            now: 0,
            store: Store::default(),
            nodes,
            dbs,
            rng: Rng(seed | 1),
            next_write: 1,
            max_watch_delay: 300,
            max_catch_up_delay: 2500,
            violations: Vec::new(),
            promotions: Vec::new(),
            trace: false,
        }
    }

    fn idx(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.params.node_id == id)
    }

    /// Whether `from`'s agent/executor can reach the store.
    fn store_ok(&self, i: usize) -> bool {
        !self.nodes[i].partitioned
    }

    /// Whether node `a` can reach node `b`'s database.
    fn reach(&self, a: usize, b: usize) -> bool {
        a == b || (!self.nodes[a].partitioned && !self.nodes[b].partitioned)
    }

    /// Apply a fault, respecting the fault model's exclusions.
    pub fn fault(&mut self, f: &Fault) {
        let n = self.nodes.len();
        match *f {
            Fault::Advance(ticks) => {
                for _ in 0..ticks {
                    self.tick();
                }
            }
            Fault::Freeze(i) if !self.nodes[i % n].partitioned && !self.dbs[i % n].hung => {
                self.nodes[i % n].frozen = true
            }
            Fault::Thaw(i) => self.nodes[i % n].frozen = false,
            Fault::CrashAgent(i) => self.crash(i % n),
            Fault::RestartAgent(i) => self.restart(i % n),
            Fault::CrashDb(i) => {
                let d = &mut self.dbs[i % n];
                d.running = false;
                d.writable = false;
                // The process actor reports the exit (the restart policy starts it again).
                let now = self.now;
                if self.nodes[i % n].agent_up {
                    self.nodes[i % n].inbox.push_back((
                        now,
                        Event::DatabaseExited {
                            now,
                            detail: "crashed".to_owned(),
                        },
                    ));
                }
            }
            Fault::RestartDb(i) if self.nodes[i % n].agent_up && !self.dbs[i % n].running => {
                self.restart_db(i % n)
            }
            Fault::HangDb(i) if self.dbs[i % n].running && !self.nodes[i % n].frozen => {
                self.dbs[i % n].hung = true
            }
            Fault::WakeDb(i) => self.dbs[i % n].hung = false,
            Fault::Partition(i) if !self.nodes[i % n].frozen => {
                self.nodes[i % n].partitioned = true
            }
            Fault::Heal(i) => self.nodes[i % n].partitioned = false,
            Fault::Health(i, h) => self.nodes[i % n].healthy = h,
            Fault::Maintenance(m) => {
                self.store.maintenance = m;
                self.changed();
            }
            Fault::Switchover(to) => {
                if let Some((pk, _)) = &self.store.primary {
                    let from = pk.node.clone();
                    self.store.switchover = Some(Switchover {
                        forced: false,
                        from,
                        to: to.map(|t| format!("n{}", t % n)),
                    });
                    self.changed();
                }
            }
            Fault::UpgradeInPlace(i)
                if self.nodes[i % n].agent_up
                    && !self.nodes[i % n].frozen
                    && !self.nodes[i % n].partitioned =>
            {
                self.upgrade_in_place(i % n)
            }
            Fault::Stop(i) => {
                let now = self.now;
                self.nodes[i % n]
                    .inbox
                    .push_back((now, Event::StopRequested { now }));
            }
            _ => {}
        }
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.agent_up = false;
        node.frozen = false;
        node.inbox.clear();
        node.lease = None;
        node.want_lease = false;
        self.dbs[i].running = false;
        self.dbs[i].writable = false;
    }

    fn restart(&mut self, i: usize) {
        if self.nodes[i].agent_up {
            return;
        }
        let d = &mut self.dbs[i];
        d.running = true;
        d.writable = false;
        d.upstream = None;
        let started = self.started(i, None);
        let node = &mut self.nodes[i];
        node.agent_up = true;
        node.inbox.push_back((self.now, started));
    }

    /// A new image's `Started` for node `i`, its database as it is now.
    fn started(&self, i: usize, adopted: Option<Millis>) -> Event {
        let d = &self.dbs[i];
        Event::Started {
            now: self.now,
            has_data: d.has_data,
            position: d.pos(),
            identity: None,
            term: u64::from(d.has_data),
            adopted,
        }
    }

    fn upgrade_in_place(&mut self, i: usize) {
        // The supervisor refuses while a restart of the database has not reached the role
        // logic (the process actor's PID differs from the one it last told it).
        let restart_pending = self.nodes[i].inbox.iter().any(|(_, e)| {
            matches!(
                e,
                Event::DatabaseExited { .. } | Event::DatabaseRestarted { .. }
            )
        });
        let Ok(role) = super::handover_ready(&self.nodes[i].state) else {
            return; // refused: nothing changes
        };
        if restart_pending {
            return;
        }
        let sent_at = self.nodes[i].state.lease_ok_sent_at;
        let started = self.started(i, (role == super::HandoverRole::Primary).then_some(sent_at));
        let node = &mut self.nodes[i];
        // What the old image had not handled yet dies with it; the lease and the database
        // stay.
        node.inbox.clear();
        node.inbox.push_back((self.now, started));
    }

    fn restart_db(&mut self, i: usize) {
        let d = &mut self.dbs[i];
        (d.running, d.writable, d.upstream) = (true, false, None);
        let now = self.now;
        self.nodes[i]
            .inbox
            .push_back((now, Event::DatabaseRestarted { now }));
    }

    /// Heal everything and let the cluster settle (the liveness phase).
    pub fn heal_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].frozen = false;
            self.nodes[i].partitioned = false;
            self.nodes[i].healthy = true;
            self.dbs[i].hung = false;
            self.restart(i);
            if self.nodes[i].agent_up && !self.dbs[i].running {
                self.restart_db(i);
            }
        }
        self.store.maintenance = false;
        self.changed();
    }

    /// A store mutation happened: deliver the new view to every watcher after a random delay.
    fn changed(&mut self) {
        self.store.rev += 1;
        let view = self.store.view(false);
        for i in 0..self.nodes.len() {
            if self.nodes[i].agent_up && self.store_ok(i) {
                let at = self.now + self.rng.below(self.max_watch_delay + 1);
                let now = at;
                self.nodes[i].inbox.push_back((
                    at,
                    Event::Cluster {
                        now,
                        view: view.clone(),
                    },
                ));
            }
        }
    }

    /// Advance one tick: expire leases, serve clients, replicate, keep alive, run agents.
    pub fn tick(&mut self) {
        self.now += TICK;
        let now = self.now;
        let expired: Vec<u64> = self
            .store
            .leases
            .iter()
            .filter(|l| l.1.1 <= now)
            .map(|l| *l.0)
            .collect();
        for id in &expired {
            self.store.drop_lease(*id);
        }
        if !expired.is_empty() {
            self.changed();
        }
        // Clients write to every database that accepts writes (acknowledged writes).
        for d in &mut self.dbs {
            if d.running && d.writable && !d.hung {
                d.received.push(self.next_write);
                d.log.push(self.next_write);
                self.next_write += 1;
            }
        }
        self.replicate();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].agent_up || self.nodes[i].frozen {
                continue;
            }
            self.keepalive(i);
            let healthy = self.nodes[i].healthy && self.dbs[i].running && !self.dbs[i].hung;
            let position = self.dbs[i].pos();
            let receiving = self.dbs[i]
                .upstream
                .map(|u| self.dbs[u].running && !self.dbs[u].hung && self.reach(i, u));
            if now.is_multiple_of(1000) {
                self.nodes[i].inbox.push_back((
                    now,
                    Event::Health {
                        now,
                        healthy,
                        answering: !self.dbs[i].hung,
                        receiving,
                        position,
                    },
                ));
            }
            self.nodes[i].inbox.push_back((now, Event::Tick { now }));
            self.run_node(i);
        }
        self.check_i1();
    }

    fn replicate(&mut self) {
        for i in 0..self.dbs.len() {
            let Some(u) = self.dbs[i].upstream else {
                continue;
            };
            if !self.dbs[i].running
                || !self.dbs[u].running
                || self.dbs[i].hung
                || self.dbs[u].hung
                || !self.reach(i, u)
                || self.rng.below(3) == 0
            {
                continue;
            }
            let src = self.dbs[u].clone();
            if src.log.starts_with(&self.dbs[i].received) {
                self.dbs[i].received = src.log;
                self.dbs[i].epoch = src.epoch;
            }
        }
        // Replay lags behind receipt.
        for d in &mut self.dbs {
            if d.running && d.received.len() > d.log.len() && self.rng.below(4) == 0 {
                d.log.clone_from(&d.received);
            }
        }
    }

    fn keepalive(&mut self, i: usize) {
        let now = self.now;
        if self.nodes[i].want_lease
            && self.store_ok(i)
            && let Some(id) = self.nodes[i].lease
            && self.store.leases.contains_key(&id)
        {
            // The lease an in-place upgrade kept: renewed, not granted anew.
            self.nodes[i].want_lease = false;
            self.nodes[i]
                .inbox
                .push_back((now, Event::LeaseGranted { now }));
            return;
        }
        if self.nodes[i].want_lease && self.store_ok(i) {
            let id = self.store.next_lease;
            self.store.next_lease += 1;
            self.store
                .leases
                .insert(id, (i, now + self.nodes[i].params.ttl));
            self.nodes[i].lease = Some(id);
            self.nodes[i].want_lease = false;
            self.nodes[i].next_keepalive = now + self.nodes[i].params.ttl / 3;
            self.put_node(i, Role::Unknown, self.dbs[i].pos(), false, None, false);
            self.nodes[i]
                .inbox
                .push_back((now, Event::LeaseGranted { now }));
            return;
        }
        let Some(id) = self.nodes[i].lease else {
            return;
        };
        if now < self.nodes[i].next_keepalive {
            return;
        }
        self.nodes[i].next_keepalive = now + self.nodes[i].params.ttl / 3;
        let ev = if !self.store_ok(i) {
            Event::KeepAliveFailed { now }
        } else if let Some(l) = self.store.leases.get_mut(&id) {
            l.1 = now + self.nodes[i].params.ttl;
            Event::KeepAliveOk { now, sent_at: now }
        } else {
            self.nodes[i].lease = None;
            Event::LeaseLost { now }
        };
        self.nodes[i].inbox.push_back((now, ev));
    }

    fn put_node(
        &mut self,
        i: usize,
        role: Role,
        position: Position,
        eligible: bool,
        caught_up_term: Option<u64>,
        database_killed: bool,
    ) {
        let Some(lease) = self.nodes[i]
            .lease
            .filter(|l| self.store.leases.contains_key(l))
        else {
            return;
        };
        let p = &self.nodes[i].params;
        let info = NodeInfo {
            id: p.node_id.clone(),
            address: p.address.clone(),
            role,
            position,
            priority: p.priority,
            eligible,
            caught_up_term,
            database_killed,
        };
        self.store.nodes.insert(i, (info, lease));
        self.changed();
    }

    /// Process every due event of node `i`, executing actions as they come.
    fn run_node(&mut self, i: usize) {
        let mut budget = 200;
        while budget > 0 && self.nodes[i].agent_up && !self.nodes[i].frozen {
            budget -= 1;
            let Some(k) = self.nodes[i].inbox.iter().position(|e| e.0 <= self.now) else {
                return;
            };
            let (_, ev) = self.nodes[i].inbox.remove(k).expect("index just found");
            let ev = retime(ev, self.now);
            let state = std::mem::take(&mut self.nodes[i].state);
            if self.trace && !matches!(ev, Event::Tick { .. }) {
                eprintln!("{} n{i} <- {ev:?}", self.now);
            }
            let (state, actions) = decide(&self.nodes[i].params, state, ev);
            if self.trace && !actions.is_empty() {
                eprintln!("{} n{i} -> {actions:?} => {:?}", self.now, state.phase);
            }
            self.nodes[i].state = state;
            for a in actions {
                self.check_action(i, &a);
                self.execute(i, a);
                self.check_i1();
            }
        }
    }

    fn answer(&mut self, i: usize, ev: Event) {
        self.nodes[i].inbox.push_back((self.now, ev));
    }

    fn engine(&mut self, i: usize, result: EngineResult) {
        let now = self.now;
        self.answer(i, Event::Engine { now, result });
    }

    fn my_lease_ok(&self, i: usize) -> Option<u64> {
        self.nodes[i]
            .lease
            .filter(|l| self.store.leases.contains_key(l) && self.store_ok(i))
    }
}

impl World {
    /// The node holding the `primary` key, if any.
    pub fn primary_index(&self) -> Option<usize> {
        self.store
            .primary
            .as_ref()
            .and_then(|p| self.idx(&p.0.node))
    }

    /// Liveness: some node is primary, with the key and a writable database.
    pub fn has_primary(&self) -> bool {
        self.store
            .primary
            .as_ref()
            .and_then(|p| self.idx(&p.0.node))
            .is_some_and(|i| {
                self.nodes[i].state.phase == Phase::Primary
                    && self.dbs[i].writable
                    && self.dbs[i].running
            })
    }
}

/// Delivered events carry the time they are processed (a late watch arrives "now").
fn retime(ev: Event, now: Millis) -> Event {
    match ev {
        Event::Cluster { view, .. } => Event::Cluster { now, view },
        Event::Tick { .. } => Event::Tick { now },
        Event::Engine { result, .. } => Event::Engine { now, result },
        other => other,
    }
}
