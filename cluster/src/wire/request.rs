//! The node request document, `requests/<id>`: an operator's order to one node's agent
//! (rebuild its data, restart or reload its database, restore the cluster in place). The
//! coordinator writes it; the agent it names carries it out, writes an event, and deletes
//! the key.

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/requests/<node id>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// What to do.
    pub action: NodeAction,
    /// Who asked (user or token name).
    #[serde(default)]
    pub requested_by: Option<String>,
    /// When it was asked.
    #[serde(default)]
    pub time: Option<Timestamp>,
    /// For `restore`: the point the cluster is rewound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<RestorePoint>,
    /// For `upgrade`: what to install and how long the node has to come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeOrder>,
}

/// An `upgrade` request's terms.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOrder {
    /// Passed to the node's upgrade hook as `AUTOPILOT_UPGRADE_VERSION` (`null`: the hook
    /// chooses, e.g. the candidate version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How long the node has, once its database runs again after the hook, to be healthy
    /// and to have caught up with the primary; after that the rollback hook runs.
    pub deadline_seconds: u64,
}

/// The point an in-place cluster restore rewinds the cluster to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestorePoint {
    /// The end of the archive: every archived change.
    Latest,
    /// The last change committed at or before this time (RFC 3339).
    Time(Timestamp),
}

impl std::fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("the end of the archive"),
            Self::Time(t) => write!(f, "{t}"),
        }
    }
}

/// What an operator asks one node to do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAction {
    /// Rebuild a replica: move its data aside and clone the primary again.
    Reinit,
    /// Stop and start the database (a replica; the primary switches over first).
    Restart,
    /// Have the database re-read its configuration without a restart (SIGHUP: PostgreSQL
    /// re-reads its configuration files; MariaDB reloads privileges and flushes its logs).
    Reload,
    /// Rewind the whole cluster to `restore_to` (sent to the primary, with the cluster in
    /// maintenance): it restores a backup and the archive, adopts the result as a new term of
    /// the cluster's identity, and the other nodes rebuild from it.
    Restore,
    /// End a live migration (sent to the standby leader): make the external source
    /// read-only, wait until this cluster has every transaction it acknowledged, and promote
    /// the standby leader; the cluster no longer replicates from the source.
    Cutover,
    /// Upgrade a replica's database in place (`upgrade` says how): stop it, run the node's
    /// upgrade hook, start it; it must be healthy and caught up within the deadline, else
    /// the rollback hook runs. Refused on the primary (a rollout switches over first).
    Upgrade,
    /// A value this reader does not know (written by a newer version): ignored.
    #[default]
    #[serde(other)]
    Unknown,
}

impl NodeAction {
    /// The string stored in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reinit => "reinit",
            Self::Restart => "restart",
            Self::Reload => "reload",
            Self::Restore => "restore",
            Self::Cutover => "cutover",
            Self::Upgrade => "upgrade",
            Self::Unknown => "unknown",
        }
    }
}

impl Document for RequestDoc {
    const KIND: &'static str = "request";
}
