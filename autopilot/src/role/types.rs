//! The vocabulary of the role state machine: parameters, what the store shows, events in,
//! actions out, and the state carried between calls of [`super::decide`].
//!
//! Everything here is plain data (no handles, no clocks) so that the decision function stays
//! pure and the simulator in `sim.rs` can drive it exactly like the real actor does.

/// Milliseconds since an epoch chosen by the caller. The machine never reads a clock: every
/// event carries `now`, so tests control time completely. The real actor passes wall-clock
/// milliseconds (history timestamps are compared across nodes for the cooldown, see I5).
pub type Millis = u64;

/// A node's unique id within its cluster (the `nodes/<id>` key part). Ties between equally
/// advanced candidates are broken by the *lowest* id, so the order must be total.
pub type NodeId = String;

/// How far a database's data goes (see [`cluster::wire::Position`]): engines report it,
/// the machine compares it, the documents carry it.
pub use cluster::wire::Position;

/// The knobs of the machine, one node's view. Built from the YAML config by the actor.
#[derive(Clone, Debug)]
pub struct RoleParams {
    /// This node's id: whose keys are ours, who we are in tie-breaks.
    pub node_id: NodeId,
    /// Address clients and replicas reach this node's database at; goes into the primary key
    /// and onChange so followers and proxies know where to connect.
    pub address: String,
    /// The lease TTL. A node's keys (`nodes/<id>`, `primary`) vanish this long after its last
    /// successful keep-alive.
    pub ttl: Millis,
    /// Fence a primary once no keep-alive has succeeded for `ttl * fence_after_permille / 1000`.
    /// Why this is safe: etcd can only expire the lease `ttl` after the server *received* the
    /// last successful keep-alive, which is after the agent *sent* it; we measure from the send
    /// time, so the lease lives at least `ttl` past our reference point. Fencing at 500‰ leaves
    /// `ttl/2` for the fence itself to finish and for clock-rate drift between hosts. Must be
    /// well below 1000; the default is 500.
    pub fence_after_permille: u32,
    /// How long after the primary key vanished candidates wait before comparing positions, so
    /// every replica has seen the deletion (watch delay), finished applying what it received
    /// and published its position.
    pub settle: Millis,
    /// After a failover, no further *automatic* failover for this long (I5), measured from the
    /// `history` entry in the store so it holds cluster-wide.
    pub failover_cooldown: Millis,
    /// A replica further behind the last known primary position than this does not compete.
    pub max_lag_on_failover: u64,
    /// Preference among equally advanced candidates; higher wins.
    pub priority: u32,
    /// Never promote this node automatically, and never pick it as a switchover target.
    pub nofailover: bool,
    /// The operator configured a `prePromote` handler; it runs after winning, before promoting.
    pub pre_promote: bool,
    /// A node with no data in an initialised cluster without a primary restores from the
    /// latest backup instead of waiting for a node with data.
    pub restore_from_backup: bool,
    /// A node whose data diverged from the primary's (errant transactions that cannot be
    /// rewound) re-clones itself from the primary instead of waiting for an operator.
    pub auto_rebuild: bool,
    /// How long a primary that was healthy while primary may look unhealthy before the
    /// machine acts on it: one failed check must not make a primary hand over (a crashed
    /// database is reported at once as `DatabaseExited` instead). Replicas get no grace: a
    /// replica whose database is restarting (after a clone, say) must not look eligible, win
    /// an election and then hand over at once when the grace runs out. A database that does
    /// not answer at all gets none either: the probe already waited its limit, and a hung
    /// primary must hand over within the health budget.
    pub health_grace: Millis,
    /// The external database this node's configuration migrates from
    /// (`cluster.bootstrap.migrate_from`, `host:port`): a cluster it bootstraps starts as a
    /// standby of that source, and while the cluster migrates this node can lead it (a node
    /// without it is not eligible then: it could not reach the source).
    pub migrate_from: Option<String>,
    /// `handlers.upgrade` is configured: this node can carry out `upgrade` requests.
    pub upgrade_hook: bool,
    /// `handlers.rollback` is configured: a failed upgrade is rolled back.
    pub rollback_hook: bool,
}

