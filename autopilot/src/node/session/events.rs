//! What the session tells its subscriber: [`ClusterEvent`] (with the [`ClusterSnapshot`]
//! of every (re)connect and every cluster read), and the [`EventSink`] they are delivered
//! through.

use std::sync::Arc;
use std::time::Instant;

use ractor::{ActorRef, Message};
use tokio::sync::mpsc;

pub use cluster::snapshot::{ClusterSnapshot, Observed};
use cluster::store::{LeaseId, WatchEvent};
use cluster::wire::{
    ClusterKey, ClusterKeys, Document, InitializedDoc, LockDoc, MaintenanceDoc, NodeDoc,
    PrimaryDoc, SwitchoverDoc,
};

/// A fact the session reports. Role decisions are made by the subscriber, not here.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterEvent {
    /// The session (re)connected, published the node key and read the whole cluster.
    /// Replaces everything the subscriber knew; changes follow as the events below.
    Resynced(Box<ClusterSnapshot>),
    /// A linearizable read of the whole cluster, as asked for with
    /// [`SessionHandle::read_cluster`](super::SessionHandle::read_cluster).
    Read(Box<ClusterSnapshot>),
    /// The `primary` key was written or deleted (`Absent`: lease expired or revoked).
    PrimaryChanged(Box<Observed<PrimaryDoc>>),
    /// A `nodes/<id>` key was written.
    NodeChanged {
        /// Node id.
        id: String,
        /// The new document.
        doc: Box<Observed<NodeDoc>>,
    },
    /// A `nodes/<id>` key was deleted (its agent's lease expired or was revoked).
    NodeRemoved {
        /// Node id.
        id: String,
    },
    /// The `maintenance` key was written or deleted (`Absent` means off).
    Maintenance(Observed<MaintenanceDoc>),
    /// The `initialized` key was written (or, unexpectedly, deleted).
    Initialized(Observed<InitializedDoc>),
    /// A `switchover` request was written, or deleted (`Absent`: done or withdrawn).
    SwitchoverRequested(Observed<SwitchoverDoc>),
    /// A node request (`requests/<node>`) or a backup request (`backup/requests/<id>`) was
    /// written or deleted: worth a fresh read.
    RequestChanged,
    /// The `lock` key was written or deleted.
    LockChanged(Observed<LockDoc>),
    /// Result of one lease renewal. On `ok: false` a primary must plan to fence itself
    /// before `deadline`.
    KeepAlive {
        /// Whether the renewal succeeded.
        ok: bool,
        /// When the attempt was made.
        at: Instant,
        /// Conservative local expiry of the lease (`None` when there is no lease): the
        /// send time of the last successful renewal plus the TTL it returned.
        deadline: Option<Instant>,
    },
    /// The lease expired (locally past its deadline, or the store said so). Everything
    /// bound to it is gone or about to go; the session grants a new lease and re-puts the
    /// node key, then sends `Resynced`.
    LeaseLost {
        /// The lost lease.
        lease: LeaseId,
    },
    /// The node key is (again) written under `lease`; sent right before every `Resynced`.
    /// Operations bound to this node's lease (claims, conditional deletes) use it.
    Leased {
        /// The lease the node key is bound to.
        lease: LeaseId,
    },
}

impl ClusterEvent {
    /// The event a watched change means, if any (keys the session does not report, like
    /// `state`, `history` and `events/*`, give `None`).
    pub fn from_watch(keys: &ClusterKeys, ev: &WatchEvent) -> Option<Self> {
        let key = keys.parse(ev.key())?;
        let value = match ev {
            WatchEvent::Put { value, .. } => Some(value.as_slice()),
            WatchEvent::Delete { .. } => None,
        };
        fn obs<T: Document>(v: Option<&[u8]>) -> Observed<T> {
            v.map_or(Observed::Absent, Observed::decode)
        }
        Some(match key {
            ClusterKey::Primary => Self::PrimaryChanged(Box::new(obs(value))),
            ClusterKey::Node(id) => match value {
                Some(v) => Self::NodeChanged {
                    id,
                    doc: Box::new(Observed::decode(v)),
                },
                None => Self::NodeRemoved { id },
            },
            ClusterKey::Maintenance => Self::Maintenance(obs(value)),
            ClusterKey::Initialized => Self::Initialized(obs(value)),
            ClusterKey::Switchover => Self::SwitchoverRequested(obs(value)),
            ClusterKey::Lock => Self::LockChanged(obs(value)),
            ClusterKey::Request(_) | ClusterKey::BackupRequest(_) => Self::RequestChanged,
            _ => return None,
        })
    }
}

/// Where the session delivers events: unbounded and in order (unlike ractor's v1
/// `OutputPort`, which drops messages when a subscriber lags).
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(ClusterEvent) + Send + Sync>);

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

impl EventSink {
    /// Calls `f` for every event (must not block).
    pub fn new(f: impl Fn(ClusterEvent) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Casts every event to `actor`, converted with `From`.
    pub fn to_actor<M: Message + From<ClusterEvent>>(actor: ActorRef<M>) -> Self {
        Self::new(move |e| {
            // A stopped subscriber is the supervisor's business, not ours.
            let _ = actor.cast(M::from(e));
        })
    }

    /// A sink feeding an unbounded channel (tests, simple consumers).
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<ClusterEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self::new(move |e| {
                let _ = tx.send(e);
            }),
            rx,
        )
    }

    pub(crate) fn send(&self, e: ClusterEvent) {
        (self.0)(e)
    }
}
