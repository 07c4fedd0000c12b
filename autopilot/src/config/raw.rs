//! The file as written: serde structs that mirror the YAML one to one.
//!
//! Every struct denies unknown fields, so a typo is an error that names the field and lists the
//! expected ones. Fields that are required are still `Option` here: `validate.rs` reports a
//! missing field together with every other problem instead of stopping at the first one.
//! Leaf types that need a better message than serde's (durations, exec lists, env values,
//! `max_restarts`, `max_lag`, `port`) have their own `Deserialize`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Who this node is.
    pub node: RawNode,
    /// The cluster names; required with `store`.
    pub cluster: Option<RawCluster>,
    /// The etcd store; absent means standalone.
    pub store: Option<RawStore>,
    /// Failover tuning; defaults apply when absent.
    pub failover: Option<RawFailover>,
    /// The engine kind.
    pub engine: RawEngine,
    /// The main process; required (checked in validate, with the other problems).
    pub process: Option<RawProcess>,
    /// Lifecycle handlers.
    pub handlers: RawHandlers,
    /// Periodic jobs.
    pub jobs: Vec<RawJob>,
    /// Metrics listener.
    pub telemetry: RawTelemetry,
    /// Logging.
    pub log: RawLog,
    /// Backups.
    pub backup: Option<super::raw_backup::RawBackup>,
    /// The package watch.
    pub packages: Option<RawPackages>,
}

/// `packages:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPackages {
    /// Debian package names; required, not empty.
    pub watch: Option<Vec<String>>,
    /// How often to check; default 24h (jittered).
    pub interval: Option<RawDuration>,
    /// Limit of each query command; default 60s.
    pub timeout: Option<RawDuration>,
    /// Extra environment of the query commands (`APT_CONFIG`, `DPKG_ADMINDIR`).
    pub env: RawEnv,
    /// The operator's index refresh, run before each check.
    pub refresh: Option<RawHandler>,
}

/// `node:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawNode {
    /// Node id; default: the host name.
    pub name: Option<String>,
    /// Address peers reach the database at; default 127.0.0.1 unless `store` is set.
    pub address: Option<String>,
    /// Failover preference; default 100.
    pub priority: Option<u32>,
    /// Never promote automatically; default false.
    pub nofailover: Option<bool>,
    /// Local state directory; default `/var/lib/autopilot`, relative to the config directory.
    pub state_dir: Option<String>,
}

/// `cluster:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCluster {
    /// First etcd path part.
    pub namespace: Option<String>,
    /// Second etcd path part.
    pub project: Option<String>,
    /// Third etcd path part.
    pub name: Option<String>,
    /// How a new cluster gets its data.
    pub bootstrap: Option<RawBootstrap>,
}

/// `cluster.bootstrap:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawBootstrap {
    /// Start the cluster from a backup instead of an empty database.
    pub from_backup: Option<RawFromBackup>,
    /// Start the cluster as a replica of an external database (a live migration).
    pub migrate_from: Option<RawMigrateFrom>,
}

/// `cluster.bootstrap.migrate_from:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMigrateFrom {
    /// The source's host name or address; required.
    pub host: Option<String>,
    /// The source's port; required.
    pub port: Option<RawPort>,
    /// The account this cluster replicates with; required.
    pub account: Option<RawAccount>,
    /// PostgreSQL: a physical replication slot on the source.
    pub slot: Option<String>,
}

/// `cluster.bootstrap.from_backup:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawFromBackup {
    /// A name in `backup.repositories`; required.
    pub repository: Option<String>,
    /// `namespace/project/name` of the cluster the backup was taken of; default this cluster.
    pub cluster: Option<String>,
    /// `latest` (default) or a backup id.
    pub backup: Option<String>,
    /// A point in time (RFC 3339) to recover to with the archive (PostgreSQL).
    pub time: Option<String>,
}