impl RoleParams {
    /// How long a primary may go without a successful keep-alive before it fences itself.
    pub fn fence_after(&self) -> Millis {
        self.ttl * u64::from(self.fence_after_permille) / 1000
    }

    /// How long a replica following an online primary may go without receiving from it
    /// before it stops being a failover candidate: long enough for a receiver to connect
    /// after a start, a clone or a failover, short enough that a replica that never
    /// replicates is never preferred.
    pub fn stall_after(&self) -> Millis {
        self.ttl.max(5_000)
    }
}

/// A role as announced to onChange handlers, `/primary`, metrics and the node key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Not serving yet: starting, discovering, waiting for data, cloning or rebuilding.
    Unknown,
    /// Following a primary (or waiting for one) and read-only.
    Replica,
    /// Holds the `primary` key and accepts writes.
    Primary,
    /// Was primary, made itself read-only because it can no longer prove it holds the key.
    Fenced,
}

impl Role {
    /// The role's name in handler variables, `/health` and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Fenced => "fenced",
            Role::Unknown => "unknown",
        }
    }
}

/// What the `primary` key says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrimaryKey {
    /// The holder; the key is bound to its lease.
    pub node: NodeId,
    /// Where its database is, for followers and the remote fence.
    pub address: String,
}

/// What a `nodes/<id>` key says about a peer (or this node, as last published).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The peer's id.
    pub id: NodeId,
    /// Where its database is.
    pub address: String,
    /// The role it announced.
    pub role: Role,
    /// Its replication position, published after it finished applying received data.
    pub position: Position,
    /// Its failover priority.
    pub priority: u32,
    /// Whether it would take part in a failover right now (healthy, has data, not `nofailover`,
    /// not lagging, not a demoted primary handing over). Computed by the peer itself.
    pub eligible: bool,
    /// The election round for which `position` is the peer's final position (it applied
    /// everything it received after the primary vanished); `None` outside elections.
    pub caught_up_term: Option<u64>,
    /// Its agent killed its database (it did not answer, so it could not be fenced) and it
    /// has not been primary since: nothing there can take writes, no need to fence it.
    pub database_killed: bool,
}

/// A planned switchover request (the `switchover` key), written by the coordinator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switchover {
    /// The primary that should step down; ignored by everybody if it is not the current one.
    pub from: NodeId,
    /// The node to promote; `None` lets the usual ranking choose the best replica.
    pub to: Option<NodeId>,
    /// An operator's forced failover rather than a switchover (recorded as `manual_failover`).
    pub forced: bool,
}

