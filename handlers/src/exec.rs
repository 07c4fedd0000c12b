//! Spawn a command in its own process group, stream its output into `tracing`, wait with a
//! timeout, and stop the whole group (TERM, grace, KILL).
//!
//! Every child is spawned through [`crate::reaper`], which owns all `wait*` calls; this
//! module never waits on a process itself, it receives the exit status from the reaper.

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::level::{LevelReader, LineLevel};

use crate::reaper;

/// Longest output line forwarded as one log event; longer lines are split.
const MAX_LINE: u64 = 16 * 1024;

/// What to run and how.
#[derive(Clone)]
pub struct ExecSpec {
    /// Program and arguments; never empty ([`ExecError::EmptyArgv`] otherwise).
    pub argv: Vec<String>,
    /// Added to the inherited environment. Values may be secrets: never logged.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` inherits ours.
    pub cwd: Option<PathBuf>,
    /// Limit for [`run`] (and handler runs); `None` means no limit.
    pub timeout: Option<Duration>,
    /// After SIGTERM to the group, how long before SIGKILL.
    pub kill_grace: Duration,
    /// Run as this user instead of ours (needs root); `None` runs as the agent's user.
    pub user: Option<RunAs>,
}

/// A numeric user and group to run a command as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Primary group id; supplementary groups are cleared.
    pub gid: u32,
}

impl ExecSpec {
    /// A spec with no extra env, inherited cwd, no timeout and a 10 s kill grace.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            timeout: None,
            kill_grace: Duration::from_secs(10),
            user: None,
        }
    }
}

/// Prints env keys only: values may be secrets.
impl fmt::Debug for ExecSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env_keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecSpec")
            .field("argv", &self.argv)
            .field("env_keys", &env_keys)
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("user", &self.user)
            .finish()
    }
}

/// How a process ended, from its wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited(0))
    }

    /// The exit code, or 128 + signal number as a shell reports it.
    pub fn exit_code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(sig) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by {}", s.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
        }
    }
}

/// Why spawning or signalling failed. `Display` never repeats the source; print the chain
/// (e.g. anyhow's `{:#}`) to see it.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The spec has no program.
    #[error("start a process: argv is empty")]
    EmptyArgv,
    /// `Command::spawn` failed: the program or the cwd is missing, not executable, ...
    #[error("start `{program}`{}", cwd.as_ref().map(|c| format!(" in `{}`", c.display())).unwrap_or_default())]
    Spawn {
        /// The program as given in `argv[0]`.
        program: String,
        /// The working directory asked for, if any (a missing cwd fails like a missing program).
        cwd: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
    /// Output forwarding needs a tokio runtime; nothing was started.
    #[error("start `{program}`: not called inside a tokio runtime")]
    NoRuntime {
        /// The program as given in `argv[0]`.
        program: String,
    },
    /// `kill`/`killpg` failed with something other than ESRCH.
    #[error("send {signal} to {target} {pid}")]
    Signal {
        /// "process" or "process group".
        target: &'static str,
        /// The pid or process group id.
        pid: u32,
        /// The signal we tried to send.
        signal: Signal,
        #[source]
        source: Errno,
    },
}

/// Render an error and its sources as `a: b: c` (for reports that carry a string).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A `Clone + Send` handle to signal a child's process group from another task.
#[derive(Clone, Debug)]
pub struct GroupHandle {
    /// The leader's pid, also the process group id.
    pid: u32,
    /// The reaper registration, to avoid signalling a reused pid.
    token: u64,
    /// The process name, for logs.
    name: Arc<str>,
}

