//! The node document, `nodes/<id>`: every agent publishes its own under its lease.

use serde::{Deserialize, Serialize};

use super::common::{
    Connections, Health, NodeStatus, Position, ReplicaState, Role, Storage, Timestamp,
};
use super::{Document, schema_v1};

/// Value of `<cluster>/nodes/<id>`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeDoc {
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
    /// The role the node is currently in.
    pub role: Role,
    /// Database status.
    pub status: NodeStatus,
    /// Result of the last health probe.
    pub health: Health,
    /// How far this node's database has got; failover prefers the most advanced node.
    pub replication: NodeReplication,
    /// Failover preference among equally advanced nodes; higher wins.
    pub priority: u32,
    /// Operator tags.
    #[serde(default)]
    pub tags: NodeTags,
    /// True while the database is fenced (read-only) by Autopilot.
    #[serde(default)]
    pub fenced: bool,
    /// True when this node must be rebuilt before it may rejoin (errant transactions).
    #[serde(default)]
    pub needs_rebuild: bool,
    /// The term of the cluster's identity this node's data belongs to (see `initialized`);
    /// absent from agents that predate terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// True when this node's agent killed its database process (SIGKILL of its process
    /// group) because the database did not answer and could not be fenced, and the node has
    /// not been primary since: it takes no writes, and a new primary does not wait to reach
    /// it. Omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub database_killed: bool,
    /// Why the node refuses to join the cluster (its data belongs to another database than
    /// the one `initialized` records); omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Why the database last exited on its own: its exit status and the last error line it
    /// printed (e.g. `exit code 1: FATAL: requested timeline 3 is not a child of this
    /// server's history`); kept until it runs healthy again, omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_exit: Option<String>,
    /// Whether this node would take part in a failover right now (healthy, has data, not
    /// tagged nofailover, not lagging, not handing over); computed by the node itself and
    /// read by its peers when they rank candidates.
    #[serde(default)]
    pub eligible: bool,
    /// Why the node is not eligible (`eligible: false`); omitted when it is, and from older
    /// agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ineligible: Option<Ineligible>,
    /// What the node is waiting for before it acts (a failover held by the cooldown, an
    /// election waiting for its peers' final positions, a new primary not yet online);
    /// omitted when it waits for nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Base URL of the node's agent HTTP listener (`telemetry.advertise`, else derived from
    /// `telemetry.listen`), e.g. `http://10.0.0.5:9187`; a cloning replica fetches the
    /// primary's backup stream there. `null` without a listener (and from older agents).
    #[serde(default)]
    pub agent_url: Option<String>,
    /// The database server's version string as the server reports it (e.g.
    /// `10.11.6-MariaDB-0+deb12u1-log`, `PostgreSQL 15.14 (Debian 15.14-0+deb12u1) on
    /// x86_64-pc-linux-gnu, ...`); the engine kind (`mariadb`, `postgres`, `process`) while
    /// the server has not answered a probe, and always for the `process` engine.
    pub version: String,
    /// The agent's own version (`autopilot --version`); `null` from older agents, which
    /// wrote it into `version`.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// Seconds since the database server started (`null` when unknown).
    #[serde(default)]
    pub uptime_seconds: Option<u64>,
    /// Client connections.
    #[serde(default)]
    pub connections: Connections,
    /// Disk use.
    #[serde(default)]
    pub storage: Storage,
    /// The watched packages (`packages.watch`): installed and candidate versions at the
    /// last check; absent when the node watches none (and from older agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Packages>,
    /// When the agent last rewrote this document.
    pub last_updated: Timestamp,
    /// TTL of the node's lease, seconds.
    pub ttlseconds: u64,
}

/// Replication state of one node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReplication {
    /// Position received and applied so far.
    pub position: Position,
    /// On a replica: how far behind its source it applies, in seconds, as the database
    /// reports it (MariaDB `Seconds_Behind_Master`; PostgreSQL the age of the last replayed
    /// transaction while received WAL waits to be replayed, else 0); `null` when unknown
    /// or on the primary.
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    /// On a PostgreSQL replica: WAL received but not yet replayed, in bytes.
    #[serde(default)]
    pub lag_bytes: Option<u64>,
    /// On a MariaDB replica: transactions received but not yet applied (GTID sequence
    /// numbers between `Gtid_IO_Pos` and `gtid_slave_pos` in the cluster's domain).
    #[serde(default)]
    pub lag_transactions: Option<u64>,
    /// On MariaDB: the server's `gtid_current_pos` (e.g. `0-1-2143`), the position in the
    /// database's own notation (`position.offset` is its sequence number in the cluster's
    /// domain); `null` on other engines (PostgreSQL's notation follows from `position`:
    /// timeline `epoch`, LSN `offset`) and when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    /// Id of the primary this node follows (`null` when it follows nobody).
    #[serde(default)]
    pub source: Option<String>,
    /// On a replica: the `host:port` its database replicates from, as the database reports
    /// it (`null` on a primary or when unknown).
    #[serde(default)]
    pub source_address: Option<String>,
    /// On a replica: the state of its replication receiver (`null` on a primary or when
    /// unknown).
    #[serde(default)]
    pub state: Option<ReplicaState>,
    /// On a replica: the last replication error the database reported (receiving or
    /// applying), `null` when there is none.
    #[serde(default)]
    pub last_error: Option<String>,
    /// During an election: the round (`history` revision of the vanished primary's term) for
    /// which `position` is final, everything received applied. Candidates wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up_term: Option<u64>,
    /// On a replica: whether it receives from its primary right now (PostgreSQL's
    /// walreceiver streaming, MariaDB's IO thread running); `null` on a primary or
    /// when unknown. A replica that does not receive for a while is no failover candidate.
    #[serde(default)]
    pub receiving: Option<bool>,
    /// On a primary: replicas streaming from it now (`null` on a replica or when unknown).
    #[serde(default)]
    pub replicas_streaming: Option<u32>,
    /// On a primary: of those, the replicas a commit waits for (semi-sync clients,
    /// synchronous or quorum standbys); 0 with `durability: sync` means commits hang.
    #[serde(default)]
    pub replicas_synchronous: Option<u32>,
}

