//! Engines: what the agent knows about the program it supervises.
//!
//! The [`Engine`] trait speaks in supervisor terms — the command that runs the main process,
//! how to ask it to stop, how to probe it — and never takes raw SQL or shell from callers.
//! The `process` engine runs any program; the MariaDB and PostgreSQL engines follow in
//! their own modules. This crate knows nothing of etcd or YAML: the `autopilot` crate
//! turns configuration into an engine value.

#![forbid(unsafe_code)]

pub mod backups;
mod control;
mod engine;
pub mod mariadb;
pub mod postgres;
pub mod process;
mod role_ops;

pub use control::{MainControl, MainRequest};
pub use engine::{
    AnyEngine, Between, Engine, EngineError, MainStart, Probe, Receiver, Replication, ServerStatus,
    StopMode, nothing_between, out_of_files, storage_of,
};
pub use role_ops::{Member, Peer, Position, RemoteFence, Source, parse_position};
