//! The node's actors, under one root supervisor:
//!
//! ```text
//! Supervisor ── Start/Stop order, signals, exit status
//!  ├─ Telemetry        /metrics, /health      ← watch<NodeStatus> from Health
//!  ├─ Health           NodeStatus             ← HealthMsg from Supervisor, Process port, health handler
//!  ├─ Process          the main process       ← ProcessMsg::{Stop, Forward, Escalate}; → ProcessEvent port
//!  ├─ Handler × N      preStart, health, onChange, preStop, postStop, job:<name>
//!  ├─ packages         the package watch (a task)  → watch<Packages> to Role
//!  ├─ Backup           backup jobs, verification, retention (node/backup)  ← AgentView from Role
//!  └─ control          <state_dir>/control.sock (a task): `upgrade-self` → SupervisorMsg::Control
//! ```
//!
//! `handover.rs` holds what crosses the `execve` of an in-place upgrade (see
//! `supervisor/upgrade.rs`).

pub(crate) mod backup;
mod clone;
pub(crate) mod control;
pub(crate) mod env;
pub(crate) mod handover;
mod health;
mod packages;
mod process;
mod role;
mod seed;
pub mod session;
pub(crate) mod specs;
mod statements;
pub(crate) mod status;
mod supervisor;

pub use env::EventEnv;
pub use health::{HealthActor, HealthArgs, HealthMsg};
pub use process::{ProcessActor, ProcessArgs, ProcessEvent, ProcessMsg};
pub use role::{Inheritance, RoleActor, RoleArgs, RoleHandlers, RoleMsg, role_args};
pub use specs::{build_engine, handler_spec, local_peer};
pub use supervisor::{Supervisor, SupervisorArgs, SupervisorMsg, exit_code};
