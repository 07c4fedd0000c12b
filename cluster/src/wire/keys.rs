//! Key paths of one cluster: `<prefix>/<namespace>/<project>/<cluster>/...`, and parsing a
//! key back into a typed [`ClusterKey`].

use std::fmt;

use super::common::Timestamp;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/autopilot";

/// A name used as a key segment is empty or contains `/`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is not a valid key segment: must be non-empty and contain no '/'")]
pub struct KeyError {
    /// Which part: `namespace`, `project`, `cluster`, `node id`.
    pub field: &'static str,
    /// The rejected value.
    pub value: String,
}

/// Produces every key of one cluster. Build with [`ClusterKeys::new`], which validates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterKeys {
    /// Key prefix without a trailing slash, e.g. `/autopilot`.
    prefix: String,
    /// Tenant.
    namespace: String,
    /// Project within the namespace.
    project: String,
    /// Cluster name.
    cluster: String,
    /// Cached `<prefix>/<ns>/<project>/<cluster>/`.
    base: String,
}

/// A key of the cluster, parsed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClusterKey {
    /// `primary`
    Primary,
    /// `nodes/<id>`
    Node(String),
    /// `state`
    State,
    /// `initialized`
    Initialized,
    /// `lock`
    Lock,
    /// `history`
    History,
    /// `maintenance`
    Maintenance,
    /// `switchover`
    Switchover,
    /// `upgrade`: the cluster's rolling upgrade (the coordinator's).
    Upgrade,
    /// `events/<id>`
    Event(String),
    /// `members/<id>`
    Member(String),
    /// `requests/<node id>`
    Request(String),
    /// `backup/requests/<id>`
    BackupRequest(String),
    /// `backup/records/<backup id>`
    BackupRecord(String),
    /// `backup/slots/<job>/<slot>`: the job and the slot.
    BackupSlot(String, String),
    /// `restore/requests/<id>` (reserved)
    RestoreRequest(String),
    /// Under the cluster prefix but not a key this build knows (written by a newer version);
    /// holds the part after the cluster prefix.
    Unknown(String),
}

