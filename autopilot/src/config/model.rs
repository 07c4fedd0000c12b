//! The validated configuration: what the rest of the agent reads.
//!
//! These types are produced only by [`super::load`] / [`super::parse`] after every check in
//! `validate.rs` passed, so code that holds a [`Config`] may rely on its invariants
//! (non-empty execs, timeouts shorter than intervals, names that are valid etcd path parts).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cluster::secret::{EtcdTls, PemFile, Secret, TlsIdentity};
use cluster::store::EtcdOptions;

/// The whole agent configuration, defaults filled in.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from, for messages.
    pub source: PathBuf,
    /// Who this node is.
    pub node: NodeConfig,
    /// Which cluster the node belongs to; `None` runs the agent standalone (no coordination).
    pub cluster: Option<ClusterConfig>,
    /// The etcd store; `None` runs the agent standalone (no coordination).
    pub store: Option<StoreConfig>,
    /// Failover tuning; defaults apply when the section is absent.
    pub failover: FailoverConfig,
    /// The engine that knows how to run and probe the main process.
    pub engine: EngineConfig,
    /// The main process.
    pub process: ProcessConfig,
    /// The five lifecycle handlers, each optional.
    pub handlers: HandlersConfig,
    /// Periodic jobs, run on their interval for as long as the agent runs.
    pub jobs: Vec<JobConfig>,
    /// The HTTP listener for /metrics, /health, /primary, /replica.
    pub telemetry: TelemetryConfig,
    /// Log level and format.
    pub log: LogConfig,
    /// Backups (`None`: no backup section).
    pub backup: Option<super::validate_backup::BackupConfig>,
    /// The package watch (`None`: no packages are watched).
    pub packages: Option<PackagesConfig>,
}

/// `packages:`: which Debian packages the agent compares with their candidate versions.
#[derive(Clone, Debug)]
pub struct PackagesConfig {
    /// Package names, in the order they are reported.
    pub watch: Vec<String>,
    /// How often to check (each wait jittered by up to a tenth).
    pub interval: Duration,
    /// Limit of each query command (`dpkg-query`, `apt-cache policy`).
    pub timeout: Duration,
    /// Extra environment of the query commands.
    pub env: Vec<EnvVar>,
    /// Run before each check to refresh the package index (`apt-get update`): the agent
    /// itself reaches no network.
    pub refresh: Option<HandlerConfig>,
}

/// Who this node is.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Unique node id within the cluster; defaults to the host name.
    pub name: String,
    /// Address other nodes and clients reach this node's database at.
    pub address: String,
    /// Failover preference among equally advanced replicas; higher wins. Default 100.
    pub priority: u32,
    /// Never promote this node automatically.
    pub nofailover: bool,
    /// Where the agent keeps its local state (the bootstrap marker that says this node's
    /// database holds the cluster's data). Default `/var/lib/autopilot`; relative paths
    /// resolve against the config file's directory.
    pub state_dir: PathBuf,
}

/// The cluster's place in the etcd key space: `<prefix>/<namespace>/<project>/<name>/`.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub namespace: String,
    pub project: String,
    pub name: String,
    /// `cluster.bootstrap.from_backup`: the data a new cluster starts with (and what a
    /// cluster whose every node lost its data is restored from).
    pub from_backup: Option<FromBackup>,
    /// `cluster.bootstrap.migrate_from`: the external database a new cluster starts as a
    /// replica of (a live migration), until its cutover.
    pub migrate_from: Option<MigrateFrom>,
}

/// `cluster.bootstrap.migrate_from`: an external database this cluster migrates from.
#[derive(Clone, Debug)]
pub struct MigrateFrom {
    /// Its host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The account: PostgreSQL a role with REPLICATION (and, to make the source read-only
    /// at the cutover, a superuser); MariaDB a user with REPLICATION SLAVE, SELECT, SHOW
    /// VIEW, TRIGGER, EVENT, RELOAD and BINLOG MONITOR (and READ_ONLY ADMIN with CONNECTION
    /// ADMIN for the cutover).
    pub account: DbAccount,
    /// PostgreSQL: the physical replication slot on the source (created by the copy).
    pub slot: Option<String>,
}

impl MigrateFrom {
    /// `host:port`, as `initialized` records it.
    pub fn address(&self) -> String {
        crate::role::address(&self.host, self.port)
    }
}

