//! One ractor actor per configured handler: runs the exec on request or on its interval,
//! never two overlapping runs of one handler.
//!
//! # Messages and ordering
//!
//! - [`HandlerMsg::Run`] starts a run at once if the handler is idle. While a run is in
//!   progress, requests queue up and are **coalesced**: when the run ends, one new run starts
//!   with the env of the *latest* queued request, and every queued reply gets that run's
//!   report.
//! - With an `interval`, the actor ticks (first tick immediately, then every interval) and
//!   runs with the env set by [`HandlerMsg::SetEnv`]. A tick that arrives while a run (of any
//!   kind) is in progress or queued is skipped (`autopilot_handler_skipped_total{handler}`).
//! - The mailbox is never blocked by a run: the process runs in a task that sends
//!   `Finished` back to the actor.
//!
//! # Reports
//!
//! Every finished run (requested or periodic) produces a [`RunReport`]: it answers the
//! `Run` replies waiting on it and is published on [`HandlerArgs::reports`], an
//! [`OutputPort`] that subscribers (e.g. the Health actor for the health handler) join with
//! [`OutputPort::subscribe`].
//!
//! # Stopping
//!
//! On a graceful stop (`post_stop`) a running process group gets SIGTERM, `kill_grace`, then
//! SIGKILL. If the actor is killed or panics (no `post_stop`), dropping its state SIGKILLs
//! the group. Pending replies are dropped, so callers see the call fail.
//!
//! Metrics: `autopilot_handler_runs_total{handler,outcome}`,
//! `autopilot_handler_duration_seconds{handler}`, `autopilot_handler_skipped_total{handler}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::exec::{ExecSpec, ExitStatus, GroupHandle, ManagedChild, RunOutcome, error_chain};

/// Extra time `post_stop` waits for the run task beyond `kill_grace` before giving up on it.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The handler actor. Holds no state; the state is built in `pre_start` from [`HandlerArgs`].
pub struct HandlerActor;

/// How to build a handler actor.
pub struct HandlerArgs {
    /// "preStart", "health", "job:rotate-logs": the `handler` log field and metric label.
    pub name: String,
    /// What to run.
    pub spec: ExecSpec,
    /// `Some` makes the handler periodic: first run immediately, then every interval.
    pub interval: Option<Duration>,
    /// Where every finished run's report is published (see the module doc).
    pub reports: Option<Arc<OutputPort<RunReport>>>,
}

/// Messages of [`HandlerActor`].
pub enum HandlerMsg {
    /// Run once with extra env (the event variables); reply when that run ends.
    Run {
        /// Added to the spec's env for this run (wins on a clash).
        env: Vec<(String, String)>,
        /// Gets the report of the run that served this request.
        reply: Option<RpcReplyPort<RunReport>>,
    },
    /// Env for periodic runs from now on (e.g. the current role).
    SetEnv(Vec<(String, String)>),
    /// Internal: the interval timer fired.
    #[doc(hidden)]
    Tick,
    /// Internal: a run task ended.
    #[doc(hidden)]
    Finished(RunFinished),
}

/// Internal payload of [`HandlerMsg::Finished`]; cannot be built outside this module.
#[doc(hidden)]
pub struct RunFinished {
    /// Which run ended, so a stale message cannot end a newer run.
    run: u64,
    /// How it ended.
    outcome: HandlerOutcome,
    /// Wall time from spawn to the end of the run.
    duration: Duration,
}

/// The result of one handler run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The handler's name.
    pub handler: String,
    /// How the run ended.
    pub outcome: HandlerOutcome,
    /// Wall time from spawn to the end of the run.
    pub duration: Duration,
}

/// How a handler run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerOutcome {
    /// Exit code 0.
    Success,
    /// Non-zero exit or killed by a signal.
    Failed(ExitStatus),
    /// Outlived the spec's timeout; its process group was stopped.
    TimedOut,
    /// Could not start; the message names the program and the cause.
    SpawnFailed(String),
}

impl HandlerOutcome {
    /// The metric label: "success" | "failure" | "timeout" | "spawn_error".
    pub fn label(&self) -> &'static str {
        match self {
            HandlerOutcome::Success => "success",
            HandlerOutcome::Failed(_) => "failure",
            HandlerOutcome::TimedOut => "timeout",
            HandlerOutcome::SpawnFailed(_) => "spawn_error",
        }
    }

    /// Whether the run succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, HandlerOutcome::Success)
    }
}

