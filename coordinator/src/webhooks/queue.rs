//! A bounded queue that drops its oldest entry when full: the dispatcher never waits for a
//! webhook, and a webhook that is down or slow keeps the newest events, not the oldest.
//! One producer (the dispatcher) and one consumer (the webhook's delivery task); the lock is
//! held for a push or a pop only, never across an await.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The shared part.
struct Shared<T> {
    /// The waiting entries, oldest first.
    items: Mutex<VecDeque<T>>,
    /// Wakes the consumer after a push.
    ready: Notify,
    /// Most entries held.
    capacity: usize,
}

/// Both ends of one queue; cheap to clone.
pub struct DropOldest<T>(Arc<Shared<T>>);

impl<T> Clone for DropOldest<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> DropOldest<T> {
    /// An empty queue holding at most `capacity` (at least 1) entries.
    pub fn new(capacity: usize) -> Self {
        Self(Arc::new(Shared {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        }))
    }

    /// Appends `item`; returns the oldest entry when it had to make room.
    pub fn push(&self, item: T) -> Option<T> {
        let dropped = {
            let mut q = self.0.items.lock().unwrap_or_else(|e| e.into_inner());
            let dropped = if q.len() >= self.0.capacity {
                q.pop_front()
            } else {
                None
            };
            q.push_back(item);
            dropped
        };
        self.0.ready.notify_one();
        dropped
    }

    /// The oldest entry, waiting for one. Cancel-safe.
    pub async fn pop(&self) -> T {
        loop {
            if let Some(item) = self.try_pop() {
                return item;
            }
            // notify_one stores a permit when nobody waits, so a push between the check above
            // and this await is not lost.
            self.0.ready.notified().await;
        }
    }

    fn try_pop(&self) -> Option<T> {
        self.0
            .items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.0.items.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_newest_when_full() {
        let q = DropOldest::new(2);
        assert_eq!(q.push(1), None);
        assert_eq!(q.push(2), None);
        assert_eq!(q.push(3), Some(1));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().await, 2);
        assert_eq!(q.pop().await, 3);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn pop_waits_for_a_push() {
        let q = DropOldest::new(4);
        let c = q.clone();
        let waiter = tokio::spawn(async move { c.pop().await });
        tokio::task::yield_now().await;
        q.push("x");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(got, "x");
    }
}
