//! The etcd session actor: one per node, the only holder of the node's lease.
//!
//! It grants the lease and renews it every TTL/3, keeps `nodes/<id>` written under the
//! lease with the latest [`NodeDoc`], lists and watches the cluster prefix and reports every
//! change as a typed [`ClusterEvent`] to one [`EventSink`]. It makes no role decision: it
//! reports facts. Its users talk to it through a [`SessionHandle`], which sees the lease
//! the session holds and runs the lease-bound operations with it, and whose cluster reads
//! the session's reader task carries out.
//!
//! Connection loss: a failed renewal is reported at once (`KeepAlive { ok: false }`) and the
//! session reconnects with capped exponential backoff. On reconnect it puts the node key,
//! re-lists (`Resynced`) and watches from the next revision. The lease is considered lost
//! locally once its deadline (last successful renewal's send time + TTL) has passed, even if
//! etcd would still honour it after a restart: then `LeaseLost` is reported first, the old
//! lease is revoked (so a primary key bound to it cannot linger) and a new one granted.
//!
//! Store calls are awaited inside the handler; each is bounded by the store's request
//! timeout (≤ 1 s), so the mailbox is never blocked for longer than that.

mod backoff;
mod events;
mod handle;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::error_chain;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use events::{ClusterEvent, ClusterSnapshot, EventSink, Observed};
pub use handle::{Lease, PrimaryClaim, SessionHandle};

use self::backoff::Backoff;
use cluster::store::{LeaseId, Store, StoreError, WatchMessage};
use cluster::wire::{self, ClusterKeys, NodeDoc, Timestamp};

/// What the session needs to start.
pub struct SessionArgs<S> {
    /// The store (shared with nobody that holds leases).
    pub store: Arc<S>,
    /// Key layout of this node's cluster.
    pub keys: ClusterKeys,
    /// This node's id (`nodes/<id>`).
    pub node_id: String,
    /// Lease TTL; renewals every TTL/3.
    pub ttl: Duration,
    /// The node document to publish until the first [`SessionMsg::UpdateNode`].
    pub node: NodeDoc,
    /// Where events go.
    pub sink: EventSink,
    /// The lease the agent's previous image held (in-place upgrade), with its known
    /// deadline: renewed instead of granting one; the keys bound to it but for the node's
    /// and the `primary` key are released (the previous image's locks).
    pub inherit: Option<(LeaseId, Instant)>,
}

/// What the handle shares with the actor: the lease it publishes, the reads it is asked for.
struct Internals {
    lease: watch::Sender<Lease>,
    reads: Arc<Notify>,
}

/// Messages of the session actor (through [`SessionHandle`]).
enum SessionMsg {
    /// Publish a new node document (`id`, `last_updated` and `ttlseconds` are filled in).
    UpdateNode(Box<NodeDoc>),
    /// Revoke the lease at once (graceful hand-over): deletes the node key and every key
    /// this node claimed. The session then stays without a lease until stopped.
    Resign(RpcReplyPort<Result<(), StoreError>>),
    /// Internal: (re)establish lease, node key, snapshot and watch.
    Connect,
    /// Internal: renew the lease.
    Tick,
    /// Internal: a message from watch number `generation`.
    Watch {
        /// Which watch it came from; stale ones are ignored.
        generation: u64,
        /// The message.
        msg: WatchMessage,
    },
}

/// The actor (stateless; see [`SessionState`]).
struct SessionActor<S>(std::marker::PhantomData<fn() -> S>);

impl<S> Default for SessionActor<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

/// State owned by the session actor.
struct SessionState<S> {
    /// The store.
    store: Arc<S>,
    /// Key layout.
    keys: ClusterKeys,
    /// This node's id.
    node_id: String,
    /// Lease TTL.
    ttl: Duration,
    /// Latest node document.
    node: NodeDoc,
    /// Event destination.
    sink: EventSink,
    /// The current lease, if any.
    lease: Option<LeaseId>,
    /// Local conservative expiry of `lease`.
    deadline: Option<Instant>,
    /// Leases given up locally but maybe still alive in etcd; revoked on reconnect.
    stale_leases: Vec<LeaseId>,
    /// Node key written, snapshot sent, watch running.
    live: bool,
    /// A `Connect` is scheduled.
    connect_scheduled: bool,
    /// `Resign` was called: do not grant again.
    resigned: bool,
    /// Current watch generation.
    generation: u64,
    /// `members/<id>` written since the agent started.
    member_written: bool,
    /// Reader forwarding the current watch into the mailbox.
    watch_task: Option<JoinHandle<()>>,
    /// The lease was inherited and what its previous holder held is not released yet.
    release_inherited: bool,
    /// Periodic `Tick`.
    ticker: Option<JoinHandle<()>>,
    /// Reconnect delays.
    backoff: Backoff,
    /// The lease as the handles see it.
    published: watch::Sender<Lease>,
    /// Carries out the handles' cluster reads.
    reader: JoinHandle<()>,
}

