//! Running operator handlers and every other child process of the agent.
//!
//! Layout:
//! - [`reaper`]: the process-wide SIGCHLD reaper. It is the **only** code in the agent that
//!   calls `waitpid`; every child is spawned through it so its exit status is dispatched to
//!   its owner, and every other exited process (orphaned grandchildren when we are PID 1 or a
//!   child subreaper) is reaped and forgotten.
//! - [`exec`]: spawn a command in its own process group with args, env and cwd, stream its
//!   output into `tracing`, wait with a timeout, stop the whole group (TERM, grace, KILL).
//! - [`actor`]: one ractor actor per configured handler; never two overlapping runs.
//!
//! This crate knows nothing of etcd, YAML or databases.

#![forbid(unsafe_code)]

pub mod actor;
pub mod exec;
pub mod level;
pub mod reaper;

pub use actor::{HandlerActor, HandlerArgs, HandlerMsg, HandlerOutcome, RunReport};
pub use exec::{
    Captured, ExecError, ExecSpec, ExitStatus, GroupHandle, ManagedChild, Outputs, Pipe, Piped,
    RunAs, RunOutcome, error_chain, run, run_capture,
};
pub use reaper::{orphans_reaped, set_child_subreaper};
