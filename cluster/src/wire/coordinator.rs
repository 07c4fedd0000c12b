//! The coordinator's own documents, under `<prefix>/_coordinator/` (outside every cluster):
//! API tokens (`tokens/<id>`, stored only as hashes) and the audit log (`audit/<id>`).
//! Agents never read them; they are here so every tool shares one definition.
//!
//! The namespace `_coordinator` is reserved: no cluster may use a namespace that starts with `_`.

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// The segment under the prefix that holds the coordinator's keys.
pub const COORDINATOR_SEGMENT: &str = "_coordinator";

/// Key paths of the coordinator's documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorKeys {
    /// `<prefix>/_coordinator/`, with the trailing slash.
    base: String,
}

impl CoordinatorKeys {
    /// For a key prefix such as `/autopilot` (with or without a trailing `/`).
    pub fn new(prefix: &str) -> Self {
        Self {
            base: format!("{}/{COORDINATOR_SEGMENT}/", prefix.trim_end_matches('/')),
        }
    }
    /// `tokens/` with the trailing slash.
    pub fn tokens_prefix(&self) -> String {
        format!("{}tokens/", self.base)
    }
    /// `<prefix>/_coordinator/`: everything the coordinator keeps (tokens, audit log), one
    /// contiguous key range that cluster listings skip.
    pub fn root(&self) -> &str {
        &self.base
    }
    /// `tokens/<id>`.
    pub fn token(&self, id: &str) -> String {
        format!("{}tokens/{id}", self.base)
    }
    /// `rollouts/driver`: the coordinator that drives every rolling upgrade (its id, bound
    /// to its lease), so that several coordinators never take the same step twice.
    pub fn rollout_driver(&self) -> String {
        format!("{}rollouts/driver", self.base)
    }
    /// `audit/` with the trailing slash.
    pub fn audit_prefix(&self) -> String {
        format!("{}audit/", self.base)
    }
    /// `audit/<id>`.
    pub fn audit(&self, id: &str) -> String {
        format!("{}audit/{id}", self.base)
    }
    /// An audit id that sorts by time: 13-digit Unix milliseconds, `-`, a unique suffix.
    pub fn audit_id(time: Timestamp, suffix: &str) -> String {
        format!("{:013}-{suffix}", time.unix_millis())
    }
    /// The first audit key at or after `time` (every older key sorts before it): the end of
    /// the range pruned by the retention.
    pub fn audit_bound(&self, time: Timestamp) -> String {
        format!("{}audit/{:013}", self.base, time.unix_millis())
    }
}

/// What an API token may do. Roles are ranked ([`TokenRole::rank`]): agent < viewer <
/// operator < admin; an agent token reads one cluster only.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Issued to an agent by `POST /v1/agents/register`: reads its own cluster only.
    Agent,
    /// Reads clusters, nodes, history and events.
    Viewer,
    /// Viewer rights plus switchover, maintenance and agent registration.
    Operator,
    /// Operator rights plus tokens, forced failover and the audit log.
    Admin,
    /// A value this reader does not know: grants nothing.
    #[serde(other)]
    Unknown,
}

impl TokenRole {
    /// Rights as a number: unknown 0, agent 1, viewer 2, operator 3, admin 4. A role may do
    /// what every role of a lower rank may do (an agent's scope is narrower on top).
    pub fn rank(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Agent => 1,
            Self::Viewer => 2,
            Self::Operator => 3,
            Self::Admin => 4,
        }
    }

    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Agent => "agent",
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// The one cluster an agent token is bound to.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenCluster {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
}

/// Value of `<prefix>/_coordinator/tokens/<id>`. The secret is never stored, only its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Token id; equals the last key segment and the id part of the token string.
    pub id: String,
    /// Human-readable name, e.g. who or what uses it.
    pub name: String,
    /// What it may do.
    pub role: TokenRole,
    /// Namespaces it may see: `["*"]` for all.
    pub namespaces: Vec<String>,
    /// Agent tokens: the one cluster they may see.
    #[serde(default)]
    pub cluster: Option<TokenCluster>,
    /// Agent tokens: the node id the agent registered as.
    #[serde(default)]
    pub node: Option<String>,
    /// `sha256:<hex>` of the secret part of the token.
    pub hash: String,
    /// When it was issued.
    pub created_at: Timestamp,
    /// Id of the token that issued it (`admin` for the bootstrap admin token).
    pub created_by: String,
    /// Not valid from this time on (`null`: never expires).
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Revoked at this time (`null`: not revoked).
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
    /// Id of the token that revoked it.
    #[serde(default)]
    pub revoked_by: Option<String>,
}

impl Document for TokenDoc {
    const KIND: &'static str = "token";
}

/// How an audited call ended.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Authorised and carried out.
    Ok,
    /// Refused: no or bad token, outside the token's scope, role too low, rate limited.
    Denied,
    /// Authorised but refused or failed (conflict, bad request, etcd error).
    Failed,
    /// A value this reader does not know.
    #[serde(other)]
    Unknown,
}

/// Value of `<prefix>/_coordinator/audit/<id>`: one mutating or denied API call.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// When the call was answered.
    pub time: Timestamp,
    /// Id of the caller's token (`null` when none or an unparsable one was sent).
    #[serde(default)]
    pub token_id: Option<String>,
    /// Role of the caller's token (`null` when not authenticated).
    #[serde(default)]
    pub role: Option<TokenRole>,
    /// What was attempted, e.g. `cluster.switchover`, `token.create`.
    pub action: String,
    /// What it was aimed at, e.g. `ns/project/cluster` or a token id.
    pub target: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// HTTP status of the answer.
    pub status: u16,
    /// The problem code when it did not succeed.
    #[serde(default)]
    pub code: Option<String>,
    /// Client address (`ip:port`).
    pub client: String,
    /// Extra facts for humans (never secrets).
    #[serde(default)]
    pub detail: Option<String>,
    /// Refusals this record stands for when it aggregates repeated ones from one client
    /// address (absent on ordinary records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<u64>,
}

impl Document for AuditDoc {
    const KIND: &'static str = "audit";
}
