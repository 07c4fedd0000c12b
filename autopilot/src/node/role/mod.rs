//! The role actor: the executor of the pure role state machine ([`crate::role::decide`]).
//!
//! It feeds the machine events — lease and keep-alive facts from the etcd session, fresh
//! linearizable reads of the cluster prefix, health and position probes, engine and handler
//! results, timers, stop requests — and carries out the actions the machine returns: store
//! operations (through the session or the store), engine operations (through the engine's
//! role hooks), handler runs, timers. It makes no decision of its own.
//!
//! Every action that takes time runs in a task that sends its answer back as a message, so
//! the mailbox stays free: a keep-alive failure or a stop request is never stuck behind a
//! slow hook.

mod documents;
mod events;
mod exec;
mod spawn;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use engines::{AnyEngine, Engine};
use handlers::HandlerMsg;
use metrics::gauge;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tracing::{info, warn};

pub use documents::Identity;
pub(crate) use events::EventWriter;
pub use spawn::{RoleHandlers, role_args};

use crate::node::session::{ClusterEvent, EventSink, SessionArgs, SessionHandle};
use crate::role::{self, Event, Millis, Role, RoleParams, RoleState};
use crate::telemetry::{NodeStatus, PublishedRole};
use cluster::store::EtcdStore;
use cluster::wire::{ClusterKeys, HistoryDoc};

use super::env::EventEnv;

/// The executor of the role state machine; holds no state itself.
pub struct RoleActor;

/// What the role actor needs.
pub struct RoleArgs {
    /// The machine's parameters.
    pub params: RoleParams,
    /// Who this node is, for the documents it writes.
    pub identity: Identity,
    /// The engine whose role operations carry out engine actions.
    pub engine: Arc<AnyEngine>,
    /// The store (etcd): the session's, and the event writer's.
    pub store: Arc<EtcdStore>,
    /// This cluster's key layout.
    pub keys: ClusterKeys,
    /// The node's health, published by the health actor.
    pub health: watch::Receiver<NodeStatus>,
    /// Where the current role is published (for `/primary`, `/replica`).
    pub publish: watch::Sender<PublishedRole>,
    /// Where the node document and the latest cluster read are published (`/status`,
    /// `/cluster`, `/history`).
    pub view: watch::Sender<crate::node::status::AgentView>,
    /// The process actor, which kills a database that does not answer.
    pub process: ActorRef<super::process::ProcessMsg>,
    /// The onChange handler, if configured.
    pub on_change: Option<ActorRef<HandlerMsg>>,
    /// The prePromote handler, if configured.
    pub pre_promote: Option<ActorRef<HandlerMsg>>,
    /// Base event variables for handler runs.
    pub env: EventEnv,
    /// Where the local bootstrap marker lives.
    pub marker: std::path::PathBuf,
    /// How often health and position are probed.
    pub probe_interval: Duration,
    /// The main process waits for the clone to start it (a node without data joining an
    /// initialised cluster): begin at once, not after the database was first healthy.
    pub begin_without_database: bool,
    /// Where the node restores backups from to start its data (`engine.seed`,
    /// `cluster.bootstrap.from_backup`), when configured.
    pub seeder: Option<std::sync::Arc<crate::node::seed::Seeder>>,
    /// The external database this node's configuration migrates from
    /// (`cluster.bootstrap.migrate_from`), with its account.
    pub migrate_from: Option<engines::Source>,
    /// `handlers.upgrade`: run while the database is stopped for an `upgrade` request.
    pub upgrade: Option<handlers::ExecSpec>,
    /// `handlers.rollback`: run the same way when an upgrade failed.
    pub rollback: Option<handlers::ExecSpec>,
    /// What the package watch found last, for the node document.
    pub packages: watch::Receiver<Option<cluster::wire::Packages>>,
    /// What the agent's previous image handed over (in-place upgrade).
    pub inherited: Option<Inheritance>,
}

/// The lease and role the agent's previous image handed over.
pub struct Inheritance {
    /// The lease, renewed by this image's session.
    pub lease: cluster::store::LeaseId,
    /// Until when (Unix ms) it is known to live: its last keep-alive's send time plus the
    /// TTL (0: given up, the session revokes it at once).
    pub until_ms: u64,
    /// The role the node had.
    pub role: role::HandoverRole,
    /// For the `agent_upgraded` event: the versions and the database's PID.
    pub detail: String,
}