impl GroupHandle {
    /// The leader's pid (= the process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn raw_pid(&self) -> Pid {
        Pid::from_raw(self.pid as i32)
    }

    /// Signal the group leader only. Ok if it is already gone.
    pub fn signal_leader(&self, sig: Signal) -> Result<(), ExecError> {
        let pid = self.raw_pid();
        let res = reaper::with_live_child(self.pid, self.token, || kill(pid, sig));
        match res {
            None | Some(Ok(())) | Some(Err(Errno::ESRCH)) => Ok(()),
            Some(Err(source)) => Err(ExecError::Signal {
                target: "process",
                pid: self.pid,
                signal: sig,
                source,
            }),
        }
    }

    /// Signal every process in the group. Ok if the group is already empty.
    pub fn signal_group(&self, sig: Signal) -> Result<(), ExecError> {
        match killpg(self.raw_pid(), sig) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(source) => Err(ExecError::Signal {
                target: "process group",
                pid: self.pid,
                signal: sig,
                source,
            }),
        }
    }

    /// SIGKILL the group and every descendant of its leader, wherever they moved: servers
    /// such as PostgreSQL put each child in a session of its own (`setsid`), out of reach
    /// of the group signal, and a child stopped in the middle of a commit would otherwise
    /// finish it once it runs again. The group is stopped first, so nobody forks while the
    /// descendants are listed. Ok if everything is already gone.
    pub fn kill_tree(&self) -> Result<(), ExecError> {
        self.signal_group(Signal::SIGSTOP)?;
        for pid in descendants(self.pid) {
            // Gone meanwhile (ESRCH) is fine; anything else is not ours to fix here.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        self.signal_group(Signal::SIGKILL)
    }

    fn signal_group_logged(&self, sig: Signal) {
        if let Err(e) = self.signal_group(sig) {
            warn!(process = %self.name, cause = %error_chain(&e), "failed to signal the process group");
        }
    }
}

/// Owns one child process and its process group. Dropping it while the leader still runs
/// SIGKILLs the group.
#[derive(Debug)]
pub struct ManagedChild {
    /// Signals go through it; also names the process in logs.
    group: GroupHandle,
    /// Delivered by the reaper once the leader is reaped.
    status_rx: oneshot::Receiver<ExitStatus>,
    /// Cached once received, so `wait` can be called again.
    status: Option<ExitStatus>,
}

impl ManagedChild {
    /// Spawn in a NEW process group (pgid = pid), stdin /dev/null, stdout+stderr piped and
    /// forwarded line by line to tracing (info for stdout, warn for stderr) with fields
    /// `process = name`, `stream`. `extra_env` is added after `spec.env` (it wins on a clash).
    /// Must be called inside a tokio runtime (output forwarding tasks).
    pub fn spawn(
        name: &str,
        spec: &ExecSpec,
        extra_env: &[(String, String)],
    ) -> Result<ManagedChild, ExecError> {
        Self::spawn_inner(name, spec, extra_env, Io::Log).map(|(child, _)| child)
    }

    /// Like [`ManagedChild::spawn`], and also a task that answers, once the child's stderr
    /// closed, the last line it wrote there that reads like a failure (`FATAL: …`): why a
    /// server that exited on its own did.
    pub fn spawn_reporting(
        name: &str,
        spec: &ExecSpec,
        extra_env: &[(String, String)],
    ) -> Result<(ManagedChild, Option<FailureLine>), ExecError> {
        Self::spawn_inner(name, spec, extra_env, Io::Log).map(|(child, io)| (child, io.failure))
    }

    /// [`ManagedChild::spawn_reporting`] for a main process the agent may hand over to its
    /// next image (`execve` in place): also duplicates of the read ends of its stdout and
    /// stderr pipes, which the caller keeps so that the next image can read on (see
    /// [`ManagedChild::adopt`]).
    pub fn spawn_main(
        name: &str,
        spec: &ExecSpec,
        extra_env: &[(String, String)],
    ) -> Result<(ManagedChild, Option<FailureLine>, Option<Outputs>), ExecError> {
        Self::spawn_inner(name, spec, extra_env, Io::Keep)
            .map(|(child, io)| (child, io.failure, io.outputs))
    }

    /// Take charge of a child this process inherited across `execve` (the agent re-executed
    /// in place), as if it had been spawned here: its exit status comes from the reaper, its
    /// output pipes are logged as `name`'s. Fails when `pid` is not a child of this process.
    /// Must be called inside a tokio runtime.
    pub fn adopt(
        name: &str,
        pid: u32,
        outputs: Outputs,
    ) -> Result<(ManagedChild, Option<FailureLine>), ExecError> {
        let (token, status_rx) = reaper::adopt(pid).map_err(|source| ExecError::Spawn {
            program: format!("adopted process {pid}"),
            cwd: None,
            source,
        })?;
        let name: Arc<str> = Arc::from(name);
        forward_output(&name, "stdout", outputs.stdout);
        let failure = forward_output(&name, "stderr", outputs.stderr);
        debug!(process = %name, pid, "adopted");
        let child = ManagedChild {
            group: GroupHandle { pid, token, name },
            status_rx,
            status: None,
        };
        Ok((child, failure))
    }

