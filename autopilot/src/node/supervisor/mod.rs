//! The root actor: owns start-up and the stop order, turns signals into decisions, and
//! reports the agent's exit code.
//!
//! The onChange handler is started with the role logic (it fires on role and primary
//! changes, which a standalone agent does not have).
//!
//! Start-up: engine prepare → preStart (must succeed) → main process → health handler and
//! jobs. A clustered node without data joining an initialised cluster prepares to clone
//! instead (`prepare.rs`); when its engine says so, the main process starts *held* — the
//! engine's clone starts it — and the agent moves on to running (health, jobs, role logic)
//! without it. Stop order on SIGTERM/SIGINT: preStop → stop main (stop signal, `stop_timeout`,
//! SIGKILL) → postStop → exit with the main process's status. When the main process ends for
//! good on its own: postStop → exit with its status. A second SIGTERM/SIGINT during the stop
//! kills what is running (handler and main process groups), skips postStop, and exits.
//!
//! Each step runs in a task that reports back, so the mailbox stays free for signals.
//!
//! Supervision policy: a child actor that fails is fatal — the agent runs the stop order and
//! exits 70, because an agent without its health checks or its process actor would report a
//! state it no longer knows.

use axum::Router;
use std::sync::Arc;
use std::time::Duration;

use engines::{AnyEngine, MainRequest, MainStart};
use handlers::{ExitStatus, HandlerActor, HandlerArgs, HandlerMsg, RunReport};
use metrics_exporter_prometheus::PrometheusHandle;
use nix::sys::signal::Signal;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, OutputPort, SupervisionEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use super::env::EventEnv;
use super::health::{HealthActor, HealthArgs, HealthMsg};
use super::process::{ProcessActor, ProcessArgs, ProcessEvent, ProcessMsg};
use super::role::{RoleActor, RoleHandlers, RoleMsg, role_args};
use super::specs::{HANDLER_KILL_GRACE, handler_spec};
use crate::config::{Config, HandlerConfig};
use crate::telemetry::{Lifecycle, NodeStatus, PublishedRole, TelemetryActor, TelemetryArgs};

mod prepare;
mod stop;
mod upgrade;

use upgrade::{agent_status, take_over};

use stop::{begin_stop, begin_stop_after_exit, escalate, finish, post_stop, stop_actor, stop_main};

/// Exit codes of the agent besides the main process's own status (documented in the README).
pub mod exit_code {
    /// Bad command line or configuration (sysexits EX_USAGE).
    pub const USAGE: i32 = 64;
    /// preStart failed, or the main process or telemetry listener could not start (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// An internal error: an actor of the agent failed (EX_SOFTWARE).
    pub const SOFTWARE: i32 = 70;
}

/// Slack on top of a step's own limits before the supervisor stops waiting for its reply.
const REPLY_SLACK: Duration = Duration::from_secs(10);
/// How often the engine is probed when no health handler sets the pace: with the probe's
/// own limit ([`super::health::PROBE_LIMIT`]) a hung database is reported within 3 s.
const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The root actor; holds no state itself.
pub struct Supervisor;

/// What the supervisor needs.
pub struct SupervisorArgs {
    /// The validated configuration.
    pub config: Config,
    /// The engine that runs and probes the main process.
    pub engine: Arc<AnyEngine>,
    /// The installed Prometheus recorder, for the telemetry listener.
    pub metrics: PrometheusHandle,
    /// Receives the agent's exit code once, when the stop order is done.
    pub exit: oneshot::Sender<i32>,
    /// The engine's requests to stop and start the main process (the other end of the
    /// [`engines::MainControl`] it was built with).
    pub main_requests: mpsc::Receiver<MainRequest>,
    /// What the agent's previous image handed over (`run --handover`): the running
    /// database is adopted instead of started.
    pub inherited: Option<super::handover::Inherited>,
}

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Begin start-up (sent to itself once).
    Start,
    /// A Unix signal arrived.
    Signal(Signal),
    /// Something happened to the main process.
    Process(ProcessEvent),
    /// Engine prepare and preStart ended: when the main process starts, or why start-up
    /// failed.
    Prepared(Result<MainStart, String>),
    /// preStop ended (or was killed).
    PreStopDone,
    /// The main process stopped after a stop request; `None` when it was not running.
    MainStopped(Option<ExitStatus>),
    /// postStop ended (or was killed).
    PostStopDone,
    /// A request on the control socket (`autopilot upgrade-self`).
    Control(super::control::Call),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Stopping,
}

