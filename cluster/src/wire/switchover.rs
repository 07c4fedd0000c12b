//! The `switchover` request: asks the primary to hand over (to a candidate, or to the best
//! replica). The primary deletes it when done or rejected.

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/switchover`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SwitchoverDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Node id to promote; `null` lets the agents pick the best replica.
    #[serde(default)]
    pub candidate: Option<String>,
    /// A forced failover (`POST …/failover`) rather than a switchover: the history records
    /// the change as `manual_failover`. Omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failover: bool,
    /// Who asked (user or token name).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// When it was asked.
    #[serde(default)]
    pub time: Option<Timestamp>,
}

impl Document for SwitchoverDoc {
    const KIND: &'static str = "switchover";
}
