//! The event variables every handler receives in its environment.

use crate::config::Config;

/// The values handed to handlers as `AUTOPILOT_*` environment variables.
#[derive(Clone, Debug, Default)]
pub struct EventEnv {
    /// Which lifecycle event this run is for: `preStart`, `health`, `onChange`, `preStop`, `postStop`, `job`.
    pub event: String,
    /// The node's name.
    pub node: String,
    /// Cluster names; empty when the agent runs standalone.
    pub namespace: String,
    pub project: String,
    pub cluster: String,
    /// The node's role now (`standalone` without a store).
    pub role: String,
    /// The node's role before this event.
    pub previous_role: String,
    /// `host:port` of the current primary, empty when unknown.
    pub primary_address: String,
    /// PID of the main process, empty when it does not run.
    pub main_pid: Option<u32>,
    /// Exit status of the main process, for postStop.
    pub main_exit_code: Option<i32>,
}

impl EventEnv {
    /// The base values for this node.
    pub fn for_node(config: &Config) -> Self {
        let (namespace, project, cluster) = config
            .cluster
            .as_ref()
            .map(|c| (c.namespace.clone(), c.project.clone(), c.name.clone()))
            .unwrap_or_default();
        Self {
            node: config.node.name.clone(),
            namespace,
            project,
            cluster,
            role: "standalone".into(),
            previous_role: "standalone".into(),
            ..Self::default()
        }
    }

    /// This env for one event.
    pub fn with_event(&self, event: &str) -> Self {
        Self {
            event: event.into(),
            ..self.clone()
        }
    }

    /// The `(name, value)` pairs for the child's environment.
    pub fn vars(&self) -> Vec<(String, String)> {
        let opt = |v: Option<String>| v.unwrap_or_default();
        vec![
            ("AUTOPILOT_EVENT".into(), self.event.clone()),
            ("AUTOPILOT_NODE".into(), self.node.clone()),
            ("AUTOPILOT_NAMESPACE".into(), self.namespace.clone()),
            ("AUTOPILOT_PROJECT".into(), self.project.clone()),
            ("AUTOPILOT_CLUSTER".into(), self.cluster.clone()),
            ("AUTOPILOT_ROLE".into(), self.role.clone()),
            ("AUTOPILOT_PREVIOUS_ROLE".into(), self.previous_role.clone()),
            (
                "AUTOPILOT_PRIMARY_ADDRESS".into(),
                self.primary_address.clone(),
            ),
            (
                "AUTOPILOT_MAIN_PID".into(),
                opt(self.main_pid.map(|p| p.to_string())),
            ),
            (
                "AUTOPILOT_MAIN_EXIT_CODE".into(),
                opt(self.main_exit_code.map(|c| c.to_string())),
            ),
        ]
    }
}