/// One consistent read of the cluster prefix (or the watch cache after a change).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// A linearizable read (answer to `ReadCluster`) rather than the watch cache; elections
    /// are decided only on such reads so every peer's latest published position counts.
    pub linearizable: bool,
    /// etcd revision of the read; lets the actor drop views older than one it already fed.
    pub revision: u64,
    /// The `primary` key, if present.
    pub primary: Option<PrimaryKey>,
    /// The `primary` key still says `starting`: its holder won the key but has not finished
    /// promoting (it may still be catching up to the old primary's final position). Nobody
    /// follows or clones it yet: a replica that is ahead of it for now would wrongly find
    /// its own data errant.
    pub primary_starting: bool,
    /// Whether the `initialized` key exists (I3: then nobody may initialise again).
    pub initialized: bool,
    /// The identity of the cluster's data as `initialized` records it (`None` when it
    /// records none: clusters bootstrapped before identities, the `process` engine).
    pub identity: Option<String>,
    /// Whether the `maintenance` key exists (I4: then no automatic role change).
    pub maintenance: bool,
    /// Time of the last *failover* in `history` (I5 cooldown, cluster-wide).
    pub last_failover_at: Option<Millis>,
    /// Modification revision of the `history` key; a failover claim only succeeds if history
    /// is still at this revision, so two nodes cannot both pass the cooldown check on stale reads.
    pub history_rev: u64,
    /// The latest primary recorded in `history`: the one to fence after winning, even when
    /// this node never saw its key (it may have restarted since).
    pub history_last: Option<PrimaryKey>,
    /// A pending switchover request.
    pub switchover: Option<Switchover>,
    /// All `nodes/<id>` keys, including our own.
    pub nodes: Vec<NodeInfo>,
    /// Operators' requests (`requests/<node>`): the node, what it should do, and the key's
    /// modification revision (a request is carried out once).
    pub requests: Vec<(NodeId, NodeAction, u64)>,
    /// The points of `restore` requests, by node.
    pub restore_points: Vec<(NodeId, RestorePoint)>,
    /// The terms of `upgrade` requests, by node.
    pub upgrade_orders: Vec<(NodeId, cluster::wire::UpgradeOrder)>,
    /// The term of the cluster's identity (`initialized`; 1 from the bootstrap, one more per
    /// in-place restore; 0 before the bootstrap).
    pub term: u64,
    /// A live migration in progress (`initialized`): the external source the cluster
    /// replicates from until its cutover. The `primary` key's holder is then a standby
    /// leader (read-only, replicating from the source).
    pub standby_of: Option<String>,
}

/// What an operator asks one node to do (`requests/<node>`).
pub use cluster::wire::NodeAction;
/// The point an in-place restore rewinds the cluster to.
pub use cluster::wire::RestorePoint;

/// Why a node took the `primary` key; recorded in `history`, and only `Failover` counts for I5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClaimReason {
    /// First primary of a new cluster.
    Bootstrap,
    /// The primary key vanished and this node won the election.
    Failover,
    /// A planned handover requested through the `switchover` key.
    Switchover,
    /// An operator's forced failover (the `switchover` key with `failover: true`); not
    /// counted for the cooldown.
    ManualFailover,
}

impl From<ClaimReason> for cluster::wire::HistoryReason {
    fn from(r: ClaimReason) -> Self {
        match r {
            ClaimReason::Bootstrap => Self::Bootstrap,
            ClaimReason::Failover => Self::Failover,
            ClaimReason::Switchover => Self::Switchover,
            ClaimReason::ManualFailover => Self::ManualFailover,
        }
    }
}

/// What a [`Action::PublishEvent`] reports: the event's `kind` in `events/*` (one
/// `cluster::wire::EventKind` each, `docs/etcd-keys.md`) and, as its label, the `event`
/// field of the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    /// A primary made its database read-only (I1).
    Fenced,
    /// This node initialised the cluster and became its first primary.
    Promoted,
    /// An election after the primary was lost promoted this node.
    Failover,
    /// A planned switchover promoted this node.
    Switchover,
    /// The lease expired before the node could renew it.
    LeaseLost,
    /// A replica follows a primary (after a clone, a rejoin or a failover).
    Joined,
    /// A won election was given up (the old primary could not be fenced, prePromote failed…).
    PromotionAborted,
    /// A primary steps down on purpose (switchover, a broken database).
    Handover,
    /// The database did not take the fence and was killed.
    DatabaseKilled,
    /// The database exited on its own.
    DatabaseExited,
    /// Local data diverged from the primary's.
    NeedsRebuild,
    /// An initialised cluster without a primary, and no local data (I3).
    WaitingForData,
    /// A replica stopped receiving from its primary: no failover candidate.
    ReplicationStalled,
    /// A stalled replica receives again.
    ReplicationResumed,
    /// A switchover request named no eligible target.
    SwitchoverRejected,
    /// The local data belongs to another database than the cluster's: refused to join.
    ForeignData,
    /// An operator's request was carried out (or started: a rebuild).
    RequestDone,
    /// An operator's request was refused or failed.
    RequestFailed,
    /// The cluster's identity began a new term, or this node rebuilds for one.
    NewTerm,
    /// A live migration's cutover began.
    Cutover,
    /// An upgrade began.
    Upgrading,
    /// An upgrade ended well.
    Upgraded,
    /// An upgrade failed and was rolled back.
    UpgradeRolledBack,
    /// An upgrade failed and the rollback did not bring the node back.
    UpgradeFailed,
    /// The agent re-executed in place and took over the database and the lease.
    AgentUpgraded,
}