/// The handler actors that are running.
#[derive(Default)]
struct HandlerRefs {
    pre_start: Option<ActorRef<HandlerMsg>>,
    health: Option<ActorRef<HandlerMsg>>,
    pre_stop: Option<ActorRef<HandlerMsg>>,
    post_stop: Option<ActorRef<HandlerMsg>>,
    on_change: Option<ActorRef<HandlerMsg>>,
    pre_promote: Option<ActorRef<HandlerMsg>>,
    jobs: Vec<ActorRef<HandlerMsg>>,
}

/// State owned by the running supervisor.
pub struct SupervisorState {
    config: Config,
    engine: Arc<AnyEngine>,
    /// Event variables for handler runs, kept current (main PID, exit code).
    env: EventEnv,
    phase: Phase,
    handlers: HandlerRefs,
    process: Option<ActorRef<ProcessMsg>>,
    /// The role actor, once the main process runs (clustered agents only).
    role: Option<ActorRef<RoleMsg>>,
    /// Taken when the role actor starts; `None` for a standalone agent.
    role_publish: Option<watch::Sender<PublishedRole>>,
    /// Where the role actor publishes what `/status` and `/cluster` serve; taken with
    /// `role_publish`.
    view_publish: Option<watch::Sender<super::status::AgentView>>,
    /// The node's health, for the role actor.
    status: watch::Receiver<NodeStatus>,
    health: ActorRef<HealthMsg>,
    /// The process actor publishes here; the supervisor and health actor subscribe.
    process_events: Arc<OutputPort<ProcessEvent>>,
    /// Health handler reports; the health actor subscribes.
    health_reports: Arc<OutputPort<RunReport>>,
    /// Taken when the exit code is sent.
    exit: Option<oneshot::Sender<i32>>,
    /// The code to exit with when the stop order ends.
    exit_code: Option<i32>,
    /// A second stop request arrived: kill instead of waiting.
    escalated: bool,
    /// Taken when the process actor starts, which then serves the engine's requests.
    main_requests: Option<mpsc::Receiver<MainRequest>>,
    /// What the package watch found, for the role actor's node document.
    packages: watch::Receiver<Option<cluster::wire::Packages>>,
    /// The previous image's hand-over, until the start takes it.
    inherited: Option<super::handover::Inherited>,
    /// The inherited lease and role, for the role actor.
    inheritance: Option<super::role::Inheritance>,
    /// The previous image's version, when this one took over in place.
    upgraded_from: Option<String>,
    /// When this image started (Unix ms).
    started_at_ms: u64,
    /// Why the last in-place upgrade failed, if it did.
    upgrade_failed: Option<String>,
    /// This image is the previous binary, back after the new one could not start.
    fell_back: bool,
    /// The role as published (clustered agents), for the control socket's status.
    published_role: watch::Receiver<PublishedRole>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let SupervisorArgs {
            config,
            engine,
            metrics,
            exit,
            main_requests,
            inherited,
        } = args;
        let cell = myself.get_cell();
        let (status_tx, status_rx) = watch::channel(NodeStatus::starting());
        let clustered = config.store.is_some();
        let (role_tx, role_rx) = watch::channel(PublishedRole::unknown());
        let (view_tx, view_rx) = watch::channel(super::status::AgentView::default());
        let status_routes = super::status::routes(
            view_rx,
            status_rx.clone(),
            config.cluster.as_ref().map(|c| super::status::ClusterName {
                namespace: c.namespace.clone(),
                project: c.project.clone(),
                name: c.name.clone(),
            }),
            config.node.name.clone(),
            config.to_effective_yaml(),
        );