    /// Like [`ManagedChild::spawn`], but stdout is collected (up to [`MAX_CAPTURE`] bytes)
    /// instead of logged; the returned task yields it once the pipe closes.
    /// Like [`ManagedChild::spawn`], but one standard stream is handed to the caller as a
    /// pipe (`Piped::Stdin`: the caller writes the child's input; `Piped::Stdout`: the caller
    /// reads its output) and stderr is logged at info with `stream = progress`, not as a
    /// warning: for tools that stream data through a pipe and report progress on stderr
    /// (backup streams). Dropping the pipe closes it.
    pub fn spawn_piped(
        name: &str,
        spec: &ExecSpec,
        extra_env: &[(String, String)],
        piped: Piped,
    ) -> Result<(ManagedChild, Pipe), ExecError> {
        let (child, io) = Self::spawn_inner(name, spec, extra_env, Io::Piped(piped))?;
        let pipe = io.pipe.ok_or_else(|| ExecError::Spawn {
            program: spec.argv.first().cloned().unwrap_or_default(),
            cwd: spec.cwd.clone(),
            source: io::Error::other("the child's pipe could not be registered"),
        })?;
        Ok((child, pipe))
    }

    fn spawn_inner(
        name: &str,
        spec: &ExecSpec,
        extra_env: &[(String, String)],
        mode: Io,
    ) -> Result<(ManagedChild, Spawn), ExecError> {
        let (program, args) = spec.argv.split_first().ok_or(ExecError::EmptyArgv)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ExecError::NoRuntime {
                program: program.clone(),
            });
        }
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .stdin(if matches!(mode, Io::Piped(Piped::Stdin)) {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cwd) = &spec.cwd {
            cmd.current_dir(cwd);
        }
        if let Some(user) = spec.user {
            // std clears the supplementary groups (setgroups(0)) before setuid when no
            // explicit groups are given, so root's groups do not leak into the child.
            cmd.uid(user.uid).gid(user.gid);
        }
        let spawned = reaper::spawn(&mut cmd).map_err(|source| ExecError::Spawn {
            program: program.clone(),
            cwd: spec.cwd.clone(),
            source,
        })?;
        let name: Arc<str> = Arc::from(name);
        let mut child = spawned.child;
        let mut io = Spawn::default();
        let mut kept_out = None;
        if let Some(out) = child.stdout.take() {
            match mode {
                Io::Keep => {
                    let fd: OwnedFd = out.into();
                    kept_out = fd.try_clone().ok();
                    forward_output(&name, "stdout", fd);
                }
                Io::Log | Io::Piped(Piped::Stdin) => {
                    forward_output(&name, "stdout", out.into());
                }
                Io::Capture => io.captured = Some(capture_output(out.into())),
                Io::Piped(Piped::Stdout) => {
                    io.pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(out.into())
                        .ok()
                        .map(Pipe::Stdout);
                }
            }
        }
        if let Some(input) = child.stdin.take() {
            io.pipe = tokio::net::unix::pipe::Sender::from_owned_fd(input.into())
                .ok()
                .map(Pipe::Stdin);
        }
        if let Some(err) = child.stderr.take() {
            let stream = if matches!(mode, Io::Piped(_)) {
                "progress"
            } else {
                "stderr"
            };
            let fd: OwnedFd = err.into();
            if matches!(mode, Io::Keep) {
                io.outputs = kept_out
                    .take()
                    .zip(fd.try_clone().ok())
                    .map(|(stdout, stderr)| Outputs { stdout, stderr });
            }
            io.failure = forward_output(&name, stream, fd);
        }
        // Dropping std's Child neither waits nor kills: the reaper owns the status.
        drop(child);
        let env_keys: Vec<&str> = spec
            .env
            .iter()
            .chain(extra_env)
            .map(|(k, _)| k.as_str())
            .collect();
        debug!(process = %name, pid = spawned.pid, program = %program, ?env_keys, "started");
        let child = ManagedChild {
            group: GroupHandle {
                pid: spawned.pid,
                token: spawned.token,
                name,
            },
            status_rx: spawned.status,
            status: None,
        };
        Ok((child, io))
    }

    /// The leader's pid (= process group id).
    pub fn pid(&self) -> u32 {
        self.group.pid
    }

    /// Wait for the leader to exit. Cancel-safe; returns the cached status when called again.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = (&mut self.status_rx)
            .await
            .expect("the reaper keeps every registered sender until it reaps the child");
        self.status = Some(status);
        status
    }

    /// The leader's status if it has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        // Closed cannot happen (the reaper keeps every registered sender until it reaps the
        // child); it reads as "not known yet" rather than a panic, since Drop calls this.
        if self.status.is_none()
            && let Ok(status) = self.status_rx.try_recv()
        {
            self.status = Some(status);
        }
        self.status
    }

    /// A handle to signal this child's group from elsewhere.
    pub fn group(&self) -> GroupHandle {
        self.group.clone()
    }

    /// Send `sig` to the leader, wait up to `grace`, then SIGKILL the whole group; after the
    /// leader exits, SIGKILL whatever is left in its group so nothing is orphaned. Returns the
    /// leader's status.
    pub async fn stop(&mut self, sig: Signal, grace: Duration) -> ExitStatus {
        if self.try_status().is_none() {
            if let Err(e) = self.group.signal_leader(sig) {
                warn!(process = %self.group.name, cause = %error_chain(&e), "failed to signal the process");
            }
            if tokio::time::timeout(grace, self.wait()).await.is_err() {
                warn!(process = %self.group.name, signal = sig.as_str(), ?grace,
                    "did not exit within its grace period; killing its process group");
                self.group.signal_group_logged(Signal::SIGKILL);
            }
        }
        let status = self.wait().await;
        self.group.signal_group_logged(Signal::SIGKILL);
        status
    }

    /// SIGTERM the whole group, wait up to `grace` for the leader, SIGKILL the group, and
    /// SIGKILL it once more after the leader exited (leftovers). Returns the leader's status.
    pub async fn stop_group(&mut self, grace: Duration) -> ExitStatus {
        if self.try_status().is_none() {
            self.group.signal_group_logged(Signal::SIGTERM);
            if tokio::time::timeout(grace, self.wait()).await.is_err() {
                warn!(process = %self.group.name, ?grace,
                    "did not exit within its grace period after SIGTERM; killing its process group");
                self.group.signal_group_logged(Signal::SIGKILL);
            }
        }
        let status = self.wait().await;
        self.group.signal_group_logged(Signal::SIGKILL);
        status
    }

    /// Wait with an optional timeout; on timeout stop the whole group (see [`Self::stop_group`]).
    pub(crate) async fn supervise(
        &mut self,
        timeout: Option<Duration>,
        kill_grace: Duration,
    ) -> RunOutcome {
        let Some(limit) = timeout else {
            return RunOutcome::Exited(self.wait().await);
        };
        match tokio::time::timeout(limit, self.wait()).await {
            Ok(status) => RunOutcome::Exited(status),
            Err(_) => {
                warn!(process = %self.group.name, timeout = ?limit, "timed out; stopping its process group");
                self.stop_group(kill_grace).await;
                RunOutcome::TimedOut
            }
        }
    }
}

