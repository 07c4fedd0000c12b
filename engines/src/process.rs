//! The `process` engine: any program. The agent knows nothing about it beyond its command
//! line; health comes from the operator's health handler, and roles from the operator's
//! exec hooks ([`ProcessHooks`]) — e.g. `REPLICAOF` for Redis.

use handlers::ExecSpec;
use handlers::exec::{Captured, RunOutcome, run_capture};
use nix::sys::signal::Signal;

use crate::engine::{Engine, EngineError, Probe, StopMode};
use crate::role_ops::{Peer, Position, RemoteFence};

/// Exit status of the fence hook meaning "the target database cannot be reached".
pub const FENCE_UNREACHABLE: i32 = 2;

/// The operator's role hooks. Each must exit 0 on success; `position` and `fence` print a
/// position (`OFFSET` or `EPOCH OFFSET`) on stdout.
#[derive(Clone, Debug)]
pub struct ProcessHooks {
    /// Prints the local position.
    pub position: ExecSpec,
    /// Makes the local database the writable primary.
    pub promote: ExecSpec,
    /// Replicates from `AUTOPILOT_PRIMARY_HOST`:`AUTOPILOT_PRIMARY_PORT`.
    pub follow: ExecSpec,
    /// Makes `AUTOPILOT_TARGET_HOST`:`AUTOPILOT_TARGET_PORT` refuse writes and prints its
    /// final position; exits [`FENCE_UNREACHABLE`] when the target cannot be reached.
    pub fence: ExecSpec,
    /// Undoes `fence` on the local database.
    pub unfence: ExecSpec,
    /// Where the local database listens (the fence target for a self-fence).
    pub local: Peer,
    /// Variables every hook receives (node and cluster names).
    pub env: Vec<(String, String)>,
}

/// Runs any program as the main process.
#[derive(Clone, Debug)]
pub struct ProcessEngine {
    /// The program, its arguments, env and cwd; `timeout` is unused for the main process.
    command: ExecSpec,
    /// Role hooks; `None` for a standalone agent.
    hooks: Option<ProcessHooks>,
}

impl ProcessEngine {
    /// An engine that runs `command` as the main process, with role `hooks` when clustered.
    pub fn new(command: ExecSpec, hooks: Option<ProcessHooks>) -> Self {
        Self { command, hooks }
    }

    fn hooks(&self, operation: &'static str) -> Result<&ProcessHooks, EngineError> {
        self.hooks
            .as_ref()
            .ok_or(EngineError::Unsupported { operation })
    }

    /// Run one hook; `Ok(stdout)` on exit 0, the exit status otherwise.
    async fn hook(
        &self,
        operation: &'static str,
        name: &'static str,
        pick: impl Fn(&ProcessHooks) -> &ExecSpec,
        extra: &[(String, String)],
    ) -> Result<Result<String, i32>, EngineError> {
        let hooks = self.hooks(operation)?;
        let mut env = hooks.env.clone();
        env.extend_from_slice(extra);
        let failed = |reason: String| EngineError::Failed { operation, reason };
        match run_capture(name, pick(hooks), &env).await {
            Ok(Captured {
                outcome: RunOutcome::Exited(status),
                stdout,
                ..
            }) if status.success() => Ok(Ok(stdout)),
            Ok(Captured {
                outcome: RunOutcome::Exited(status),
                ..
            }) => Ok(Err(status.exit_code())),
            Ok(Captured {
                outcome: RunOutcome::TimedOut,
                ..
            }) => Err(failed(format!("hook `{name}` timed out"))),
            Err(e) => Err(failed(handlers::error_chain(&e))),
        }
    }

    /// Run a hook that must succeed and print a position.
    async fn position_hook(
        &self,
        operation: &'static str,
        name: &'static str,
        pick: impl Fn(&ProcessHooks) -> &ExecSpec,
        extra: &[(String, String)],
    ) -> Result<Position, EngineError> {
        match self.hook(operation, name, pick, extra).await? {
            Ok(stdout) => parse_position(operation, name, &stdout),
            Err(code) => Err(EngineError::Failed {
                operation,
                reason: format!("hook `{name}` exited with {code}"),
            }),
        }
    }