/// Messages of the role actor.
pub enum RoleMsg {
    /// An event for the machine (results of actions, timers).
    Feed(Event),
    /// A fact from the etcd session (also the cluster reads asked for).
    Session(ClusterEvent),
    /// Time passed (periodic, and `WakeAt`).
    Tick,
    /// The database was healthy for the first time: start the machine.
    Begin,
    /// Probe health and position.
    Probe,
    /// A position probe finished.
    Probed(Result<role::Position, ProbeFailure>),
    /// The database process was restarted by the restart policy.
    DatabaseRestarted,
    /// The database process exited on its own; the restart policy starts it again. Its exit
    /// status and last error line.
    DatabaseExited(String),
    /// Hand over leadership (fence, revoke the lease) and reply once done.
    Stop(RpcReplyPort<()>),
    /// The lease revocation finished (or failed).
    Revoked,
    /// The agent is about to re-execute in place: the lease and role to hand over, or why
    /// not now. From the answer on, the machine is frozen (no event is fed, no action
    /// starts) until the agent is replaced or `HandoverAborted`.
    Handover(RpcReplyPort<Result<super::handover::LeaseRecord, String>>),
    /// The re-execution failed: the machine goes on.
    HandoverAborted,
}

impl From<ClusterEvent> for RoleMsg {
    fn from(e: ClusterEvent) -> Self {
        RoleMsg::Session(e)
    }
}

/// Why a position probe gave no position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The engine answered with an error (not running, refused, failed query).
    Error,
    /// The database did not answer within the probe limit: hung, not merely restarting.
    NoAnswer,
}

/// State owned by the running role actor.
pub struct RoleActorState {
    args: RoleArgs,
    /// The machine's state; `None` only inside `feed`.
    machine: Option<RoleState>,
    /// The one way to etcd (but for events): the session's lease, reads and claims.
    session: SessionHandle<EtcdStore>,
    /// `Begin` arrived and `Started` was fed.
    machine_started: bool,
    /// `history` as last read, to append to on the next claim.
    history: HistoryDoc,
    /// A probe is in flight.
    probing: bool,
    /// Waiting for the machine's `Exit`.
    stop_reply: Option<RpcReplyPort<()>>,
    /// The machine said `Exit`.
    exit_requested: bool,
    /// A lease revocation is in flight.
    revoking: bool,
    /// The `primary` key says `online` (rewritten once per term, after promotion).
    primary_online: bool,
    /// Writes `events/*` under the long-lived event lease.
    events: events::EventWriter,
    /// What the machine last asked to publish in the node key (health and replication are
    /// read when it is written).
    published: Option<(Role, role::Position, documents::NodeFlags)>,
    /// The node document last handed to the session, and when (write economy).
    written_node: Option<(cluster::wire::NodeDoc, Instant)>,
    /// The `primary` document last written as online, and when.
    written_primary: Option<(cluster::wire::PrimaryDoc, Instant)>,
    /// The `state` document last written while primary.
    written_state: Option<cluster::wire::ClusterStateDoc>,
    /// Why the database last exited on its own, as the machine last published it.
    database_exit: Option<String>,
    /// The term of the cluster's identity the local data belongs to (the marker's; 0: none).
    data_term: u64,
    /// The time (Unix ms) of the last event written: the next one gets a later id.
    last_event_ms: u64,
    /// A hand-over to the agent's next image is under way: feed nothing.
    frozen: bool,
    /// The database exited or restarted before the machine started (an adopted one that did
    /// not run on): fed to the machine right after `Started`.
    restarted_before_start: bool,
    /// The role handed over by the previous image, the event's detail and until when (Unix
    /// ms) the lease lives, until the machine starts (dropped when the inherited lease is
    /// lost first).
    inherited: Option<(role::HandoverRole, String, u64)>,
}

