//! [`AppState`]: what every handler shares. Nothing in it matters beyond this process: the
//! token cache and rate-limit buckets are optimisations and limits, the truth is in etcd.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use autopilot::store::EtcdStore;
use autopilot::wire::CoordinatorKeys;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::audit::Auditor;
use crate::auth::store::TokenStore;
use crate::ratelimit::RateLimiter;

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The parts of [`AppState`].
pub struct Inner {
    /// The etcd client.
    pub store: EtcdStore,
    /// Key prefix without a trailing slash.
    pub prefix: String,
    /// `sha256:<hex>` of the bootstrap admin token, if one was configured.
    pub admin_hash: Option<String>,
    /// Token documents.
    pub tokens: TokenStore,
    /// The audit log.
    pub auditor: Auditor,
    /// Per-token request budget.
    pub limiter: RateLimiter,
    /// Bound on answering one request.
    pub request_timeout: Duration,
    /// Renders `/metrics`; `None` when another recorder was installed (tests).
    pub metrics: Option<PrometheusHandle>,
    /// The OpenAPI document as JSON, set once the router is built.
    pub openapi_json: OnceLock<String>,
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
    /// The etcd client.
    pub fn store(&self) -> &EtcdStore {
        &self.0.store
    }
    /// The key prefix (no trailing slash).
    pub fn prefix(&self) -> &str {
        &self.0.prefix
    }
    /// The coordinator's key layout.
    pub fn coordinator_keys(&self) -> CoordinatorKeys {
        CoordinatorKeys::new(&self.0.prefix)
    }
    /// Hash of the admin token.
    pub fn admin_hash(&self) -> Option<&str> {
        self.0.admin_hash.as_deref()
    }
    /// Token documents.
    pub fn tokens(&self) -> &TokenStore {
        &self.0.tokens
    }
    /// The audit log.
    pub fn auditor(&self) -> &Auditor {
        &self.0.auditor
    }
    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.0.limiter
    }
    /// Request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.0.request_timeout
    }
    /// The metrics renderer.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.0.metrics.as_ref()
    }
    /// The OpenAPI JSON.
    pub fn openapi_json(&self) -> &OnceLock<String> {
        &self.0.openapi_json
    }
}
