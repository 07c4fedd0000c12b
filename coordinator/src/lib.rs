//! The Autopilot coordinator: an HTTP API ([`api`]) and a CLI ([`ctl`]) over the clusters the
//! agents keep in etcd. It never supervises a process: it reads etcd, writes the requests
//! agents act on (switchover, maintenance), and asks agents' own listeners for what only they
//! can read (top statements, [`agents`]).
//!
//! **Stateless**: everything that matters is in etcd (tokens as hashes, the audit log, the
//! requests). Several coordinators may serve one etcd at once; what a coordinator keeps in
//! memory (a ≤1 s token cache, rate-limit buckets) only limits or speeds up requests.
//!
//! - [`config`]: flags → [`config::Config`].
//! - [`api`]: routes (one file per group), the auth gate, problem extractors.
//! - [`auth`]: token strings and hashes, token documents, scopes.
//! - [`audit`]: the audit log and its retention.
//! - [`cluster`]: reading clusters from etcd.
//! - [`cluster_gauges`]: per-cluster gauges from etcd (`primaries`, `nodes`) for the alert rules.
//! - [`agents`]: the one client of the agents' own listeners (`GET …/statements`).
//! - [`webhooks`]: cluster events as signed CloudEvents to the configured endpoints.
//! - [`problem`]: RFC 9457 errors. [`ratelimit`], [`tls`], [`openapi`].

#![forbid(unsafe_code)]

pub mod agents;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cluster_gauges;
pub mod config;
pub mod ctl;
pub mod etcd_space;
pub mod limits;
pub mod members;
pub mod names;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod rollout;
pub mod state;
pub mod streams;
pub mod tls;
pub mod view;
pub mod webhooks;

use std::future::Future;
use std::net::{SocketAddr, TcpListener};

use crate::streams::StreamSlots;
use std::time::Duration;

use cluster::store::{EtcdOptions, EtcdStore};
use cluster::wire::CoordinatorKeys;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::audit::Auditor;
use crate::auth::store::TokenStore;
use crate::config::Config;
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, Inner};

