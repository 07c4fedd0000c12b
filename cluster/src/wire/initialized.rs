//! The `initialized` document: written once, at first bootstrap. Its presence means the
//! cluster has data and must never be initialised empty again (invariant I3).

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/initialized`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitializedDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Which database was created.
    pub database: DatabaseIdentity,
    /// When bootstrap finished.
    pub time: Timestamp,
    /// Id of the node that bootstrapped it.
    pub node: String,
    /// The term of the cluster's identity: 1 from the bootstrap, one more after each
    /// in-place restore. Data of an older term is never promoted and is rebuilt.
    #[serde(default = "first_term")]
    pub term: u64,
    /// When the current term began (absent for term 1: `time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_since: Option<Timestamp>,
    /// How the current term began, for humans (e.g. the restore that made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_reason: Option<String>,
    /// A live migration in progress: the external database (`host:port`) the cluster
    /// replicates from until its cutover (`cluster.bootstrap.migrate_from`). While it is
    /// set, the `primary` key's holder is a *standby leader*: read-only, a replica of that
    /// source, and the other nodes replicate from it. The cutover removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_of: Option<String>,
}

/// The term of a cluster bootstrapped before terms were recorded.
pub fn first_term() -> u64 {
    1
}

/// Identity of the database created at bootstrap; a node whose data has another identity
/// does not belong to this cluster.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseIdentity {
    /// Engine kind, e.g. `mariadb`, `postgres`, `process`.
    pub engine: String,
    /// Engine-specific id: PostgreSQL system identifier, MySQL server UUID of the seed, ...
    pub system_id: String,
}

impl Document for InitializedDoc {
    const KIND: &'static str = "initialized";
}
