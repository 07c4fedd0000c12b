//! [`Watch`]: a stream of typed changes under a prefix, ending in one [`WatchBroken`].

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Revision, StoreError};

/// One change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or overwritten.
    Put {
        /// Full key.
        key: String,
        /// New value.
        value: Vec<u8>,
        /// Revision of this change.
        mod_revision: Revision,
    },
    /// The key was deleted (explicitly or by lease expiry).
    Delete {
        /// Full key.
        key: String,
        /// Revision of the deletion.
        mod_revision: Revision,
    },
}

impl WatchEvent {
    /// The key changed.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }
    /// The revision of the change.
    pub fn mod_revision(&self) -> Revision {
        match self {
            Self::Put { mod_revision, .. } | Self::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// Why a watch ended. After this the caller re-lists and watches again.
#[derive(Debug)]
pub enum WatchBroken {
    /// The start revision was compacted away; events were missed.
    Compacted {
        /// The oldest revision still available.
        compact_revision: Revision,
    },
    /// The server cancelled the watch (e.g. no leader).
    Cancelled {
        /// The server's reason.
        reason: String,
    },
    /// The connection failed.
    Failed(StoreError),
    /// The stream ended without an error.
    Closed,
}

/// What a [`Watch`] yields.
#[derive(Debug)]
pub enum WatchMessage {
    /// Changes in revision order (one etcd response).
    Events(Vec<WatchEvent>),
    /// The watch is over; every later call yields `Broken(Closed)`.
    Broken(WatchBroken),
}

/// A running watch. Dropping it cancels the background reader.
#[derive(Debug)]
pub struct Watch {
    /// Messages from the reader task.
    rx: mpsc::Receiver<WatchMessage>,
    /// The reader task; aborted on drop.
    task: Option<JoinHandle<()>>,
    /// Set once `Broken` was returned.
    done: bool,
}

impl Watch {
    /// Wraps a channel fed by `task` (which is aborted when the watch is dropped).
    pub fn new(rx: mpsc::Receiver<WatchMessage>, task: Option<JoinHandle<()>>) -> Self {
        Self {
            rx,
            task,
            done: false,
        }
    }

    /// The next message. Cancel-safe.
    pub async fn next(&mut self) -> WatchMessage {
        if self.done {
            return WatchMessage::Broken(WatchBroken::Closed);
        }
        let msg = self
            .rx
            .recv()
            .await
            .unwrap_or(WatchMessage::Broken(WatchBroken::Closed));
        if matches!(msg, WatchMessage::Broken(_)) {
            self.done = true;
        }
        msg
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