/// Why a node does not take part in failovers now.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ineligible {
    /// The reason as a code tools can act on.
    pub code: IneligibleCode,
    /// The same for people, with the figures (`behind the primary by 12 MiB, more than
    /// max_lag_on_failover 1 MiB`).
    pub reason: String,
}

/// Why a node is not eligible, as a code.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IneligibleCode {
    /// Tagged `nofailover`.
    Nofailover,
    /// Its health check fails.
    Unhealthy,
    /// It has no data yet (starting, cloning).
    NoData,
    /// It gave up a promotion or handed over a moment ago and stays out for a while.
    Backoff,
    /// It stopped receiving from its primary (`replication_stalled`).
    Stalled,
    /// Its data diverged from the primary's: it must be rebuilt.
    NeedsRebuild,
    /// Its data belongs to another database.
    Refused,
    /// It is handing over its primary role.
    HandingOver,
    /// Its database restarts at an operator's request.
    Restarting,
    /// Its database is being upgraded (or rolled back), or has not yet proven healthy and
    /// caught up since.
    Upgrading,
    /// Its data belongs to an older term of the cluster's identity (before an in-place
    /// restore): it is rebuilt, never promoted.
    OldTerm,
    /// It restores the cluster in place.
    Restoring,
    /// The cluster migrates from an external source and its configuration names none.
    NoSource,
    /// Its agent is stopping.
    Stopping,
    /// It is further behind the primary than `max_lag_on_failover`.
    Lagging,
    /// A value this reader does not know (written by a newer version).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Something a node waits for before it acts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// What it waits for.
    pub kind: WaitKind,
    /// Since when.
    pub since: Timestamp,
    /// Until when at the latest, when that is known (the end of the cooldown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// The same for people (`failover held by the cooldown until 12:03:10Z: the last failover
    /// was at 12:02:10Z, failover_cooldown 60s`).
    pub detail: String,
}

/// What a node waits for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// The cluster has no primary, and the failover cooldown (I5) holds the election.
    Cooldown,
    /// The cluster has no primary, and maintenance mode holds the election (I4).
    Maintenance,
    /// An election waits for its peers' final positions (bounded by settle + TTL).
    PeerPositions,
    /// A primary holds the key but is not online yet; replicas follow it once it is.
    PrimaryOnline,
    /// The cluster is initialised, has no primary, and this node has no data (I3).
    Data,
    /// A value this reader does not know (written by a newer version).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Operator tags that change how Autopilot treats a node.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTags {
    /// Never promote this node automatically.
    #[serde(default)]
    pub nofailover: bool,
}

impl Document for NodeDoc {
    const KIND: &'static str = "node";
}

/// The package watch's last result (`nodes/<id>.packages`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packages {
    /// When the versions were last read.
    pub checked: Timestamp,
    /// Why the last check failed (the versions are then those of the check before), or why
    /// the operator's index refresh failed; `null` when it went well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// One entry per watched package, in the configured order.
    pub list: Vec<PackageStatus>,
}

/// One watched package.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageStatus {
    /// The package name (`mariadb-server`).
    pub name: String,
    /// The installed version; `null` when the package is not installed.
    #[serde(default)]
    pub installed: Option<String>,
    /// The version the package manager would install (`apt-cache policy`'s candidate);
    /// `null` when no source offers it.
    #[serde(default)]
    pub candidate: Option<String>,
    /// An installed package whose candidate is another version.
    #[serde(default)]
    pub update_available: bool,
    /// The candidate comes from a security archive (a source whose suite or address names
    /// `security`, as Debian's and Ubuntu's do).
    #[serde(default)]
    pub security: bool,
    /// Since when this agent has seen this candidate pending (kept across agent restarts);
    /// `null` without an update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}
