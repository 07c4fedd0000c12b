//! The `state` document: the cluster as a whole, written by the primary for tools
//! that want one read instead of a prefix scan.

use serde::{Deserialize, Serialize};

use super::common::{Health, NodeStatus, Role, Timestamp};
use super::{Document, schema_v1};

/// Value of `<cluster>/state`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterStateDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// The namespace (tenant).
    pub namespace: String,
    /// The project within the namespace.
    pub project: String,
    /// The cluster's name.
    pub cluster_name: String,
    /// Every node the primary knows of.
    pub nodes: Vec<ClusterNode>,
    /// Addresses clients use.
    #[serde(default)]
    pub services: Vec<Service>,
    /// When the primary last rewrote this document.
    pub last_updated: Timestamp,
}

/// One node as summarised in the cluster document.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Node id.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Address.
    pub ip_address: String,
    /// Database port.
    pub port: u16,
    /// Role.
    pub role: Role,
    /// Status.
    pub status: NodeStatus,
    /// Health.
    #[serde(default)]
    pub health: Health,
}

/// A client-facing service: the read-write endpoint or the read-only endpoints.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// `primary` (read-write) or `replicas` (read-only).
    pub name: String,
    /// `host:port` endpoints.
    pub endpoints: Vec<String>,
}

impl Document for ClusterStateDoc {
    const KIND: &'static str = "state";
}
