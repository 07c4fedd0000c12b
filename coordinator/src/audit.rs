//! The audit log: one document per mutating or denied API call under
//! `<prefix>/_coordinator/audit/<ms>-<random>`, so keys sort by time and any coordinator can
//! read them. Records older than the retention are deleted by a range delete that every
//! coordinator runs periodically (idempotent, so several coordinators do not conflict).

use std::net::SocketAddr;
use std::time::Duration;

use autopilot::store::{EtcdStore, RangeQuery, Store, StoreError};
use autopilot::wire::{self, AuditDoc, AuditOutcome, CoordinatorKeys, Timestamp, TokenRole};
use tokio_util_free::CancelOnDrop;

use crate::auth::Caller;
use crate::auth::token::hex;
use crate::problem::error_chain;

/// Writes and reads audit records.
#[derive(Clone)]
pub struct Auditor {
    /// The etcd client.
    store: EtcdStore,
    /// Where the records live.
    keys: CoordinatorKeys,
    /// How long records are kept.
    retention: Duration,
}

/// One call to record: who, what, on what, and from where.
pub struct Entry<'a> {
    /// The caller, if authenticated.
    pub caller: Option<&'a Caller>,
    /// Token id and role when authentication failed but the token was recognised.
    pub token: Option<(String, Option<TokenRole>)>,
    /// What was attempted, e.g. `cluster.switchover`.
    pub action: &'a str,
    /// What it aimed at.
    pub target: &'a str,
    /// The client's address.
    pub client: SocketAddr,
}

impl Auditor {
    /// An auditor over `store`.
    pub fn new(store: EtcdStore, keys: CoordinatorKeys, retention: Duration) -> Self {
        Self {
            store,
            keys,
            retention,
        }
    }

    /// Records `e` with how it ended. A failed write is logged and counted but does not
    /// change the answer: the action itself is already in etcd.
    pub async fn record(
        &self,
        e: Entry<'_>,
        outcome: AuditOutcome,
        status: u16,
        code: Option<String>,
        detail: Option<String>,
    ) {
        let (token_id, role) = match (e.caller, e.token) {
            (Some(c), _) => (Some(c.id.clone()), Some(c.role)),
            (None, Some((id, role))) => (Some(id), role),
            (None, None) => (None, None),
        };
        let doc = AuditDoc {
            schema: wire::SCHEMA_VERSION,
            time: Timestamp::now(),
            token_id,
            role,
            action: e.action.to_owned(),
            target: e.target.to_owned(),
            outcome,
            status,
            code,
            client: e.client.to_string(),
            detail,
        };
        let mut suffix = [0u8; 6];
        if getrandom::fill(&mut suffix).is_err() {
            suffix = [0; 6];
        }
        let key = self
            .keys
            .audit(&CoordinatorKeys::audit_id(doc.time, &hex(&suffix)));
        if let Err(err) = self.store.put(&key, wire::encode(&doc), None).await {
            metrics::counter!("autopilot_coordinator_audit_write_failures_total").increment(1);
            tracing::error!(cause = %error_chain(&err), action = e.action, "failed to write an audit record");
        }
    }

    /// Records, newest first: at most `limit`, older than `before` (an audit id) when given.
    pub async fn list(
        &self,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<(String, AuditDoc)>, StoreError> {
        let prefix = self.keys.audit_prefix();
        let q = RangeQuery {
            from: None,
            to: before.map(|b| self.keys.audit(b)),
            limit,
            descending: true,
        };
        let (entries, _) = self.store.get_range(&prefix, &q).await?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let id = e.key.strip_prefix(&prefix)?.to_owned();
                Some((id, wire::decode::<AuditDoc>(&e.value).ok()?))
            })
            .collect())
    }

    /// Deletes records older than the retention; returns how many.
    pub async fn prune(&self) -> Result<i64, StoreError> {
        let cutoff = Timestamp::from(
            std::time::SystemTime::now()
                .checked_sub(self.retention)
                .unwrap_or(std::time::UNIX_EPOCH),
        );
        self.store
            .delete_range(&self.keys.audit_prefix(), &self.keys.audit_bound(cutoff))
            .await
    }

    /// Prunes every `every` until the returned guard is dropped.
    pub fn spawn_pruner(&self, every: Duration) -> CancelOnDrop {
        let me = self.clone();
        CancelOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
            loop {
                tick.tick().await;
                match me.prune().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "pruned audit records past the retention"),
                    Err(err) => {
                        tracing::warn!(cause = %error_chain(&err), "failed to prune audit records")
                    }
                }
            }
        }))
    }
}

/// A tiny stand-in for a cancellation token: aborts the task when dropped.
mod tokio_util_free {
    /// Aborts the wrapped task on drop.
    pub struct CancelOnDrop(pub tokio::task::JoinHandle<()>);

    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
}