impl Notice {
    /// The label written in events and logs.
    pub fn label(self) -> &'static str {
        match self {
            Notice::Fenced => "fenced",
            Notice::Promoted => "promoted",
            Notice::Failover => "failover",
            Notice::Switchover => "switchover",
            Notice::LeaseLost => "lease_lost",
            Notice::Joined => "joined",
            Notice::PromotionAborted => "promotion_aborted",
            Notice::Handover => "handover",
            Notice::DatabaseKilled => "database_killed",
            Notice::DatabaseExited => "database_exited",
            Notice::NeedsRebuild => "needs_rebuild",
            Notice::WaitingForData => "waiting_for_data",
            Notice::ReplicationStalled => "replication_stalled",
            Notice::ReplicationResumed => "replication_resumed",
            Notice::SwitchoverRejected => "switchover_rejected",
            Notice::ForeignData => "foreign_data",
            Notice::RequestDone => "request_done",
            Notice::RequestFailed => "request_failed",
            Notice::NewTerm => "new_term",
            Notice::Cutover => "cutover",
            Notice::Upgrading => "upgrading",
            Notice::Upgraded => "upgraded",
            Notice::UpgradeRolledBack => "upgrade_rolled_back",
            Notice::UpgradeFailed => "upgrade_failed",
            Notice::AgentUpgraded => "agent_upgraded",
        }
    }
}

/// What an event says besides its kind and text (`events/*`: `from`, `to`, `position`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The primary a new primary took over from.
    pub from: Option<String>,
    /// The new primary, or the primary a replica now follows.
    pub to: Option<String>,
    /// This node's position when it happened.
    pub position: Option<Position>,
}

/// Results of database operations, reported by the engine executor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineResult {
    /// `Initialize` done: a fresh (or adopted) database at `position`.
    Initialized { position: Position },
    /// `CloneFrom` / `RestoreFromBackup` done and replication started.
    Cloned { position: Position },
    /// `Follow` done: replicating from the requested primary (after a rewind if one was needed).
    Following { position: Position },
    /// `Follow` refused: local data has transactions the primary lacks and cannot be rewound.
    NeedsRebuild,
    /// `CatchUpTo` done: applied up to the old primary's final position (or as far as it got).
    CaughtUp { position: Position },
    /// `CatchUp { term }` done: everything received is applied; this is the final position
    /// for election round `term`.
    ElectionCaughtUp { term: u64, position: Position },
    /// `RestartDatabase` done: `Err` with why it failed.
    Restarted(Result<(), String>),
    /// `ReloadDatabase` done: `Err` with why it failed.
    Reloaded(Result<(), String>),
    /// `UpgradeDatabase` done: the database was stopped, the upgrade hook ran and the
    /// database was started again; `Err` with why a step failed.
    Upgraded(Result<(), String>),
    /// `RollbackDatabase` done, likewise with the rollback hook.
    RolledBack(Result<(), String>),
    /// `FenceRemote` done. `final_position` is the old primary's position after fencing, or
    /// `None` if it was not running (nothing to fence, nothing to catch up to).
    RemoteFenced { final_position: Option<Position> },
    /// `Promote` done: the database accepts writes.
    Promoted { position: Position },
    /// `Fence` done: the local database is read-only; `position` is final.
    Fenced { position: Position },
    /// `Unfence` done: writable again.
    Unfenced,
    /// `KillDatabase` done: the signal was sent (or nothing was running).
    Killed,
    /// `RestoreInPlace` done: the restored data serves as the primary (writable) at the
    /// position, or why not (`swapped`: whether the local data was already replaced).
    RestoredInPlace(Result<Position, RestoreFailure>),
    /// `BeginTerm` done: the term is recorded in `initialized`, or why not.
    TermBegun {
        term: u64,
        result: Result<(), String>,
    },
    /// `StopSource` done: the external source takes no more writes and the local data has
    /// everything it committed (the position reached), or why not.
    SourceStopped(Result<Position, String>),
    /// `EndMigration` done: `initialized` no longer names the source, or why not.
    MigrationEnded(Result<(), String>),
    /// The requested operation failed; the machine backs off and retries from a safe state.
    Failed,
}

