//! Telemetry: the Prometheus recorder, host metrics, and the HTTP listener that serves
//! `/metrics` and `/health` to Prometheus and load balancers.
//!
//! The [`TelemetryActor`] owns the listener task and the periodic sampling; the node's status
//! reaches it through a `watch` channel published by the health actor, never shared state.

mod actor;
mod host;
mod http;
mod recorder;
mod status;

pub use actor::{TelemetryActor, TelemetryArgs, TelemetryMsg};
pub use recorder::install_recorder;
pub use status::{Lifecycle, NodeStatus, PublishedRole};