        let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
        Actor::spawn_linked(
            None,
            TelemetryActor,
            TelemetryArgs {
                listen: config.telemetry.listen,
                tls: config
                    .telemetry
                    .tls
                    .as_ref()
                    .and_then(|t| t.identity.clone()),
                metrics,
                status: status_rx.clone(),
                role: clustered.then_some(role_rx.clone()),
                dir: config.process.cwd.clone().unwrap_or(cwd),
                routes: {
                    let clone = match (&*engine, clustered) {
                        (AnyEngine::Mariadb(e), true) => super::clone::routes(
                            super::clone::CloneSource::new(e.settings().clone()),
                            role_rx.clone(),
                        ),
                        _ => Router::new(),
                    };
                    let clone = clone.merge(status_routes);
                    let top = config.telemetry.top_statements;
                    match &*engine {
                        AnyEngine::Mariadb(_) | AnyEngine::Postgres(_) if top > 0 => {
                            super::statements::spawn_exporter(engine.clone(), top);
                            clone.merge(super::statements::routes(
                                engine.clone(),
                                config.node.name.clone(),
                                top,
                            ))
                        }
                        _ => clone,
                    }
                },
            },
            cell.clone(),
        )
        .await?;

        let probe_interval = config
            .handlers
            .health
            .as_ref()
            .and_then(|h| h.interval)
            .unwrap_or(DEFAULT_PROBE_INTERVAL);
        let (health, _) = Actor::spawn_linked(
            None,
            HealthActor,
            HealthArgs {
                engine: engine.clone(),
                probe_interval,
                has_health_handler: config.handlers.health.is_some(),
                publish: status_tx,
            },
            cell.clone(),
        )
        .await?;

        let process_events = Arc::new(OutputPort::default());
        process_events.subscribe(myself.clone(), |e| Some(SupervisorMsg::Process(e)));
        process_events.subscribe(health.clone(), |e| Some(HealthMsg::Process(e)));
        let health_reports = Arc::new(OutputPort::default());
        health_reports.subscribe(health.clone(), |r| Some(HealthMsg::Handler(r)));

        let packages = super::packages::spawn(config.packages.clone(), &config.node.state_dir);
        let env = EventEnv::for_node(&config);
        let h = &config.handlers;
        let handlers = HandlerRefs {
            pre_start: spawn_handler(&cell, "preStart", h.pre_start.as_ref(), None).await?,
            on_change: spawn_handler(&cell, "onChange", h.on_change.as_ref(), None).await?,
            pre_promote: spawn_handler(&cell, "prePromote", h.pre_promote.as_ref(), None).await?,
            pre_stop: spawn_handler(&cell, "preStop", h.pre_stop.as_ref(), None).await?,
            post_stop: spawn_handler(&cell, "postStop", h.post_stop.as_ref(), None).await?,
            ..HandlerRefs::default()
        };

