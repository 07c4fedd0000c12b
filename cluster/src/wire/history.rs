//! The `history` document: every role change of the cluster, oldest first.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    pub reason: HistoryReason,
    /// The new primary's position when it was promoted.
    pub position: Position,
}

impl Document for HistoryDoc {
    const KIND: &'static str = "history";
}

/// Why the primary changed, serialised as a plain string: `bootstrap`, `failover`,
/// `switchover`, or any other text (kept as written, so a read-modify-write of `history`
/// never rewrites an entry). Only `failover` counts for the failover cooldown (I5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HistoryReason {
    /// First primary of a new cluster.
    Bootstrap,
    /// The primary key vanished and a replica won the election.
    Failover,
    /// A planned hand-over requested through the `switchover` key.
    Switchover,
    /// A forced failover to a named node, requested by an operator (`switchover` with
    /// `failover: true`); not counted for the failover cooldown.
    ManualFailover,
    /// Any other text, written by another tool or a newer version.
    Other(String),
}

impl HistoryReason {
    /// The string stored in the document.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::Failover => "failover",
            Self::Switchover => "switchover",
            Self::ManualFailover => "manual_failover",
            Self::Other(s) => s,
        }
    }
}

impl From<&str> for HistoryReason {
    fn from(s: &str) -> Self {
        match s {
            "bootstrap" => Self::Bootstrap,
            "failover" => Self::Failover,
            "switchover" => Self::Switchover,
            "manual_failover" => Self::ManualFailover,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl std::fmt::Display for HistoryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for HistoryReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HistoryReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from(String::deserialize(d)?.as_str()))
    }
}

/// In OpenAPI documents a [`HistoryReason`] is a string.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for HistoryReason {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .examples(["failover"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for HistoryReason {}