impl RoleActorState {
    /// Answer the stop request once the machine exited and the lease is revoked.
    fn answer_stop(&mut self) {
        if self.exit_requested
            && !self.revoking
            && let Some(reply) = self.stop_reply.take()
        {
            let _ = reply.send(());
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch: history times are compared across nodes.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The wall-clock time of a past monotonic instant.
fn millis_at(at: Instant) -> Millis {
    now_millis().saturating_sub(at.elapsed().as_millis() as u64)
}

impl Actor for RoleActor {
    type Msg = RoleMsg;
    type State = RoleActorState;
    type Arguments = RoleArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        mut args: RoleArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ttl = Duration::from_millis(args.params.ttl);
        let inherit = args.inherited.as_ref().map(|i| {
            let left = i.until_ms.saturating_sub(now_millis());
            (i.lease, Instant::now() + Duration::from_millis(left))
        });
        let inherited = args
            .inherited
            .take()
            .map(|i| (i.role, i.detail, i.until_ms));
        let first_role = match inherited {
            Some((role::HandoverRole::Primary, ..)) => Role::Primary,
            Some((role::HandoverRole::Replica, ..)) => Role::Replica,
            None => Role::Unknown,
        };
        let session = SessionHandle::spawn(
            SessionArgs {
                store: args.store.clone(),
                keys: args.keys.clone(),
                node_id: args.params.node_id.clone(),
                ttl,
                node: documents::node(
                    &args.identity,
                    first_role,
                    role::Position::default(),
                    &documents::NodeFlags::default(),
                    &engines::ServerStatus::default(),
                ),
                sink: EventSink::to_actor(myself.clone()),
                inherit,
            },
            myself.get_cell(),
        )
        .await?;
        // Ticks drive time-based decisions (fencing, settle, cooldown) even when nothing else happens.
        let tick = Duration::from_millis((args.params.ttl / 10).clamp(50, 500));
        myself.send_interval(tick, || RoleMsg::Tick);
        myself.send_interval(args.probe_interval, || RoleMsg::Probe);
        let events = events::EventWriter::spawn(args.store.clone());
        Ok(RoleActorState {
            args,
            machine: Some(RoleState::new()),
            session,
            machine_started: false,
            history: HistoryDoc {
                schema: 1,
                entries: Vec::new(),
            },
            probing: false,
            stop_reply: None,
            exit_requested: false,
            revoking: false,
            primary_online: false,
            events,
            published: None,
            written_node: None,
            written_primary: None,
            written_state: None,
            database_exit: None,
            data_term: 0,
            last_event_ms: 0,
            frozen: false,
            restarted_before_start: false,
            inherited,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Take part only once the database has been healthy: a node that cannot serve must
        // not bootstrap a cluster or win an election. A node that starts its database only
        // after the clone has none to wait for; without data it neither bootstraps an
        // initialised cluster nor is a candidate.
        // An adopted database ran on: the machine takes its role over at once (a primary's
        // fencing clock runs from the previous image's last keep-alive).
        if st.args.begin_without_database || st.inherited.is_some() {
            myself.cast(RoleMsg::Begin)?;
            return Ok(());
        }
        let mut health = st.args.health.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            if health.wait_for(|s| s.healthy).await.is_ok() {
                let _ = me.cast(RoleMsg::Begin);
            }
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RoleMsg::Handover(reply) => {
                let answer = prepare_handover(st);
                st.frozen = answer.is_ok();
                let _ = reply.send(answer);
            }
            RoleMsg::HandoverAborted => {
                st.frozen = false;
                // What happened meanwhile was not fed: decide on a fresh read.
                st.session.read_cluster();
            }
            RoleMsg::Session(event) if st.frozen => note_lease(st, &event),
            RoleMsg::Stop(reply) if st.frozen => {
                // The agent stops instead of re-executing: the machine goes on to stop.
                st.frozen = false;
                st.stop_reply = Some(reply);
                feed(&myself, st, Event::StopRequested { now: now_millis() });
            }
            _ if st.frozen => {}
            RoleMsg::Begin => begin(&myself, st).await,
            // The adopted database did not run on: the machine learns it once it starts.
            RoleMsg::DatabaseExited(_) | RoleMsg::DatabaseRestarted if !st.machine_started => {
                st.restarted_before_start = true;
            }
            // Before `Begin`, only the session's lease facts are kept (and a stop is answered).
            RoleMsg::Session(event) if st.machine_started => on_session(&myself, st, event),
            RoleMsg::Session(event) => note_lease(st, &event),
            RoleMsg::Stop(reply) if !st.machine_started => {
                let _ = reply.send(());
            }
            _ if !st.machine_started => {}
            RoleMsg::Feed(event) => feed(&myself, st, event),
            RoleMsg::Tick => feed(&myself, st, Event::Tick { now: now_millis() }),
            RoleMsg::Probe => exec::probe(&myself, st),
            RoleMsg::Probed(probed) => {
                st.probing = false;
                // Replication changed (a replica stopped receiving, a primary gained one), a
                // lag crossed a bucket, or the slow refresh is due: the documents say so
                // without waiting for a role change.
                exec::publish_node(st, false);
                let answering = probed != Err(ProbeFailure::NoAnswer);
                let receiving = match st.args.health.borrow().replication {
                    engines::Replication::Replica { receiving } => Some(receiving),
                    _ => None,
                };
                // The health actor's verdict (read now, never a stale copy) and a working
                // position probe; the machine applies the primary's grace.
                let healthy = probed.is_ok() && st.args.health.borrow().healthy;
                let position = probed.unwrap_or_default();
                let now = now_millis();
                feed(
                    &myself,
                    st,
                    Event::Health {
                        now,
                        healthy,
                        answering,
                        receiving,
                        position,
                    },
                );
            }
            RoleMsg::DatabaseRestarted => {
                feed(&myself, st, Event::DatabaseRestarted { now: now_millis() })
            }
            RoleMsg::DatabaseExited(detail) => feed(
                &myself,
                st,
                Event::DatabaseExited {
                    now: now_millis(),
                    detail,
                },
            ),
            RoleMsg::Stop(reply) => {
                st.stop_reply = Some(reply);
                feed(&myself, st, Event::StopRequested { now: now_millis() });
            }
            RoleMsg::Revoked => {
                st.revoking = false;
                st.answer_stop();
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(reply) = st.stop_reply.take() {
            let _ = reply.send(());
        }
        Ok(())
    }
}

/// The database is healthy for the first time: start the machine.
async fn begin(myself: &ActorRef<RoleMsg>, st: &mut RoleActorState) {
    if st.machine_started {
        return;
    }
    st.machine_started = true;
    let has_data = st.args.marker.exists();
    let term = if has_data {
        std::fs::read_to_string(&st.args.marker).map_or(1, |t| documents::marker_term(&t))
    } else {
        0
    };
    st.data_term = term;
    let position = if st.args.begin_without_database {
        role::Position::default()
    } else {
        st.args.engine.position().await.unwrap_or_default()
    };
    // Unknown when it cannot be read: the check against the cluster's then does not happen
    // (a foreign node is still caught by its diverged history when it follows). Without
    // data (no marker) it is not checked at all: the node clones.
    let identity = if !has_data {
        None
    } else {
        match st.args.engine.identity().await {
            Ok(id) => id,
            Err(e) => {
                warn!(cause = %e, "could not read the identity of the local data; not checking it against the cluster's");
                None
            }
        }
    };
    info!(
        has_data,
        position = %if has_data {
            position.notation(st.args.engine.kind())
        } else {
            "none".to_owned()
        },
        identity = identity.as_deref().unwrap_or("none"),
        "role logic starting"
    );
    let now = now_millis();
    let inherited = st.inherited.take();
    let adopted = match inherited {
        Some((role::HandoverRole::Primary, _, until_ms)) => {
            Some(until_ms.saturating_sub(st.args.params.ttl))
        }
        _ => None,
    };
    feed(
        myself,
        st,
        Event::Started {
            now,
            has_data,
            position,
            identity,
            term,
            adopted,
        },
    );
    if std::mem::take(&mut st.restarted_before_start) {
        feed(myself, st, Event::DatabaseRestarted { now });
    }
    if let Some((_, detail, _)) = inherited {
        exec::execute(
            myself,
            st,
            role::Action::PublishEvent {
                kind: role::Notice::AgentUpgraded,
                detail,
                facts: role::Facts::default(),
            },
        );
    }
}

/// What the agent's next image needs of the lease and the role, if the machine is in a
/// steady role (`role::handover_ready`).
fn prepare_handover(st: &RoleActorState) -> Result<super::handover::LeaseRecord, String> {
    if !st.machine_started {
        return Err("the role logic has not started yet (the database was not healthy)".into());
    }
    let machine = st
        .machine
        .as_ref()
        .ok_or_else(|| "the role logic is busy".to_owned())?;
    let role = role::handover_ready(machine)?;
    let (lease, deadline) = st
        .session
        .lease()
        .current
        .ok_or_else(|| "the node holds no lease".to_owned())?;
    let left = deadline.saturating_duration_since(Instant::now());
    Ok(super::handover::LeaseRecord {
        id: lease.0,
        alive_until_ms: now_millis() + u64::try_from(left.as_millis()).unwrap_or(0),
        role: role.into(),
    })
}

/// Keep `/health`'s view of the lease (`lease_until`) in step with the session.
fn note_lease(st: &mut RoleActorState, event: &ClusterEvent) {
    let margin = Duration::from_millis(st.args.params.fence_after());
    match event {
        ClusterEvent::Leased { lease } => {
            // Just granted: alive for the margin from about now.
            let until = Instant::now() + margin;
            st.args.publish.send_modify(|p| p.lease_until = Some(until));
            let lease = *lease;
            st.args.view.send_modify(|v| v.lease = Some(lease));
        }
        ClusterEvent::KeepAlive { ok: true, at, .. } => {
            let until = *at + margin;
            st.args
                .publish
                .send_modify(|p| p.lease_until = p.lease_until.max(Some(until)));
        }
        // The session reports the loss of the lease it holds, before it grants another.
        ClusterEvent::LeaseLost { .. } => {
            // An inherited role is not resumed on another lease.
            st.inherited = None;
            st.args.publish.send_modify(|p| p.lease_until = None);
            st.args.view.send_modify(|v| v.lease = None);
        }
        _ => {}
    }
}

fn on_session(myself: &ActorRef<RoleMsg>, st: &mut RoleActorState, event: ClusterEvent) {
    note_lease(st, &event);
    match event {
        ClusterEvent::Leased { .. } => {}
        ClusterEvent::Resynced(_) => st.session.read_cluster(),
        ClusterEvent::Read(snap) => {
            st.history = snap.history.doc().cloned().unwrap_or(HistoryDoc {
                schema: 1,
                entries: Vec::new(),
            });
            let view = role::ClusterView::from_snapshot(&snap);
            let shared = std::sync::Arc::new((*snap).clone());
            st.args.view.send_modify(|v| v.snapshot = Some(shared));
            feed(
                myself,
                st,
                Event::Cluster {
                    now: now_millis(),
                    view,
                },
            );
            exec::publish_state(st, &snap);
            // Whether the primary's commits wait for this replica (`/sync`, `/async`).
            let me = &st.args.params.node_id;
            let synchronous = snap.primary.doc().and_then(|p| {
                p.replication
                    .streaming
                    .iter()
                    .find(|r| &r.name == me)
                    .and_then(|r| r.synchronous)
            });
            st.args.publish.send_if_modified(|p| {
                std::mem::replace(&mut p.synchronous, synchronous) != synchronous
            });
        }
        ClusterEvent::KeepAlive { ok: true, at, .. } => {
            let sent_at = millis_at(at);
            feed(
                myself,
                st,
                Event::KeepAliveOk {
                    now: now_millis(),
                    sent_at,
                },
            );
        }
        ClusterEvent::KeepAlive { ok: false, .. } => {
            feed(myself, st, Event::KeepAliveFailed { now: now_millis() })
        }
        ClusterEvent::LeaseLost { lease } => {
            warn!(%lease, "lease lost");
            feed(myself, st, Event::LeaseLost { now: now_millis() });
        }
        // Our own node document coming back through the watch tells us nothing new.
        ClusterEvent::NodeChanged { id, .. } if id == st.args.params.node_id => {}
        // Any other change under the cluster prefix: decide on a fresh linearizable read.
        _ => st.session.read_cluster(),
    }
}

/// Run the machine on one event and carry out its actions.
fn feed(myself: &ActorRef<RoleMsg>, st: &mut RoleActorState, event: Event) {
    let Some(state) = st.machine.take() else {
        return;
    };
    let before = state.role;
    let (state, actions) = role::decide(&st.args.params, state, event);
    let after = state.role;
    st.machine = Some(state);
    if before != after {
        publish_role(st, after);
    }
    for action in actions {
        exec::execute(myself, st, action);
    }
}

fn publish_role(st: &RoleActorState, role: Role) {
    st.args.publish.send_modify(|p| p.role = role);
    for r in [Role::Primary, Role::Replica, Role::Fenced, Role::Unknown] {
        gauge!("autopilot_role", "role" => r.label()).set(if role == r { 1.0 } else { 0.0 });
    }
    gauge!("autopilot_fenced").set(if role == Role::Fenced { 1.0 } else { 0.0 });
}
