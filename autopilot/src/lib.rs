//! The Autopilot agent as a library; `main.rs` only calls [`cli::main`].
//!
//! - [`config`]: YAML → validated [`config::Config`].
//! - [`listen`]: hardened HTTP listeners (connection caps, timeouts, open-file limit).
//! - [`node`]: the node's actors under one root supervisor.
//! - [`pid1`]: orphan adoption and signal intake.
//! - [`role`]: the role state machine, a pure function, and its simulator.
//! - [`store`]: the `Store` trait, its etcd implementation, and the session actor.
//! - [`telemetry`]: Prometheus recorder, host metrics, `/metrics` and `/health`.
//! - [`wire`]: the etcd key layout and JSON documents — the public contract.

pub mod cli;
pub mod config;
pub mod listen;
pub mod logging;
pub mod node;
pub mod pid1;
pub mod role;
pub mod store;
pub mod telemetry;
pub mod wire;
