//! The state carried between calls of [`super::decide`]: a [`Phase`] saying what the node is
//! doing or waiting for, plus the facts it has learned (lease freshness, last view, position).

use super::types::{
    ClaimReason, ClusterView, Millis, NodeId, Position, PrimaryKey, Role, RoleParams,
};

/// Where the node is in its lifecycle; each phase names the answer it is waiting for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for `Started` and then a lease (`LeaseGranted`).
    Joining,
    /// Lease held; waiting for the cluster read that decides how to start.
    Discovering,
    /// Bootstrap (design §4 step 2) in progress, holding or asking for the `lock`.
    Bootstrap(BootStep),
    /// Initialised cluster, no primary, no local data: never initialise (I3), wait.
    WaitingForData,
    /// Cloning from `source` (a primary), or restoring a backup (`None`). Every engine's clone
    /// ends replicating from its source.
    Cloning { source: Option<PrimaryKey> },
    /// `Follow` sent; waiting for the engine's verdict (rewound, fine, or needs rebuild).
    Rejoining { target: PrimaryKey },
    /// A replica of `following`; `None` while there is no primary (or we wait for one).
    Replica { following: Option<NodeId> },
    /// The primary key vanished: catching up, publishing the final position, waiting for the
    /// settle window to end and for every eligible peer's final position.
    Electing {
        /// When this node learned the primary was gone; the settle window starts here.
        since: Millis,
        /// The election's round: the `history` revision of the vanished primary's term. Every
        /// candidate of one round reads the same value (only a claim changes it).
        term: u64,
    },
    /// `ClaimPrimary` sent. `old` is the previous primary (from `history`), to fence on winning.
    Claiming {
        reason: ClaimReason,
        old: Option<PrimaryKey>,
    },
    /// Won the key; going through the promotion steps.
    Promoting {
        step: PromoteStep,
        reason: ClaimReason,
        /// The primary this node takes over from, if there was one.
        from: Option<NodeId>,
    },
    /// Holds the key and accepts writes.
    Primary,
    /// Was primary, fenced itself (I1); stays read-only until it learns the current state.
    SelfFenced {
        /// When we fenced: only a keep-alive *sent after this* proves the lease survived.
        fenced_at: Millis,
    },
    /// Planned switchover, old primary side: fence sent; then release the key.
    HandingOver,
    /// Local data diverged and cannot be rewound; an operator or the backup actor must rebuild.
    NeedsRebuild,
    /// A replica's database restarts at an operator's request (`RestartDatabase` →
    /// `Restarted`); then it follows the primary again.
    Restarting,
    /// A replica's database is stopped, upgraded (or rolled back) and started again
    /// (`UpgradeDatabase` → `Upgraded`, `RollbackDatabase` → `RolledBack`); then it follows
    /// the primary again while [`RoleState::upgrade`] checks it.
    Upgrading,
    /// The primary restores the cluster in place at an operator's request
    /// (`RestoreInPlace` → `RestoredInPlace`); it keeps the `primary` key throughout (the
    /// cluster is in maintenance), then serves the restored data as a new term.
    Restoring,
    /// The standby leader ends a live migration at an operator's request (`StopSource` →
    /// `SourceStopped`, `EndMigration` → `MigrationEnded`, `Promote` → `Promoted`); it keeps
    /// the `primary` key throughout. `since`: when the source was asked to stop writes (the
    /// write outage runs from there).
    CuttingOver { since: Millis },
    /// The local data belongs to another database than the cluster's (its identity differs
    /// from `initialized`): the node takes no part and never touches the data until an
    /// operator moves it aside and restarts the agent.
    Foreign {
        /// The identity of the local data.
        ours: String,
        /// The cluster's.
        cluster: String,
    },
    /// Graceful stop (I6): fence sent; then revoke the lease and exit.
    Stopping,
    /// Done; nothing more will happen.
    Stopped,
}

/// Bootstrap steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootStep {
    /// `AcquireLock` sent.
    Locking,
    /// Lock held; re-reading the cluster (someone may have initialised meanwhile).
    Rechecking,
    /// Lock held; `Initialize` sent.
    Initializing,
    /// Lock held; claim (with `initialized`) sent.
    Claiming,
}

/// Promotion steps after winning the key, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromoteStep {
    /// `FenceRemote` sent to the previous primary.
    FencingOld { address: String },
    /// `CatchUpTo` the old primary's final position sent.
    CatchingUp,
    /// `prePromote` running.
    PrePromote,
    /// `Promote` sent.
    Promoting,
}