impl<S: Store> SessionState<S> {
    fn emit(&self, e: ClusterEvent) {
        self.sink.send(e);
    }

    /// Tells the handles what the lease is now.
    fn publish_lease(&self, synced: bool) {
        let current = self.lease.zip(self.deadline);
        self.published.send_if_modified(|l| {
            let new = Lease { current, synced };
            std::mem::replace(l, new) != new
        });
    }

    fn schedule_connect(&mut self, myself: &ActorRef<SessionMsg>) {
        if self.connect_scheduled || self.resigned {
            return;
        }
        self.connect_scheduled = true;
        let d = self.backoff.next_delay();
        debug!(delay = ?d, "reconnect scheduled");
        myself.send_after(d, || SessionMsg::Connect);
    }

    fn drop_watch(&mut self) {
        self.live = false;
        self.generation += 1;
        if let Some(t) = self.watch_task.take() {
            t.abort();
        }
    }

    /// Gives up the lease locally: reports `LeaseLost` and remembers it for revocation.
    fn lose_lease(&mut self) {
        self.release_inherited = false;
        if let Some(lease) = self.lease.take() {
            warn!(lease = %lease_hex(Some(lease)), "lease lost");
            self.deadline = None;
            self.publish_lease(false);
            self.stale_leases.push(lease);
            self.drop_watch();
            self.emit(ClusterEvent::LeaseLost { lease });
        }
    }

    fn node_bytes(&mut self) -> Vec<u8> {
        self.node.id.clone_from(&self.node_id);
        self.node.last_updated = Timestamp::now();
        self.node.ttlseconds = self.ttl.as_secs();
        wire::encode(&self.node)
    }

