//! The `lock` document: serialises bootstrap and failover; bound to the holder's lease.

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/lock`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Node id of the holder.
    pub holder: String,
    /// What the holder is doing.
    pub purpose: LockPurpose,
    /// When it was taken.
    pub time: Timestamp,
}

/// Why the lock is held.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockPurpose {
    /// First initialisation of the cluster.
    Bootstrap,
    /// Automatic failover.
    Failover,
    /// Planned switchover.
    Switchover,
    /// Restore from backup.
    Restore,
    /// A value this reader does not know.
    #[serde(other)]
    Unknown,
}

impl Document for LockDoc {
    const KIND: &'static str = "lock";
}