/// Everything the machine remembers between events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleState {
    /// What we are doing now.
    pub phase: Phase,
    /// The role last announced through onChange (to detect role changes).
    pub role: Role,
    /// The primary address last announced through onChange (to detect primary changes).
    pub announced_primary: Option<String>,
    /// The primary we follow or last saw; the candidate to fence and the reference for lag.
    pub last_primary: Option<PrimaryKey>,
    /// The last position we saw the primary publish (for `max_lag_on_failover`).
    pub last_primary_position: Option<Position>,
    /// The local database holds data (bootstrap marker or engine report). I3 hinges on this.
    pub has_data: bool,
    /// Our latest known position.
    pub position: Position,
    /// Latest health verdict, after the primary's grace ([`RoleParams::health_grace`]).
    pub healthy: bool,
    /// Since when the probes have said unhealthy without a break (the grace runs from here).
    pub unhealthy_since: Option<Millis>,
    /// The last healthy probe came while primary: only such a primary gets the grace.
    pub healthy_as_primary: bool,
    /// We hold a lease (granted and not reported lost).
    pub lease_alive: bool,
    /// Send time of the last successful keep-alive; the fencing clock runs from here.
    pub lease_ok_sent_at: Millis,
    /// The latest cluster view.
    pub view: Option<ClusterView>,
    /// Not eligible for election before this time (after an aborted promotion or a handover).
    pub ineligible_until: Millis,
    /// Stop was requested; act on it as soon as the current step allows.
    pub stop_requested: bool,
    /// Earliest time of the next periodic re-read (watches may be late or lost).
    pub next_poll: Millis,
    /// The members last sent with `SetReplicas` while primary; `None` until sent.
    pub replicas_sent: Option<Vec<(NodeId, String)>>,
    /// The election round (see [`Phase::Electing`]) for which `position` is final: everything
    /// received was applied after the primary vanished. Published so peers can wait for it.
    pub caught_up_term: Option<u64>,
    /// We killed our database because it did not answer, and have not been primary since
    /// (published: a candidate need not fence it).
    pub database_killed: bool,
    /// A self-fence has not been answered yet: by this time the database is killed instead,
    /// before the lease can have expired and a successor can take writes (I1).
    pub fence_deadline: Option<Millis>,
    /// Since when this replica, following an online primary, has not been receiving from it.
    pub not_receiving_since: Option<Millis>,
    /// It did not receive for [`RoleParams::stall_after`] while it followed an online
    /// primary: no failover candidate until it receives again. Frozen while it follows
    /// nobody, so an election judges it by how it replicated while the primary lived.
    pub stalled: bool,
    /// Why the database last exited on its own (status and last error line), published in
    /// the node key until it runs healthy again.
    pub database_exit: Option<String>,
    /// An `Unfence` is in flight (a primary that re-took writes after a fence).
    pub unfencing: bool,
    /// The last `Unfence` failed (the database did not answer): sent again once the
    /// database is healthy, so a primary never stays read-only.
    pub unfence_again: bool,
    /// The identity of the local data when the agent started (`None`: unknown or none).
    pub identity: Option<String>,
    /// The term of the cluster's identity the local data belongs to (from the bootstrap
    /// marker; set anew when the data is replaced).
    pub data_term: u64,
    /// The cluster's term when the running clone or restore began: the term of its data.
    pub clone_term: u64,
    /// When the node key was last published, and whether it said eligible: a position that
    /// merely moved is republished at most every `POSITION_REFRESH` outside elections (write economy).
    pub published: Option<(Millis, bool)>,
    /// What we wait for now and since when ([`Wait`]): logged and published when it starts
    /// and when it ends.
    pub waiting: Option<(Wait, Millis)>,
    /// The `history` revision our last won (or pending) failover claim was conditioned on.
    /// The claim rewrote `history`, so a watch update still showing this revision predates
    /// it (watch events written just before the claim can arrive after its answer): a new
    /// primary must not take such a view's missing key for the loss of its own.
    pub claimed_over_history: Option<u64>,
    /// The modification revision of the last operator request (`requests/<id>`) carried
    /// out or refused: the same request is never acted on twice while its delete travels.
    pub requests_handled: u64,
    /// An upgrade in progress on this replica (from the `upgrade` request until it proved
    /// healthy and caught up, or was rolled back): out of the failover candidates.
    pub upgrade: Option<UpgradeCheck>,
}

