//! The Autopilot agent as a library; `main.rs` only calls [`cli::main`].
//!
//! - [`config`]: YAML → validated [`config::Config`].
//! - [`node`]: the node's actors under one root supervisor.
//! - [`pid1`]: orphan adoption and signal intake.
//! - [`role`]: the role state machine, a pure function, and its simulator.
//! - [`telemetry`]: Prometheus recorder, host metrics, `/metrics` and `/health`.
//!
//! The etcd contract (key layout, documents, the store and its etcd client) is the
//! `cluster` crate and the hardened HTTP listener the `listen` crate, both shared with the
//! coordinator.

pub mod cli;
pub mod config;
pub mod logging;
pub mod node;
pub mod pid1;
pub mod role;
pub mod telemetry;
