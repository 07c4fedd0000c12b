//! Event documents, `events/<id>`: notable things that happened, bound to a long lease so
//! they age out by themselves.

use serde::{Deserialize, Serialize};

use super::common::{Position, Timestamp};
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
    /// The primary a new primary took over from (`failover`, `switchover`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The primary after: the new primary (`failover`, `switchover`, `promoted`), or the one
    /// a replica now follows (`joined`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The writing node's replication position when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// The kinds of event. A reader that meets a kind it does not know reads `unknown`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A node changed role (written by agents before events had their own kinds).
    RoleChanged,
    /// An election after the primary was lost promoted this node.
    Failover,
    /// A planned switchover promoted this node.
    Switchover,
    /// This node initialised the cluster and became its first primary.
    Promoted,
    /// A won election was given up (the former primary could not be fenced, prePromote
    /// failed…).
    PromotionAborted,
    /// A primary steps down on purpose (a switchover, a stop, a broken database).
    Handover,
    /// A primary made its database read-only (I1).
    Fenced,
    /// The node's lease expired before it could renew it.
    LeaseLost,
    /// The database did not take the fence and was killed.
    DatabaseKilled,
    /// The database exited on its own.
    DatabaseExited,
    /// Local data diverged from the primary's; an operator (or `auto_rebuild`) must rebuild.
    NeedsRebuild,
    /// An initialised cluster without a primary, and this node has no data (I3).
    WaitingForData,
    /// A replica stopped receiving from its primary.
    ReplicationStalled,
    /// A stalled replica receives again.
    ReplicationResumed,
    /// A replica follows a primary (after a clone, a rejoin or a failover).
    Joined,
    /// A switchover request named no eligible target.
    SwitchoverRejected,
    /// The node's data belongs to another database than the cluster's (its identity
    /// differs from `initialized.database.system_id`): it refuses to join and leaves the
    /// data alone.
    ForeignData,
    /// An operator's request (`requests/<node>`) was carried out: `detail` says which
    /// (`reinit`: rebuilding from the primary; `restart`; `reload`).
    RequestDone,
    /// An operator's request was refused or failed; `detail` says why.
    RequestFailed,
    /// A backup started (`detail`: job, backup id, method and type).
    BackupStarted,
    /// A backup finished.
    BackupDone,
    /// A backup failed.
    BackupFailed,
    /// A backup was re-read and re-hashed, or restored into a scratch server and checked
    /// (`detail` says which, and the measured restore time).
    BackupVerified,
    /// A verify or test restore found a backup not intact or not restorable.
    BackupVerifyFailed,
    /// Retention removed a backup from every repository.
    BackupExpired,
    /// The change archive misses a file (WAL segment) that no node could supply, or a file
    /// was dropped because the spool was full (`detail` names the range): point-in-time
    /// recovery cannot cross it.
    ArchiveGap,
    /// The cluster's identity began a new term (an in-place restore), or a node's data of an
    /// older term is rebuilt for it.
    NewTerm,
    /// A live migration's cutover began (the standby leader makes the external source
    /// refuse writes): its outcome is a `request_done` (with the write outage) or
    /// `request_failed`.
    Cutover,
    /// A replica's upgrade began (`upgrade` request): its database stops, the upgrade hook
    /// runs, and it starts again.
    Upgrading,
    /// A replica's upgrade ended well: it runs the new program, healthy and caught up
    /// (`detail`: the server's version and how long it took).
    Upgraded,
    /// A replica's upgrade failed (`detail` says why) and the rollback hook brought it back:
    /// it runs the old program, healthy and caught up.
    UpgradeRolledBack,
    /// A replica's upgrade failed and the rollback did not bring it back healthy (or there
    /// is no rollback hook): `detail` says what is left to do.
    UpgradeFailed,
    /// The node's agent re-executed in place from a new binary (`autopilot upgrade-self`)
    /// and took over the running database and the lease: no failover (`detail`: the
    /// versions, the role and the database's PID).
    AgentUpgraded,
    /// A value this reader does not know.
    #[serde(other)]
    Unknown,
}

impl Document for EventDoc {
    const KIND: &'static str = "event";
}
