//! Event documents, `events/<id>`: notable things that happened, bound to a long lease so
//! they age out by themselves.

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/events/<id>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// When it happened.
    pub time: Timestamp,
    /// What happened.
    pub kind: EventKind,
    /// Node id it happened on.
    pub node: String,
    /// Details for humans.
    #[serde(default)]
    pub detail: String,
}

/// The kinds of event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A node changed role.
    RoleChanged,
    /// Automatic failover promoted a new primary.
    Failover,
    /// Planned switchover finished.
    Switchover,
    /// A database was fenced (made read-only).
    Fenced,
    /// A node lost its lease.
    LeaseLost,
    /// A backup finished.
    BackupDone,
    /// A backup failed.
    BackupFailed,
    /// A value this reader does not know.
    #[serde(other)]
    Unknown,
}

impl Document for EventDoc {
    const KIND: &'static str = "event";
}
