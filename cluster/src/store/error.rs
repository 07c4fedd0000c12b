//! [`StoreError`]: what went wrong, with the operation as a verb phrase.

use std::time::Duration;

use super::LeaseId;

/// Boxed cause of a store error.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failed store operation. `op` is a verb phrase such as `renew lease 0x1f` or
/// `create key /autopilot/a/b/c/primary`; the cause is in `source()`, not in `Display`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached (connection refused or reset, no leader). Retryable.
    #[error("{op}: etcd unavailable")]
    Unavailable {
        /// What was being done.
        op: String,
        #[source]
        source: Cause,
    },
    /// No answer within the request timeout. Retryable.
    #[error("{op}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        op: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The lease is gone (expired or revoked); keys bound to it were deleted.
    #[error("{op}: lease {lease} expired or revoked")]
    LeaseExpired {
        /// What was being done.
        op: String,
        /// The lease.
        lease: LeaseId,
    },
    /// Authentication failed or the user may not do this.
    #[error("{op}: permission denied")]
    PermissionDenied {
        /// What was being done.
        op: String,
        #[source]
        source: Cause,
    },
    /// Anything else (invalid arguments, a bug, an unexpected answer).
    #[error("{op}: failed")]
    Other {
        /// What was being done.
        op: String,
        #[source]
        source: Cause,
    },
}

impl StoreError {
    /// Whether retrying the same call later can succeed (store down or slow).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    /// The operation, as a verb phrase.
    pub fn op(&self) -> &str {
        match self {
            Self::Unavailable { op, .. }
            | Self::Timeout { op, .. }
            | Self::LeaseExpired { op, .. }
            | Self::PermissionDenied { op, .. }
            | Self::Other { op, .. } => op,
        }
    }

    /// A low-cardinality label for metrics.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::LeaseExpired { .. } => "lease_expired",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::Other { .. } => "error",
        }
    }
}