/// Why an in-place restore failed, and whether the local data was replaced before it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreFailure {
    /// What went wrong, for the event.
    pub reason: String,
    /// The restored data was moved in (the old data is aside): the node no longer serves the
    /// data of the current term.
    pub swapped: bool,
}

/// Inputs to [`super::decide`]. Every variant carries `now`.
// A `Cluster` view is the largest; each event is built once and moved into one step, so
// boxing it would only add an allocation per view.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The agent (re)started. `has_data` comes from the engine/local bootstrap marker.
    Started {
        now: Millis,
        has_data: bool,
        position: Position,
        /// The identity of the local data (see `Engine::identity`), when it has one.
        identity: Option<String>,
        /// The term of the cluster's identity the local data belongs to (the bootstrap
        /// marker's; 1 for data from before terms, 0 without data).
        term: u64,
        /// The agent re-executed in place (`upgrade-self`) while primary: the database ran
        /// on, adopted, and the session took over the lease the primary key is bound to,
        /// whose last successful keep-alive was sent at this time (the fencing reference).
        adopted: Option<Millis>,
    },
    /// A lease was granted and our node key put (after `Started` or `GrantLease`).
    LeaseGranted { now: Millis },
    /// A keep-alive succeeded; `sent_at` is when the request left (the fencing reference).
    KeepAliveOk { now: Millis, sent_at: Millis },
    /// A keep-alive failed (store unreachable). The lease may still be alive.
    KeepAliveFailed { now: Millis },
    /// The store says our lease no longer exists: our keys are gone.
    LeaseLost { now: Millis },
    /// A fresh read of the cluster, or the watch cache after a change.
    Cluster { now: Millis, view: ClusterView },
    /// A timer fired (or a periodic tick); lets time-based decisions happen.
    Tick { now: Millis },
    /// Health probe result. `healthy` is the raw verdict (the health actor's and a working
    /// position probe); the machine applies [`RoleParams::health_grace`] to it. `answering` is
    /// false when the database did not answer the probe at all (hung): a fence would wait
    /// just as long, so a primary kills it instead.
    /// `receiving` is what a replica's probe saw of its receiver (`None` on a primary, or
    /// when the probe could not tell).
    Health {
        now: Millis,
        healthy: bool,
        answering: bool,
        receiving: Option<bool>,
        position: Position,
    },
    /// Answer to `AcquireLock`.
    LockResult { now: Millis, acquired: bool },
    /// Answer to `ClaimPrimary`: `won` iff our transaction created the key.
    ClaimResult { now: Millis, won: bool },
    /// Answer to an engine action.
    Engine { now: Millis, result: EngineResult },
    /// The `prePromote` handler finished; `ok` iff it exited 0.
    PrePromoteDone { now: Millis, ok: bool },
    /// The agent was asked to stop (SIGTERM): hand over leadership first (I6).
    StopRequested { now: Millis },
    /// The database process came back after a crash; engines always start it read-only and
    /// not replicating, so the machine must decide again what it should be.
    DatabaseRestarted { now: Millis },
    /// The database process exited on its own and the restart policy starts it again: a
    /// primary hands over at once instead of waiting for a failed health check. `detail`:
    /// its exit status and the last error line it printed.
    DatabaseExited { now: Millis, detail: String },
}