    async fn tick(&mut self, myself: &ActorRef<SessionMsg>) {
        let Some(lease) = self.lease else { return };
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) {
            self.lose_lease();
            self.schedule_connect(myself);
            return;
        }
        match self.store.keep_alive_once(lease).await {
            Ok(ttl) => {
                self.deadline = Some(now + ttl);
                let synced = self.published.borrow().synced; // the guard ends here
                self.publish_lease(synced);
                self.emit(ClusterEvent::KeepAlive {
                    ok: true,
                    at: now,
                    deadline: self.deadline,
                });
            }
            Err(e) => {
                metrics::counter!("autopilot_lease_keepalive_failures_total").increment(1);
                warn!(error = %error_chain(&e), "failed to renew lease");
                self.emit(ClusterEvent::KeepAlive {
                    ok: false,
                    at: now,
                    deadline: self.deadline,
                });
                if matches!(e, StoreError::LeaseExpired { .. }) {
                    self.lose_lease();
                } else if let Some(d) = self.deadline {
                    // Check again exactly at the deadline, not up to TTL/3 later.
                    myself.send_after(d.saturating_duration_since(Instant::now()), || {
                        SessionMsg::Tick
                    });
                }
                self.drop_watch();
                self.schedule_connect(myself);
            }
        }
    }

    async fn connect(&mut self, myself: &ActorRef<SessionMsg>) {
        self.connect_scheduled = false;
        if self.live || self.resigned {
            return;
        }
        match self.establish(myself).await {
            Ok(()) => {
                self.backoff.reset();
                info!(lease = %lease_hex(self.lease), "store session established");
            }
            Err(e) => {
                if matches!(e, StoreError::LeaseExpired { .. }) {
                    self.lose_lease();
                }
                warn!(error = %error_chain(&e), "failed to establish store session");
                self.drop_watch();
                self.schedule_connect(myself);
            }
        }
    }

    async fn establish(&mut self, myself: &ActorRef<SessionMsg>) -> Result<(), StoreError> {
        // The lease, renewed or new.
        if let Some(lease) = self.lease {
            let sent = Instant::now();
            if self.deadline.is_some_and(|d| sent >= d) {
                self.lose_lease();
            } else {
                let ttl = self.store.keep_alive_once(lease).await?;
                self.deadline = Some(sent + ttl);
            }
        }
        if self.release_inherited
            && let Some(lease) = self.lease
        {
            self.release_inherited_keys(lease).await?;
        }
        while let Some(old) = self.stale_leases.last().copied() {
            self.store.revoke(old).await?;
            self.stale_leases.pop();
        }
        let lease = match self.lease {
            Some(l) => l,
            None => {
                let sent = Instant::now();
                let l = self.store.grant_lease(self.ttl).await?;
                self.lease = Some(l);
                self.deadline = Some(sent + self.ttl);
                self.publish_lease(false);
                info!(lease = %lease_hex(Some(l)), ttl = ?self.ttl, "lease granted");
                l
            }
        };
        let key = self.keys.node(&self.node_id);
        let bytes = self.node_bytes();
        self.store.put(&key, bytes, Some(lease)).await?;
        if !self.member_written {
            // Bound to no lease: the member stays listed (as stopped) while its agent is down,
            // until an operator removes it.
            let member = wire::MemberDoc {
                schema: wire::SCHEMA_VERSION,
                id: self.node_id.clone(),
                name: self.node.name.clone(),
                hostname: self.node.hostname.clone(),
                ip_address: self.node.ip_address.clone(),
                port: self.node.port,
                agent_url: self.node.agent_url.clone(),
                started: Timestamp::now(),
            };
            let key = self.keys.member(&self.node_id);
            self.store.put(&key, wire::encode(&member), None).await?;
            self.member_written = true;
        }
        let prefix = self.keys.cluster_prefix();
        let (entries, revision) = self.store.get_prefix(&prefix).await?;
        let mut watch = self.store.watch_prefix(&prefix, revision + 1).await?;
        self.drop_watch();
        let generation = self.generation;
        let me = myself.clone();
        self.watch_task = Some(tokio::spawn(async move {
            loop {
                let msg = watch.next().await;
                let last = matches!(msg, WatchMessage::Broken(_));
                if me.cast(SessionMsg::Watch { generation, msg }).is_err() || last {
                    return;
                }
            }
        }));
        self.live = true;
        let snap = ClusterSnapshot::from_entries(&self.keys, &entries, revision);
        self.publish_lease(true);
        self.emit(ClusterEvent::Leased { lease });
        self.emit(ClusterEvent::Resynced(Box::new(snap)));
        Ok(())
    }

    async fn on_watch(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        generation: u64,
        msg: WatchMessage,
    ) {
        if generation != self.generation || !self.live {
            return;
        }
        match msg {
            WatchMessage::Events(events) => {
                for ev in &events {
                    if let Some(e) = ClusterEvent::from_watch(&self.keys, ev) {
                        self.emit(e);
                    }
                }
            }
            WatchMessage::Broken(why) => {
                warn!(cause = %watch_broken(&why), "cluster watch broke; re-listing");
                self.drop_watch();
                self.schedule_connect(myself);
            }
        }
    }

    /// Release what the agent's previous image held under the inherited lease (backup and
    /// archive locks it can no longer carry on), keeping the node's key and the `primary`
    /// key: those this image takes over.
    async fn release_inherited_keys(&mut self, lease: LeaseId) -> Result<(), StoreError> {
        let keep = [self.keys.node(&self.node_id), self.keys.primary()];
        for key in self.store.lease_keys(lease).await? {
            if keep.contains(&key) {
                continue;
            }
            if self.store.delete_if_lease(&key, lease).await? {
                info!(%key, "released a key the agent's previous image held");
            }
        }
        self.release_inherited = false;
        Ok(())
    }

    async fn update_node(&mut self, myself: &ActorRef<SessionMsg>, doc: NodeDoc) {
        self.node = doc;
        let (Some(lease), true) = (self.lease, self.live) else {
            // Written on the next (re)connect.
            return;
        };
        let key = self.keys.node(&self.node_id);
        let bytes = self.node_bytes();
        if let Err(e) = self.store.put(&key, bytes, Some(lease)).await {
            warn!(error = %error_chain(&e), "failed to publish node document");
            if matches!(e, StoreError::LeaseExpired { .. }) {
                self.lose_lease();
            }
            self.drop_watch();
            self.schedule_connect(myself);
        }
    }

    async fn resign(&mut self) -> Result<(), StoreError> {
        self.resigned = true;
        self.drop_watch();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(lease) = self.lease.take() {
            self.deadline = None;
            self.publish_lease(false);
            self.store.revoke(lease).await?;
            debug!(lease = %lease_hex(Some(lease)), "lease revoked");
        }
        Ok(())
    }
}