/// `cluster.bootstrap.from_backup`: a backup in one of this node's repositories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromBackup {
    /// A repository named in `backup.repositories`.
    pub repository: String,
    /// The cluster the backup was taken of: `namespace/project/name`; default this cluster.
    pub cluster: Option<(String, String, String)>,
    /// Which backup (with `time`: the base backup, default the newest before it).
    pub backup: BackupChoice,
    /// Recover to this point in time (RFC 3339) with the archived WAL (PostgreSQL).
    pub time: Option<String>,
}

/// Which backup `from_backup` restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupChoice {
    /// The newest complete physical backup of the cluster in the repository.
    Latest,
    /// This backup id (any method).
    Id(String),
}

/// `engine.seed`: where a node without data gets its first copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeedSource {
    /// A physical copy of the primary (the default; what every engine can do).
    #[default]
    Primary,
    /// The newest physical backup of the cluster in the repositories, then what is newer
    /// from the primary; the node does not start when that fails.
    Backup,
    /// From the repository when it has a backup that works, else from the primary.
    Auto,
}

impl SeedSource {
    /// The word in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SeedSource::Primary => "primary",
            SeedSource::Backup => "backup",
            SeedSource::Auto => "auto",
        }
    }
}

/// How to reach etcd and how long this node's lease lives.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// `http://host:port` URLs of the etcd members.
    pub endpoints: Vec<String>,
    /// Key prefix, default `/autopilot`.
    pub prefix: String,
    /// Lease TTL; a dead node's keys vanish after this. Default 10s.
    pub ttl: Duration,
    /// Optional etcd user.
    pub username: Option<String>,
    /// The etcd user's password, read from a file or the environment.
    pub password: Option<Secret>,
    /// TLS to etcd (every endpoint is then `https://`); `None`: plain http, or https with
    /// no CA and no client certificate.
    pub tls: Option<EtcdTls>,
}

impl StoreConfig {
    /// How the store reaches etcd. A user without a password is given an empty one.
    pub fn etcd_options(&self) -> EtcdOptions {
        let mut o = EtcdOptions::new(self.endpoints.clone());
        o.user = self.username.clone().map(|u| {
            let pw = self
                .password
                .clone()
                .unwrap_or_else(|| Secret::new("none".into(), String::new()));
            (u, pw)
        });
        o.tls = self.tls.clone();
        o
    }
}

/// Which engine runs the main process, each kind with what it needs.
// One value per configuration: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum EngineConfig {
    /// Any program; roles driven by operator exec hooks.
    Process {
        /// The port the program listens on; the node's address is `node.address:port`.
        /// Required when `store` is set.
        port: Option<u16>,
        /// The exec hooks that drive roles. Required (all five) when `store` is set.
        hooks: Option<EngineHooks>,
        /// See [`EngineConfig::auto_rebuild`].
        auto_rebuild: bool,
    },
    /// MariaDB 10.11 with GTID replication; the engine builds the server command line.
    Mariadb {
        /// The port the server listens on; the node's address is `node.address:port`.
        port: u16,
        /// See [`EngineConfig::auto_rebuild`].
        auto_rebuild: bool,
        /// See [`EngineConfig::seed`].
        seed: SeedSource,
        /// `engine.mariadb`.
        mariadb: super::validate_mariadb::MariadbConfig,
    },
    /// PostgreSQL streaming replication; the engine builds its own command line.
    Postgres {
        /// The port the server listens on; the node's address is `node.address:port`.
        port: u16,
        /// See [`EngineConfig::auto_rebuild`].
        auto_rebuild: bool,
        /// See [`EngineConfig::seed`].
        seed: SeedSource,
        /// `engine.postgres`.
        postgres: super::postgres::PostgresConfig,
    },
}

impl EngineConfig {
    /// `engine.port`: where the database listens; `None` only for a `process` engine
    /// without a store.
    pub fn port(&self) -> Option<u16> {
        match self {
            EngineConfig::Process { port, .. } => *port,
            EngineConfig::Mariadb { port, .. } | EngineConfig::Postgres { port, .. } => Some(*port),
        }
    }

    /// `engine.seed` (`primary` for the `process` engine, which has no backups).
    pub fn seed(&self) -> SeedSource {
        match self {
            EngineConfig::Process { .. } => SeedSource::Primary,
            EngineConfig::Mariadb { seed, .. } | EngineConfig::Postgres { seed, .. } => *seed,
        }
    }

    /// `engine.auto_rebuild`: a node whose data diverged from the primary's (errant
    /// transactions that cannot be rewound) replaces it with a fresh clone of the primary
    /// (or, with `engine.seed`, a restore) instead of waiting, flagged `needs_rebuild`, for
    /// an operator. Default false: the diverged data is kept for inspection.
    pub fn auto_rebuild(&self) -> bool {
        match self {
            EngineConfig::Process { auto_rebuild, .. }
            | EngineConfig::Mariadb { auto_rebuild, .. }
            | EngineConfig::Postgres { auto_rebuild, .. } => *auto_rebuild,
        }
    }
}

