//! The node status the health actor publishes and `/health` serves.

use serde::Serialize;

/// Where the agent is in its life; published on `/health` and as `autopilot_lifecycle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Preparing the engine and running preStart.
    Starting,
    /// The main process runs (or is being restarted by policy).
    Running,
    /// The stop order (preStop → stop main → postStop) is under way.
    Stopping,
}

impl Lifecycle {
    /// Numeric value of the `autopilot_lifecycle` gauge (documented in docs/operations.md).
    pub fn as_gauge(self) -> f64 {
        match self {
            Lifecycle::Starting => 0.0,
            Lifecycle::Running => 1.0,
            Lifecycle::Stopping => 2.0,
        }
    }
}

/// What `/health` reports; a fresh value is published on every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The node can serve: main process up, engine probe and health handler passing.
    pub healthy: bool,
    /// Where the agent is in its life.
    pub lifecycle: Lifecycle,
    /// PID of the main process while it runs.
    pub main_pid: Option<u32>,
    /// Why the node is not healthy; `None` when it is.
    pub reason: Option<String>,
}

impl NodeStatus {
    /// The status before anything has started.
    pub fn starting() -> Self {
        Self {
            healthy: false,
            lifecycle: Lifecycle::Starting,
            main_pid: None,
            reason: Some("starting".into()),
        }
    }
}