impl<S: Store> Actor for SessionActor<S> {
    type Msg = SessionMsg;
    type State = SessionState<S>;
    type Arguments = (SessionArgs<S>, Internals);

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        (args, internals): (SessionArgs<S>, Internals),
    ) -> Result<Self::State, ActorProcessingErr> {
        ClusterKeys::check_node_id(&args.node_id)?;
        let (lease, deadline) = match args.inherit {
            Some((lease, deadline)) => {
                info!(lease = %lease_hex(Some(lease)), "taking over the lease of the agent's previous image");
                (Some(lease), Some(deadline))
            }
            None => (None, None),
        };
        let period = (args.ttl / 3).max(Duration::from_millis(100));
        let cap = period.clamp(Duration::from_millis(100), Duration::from_secs(2));
        let ticker = myself.send_interval(period, || SessionMsg::Tick);
        myself.cast(SessionMsg::Connect)?;
        let reader = tokio::spawn(read_on_request(
            Arc::clone(&args.store),
            args.keys.clone(),
            args.sink.clone(),
            internals.reads,
        ));
        Ok(SessionState {
            store: args.store,
            keys: args.keys,
            node_id: args.node_id,
            ttl: args.ttl,
            node: args.node,
            sink: args.sink,
            lease,
            deadline,
            release_inherited: lease.is_some(),
            stale_leases: Vec::new(),
            live: false,
            connect_scheduled: true,
            resigned: false,
            generation: 0,
            watch_task: None,
            member_written: false,
            ticker: Some(ticker),
            backoff: Backoff::new(Duration::from_millis(50), cap),
            published: internals.lease,
            reader,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        st: &mut SessionState<S>,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Connect => st.connect(&myself).await,
            SessionMsg::Tick => st.tick(&myself).await,
            SessionMsg::Watch { generation, msg } => st.on_watch(&myself, generation, msg).await,
            SessionMsg::UpdateNode(doc) => st.update_node(&myself, *doc).await,
            SessionMsg::Resign(reply) => {
                let r = st.resign().await;
                let _ = reply.send(r);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        st: &mut SessionState<S>,
    ) -> Result<(), ActorProcessingErr> {
        st.drop_watch();
        if let Some(t) = st.ticker.take() {
            t.abort();
        }
        st.reader.abort();
        st.published.send_replace(Lease::default());
        Ok(())
    }
}

/// The reader task: one linearizable read of the cluster prefix per wake-up (requests made
/// during a read wake it once more), reported as [`ClusterEvent::Read`]. A failed read is
/// logged; the next change or poll asks again.
async fn read_on_request<S: Store>(
    store: Arc<S>,
    keys: ClusterKeys,
    sink: EventSink,
    reads: Arc<Notify>,
) {
    let prefix = keys.cluster_prefix();
    loop {
        reads.notified().await;
        match store.get_prefix(&prefix).await {
            Ok((entries, revision)) => sink.send(ClusterEvent::Read(Box::new(
                ClusterSnapshot::from_entries(&keys, &entries, revision),
            ))),
            Err(e) => warn!(cause = %error_chain(&e), "failed to read the cluster"),
        }
    }
}

/// A lease id for the log, in hex as `etcdctl lease list` prints it (`-` for none).
fn lease_hex(lease: Option<LeaseId>) -> String {
    lease.map_or_else(|| "-".to_owned(), |l| format!("{:x}", l.0))
}

/// Why a watch broke, in words.
fn watch_broken(why: &cluster::store::WatchBroken) -> String {
    use cluster::store::WatchBroken;
    match why {
        WatchBroken::Compacted { compact_revision } => {
            format!("revisions up to {compact_revision} were compacted away")
        }
        WatchBroken::Cancelled { reason } => format!("cancelled by etcd: {reason}"),
        WatchBroken::Failed(e) => error_chain(e),
        WatchBroken::Closed => "the stream ended".to_owned(),
    }
}
