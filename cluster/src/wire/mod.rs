//! The public etcd contract: key paths ([`keys`]) and the JSON documents stored under them.
//!
//! This module is shared with the coordinator and other tools, so it depends on serde,
//! serde_json and humantime only. The contract is documented for operators in
//! `docs/etcd-keys.md`; keep both in step.
//!
//! Compatibility rules (schema version 1):
//! - every document carries `"schema": 1`;
//! - **readers ignore unknown fields** (no `deny_unknown_fields` here) and map unknown enum
//!   values to `unknown`, so newer writers never break older readers;
//! - **writers never remove or retype a field** within a schema version; new fields are
//!   optional (`#[serde(default)]`) so older writers never break newer readers;
//! - an incompatible change bumps `schema`; [`decode`] rejects a schema it does not know.
//!
//! Times are RFC 3339 strings in UTC with milliseconds (`2026-11-23T23:05:00.123Z`),
//! see [`Timestamp`]. Lease ids are lower-case hex strings, as `etcdctl` prints them,
//! because JSON numbers lose precision above 2^53.

pub mod backup;
pub mod cluster_state;
pub mod common;
pub mod coordinator;
pub mod event;
pub mod history;
pub mod initialized;
pub mod keys;
pub mod lock;
pub mod maintenance;
pub mod member;
pub mod node;
pub mod primary;
pub mod request;
pub mod statements;
pub mod switchover;
pub mod upgrade;

pub use backup::{
    BackupAction, BackupMethod, BackupRecordDoc, BackupRequestDoc, BackupSlotDoc, BackupStatus,
    BackupType,
};
pub use cluster_state::{ClusterNode, ClusterStateDoc, Service};
pub use common::{
    Connections, Health, NodeStatus, Position, ReplicaState, Role, Storage, StreamingReplica,
    Timestamp, lease_hex,
};
pub use coordinator::{
    AuditDoc, AuditOutcome, COORDINATOR_SEGMENT, CoordinatorKeys, TokenCluster, TokenDoc, TokenRole,
};
pub use event::{EventDoc, EventKind};
pub use history::{HistoryDoc, HistoryEntry, HistoryReason};
pub use initialized::{DatabaseIdentity, InitializedDoc, first_term};
pub use keys::{ClusterKey, ClusterKeys, KeyError};
pub use lock::{LockDoc, LockPurpose};
pub use maintenance::MaintenanceDoc;
pub use member::MemberDoc;
pub use node::{
    Ineligible, IneligibleCode, NodeDoc, NodeReplication, NodeTags, PackageStatus, Packages,
    WaitKind, Waiting,
};
pub use primary::{PrimaryDoc, PrimaryReplication};
pub use request::{NodeAction, RequestDoc, RestorePoint, UpgradeOrder};
pub use statements::{NodeStatements, StatementStats};
pub use switchover::SwitchoverDoc;
pub use upgrade::{RolloutState, RolloutStep, StepKind, StepOutcome, UpgradeDoc};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a stored value could not be read as a document.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or a required field is missing or has the wrong type.
    #[error("parse {what} document")]
    Parse {
        /// Which document family was expected, e.g. `primary`.
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Written by a newer, incompatible version.
    #[error("{what} document has schema {found}, this build reads schema {SCHEMA_VERSION}")]
    UnknownSchema {
        /// Which document family was expected.
        what: &'static str,
        /// The `schema` value found.
        found: u64,
    },
}

/// A document stored in etcd: names its family for error messages.
pub trait Document: Serialize + DeserializeOwned {
    /// The family name used in errors and docs, e.g. `"primary"`.
    const KIND: &'static str;
}

/// Reads a document: checks `schema` first (a missing `schema` counts as 1, for hand-written
/// operator requests), then parses, ignoring unknown fields.
pub fn decode<T: Document>(bytes: &[u8]) -> Result<T, WireError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default = "one")]
        schema: u64,
    }
    fn one() -> u64 {
        1
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| WireError::Parse {
        what: T::KIND,
        source,
    })?;
    if probe.schema != u64::from(SCHEMA_VERSION) {
        return Err(WireError::UnknownSchema {
            what: T::KIND,
            found: probe.schema,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| WireError::Parse {
        what: T::KIND,
        source,
    })
}

/// Writes a document as compact JSON.
pub fn encode<T: Document>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).expect("wire documents contain only strings, numbers and maps")
}

/// serde default for the `schema` field.
pub(crate) fn schema_v1() -> u32 {
    SCHEMA_VERSION
}

pub mod sample;
#[cfg(test)]
mod tests;
