//! The health actor: folds the main process's state, the engine probe and the operator's
//! health handler into one [`NodeStatus`], published on a `watch` channel for `/health`
//! (and, later, for the role logic) and as the `autopilot_health` gauge.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use engines::{AnyEngine, Engine, Replication, ServerStatus};
use handlers::RunReport;
use metrics::gauge;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tracing::{info, warn};

use super::process::ProcessEvent;
use crate::telemetry::{Lifecycle, NodeStatus};
use listen::Throttle;

/// How long one engine probe may take. A database that does not answer within it is
/// unhealthy: with a probe every second (the default) a hung server is reported within 3 s,
/// and the role logic gives a primary no grace for it (see `node::role`).
pub const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// How soon a failed probe is repeated while the database has not answered yet since it was
/// (re)started: a restarted or rewound server is seen ready within this much of accepting
/// connections instead of a whole probe interval later (a rejoin's critical path).
pub const STARTING_PROBE_RETRY: Duration = Duration::from_millis(100);

/// Probes skipped because the agent is out of descriptors are logged at most every 10 s.
static PROBE_SKIPS: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(Duration::from_secs(10)));

/// Computes and publishes the node's health; holds no state itself.
pub struct HealthActor;

/// What the health actor needs.
pub struct HealthArgs {
    /// Probed every `probe_interval` while the main process runs.
    pub engine: Arc<AnyEngine>,
    /// How often to probe the engine.
    pub probe_interval: Duration,
    /// Whether an operator health handler is configured (its verdict then counts).
    pub has_health_handler: bool,
    /// Where the status is published.
    pub publish: watch::Sender<NodeStatus>,
}

/// Messages of the health actor.
#[derive(Debug)]
pub enum HealthMsg {
    /// The agent moved to another lifecycle phase.
    Lifecycle(Lifecycle),
    /// Something happened to the main process.
    Process(ProcessEvent),
    /// A health handler run ended.
    Handler(RunReport),
    /// Time to probe the engine.
    Probe,
    /// The quick second look of a database that has not answered since it started.
    Retry,
    /// An engine probe ended: `Ok` healthy (with what it saw of replication), `Err(reason)`
    /// not; and what it read of the server, healthy or not (an apply error is a fact the
    /// node documents carry), `None` when the server did not answer.
    Probed(Result<Replication, String>, Option<Box<ServerStatus>>),
}

/// State owned by the running actor.
pub struct HealthState {
    args: HealthArgs,
    lifecycle: Lifecycle,
    main_pid: Option<u32>,
    /// The main process has been started at least once.
    main_started: bool,
    /// The last health handler verdict; `None` before its first run.
    handler: Option<Result<(), String>>,
    /// The last engine probe verdict; `None` before its first run.
    engine: Option<Result<Replication, String>>,
    /// What the last probe that reached the server read of it.
    server: Option<Box<ServerStatus>>,
    /// A probe succeeded since the main process last started.
    answered_since_start: bool,
    /// A [`HealthMsg::Retry`] is scheduled (at most one is).
    retry_pending: bool,
    /// Engine probes that failed in a row (0 after one that succeeded).
    failures: u32,
    /// The current unhealthy spell was logged at WARN.
    warned: bool,
}

impl Actor for HealthActor {
    type Msg = HealthMsg;
    type State = HealthState;
    type Arguments = HealthArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: HealthArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.probe_interval, || HealthMsg::Probe);
        Ok(HealthState {
            args,
            lifecycle: Lifecycle::Starting,
            main_pid: None,
            main_started: false,
            handler: None,
            engine: None,
            server: None,
            answered_since_start: false,
            retry_pending: false,
            failures: 0,
            warned: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HealthMsg::Lifecycle(l) => state.lifecycle = l,
            HealthMsg::Process(ProcessEvent::Started { pid, .. }) => {
                state.main_pid = Some(pid);
                state.main_started = true;
                state.engine = None;
                state.server = None;
                state.answered_since_start = false;
                myself.cast(HealthMsg::Probe)?;
            }
            HealthMsg::Process(_) => state.main_pid = None,
            HealthMsg::Handler(report) => {
                state.handler = Some(if report.outcome.is_success() {
                    Ok(())
                } else {
                    Err(format!("health handler: {:?}", report.outcome))
                });
            }
            HealthMsg::Probe | HealthMsg::Retry => {
                if matches!(msg, HealthMsg::Retry) {
                    state.retry_pending = false;
                }
                if state.main_pid.is_some() {
                    let engine = state.args.engine.clone();
                    let me = myself.clone();
                    tokio::spawn(async move {
                        let (verdict, server) = match tokio::time::timeout(
                            PROBE_LIMIT,
                            engine.probe(),
                        )
                        .await
                        {
                            Ok(Ok(p)) if p.healthy => (Ok(p.replication), Some(Box::new(p.server))),
                            Ok(Ok(p)) => (
                                Err(p.reason.unwrap_or_else(|| "engine probe failed".into())),
                                Some(Box::new(p.server)),
                            ),
                            // The agent's own trouble: the last verdict about the database stands.
                            Ok(Err(e)) if e.is_agent_trouble() => {
                                metrics::counter!("autopilot_probe_skipped_total", "reason" => "out_of_file_descriptors").increment(1);
                                if let Some(held) = PROBE_SKIPS.pass() {
                                    warn!(cause = %e, skipped_since_last_line = held, "engine probe skipped; keeping the last verdict");
                                }
                                return;
                            }
                            Ok(Err(e)) => (Err(format!("engine probe: {e}")), None),
                            Err(_) => (
                                Err(format!(
                                    "engine probe: the database did not answer within {PROBE_LIMIT:?} (hung?)"
                                )),
                                None,
                            ),
                        };
                        let _ = me.cast(HealthMsg::Probed(verdict, server));
                    });
                }
            }
            HealthMsg::Probed(verdict, server) => {
                state.server = server;
                if verdict.is_ok() {
                    state.answered_since_start = true;
                    state.failures = 0;
                } else {
                    state.failures = state.failures.saturating_add(1);
                    // Still starting, or the first failure of a server that answered (one
                    // the engine is stopping breaks the probe's connection before it stops
                    // accepting new ones): look again soon.
                    if (!state.answered_since_start || state.failures == 1)
                        && state.main_pid.is_some()
                        && !state.retry_pending
                    {
                        state.retry_pending = true;
                        myself.send_after(STARTING_PROBE_RETRY, || HealthMsg::Retry);
                    }
                }
                state.engine = Some(verdict);
            }
        }
        publish(state);
        Ok(())
    }
}

