//! The process-wide child reaper: the **only** code in the agent that calls `wait*`.
//!
//! # Invariant
//!
//! Every child process of the agent is spawned through `spawn` (via
//! [`crate::exec::ManagedChild`]), and nothing else in the process ever calls `waitpid`,
//! `waitid`, `std::process::Child::wait`/`try_wait` or uses `tokio::process`. A
//! `waitpid(-1)` reaper steals exit statuses from anyone else who waits, so there is exactly
//! one reaping model for the whole process:
//!
//! - A dedicated OS thread named `reaper` (started lazily, once) blocks in
//!   `waitid(P_ALL, WEXITED | WNOWAIT)`, which tells it that *some* child has exited without
//!   reaping it. It then takes the registry lock and reaps with `waitpid(-1, WNOHANG)` until
//!   nothing is left. A registered pid's status goes to its owner through a oneshot channel;
//!   any other pid is an orphan (a grandchild re-parented to us because we are PID 1 or a
//!   child subreaper, see [`set_child_subreaper`]); it is counted
//!   (`autopilot_orphans_reaped_total`, [`orphans_reaped`]) and forgotten.
//! - When there are no children at all (`ECHILD`) the thread sleeps on a condition variable
//!   that `spawn` notifies, with a 1 s timeout as a safety net. It never busy-spins.
//! - `spawn` holds the registry lock while it calls `Command::spawn` and registers the pid.
//!   std's `spawn` reaps the child itself when `exec` fails (and panics if someone else did);
//!   holding the lock keeps the reaper from racing it, and guarantees a pid is registered
//!   before the reaper can see its exit.
//! - A pid cannot be reused while it is a zombie, and reaping happens under the registry
//!   lock, so signalling a registered pid while holding the lock (`with_live_child`) can
//!   never hit an unrelated process.
//!
//! The reaper is a plain thread, not a tokio task, because runtimes come and go (tests create
//! and drop them) and the reaper must outlive all of them.

use std::collections::BTreeMap;
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::exec::ExitStatus;

/// Children we spawned and still wait for, keyed by pid.
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    children: BTreeMap::new(),
    spawn_generation: 0,
    next_token: 0,
});
/// Notified by `spawn` so a reaper sleeping on `ECHILD` wakes up.
static SPAWNED: Condvar = Condvar::new();
/// Whether the reaper thread started (set once, on first spawn).
static THREAD: OnceLock<bool> = OnceLock::new();
/// Orphans reaped since the process started.
static ORPHANS_REAPED: AtomicU64 = AtomicU64::new(0);

/// Safety net for a missed wake-up while there are no children.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

struct Registry {
    /// Registered children: pid -> who wants its status.
    children: BTreeMap<u32, Entry>,
    /// Bumped on every spawn, so the reaper can tell whether it missed one while idle.
    spawn_generation: u64,
    /// Source of [`Entry::token`].
    next_token: u64,
}

struct Entry {
    /// Distinguishes this child from a later child that happens to get the same pid.
    token: u64,
    /// Where the exit status goes; the receiver may already be gone (owner dropped).
    tx: oneshot::Sender<ExitStatus>,
}

/// A child just spawned through the reaper.
pub(crate) struct Spawned {
    /// The child's pid (also its process group id when spawned with `process_group(0)`).
    pub(crate) pid: u32,
    /// Identifies this registration for [`with_live_child`].
    pub(crate) token: u64,
    /// Receives the exit status once the reaper reaped the child.
    pub(crate) status: oneshot::Receiver<ExitStatus>,
    /// std's handle, for its stdio pipes only: never call `wait`/`try_wait` on it.
    pub(crate) child: Child,
}

fn registry() -> MutexGuard<'static, Registry> {
    // The registry stays consistent even if a holder panicked: every update is one insert
    // or one remove.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ensure_thread() -> io::Result<()> {
    let started = THREAD.get_or_init(|| {
        match std::thread::Builder::new()
            .name("reaper".into())
            .spawn(reap_forever)
        {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(cause = %e, "failed to start the reaper thread");
                false
            }
        }
    });
    if *started {
        Ok(())
    } else {
        Err(io::Error::other("the reaper thread could not be started"))
    }
}

