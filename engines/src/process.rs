//! The `process` engine: any program. The agent knows nothing about it beyond its command
//! line; health comes from the operator's health handler, and (later) roles from exec hooks.

use handlers::ExecSpec;
use nix::sys::signal::Signal;

use crate::engine::{Engine, EngineError, Probe, StopMode};

/// Runs any program as the main process.
#[derive(Clone, Debug)]
pub struct ProcessEngine {
    /// The program, its arguments, env and cwd; `timeout` is unused for the main process.
    command: ExecSpec,
}

impl ProcessEngine {
    /// An engine that runs `command` as the main process.
    pub fn new(command: ExecSpec) -> Self {
        Self { command }
    }
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
        Ok(Probe {
            healthy: true,
            reason: None,
        })
    }
}