/// Why the coordinator could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("{0}")]
    Tls(String),
    /// The etcd client could not be built.
    #[error("connect to etcd")]
    Store(#[source] cluster::store::StoreError),
    /// A webhook's HTTP client could not be built.
    #[error("set up the webhooks' HTTP clients")]
    Webhooks(#[source] reqwest::Error),
    /// The HTTP client of the agents' listeners could not be built.
    #[error("set up the HTTP client of the agents (--agent-ca-file)")]
    Agents(#[source] reqwest::Error),
    /// The server failed.
    #[error("serve HTTP")]
    Serve(#[source] std::io::Error),
}

/// How long in-flight requests may finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves the API until `shutdown` completes, then drains for up to 10 s. Prints
/// `listening on <url>` on stdout once bound (tests and scripts read the port from it).
pub async fn serve(
    cfg: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    tls::install_provider();
    let mut opts = EtcdOptions::new(cfg.etcd_endpoints.clone());
    opts.tls = cfg.etcd_tls.clone();
    opts.request_timeout = Duration::from_secs(2);
    let store = EtcdStore::connect(&opts).await.map_err(ServeError::Store)?;
    warn_at_start(&cfg, &store);
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(webhooks::deliver::DURATION.into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )
        .and_then(|b| b.install_recorder())
        .ok();
    if let Some(h) = metrics.clone() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                h.run_upkeep();
            }
        });
    }
    listen::raise_open_file_limit();
    let keys = CoordinatorKeys::new(&cfg.prefix);
    let limits = cfg.limits;
    let auditor = Auditor::new(
        store.clone(),
        keys.clone(),
        cfg.audit_retention,
        limits.audit_denial_window,
    );
    let (etcd_space, _sampler) =
        etcd_space::spawn_sampler(store.clone(), limits.etcd_quota_bytes, SPACE_EVERY);
    let (clusters_tx, clusters) = cluster_gauges::channel();
    let agents = agents::AgentClient::new(cfg.agent_ca.as_ref(), cfg.agent_timeout)
        .map_err(ServeError::Agents)?;
    let state = AppState::new(Inner {
        store: store.clone(),
        prefix: cfg.prefix.clone(),
        admin_hash: cfg
            .admin_token
            .as_ref()
            .map(|t| auth::token::hash(t.expose())),
        tokens: TokenStore::new(store.clone(), keys, cfg.token_cache),
        auditor: auditor.clone(),
        limiter: RateLimiter::new(cfg.rate_limit, cfg.rate_burst),
        failures: RateLimiter::new(limits.failure_rate, limits.failure_burst),
        streams: StreamSlots::new(limits.streams, limits.streams_per_token),
        etcd_space,
        clusters,
        request_timeout: cfg.request_timeout,
        metrics,
        openapi_json: Default::default(),
        agents,
    });
    let _webhooks = webhooks::spawn(store.clone(), cfg.prefix.clone(), cfg.webhooks.clone())
        .map_err(ServeError::Webhooks)?;
    let _rollouts = rollout::spawn(state.clone());
    let _cluster_sampler =
        cluster_gauges::spawn_sampler(state.clone(), clusters_tx, cluster_gauges::EVERY);
    let app =
        api::router(state, cfg.body_limit).into_make_service_with_connect_info::<SocketAddr>();
    let listener = TcpListener::bind(cfg.listen).map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let local = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let _pruner = auditor.spawn_pruner(cfg.audit_prune_interval);
    let _aggregator = auditor.spawn_aggregator(Duration::from_secs(5));
    let listen_limits = limits.listener.capped();
    let server = listen::server(listener, listen_limits, "coordinator").map_err(|source| {
        ServeError::Bind {
            addr: cfg.listen,
            source,
        }
    })?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining requests");
        h.graceful_shutdown(Some(DRAIN));
    });
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{local}");
    tracing::info!(
        address = %local,
        tls = cfg.tls.is_some(),
        admin_token = cfg.admin_token.is_some(),
        max_connections = listen_limits.max_connections,
        max_per_client = listen_limits.max_per_client,
        "coordinator listening"
    );
    match &cfg.tls {
        Some((cert, key)) => {
            let rustls = tls::server_config(cert, key).map_err(ServeError::Tls)?;
            server
                .acceptor(listen::tls::acceptor(rustls, &listen_limits))
                .handle(handle)
                .serve(app)
                .await
        }
        None => server.handle(handle).serve(app).await,
    }
    .map_err(ServeError::Serve)
}

/// Says at start what will make requests fail later: no admin token (only tokens issued
/// before work; without one nobody can administer this coordinator), or an etcd that does
/// not answer (the coordinator serves anyway, every request answering 503 until it does).
fn warn_at_start(cfg: &Config, store: &EtcdStore) {
    use cluster::store::Store;
    if cfg.admin_token.is_none() {
        tracing::warn!(
            "no admin token configured (--admin-token-file or AUTOPILOT_ADMIN_TOKEN): only \
             tokens issued before work, and without an admin token among them nobody can \
             issue tokens or read the audit log"
        );
    }
    let probe = CoordinatorKeys::new(&cfg.prefix).root().to_owned();
    let (store, endpoints) = (store.clone(), cfg.etcd_endpoints.join(","));
    // In the background: the listener does not wait for etcd's request timeout.
    tokio::spawn(async move {
        if let Err(e) = store.get(&probe).await {
            tracing::warn!(
                endpoints = %endpoints,
                cause = %problem::store_cause(&e),
                "etcd is unreachable at start; serving anyway: requests answer 503 \
                 store_unavailable until it is back"
            );
        }
    });
}

/// How often etcd's alarms and size are read for `/healthz`.
const SPACE_EVERY: Duration = Duration::from_secs(5);
