//! What the MariaDB engine is told by the agent, and the `mariadbd` command line it
//! builds from it. The engine owns the settings replication safety depends on, so an
//! operator's config file cannot switch them off: they come last on the command line, and
//! MariaDB lets the last occurrence of an option win.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Which server the engine drives. Only MariaDB is implemented and tested (10.11); the
/// switch exists so MySQL 8 differences (`SHOW REPLICA STATUS`, `super_read_only`, GTID
/// auto-positioning) have one place to go, and validation refuses `mysql` until they do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// MariaDB 10.11 (Debian `mariadb-server`).
    MariaDb,
}

/// How commits wait for replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Commits return when the primary wrote them; a failover while the primary's server is
    /// unreachable loses what no replica received yet.
    Async,
    /// Semi-synchronous replication with `AFTER_SYNC`: a commit returns only after a replica
    /// wrote it to its relay log. `timeout` is how long a commit waits for that before the
    /// primary falls back to async; `None` never falls back (writes block while no replica
    /// acknowledges).
    Sync {
        /// Fallback to async after this wait; `None` for never.
        timeout: Option<Duration>,
    },
}

/// A database account the engine uses. The password never appears in `Debug` output.
#[derive(Clone)]
pub struct Account {
    /// User name.
    pub user: String,
    /// Password, read by the agent from a file or the environment.
    pub password: String,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Account {{ user: {:?}, password: <secret> }}", self.user)
    }
}

/// Everything the engine needs; built by the agent from its validated configuration.
#[derive(Clone, Debug)]
pub struct MariadbSettings {
    /// Server flavour.
    pub flavour: Flavour,
    /// The server program and operator arguments (e.g. `[/usr/sbin/mariadbd,
    /// --defaults-file=/etc/mysql/my.cnf]`); the engine appends its own settings.
    pub program: Vec<String>,
    /// Extra environment for the server and the helper programs.
    pub env: Vec<(String, String)>,
    /// Data directory.
    pub datadir: PathBuf,
    /// Directory for the socket, pid file and temporary files (owned by the engine).
    pub run_dir: PathBuf,
    /// Address the server binds to (the node's address).
    pub bind_address: String,
    /// TCP port.
    pub port: u16,
    /// `server_id`, stable per node (derived from the node name unless configured).
    pub server_id: u32,
    /// The GTID replication domain this cluster writes in.
    pub gtid_domain_id: u32,
    /// OS user the server runs as when the agent is root (`--user`); `None` runs it as the
    /// agent's user.
    pub os_user: Option<String>,
    /// Commit durability.
    pub durability: Durability,
    /// Account with all privileges: probes, promotion, fencing (local and remote).
    pub admin: Account,
    /// Account replicas connect with.
    pub replication: Account,
    /// Least-privilege account the backup tools (`mariadb-backup`, `mariadb-dump`) log in
    /// with over the local socket (`'<user>'@'localhost'`); `None`: they use the admin
    /// account.
    pub backup: Option<Account>,
    /// SIGTERM to SIGKILL grace for the server.
    pub stop_timeout: Duration,
    /// The cluster name and this node's id: what a clone request's proof is bound to.
    pub cluster: String,
    /// This node's id.
    pub node_id: String,
    /// Keep statement statistics (`performance_schema`'s digest summary) for
    /// `top_statements`; off with `telemetry.top_statements: 0`.
    pub statement_stats: bool,
    /// PEM CA bundle (`telemetry.tls.ca`) the primary's agent listener must chain to when
    /// its `agent_url` is `https://` (a clone stream); `None`: `https://` peers cannot be
    /// verified, so a clone from one is refused.
    pub peer_ca: Option<Vec<u8>>,
}

/// A `server_id` derived from the node name (FNV-1a), never 0: 0 refuses to replicate.
pub fn server_id_for(node: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in node.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h.max(1)
}