/// An upgrade's progress, kept while it runs and is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeCheck {
    /// When the request was taken.
    pub since: Millis,
    /// How long the node has, once its database runs again, to be healthy and caught up.
    pub deadline: Millis,
    /// While the database runs again: by when it must be healthy and caught up.
    pub until: Option<Millis>,
    /// The primary's position when the database was started again: caught up means at or
    /// past it.
    pub target: Option<Position>,
    /// Why the upgrade failed, once it did: the rollback runs or is checked.
    pub failed: Option<String>,
    /// A probe found the database healthy since it was started again (a verdict from before
    /// the stop does not count).
    pub seen_healthy: bool,
}

impl RoleState {
    /// A freshly started agent.
    pub fn new() -> Self {
        Self {
            phase: Phase::Joining,
            role: Role::Unknown,
            announced_primary: None,
            last_primary: None,
            last_primary_position: None,
            has_data: false,
            position: Position::default(),
            healthy: true,
            unhealthy_since: None,
            healthy_as_primary: false,
            lease_alive: false,
            lease_ok_sent_at: 0,
            view: None,
            ineligible_until: 0,
            stop_requested: false,
            next_poll: 0,
            replicas_sent: None,
            caught_up_term: None,
            database_killed: false,
            fence_deadline: None,
            not_receiving_since: None,
            stalled: false,
            database_exit: None,
            unfencing: false,
            unfence_again: false,
            identity: None,
            data_term: 0,
            clone_term: 0,
            published: None,
            waiting: None,
            claimed_over_history: None,
            requests_handled: 0,
            upgrade: None,
        }
    }

    /// Whether we would compete in an election now (before the lag check against a view).
    pub fn eligible(&self, p: &RoleParams, now: Millis) -> bool {
        self.ineligible(p, now).is_none()
    }

    /// Why we would not compete in an election now; `None` when we would. The first reason
    /// in this order is the one reported.
    pub fn ineligible(&self, p: &RoleParams, now: Millis) -> Option<Ineligible> {
        Some(match self.phase {
            Phase::Stopping | Phase::Stopped => Ineligible::Stopping,
            Phase::Foreign { .. } => Ineligible::Refused,
            Phase::NeedsRebuild => Ineligible::NeedsRebuild,
            Phase::HandingOver => Ineligible::HandingOver,
            Phase::Restarting => Ineligible::Restarting,
            Phase::Upgrading => Ineligible::Upgrading,
            _ if self.upgrade.is_some() => Ineligible::Upgrading,
            Phase::Restoring => Ineligible::Restoring,
            _ if p.nofailover => Ineligible::NoFailover,
            _ if !self.has_data => Ineligible::NoData,
            _ if p.migrate_from.is_none()
                && self.view.as_ref().is_some_and(|v| v.standby_of.is_some()) =>
            {
                Ineligible::NoSource
            }
            _ if self.old_term() => Ineligible::OldTerm {
                ours: self.data_term,
                cluster: self.cluster_term(),
            },
            _ if !self.healthy => Ineligible::Unhealthy,
            _ if self.stalled => Ineligible::Stalled,
            _ if now < self.ineligible_until => Ineligible::Backoff {
                until: self.ineligible_until,
            },
            _ => match self.lag() {
                Some(behind) if behind > p.max_lag_on_failover => Ineligible::Lagging {
                    behind,
                    max: p.max_lag_on_failover,
                },
                _ => return None,
            },
        })
    }

    /// How far behind the last known primary position we are (`None`: not comparable).
    fn lag(&self) -> Option<u64> {
        self.last_primary_position
            .and_then(|pp| self.position.lag_behind(&pp))
    }

    /// The term of the cluster's identity as we last saw it (0: not seen yet).
    pub fn cluster_term(&self) -> u64 {
        self.view.as_ref().map_or(0, |v| v.term)
    }

    /// Our data belongs to another term than the cluster's (an in-place restore began a
    /// newer one, or ours never became the cluster's): never promoted, rebuilt.
    pub fn old_term(&self) -> bool {
        let cluster = self.cluster_term();
        self.has_data && cluster > 0 && self.data_term != cluster
    }

    /// Maintenance as we last saw it.
    pub fn maintenance(&self) -> bool {
        self.view.as_ref().is_some_and(|v| v.maintenance)
    }
}