/// `store:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawStore {
    /// How to reach etcd; required.
    pub etcd: Option<RawEtcd>,
    /// Key prefix; default `/autopilot`.
    pub prefix: Option<String>,
    /// Lease TTL; default 10s.
    pub ttl: Option<RawDuration>,
}

/// `store.etcd:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawEtcd {
    /// Member URLs; required, non-empty.
    pub endpoints: Option<Vec<String>>,
    /// Optional etcd user.
    pub username: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// Accepted only to reject it with a helpful message; its value is never shown.
    pub password: Option<de::IgnoredAny>,
    /// TLS to etcd; requires https:// endpoints.
    pub tls: Option<RawTls>,
}

/// A database account (`engine.mariadb.credentials.*`, `engine.postgres.{superuser,replication}`):
/// a user name and where its password comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawAccount {
    /// User name; required.
    pub user: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// Accepted only to reject it with a helpful message; its value is never shown.
    pub password: Option<de::IgnoredAny>,
}

/// `store.etcd.tls:`; every file is optional, but `cert_file` and `key_file` go together.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM CA certificate(s) the etcd server certificate must chain to.
    pub ca_file: Option<String>,
    /// PEM client certificate, for etcd's `--client-cert-auth`.
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
}

/// `failover:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawFailover {
    /// Wait before comparing positions; default 500ms, shorter than `store.ttl`.
    pub settle: Option<RawDuration>,
    /// Quiet period after a failover; default 60s, may be 0s.
    pub cooldown: Option<RawDuration>,
    /// Lag beyond which a replica does not compete; default unlimited.
    pub max_lag: Option<MaxLag>,
}

/// `engine:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawEngine {
    /// Engine kind; default `process`. A string so unsupported kinds get a specific message.
    pub kind: Option<String>,
    /// The database port; required with `store`. Range-checked in validate.
    pub port: Option<RawPort>,
    /// `process` only: the role hooks; required (all five) with `store`.
    pub hooks: Option<RawHooks>,
    /// `mariadb` only: the engine's settings.
    pub mariadb: Option<super::raw_mariadb::RawMariadb>,
    /// Re-clone a node whose data diverged from the primary's; default false.
    pub auto_rebuild: Option<bool>,
    /// Where a node without data gets its first copy: `primary` (default), `backup`, `auto`.
    pub seed: Option<String>,
    /// `postgres` only: its settings (`config/postgres.rs`).
    pub postgres: Option<super::postgres::RawPostgres>,
}

/// `engine.hooks:`; every hook is optional here so each missing one is reported.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawHooks {
    /// Print the replication position.
    pub position: Option<RawHandler>,
    /// Become the writable primary.
    pub promote: Option<RawHandler>,
    /// Replicate from the primary.
    pub follow: Option<RawHandler>,
    /// Refuse writes and print the final position.
    pub fence: Option<RawHandler>,
    /// Undo `fence`.
    pub unfence: Option<RawHandler>,
}

/// `process:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawProcess {
    /// Program and arguments; required.
    pub exec: Option<Exec>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Extra environment.
    pub env: RawEnv,
    /// Grace period after the stop signal; default 30s.
    pub stop_timeout: Option<RawDuration>,
    /// Restart policy; default on-failure with a store, never without.
    pub restart: Option<RawRestart>,
    /// Run the main process as this OS user; default: the agent's user.
    pub user: Option<String>,
}

/// `process.restart:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRestart {
    /// never | on-failure | always; default on-failure with a store, never without.
    pub policy: Option<RawPolicy>,
    /// First delay; default 1s.
    pub initial_backoff: Option<RawDuration>,
    /// Delay cap; default 30s.
    pub max_backoff: Option<RawDuration>,
    /// Consecutive restarts before giving up; default 10.
    pub max_restarts: Option<MaxRestarts>,
    /// Run time that resets the restart count; default 60s.
    pub reset_after: Option<RawDuration>,
}

/// `process.restart.policy`
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum RawPolicy {
    Never,
    OnFailure,
    Always,
}