impl Event {
    /// The event's time.
    pub fn now(&self) -> Millis {
        match self {
            Event::Started { now, .. }
            | Event::LeaseGranted { now }
            | Event::KeepAliveOk { now, .. }
            | Event::KeepAliveFailed { now }
            | Event::LeaseLost { now }
            | Event::Cluster { now, .. }
            | Event::Tick { now }
            | Event::Health { now, .. }
            | Event::LockResult { now, .. }
            | Event::ClaimResult { now, .. }
            | Event::Engine { now, .. }
            | Event::PrePromoteDone { now, .. }
            | Event::StopRequested { now }
            | Event::DatabaseRestarted { now }
            | Event::DatabaseExited { now, .. } => *now,
        }
    }
}

/// What the actor must do. Store actions go to the `Store`, engine actions to the `Engine`,
/// the rest to timers and handlers. Each action that needs an answer names the event it
/// produces; the executor holds no decisions of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    // ---- store ----
    /// Grant a new lease and put our node key → `LeaseGranted`.
    GrantLease,
    /// Linearizable read of the cluster prefix → `Cluster`.
    ReadCluster,
    /// Put `nodes/<id>` (bound to our lease) with what peers need to rank us; `needs_rebuild`
    /// when local data diverged and an operator (or `auto_rebuild`) must rebuild it.
    PublishNode {
        role: Role,
        position: Position,
        eligible: bool,
        /// Why not eligible.
        ineligible: Option<super::state::Ineligible>,
        /// What the node waits for and since when.
        waiting: Option<(super::state::Wait, Millis)>,
        needs_rebuild: bool,
        caught_up_term: Option<u64>,
        database_killed: bool,
        /// Why the database last exited on its own, until it runs healthy again.
        database_exit: Option<String>,
        /// The primary it follows, while a replica.
        source: Option<NodeId>,
        /// Why it refuses to join the cluster (its data belongs to another database).
        refused: Option<String>,
    },
    /// Delete our `requests/<id>` key (carried out or refused).
    ClearRequest,
    /// An operator asked: stop the database (fast) and start it again → `Restarted`.
    RestartDatabase,
    /// An operator asked: the database re-reads its configuration → `Reloaded`.
    ReloadDatabase,
    /// An operator asked (a rollout): stop the database, run the upgrade hook with
    /// `version`, start the database → `Upgraded`.
    UpgradeDatabase { version: Option<String> },
    /// The upgrade failed: stop the database, run the rollback hook, start it →
    /// `RolledBack`.
    RollbackDatabase,
    /// An operator asked (on the primary, in maintenance): restore the newest backup and the
    /// archive to `point` beside the data, swap it in (the old data kept aside) and serve it
    /// as the primary → `RestoredInPlace`.
    RestoreInPlace { point: RestorePoint },
    /// Record in `initialized` that the cluster's identity is in `term` now (only while we
    /// hold the `primary` key), and end the maintenance a restore request began.
    BeginTerm { term: u64, reason: String },
    /// What the node waits for changed: log the end of the old wait (with how long it
    /// lasted) and the start of the new one.
    Waiting {
        started: Option<super::state::Wait>,
        ended: Option<(super::state::Wait, Millis)>,
    },
    /// Take the bootstrap `lock` key (create iff absent, bound to our lease) → `LockResult`.
    AcquireLock,
    /// Delete the `lock` key if it is ours.
    ReleaseLock,
    /// One transaction: if `primary` is absent (and, when `history_rev` is given, `history` is
    /// still at that revision), create `primary` bound to our lease, append a `history` entry
    /// `{at, from, to: us, reason, position}`, and when `write_initialized` also create
    /// `initialized` → `ClaimResult`.
    ClaimPrimary {
        reason: ClaimReason,
        previous: Option<NodeId>,
        position: Position,
        at: Millis,
        history_rev: Option<u64>,
        write_initialized: bool,
    },
    /// Delete `primary` iff it is ours (planned handover, broken database).
    ReleasePrimary,
    /// Revoke our lease: our keys vanish at once and replicas elect now (I6).
    RevokeLease,
    /// Delete the `switchover` request after it has been carried out.
    ClearSwitchover,
    /// Put an `events/*` entry (role change, failover, fenced, …).
    PublishEvent {
        kind: Notice,
        detail: String,
        facts: Facts,
    },
    // ---- engine ----
    /// Initialise a new database, or adopt the local data if there is some → `Initialized`.
    Initialize,
    /// Clone from the primary and start replicating → `Cloned`.
    CloneFrom { primary: PrimaryKey },
    /// Restore the latest backup and start as a replica-to-be → `Cloned`.
    RestoreFromBackup,
    /// Replicate from `primary`; rewind first if the engine can, else answer `NeedsRebuild`.
    Follow { primary: PrimaryKey },
    /// Finish applying received data (relay log / WAL) and stop following, for election round
    /// `term` → `ElectionCaughtUp` (the round tells a late answer from a current one).
    CatchUp { term: u64 },
    /// Make the old primary's database read-only over its own connection → `RemoteFenced`.
    FenceRemote { node: NodeId, address: String },
    /// Fetch and apply data up to `target` from the (fenced) old primary → `CaughtUp`.
    CatchUpTo { target: Position, from: String },
    /// Make the local database accept writes → `Promoted`.
    Promote,
    /// The promotion while the cluster migrates: the local database becomes (or stays) a
    /// read-only replica of the external source (`migrate_from`) and leads the cluster as
    /// its standby leader → `Promoted`.
    LeadStandby,
    /// The cutover's first step (on the standby leader): make the external source refuse
    /// writes, then wait until the local data has everything the source committed →
    /// `SourceStopped`.
    StopSource,
    /// The cutover's second step: remove the source from `initialized` (only while we hold
    /// the `primary` key) → `MigrationEnded`. Then a plain `Promote`.
    EndMigration,
    /// Make the local database read-only (I1, I6, graceful stop) → `Fenced`.
    Fence,
    /// Stop writes for good before handing the key over (switchover, a failing database):
    /// where the engine can, the database also stops cleanly and starts again as a replica
    /// with no source, so its last record reaches the replicas before the successor
    /// promotes and it can follow the successor without a rewind → `Fenced`.
    FenceToHandOver,
    /// SIGKILL the local database's whole process group: the fence when the database does
    /// not answer (hung, stopped, in uninterruptible sleep) → `Killed`. A killed process never
    /// runs user code again, so it acknowledges no write after the signal, even one that
    /// wakes later (in uninterruptible sleep the signal is taken when the system call returns).
    KillDatabase,
    /// Make the local database writable again after a fence proved unnecessary → `Unfenced`.
    Unfence,
    /// Write the local bootstrap marker file, with the term of the cluster's identity the
    /// local data belongs to.
    WriteMarker { term: u64 },
    /// Remove the local bootstrap marker file: the local data is about to be replaced.
    ClearMarker,
    /// On the primary: the other members of the cluster (id, address), after promotion and
    /// whenever they change, for replication slots and synchronous replication settings.
    SetReplicas { members: Vec<(NodeId, String)> },
    // ---- handlers, timers, process ----
    /// Run the `prePromote` handler → `PrePromoteDone`.
    RunPrePromote,
    /// Run the `onChange` handler with these fields as environment variables.
    OnChange {
        role: Role,
        previous: Role,
        primary_address: Option<String>,
    },
    /// Deliver a `Tick` at `at` (earlier ticks are harmless).
    WakeAt { at: Millis },
    /// Leadership is handed over; let the supervisor stop the database and exit.
    Exit,
}
