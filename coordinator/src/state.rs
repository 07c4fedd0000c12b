//! [`AppState`]: what every handler shares. Nothing in it matters beyond this process: the
//! token cache, rate-limit buckets, stream slots and the last etcd space reading are
//! optimisations and limits, the truth is in etcd.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cluster::store::EtcdStore;
use cluster::wire::CoordinatorKeys;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::agents::AgentClient;
use crate::audit::Auditor;
use crate::auth::store::TokenStore;
use crate::cluster_gauges;
use crate::etcd_space::EtcdSpace;
use crate::ratelimit::RateLimiter;
use crate::streams::StreamSlots;
use tokio::sync::watch;

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
    /// Per-client-address budget of failed or unauthenticated requests.
    pub failures: RateLimiter,
    /// Caps on event streams.
    pub streams: StreamSlots,
    /// The latest reading of etcd's alarms and size (`None` before the first).
    pub etcd_space: watch::Receiver<Option<EtcdSpace>>,
    /// The latest listing of the clusters, for the per-cluster gauges on `/metrics`.
    pub clusters: watch::Receiver<cluster_gauges::Listing>,
    /// Bound on answering one request.
    pub request_timeout: Duration,
    /// Renders `/metrics`; `None` when another recorder was installed (tests).
    pub metrics: Option<PrometheusHandle>,
    /// The OpenAPI document as JSON, set once the router is built.
    pub openapi_json: OnceLock<String>,
    /// Asks agents' own listeners (`GET …/statements`).
    pub agents: AgentClient,
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
    /// The failure budget per client address.
    pub fn failures(&self) -> &RateLimiter {
        &self.0.failures
    }
    /// The event stream caps.
    pub fn streams(&self) -> &StreamSlots {
        &self.0.streams
    }
    /// The latest reading of etcd's alarms and size.
    pub fn etcd_space(&self) -> Option<EtcdSpace> {
        *self.0.etcd_space.borrow()
    }
    /// The per-cluster gauges in Prometheus text format (empty until etcd was read).
    pub fn cluster_gauges(&self) -> String {
        cluster_gauges::render(&self.0.clusters.borrow())
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
    /// The client of the agents' listeners.
    pub fn agents(&self) -> &AgentClient {
        &self.0.agents
    }
}