/// `handlers:`; keys are camelCase as in the design sketch.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawHandlers {
    #[serde(rename = "preStart")]
    pub pre_start: Option<RawHandler>,
    pub health: Option<RawHandler>,
    #[serde(rename = "onChange")]
    pub on_change: Option<RawHandler>,
    #[serde(rename = "prePromote")]
    pub pre_promote: Option<RawHandler>,
    #[serde(rename = "preStop")]
    pub pre_stop: Option<RawHandler>,
    #[serde(rename = "postStop")]
    pub post_stop: Option<RawHandler>,
    pub upgrade: Option<RawHandler>,
    pub rollback: Option<RawHandler>,
}

/// One handler.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawHandler {
    /// Program and arguments; required.
    pub exec: Option<Exec>,
    /// Extra environment.
    pub env: RawEnv,
    /// Working directory.
    pub cwd: Option<String>,
    /// Kill after this; default depends on the handler.
    pub timeout: Option<RawDuration>,
    /// Only for `health`, where it is required.
    pub interval: Option<RawDuration>,
}

/// One entry of `jobs:`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawJob {
    /// Unique name; required.
    pub name: Option<String>,
    /// Program and arguments; required.
    pub exec: Option<Exec>,
    /// Extra environment.
    pub env: RawEnv,
    /// Working directory.
    pub cwd: Option<String>,
    /// Run period; required.
    pub interval: Option<RawDuration>,
    /// Kill after this; default: the interval.
    pub timeout: Option<RawDuration>,
}

/// `telemetry:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    /// `host:port` or `off`; default `0.0.0.0:9187`.
    pub listen: Option<String>,
    /// `http://host:port` peers reach the listener at; default derived from `listen`.
    pub advertise: Option<String>,
    /// HTTPS on the listener and the CA peers' listeners are verified against.
    pub tls: Option<RawListenerTls>,
    /// How many of the database's top statements to export; 0 switches statistics off.
    pub top_statements: Option<i64>,
}

/// `telemetry.tls:`; `cert` and `key` go together, `ca` may stand alone.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawListenerTls {
    /// PEM certificate chain the listener presents; the listener then serves HTTPS only.
    pub cert: Option<String>,
    /// PEM private key of `cert`.
    pub key: Option<String>,
    /// PEM CA bundle this agent verifies other agents' listeners against (clone streams).
    pub ca: Option<String>,
}

/// `log:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawLog {
    /// EnvFilter directive; default `info`.
    pub level: Option<String>,
    /// text | json (stderr's format); default text.
    pub format: Option<RawLogFormat>,
    /// Where log records go: any of stderr, syslog, journal; default [stderr].
    pub output: Option<Vec<RawLogOutput>>,
    /// The syslog receiver, when `output` includes syslog.
    pub syslog: Option<RawSyslog>,
}

/// One of `log.output`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLogOutput {
    Stderr,
    Syslog,
    Journal,
}

/// `log.syslog:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSyslog {
    /// `unix:/dev/log` (default), `udp://host:port` or `tcp://host:port`.
    pub address: Option<String>,
    /// Facility name (`daemon` by default, `local0`…`local7`, …).
    pub facility: Option<String>,
    /// RFC 5424 APP-NAME; default `autopilot`.
    pub app_name: Option<String>,
}

/// `log.format`
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawLogFormat {
    Text,
    Json,
}

/// A duration written as `10s`, `500ms`, `1m30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawDuration(pub Duration);

/// What a duration should look like; used in every duration message.
pub(crate) const DURATION_EXPECTED: &str = "expected a duration like 10s or 500ms";

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 10s or 500ms")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
                if s.trim_start().starts_with('-') {
                    return Err(E::custom(format!(
                        "{s} is negative; expected a positive duration like 10s or 500ms"
                    )));
                }
                humantime::parse_duration(s)
                    .map(RawDuration)
                    .map_err(|_| E::custom(format!("{s} is not a duration; {DURATION_EXPECTED}")))
            }
        }
        de.deserialize_str(V)
    }
}

/// A program and its arguments; a plain string is rejected with a hint to write a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Exec(pub Vec<String>);

