//! [`SessionHandle`]: the role actor's one way to etcd.
//!
//! The session actor holds the lease; the handle sees it through a watch channel
//! ([`Lease`]) and runs the lease-bound operations (claims, releases, the primary's status)
//! with the lease the session holds at that moment, so no caller keeps a copy of a lease id
//! that could be stale. Reads are linearizable and coalesced: asking while one runs gives
//! exactly one more after it, delivered as [`ClusterEvent::Read`] through the session's sink.
//!
//! Operations run on the caller's task, not in the session's mailbox: a slow etcd delays
//! the caller, never the session's renewals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::sync::{Notify, watch};

use super::{SessionActor, SessionArgs, SessionMsg};
use cluster::store::{Claim, LeaseId, Store, StoreError};
use cluster::wire::{
    self, ClusterKey, ClusterKeys, ClusterStateDoc, HistoryDoc, InitializedDoc, LockDoc, NodeDoc,
    PrimaryDoc,
};

/// The session's lease as the handle sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The lease and its conservative local expiry (last renewal's send time + TTL).
    pub current: Option<(LeaseId, Instant)>,
    /// The node key is written under `current` and the cluster was listed since.
    pub synced: bool,
}

impl Lease {
    /// The lease, if it has not expired locally.
    pub fn live(&self) -> Option<LeaseId> {
        self.current
            .filter(|&(_, deadline)| Instant::now() < deadline)
            .map(|(id, _)| id)
    }
}

/// A primary claim: the documents to write in one transaction (see [`Claim`]).
pub struct PrimaryClaim {
    /// The new `primary` document; its `lease` is filled in with the session's.
    pub primary: PrimaryDoc,
    /// The whole new `history`.
    pub history: HistoryDoc,
    /// `history`'s mod revision as read before the claim (`None`: no check).
    pub history_revision: Option<u64>,
    /// Bootstrap only: `initialized`, which must be absent and is written too.
    pub initialized: Option<InitializedDoc>,
}

/// Cheap to clone; every clone talks to the same session.
pub struct SessionHandle<S> {
    actor: ActorRef<SessionMsg>,
    store: Arc<S>,
    keys: ClusterKeys,
    lease: watch::Receiver<Lease>,
    reads: Arc<Notify>,
}

impl<S> Clone for SessionHandle<S> {
    fn clone(&self) -> Self {
        Self {
            actor: self.actor.clone(),
            store: Arc::clone(&self.store),
            keys: self.keys.clone(),
            lease: self.lease.clone(),
            reads: Arc::clone(&self.reads),
        }
    }
}

impl<S: Store> SessionHandle<S> {
    /// Starts the session actor, linked to `supervisor`, and returns its handle.
    pub async fn spawn(
        args: SessionArgs<S>,
        supervisor: ActorCell,
    ) -> Result<Self, ActorProcessingErr> {
        let (lease_tx, lease) = watch::channel(Lease::default());
        let reads = Arc::new(Notify::new());
        let store = Arc::clone(&args.store);
        let keys = args.keys.clone();
        let internals = super::Internals {
            lease: lease_tx,
            reads: Arc::clone(&reads),
        };
        let (actor, _) = Actor::spawn_linked(
            None,
            SessionActor::<S>::default(),
            (args, internals),
            supervisor,
        )
        .await?;
        Ok(Self {
            actor,
            store,
            keys,
            lease,
            reads,
        })
    }

    /// The session's lease now.
    pub fn lease(&self) -> Lease {
        *self.lease.borrow()
    }

    /// The lease for a lease-bound operation `op`, or why there is none.
    fn live_lease(&self, op: &str) -> Result<LeaseId, StoreError> {
        self.lease().live().ok_or_else(|| StoreError::Other {
            op: op.to_owned(),
            source: "the session holds no live lease".into(),
        })
    }

    /// Waits until the node key is written under a live lease and the cluster was listed
    /// (at once if it is so now). Returns `false` if the session stopped.
    pub async fn synced(&self) -> bool {
        let mut rx = self.lease.clone();
        rx.wait_for(|l| l.synced).await.is_ok()
    }

    /// Asks for a linearizable read of the whole cluster, delivered as
    /// [`ClusterEvent::Read`](super::ClusterEvent::Read). Requests made while a read runs
    /// are answered by one more read after it.
    pub fn read_cluster(&self) {
        self.reads.notify_one();
    }

    /// Publishes a new node document (written under the lease; on reconnect too).
    pub fn update_node(&self, doc: NodeDoc) {
        let _ = self.actor.cast(SessionMsg::UpdateNode(Box::new(doc)));
    }

    /// Takes the bootstrap `lock` (created iff absent, bound to the lease); `true` when
    /// this node holds it now.
    pub async fn claim_lock(&self, doc: &LockDoc) -> Result<bool, StoreError> {
        let key = self.keys.lock();
        let lease = self.live_lease(&format!("create key {key}"))?;
        self.store
            .create_if_absent(&key, wire::encode(doc), Some(lease))
            .await
    }

