//! Building the role actor's arguments from the configuration.

use std::sync::Arc;
use std::time::Duration;

use engines::{AnyEngine, Engine};
use handlers::HandlerMsg;
use ractor::ActorRef;
use tokio::sync::watch;

use super::{Identity, RoleArgs};
use crate::config::Config;
use crate::node::env::EventEnv;
use crate::node::process::ProcessMsg;
use crate::node::specs::handler_spec;
use crate::role::RoleParams;
use crate::telemetry::NodeStatus;
use crate::telemetry::PublishedRole;
use cluster::store::EtcdStore;
use cluster::wire::ClusterKeys;

/// Fence a primary after half the TTL without a successful keep-alive (see `RoleParams`).
const FENCE_AFTER_PERMILLE: u32 = 500;
/// How long a primary that was healthy may look unhealthy before it hands over (see
/// `RoleParams::health_grace`).
const HEALTH_GRACE: Duration = Duration::from_secs(2);

/// The other actors the role actor drives: handlers, and the process actor (to kill a
/// database that does not answer).
pub struct RoleHandlers {
    /// The process actor.
    pub process: ActorRef<ProcessMsg>,
    /// onChange.
    pub on_change: Option<ActorRef<HandlerMsg>>,
    /// prePromote.
    pub pre_promote: Option<ActorRef<HandlerMsg>>,
}

/// The role actor's arguments; `Ok(None)` for a standalone agent (no `store`).
pub async fn role_args(
    config: &Config,
    engine: Arc<AnyEngine>,
    health: watch::Receiver<NodeStatus>,
    publish: watch::Sender<PublishedRole>,
    view: watch::Sender<crate::node::status::AgentView>,
    handlers: RoleHandlers,
) -> Result<Option<RoleArgs>, String> {
    let (Some(store), Some(cluster), Some(local)) = (
        &config.store,
        &config.cluster,
        super::super::specs::local_peer(config),
    ) else {
        return Ok(None);
    };
    let keys = ClusterKeys::new(
        &store.prefix,
        &cluster.namespace,
        &cluster.project,
        &cluster.name,
    )
    .map_err(|e| format!("build the etcd key layout: {e}"))?;
    let etcd = EtcdStore::connect(&store.etcd_options())
        .await
        .map_err(|e| format!("connect to etcd: {}", handlers::error_chain(&e)))?;
    let seeder = crate::node::seed::Seeder::from_config(config)?;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let params = RoleParams {
        node_id: config.node.name.clone(),
        address: local.to_string(),
        ttl: ms(store.ttl),
        fence_after_permille: FENCE_AFTER_PERMILLE,
        settle: ms(config.failover.settle),
        failover_cooldown: ms(config.failover.cooldown),
        max_lag_on_failover: config.failover.max_lag.unwrap_or(u64::MAX),
        priority: config.node.priority,
        nofailover: config.node.nofailover,
        pre_promote: config.handlers.pre_promote.is_some(),
        restore_from_backup: seeder.as_ref().is_some_and(|s| s.bootstraps()),
        auto_rebuild: config.engine.auto_rebuild(),
        health_grace: ms(HEALTH_GRACE),
        migrate_from: cluster.migrate_from.as_ref().map(|m| m.address()),
        upgrade_hook: config.handlers.upgrade.is_some(),
        rollback_hook: config.handlers.rollback.is_some(),
    };
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let identity = Identity {
        id: config.node.name.clone(),
        hostname,
        host: local.host.clone(),
        port: local.port,
        priority: config.node.priority,
        nofailover: config.node.nofailover,
        ttl_seconds: store.ttl.as_secs().max(1),
        engine: engine.kind(),
        agent_url: config.telemetry.agent_url(&config.node.address),
    };
    let probe_interval = config
        .handlers
        .health
        .as_ref()
        .and_then(|h| h.interval)
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    Ok(Some(RoleArgs {
        params,
        identity,
        engine,
        store: Arc::new(etcd),
        keys,
        health,
        publish,
        view,
        process: handlers.process,
        on_change: handlers.on_change,
        pre_promote: handlers.pre_promote,
        env: EventEnv::for_node(config),
        marker: config.node.state_dir.join("bootstrapped"),
        probe_interval,
        begin_without_database: false,
        seeder,
        migrate_from: cluster.migrate_from.as_ref().map(|m| engines::Source {
            peer: engines::Peer {
                host: m.host.clone(),
                port: m.port,
                agent: None,
                standby: false,
            },
            user: m.account.user.clone(),
            password: m.account.password.expose().to_owned(),
            slot: m.slot.clone(),
        }),
        upgrade: config.handlers.upgrade.as_ref().map(handler_spec),
        rollback: config.handlers.rollback.as_ref().map(handler_spec),
        packages: watch::channel(None).1,
        inherited: None,
    }))
}