/// The `process` engine's role hooks. Each gets the event variables plus the ones named
/// here, and must exit 0 on success.
#[derive(Clone, Debug)]
pub struct EngineHooks {
    /// Print the local replication position on stdout: `OFFSET` or `EPOCH OFFSET` (integers).
    pub position: HandlerConfig,
    /// Make the local database the writable primary (e.g. `REPLICAOF NO ONE` + unpause).
    pub promote: HandlerConfig,
    /// Replicate from `AUTOPILOT_PRIMARY_HOST`:`AUTOPILOT_PRIMARY_PORT`.
    pub follow: HandlerConfig,
    /// Make the database at `AUTOPILOT_TARGET_HOST`:`AUTOPILOT_TARGET_PORT` refuse writes
    /// (the local one, or a former primary's) and print its final position like `position`.
    pub fence: HandlerConfig,
    /// Undo `fence` on the local database.
    pub unfence: HandlerConfig,
}

/// Failover tuning (used only with `store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// How long after the primary key vanished candidates wait before comparing positions,
    /// so every replica has seen the deletion and published its position. Default 500ms.
    pub settle: Duration,
    /// After a failover, no further automatic failover for this long (I5). Default 60s.
    pub cooldown: Duration,
    /// A replica further behind the last primary position than this (in the engine's
    /// offset unit) does not compete. Default: unlimited.
    pub max_lag: Option<u64>,
}

/// The main process and how it is restarted.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// Program and arguments; never empty.
    pub exec: Vec<String>,
    /// Working directory; default: the agent's.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<EnvVar>,
    /// How long after the stop signal before SIGKILL. Default 30s.
    pub stop_timeout: Duration,
    /// What to do when the main process exits on its own.
    pub restart: RestartPolicy,
    /// The OS user the main process (and the engine's own tools) run as; `None`: the agent's.
    pub user: Option<OsUser>,
}

/// An OS user, resolved when the configuration is loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsUser {
    /// The login name, as configured.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

/// What to do when the main process exits on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never restart: the agent stops (postStop) and exits with the process's status.
    Never,
    /// Restart after a non-zero exit or death by signal, with exponential backoff.
    OnFailure(Backoff),
    /// Restart after any exit, with exponential backoff.
    Always(Backoff),
}

/// Exponential backoff between restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay. Default 1s.
    pub initial: Duration,
    /// Cap on the delay. Default 30s.
    pub max: Duration,
    /// Give up after this many consecutive restarts; `None` never gives up. Default 10.
    pub max_restarts: Option<u32>,
    /// A run longer than this resets the consecutive-restart count. Default 60s.
    pub reset_after: Duration,
}

/// The lifecycle handlers.
#[derive(Clone, Debug, Default)]
pub struct HandlersConfig {
    /// Runs before the main process starts; must exit 0 or the agent exits non-zero.
    pub pre_start: Option<HandlerConfig>,
    /// Runs every `interval`; a failure marks the node unhealthy.
    pub health: Option<HandlerConfig>,
    /// Runs on every role or primary change.
    pub on_change: Option<HandlerConfig>,
    /// Runs after this node won an election and before it promotes; non-zero aborts the
    /// promotion and releases the primary key.
    pub pre_promote: Option<HandlerConfig>,
    /// Runs before the main process is stopped.
    pub pre_stop: Option<HandlerConfig>,
    /// Runs after the main process stopped.
    pub post_stop: Option<HandlerConfig>,
    /// Runs while the database is stopped for an `upgrade` request (installs the new
    /// program, e.g. `apt-get install -y mariadb-server=$AUTOPILOT_UPGRADE_VERSION`).
    pub upgrade: Option<HandlerConfig>,
    /// Runs, the database stopped again, when an upgraded node fails to start, to become
    /// healthy or to catch up within the deadline (reinstalls the previous program).
    pub rollback: Option<HandlerConfig>,
}

/// One handler: what to exec and its limits.
#[derive(Clone, Debug)]
pub struct HandlerConfig {
    /// Program and arguments; never empty.
    pub exec: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<EnvVar>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Kill the handler's process group after this. Always set (a default applies).
    pub timeout: Duration,
    /// Only for `health` (required there) — run period.
    pub interval: Option<Duration>,
}

/// A periodic job.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// Unique name, used in logs and metric labels as `job:<name>`.
    pub name: String,
    /// The exec and its limits; `interval` is always `Some` for jobs.
    pub handler: HandlerConfig,
}