    /// Claims `primary` and appends to `history` in one transaction, under the lease.
    pub async fn claim_primary(&self, claim: PrimaryClaim) -> Result<bool, StoreError> {
        let PrimaryClaim {
            mut primary,
            history,
            history_revision,
            initialized,
        } = claim;
        let lease = self.live_lease("claim the primary key")?;
        primary.lease = wire::lease_hex(lease.0);
        self.store
            .claim_primary(Claim {
                primary_key: self.keys.primary(),
                primary_value: wire::encode(&primary),
                lease,
                history_key: self.keys.history(),
                expected_history_revision: history_revision
                    .map(|r| i64::try_from(r).unwrap_or(i64::MAX)),
                history_value: wire::encode(&history),
                initialized: initialized.map(|doc| (self.keys.initialized(), wire::encode(&doc))),
            })
            .await
    }

    /// Rewrites `primary` iff it is bound to the lease; `false` when it is not ours.
    pub async fn update_primary(&self, mut doc: PrimaryDoc) -> Result<bool, StoreError> {
        let lease = self.live_lease("update the primary key")?;
        doc.lease = wire::lease_hex(lease.0);
        self.store
            .put_if_lease(&self.keys.primary(), wire::encode(&doc), lease)
            .await
    }

    /// Writes the cluster's `state` document iff the `primary` key is still bound to our
    /// lease (the key itself outlives the lease: the next primary rewrites it).
    pub async fn update_state(&self, doc: &ClusterStateDoc) -> Result<bool, StoreError> {
        let lease = self.live_lease("write the cluster state")?;
        self.store
            .put_if_holder(
                &self.keys.primary(),
                &self.keys.state(),
                wire::encode(doc),
                lease,
            )
            .await
    }

    /// Deletes `key` iff bound to the lease (the `lock` or `primary` key we hold).
    pub async fn release(&self, key: &ClusterKey) -> Result<bool, StoreError> {
        let full = self.keys.key(key);
        let Some(lease) = self.lease().current.map(|(id, _)| id) else {
            return Ok(false); // nothing can be bound to a lease we do not have
        };
        self.store.delete_if_lease(&full, lease).await
    }

    /// Deletes the `switchover` request (carried out, or impossible).
    pub async fn clear_switchover(&self) -> Result<bool, StoreError> {
        self.store.delete(&self.keys.switchover()).await
    }

    /// Rewrites `initialized` with `change` iff we hold the `primary` key (`live_lease`'s
    /// `op`); whether it now says what `change` wants (`change` returns `false` when it does
    /// already).
    async fn rewrite_initialized(
        &self,
        op: &'static str,
        change: impl FnOnce(&mut InitializedDoc) -> bool,
    ) -> Result<bool, StoreError> {
        let lease = self.live_lease(op)?;
        let key = self.keys.initialized();
        let Some(mut doc) = self
            .store
            .get(&key)
            .await?
            .and_then(|(bytes, _)| wire::decode::<InitializedDoc>(&bytes).ok())
        else {
            return Ok(false);
        };
        if !change(&mut doc) {
            return Ok(true);
        }
        self.store
            .put_if_holder(&self.keys.primary(), &key, wire::encode(&doc), lease)
            .await
    }

    /// Records in `initialized` that the cluster's identity is in `term` now, iff we hold the
    /// `primary` key; then ends a maintenance that a restore request began (its reason starts
    /// with `restore`). Whether the term was recorded.
    pub async fn begin_term(&self, term: u64, reason: &str) -> Result<bool, StoreError> {
        let recorded = self
            .rewrite_initialized("record a new term", |doc| {
                doc.term = term;
                doc.term_since = Some(wire::Timestamp::now());
                doc.term_reason = Some(reason.to_owned());
                true
            })
            .await?;
        if !recorded {
            return Ok(false);
        }
        let maintenance = self.keys.maintenance();
        if let Some((bytes, _)) = self.store.get(&maintenance).await?
            && wire::decode::<wire::MaintenanceDoc>(&bytes)
                .ok()
                .and_then(|m| m.reason)
                .is_some_and(|r| r.starts_with("restore"))
        {
            self.store.delete(&maintenance).await?;
        }
        Ok(true)
    }

    /// Ends a live migration in `initialized` (removes `standby_of`) iff we hold the
    /// `primary` key. Whether it did.
    pub async fn end_migration(&self) -> Result<bool, StoreError> {
        self.rewrite_initialized("end the migration", |doc| doc.standby_of.take().is_some())
            .await
    }

    /// Deletes this node's `requests/<id>` (an operator's request, carried out or refused).
    pub async fn clear_request(&self, node_id: &str) -> Result<bool, StoreError> {
        self.store.delete(&self.keys.request(node_id)).await
    }

    /// Another node's document, if it has one.
    pub async fn node(&self, id: &str) -> Result<Option<NodeDoc>, StoreError> {
        let key = self.keys.node(id);
        Ok(self
            .store
            .get(&key)
            .await?
            .and_then(|(bytes, _)| wire::decode::<NodeDoc>(&bytes).ok()))
    }

    /// Revokes the lease at once (graceful hand-over); the session then stays without one.
    pub async fn resign(&self, limit: Duration) -> Result<(), StoreError> {
        match self.actor.call(SessionMsg::Resign, Some(limit)).await {
            Ok(CallResult::Success(r)) => r,
            Ok(CallResult::Timeout) => Err(StoreError::Timeout {
                op: "revoke the lease".into(),
                after: limit,
            }),
            Ok(CallResult::SenderError) | Err(_) => Err(StoreError::Other {
                op: "revoke the lease".into(),
                source: "the session stopped".into(),
            }),
        }
    }

    /// Stops the session actor.
    pub fn stop(&self) {
        self.actor.stop(None);
    }
}