fn publish(state: &mut HealthState) {
    let reason = unhealthy_reason(state);
    let replication = match &state.engine {
        Some(Ok(r)) if state.main_pid.is_some() => *r,
        _ => Replication::Unknown,
    };
    let server = match &state.server {
        Some(s) if state.main_pid.is_some() => (**s).clone(),
        _ => ServerStatus::default(),
    };
    export_replication(replication);
    let status = NodeStatus {
        healthy: reason.is_none(),
        lifecycle: state.lifecycle,
        main_pid: state.main_pid,
        reason,
        replication,
        server,
    };
    gauge!("autopilot_health").set(if status.healthy { 1.0 } else { 0.0 });
    gauge!("autopilot_lifecycle").set(status.lifecycle.as_gauge());
    // Not being healthy while starting, stopping or awaiting a first verdict is normal; so is
    // a server that has not answered since it (re)started (still starting), and one going
    // down while its process was not reported gone: the engine stops it for a clone or
    // rewind (no exit is reported for that), or it is exiting, and then the exit is reported
    // and logged with its own reason. A failure is a warning once it repeats (the first one
    // is looked at again at once: a server being stopped breaks a probe's connection
    // before it refuses new ones).
    let before = state.args.publish.borrow().reason.clone();
    match (&before, &status.reason) {
        (Some(_), None) => info!("node is healthy"),
        (_, Some(r)) if before.as_ref() != Some(r) => {
            if warns(state, status.lifecycle, r) {
                state.warned = true;
                warn!(reason = %r, "node is not healthy");
            } else {
                info!(reason = %r, "node is not healthy yet");
            }
        }
        (_, Some(r)) if !state.warned && warns(state, status.lifecycle, r) => {
            state.warned = true;
            warn!(reason = %r, "node is not healthy");
        }
        _ => {}
    }
    if status.reason.is_none() {
        state.warned = false;
    }
    state.args.publish.send_if_modified(|current| {
        if *current == status {
            return false;
        }
        *current = status;
        true
    });
}

/// Whether being unhealthy for `reason` is worth a warning now (see [`publish`]).
fn warns(state: &HealthState, lifecycle: Lifecycle, reason: &str) -> bool {
    // Only the engine probe's verdict waits for a second look.
    let probe_failed = state.main_pid.is_some() && matches!(state.engine, Some(Err(_)));
    lifecycle == Lifecycle::Running
        && !reason.starts_with("waiting")
        && state.answered_since_start
        && (!probe_failed || state.failures >= 2)
        && !going_down(state, reason)
}

/// Whether the main process the health actor believes running is going or gone without an
/// exit event: the engine's probe finds no server to connect to (`reason`), or the process
/// no longer exists. The engine holds it down (`ProcessMsg::Hold` reports no exit), or its
/// exit is on the way.
fn going_down(state: &HealthState, reason: &str) -> bool {
    let Some(pid) = state.main_pid else {
        return false;
    };
    reason == format!("engine probe: {}", engines::EngineError::NotRunning)
        || i32::try_from(pid).is_ok_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
        })
}

fn unhealthy_reason(state: &HealthState) -> Option<String> {
    match state.lifecycle {
        Lifecycle::Starting => return Some("starting".into()),
        Lifecycle::Stopping => return Some("stopping".into()),
        Lifecycle::Running => {}
    }
    if state.main_pid.is_none() {
        return Some(if state.main_started {
            "the main process is not running".into()
        } else {
            "waiting for the main process to start".into()
        });
    }
    match &state.engine {
        None => return Some("waiting for the first engine probe".into()),
        Some(Err(r)) => return Some(r.clone()),
        Some(Ok(_)) => {}
    }
    if state.args.has_health_handler {
        match &state.handler {
            None => return Some("waiting for the first health check".into()),
            Some(Err(r)) => return Some(r.clone()),
            Some(Ok(())) => {}
        }
    }
    None
}

/// The engine-neutral replication gauges (documented in docs/operations.md): a primary's
/// streaming and synchronous replicas and whether commits need one, a replica's receiver.
fn export_replication(r: Replication) {
    let (streaming, synchronous, required, receiving) = match r {
        Replication::Source {
            streaming,
            synchronous,
            synchronous_required,
        } => (
            f64::from(streaming),
            f64::from(synchronous),
            f64::from(u8::from(synchronous_required)),
            0.0,
        ),
        Replication::Replica { receiving } => (0.0, 0.0, 0.0, f64::from(u8::from(receiving))),
        Replication::Unknown => (0.0, 0.0, 0.0, 0.0),
    };
    gauge!("autopilot_replicas_streaming").set(streaming);
    gauge!("autopilot_replicas_synchronous").set(synchronous);
    gauge!("autopilot_synchronous_commit_required").set(required);
    gauge!("autopilot_replication_receiving").set(receiving);
}
