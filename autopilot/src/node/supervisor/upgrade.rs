//! The supervisor's side of the agent's in-place upgrade (see `node/handover.rs`): hand
//! the running database and the lease to a new binary (`upgrade_self`), and take them
//! over at the start of that binary (`take_over`).

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use handlers::{ManagedChild, Outputs};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{Phase, SupervisorMsg, SupervisorState, spawn_process, start, start_periodic};
use crate::node::control::{AgentStatus, Answer};
use crate::node::handover::{self, Inherited, MainRecord, Record};
use crate::node::process::{Adopted, ProcessMsg};
use crate::node::role::{Inheritance, RoleMsg, now_millis};
use crate::role::HandoverRole;

/// How long the new binary may take to say its version.
const VERSION_LIMIT: Duration = Duration::from_secs(10);
/// How long the role and process actors may take to answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// How long the periodic handlers may take to stop.
const HANDLER_STOP_LIMIT: Duration = Duration::from_secs(5);
/// How long the answer to the client may take to be written before the `execve`.
const ANSWER_WRITTEN_LIMIT: Duration = Duration::from_secs(2);

/// This agent's version, as `autopilot --version` says it.
fn version() -> String {
    format!("autopilot {}", env!("CARGO_PKG_VERSION"))
}

/// The control socket's `status`.
pub(super) fn agent_status(state: &SupervisorState) -> AgentStatus {
    AgentStatus {
        version: version(),
        pid: std::process::id(),
        started_at_ms: state.started_at_ms,
        main_pid: state.env.main_pid,
        upgraded_from: state.upgraded_from.clone(),
        role: state
            .config
            .store
            .is_some()
            .then(|| state.published_role.borrow().role.label().to_owned()),
        upgrade_failed: state.upgrade_failed.clone(),
        binary: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        fell_back: state.fell_back,
    }
}

type Reply = oneshot::Sender<(Answer, Option<oneshot::Sender<()>>)>;

fn refuse(reply: Reply, message: String) {
    warn!(%message, "in-place upgrade refused");
    let _ = reply.send((
        Answer {
            message,
            ..Answer::default()
        },
        None,
    ));
}

/// What a hand-over needs, once every check passed (the role logic is frozen from then).
struct Plan {
    /// The binary to execute (a copy when it is the kept previous one).
    binary: PathBuf,
    new_version: String,
    lease: Option<handover::LeaseRecord>,
    main: crate::node::process::MainHandover,
    previous: PathBuf,
}

/// `upgrade_self`: check the new binary runs, freeze the role logic in a steady role, stop
/// the periodic handlers, answer, and re-execute in place. On a failed `execve` everything
/// goes on as before.
pub(super) async fn upgrade_self(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    binary: PathBuf,
    reply: Reply,
) -> Result<(), ractor::ActorProcessingErr> {
    let Plan {
        binary,
        new_version,
        lease,
        main,
        previous,
    } = match plan(state, &binary).await {
        Ok(p) => p,
        Err(why) => {
            refuse(reply, why);
            return Ok(());
        }
    };
    // Nothing of a handler run may outlive this image unwatched.
    stop_periodic(state).await;
    // The lease as of now (the session renewed it meanwhile): the next image's fencing clock
    // starts from its latest keep-alive, not from the checks'.
    let lease = match (&state.role, lease) {
        (Some(role), Some(checked)) => {
            match role.call(RoleMsg::Handover, Some(ANSWER_LIMIT)).await {
                Ok(CallResult::Success(Ok(now))) if now.id == checked.id => Some(now),
                _ => {
                    let _ = role.cast(RoleMsg::HandoverAborted);
                    refuse(
                        reply,
                        "the lease changed during the hand-over; try again".into(),
                    );
                    return start_periodic(myself, state).await;
                }
            }
        }
        (_, lease) => lease,
    };
    let role = lease.as_ref().map(|l| l.role);
    let record = Record {
        schema: handover::SCHEMA,
        from_version: version(),
        previous_binary: Some(previous.clone()),
        args: handover::own_args(),
        fell_back: false,
        main: MainRecord {
            pid: main.pid,
            stdout_fd: std::os::fd::AsRawFd::as_raw_fd(&main.outputs.stdout),
            stderr_fd: std::os::fd::AsRawFd::as_raw_fd(&main.outputs.stderr),
        },
        lease,
        written_at_ms: now_millis(),
    };
    let message = format!(
        "re-executing in place: {} ({new_version}) takes over from {}; the database (pid {}) runs on{}; the old binary is kept as {}",
        binary.display(),
        version(),
        main.pid,
        match role {
            Some(handover::RecordRole::Primary) => ", the primary keeps its lease",
            Some(handover::RecordRole::Replica) => ", the replica keeps its lease",
            None => "",
        },
        previous.display()
    );
    info!("{message}");
    let (written_tx, written_rx) = oneshot::channel();
    let _ = reply.send((
        Answer {
            ok: true,
            message,
            status: None,
        },
        Some(written_tx),
    ));
    let _ = tokio::time::timeout(ANSWER_WRITTEN_LIMIT, written_rx).await;
    let why = handover::exec(
        &binary,
        &state.config.node.state_dir,
        &record,
        (main.outputs.stdout.as_fd(), main.outputs.stderr.as_fd()),
    );
    // Still here: the `execve` failed. Go on as before.
    error!(cause = %why, "the in-place upgrade failed; the agent goes on");
    state.upgrade_failed = Some(why);
    drop(main);
    if let Some(role) = &state.role {
        let _ = role.cast(RoleMsg::HandoverAborted);
    }
    start_periodic(myself, state).await
}