impl Drop for ManagedChild {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            debug!(process = %self.group.name, pid = self.group.pid, "dropped while running; killing its process group");
            self.group.signal_group_logged(Signal::SIGKILL);
        }
    }
}

/// Which standard stream [`ManagedChild::spawn_piped`] hands to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piped {
    /// The caller writes the child's stdin (stdout is logged).
    Stdin,
    /// The caller reads the child's stdout (stdin is /dev/null).
    Stdout,
}

/// The pipe [`ManagedChild::spawn_piped`] returns.
#[derive(Debug)]
pub enum Pipe {
    /// Write end of the child's stdin.
    Stdin(tokio::net::unix::pipe::Sender),
    /// Read end of the child's stdout.
    Stdout(tokio::net::unix::pipe::Receiver),
}

/// What happens to a child's stdin and stdout.
#[derive(Clone, Copy)]
enum Io {
    /// stdin /dev/null, stdout logged.
    Log,
    /// As `Log`, and duplicates of the output pipes' read ends kept for a hand-over.
    Keep,
    /// stdin /dev/null, stdout collected.
    Capture,
    /// One stream handed to the caller.
    Piped(Piped),
}

/// What the spawn hands back besides the child.
#[derive(Default)]
struct Spawn {
    captured: Option<tokio::task::JoinHandle<String>>,
    /// The last stderr line that reads like a failure, once stderr closed.
    failure: Option<tokio::task::JoinHandle<Option<String>>>,
    pipe: Option<Pipe>,
    outputs: Option<Outputs>,
}