impl MariadbSettings {
    /// The unix socket the engine's local connections use.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("mariadbd.sock")
    }

    /// The server's temporary directory (its own, not a shared /tmp: concurrent
    /// `mariadb-install-db` runs collided there).
    pub fn tmpdir(&self) -> PathBuf {
        self.run_dir.join("tmp")
    }

    /// The full server command line: operator program and arguments, then the settings the
    /// engine owns. Every start is read-only and does not start replication, so a restarted
    /// former primary stays fenced until the role logic decides.
    pub fn server_argv(&self) -> Vec<String> {
        let d = self.datadir.display();
        let mut argv = self.program.clone();
        let mut set = |k: &str, v: String| argv.push(format!("--{k}={v}"));
        set("datadir", d.to_string());
        set("port", self.port.to_string());
        set("bind-address", self.bind_address.clone());
        set("socket", self.socket().display().to_string());
        set(
            "pid-file",
            self.run_dir.join("mariadbd.pid").display().to_string(),
        );
        set("tmpdir", self.tmpdir().display().to_string());
        set("server-id", self.server_id.to_string());
        // Registered with the primary under the address its peers know, so the primary's
        // `SHOW SLAVE HOSTS` names its replicas (the node documents list them).
        set("report-host", self.bind_address.clone());
        set("report-port", self.port.to_string());
        if self.statement_stats {
            // Statement digests for `top_statements`, sized small: no statement histories.
            set("performance-schema", "ON".into());
            set("performance-schema-digests-size", "1000".into());
            set("performance-schema-max-digest-length", "1024".into());
            set(
                "performance-schema-events-statements-history-size",
                "0".into(),
            );
            set(
                "performance-schema-events-statements-history-long-size",
                "0".into(),
            );
            set("performance-schema-events-waits-history-size", "0".into());
            set(
                "performance-schema-events-waits-history-long-size",
                "0".into(),
            );
            set("performance-schema-events-stages-history-size", "0".into());
            set(
                "performance-schema-events-stages-history-long-size",
                "0".into(),
            );
        }
        set("log-bin", format!("{d}/mariadb-bin"));
        set("relay-log", format!("{d}/relay-bin"));
        set("log-slave-updates", "ON".into());
        set("binlog-format", "ROW".into());
        set("gtid-strict-mode", "ON".into());
        set("gtid-domain-id", self.gtid_domain_id.to_string());
        set("read-only", "ON".into());
        set("skip-slave-start", "ON".into());
        if matches!(self.durability, Durability::Sync { .. }) {
            // Every start is a replica's (the role logic promotes): crash recovery then rolls
            // back the transactions that were prepared and in the binary log but whose engine
            // commit was not durable yet, and truncates the binary log before them, instead
            // of committing them (MDEV-21117, MDEV-33465). With semi-sync (AFTER_SYNC) such a
            // transaction was either never acknowledged or is on a replica, so nothing
            // acknowledged is lost, and a former primary killed while commits waited for an
            // acknowledgement (a partition, a hung fence) follows the new primary instead of
            // holding a GTID no one else has. Not with `async`: there an acknowledged commit
            // may exist nowhere else, and a restarted server must keep it.
            set("init-rpl-role", "SLAVE".into());
        }
        set("skip-name-resolve", "ON".into());
        let (enabled, timeout_ms) = match self.durability {
            Durability::Async => ("OFF", 10_000),
            Durability::Sync { timeout } => (
                "ON",
                timeout.map_or(u64::from(u32::MAX), |t| {
                    u64::try_from(t.as_millis()).unwrap_or(u64::from(u32::MAX))
                }),
            ),
        };
        // Only a primary waits for acknowledgements: on a replica with log_slave_updates the
        // applier itself would wait for replicas of its own and stall. Promotion turns it on.
        set("rpl-semi-sync-master-enabled", "OFF".into());
        set("rpl-semi-sync-slave-enabled", enabled.into());
        set("rpl-semi-sync-master-wait-point", "AFTER_SYNC".into());
        set("rpl-semi-sync-master-wait-no-slave", "ON".into());
        set("rpl-semi-sync-master-timeout", timeout_ms.to_string());
        if let Some(user) = &self.os_user {
            set("user", user.clone());
        }
        argv
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Settings for unit tests (no server behind them).
    pub(crate) fn settings() -> MariadbSettings {
        MariadbSettings {
            flavour: Flavour::MariaDb,
            program: vec!["/usr/sbin/mariadbd".into(), "--no-defaults".into()],
            env: vec![],
            datadir: "/data".into(),
            run_dir: "/run/db".into(),
            bind_address: "127.0.0.1".into(),
            port: 3306,
            server_id: 7,
            gtid_domain_id: 0,
            os_user: Some("mysql".into()),
            durability: Durability::Sync { timeout: None },
            admin: Account {
                user: "autopilot".into(),
                password: "marker-secret".into(),
            },
            replication: Account {
                user: "repl".into(),
                password: "marker-secret".into(),
            },
            backup: Some(Account {
                user: "backup".into(),
                password: "marker-secret".into(),
            }),
            stop_timeout: Duration::from_secs(30),
            cluster: "ns/p/c".into(),
            node_id: "n1".into(),
            statement_stats: true,
            peer_ca: None,
        }
    }

    #[test]
    fn command_line_starts_read_only_with_the_safety_settings_last() {
        let argv = settings().server_argv();
        assert_eq!(argv[..2], ["/usr/sbin/mariadbd", "--no-defaults"]);
        for want in [
            "--read-only=ON",
            "--skip-slave-start=ON",
            "--init-rpl-role=SLAVE",
            "--gtid-strict-mode=ON",
            "--log-slave-updates=ON",
            "--server-id=7",
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
            "--rpl-semi-sync-master-timeout=4294967295",
            "--rpl-semi-sync-master-enabled=OFF",
            "--rpl-semi-sync-slave-enabled=ON",
            "--user=mysql",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} missing in {argv:?}");
        }
        assert!(!format!("{:?}", settings()).contains("marker-secret"));
    }

    #[test]
    fn an_async_server_keeps_its_acknowledged_tail_after_a_crash() {
        let s = MariadbSettings {
            durability: Durability::Async,
            ..settings()
        };
        let argv = s.server_argv();
        assert!(
            !argv.iter().any(|a| a.starts_with("--init-rpl-role")),
            "{argv:?}"
        );
    }

    #[test]
    fn server_ids_are_stable_and_distinct() {
        assert_eq!(server_id_for("db-1"), server_id_for("db-1"));
        assert_ne!(server_id_for("db-1"), server_id_for("db-2"));
        assert_ne!(server_id_for(""), 0);
    }
}