        let me = myself.clone();
        super::control::serve(&config.node.state_dir, move |call| {
            me.cast(SupervisorMsg::Control(call)).is_ok()
        });
        myself.cast(SupervisorMsg::Start)?;
        Ok(SupervisorState {
            config,
            engine,
            env,
            phase: Phase::Starting,
            handlers,
            process: None,
            role: None,
            role_publish: clustered.then_some(role_tx),
            view_publish: clustered.then_some(view_tx),
            status: status_rx,
            health,
            process_events,
            health_reports,
            exit: Some(exit),
            exit_code: None,
            escalated: false,
            main_requests: Some(main_requests),
            packages,
            inherited,
            inheritance: None,
            upgraded_from: None,
            started_at_ms: super::role::now_millis(),
            upgrade_failed: None,
            fell_back: false,
            published_role: role_rx,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start => match state.inherited.take() {
                Some(inherited) => take_over(&myself, state, inherited).await?,
                None => start(&myself, state),
            },
            SupervisorMsg::Control((request, reply)) => match request {
                super::control::Request::Status => {
                    let answer = super::control::Answer {
                        ok: true,
                        message: "running".into(),
                        status: Some(agent_status(state)),
                    };
                    let _ = reply.send((answer, None));
                }
                super::control::Request::UpgradeSelf { binary } => {
                    upgrade::upgrade_self(&myself, state, binary, reply).await?
                }
            },
            SupervisorMsg::Prepared(Ok(start)) => {
                if state.phase == Phase::Starting {
                    let held = start == MainStart::AfterClone;
                    spawn_process(&myself, state, held, None).await?;
                    if held {
                        // Nothing will report `Started` before the clone: run without it.
                        running(&myself, state, true).await?;
                    }
                }
            }
            SupervisorMsg::Prepared(Err(reason)) => {
                if state.phase == Phase::Starting {
                    error!(%reason, "start-up failed; the main process was not started");
                    finish(&myself, state, super::exit_code::UNAVAILABLE);
                }
            }
            SupervisorMsg::Signal(sig) => on_signal(&myself, state, sig),
            SupervisorMsg::Process(event) => on_process_event(&myself, state, event).await?,
            SupervisorMsg::PreStopDone => stop_main(&myself, state),
            SupervisorMsg::MainStopped(status) => {
                if let Some(status) = status {
                    state.exit_code.get_or_insert(status.exit_code());
                    state.env.main_exit_code = Some(status.exit_code());
                }
                state.env.main_pid = None;
                post_stop(&myself, state);
            }
            SupervisorMsg::PostStopDone => {
                let code = state.exit_code.unwrap_or(0);
                finish(&myself, state, code);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = evt {
            error!(actor = %cell.get_id(), cause = %err, "an actor of the agent failed; stopping");
            state.exit_code.get_or_insert(super::exit_code::SOFTWARE);
            if state.phase == Phase::Stopping {
                escalate(state);
            } else {
                begin_stop(&myself, state);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Children kill their process groups in their own post_stop; wait for them so the
        // agent never exits with a child still running.
        myself
            .stop_children_and_wait(Some("agent exiting".into()), Some(REPLY_SLACK))
            .await;
        if let Some(exit) = state.exit.take() {
            let _ = exit.send(state.exit_code.unwrap_or(super::exit_code::SOFTWARE));
        }
        Ok(())
    }
}

/// Engine prepare, then preStart; the verdict comes back as `Prepared`.
fn start(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState) {
    let engine = state.engine.clone();
    let config = state.config.clone();
    let pre_start = state.handlers.pre_start.clone();
    let limit = handler_limit(state.config.handlers.pre_start.as_ref());
    let env = state.env.with_event("preStart").vars();
    let me = myself.clone();
    tokio::spawn(async move {
        let verdict = async {
            let start = prepare::prepare(&config, &engine).await?;
            if let Some(handler) = pre_start {
                match run_handler(&handler, env, limit).await {
                    Some(r) if r.outcome.is_success() => {}
                    Some(r) => return Err(format!("preStart handler: {:?}", r.outcome)),
                    None => return Err("preStart handler did not report".into()),
                }
            }
            Ok(start)
        }
        .await;
        let _ = me.cast(SupervisorMsg::Prepared(verdict));
    });
}

/// Start the process actor; `held`: it spawns the main process only when the engine asks.
async fn spawn_process(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    held: bool,
    adopted: Option<super::process::Adopted>,
) -> Result<(), ActorProcessingErr> {
    let (process, _) = Actor::spawn_linked(
        None,
        ProcessActor,
        ProcessArgs {
            engine: state.engine.clone(),
            stop_timeout: state.config.process.stop_timeout,
            restart: state.config.process.restart,
            env: state.env.with_event("main").vars(),
            events: state.process_events.clone(),
            held,
            adopted,
        },
        myself.get_cell(),
    )
    .await?;
    if let Some(requests) = state.main_requests.take() {
        serve_main_requests(requests, process.clone(), state.config.process.stop_timeout);
    }
    state.process = Some(process);
    Ok(())
}

/// Turn the engine's [`MainRequest`]s into `Hold`/`Release` calls on the process actor; ends
/// when the engine or the process actor is gone.
fn serve_main_requests(
    mut requests: mpsc::Receiver<MainRequest>,
    process: ActorRef<ProcessMsg>,
    stop_timeout: Duration,
) {
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let (answer, reply) = match request {
                MainRequest::Stop { mode, reply } => (
                    process
                        .call(
                            |r| ProcessMsg::Hold { mode, reply: r },
                            Some(stop_timeout + REPLY_SLACK),
                        )
                        .await,
                    reply,
                ),
                MainRequest::Start { reply } => (
                    process.call(ProcessMsg::Release, Some(REPLY_SLACK)).await,
                    reply,
                ),
            };
            let answer = match answer {
                Ok(CallResult::Success(r)) => r,
                Ok(CallResult::Timeout) => Err("the process actor did not answer in time".into()),
                Ok(CallResult::SenderError) | Err(_) => Err("the agent is stopping".into()),
            };
            let _ = reply.send(answer);
        }
    });
}

async fn on_process_event(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    event: ProcessEvent,
) -> Result<(), ActorProcessingErr> {
    match event {
        ProcessEvent::Started { pid, resumed } => {
            state.env.main_pid = Some(pid);
            if state.phase == Phase::Starting {
                running(myself, state, false).await?;
            } else if let Some(role) = &state.role
                && !resumed
            {
                let _ = role.cast(RoleMsg::DatabaseRestarted);
            }
            for h in state.handlers.health.iter().chain(&state.handlers.jobs) {
                let event = if Some(h) == state.handlers.health.as_ref() {
                    "health"
                } else {
                    "job"
                };
                let _ = h.cast(HandlerMsg::SetEnv(state.env.with_event(event).vars()));
            }
        }
        ProcessEvent::Exited {
            status,
            restart_in: None,
            ..
        } => {
            state.exit_code.get_or_insert(status.exit_code());
            state.env.main_exit_code = Some(status.exit_code());
            state.env.main_pid = None;
            if state.phase != Phase::Stopping {
                begin_stop_after_exit(myself, state);
            }
        }
        ProcessEvent::Exited { status, reason, .. } => {
            state.env.main_pid = None;
            if let Some(role) = &state.role {
                let detail = match reason {
                    Some(r) => format!("{status}: {r}"),
                    None => status.to_string(),
                };
                let _ = role.cast(RoleMsg::DatabaseExited(detail));
            }
        }
        ProcessEvent::SpawnFailed { message } => {
            error!(%message, "the main process could not be started");
            state.exit_code.get_or_insert(super::exit_code::UNAVAILABLE);
            if state.phase != Phase::Stopping {
                begin_stop_after_exit(myself, state);
            }
        }
        // Usually also answered through `MainStopped`, but an escalation can kill the main
        // process before the stop request reaches the process actor.
        ProcessEvent::Stopped { status } => {
            state.exit_code.get_or_insert(status.exit_code());
            state.env.main_exit_code = Some(status.exit_code());
        }
    }
    Ok(())
}

/// The agent runs: health says so, the health handler, the jobs and the role logic start.
/// Once the main process started, or at once when it starts held (`held`: the role logic
/// then begins without waiting for a healthy database, which it has none of before the
/// clone).
async fn running(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    held: bool,
) -> Result<(), ActorProcessingErr> {
    state.phase = Phase::Running;
    state
        .health
        .cast(HealthMsg::Lifecycle(Lifecycle::Running))?;
    start_periodic(myself, state).await?;
    start_role(myself, state, held).await
}

/// Start the health handler and the jobs once the main process runs.
async fn start_periodic(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
) -> Result<(), ActorProcessingErr> {
    let cell = myself.get_cell();
    state.handlers.health = spawn_handler(
        &cell,
        "health",
        state.config.handlers.health.as_ref(),
        Some(state.health_reports.clone()),
    )
    .await?;
    for job in &state.config.jobs {
        let name = format!("job:{}", job.name);
        if let Some(r) = spawn_handler(&cell, &name, Some(&job.handler), None).await? {
            state.handlers.jobs.push(r);
        }
    }
    Ok(())
}

fn on_signal(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, sig: Signal) {
    match (sig, state.phase) {
        (Signal::SIGTERM | Signal::SIGINT, Phase::Starting) => {
            info!(signal = %sig, "stop requested during start-up");
            // A main process that runs already is stopped as in `Running`, and its exit
            // status becomes the agent's; without one, the agent exits as the signal says.
            if state.process.is_some() {
                begin_stop(myself, state);
            } else {
                state.exit_code.get_or_insert(128 + sig as i32);
                stop_actor(&state.handlers.pre_start);
                finish(myself, state, 128 + sig as i32);
            }
        }
        (Signal::SIGTERM | Signal::SIGINT, Phase::Running) => {
            info!(signal = %sig, "stop requested");
            begin_stop(myself, state);
        }
        (Signal::SIGTERM | Signal::SIGINT, Phase::Stopping) => {
            warn!(signal = %sig, "second stop request: killing what still runs");
            escalate(state);
        }
        (other, _) => {
            if let Some(p) = &state.process {
                info!(signal = %other, "forwarding signal to the main process");
                let _ = p.cast(ProcessMsg::Forward(other));
            }
        }
    }
}

/// Start the role logic once the main process runs, or held (clustered agents only).
async fn start_role(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    held: bool,
) -> Result<(), ActorProcessingErr> {
    let (Some(publish), Some(view)) = (state.role_publish.take(), state.view_publish.take()) else {
        return Ok(());
    };
    let Some(process) = state.process.clone() else {
        return Ok(());
    };
    let backup_view = view.subscribe();
    let handlers = RoleHandlers {
        process,
        on_change: state.handlers.on_change.clone(),
        pre_promote: state.handlers.pre_promote.clone(),
    };
    let args = role_args(
        &state.config,
        state.engine.clone(),
        state.status.clone(),
        publish,
        view,
        handlers,
    )
    .await?;
    if let Some(mut args) = args {
        args.begin_without_database = held;
        args.packages = state.packages.clone();
        args.inherited = state.inheritance.take();
        let (store, keys) = (args.store.clone(), args.keys.clone());
        let (role, _) = Actor::spawn_linked(None, RoleActor, args, myself.get_cell()).await?;
        state.role = Some(role);
        // The backup agent reads what the role actor publishes (cluster, lease). Not linked:
        // a failure of the backup agent must never stop the database node. It starts in the
        // background, retried with backoff while it cannot (a catalog on a missing mount, a
        // repository that cannot be opened). It shares the role actor's etcd client.
        let config = state.config.clone();
        let engine = state.engine.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(5);
            loop {
                let args = super::backup::backup_args(
                    &config,
                    engine.clone(),
                    backup_view.clone(),
                    store.clone(),
                    keys.clone(),
                );
                match args.await {
                    Ok(Some(args)) => {
                        if let Err(e) = Actor::spawn(None, super::backup::BackupActor, args).await {
                            error!(cause = %e, "the backup agent cannot start; no backups run on this node");
                        }
                        return;
                    }
                    Ok(None) => return,
                    Err(why) => {
                        warn!(
                            "the backup agent cannot start yet: {why}; trying again in {delay:?}"
                        );
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(300));
                    }
                }
            }
        });
    }
    Ok(())
}

