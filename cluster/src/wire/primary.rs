//! The `primary` document: who accepts writes. The key is bound to the primary's lease, so
//! it disappears when the primary dies or hands over.

use serde::{Deserialize, Serialize};

use super::common::{Connections, NodeStatus, Position, Storage, StreamingReplica, Timestamp};
use super::{Document, schema_v1};

/// Value of `<cluster>/primary`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrimaryDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Node id; the same id as in `nodes/<id>`.
    pub id: String,
    /// Human-readable node name.
    pub name: String,
    /// Host name of the machine.
    pub hostname: String,
    /// Address clients connect to.
    pub ip_address: String,
    /// Database port.
    pub port: u16,
    /// Database status on the primary.
    pub status: NodeStatus,
    /// Database server version string, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
    pub version: String,
    /// Seconds since the database server started (`null` when unknown).
    #[serde(default)]
    pub uptime_seconds: Option<u64>,
    /// Replication as seen from the primary.
    pub replication: PrimaryReplication,
    /// Client connections.
    #[serde(default)]
    pub connections: Connections,
    /// Disk use.
    #[serde(default)]
    pub storage: Storage,
    /// When the primary last rewrote this document.
    pub last_updated: Timestamp,
    /// TTL of the lease the key is bound to, in seconds.
    pub ttlseconds: u64,
    /// The lease id as hex, as `etcdctl lease list` prints it.
    pub lease: String,
}

/// Replication state published by the primary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrimaryReplication {
    /// The primary's write position.
    pub position: Position,
    /// Replicas currently streaming from it.
    #[serde(default)]
    pub replicas: u32,
    /// The largest lag among streaming replicas, seconds (`null` when unknown).
    #[serde(default)]
    pub max_lag_seconds: Option<f64>,
    /// Whether synchronous replication is in force (`durability: sync`): commits wait for
    /// a replica's acknowledgement.
    #[serde(default)]
    pub synchronous: bool,
    /// Of the streaming replicas, how many a commit waits for now (semi-sync clients,
    /// synchronous or quorum standbys); `null` from older agents.
    #[serde(default)]
    pub replicas_synchronous: Option<u32>,
    /// The replicas streaming from it, as its database reports them.
    #[serde(default)]
    pub streaming: Vec<StreamingReplica>,
}

impl Document for PrimaryDoc {
    const KIND: &'static str = "primary";
}
