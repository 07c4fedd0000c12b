//! The member document, `members/<id>`: every node that ever joined the cluster, written by
//! its agent at start and bound to no lease, so a node that is down still shows (as stopped
//! or unreachable) until an operator removes it (`autopilotctl remove`).

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/members/<id>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Node id; equals the last key segment.
    pub id: String,
    /// Human-readable node name.
    pub name: String,
    /// Host name of the machine.
    pub hostname: String,
    /// Address clients and replicas connect to.
    pub ip_address: String,
    /// Database port.
    pub port: u16,
    /// Base URL of the agent's HTTP listener, when it has one.
    #[serde(default)]
    pub agent_url: Option<String>,
    /// When its agent last started.
    pub started: Timestamp,
}

impl Document for MemberDoc {
    const KIND: &'static str = "member";
}
