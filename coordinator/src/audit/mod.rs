//! The audit log: one document per mutating or denied API call under
//! `<prefix>/_coordinator/audit/<ms>-<random>`, so keys sort by time and any coordinator can
//! read them. Records older than the retention are deleted by a range delete that every
//! coordinator runs periodically (idempotent, so several coordinators do not conflict).
//!
//! Bounded: a record's target, detail and token id are truncated ([`MAX_TARGET_CHARS`],
//! [`MAX_DETAIL_CHARS`]), and refusals pass [`denials::Denials`], which writes at most two
//! records per client address per window however many requests it sends.

pub mod denials;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cluster::store::{EtcdStore, RangeQuery, Store, StoreError};
use cluster::wire::{self, AuditDoc, AuditOutcome, CoordinatorKeys, Timestamp, TokenRole};
pub use tokio_util_free::CancelOnDrop;

use crate::auth::Caller;
use crate::auth::token::hex;

use self::denials::Denials;

/// Longest target kept in a record (a request path can be many kilobytes).
pub const MAX_TARGET_CHARS: usize = 200;
/// Longest detail kept in a record.
pub const MAX_DETAIL_CHARS: usize = 1000;
/// Longest token id kept (ids are 16 hex digits; anything longer was made up by a client).
const MAX_TOKEN_ID_CHARS: usize = 32;

/// `s` cut to `max` characters, marked with `…` when cut.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}

/// Writes and reads audit records.
#[derive(Clone)]
pub struct Auditor {
    /// The etcd client.
    store: EtcdStore,
    /// Where the records live.
    keys: CoordinatorKeys,
    /// How long records are kept.
    retention: Duration,
    /// Refusals waiting to be aggregated, per client address.
    denials: Arc<Denials>,
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
    /// Repeated refusals are aggregated over `denial_window` (zero: each one is written).
    pub fn new(
        store: EtcdStore,
        keys: CoordinatorKeys,
        retention: Duration,
        denial_window: Duration,
    ) -> Self {
        Self {
            store,
            keys,
            retention,
            denials: Arc::new(Denials::new(denial_window)),
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
        let doc = Self::doc(&e, outcome, status, code, detail);
        if outcome == AuditOutcome::Denied {
            match self.denials.offer(e.client.ip(), doc) {
                Some(first) => self.write(first).await,
                None => {
                    metrics::counter!("autopilot_coordinator_audit_aggregated_total").increment(1)
                }
            }
        } else {
            self.write(doc).await;
        }
    }

    /// Counts a refusal that was answered before anything was looked up (a throttled
    /// client): it reaches the log only inside its address's aggregate.
    pub fn count_throttled(&self, e: Entry<'_>, status: u16, code: &str) {
        let doc = Self::doc(
            &e,
            AuditOutcome::Denied,
            status,
            Some(code.to_owned()),
            None,
        );
        let first = self.denials.offer(e.client.ip(), doc);
        // The first refusal of a window was offered by the request that spent the budget;
        // a throttled one opening a window is counted into the next aggregate instead.
        if let Some(doc) = first {
            let _ = self.denials.offer(e.client.ip(), doc);
        }
    }

    fn doc(
        e: &Entry<'_>,
        outcome: AuditOutcome,
        status: u16,
        code: Option<String>,
        detail: Option<String>,
    ) -> AuditDoc {
        let (token_id, role) = match (e.caller, &e.token) {
            (Some(c), _) => (Some(c.id.clone()), Some(c.role)),
            (None, Some((id, role))) => (Some(id.clone()), *role),
            (None, None) => (None, None),
        };
        AuditDoc {
            schema: wire::SCHEMA_VERSION,
            time: Timestamp::now(),
            token_id: token_id.map(|t| bounded(&t, MAX_TOKEN_ID_CHARS)),
            role,
            action: bounded(e.action, 64),
            target: bounded(e.target, MAX_TARGET_CHARS),
            outcome,
            status,
            code,
            client: e.client.to_string(),
            detail: detail.map(|d| bounded(&d, MAX_DETAIL_CHARS)),
            repeats: None,
        }
    }

    async fn write(&self, doc: AuditDoc) {
        let mut suffix = [0u8; 6];
        if getrandom::fill(&mut suffix).is_err() {
            suffix = [0; 6];
        }
        let key = self
            .keys
            .audit(&CoordinatorKeys::audit_id(doc.time, &hex(&suffix)));
        if let Err(err) = self.store.put(&key, wire::encode(&doc), None).await {
            metrics::counter!("autopilot_coordinator_audit_write_failures_total").increment(1);
            tracing::error!(cause = %crate::problem::store_cause(&err), action = %doc.action, "failed to write an audit record");
        }
    }

    /// Writes the aggregates of refusal windows that ended, every `every`, until the
    /// returned guard is dropped.
    pub fn spawn_aggregator(&self, every: Duration) -> CancelOnDrop {
        let me = self.clone();
        CancelOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                for doc in me.denials.flush() {
                    me.write(doc).await;
                }
            }
        }))
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
                        tracing::warn!(cause = %crate::problem::store_cause(&err), "failed to prune audit records")
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