impl<'de> Deserialize<'de> for Exec {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Exec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings like [prog, arg]")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Exec, E> {
                Err(E::custom(format!(
                    "is the string {s:?}; expected a list like [prog, arg] (no shell splitting is done)"
                )))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Exec, A::Error> {
                let mut out = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    out.push(arg);
                }
                Ok(Exec(out))
            }
        }
        de.deserialize_any(V)
    }
}

/// An environment mapping, kept in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawEnv(pub Vec<(String, RawEnvValue)>);

impl<'de> Deserialize<'de> for RawEnv {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEnv;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of NAME: value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEnv, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, RawEnvValue>()? {
                    out.push((k, v));
                }
                Ok(RawEnv(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawEnv, E> {
                Ok(RawEnv::default())
            }
        }
        de.deserialize_map(V)
    }
}

/// An environment value as written: text, or where to read a secret from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RawEnvValue {
    /// `NAME: "text"`
    Plain(String),
    /// `NAME: { file: PATH }`
    File(String),
    /// `NAME: { env: VAR }`
    Env(String),
}

/// What an env value should look like.
const ENV_EXPECTED: &str =
    "expected a string (quote numbers and booleans), {file: PATH} or {env: VAR}";

impl<'de> Deserialize<'de> for RawEnvValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEnvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ENV_EXPECTED.trim_start_matches("expected "))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawEnvValue, E> {
                Ok(RawEnvValue::Plain(s.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEnvValue, A::Error> {
                let mut found: Option<RawEnvValue> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value = match key.as_str() {
                        "file" => RawEnvValue::File(map.next_value()?),
                        "env" => RawEnvValue::Env(map.next_value()?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}`; {ENV_EXPECTED}"
                            )));
                        }
                    };
                    if found.is_some() {
                        return Err(de::Error::custom(format!(
                            "has both `file` and `env`; {ENV_EXPECTED}"
                        )));
                    }
                    found = Some(value);
                }
                found.ok_or_else(|| {
                    de::Error::custom(format!("is an empty mapping; {ENV_EXPECTED}"))
                })
            }
        }
        de.deserialize_any(V)
    }
}

/// `engine.port` as written: any integer, so that the range is checked (and reported with the
/// other problems) in validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawPort(pub i64);

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawPort, E> {
                Ok(RawPort(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RawPort, E> {
                Ok(RawPort(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPort, E> {
                Err(E::custom(format!(
                    "{s:?} is not a port number; expected a port number from 1 to 65535, e.g. port: 6379"
                )))
            }
        }
        de.deserialize_any(V)
    }
}

/// A whole number type usable in [`Limit`].
pub(crate) trait Whole: Copy + TryFrom<u64> {
    /// The largest value, for the message.
    const MAX: u64;
}

impl Whole for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Whole for u64 {
    const MAX: u64 = u64::MAX;
}

/// A non-negative count or `unlimited` (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limit<T>(pub Option<T>);

/// `process.restart.max_restarts`.
pub(crate) type MaxRestarts = Limit<u32>;

/// `failover.max_lag`.
pub(crate) type MaxLag = Limit<u64>;

impl<'de, T: Whole> Deserialize<'de> for Limit<T> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: Whole> Visitor<'_> for V<T> {
            type Value = Limit<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number or `unlimited`")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Limit<T>, E> {
                T::try_from(n).map(|n| Limit(Some(n))).map_err(|_| {
                    E::custom(format!(
                        "{n} is too large; expected a whole number up to {} or `unlimited`",
                        T::MAX
                    ))
                })
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Limit<T>, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "{n} is negative; expected a whole number or `unlimited`"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Limit<T>, E> {
                if s == "unlimited" {
                    Ok(Limit(None))
                } else {
                    Err(E::custom(format!(
                        "{s:?} is not a count; expected a whole number or `unlimited`"
                    )))
                }
            }
        }
        de.deserialize_any(V(std::marker::PhantomData))
    }
}
