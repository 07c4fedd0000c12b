//! The `history` document: every role change of the cluster, oldest first.

use serde::{Deserialize, Serialize};

use super::common::{Position, Timestamp};
use super::{Document, schema_v1};

/// Value of `<cluster>/history`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Role changes, oldest first; writers may drop the oldest entries beyond a cap.
    pub entries: Vec<HistoryEntry>,
}

/// One change of primary.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the new primary took over.
    pub time: Timestamp,
    /// Previous primary's node id (`null` at bootstrap).
    #[serde(default)]
    pub from: Option<String>,
    /// New primary's node id.
    pub to: String,
    /// Where the new primary's database listens (`host:port`), so a later winner can fence it
    /// even when it never saw its `primary` key.
    #[serde(default)]
    pub to_address: Option<String>,
    /// `bootstrap`, `failover`, `switchover`, ... (free text for humans, first word for tools).
    pub reason: String,
    /// The new primary's position when it was promoted.
    pub position: Position,
}

impl Document for HistoryDoc {
    const KIND: &'static str = "history";
}