/// Duplicates of the read ends of a child's stdout and stderr pipes (close-on-exec like
/// every descriptor of the agent): what the agent's next image needs to read on after an
/// in-place `execve`.
#[derive(Debug)]
pub struct Outputs {
    /// The stdout pipe's read end.
    pub stdout: OwnedFd,
    /// The stderr pipe's read end.
    pub stderr: OwnedFd,
}

/// How [`run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The process exited on its own.
    Exited(ExitStatus),
    /// It outlived `spec.timeout`; its group was stopped.
    TimedOut,
}

/// Spawn, wait with `spec.timeout`; on timeout TERM the whole group, wait `kill_grace`, KILL
/// the group; return `TimedOut`. After a normal exit leave the group alone.
pub async fn run(
    name: &str,
    spec: &ExecSpec,
    extra_env: &[(String, String)],
) -> Result<RunOutcome, ExecError> {
    let mut child = ManagedChild::spawn(name, spec, extra_env)?;
    Ok(child.supervise(spec.timeout, spec.kill_grace).await)
}

/// What [`run_capture`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// How the command ended.
    pub outcome: RunOutcome,
    /// What it wrote to stdout (up to [`MAX_CAPTURE`] bytes, lossily decoded).
    pub stdout: String,
    /// The last line it wrote to stderr that reads like a failure (`error`, `fatal`,
    /// `failed`, ...), at most [`MAX_FAILURE_LINE`] bytes: the reason to report when it fails.
    pub failure: Option<String>,
}

/// Like [`run`], but returns what the command wrote to stdout instead of logging it, and the
/// last stderr line that reads like a failure; stderr is still logged. For hooks whose output
/// is data, such as a replication position, and tools whose error is worth reporting.
pub async fn run_capture(
    name: &str,
    spec: &ExecSpec,
    extra_env: &[(String, String)],
) -> Result<Captured, ExecError> {
    let (mut child, io) = ManagedChild::spawn_inner(name, spec, extra_env, Io::Capture)?;
    let outcome = child.supervise(spec.timeout, spec.kill_grace).await;
    // The pipes close when the last holder exits; after a timeout the group was killed.
    async fn finished<T: Default>(task: Option<tokio::task::JoinHandle<T>>) -> T {
        match task {
            Some(task) => tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => T::default(),
        }
    }
    Ok(Captured {
        outcome,
        stdout: finished(io.captured).await,
        failure: finished(io.failure).await,
    })
}

/// A task that answers, once a child's stderr closed, the last line it wrote there that
/// reads like a failure.
pub type FailureLine = tokio::task::JoinHandle<Option<String>>;

/// The most of a failure line [`run_capture`] keeps.
pub const MAX_FAILURE_LINE: usize = 300;

/// The most stdout [`run_capture`] keeps.
pub const MAX_CAPTURE: u64 = 64 * 1024;

/// Collect a pipe's content (bounded) until EOF.
fn capture_output(fd: OwnedFd) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
            return String::new();
        };
        let mut buf = Vec::new();
        let _ = pipe.take(MAX_CAPTURE).read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A line that reports a failure (`[ERROR]`, `Error:`, `FATAL`, `failed`, …) in its
/// message: words that name a file or an object (`./sys/statements_with_errors.frm`,
/// `error_log`) are not read, so a tool's progress line about such a file is no failure.
fn reads_like_failure(line: &str) -> bool {
    line.split_whitespace()
        .filter(|w| !names_a_file(w))
        .any(|w| {
            let w = w.to_ascii_lowercase();
            ["error", "fatal", "failed", "cannot", "can't", "denied"]
                .iter()
                .any(|k| w.contains(k))
        })
}