/// Spawn `cmd` and register it with the reaper, which will deliver its exit status on the
/// returned receiver. Holds the registry lock across `Command::spawn` (see the module doc).
pub(crate) fn spawn(cmd: &mut Command) -> io::Result<Spawned> {
    ensure_thread()?;
    let reg = registry();
    let child = cmd.spawn()?;
    let pid = child.id();
    let (token, status) = register(reg, pid);
    Ok(Spawned {
        pid,
        token,
        status,
        child,
    })
}

/// A child this process did not spawn in its current image but inherited across `execve`
/// (the agent re-executed in place keeps its children): registered with the reaper like a
/// spawned one. Fails when `pid` is not a child of this process. A child that already
/// exited is registered too; its status arrives at once.
pub(crate) fn adopt(pid: u32) -> io::Result<(u64, oneshot::Receiver<ExitStatus>)> {
    ensure_thread()?;
    let raw =
        i32::try_from(pid).map_err(|_| io::Error::other(format!("pid {pid} out of range")))?;
    let reg = registry();
    // Under the lock: the reaper cannot reap it between this check and the registration.
    match waitid(
        Id::Pid(Pid::from_raw(raw)),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ) {
        Ok(_) => {}
        Err(Errno::ECHILD) => {
            return Err(io::Error::other(format!(
                "process {pid} is not a child of this process"
            )));
        }
        Err(e) => return Err(io::Error::from(e)),
    }
    Ok(register(reg, pid))
}

/// Register `pid` (under the lock the caller holds) and wake a reaper idling on `ECHILD`.
fn register(
    mut reg: MutexGuard<'static, Registry>,
    pid: u32,
) -> (u64, oneshot::Receiver<ExitStatus>) {
    let (tx, status) = oneshot::channel();
    reg.next_token += 1;
    let token = reg.next_token;
    reg.children.insert(pid, Entry { token, tx });
    reg.spawn_generation += 1;
    drop(reg);
    SPAWNED.notify_all();
    (token, status)
}

/// Run `f` while the registry lock guarantees that `pid` (registration `token`) has not been
/// reaped yet, so its pid cannot have been reused. Returns `None` if it was already reaped.
pub(crate) fn with_live_child<R>(pid: u32, token: u64, f: impl FnOnce() -> R) -> Option<R> {
    let reg = registry();
    match reg.children.get(&pid) {
        Some(entry) if entry.token == token => Some(f()),
        _ => None,
    }
}

/// How many orphaned processes (not spawned by us) the reaper has reaped so far.
pub fn orphans_reaped() -> u64 {
    ORPHANS_REAPED.load(Ordering::Relaxed)
}

/// Become a child subreaper, so orphaned descendants are re-parented to us (and reaped by
/// the reaper) instead of to PID 1. The agent calls this at start when it is not PID 1.
pub fn set_child_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

fn reap_forever() {
    loop {
        let generation = registry().spawn_generation;
        match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => reap_all(),
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                let mut reg = registry();
                while reg.spawn_generation == generation {
                    let (guard, timeout) = SPAWNED
                        .wait_timeout(reg, IDLE_TIMEOUT)
                        .unwrap_or_else(PoisonError::into_inner);
                    reg = guard;
                    if timeout.timed_out() {
                        break;
                    }
                }
            }
            Err(e) => {
                warn!(cause = %e, "waitid failed in the reaper; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reap every exited child, dispatching statuses of registered ones.
fn reap_all() {
    let mut reg = registry();
    loop {
        let (pid, status) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Exited(code)),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => (pid, ExitStatus::Signaled(sig as i32)),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Err(Errno::EINTR) => continue,
            Ok(other) => {
                // Not requested (no WUNTRACED/WCONTINUED); do not loop on it.
                debug!(status = ?other, "unexpected wait status in the reaper");
                return;
            }
            Err(e) => {
                warn!(cause = %e, "waitpid failed in the reaper");
                return;
            }
        };
        let Ok(pid) = u32::try_from(pid.as_raw()) else {
            continue;
        };
        match reg.children.remove(&pid) {
            // The owner may be gone already; nothing else to do then.
            Some(entry) => {
                let _ = entry.tx.send(status);
            }
            None => {
                ORPHANS_REAPED.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("autopilot_orphans_reaped_total").increment(1);
                debug!(pid, %status, "reaped an orphan");
            }
        }
    }
}