/// How long to wait for a handler's reply: its own timeout, the kill grace, and slack.
fn handler_limit(config: Option<&HandlerConfig>) -> Duration {
    config.map_or(Duration::ZERO, |c| c.timeout) + HANDLER_KILL_GRACE + REPLY_SLACK
}

/// Run a handler once and wait for its report; `None` when it did not report in time or
/// its actor was stopped.
async fn run_handler(
    handler: &ActorRef<HandlerMsg>,
    env: Vec<(String, String)>,
    limit: Duration,
) -> Option<RunReport> {
    let call = handler
        .call(
            |reply| HandlerMsg::Run {
                env,
                reply: Some(reply),
            },
            Some(limit),
        )
        .await;
    match call {
        Ok(CallResult::Success(report)) => Some(report),
        _ => None,
    }
}

async fn spawn_handler(
    supervisor: &ActorCell,
    name: &str,
    config: Option<&HandlerConfig>,
    reports: Option<Arc<OutputPort<RunReport>>>,
) -> Result<Option<ActorRef<HandlerMsg>>, ActorProcessingErr> {
    let Some(config) = config else {
        return Ok(None);
    };
    let (actor, _) = Actor::spawn_linked(
        None,
        HandlerActor,
        HandlerArgs {
            name: name.to_owned(),
            spec: handler_spec(config),
            interval: config.interval,
            reports,
        },
        supervisor.clone(),
    )
    .await?;
    Ok(Some(actor))
}
