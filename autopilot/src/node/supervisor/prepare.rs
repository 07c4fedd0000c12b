//! The engine's preparation at start-up, and whether the main process starts now or after
//! the clone.
//!
//! A clustered node without the bootstrap marker either bootstraps the cluster or clones its
//! primary. When the cluster's `initialized` key is there it will clone, so creating a
//! database first (initdb, mariadb-install-db) would only make something for the clone to
//! move aside: the engine prepares to clone instead ([`Engine::prepare_to_clone`]) and may
//! keep the main process down until the clone starts it. Any doubt (etcd unreachable,
//! slow, refusing) falls back to the full preparation of a first start. A cluster that is
//! not initialised yet and bootstraps from a backup (`cluster.bootstrap.from_backup`)
//! prepares the same way: the node that wins the bootstrap lock restores into the empty
//! data directory and starts the server on it. So does a PostgreSQL cluster that starts as
//! a replica of an external database (`cluster.bootstrap.migrate_from`): the node that
//! bootstraps copies it with `pg_basebackup`; MariaDB's copy is logical and loads into a
//! server prepared as for a first start.

use std::time::Duration;

use cluster::store::{EtcdStore, Store};
use cluster::wire::ClusterKeys;
use engines::{AnyEngine, Engine, MainStart};
use tracing::info;

use crate::config::Config;

/// How long the one read of `initialized` may take, connecting included.
const INITIALIZED_READ_LIMIT: Duration = Duration::from_secs(5);

/// Prepare the engine: for a first bootstrap or a standalone agent as always, for a node
/// that will clone without creating a database. When the main process starts.
pub async fn prepare(config: &Config, engine: &AnyEngine) -> Result<MainStart, String> {
    let fail = |e: engines::EngineError| format!("prepare the {} engine: {e}", engine.kind());
    let marker = config.node.state_dir.join("bootstrapped");
    if config.store.is_none() || marker.exists() {
        return engine
            .prepare()
            .await
            .map(|()| MainStart::Now)
            .map_err(fail);
    }
    match cluster_initialized(config).await {
        Ok(true) => {
            info!(
                "no bootstrap marker and the cluster is initialised: this node clones the primary, without creating a database first"
            );
            engine.prepare_to_clone().await.map_err(fail)
        }
        Ok(false)
            if config
                .cluster
                .as_ref()
                .is_some_and(|c| c.from_backup.is_some()) =>
        {
            info!(
                "the cluster is not initialised and starts from a backup (cluster.bootstrap.from_backup): no database is created; the node that bootstraps restores the backup, the others clone it"
            );
            engine.prepare_to_clone().await.map_err(fail)
        }
        Ok(false)
            if matches!(engine, AnyEngine::Postgres(_))
                && config
                    .cluster
                    .as_ref()
                    .is_some_and(|c| c.migrate_from.is_some()) =>
        {
            info!(
                "the cluster is not initialised and starts as a replica of an external database (cluster.bootstrap.migrate_from): no database is created; the node that bootstraps copies the source, the others clone it"
            );
            engine.prepare_to_clone().await.map_err(fail)
        }
        Ok(false) => engine
            .prepare()
            .await
            .map(|()| MainStart::Now)
            .map_err(fail),
        Err(why) => {
            info!(%why, "could not learn whether the cluster is initialised; preparing the engine as for a first start");
            engine
                .prepare()
                .await
                .map(|()| MainStart::Now)
                .map_err(fail)
        }
    }
}

/// Whether the cluster's `initialized` key exists: one read, bounded.
async fn cluster_initialized(config: &Config) -> Result<bool, String> {
    let (Some(store), Some(cluster)) = (&config.store, &config.cluster) else {
        return Err("the agent is not clustered".into());
    };
    let keys = ClusterKeys::new(
        &store.prefix,
        &cluster.namespace,
        &cluster.project,
        &cluster.name,
    )
    .map_err(|e| format!("build the etcd key layout: {e}"))?;
    let read = async {
        let etcd = EtcdStore::connect(&store.etcd_options())
            .await
            .map_err(|e| format!("connect to etcd: {}", handlers::error_chain(&e)))?;
        etcd.get(&keys.initialized())
            .await
            .map(|found| found.is_some())
            .map_err(|e| format!("read {}: {}", keys.initialized(), handlers::error_chain(&e)))
    };
    tokio::time::timeout(INITIALIZED_READ_LIMIT, read)
        .await
        .map_err(|_| format!("etcd did not answer within {INITIALIZED_READ_LIMIT:?}"))?
}
