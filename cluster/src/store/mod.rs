//! The coordination store: the [`Store`] trait in Autopilot's terms and its etcd
//! implementation ([`EtcdStore`]). The agent's session actor (`autopilot::node::session`)
//! and the coordinator both use it.
//!
//! The trait speaks of leases, keys, revisions and watches, never of gRPC; every call is
//! bounded by a short per-request timeout so a dead etcd is noticed well within a lease TTL.
//! Retryable failures ([`StoreError::is_retryable`]) are "etcd unavailable" and "timed out".

mod error;
mod etcd;
mod metrics;
mod txn;
mod watch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub use error::StoreError;
pub use etcd::{EtcdOptions, EtcdStore, RangeQuery, Space};
pub use watch::{Watch, WatchBroken, WatchEvent, WatchMessage};

/// An etcd revision (the store's logical clock).
pub type Revision = i64;

/// A lease id. Displays as `0x…` hex, the way `etcdctl` shows lease ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseId({self})")
    }
}

/// One key and its value as read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The full key.
    pub key: String,
    /// The raw value (JSON for every Autopilot key).
    pub value: Vec<u8>,
    /// Revision of the last change of this key.
    pub mod_revision: Revision,
}

/// Everything [`Store::claim_primary`] writes and checks, as one etcd transaction.
///
/// The transaction succeeds iff `primary_key` does not exist, the `history_key` check passes
/// (when asked for) and, when `initialized` is given, that key does not exist either. Then it
/// puts `primary_key` (bound to `lease`), `history_key` and `initialized` (no lease) together;
/// otherwise it writes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The cluster's `primary` key; created, bound to `lease`, iff it does not exist.
    pub primary_key: String,
    /// The new `primary` document.
    pub primary_value: Vec<u8>,
    /// The claimant's lease; `primary_key` vanishes when it expires or is revoked.
    pub lease: LeaseId,
    /// The cluster's `history` key.
    pub history_key: String,
    /// Compare: `history_key`'s mod revision equals this (`0` = key absent), so a history
    /// read before the claim is not overwritten by a stale copy. `None` = no check.
    pub expected_history_revision: Option<Revision>,
    /// The whole new history document, put (without a lease) on success.
    pub history_value: Vec<u8>,
    /// The cluster's `initialized` key and document: when `Some`, the claim also requires that
    /// key to be absent and puts it (without a lease). Used by bootstrap only.
    pub initialized: Option<(String, Vec<u8>)>,
}

/// The coordination store. Implementations are cheap to share (`&self` everywhere) and
/// bound every call by a timeout.
pub trait Store: Send + Sync + 'static {
    /// Grants a lease with `ttl` (whole seconds, at least 1).
    fn grant_lease(
        &self,
        ttl: Duration,
    ) -> impl Future<Output = Result<LeaseId, StoreError>> + Send;

    /// Renews `lease` once; returns the TTL it now has. [`StoreError::LeaseExpired`] when the
    /// store no longer knows it.
    fn keep_alive_once(
        &self,
        lease: LeaseId,
    ) -> impl Future<Output = Result<Duration, StoreError>> + Send;

    /// The keys bound to `lease`. [`StoreError::LeaseExpired`] when the store no longer
    /// knows it.
    fn lease_keys(
        &self,
        lease: LeaseId,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Revokes `lease`, deleting every key bound to it. Revoking an unknown lease is `Ok`.
    fn revoke(&self, lease: LeaseId) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Writes `key`, bound to `lease` when given; returns the new revision.
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;

    /// Reads `key`: its value and mod revision, `None` when absent.
    fn get(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, Revision)>, StoreError>> + Send;

    /// Reads every key under `prefix`, sorted by key, and the store revision of that read
    /// (watch from `revision + 1` to miss nothing). The read is linearizable (etcd's default,
    /// confirmed with the leader): it reflects every write acknowledged before the call, so
    /// the snapshot and its revision are never stale.
    fn get_prefix(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<(Vec<Entry>, Revision), StoreError>> + Send;

    /// Creates `key` only if it does not exist (one transaction); `true` when this call created it.
    fn create_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes `key` only if its mod revision is still `mod_revision`; `true` when deleted.
    fn delete_if_revision(
        &self,
        key: &str,
        mod_revision: Revision,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces `key`'s value (bound to no lease) only if its mod revision is still
    /// `mod_revision` (one transaction); `true` when written. "Update this document unless
    /// someone else changed it since it was read."
    fn put_if_revision(
        &self,
        key: &str,
        value: Vec<u8>,
        mod_revision: Revision,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Deletes `key` only if it is bound to `lease` (one transaction); `true` when deleted.
    /// `false` when the key is absent or bound to another lease (or to none): "release the
    /// primary / lock iff it is ours".
    fn delete_if_lease(
        &self,
        key: &str,
        lease: LeaseId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Replaces `key`'s value only if it is bound to `lease`, keeping it bound (one
    /// transaction); `true` when written. "Update the primary key iff it is still ours."
    fn put_if_lease(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Puts `key` (bound to no lease: it outlives its writer) only while `guard` is bound to
    /// `lease` (one transaction); `true` when written. "Write the cluster's `state` iff we
    /// still hold the primary key."
    fn put_if_holder(
        &self,
        guard: &str,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims the primary role in one transaction (see [`Claim`] for what is compared and
    /// written). `Ok(true)` when everything was written, `Ok(false)` when a compare failed
    /// (a primary exists, `history` changed, or `initialized` exists) and nothing was written.
    /// [`StoreError::LeaseExpired`] when `claim.lease` is gone.
    fn claim_primary(&self, claim: Claim) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Deletes `key`; `true` when it existed.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Watches every key under `prefix` from `start_revision` on. The [`Watch`] yields events
    /// in revision order and ends with one [`WatchMessage::Broken`].
    fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: Revision,
    ) -> impl Future<Output = Result<Watch, StoreError>> + Send;
}
