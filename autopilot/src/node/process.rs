//! The process actor: owns the main process — spawns it through the engine's command,
//! restarts it by policy with exponential backoff, forwards signals, stops it (stop signal,
//! `stop_timeout`, then SIGKILL of its whole process group).
//!
//! The mailbox never blocks on the child: a task waits for the exit and sends it back as a
//! message, so `Stop`, `Forward` and `Escalate` are handled while the child runs or stops.
//!
//! `Hold` and `Release` serve the engine's [`engines::MainControl`]: a held main process is
//! stopped on purpose (an engine clones or rewinds its data) and is neither restarted by
//! policy nor reported as exited; `Release` starts it again and reports `Started` with
//! `resumed: true`, so nobody mistakes it for a crash and restart. The actor can also start
//! held (`ProcessArgs::held`): the main process is first spawned by a `Release`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::{AnyEngine, Engine, StopMode};
use handlers::exec::GroupHandle;
use handlers::{ExitStatus, ManagedChild, Outputs};
use metrics::{counter, gauge};
use nix::sys::signal::Signal;
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, RpcReplyPort};
use tracing::{error, info, warn};

use crate::config::{Backoff, RestartPolicy};

/// How long the reason for an exit (the last failure line on stderr) may take to arrive
/// after the exit.
const REASON_WAIT: Duration = Duration::from_secs(2);

/// Owns the main process; holds no state itself.
pub struct ProcessActor;

/// What the process actor needs.
pub struct ProcessArgs {
    /// Provides the command line and the stop signal.
    pub engine: Arc<AnyEngine>,
    /// Grace between the stop signal and SIGKILL.
    pub stop_timeout: Duration,
    /// What to do when the process exits on its own.
    pub restart: RestartPolicy,
    /// Extra environment for the main process (the event variables at start).
    pub env: Vec<(String, String)>,
    /// Where lifecycle events are published (supervisor and health subscribe).
    pub events: Arc<OutputPort<ProcessEvent>>,
    /// Start held: not spawned until an engine's `Release` (a node without data whose
    /// engine starts the database once it cloned the primary).
    pub held: bool,
    /// The main process the agent's previous image ran (in-place upgrade): taken over
    /// instead of spawning one.
    pub adopted: Option<Adopted>,
}

/// A main process inherited across the agent's `execve`, already adopted.
pub struct Adopted {
    /// The adopted child.
    pub child: ManagedChild,
    /// Its last failure line, once its stderr closes.
    pub failure: Option<handlers::exec::FailureLine>,
    /// Duplicates of its output pipes, for the next hand-over.
    pub outputs: Option<Outputs>,
}

/// What the agent's next image needs of the running main process.
pub struct MainHandover {
    /// Its pid.
    pub pid: u32,
    /// Duplicates of its output pipes' read ends, which the caller keeps open across the
    /// `execve`.
    pub outputs: Outputs,
}

/// What happened to the main process; published on the events port.
#[derive(Clone, Debug)]
pub enum ProcessEvent {
    /// The main process was spawned; `resumed` when an engine asked for it after a hold.
    Started { pid: u32, resumed: bool },
    /// It exited on its own; `restart_in` is `Some` when the policy restarts it; `reason` is
    /// the last line it wrote to stderr that reads like a failure.
    Exited {
        status: ExitStatus,
        restart_in: Option<Duration>,
        reason: Option<String>,
    },
    /// It could not be spawned; the agent cannot go on.
    SpawnFailed { message: String },
    /// It ended after a `Stop` request.
    Stopped { status: ExitStatus },
}