/// Every check of a hand-over; the role logic stays frozen when it succeeds.
async fn plan(state: &SupervisorState, binary: &std::path::Path) -> Result<Plan, String> {
    if state.phase != Phase::Running {
        return Err("the agent is starting or stopping; try again once it runs".into());
    }
    if !binary.is_absolute() {
        return Err(format!(
            "{}: give the new binary as an absolute path",
            binary.display()
        ));
    }
    let new_version = new_binary_version(binary).await?;
    // The database first: one the role logic has not yet heard about (its restart still
    // waits in this actor's mailbox) is not handed over. What the supervisor has seen it
    // told the role actor before this call, so the role logic judges the same database.
    let main = match &state.process {
        Some(p) => match p.call(ProcessMsg::Handover, Some(ANSWER_LIMIT)).await {
            Ok(CallResult::Success(answer)) => answer?,
            _ => return Err("the process actor did not answer".to_owned()),
        },
        None => return Err("the database is not running".to_owned()),
    };
    if state.env.main_pid != Some(main.pid) {
        return Err("the database has just been restarted; try again in a moment".to_owned());
    }
    // The lease and role, frozen from here (clustered agents).
    let lease = match (&state.role, state.config.store.is_some()) {
        (Some(role), _) => match role.call(RoleMsg::Handover, Some(ANSWER_LIMIT)).await {
            Ok(CallResult::Success(answer)) => Some(answer?),
            _ => return Err("the role logic did not answer".into()),
        },
        (None, true) => {
            return Err(
                "the role logic has not started yet; try again once the node has a role".into(),
            );
        }
        (None, false) => None,
    };
    let state_dir = &state.config.node.state_dir;
    let kept = handover::stage(binary, state_dir).and_then(|binary| {
        handover::keep_previous_binary(state_dir).map(|previous| (binary, previous))
    });
    match kept {
        Ok((binary, previous)) => Ok(Plan {
            binary,
            new_version,
            lease,
            main,
            previous,
        }),
        Err(why) => {
            if let Some(role) = &state.role {
                let _ = role.cast(RoleMsg::HandoverAborted);
            }
            Err(why)
        }
    }
}

/// Whether `binary` runs at all (not missing, not for another machine) and is an
/// autopilot: its version.
async fn new_binary_version(binary: &std::path::Path) -> Result<String, String> {
    let out = handover::try_new_binary(binary, &["--version"], VERSION_LIMIT).await?;
    let version = out.trim();
    if version.starts_with("autopilot ") {
        Ok(version.to_owned())
    } else {
        Err(format!(
            "{}: not an autopilot binary (`--version` says {version:?})",
            binary.display()
        ))
    }
}

/// Stop the health handler and the jobs (their running processes are killed).
async fn stop_periodic(state: &mut SupervisorState) {
    let actors = state
        .handlers
        .health
        .take()
        .into_iter()
        .chain(state.handlers.jobs.drain(..));
    for actor in actors {
        let _ = actor
            .stop_and_wait(
                Some("the agent re-executes".into()),
                Some(HANDLER_STOP_LIMIT),
            )
            .await;
    }
}

/// At the start of an image that took over in place: adopt the running database and pass
/// the lease on to the role actor. When the database cannot be adopted (it exited
/// meanwhile), start it the usual way and give the lease up, so that a primary fails over.
pub(super) async fn take_over(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    inherited: Inherited,
) -> Result<(), ractor::ActorProcessingErr> {
    let pid = inherited.record.main.pid;
    let from = inherited.record.from_version.clone();
    let fell_back = inherited.record.fell_back;
    let lease = inherited.lease();
    let kept = inherited
        .outputs
        .stdout
        .try_clone()
        .ok()
        .zip(inherited.outputs.stderr.try_clone().ok())
        .map(|(stdout, stderr)| Outputs { stdout, stderr });
    match ManagedChild::adopt("main", pid, inherited.outputs) {
        Ok((child, failure)) => {
            info!(pid, from = %from, "took over the running database from the agent's previous image");
            state.upgraded_from = Some(from.clone());
            state.fell_back = fell_back;
            state.inheritance = lease.map(|(lease, until_ms, role)| Inheritance {
                lease,
                until_ms,
                role,
                detail: format!(
                    "the agent was upgraded in place from {from} to {}; the database (pid {pid}) ran on as the {}",
                    version(),
                    match role {
                        HandoverRole::Primary => "primary",
                        HandoverRole::Replica => "replica",
                    }
                ),
            });
            let adopted = Adopted {
                child,
                failure,
                outputs: kept,
            };
            spawn_process(myself, state, false, Some(adopted)).await
        }
        Err(e) => {
            warn!(pid, cause = %handlers::error_chain(&e), "the database could not be adopted from the agent's previous image; starting it the usual way (the lease is given up: a primary fails over)");
            // Past its deadline: the session reports it lost and revokes it at once.
            state.inheritance = lease.map(|(lease, _, role)| Inheritance {
                lease,
                until_ms: 0,
                role,
                detail: String::new(),
            });
            start(myself, state);
            Ok(())
        }
    }
}
