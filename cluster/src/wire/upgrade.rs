//! The rolling upgrade document, `upgrade`: a cluster's rollout, written by the coordinator
//! that drives it (`POST …/upgrade`, `autopilotctl upgrade start`). Its state lives here so
//! that a restarted coordinator resumes it and any reader can report it; the steps themselves
//! are `requests/<node>` (`upgrade`) and `switchover` documents, and their outcomes the
//! nodes' events.

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/upgrade`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Who asked (user or token name).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// When the rollout began.
    pub started: Timestamp,
    /// When this document was last written.
    pub updated: Timestamp,
    /// Passed to each node's upgrade hook (`null`: the hook chooses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How long each node has, once its database runs again, to be healthy and caught up.
    pub deadline_seconds: u64,
    /// Where the rollout is.
    pub state: RolloutState,
    /// What it does or waits for now, or why it stopped, for people.
    pub detail: String,
    /// The nodes that run the upgraded program, in the order they were upgraded.
    #[serde(default)]
    pub upgraded: Vec<String>,
    /// The step in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RolloutStep>,
    /// The finished steps, oldest first.
    #[serde(default)]
    pub steps: Vec<RolloutStep>,
}

/// Where a rollout is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Steps are taken.
    Running,
    /// The step in flight finishes, no new one begins until it is resumed.
    Paused,
    /// Every node runs the upgraded program.
    Done,
    /// A step failed (`detail` says why); the rollout stopped.
    Failed,
    /// A value this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl RolloutState {
    /// Running or paused: the cluster has a rollout, and no other may begin.
    pub fn active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// One step of a rollout.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStep {
    /// What the step does.
    pub kind: StepKind,
    /// The node upgraded, or the switchover's candidate.
    pub node: String,
    /// For a switchover: the primary it hands over from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When it began.
    pub started: Timestamp,
    /// The cluster's etcd revision read before the step's request was written: the events
    /// after it tell the outcome.
    pub revision: i64,
    /// When it ended (`null` while in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Timestamp>,
    /// How it ended (`null` while in flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<StepOutcome>,
    /// The node's own words on the outcome (its event's detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a rollout step does.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A replica's `upgrade` request.
    Upgrade,
    /// The planned switchover from the last node not upgraded (the primary) to an upgraded
    /// replica.
    Switchover,
    /// A value this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// How a rollout step ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The node runs the upgraded program, healthy and caught up; or the switchover happened.
    Done,
    /// The upgrade failed and the node was rolled back: healthy on the old program.
    RolledBack,
    /// The step failed (refused, the rollback failed too, the switchover did not happen, the
    /// node's agent vanished).
    Failed,
    /// A value this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl Document for UpgradeDoc {
    const KIND: &'static str = "upgrade";
}