impl From<RunOutcome> for HandlerOutcome {
    fn from(outcome: RunOutcome) -> Self {
        match outcome {
            RunOutcome::Exited(status) if status.success() => HandlerOutcome::Success,
            RunOutcome::Exited(status) => HandlerOutcome::Failed(status),
            RunOutcome::TimedOut => HandlerOutcome::TimedOut,
        }
    }
}

/// The actor's state, owned by the actor only.
pub struct HandlerState {
    /// Log field and metric label.
    name: String,
    /// What each run executes.
    spec: ExecSpec,
    /// Period of a periodic handler.
    interval: Option<Duration>,
    /// Env for periodic runs, set by `SetEnv`.
    periodic_env: Vec<(String, String)>,
    /// Where reports are published.
    reports: Option<Arc<OutputPort<RunReport>>>,
    /// The run in progress, if any.
    running: Option<Running>,
    /// Requests that arrived during the current run (coalesced).
    queued: Option<Queued>,
    /// The interval timer task of a periodic handler.
    ticker: Option<AbortOnDrop>,
    /// Id of the next run.
    next_run: u64,
}

/// A run in progress.
struct Running {
    /// Matches [`RunFinished::run`].
    id: u64,
    /// To kill the group if the actor dies.
    group: GroupHandle,
    /// Tells the run task to stop the group gracefully.
    cancel: Option<oneshot::Sender<()>>,
    /// The run task.
    task: JoinHandle<()>,
    /// Who waits for this run's report.
    replies: Vec<RpcReplyPort<RunReport>>,
    /// Set when the run ended normally: then the group is left alone on drop.
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            // The actor died (or stopped) during the run: leave no process behind.
            if let Err(e) = self.group.signal_group(Signal::SIGKILL) {
                warn!(cause = %error_chain(&e), "failed to kill a handler's process group");
            }
            self.task.abort();
        }
    }
}

/// Coalesced requests waiting for the current run to end.
struct Queued {
    /// The env of the latest request.
    env: Vec<(String, String)>,
    /// Everyone waiting for the next run.
    replies: Vec<RpcReplyPort<RunReport>>,
}