    /// Run a hook that must succeed; its output is ignored.
    async fn plain_hook(
        &self,
        operation: &'static str,
        name: &'static str,
        pick: impl Fn(&ProcessHooks) -> &ExecSpec,
        extra: &[(String, String)],
    ) -> Result<(), EngineError> {
        match self.hook(operation, name, pick, extra).await? {
            Ok(_) => Ok(()),
            Err(code) => Err(EngineError::Failed {
                operation,
                reason: format!("hook `{name}` exited with {code}"),
            }),
        }
    }
}

fn parse_position(
    operation: &'static str,
    name: &str,
    stdout: &str,
) -> Result<Position, EngineError> {
    crate::role_ops::parse_position(stdout).ok_or_else(|| EngineError::Failed {
        operation,
        reason: format!(
            "hook `{name}` printed {:?}; expected `OFFSET` or `EPOCH OFFSET` (integers)",
            stdout.chars().take(80).collect::<String>()
        ),
    })
}

fn target_env(prefix: &str, peer: &Peer) -> Vec<(String, String)> {
    vec![
        (format!("AUTOPILOT_{prefix}_HOST"), peer.host.clone()),
        (format!("AUTOPILOT_{prefix}_PORT"), peer.port.to_string()),
    ]
}

impl Engine for ProcessEngine {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn main_command(&self) -> &ExecSpec {
        &self.command
    }

    /// Any program is asked to stop with SIGTERM, the Unix convention; there is no
    /// portable "fast" signal, so both modes use it.
    fn stop_signal(&self, _mode: StopMode) -> Signal {
        Signal::SIGTERM
    }

    async fn prepare(&self) -> Result<(), EngineError> {
        Ok(())
    }

    /// A running program is healthy as far as the engine can tell; the operator's health
    /// handler is the real judge.
    async fn probe(&self) -> Result<Probe, EngineError> {
        Ok(Probe::healthy())
    }

    async fn position(&self) -> Result<Position, EngineError> {
        self.position_hook(
            "read the replication position",
            "hook:position",
            |h| &h.position,
            &[],
        )
        .await
    }

    async fn promote(&self) -> Result<Position, EngineError> {
        self.plain_hook("promote", "hook:promote", |h| &h.promote, &[])
            .await?;
        self.position().await
    }

    async fn follow(&self, primary: &Peer) -> Result<Position, EngineError> {
        let env = target_env("PRIMARY", primary);
        self.plain_hook("follow the primary", "hook:follow", |h| &h.follow, &env)
            .await?;
        self.position().await
    }

    async fn fence(&self) -> Result<Position, EngineError> {
        let local = self.hooks("fence")?.local.clone();
        let env = target_env("TARGET", &local);
        self.position_hook("fence", "hook:fence", |h| &h.fence, &env)
            .await
    }

    /// The fence hook: a hooked engine has no rewind to avoid.
    async fn fence_to_hand_over(&self) -> Result<Position, EngineError> {
        self.fence().await
    }

    async fn fence_remote(&self, target: &Peer) -> Result<RemoteFence, EngineError> {
        let operation = "fence the former primary";
        let env = target_env("TARGET", target);
        match self
            .hook(operation, "hook:fence", |h| &h.fence, &env)
            .await?
        {
            Ok(stdout) => parse_position(operation, "hook:fence", &stdout).map(RemoteFence::Fenced),
            Err(FENCE_UNREACHABLE) => Ok(RemoteFence::Unreachable),
            Err(code) => Err(EngineError::Failed {
                operation,
                reason: format!("hook `hook:fence` exited with {code}"),
            }),
        }
    }

    async fn unfence(&self) -> Result<(), EngineError> {
        self.plain_hook("unfence", "hook:unfence", |h| &h.unfence, &[])
            .await
    }
}