/// Whether a word of a line is a path, a file name or an identifier rather than a word of
/// the message: it has a `/`, an `_`, or a `.` that does not end it.
fn names_a_file(word: &str) -> bool {
    let w = word.trim_end_matches(['.', ',', ':', ';', '!', ')', '\'', '"']);
    w.contains('/') || w.contains('_') || w.contains('.')
}

/// Forward a pipe line by line into tracing until EOF; the task answers the last line that
/// reads like a failure.
fn forward_output(
    name: &Arc<str>,
    stream: &'static str,
    fd: OwnedFd,
) -> Option<tokio::task::JoinHandle<Option<String>>> {
    let pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(pipe) => pipe,
        Err(e) => {
            warn!(process = %name, stream, cause = %e, "failed to forward output");
            return None;
        }
    };
    let name = Arc::clone(name);
    Some(tokio::spawn(async move {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::with_capacity(256);
        let mut failure: Option<String> = None;
        // A line that names its level (a database's log) is logged at it; others at the
        // stream's: warn for stderr, info for stdout.
        let mut levels = LevelReader::new(if stream == "stderr" {
            LineLevel::Warn
        } else {
            LineLevel::Info
        });
        loop {
            buf.clear();
            match (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    let line = String::from_utf8_lossy(&buf);
                    let failing = reads_like_failure(&line);
                    if failing {
                        let mut kept = line.trim().to_owned();
                        if kept.len() > MAX_FAILURE_LINE {
                            let mut end = MAX_FAILURE_LINE;
                            while !kept.is_char_boundary(end) {
                                end -= 1;
                            }
                            kept.truncate(end);
                        }
                        failure = Some(kept);
                    }
                    match stream {
                        // The stderr of piped tools (backup streams): one line per file
                        // copied, so only what reads like a failure reaches the default log.
                        "progress" if failing => {
                            warn!(process = %name, stream, "{line}")
                        }
                        "progress" => debug!(process = %name, stream, "{line}"),
                        _ => match levels.level(&line) {
                            LineLevel::Debug => debug!(process = %name, stream, "{line}"),
                            LineLevel::Info => info!(process = %name, stream, "{line}"),
                            LineLevel::Warn => warn!(process = %name, stream, "{line}"),
                            LineLevel::Error => error!(process = %name, stream, "{line}"),
                        },
                    }
                }
                Err(e) => {
                    debug!(process = %name, stream, cause = %e, "output forwarding ended");
                    break;
                }
            }
        }
        failure
    }))
}

/// Every descendant of `root` (children, their children, ...), from `/proc`; empty where
/// `/proc` cannot be read.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, parent_of(pid)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, _) in parents
            .iter()
            .filter(|(pid, ppid)| *ppid == p && *pid != root)
        {
            if !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// The parent pid of `pid` from `/proc/<pid>/stat` (the field after the state, which
/// follows the command name's closing parenthesis: the name itself may hold any byte).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::reads_like_failure;

    /// Only the message is judged: a backup's progress line about a file whose name holds
    /// "error" is routine, the same word in the message is not.
    #[test]
    fn file_names_are_not_read_as_failures() {
        for routine in [
            "[01] 2026-01-05 10:00:00 Streaming ./sys/statements_with_errors_or_warnings.frm to <STDOUT>",
            "[01] 2026-01-05 10:00:00         ...done",
            "[00] 2026-01-05 10:00:00 Copying ./mysql/error_log.MAD to <STDOUT>",
            "copied error_log",
        ] {
            assert!(!reads_like_failure(routine), "{routine}");
        }
        for failure in [
            "[ERROR] mariadbd: Can't open file './mysql/user.frm'",
            "FATAL:  password authentication failed for user \"repl\"",
            "Error: access denied.",
            "mbstream: cannot create ./sys/x.frm",
            "[00] 2026-01-05 10:00:00 Error: failed to read ./ib_logfile0",
        ] {
            assert!(reads_like_failure(failure), "{failure}");
        }
    }
}