/// The telemetry HTTP listener.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    /// Where to listen; `None` disables the listener. Default `0.0.0.0:9187`.
    pub listen: Option<SocketAddr>,
    /// The listener's base URL as other nodes reach it (`http://host:port`), published as the
    /// node document's `agent_url`; `None` derives it (see [`TelemetryConfig::agent_url`]).
    pub advertise: Option<String>,
    /// `telemetry.tls`: the listener's certificate (it then serves HTTPS only) and the CA
    /// other agents' listeners are verified against; `None`: plain HTTP, peers over
    /// `https://` cannot be verified.
    pub tls: Option<ListenerTls>,
    /// `telemetry.top_statements`: how many of the database's top statements (by total
    /// execution time) `/statements` and the `autopilot_top_statement_*` gauges show; 0
    /// switches the database's statement statistics off. Default 10, at most 100.
    pub top_statements: u32,
}

/// TLS material of the agent's HTTP listener, read into memory at load time (and checked:
/// the certificate and key parse and belong together, the CA holds a certificate).
#[derive(Clone, Debug)]
pub struct ListenerTls {
    /// The certificate chain and key the listener presents; `None` serves plain HTTP.
    pub identity: Option<TlsIdentity>,
    /// PEM CA bundle this agent trusts when it fetches a clone stream from another agent's
    /// `https://` listener. Only these CAs are trusted (no system roots).
    pub ca: Option<PemFile>,
}

impl TelemetryConfig {
    /// Whether the listener serves HTTPS (`telemetry.tls.cert` is set).
    pub fn https(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.identity.is_some())
    }

    /// The base URL peers reach this agent's listener at: `advertise`, else
    /// `http://<listen>` (`https://` with a certificate) with an unspecified IP (0.0.0.0,
    /// ::) replaced by `node_address`. `None` without a listener.
    pub fn agent_url(&self, node_address: &str) -> Option<String> {
        if let Some(a) = &self.advertise {
            return Some(a.clone());
        }
        let listen = self.listen?;
        let host = if listen.ip().is_unspecified() {
            node_address.to_owned()
        } else {
            listen.ip().to_string()
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let scheme = if self.https() { "https" } else { "http" };
        Some(format!("{scheme}://{host}:{}", listen.port()))
    }
}

/// Logging.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive, e.g. `info` or `autopilot=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
    /// The format on stderr (syslog and the journal have their own).
    pub format: LogFormat,
    /// Whether records go to stderr (the default output).
    pub stderr: bool,
    /// Where RFC 5424 syslog records go, when syslog is an output.
    pub syslog: Option<SyslogConfig>,
    /// Whether records go to the systemd journal (native protocol).
    pub journal: bool,
}

/// A syslog receiver: RFC 5424 messages with this facility and APP-NAME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogConfig {
    /// Where and how to send.
    pub transport: SyslogTransport,
    /// The facility's number (daemon = 3, local0 = 16, …).
    pub facility: u8,
    /// The APP-NAME field: 1 to 48 printable ASCII characters.
    pub app_name: String,
}

/// How syslog messages travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    /// One datagram per message to a local Unix socket, e.g. `/dev/log`.
    Unix(PathBuf),
    /// One datagram per message to `host:port` (RFC 5426).
    Udp(String),
    /// A stream to `host:port`, octet-counting framing (RFC 6587).
    Tcp(String),
}

impl SyslogTransport {
    /// The address as configured: `unix:/dev/log`, `udp://host:port`, `tcp://host:port`.
    pub fn address(&self) -> String {
        match self {
            Self::Unix(p) => format!("unix:{}", p.display()),
            Self::Udp(a) => format!("udp://{a}"),
            Self::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// Syslog facilities by name (RFC 5424 table 1).
pub const SYSLOG_FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One environment variable of a handler or the main process.
#[derive(Clone, Debug)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

/// An environment value: plain text from the YAML, or a secret read at load time.
#[derive(Clone, Debug)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

/// A database account: a user name and its password (from a file or an environment variable).
#[derive(Clone, Debug)]
pub struct DbAccount {
    /// User (MariaDB) or role (PostgreSQL) name.
    pub user: String,
    /// The password.
    pub password: Secret,
}

impl EnvVar {
    /// The `(name, value)` pair handed to a child process.
    pub fn pair(&self) -> (String, String) {
        let value = match &self.value {
            EnvValue::Plain(v) => v.clone(),
            EnvValue::Secret(s) => s.expose().to_owned(),
        };
        (self.name.clone(), value)
    }
}
