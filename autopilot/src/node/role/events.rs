//! The agent's event writer: puts `events/<id>` keys bound to a long-lived *event lease*, so
//! an event outlives the node lease of the agent that wrote it (a fenced primary's last
//! words stay readable after its node key is gone).
//!
//! One task owns the event lease and writes events in order. The lease is never kept alive:
//! it is granted with [`EVENT_RETENTION`] and replaced once half of that has passed, so every
//! event stays between half of and the full retention, then etcd deletes it. An etcd outage
//! queues up to [`QUEUE`] events; beyond that new events are dropped with a warning (they are
//! in the agent's log either way).

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use cluster::store::{EtcdStore, LeaseId, Store, StoreError};

/// How long events are kept at most; at least half of it.
pub const EVENT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Events waiting for etcd.
const QUEUE: usize = 256;
/// How often a write is retried while etcd is unreachable, and how many times.
const RETRY_EVERY: Duration = Duration::from_secs(1);
const RETRIES: u32 = 30;

/// Sends events to the writer task; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventWriter {
    tx: mpsc::Sender<(String, Vec<u8>)>,
}

impl EventWriter {
    /// Start the writer task over `store`.
    pub fn spawn(store: Arc<EtcdStore>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx));
        EventWriter { tx }
    }

    /// Queue `value` for `key`; never waits.
    pub fn publish(&self, key: String, value: Vec<u8>) {
        if self.tx.try_send((key, value)).is_err() {
            counter!("autopilot_events_dropped_total").increment(1);
            warn!("the event queue is full (etcd unreachable?); event kept in the log only");
        }
    }
}

async fn run(store: Arc<EtcdStore>, mut rx: mpsc::Receiver<(String, Vec<u8>)>) {
    let mut lease: Option<(LeaseId, Instant)> = None;
    while let Some((key, value)) = rx.recv().await {
        for attempt in 0..=RETRIES {
            match write(&*store, &mut lease, &key, &value).await {
                Ok(()) => break,
                Err(e) => {
                    if matches!(e, StoreError::LeaseExpired { .. }) {
                        lease = None;
                    }
                    if attempt == RETRIES {
                        counter!("autopilot_events_dropped_total").increment(1);
                        warn!(%key, cause = %handlers::error_chain(&e), "failed to write an event; giving up on it");
                    } else {
                        tokio::time::sleep(RETRY_EVERY).await;
                    }
                }
            }
        }
    }
}

/// Put one event under a fresh-enough event lease.
async fn write<S: Store>(
    store: &S,
    lease: &mut Option<(LeaseId, Instant)>,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    let current = match *lease {
        Some((id, granted)) if granted.elapsed() < EVENT_RETENTION / 2 => id,
        _ => {
            let id = store.grant_lease(EVENT_RETENTION).await?;
            *lease = Some((id, Instant::now()));
            id
        }
    };
    store
        .put(key, value.to_vec(), Some(current))
        .await
        .map(|_| ())
}
