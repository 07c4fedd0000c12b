//! From configuration to what the `handlers` and `engines` crates run.

use std::time::Duration;

use engines::mariadb::{self, Account, Flavour, MariadbEngine, MariadbSettings, server_id_for};
use engines::postgres::{
    Credentials, Durability as PostgresDurability, PostgresEngine, PostgresSettings,
};
use engines::process::{ProcessEngine, ProcessHooks};
use engines::{AnyEngine, MainControl, Peer};
use handlers::{ExecSpec, RunAs};

use super::env::EventEnv;
use crate::config::{
    Config, DbAccount, EngineConfig, HandlerConfig, MariadbConfig, MariadbDurability, PgDurability,
    PostgresConfig,
};

/// Grace between SIGTERM and SIGKILL for a handler or hook that overran its timeout.
pub const HANDLER_KILL_GRACE: Duration = Duration::from_secs(2);

/// The exec spec of a configured handler or hook.
pub fn handler_spec(config: &HandlerConfig) -> ExecSpec {
    ExecSpec {
        argv: config.exec.clone(),
        env: config.env.iter().map(|v| v.pair()).collect(),
        cwd: config.cwd.clone(),
        timeout: Some(config.timeout),
        kill_grace: HANDLER_KILL_GRACE,
        user: None,
    }
}

/// Where this node's database listens, as peers see it (`node.address:engine.port`).
pub fn local_peer(config: &Config) -> Option<Peer> {
    Some(Peer {
        host: config.node.address.clone(),
        port: config.engine.port()?,
        agent: None,
        standby: false,
    })
}

/// The engine for this configuration. Role hooks are wired only when the agent is
/// clustered (`store` set), since only then does anything ask for roles. `control` lets
/// engines that need the database down for an operation (clone, rewind) stop and start it.
pub fn build_engine(config: &Config, control: MainControl) -> AnyEngine {
    let command = ExecSpec {
        argv: config.process.exec.clone(),
        env: config.process.env.iter().map(|v| v.pair()).collect(),
        cwd: config.process.cwd.clone(),
        timeout: None,
        kill_grace: config.process.stop_timeout,
        user: config.process.user.as_ref().map(|u| RunAs {
            uid: u.uid,
            gid: u.gid,
        }),
    };
    match &config.engine {
        EngineConfig::Process { hooks, .. } => {
            drop(control); // hooks run while the program runs; nothing needs it down
            let hooks = match (&config.store, hooks, local_peer(config)) {
                (Some(_), Some(h), Some(local)) => Some(ProcessHooks {
                    position: handler_spec(&h.position),
                    promote: handler_spec(&h.promote),
                    follow: handler_spec(&h.follow),
                    fence: handler_spec(&h.fence),
                    unfence: handler_spec(&h.unfence),
                    local,
                    env: EventEnv::for_node(config).with_event("hook").vars(),
                }),
                _ => None,
            };
            AnyEngine::Process(ProcessEngine::new(command, hooks))
        }
        EngineConfig::Mariadb { port, mariadb, .. } => AnyEngine::Mariadb(MariadbEngine::new(
            mariadb_settings(config, mariadb, *port),
            control,
        )),
        EngineConfig::Postgres { port, postgres, .. } => AnyEngine::Postgres(PostgresEngine::new(
            postgres_settings(config, postgres, *port, command.user),
            control,
        )),
    }
}

/// The MariaDB engine's settings: from `engine.mariadb` (`m`), `engine.port`, the node and
/// the process section.
fn mariadb_settings(config: &Config, m: &MariadbConfig, port: u16) -> MariadbSettings {
    let account = |a: &DbAccount| Account {
        user: a.user.clone(),
        password: a.password.expose().to_owned(),
    };
    MariadbSettings {
        flavour: Flavour::MariaDb,
        program: config.process.exec.clone(),
        env: config.process.env.iter().map(|v| v.pair()).collect(),
        datadir: m.datadir.clone(),
        run_dir: config.node.state_dir.join("mariadb"),
        bind_address: config.node.address.clone(),
        port,
        server_id: m
            .server_id
            .unwrap_or_else(|| server_id_for(&config.node.name)),
        gtid_domain_id: 0,
        // `--user` only works (and is only needed) when the agent runs as root.
        os_user: nix::unistd::geteuid().is_root().then(|| m.os_user.clone()),
        durability: match m.durability {
            MariadbDurability::Async => mariadb::Durability::Async,
            MariadbDurability::Sync { fallback_after } => mariadb::Durability::Sync {
                timeout: fallback_after,
            },
        },
        admin: account(&m.admin),
        replication: account(&m.replication),
        backup: m.backup.as_ref().map(account),
        stop_timeout: config.process.stop_timeout,
        cluster: config
            .cluster
            .as_ref()
            .map(|c| format!("{}/{}/{}", c.namespace, c.project, c.name))
            .unwrap_or_default(),
        node_id: config.node.name.clone(),
        statement_stats: config.telemetry.top_statements > 0,
        peer_ca: config
            .telemetry
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_ref())
            .map(|ca| ca.pem.clone()),
    }
}

/// The PostgreSQL engine's settings from `engine.postgres` (`pg`), `engine.port`, `node`
/// and `process` (user, stop timeout).
fn postgres_settings(
    config: &Config,
    pg: &PostgresConfig,
    port: u16,
    run_as: Option<RunAs>,
) -> PostgresSettings {
    let creds = |u: &DbAccount| Credentials {
        user: u.user.clone(),
        password: u.password.expose().to_owned(),
    };
    PostgresSettings {
        node_id: config.node.name.clone(),
        bin_dir: pg.bin_dir.clone(),
        data_dir: pg.data_dir.clone(),
        listen: pg
            .listen
            .clone()
            .unwrap_or_else(|| config.node.address.clone()),
        port,
        superuser: creds(&pg.superuser),
        replication: creds(&pg.replication),
        backup: pg.backup.as_ref().map(creds),
        durability: match pg.durability {
            PgDurability::Async => PostgresDurability::Async,
            PgDurability::Sync => PostgresDurability::Sync,
        },
        run_as,
        parameters: pg.parameters.clone(),
        max_slot_wal_keep_size: pg.max_slot_wal_keep_size.clone(),
        stop_timeout: config.process.stop_timeout,
        archive: config
            .backup
            .as_ref()
            .and_then(|b| b.archive.as_ref())
            .map(|a| engines::postgres::WalSpool {
                dir: a.spool.clone(),
                limit_mb: a.spool_limit_mb,
                timeout: a.interval,
            }),
    }
}
