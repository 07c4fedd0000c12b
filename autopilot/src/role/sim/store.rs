//! The simulated etcd (leases, keys, revisions, history) and the simulated database.

use super::super::*;
use std::collections::BTreeMap;

/// xorshift64*: deterministic from the proptest-chosen seed.
pub(super) struct Rng(pub u64);
impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// The simulated etcd.
#[derive(Default)]
pub(super) struct Store {
    pub rev: u64,
    /// lease id → (owner, expires_at)
    pub leases: BTreeMap<u64, (usize, Millis)>,
    pub next_lease: u64,
    pub primary: Option<(PrimaryKey, u64)>,
    pub lock: Option<(usize, u64)>,
    pub initialized: bool,
    pub maintenance: bool,
    /// (at, to, reason)
    pub history: Vec<(Millis, PrimaryKey, ClaimReason)>,
    pub history_rev: u64,
    pub switchover: Option<Switchover>,
    pub nodes: BTreeMap<usize, (NodeInfo, u64)>,
}

impl Store {
    pub fn view(&self, linearizable: bool) -> ClusterView {
        // History as the real documents hold it, read by the real rules (cooldown, I5).
        let entries: Vec<cluster::wire::HistoryEntry> = self
            .history
            .iter()
            .map(|(at, to, reason)| cluster::wire::HistoryEntry {
                time: cluster::wire::Timestamp::from_unix_millis(*at),
                from: None,
                to: to.node.clone(),
                to_address: Some(to.address.clone()),
                reason: (*reason).into(),
                position: Position::default(),
            })
            .collect();
        let (last_failover_at, history_last) = history_facts(&entries);
        ClusterView {
            identity: None,
            linearizable,
            revision: self.rev,
            primary: self.primary.as_ref().map(|p| p.0.clone()),
            // Like the real executor: the key says `online` once its holder published itself
            // as primary after promoting.
            primary_starting: self.primary.as_ref().is_some_and(|p| {
                !self
                    .nodes
                    .values()
                    .any(|n| n.0.id == p.0.node && n.0.role == Role::Primary)
            }),
            initialized: self.initialized,
            maintenance: self.maintenance,
            last_failover_at,
            history_rev: self.history_rev,
            history_last,
            switchover: self.switchover.clone(),
            nodes: self.nodes.values().map(|n| n.0.clone()).collect(),
            requests: Vec::new(),
            restore_points: Vec::new(),
            upgrade_orders: Vec::new(),
            // No in-place restores here: the first term from the bootstrap on.
            term: u64::from(self.initialized),
            // No migrations here either.
            standby_of: None,
        }
    }
    pub fn drop_lease(&mut self, id: u64) {
        self.leases.remove(&id);
        if self.primary.as_ref().is_some_and(|p| p.1 == id) {
            self.primary = None;
        }
        if self.lock.is_some_and(|l| l.1 == id) {
            self.lock = None;
        }
        self.nodes.retain(|_, n| n.1 != id);
        self.rev += 1;
    }
}

/// A simulated database.
#[derive(Clone, Default)]
pub struct Db {
    pub running: bool,
    pub writable: bool,
    /// Runs but answers nothing (SIGSTOP, I/O hang): takes no writes and no fence while
    /// hung, and takes writes again on waking if it was writable.
    pub hung: bool,
    pub has_data: bool,
    /// Applied writes; the position counts these.
    pub log: Vec<u64>,
    /// Received but possibly not yet applied (relay log / WAL not replayed); `CatchUp` applies.
    pub received: Vec<u64>,
    pub epoch: u64,
    pub upstream: Option<usize>,
}
impl Db {
    pub fn pos(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.log.len() as u64,
        }
    }
}