fn segment(field: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() || value.contains('/') {
        return Err(KeyError {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

impl ClusterKeys {
    /// Validates the names; `prefix` may be given with or without trailing `/` and must
    /// start with `/` (an empty prefix means `/`).
    pub fn new(
        prefix: &str,
        namespace: &str,
        project: &str,
        cluster: &str,
    ) -> Result<Self, KeyError> {
        segment("namespace", namespace)?;
        segment("project", project)?;
        segment("cluster", cluster)?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && !prefix.starts_with('/') {
            return Err(KeyError {
                field: "prefix",
                value: prefix.to_owned(),
            });
        }
        let base = format!("{prefix}/{namespace}/{project}/{cluster}/");
        Ok(Self {
            prefix: prefix.to_owned(),
            namespace: namespace.to_owned(),
            project: project.to_owned(),
            cluster: cluster.to_owned(),
            base,
        })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The project.
    pub fn project(&self) -> &str {
        &self.project
    }
    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }
    /// The prefix (no trailing slash).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/<ns>/<project>/<cluster>/`, with the trailing slash (watch this).
    pub fn cluster_prefix(&self) -> String {
        self.base.clone()
    }
    /// The primary key.
    pub fn primary(&self) -> String {
        format!("{}primary", self.base)
    }
    /// `nodes/<id>`. The id must be a valid segment (see [`Self::check_node_id`]).
    pub fn node(&self, id: &str) -> String {
        format!("{}nodes/{id}", self.base)
    }
    /// `nodes/` with the trailing slash.
    pub fn nodes_prefix(&self) -> String {
        format!("{}nodes/", self.base)
    }
    /// The cluster document.
    pub fn state(&self) -> String {
        format!("{}state", self.base)
    }
    /// The bootstrap marker.
    pub fn initialized(&self) -> String {
        format!("{}initialized", self.base)
    }
    /// The bootstrap/failover lock.
    pub fn lock(&self) -> String {
        format!("{}lock", self.base)
    }
    /// The role-change history.
    pub fn history(&self) -> String {
        format!("{}history", self.base)
    }
    /// The maintenance switch.
    pub fn maintenance(&self) -> String {
        format!("{}maintenance", self.base)
    }
    /// The switchover request.
    pub fn switchover(&self) -> String {
        format!("{}switchover", self.base)
    }
    /// The rolling upgrade's state (`UpgradeDoc`).
    pub fn upgrade(&self) -> String {
        format!("{}upgrade", self.base)
    }
    /// `events/<id>`.
    pub fn event(&self, id: &str) -> String {
        format!("{}events/{id}", self.base)
    }
    /// `events/` with the trailing slash.
    pub fn events_prefix(&self) -> String {
        format!("{}events/", self.base)
    }

    /// `members/<id>`.
    pub fn member(&self, id: &str) -> String {
        format!("{}members/{id}", self.base)
    }
    /// `members/` with the trailing slash.
    pub fn members_prefix(&self) -> String {
        format!("{}members/", self.base)
    }
    /// `requests/<node id>`.
    pub fn request(&self, id: &str) -> String {
        format!("{}requests/{id}", self.base)
    }

    /// `backup/requests/<id>`.
    pub fn backup_request(&self, id: &str) -> String {
        format!("{}backup/requests/{id}", self.base)
    }
    /// `backup/requests/`.
    pub fn backup_requests_prefix(&self) -> String {
        format!("{}backup/requests/", self.base)
    }
    /// `backup/records/<backup id>`.
    pub fn backup_record(&self, id: &str) -> String {
        format!("{}backup/records/{id}", self.base)
    }
    /// `backup/records/`.
    pub fn backup_records_prefix(&self) -> String {
        format!("{}backup/records/", self.base)
    }
    /// `backup/slots/<job>/<slot>`.
    pub fn backup_slot(&self, job: &str, slot: &str) -> String {
        format!("{}backup/slots/{job}/{slot}", self.base)
    }
    /// `backup/slots/<job>/`.
    pub fn backup_slots_prefix(&self, job: &str) -> String {
        format!("{}backup/slots/{job}/", self.base)
    }

    /// Checks that `id` can be used as a node id segment.
    pub fn check_node_id(id: &str) -> Result<(), KeyError> {
        segment("node id", id)
    }

    /// An event id that sorts by time: 13-digit Unix milliseconds, `-`, node id.
    pub fn event_id(time: Timestamp, node: &str) -> String {
        format!("{:013}-{node}", time.unix_millis())
    }

    /// Parses a full key; `None` when it is not under this cluster's prefix.
    pub fn parse(&self, key: &str) -> Option<ClusterKey> {
        let rest = key.strip_prefix(&self.base)?;
        let one = |p: &str| {
            rest.strip_prefix(p)
                .filter(|id| !id.is_empty() && !id.contains('/'))
                .map(str::to_owned)
        };
        Some(match rest {
            "primary" => ClusterKey::Primary,
            "state" => ClusterKey::State,
            "initialized" => ClusterKey::Initialized,
            "lock" => ClusterKey::Lock,
            "history" => ClusterKey::History,
            "maintenance" => ClusterKey::Maintenance,
            "switchover" => ClusterKey::Switchover,
            "upgrade" => ClusterKey::Upgrade,
            _ => {
                if let Some(id) = one("nodes/") {
                    ClusterKey::Node(id)
                } else if let Some(id) = one("events/") {
                    ClusterKey::Event(id)
                } else if let Some(id) = one("members/") {
                    ClusterKey::Member(id)
                } else if let Some(id) = one("requests/") {
                    ClusterKey::Request(id)
                } else if let Some(id) = one("backup/requests/") {
                    ClusterKey::BackupRequest(id)
                } else if let Some(id) = one("backup/records/") {
                    ClusterKey::BackupRecord(id)
                } else if let Some((job, slot)) = rest
                    .strip_prefix("backup/slots/")
                    .and_then(|r| r.split_once('/'))
                    .filter(|(j, s)| !j.is_empty() && !s.is_empty() && !s.contains('/'))
                {
                    ClusterKey::BackupSlot(job.to_owned(), slot.to_owned())
                } else if let Some(id) = one("restore/requests/") {
                    ClusterKey::RestoreRequest(id)
                } else {
                    ClusterKey::Unknown(rest.to_owned())
                }
            }
        })
    }

    /// The full key of a parsed key (inverse of [`Self::parse`]).
    pub fn key(&self, k: &ClusterKey) -> String {
        match k {
            ClusterKey::Primary => self.primary(),
            ClusterKey::Node(id) => self.node(id),
            ClusterKey::State => self.state(),
            ClusterKey::Initialized => self.initialized(),
            ClusterKey::Lock => self.lock(),
            ClusterKey::History => self.history(),
            ClusterKey::Maintenance => self.maintenance(),
            ClusterKey::Switchover => self.switchover(),
            ClusterKey::Upgrade => self.upgrade(),
            ClusterKey::Event(id) => self.event(id),
            ClusterKey::Member(id) => self.member(id),
            ClusterKey::Request(id) => self.request(id),
            ClusterKey::BackupRequest(id) => self.backup_request(id),
            ClusterKey::BackupRecord(id) => self.backup_record(id),
            ClusterKey::BackupSlot(job, slot) => self.backup_slot(job, slot),
            ClusterKey::RestoreRequest(id) => format!("{}restore/requests/{id}", self.base),
            ClusterKey::Unknown(rest) => format!("{}{rest}", self.base),
        }
    }
}

impl fmt::Display for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}