/// Aborts a task when dropped (the ticker must not outlive the actor).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor for HandlerActor {
    type Msg = HandlerMsg;
    type State = HandlerState;
    type Arguments = HandlerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: HandlerArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let HandlerArgs {
            name,
            spec,
            interval,
            reports,
        } = args;
        if spec.argv.is_empty() {
            return Err(format!("handler {name}: argv is empty").into());
        }
        if interval.is_some_and(|i| i.is_zero()) {
            return Err(format!("handler {name}: interval must be positive").into());
        }
        Ok(HandlerState {
            name,
            spec,
            interval,
            periodic_env: Vec::new(),
            reports,
            running: None,
            queued: None,
            ticker: None,
            next_run: 0,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Started here, once the actor can receive messages; the first tick fires at once.
        if let Some(period) = state.interval {
            let me = myself.clone();
            let task = tokio::spawn(async move {
                let mut timer = tokio::time::interval(period);
                timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    timer.tick().await;
                    if me.cast(HandlerMsg::Tick).is_err() {
                        break;
                    }
                }
            });
            state.ticker = Some(AbortOnDrop(task));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HandlerMsg::Run { env, reply } => {
                let replies: Vec<_> = reply.into_iter().collect();
                if state.running.is_some() {
                    let queued = state.queued.get_or_insert_with(|| Queued {
                        env: Vec::new(),
                        replies: Vec::new(),
                    });
                    queued.env = env;
                    queued.replies.extend(replies);
                    debug!(handler = %state.name, "run requested during a run; queued");
                } else {
                    state.start_run(&myself, env, replies);
                }
            }
            HandlerMsg::SetEnv(env) => state.periodic_env = env,
            HandlerMsg::Tick => {
                if state.running.is_some() || state.queued.is_some() {
                    metrics::counter!("autopilot_handler_skipped_total", "handler" => state.name.clone())
                        .increment(1);
                    debug!(handler = %state.name, "periodic run skipped: a run is in progress");
                } else {
                    let env = state.periodic_env.clone();
                    state.start_run(&myself, env, Vec::new());
                }
            }
            HandlerMsg::Finished(finished) => {
                let Some(running) = state.running.take_if(|r| r.id == finished.run) else {
                    return Ok(());
                };
                let mut running = running;
                running.done = true;
                let replies = std::mem::take(&mut running.replies);
                drop(running);
                state.finish(finished.outcome, finished.duration, replies);
                if let Some(queued) = state.queued.take() {
                    state.start_run(&myself, queued.env, queued.replies);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker = None;
        state.queued = None;
        if let Some(mut running) = state.running.take() {
            info!(handler = %state.name, pid = running.group.pid(),
                "stopping during a run; terminating its process group");
            if let Some(cancel) = running.cancel.take() {
                let _ = cancel.send(());
            }
            let limit = state.spec.kill_grace + STOP_MARGIN;
            if tokio::time::timeout(limit, &mut running.task)
                .await
                .is_err()
            {
                warn!(handler = %state.name, "run did not end after SIGTERM, grace and SIGKILL");
            }
            // Dropping `running` SIGKILLs whatever is left of the group.
        }
        Ok(())
    }
}

impl HandlerState {
    /// Start a run now (the handler must be idle). A spawn failure ends the run at once.
    fn start_run(
        &mut self,
        myself: &ActorRef<HandlerMsg>,
        env: Vec<(String, String)>,
        replies: Vec<RpcReplyPort<RunReport>>,
    ) {
        debug_assert!(self.running.is_none(), "never two overlapping runs");
        let id = self.next_run;
        self.next_run += 1;
        let started = Instant::now();
        let mut child = match ManagedChild::spawn(&self.name, &self.spec, &env) {
            Ok(child) => child,
            Err(e) => {
                let outcome = HandlerOutcome::SpawnFailed(error_chain(&e));
                self.finish(outcome, started.elapsed(), replies);
                return;
            }
        };
        let group = child.group();
        let (cancel, cancelled) = oneshot::channel::<()>();
        let (timeout, grace) = (self.spec.timeout, self.spec.kill_grace);
        let me = myself.clone();
        let task = tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = child.supervise(timeout, grace) => Some(outcome),
                // Sent by post_stop (or the sender dropped): stop the group gracefully.
                _ = cancelled => None,
            };
            let Some(outcome) = outcome else {
                child.stop_group(grace).await;
                return;
            };
            let finished = RunFinished {
                run: id,
                outcome: outcome.into(),
                duration: started.elapsed(),
            };
            // Fails only if the actor is gone; then nobody waits for the report.
            let _ = me.cast(HandlerMsg::Finished(finished));
        });
        self.running = Some(Running {
            id,
            group,
            cancel: Some(cancel),
            task,
            replies,
            done: false,
        });
    }

    /// Record, log, answer and publish the end of a run.
    fn finish(
        &mut self,
        outcome: HandlerOutcome,
        duration: Duration,
        replies: Vec<RpcReplyPort<RunReport>>,
    ) {
        let label = outcome.label();
        metrics::counter!("autopilot_handler_runs_total",
            "handler" => self.name.clone(), "outcome" => label)
        .increment(1);
        metrics::histogram!("autopilot_handler_duration_seconds", "handler" => self.name.clone())
            .record(duration.as_secs_f64());
        match &outcome {
            HandlerOutcome::Success => {
                info!(handler = %self.name, outcome = label, ?duration, "handler run ended");
            }
            HandlerOutcome::Failed(status) => {
                warn!(handler = %self.name, outcome = label, ?duration, %status, "handler run failed");
            }
            HandlerOutcome::TimedOut => {
                warn!(handler = %self.name, outcome = label, ?duration, timeout = ?self.spec.timeout,
                    "handler run timed out");
            }
            HandlerOutcome::SpawnFailed(cause) => {
                warn!(handler = %self.name, outcome = label, ?duration, %cause, "handler could not start");
            }
        }
        let report = RunReport {
            handler: self.name.clone(),
            outcome,
            duration,
        };
        for reply in replies {
            // The caller may have timed out and gone; that is fine.
            let _ = reply.send(report.clone());
        }
        if let Some(port) = &self.reports {
            port.send(report);
        }
    }
}