/// Why a node does not take part in failovers now ([`RoleState::ineligible`]); published in
/// its node key (`ineligible`) so operators see the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ineligible {
    /// Tagged `nofailover`.
    NoFailover,
    /// Its health check fails.
    Unhealthy,
    /// It has no data yet.
    NoData,
    /// It aborted a promotion or handed over a moment ago: out until `until`.
    Backoff {
        /// When it may compete again.
        until: Millis,
    },
    /// It stopped receiving from its primary.
    Stalled,
    /// Its data diverged from the primary's.
    NeedsRebuild,
    /// Its data belongs to another database.
    Refused,
    /// It is handing over its primary role.
    HandingOver,
    /// Its database restarts at an operator's request.
    Restarting,
    /// Its database is upgraded or rolled back, or has not yet proven healthy and caught up
    /// since.
    Upgrading,
    /// Its data belongs to an older term of the cluster's identity.
    OldTerm {
        /// The term of its data.
        ours: u64,
        /// The cluster's.
        cluster: u64,
    },
    /// It restores the cluster in place.
    Restoring,
    /// The cluster migrates from an external source and this node's configuration names
    /// none: it could not lead the cluster.
    NoSource,
    /// Its agent is stopping.
    Stopping,
    /// Further behind the last known primary position than `max_lag_on_failover`.
    Lagging {
        /// How far behind (the engine's position unit: WAL bytes, transactions).
        behind: u64,
        /// `max_lag_on_failover`.
        max: u64,
    },
}

impl std::fmt::Display for Ineligible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoFailover => f.write_str("tagged nofailover (node.nofailover)"),
            Self::Unhealthy => f.write_str("its health check fails"),
            Self::NoData => f.write_str("it has no data yet (starting or cloning)"),
            Self::Backoff { until } => write!(
                f,
                "it gave up a promotion or handed over a moment ago; it competes again at {}",
                cluster::wire::Timestamp::from_unix_millis(*until)
            ),
            Self::Stalled => f.write_str(
                "it stopped receiving from its primary (replication stalled); it competes again \
                 once it receives",
            ),
            Self::NeedsRebuild => f.write_str(
                "its data diverged from the primary's and must be rebuilt (autopilotctl reinit)",
            ),
            Self::Refused => f.write_str("its data belongs to another database"),
            Self::HandingOver => f.write_str("it is handing over its primary role"),
            Self::Restarting => f.write_str("its database restarts at an operator's request"),
            Self::Upgrading => f.write_str(
                "its database is being upgraded (or rolled back) and has not yet proven healthy \
                 and caught up",
            ),
            Self::OldTerm { ours, cluster } => write!(
                f,
                "its data belongs to term {ours} of the cluster's identity, before the in-place \
                 restore that began term {cluster}: it is rebuilt from the primary, never promoted"
            ),
            Self::Restoring => f.write_str("it restores the cluster in place"),
            Self::NoSource => f.write_str(
                "the cluster replicates from an external source (a live migration) and this \
                 node's configuration names none (cluster.bootstrap.migrate_from)",
            ),
            Self::Stopping => f.write_str("its agent is stopping"),
            Self::Lagging { behind, max } => write!(
                f,
                "behind the last known primary position by {behind} (WAL bytes or \
                 transactions), more than failover.max_lag {max}"
            ),
        }
    }
}

/// Something the node waits for before it acts, derived from the state after each step
/// ([`RoleState::wait`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// No primary, and the failover cooldown (I5) holds the election until `until`.
    Cooldown {
        /// When the last failover happened.
        last: Millis,
        /// When the cooldown ends.
        until: Millis,
    },
    /// No primary, and maintenance mode holds the election (I4).
    Maintenance,
    /// An election waits for its eligible peers' final positions (at most until `until`).
    PeerPositions {
        /// When the election goes on without them.
        until: Millis,
    },
    /// The primary holds its key but is not online yet.
    PrimaryOnline {
        /// The new primary.
        primary: NodeId,
    },
    /// The cluster is initialised, has no primary, and this node has no data (I3).
    Data,
}

impl Wait {
    /// The deadline, when there is one.
    pub fn until(&self) -> Option<Millis> {
        match self {
            Self::Cooldown { until, .. } | Self::PeerPositions { until } => Some(*until),
            _ => None,
        }
    }
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use cluster::wire::Timestamp as T;
        match self {
            Self::Cooldown { last, until } => write!(
                f,
                "failover held by the cooldown until {}: the last failover was at {} \
                 (failover.cooldown)",
                T::from_unix_millis(*until),
                T::from_unix_millis(*last)
            ),
            Self::Maintenance => f.write_str(
                "no primary, and maintenance mode holds the failover (resume to end it)",
            ),
            Self::PeerPositions { until } => write!(
                f,
                "election waiting for the eligible peers' final positions (at most until {})",
                T::from_unix_millis(*until)
            ),
            Self::PrimaryOnline { primary } => {
                write!(f, "waiting for the new primary {primary} to come online")
            }
            Self::Data => f.write_str(
                "cluster initialised, no primary and no local data: waiting for a node with data",
            ),
        }
    }
}

impl Default for RoleState {
    fn default() -> Self {
        Self::new()
    }
}