/// Messages of the process actor.
pub enum ProcessMsg {
    /// Spawn the main process (at start and after a restart delay).
    Spawn,
    /// Forward a signal to the main process.
    Forward(Signal),
    /// Stop it: stop signal, `stop_timeout`, SIGKILL of the group. Replies with its exit
    /// status, or `None` when it was not running.
    Stop(RpcReplyPort<Option<ExitStatus>>),
    /// SIGKILL the whole group now (a second stop request).
    Escalate,
    /// SIGKILL the whole group now because the database does not answer and must be fenced
    /// (the role logic's `KillDatabase`); it then exits like a crash and the restart policy
    /// applies. Replies once the signal was sent: whether something was running.
    Kill(RpcReplyPort<bool>),
    /// Stop it for an engine operation (signal for `mode`, `stop_timeout`, SIGKILL) and keep
    /// it down until `Release`. Replies once it is down.
    Hold {
        mode: StopMode,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Start it again after `Hold`. Replies once it is spawned.
    Release(RpcReplyPort<Result<(), String>>),
    /// Internal: the child of `generation` exited (with its last failure line).
    Exited {
        generation: u64,
        status: ExitStatus,
        reason: Option<String>,
    },
    /// Internal: `stop_timeout` passed for the stop of `generation`.
    StopTimedOut { generation: u64 },
    /// The agent is about to re-execute in place: what its next image needs to adopt the
    /// running main process; `Err` when there is none to hand over (not running, stopping,
    /// held for an engine operation, or its output pipes were not kept).
    Handover(RpcReplyPort<Result<MainHandover, String>>),
}

/// The running child as the actor sees it.
struct Running {
    /// Signals the child and its group.
    group: GroupHandle,
    /// Distinguishes this child's messages from an earlier one's.
    generation: u64,
    /// When it started, to reset the backoff after a long run.
    started: Instant,
    /// Its output pipes' read ends (duplicates), for a hand-over to the next image.
    outputs: Option<Outputs>,
}

/// State owned by the running actor.
pub struct ProcessState {
    args: ProcessArgs,
    running: Option<Running>,
    generation: u64,
    /// Consecutive restarts since the last long-enough run.
    restarts: u32,
    /// A pending `Stop` waiting for the exit.
    stop_reply: Option<RpcReplyPort<Option<ExitStatus>>>,
    /// A stop was requested; no more restarts.
    stopping: bool,
    /// An engine holds the main process down (see `Hold`).
    held: bool,
    /// A pending `Hold` waiting for the exit.
    hold_reply: Option<RpcReplyPort<Result<(), String>>>,
    /// The next spawn answers a `Release`.
    resuming: bool,
}

impl Actor for ProcessActor {
    type Msg = ProcessMsg;
    type State = ProcessState;
    type Arguments = ProcessArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ProcessArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let held = args.held;
        let adopted = args.adopted.is_some();
        if adopted {
            // Started in `post_start`, once the state exists.
        } else if held {
            info!("the main process waits for the engine to start it (after the clone)");
        } else {
            myself.cast(ProcessMsg::Spawn)?;
        }
        Ok(ProcessState {
            args,
            running: None,
            generation: 0,
            restarts: 0,
            stop_reply: None,
            stopping: false,
            held,
            hold_reply: None,
            resuming: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProcessMsg::Spawn => {
                let _ = spawn(&myself, state);
            }
            ProcessMsg::Handover(reply) => {
                let answer = match &state.running {
                    _ if state.stopping => Err("the agent is stopping".to_owned()),
                    _ if state.held => {
                        Err("the database is stopped for an engine operation".to_owned())
                    }
                    None => Err("the database is not running".to_owned()),
                    Some(Running { outputs: None, .. }) => {
                        Err("the database's output pipes were not kept".to_owned())
                    }
                    Some(Running {
                        group,
                        outputs: Some(o),
                        ..
                    }) => o
                        .stdout
                        .try_clone()
                        .and_then(|stdout| {
                            Ok(Outputs {
                                stdout,
                                stderr: o.stderr.try_clone()?,
                            })
                        })
                        .map(|outputs| MainHandover {
                            pid: group.pid(),
                            outputs,
                        })
                        .map_err(|e| format!("duplicate the database's output pipes: {e}")),
                };
                let _ = reply.send(answer);
            }
            ProcessMsg::Forward(sig) => {
                if let Some(r) = &state.running
                    && let Err(e) = r.group.signal_leader(sig)
                {
                    warn!(signal = %sig, cause = %e, "failed to forward signal to the main process");
                }
            }
            ProcessMsg::Hold { mode, reply } => hold(&myself, state, mode, reply),
            ProcessMsg::Release(reply) => {
                if state.stopping {
                    let _ = reply.send(Err("the agent is stopping".to_owned()));
                } else if state.running.is_some() {
                    let _ = reply.send(Err("the main process is already running".to_owned()));
                } else {
                    state.held = false;
                    state.resuming = true;
                    let spawned = spawn(&myself, state);
                    let _ = reply.send(spawned);
                }
            }
            ProcessMsg::Stop(reply) => {
                state.stopping = true;
                if let Some(r) = state.hold_reply.take() {
                    let _ = r.send(Err("the agent is stopping".to_owned()));
                }
                match &state.running {
                    None => {
                        let _ = reply.send(None);
                    }
                    Some(r) => {
                        let sig = state.args.engine.stop_signal(StopMode::Graceful);
                        info!(pid = r.group.pid(), signal = %sig, timeout = ?state.args.stop_timeout, "stopping the main process");
                        if let Err(e) = r.group.signal_leader(sig) {
                            warn!(cause = %e, "failed to signal the main process");
                        }
                        let generation = r.generation;
                        myself.send_after(state.args.stop_timeout, move || {
                            ProcessMsg::StopTimedOut { generation }
                        });
                        state.stop_reply = Some(reply);
                    }
                }
            }
            ProcessMsg::StopTimedOut { generation } => {
                if let Some(r) = &state.running
                    && r.generation == generation
                {
                    warn!(
                        pid = r.group.pid(),
                        "the main process did not stop in time; killing its process group"
                    );
                    let _ = r.group.signal_group(Signal::SIGKILL);
                }
            }
            ProcessMsg::Escalate => {
                state.stopping = true;
                if let Some(r) = &state.running {
                    warn!(pid = r.group.pid(), "killing the main process group now");
                    let _ = r.group.signal_group(Signal::SIGKILL);
                }
            }
            ProcessMsg::Kill(reply) => {
                let running = match &state.running {
                    Some(r) => {
                        warn!(
                            pid = r.group.pid(),
                            "killing the main process and all its descendants: the database does not answer and must take no more writes"
                        );
                        counter!("autopilot_database_kills_total").increment(1);
                        if let Err(e) = r.group.kill_tree() {
                            warn!(cause = %e, "failed to kill the main process group");
                        }
                        true
                    }
                    None => false,
                };
                let _ = reply.send(running);
            }
            ProcessMsg::Exited {
                generation,
                status,
                reason,
            } => {
                exited(&myself, state, generation, status, reason);
            }
        }
        Ok(())
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(a) = state.args.adopted.take() {
            info!(
                pid = a.child.pid(),
                "main process adopted from the agent's previous image"
            );
            watch(&myself, state, a.child, a.failure, a.outputs, false);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Never leave the main process behind when the actor goes away.
        if let Some(r) = state.running.take() {
            let _ = r.group.signal_group(Signal::SIGKILL);
        }
        gauge!("autopilot_main_process_up").set(0.0);
        Ok(())
    }
}

/// Stop the main process for an engine operation and keep it down.
fn hold(
    myself: &ActorRef<ProcessMsg>,
    state: &mut ProcessState,
    mode: StopMode,
    reply: RpcReplyPort<Result<(), String>>,
) {
    if state.stopping {
        let _ = reply.send(Err("the agent is stopping".to_owned()));
        return;
    }
    state.held = true;
    let Some(r) = &state.running else {
        let _ = reply.send(Ok(()));
        return;
    };
    let sig = state.args.engine.stop_signal(mode);
    info!(pid = r.group.pid(), signal = %sig, "stopping the main process for an engine operation");
    if let Err(e) = r.group.signal_leader(sig) {
        warn!(cause = %e, "failed to signal the main process");
    }
    let generation = r.generation;
    myself.send_after(state.args.stop_timeout, move || ProcessMsg::StopTimedOut {
        generation,
    });
    state.hold_reply = Some(reply);
}

/// Spawn the main process unless stopping, held or running; `Err` when the spawn failed.
fn spawn(myself: &ActorRef<ProcessMsg>, state: &mut ProcessState) -> Result<(), String> {
    if state.stopping || state.held || state.running.is_some() {
        return Ok(());
    }
    let resumed = std::mem::take(&mut state.resuming);
    let spec = state.args.engine.main_command();
    let (child, failure, outputs) = match ManagedChild::spawn_main("main", spec, &state.args.env) {
        Ok(c) => c,
        Err(e) => {
            let message = handlers::error_chain(&e);
            error!(cause = %message, "failed to start the main process");
            state.args.events.send(ProcessEvent::SpawnFailed {
                message: message.clone(),
            });
            return Err(message);
        }
    };
    info!(pid = child.pid(), argv = %command_line(&spec.argv), "main process started");
    watch(myself, state, child, failure, outputs, resumed);
    Ok(())
}

/// Make `child` the running main process: wait for its exit in a task, say it started.
fn watch(
    myself: &ActorRef<ProcessMsg>,
    state: &mut ProcessState,
    mut child: ManagedChild,
    failure: Option<handlers::exec::FailureLine>,
    outputs: Option<Outputs>,
    resumed: bool,
) {
    state.generation += 1;
    let generation = state.generation;
    let pid = child.pid();
    gauge!("autopilot_main_process_up").set(1.0);
    state.running = Some(Running {
        group: child.group(),
        generation,
        started: Instant::now(),
        outputs,
    });
    let me = myself.clone();
    tokio::spawn(async move {
        let status = child.wait().await;
        // The server's children may hold stderr a moment longer; the reason is a bonus.
        let reason = match failure {
            Some(task) => tokio::time::timeout(REASON_WAIT, task)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            None => None,
        };
        let _ = me.cast(ProcessMsg::Exited {
            generation,
            status,
            reason,
        });
    });
    state
        .args
        .events
        .send(ProcessEvent::Started { pid, resumed });
}

fn exited(
    myself: &ActorRef<ProcessMsg>,
    state: &mut ProcessState,
    generation: u64,
    status: ExitStatus,
    reason: Option<String>,
) {
    let Some(r) = state.running.take_if(|r| r.generation == generation) else {
        return;
    };
    // Whatever the main process left in its group goes with it: nothing is orphaned,
    // and a restart does not meet its predecessor's children on its ports.
    let _ = r.group.signal_group(Signal::SIGKILL);
    gauge!("autopilot_main_process_up").set(0.0);

    if state.held && !state.stopping {
        info!(%status, "main process stopped for an engine operation");
        if let Some(reply) = state.hold_reply.take() {
            let _ = reply.send(Ok(()));
        }
        return;
    }
    if state.stopping {
        info!(%status, "main process stopped");
        if let Some(reply) = state.stop_reply.take() {
            let _ = reply.send(Some(status));
        }
        state.args.events.send(ProcessEvent::Stopped { status });
        return;
    }

    let backoff = match state.args.restart {
        RestartPolicy::Never => None,
        RestartPolicy::OnFailure(b) if !status.success() => Some(b),
        RestartPolicy::OnFailure(_) => None,
        RestartPolicy::Always(b) => Some(b),
    };
    if let Some(b) = backoff
        && r.started.elapsed() >= b.reset_after
    {
        state.restarts = 0;
    }
    let restart_in = backoff.and_then(|b| restart_delay(&b, state.restarts));
    match restart_in {
        Some(delay) => {
            state.restarts += 1;
            counter!("autopilot_main_process_restarts_total").increment(1);
            warn!(%status, reason = reason.as_deref().unwrap_or("-"), restart_in = ?delay, restarts = state.restarts, "main process exited; restarting");
            myself.send_after(delay, || ProcessMsg::Spawn);
        }
        None if backoff.is_some() => {
            error!(%status, reason = reason.as_deref().unwrap_or("-"), restarts = state.restarts, "main process exited; restart limit reached, giving up");
        }
        None => info!(%status, "main process exited"),
    }
    state.args.events.send(ProcessEvent::Exited {
        status,
        restart_in,
        reason,
    });
}

/// The delay before restart number `restarts + 1`, or `None` when the limit is reached.
pub fn restart_delay(b: &Backoff, restarts: u32) -> Option<Duration> {
    if b.max_restarts.is_some_and(|max| restarts >= max) {
        return None;
    }
    let factor = 2u32.saturating_pow(restarts.min(31));
    Some(b.initial.saturating_mul(factor).min(b.max))
}

/// `argv` as one line a shell would read back: plain words as they are, others in single
/// quotes, and those with control characters (a script's newlines) as `$'…'` with escapes.
fn command_line(argv: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./=:,@%+-".contains(c))
    };
    let word = |a: &String| -> String {
        if plain(a) {
            a.clone()
        } else if a.chars().any(char::is_control) {
            let mut out = String::from("$'");
            for c in a.chars() {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    '\\' => out.push_str("\\\\"),
                    '\'' => out.push_str("\\'"),
                    c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
                    c => out.push(c),
                }
            }
            out.push('\'');
            out
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    argv.iter().map(word).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_one_line_a_shell_reads_back() {
        let argv: Vec<String> = [
            "sh",
            "-c",
            "trap 'x' HUP\nwhile true; do sleep 1; done",
            "--datadir=/var/lib/my sql",
            "",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            command_line(&argv),
            r#"sh -c $'trap \'x\' HUP\nwhile true; do sleep 1; done' '--datadir=/var/lib/my sql' ''"#
        );
    }

    fn backoff(max_restarts: Option<u32>) -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_restarts,
            reset_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let b = backoff(None);
        let delays: Vec<u64> = (0..7)
            .map(|n| restart_delay(&b, n).expect("unlimited").as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(restart_delay(&b, 1000), Some(Duration::from_secs(30)));
    }

    /// Hold stops the main process without an exit event or a restart; Release starts it
    /// again and says so.
    #[tokio::test]
    async fn hold_and_release_stop_and_start_without_looking_like_a_crash() {
        use std::sync::Mutex;

        let engine = AnyEngine::Process(engines::process::ProcessEngine::new(
            handlers::ExecSpec::new(["sleep", "300"]),
            None,
        ));
        let events = Arc::new(OutputPort::<ProcessEvent>::default());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (recorder, _) = Actor::spawn(None, Recorder, seen.clone())
            .await
            .expect("recorder");
        events.subscribe(recorder.clone(), Some);
        let args = ProcessArgs {
            engine: Arc::new(engine),
            stop_timeout: Duration::from_secs(5),
            restart: RestartPolicy::Always(backoff(None)),
            env: Vec::new(),
            events,
            held: false,
            adopted: None,
        };
        let (process, _) = Actor::spawn(None, ProcessActor, args)
            .await
            .expect("process actor");
        let wait_for = |n: usize| {
            let seen = seen.clone();
            async move {
                for _ in 0..200 {
                    if seen.lock().expect("lock").len() >= n {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                seen.lock().expect("lock").clone()
            }
        };
        assert_eq!(wait_for(1).await, ["started resumed=false"]);

        let held = process
            .call(
                |reply| ProcessMsg::Hold {
                    mode: StopMode::Fast,
                    reply,
                },
                Some(Duration::from_secs(10)),
            )
            .await
            .expect("hold answered");
        assert!(
            matches!(held, ractor::rpc::CallResult::Success(Ok(()))),
            "{held:?}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            wait_for(1).await,
            ["started resumed=false"],
            "no exit event and no policy restart while held"
        );

        let released = process
            .call(ProcessMsg::Release, Some(Duration::from_secs(10)))
            .await
            .expect("release answered");
        assert!(
            matches!(released, ractor::rpc::CallResult::Success(Ok(()))),
            "{released:?}"
        );
        assert_eq!(
            wait_for(2).await,
            ["started resumed=false", "started resumed=true"]
        );
        process.stop(None);
        recorder.stop(None);
    }

    /// Started held, nothing runs until `Release`; a `Hold` meanwhile answers at once.
    #[tokio::test]
    async fn a_held_start_spawns_nothing_until_release() {
        use std::sync::Mutex;

        let engine = AnyEngine::Process(engines::process::ProcessEngine::new(
            handlers::ExecSpec::new(["sleep", "300"]),
            None,
        ));
        let events = Arc::new(OutputPort::<ProcessEvent>::default());
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (recorder, _) = Actor::spawn(None, Recorder, seen.clone())
            .await
            .expect("recorder");
        events.subscribe(recorder.clone(), Some);
        let args = ProcessArgs {
            engine: Arc::new(engine),
            stop_timeout: Duration::from_secs(5),
            restart: RestartPolicy::Always(backoff(None)),
            env: Vec::new(),
            events,
            held: true,
            adopted: None,
        };
        let (process, _) = Actor::spawn(None, ProcessActor, args)
            .await
            .expect("process actor");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(seen.lock().expect("lock").is_empty(), "nothing spawned");
        let started = Instant::now();
        let held = process
            .call(
                |reply| ProcessMsg::Hold {
                    mode: StopMode::Fast,
                    reply,
                },
                Some(Duration::from_secs(10)),
            )
            .await
            .expect("hold answered");
        assert!(
            matches!(held, ractor::rpc::CallResult::Success(Ok(()))),
            "{held:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at once"
        );
        let released = process
            .call(ProcessMsg::Release, Some(Duration::from_secs(10)))
            .await
            .expect("release answered");
        assert!(
            matches!(released, ractor::rpc::CallResult::Success(Ok(()))),
            "{released:?}"
        );
        for _ in 0..200 {
            if !seen.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*seen.lock().expect("lock"), ["started resumed=true"]);
        process.stop(None);
        recorder.stop(None);
    }

    struct Recorder;

    impl Actor for Recorder {
        type Msg = ProcessEvent;
        type State = Arc<std::sync::Mutex<Vec<String>>>;
        type Arguments = Arc<std::sync::Mutex<Vec<String>>>;

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            seen: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(seen)
        }

        async fn handle(
            &self,
            _myself: ActorRef<Self::Msg>,
            msg: ProcessEvent,
            seen: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            let line = match msg {
                ProcessEvent::Started { resumed, .. } => format!("started resumed={resumed}"),
                other => format!("{other:?}"),
            };
            seen.lock().expect("lock").push(line);
            Ok(())
        }
    }

    #[test]
    fn gives_up_at_the_limit() {
        let b = backoff(Some(2));
        assert!(restart_delay(&b, 0).is_some());
        assert!(restart_delay(&b, 1).is_some());
        assert_eq!(restart_delay(&b, 2), None);
    }
}
