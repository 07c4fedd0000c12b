//! Types shared by several documents: time stamps, roles, statuses, positions.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, serialised as RFC 3339 UTC with milliseconds, e.g.
/// `"2026-11-23T23:05:00.123Z"`. Readers also accept any RFC 3339 precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

/// In OpenAPI documents a [`Timestamp`] is an RFC 3339 `date-time` string.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples(["2026-11-23T23:05:00.123Z"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self(SystemTime::now())
    }
    /// From milliseconds since the Unix epoch.
    pub fn from_unix_millis(ms: u64) -> Self {
        Self(UNIX_EPOCH + Duration::from_millis(ms))
    }
    /// Milliseconds since the Unix epoch (0 for times before it).
    pub fn unix_millis(&self) -> u64 {
        self.0
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
    /// The wrapped time.
    pub fn system_time(&self) -> SystemTime {
        self.0
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        Self(t)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Truncate to whole milliseconds so a round trip is exact.
        let t = Self::from_unix_millis(self.unix_millis()).0;
        write!(f, "{}", humantime::format_rfc3339_millis(t))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s)
            .map(Self)
            .map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {s:?}: {e}")))
    }
}

/// An etcd lease id as lower-case hex, the way `etcdctl lease list` prints it.
pub fn lease_hex(id: i64) -> String {
    format!("{id:x}")
}

/// What a node is doing in the cluster.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accepts writes; holds the `primary` key.
    Primary,
    /// Follows the primary.
    Replica,
    /// Not yet decided (starting, bootstrapping, following nobody).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Life-cycle status of a node's database.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Starting up or recovering.
    Starting,
    /// Serving in its role.
    Online,
    /// Shutting down.
    Stopping,
    /// Not running.
    Offline,
    /// Made read-only by Autopilot (lost its lease or was replaced).
    Fenced,
    /// Being rebuilt from a backup or clone.
    Rebuilding,
    /// Refuses to join: its data belongs to another database (`refused` says which).
    Refused,
    /// A value this reader does not know (written by a newer version).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Result of the last health probe.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The engine probe and the operator's health handler passed.
    Healthy,
    /// A probe failed.
    Unhealthy,
    /// Not probed yet, or a value this reader does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// How far a database's data goes, engine-agnostic and totally ordered: first by `epoch`,
/// then by `offset`. `epoch` is the history branch (PostgreSQL timeline, MariaDB failover
/// generation, Redis replid generation; 0 where the engine has none), bumped by every
/// promotion so a new primary outranks its predecessor; `offset` the progress within it
/// (LSN, GTID sequence, replication offset). A node with a higher position has every write a
/// lower one has, unless one of them is errant (the engine detects that when following).
///
/// The one position type of the workspace: engines report it, the role machine compares it,
/// the documents carry it. In the OpenAPI document it keeps its historical name
/// `ReplicationPosition`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReplicationPosition))]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    /// Timeline / generation; a failover increments it.
    pub epoch: u64,
    /// Offset within the epoch.
    pub offset: u64,
}

impl Position {
    /// How far `self` trails `ahead`; `None` when the epochs differ and the offsets cannot be
    /// compared.
    pub fn lag_behind(&self, ahead: &Position) -> Option<u64> {
        (self.epoch == ahead.epoch).then(|| ahead.offset.saturating_sub(self.offset))
    }
}

impl Position {
    /// The offset as a PostgreSQL LSN, `0/11C88BB8` (PostgreSQL positions carry the LSN as
    /// `offset` and the timeline as `epoch`).
    pub fn lsn(&self) -> String {
        format!("{:X}/{:X}", self.offset >> 32, self.offset & 0xFFFF_FFFF)
    }

    /// The position in the engine's own notation, the one format logs and tools print:
    /// PostgreSQL `0/11C88BB8 on timeline 3`, MariaDB `seq 2143` (the GTID sequence number
    /// in the cluster's domain; the node key's `replication.gtid` has the whole GTID set),
    /// other engines `epoch/offset`. `engine` is the engine kind (`postgres`, `mariadb`, …).
    pub fn notation(&self, engine: &str) -> String {
        match engine {
            "postgres" => format!("{} on timeline {}", self.lsn(), self.epoch),
            "mariadb" => format!("seq {}", self.offset),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.epoch, self.offset)
    }
}

/// Client connections to the database.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Open connections.
    #[serde(default)]
    pub current: u64,
    /// Configured maximum.
    #[serde(default)]
    pub max: u64,
}

/// Disk use of the file system that holds the database's data directory (0 when unknown).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Storage {
    /// Size of the file system, bytes.
    #[serde(default)]
    pub total_bytes: u64,
    /// Bytes in use on it (by the database and anything else).
    #[serde(default)]
    pub used_bytes: u64,
    /// Bytes still free on it for the database (what an unprivileged process may use).
    #[serde(default)]
    pub free_bytes: u64,
}

/// State of a replica's replication receiver.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Connected to its source and receiving.
    Streaming,
    /// Trying to connect (or reconnect) to its source.
    Connecting,
    /// Not replicating: stopped, or configured with no source.
    Stopped,
    /// Stopped by an error; `last_error` says which.
    Error,
    /// A value this reader does not know (written by a newer version).
    #[default]
    #[serde(other)]
    Unknown,
}

/// One replica streaming from a primary, as the primary's database reports it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamingReplica {
    /// Its node id when the primary knows it as a cluster member (PostgreSQL: by its
    /// `application_name`; MariaDB: by its reported `host:port`, or its derived server id),
    /// else what its database reports (the `application_name`, or `host:port`).
    pub name: String,
    /// Whether commits wait for it now (`null` when the database does not say per replica:
    /// MariaDB counts semi-synchronous replicas without naming them unless all or none are).
    #[serde(default)]
    pub synchronous: Option<bool>,
    /// How far behind it replays, seconds (PostgreSQL `replay_lag`; `null` when unknown).
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    /// How far behind it replays, bytes of WAL (PostgreSQL; `null` when unknown).
    #[serde(default)]
    pub lag_bytes: Option<u64>,
}
