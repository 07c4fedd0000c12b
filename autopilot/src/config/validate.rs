//! Stage two: raw structs → validated [`Config`], collecting every problem.
//!
//! Every raw struct is destructured field by field, so adding a field to `raw.rs` without
//! handling it here does not compile. Problems are recorded with a field path and whether they
//! concern the key or the value; [`Validator::finish`] turns them into [`Problem`]s with line
//! and column via `locate.rs`. Relative paths (`cwd`, `password_file`, `env.*.file`) resolve
//! against the config file's directory; secrets are read at load time (leaf checks: `leaves.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::{self, show};
use super::error::Problem;
use super::locate::{FieldPath, Target, locate_or_parent};
use super::model::*;
use super::raw::*;
use super::secrets::EnvLookup;

/// How the host name is found when `node.name` is not set; tests inject their own.
pub(crate) type HostLookup<'a> = &'a dyn Fn() -> Result<String, String>;

/// What validation needs besides the raw structs.
pub(crate) struct Validator<'a> {
    /// The YAML text, to locate problems.
    pub(super) text: &'a str,
    /// The config file's directory; relative paths resolve against it.
    pub(super) base_dir: PathBuf,
    /// Environment variables, for `{env: VAR}` secrets.
    pub(super) env: EnvLookup<'a>,
    /// The host name, the default node name.
    pub(super) hostname: HostLookup<'a>,
    /// Problems so far: where, key or value, message.
    pub(super) problems: Vec<(FieldPath, Option<FieldPath>, Target, String)>,
}

fn root(key: &str) -> FieldPath {
    FieldPath::default().key(key)
}

impl<'a> Validator<'a> {
    pub(crate) fn new(
        source: &Path,
        text: &'a str,
        env: EnvLookup<'a>,
        hostname: HostLookup<'a>,
    ) -> Self {
        let base_dir = source.parent().map(Path::to_path_buf).unwrap_or_default();
        Self {
            text,
            base_dir,
            env,
            hostname,
            problems: Vec::new(),
        }
    }

    /// Record a problem located at `field` itself.
    pub(super) fn problem(
        &mut self,
        field: &FieldPath,
        target: Target,
        message: impl Into<String>,
    ) {
        self.problems
            .push((field.clone(), None, target, message.into()));
    }

    /// Record a problem about `field` that is shown at the key `at` (e.g. a missing section).
    fn problem_at(&mut self, field: &FieldPath, at: &FieldPath, message: impl Into<String>) {
        self.problems
            .push((field.clone(), Some(at.clone()), Target::Key, message.into()));
    }

    /// Turn the recorded problems into located [`Problem`]s, in file order; problems without a
    /// place come last.
    fn finish(self) -> Vec<Problem> {
        let mut out: Vec<Problem> = self
            .problems
            .into_iter()
            .map(|(field, at, target, message)| {
                let pos = locate_or_parent(self.text, at.as_ref().unwrap_or(&field), target);
                Problem {
                    line: pos.map(|p| p.0),
                    column: pos.map(|p| p.1),
                    field: field.to_string(),
                    message,
                }
            })
            .collect();
        out.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
        out
    }

    /// Validate the whole file.
    pub(crate) fn validate(
        mut self,
        source: &Path,
        raw: RawConfig,
    ) -> Result<Config, Vec<Problem>> {
        let RawConfig {
            node,
            cluster,
            store,
            engine,
            process,
            handlers,
            jobs,
            telemetry,
            log,
        } = raw;
        let has_store = store.is_some();
        let node = self.node(node, has_store);
        let cluster = match cluster {
            Some(c) => Some(self.cluster(c)),
            None => {
                if has_store {
                    self.problem_at(
                        &root("cluster"),
                        &root("store"),
                        "required when store is set; expected cluster: {namespace: NS, project: P, name: N}",
                    );
                }
                None
            }
        };
        let store = store.map(|s| self.store(s));
        let engine = self.engine(engine);
        let process = match process {
            Some(p) => self.process(p),
            None => {
                self.problem(
                    &root("process"),
                    Target::Key,
                    "missing; expected a process section like process: {exec: [prog, arg]}",
                );
                placeholder_process()
            }
        };
        let handlers = self.handlers(handlers);
        let jobs = self.jobs(jobs);
        let telemetry = self.telemetry(telemetry);
        let log = self.log(log);

        let config = Config {
            source: source.to_path_buf(),
            node,
            cluster,
            store,
            // TODO(config): parse the `failover` section.
            failover: super::FailoverConfig {
                settle: Duration::from_millis(500),
                cooldown: Duration::from_secs(60),
                max_lag: None,
            },
            engine,
            process,
            handlers,
            jobs,
            telemetry,
            log,
        };
        let problems = self.finish();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    fn node(&mut self, raw: RawNode, has_store: bool) -> NodeConfig {
        let RawNode {
            name,
            address,
            priority,
            nofailover,
        } = raw;
        let at = root("node");
        let name = match name {
            Some(name) => {
                if let Err(e) = checks::node_name(&name) {
                    self.problem(&at.key("name"), Target::Value, e);
                }
                name
            }
            None => match (self.hostname)() {
                Ok(host) => {
                    if let Err(e) = checks::node_name(&host) {
                        self.problem(
                            &at.key("name"),
                            Target::Key,
                            format!("defaults to the host name, but {e}; set node.name"),
                        );
                    }
                    host
                }
                Err(e) => {
                    self.problem(
                        &at.key("name"),
                        Target::Key,
                        format!("cannot read the host name ({e}); expected node.name to be set"),
                    );
                    String::new()
                }
            },
        };
        let address = match address {
            Some(a) => {
                if a.is_empty() || a.contains(char::is_whitespace) || a.contains('/') {
                    self.problem(
                        &at.key("address"),
                        Target::Value,
                        format!("{a:?} is not an address; expected a host name or IP address like 10.0.0.5"),
                    );
                }
                a
            }
            None => {
                if has_store {
                    self.problem(
                        &at.key("address"),
                        Target::Key,
                        "required when store is set; expected the address other nodes reach this node at, like 10.0.0.5",
                    );
                }
                "127.0.0.1".to_owned()
            }
        };
        NodeConfig {
            name,
            address,
            priority: priority.unwrap_or(100),
            nofailover: nofailover.unwrap_or(false),
            // TODO(config): parse `node.state_dir`.
            state_dir: "/var/lib/autopilot".into(),
        }
    }

    fn cluster(&mut self, raw: RawCluster) -> ClusterConfig {
        let RawCluster {
            namespace,
            project,
            name,
        } = raw;
        let at = root("cluster");
        let part = |v: &mut Self, key: &str, value: Option<String>| match value {
            Some(s) => {
                if let Err(e) = checks::cluster_part(&s) {
                    v.problem(&at.key(key), Target::Value, e);
                }
                s
            }
            None => {
                v.problem(
                    &at.key(key),
                    Target::Key,
                    format!("required; expected cluster.{key} like production"),
                );
                String::new()
            }
        };
        ClusterConfig {
            namespace: part(self, "namespace", namespace),
            project: part(self, "project", project),
            name: part(self, "name", name),
        }
    }

    fn store(&mut self, raw: RawStore) -> StoreConfig {
        let RawStore { etcd, prefix, ttl } = raw;
        let at = root("store");
        let (endpoints, username, password) = match etcd {
            Some(etcd) => self.etcd(etcd),
            None => {
                self.problem(
                    &at.key("etcd"),
                    Target::Key,
                    "required; expected etcd: {endpoints: [http://127.0.0.1:2379]}",
                );
                (Vec::new(), None, None)
            }
        };
        let prefix = prefix.unwrap_or_else(|| "/autopilot".to_owned());
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains(char::is_whitespace)
        {
            self.problem(
                &at.key("prefix"),
                Target::Value,
                format!("{prefix:?} is not a key prefix; expected a path starting with '/' and not ending with '/', like /autopilot"),
            );
        }
        let ttl = self.duration(&at.key("ttl"), ttl, Duration::from_secs(10));
        if !(Duration::from_secs(2)..=Duration::from_secs(300)).contains(&ttl) {
            self.problem(
                &at.key("ttl"),
                Target::Value,
                format!(
                    "{} is out of range; expected a ttl between 2s and 300s",
                    show(ttl)
                ),
            );
        }
        StoreConfig {
            endpoints,
            prefix,
            ttl,
            username,
            password,
        }
    }

    fn etcd(&mut self, raw: RawEtcd) -> (Vec<String>, Option<String>, Option<Secret>) {
        let RawEtcd {
            endpoints,
            username,
            password_file,
            password_env,
            password,
        } = raw;
        let at = root("store").key("etcd");
        let endpoints = match endpoints {
            Some(list) if !list.is_empty() => {
                for (i, url) in list.iter().enumerate() {
                    if let Err(e) = checks::endpoint(url) {
                        self.problem(&at.key("endpoints").index(i), Target::Value, e);
                    }
                }
                list
            }
            Some(_) => {
                self.problem(
                    &at.key("endpoints"),
                    Target::Value,
                    "is empty; expected at least one URL like http://127.0.0.1:2379",
                );
                Vec::new()
            }
            None => {
                self.problem(
                    &at.key("endpoints"),
                    Target::Key,
                    "required; expected a list of URLs like [http://127.0.0.1:2379]",
                );
                Vec::new()
            }
        };
        if username.as_deref() == Some("") {
            self.problem(
                &at.key("username"),
                Target::Value,
                "is empty; expected an etcd user name or no username field",
            );
        }
        if password.is_some() {
            self.problem(
                &at.key("password"),
                Target::Key,
                "inline passwords are not allowed; expected password_file: PATH or password_env: VAR",
            );
        }
        let password = match (password_file, password_env) {
            (Some(_), Some(_)) => {
                self.problem(
                    &at.key("password_env"),
                    Target::Key,
                    "is set together with password_file; expected only one of password_file and password_env",
                );
                None
            }
            (Some(file), None) => self.secret_file(&at.key("password_file"), &file),
            (None, Some(var)) => self.secret_env(&at.key("password_env"), &var),
            (None, None) => None,
        };
        (endpoints, username, password)
    }

    fn engine(&mut self, raw: RawEngine) -> EngineConfig {
        let RawEngine { kind } = raw;
        let field = root("engine").key("kind");
        match kind.as_deref() {
            None | Some("process") => {}
            Some(k @ ("mariadb" | "mysql" | "postgres")) => self.problem(
                &field,
                Target::Value,
                format!("{k} is not supported by this build yet; supported: process"),
            ),
            Some(k) => self.problem(
                &field,
                Target::Value,
                format!("unknown engine kind {k:?}; supported: process"),
            ),
        }
        // TODO(config): parse `engine.port` and `engine.hooks`.
        EngineConfig {
            kind: EngineKind::Process,
            port: None,
            hooks: None,
        }
    }

    fn process(&mut self, raw: RawProcess) -> ProcessConfig {
        let RawProcess {
            exec,
            cwd,
            env,
            stop_timeout,
            restart,
        } = raw;
        let at = root("process");
        ProcessConfig {
            exec: self.exec(&at, exec),
            cwd: self.cwd(&at.key("cwd"), cwd),
            env: self.env(&at.key("env"), env),
            stop_timeout: self.duration(
                &at.key("stop_timeout"),
                stop_timeout,
                Duration::from_secs(30),
            ),
            restart: self.restart(&at.key("restart"), restart),
        }
    }

    fn restart(&mut self, at: &FieldPath, raw: Option<RawRestart>) -> RestartPolicy {
        let Some(raw) = raw else {
            return RestartPolicy::Never;
        };
        let RawRestart {
            policy,
            initial_backoff,
            max_backoff,
            max_restarts,
            reset_after,
        } = raw;
        let policy = policy.unwrap_or(RawPolicy::Never);
        if policy == RawPolicy::Never {
            let set = [
                ("initial_backoff", initial_backoff.is_some()),
                ("max_backoff", max_backoff.is_some()),
                ("max_restarts", max_restarts.is_some()),
                ("reset_after", reset_after.is_some()),
            ];
            for (key, is_set) in set {
                if is_set {
                    self.problem(
                        &at.key(key),
                        Target::Key,
                        "is only allowed with policy on-failure or always; expected no backoff settings with policy never",
                    );
                }
            }
            return RestartPolicy::Never;
        }
        let initial = self.duration(
            &at.key("initial_backoff"),
            initial_backoff,
            Duration::from_secs(1),
        );
        let max = self.duration(&at.key("max_backoff"), max_backoff, Duration::from_secs(30));
        if initial > max {
            self.problem(
                &at.key("initial_backoff"),
                Target::Value,
                format!(
                    "{} is longer than max_backoff {}; expected initial_backoff no longer than max_backoff",
                    show(initial),
                    show(max)
                ),
            );
        }
        let backoff = Backoff {
            initial,
            max,
            max_restarts: max_restarts.map_or(Some(10), |m| m.0),
            reset_after: self.duration(
                &at.key("reset_after"),
                reset_after,
                Duration::from_secs(60),
            ),
        };
        match policy {
            RawPolicy::OnFailure => RestartPolicy::OnFailure(backoff),
            RawPolicy::Always | RawPolicy::Never => RestartPolicy::Always(backoff),
        }
    }

    fn handlers(&mut self, raw: RawHandlers) -> HandlersConfig {
        let RawHandlers {
            pre_start,
            health,
            on_change,
            pre_stop,
            post_stop,
        } = raw;
        let at = root("handlers");
        let secs = Duration::from_secs;
        HandlersConfig {
            pre_start: pre_start.map(|h| self.handler(&at.key("preStart"), h, secs(60))),
            health: health.map(|h| self.health(&at.key("health"), h)),
            on_change: on_change.map(|h| self.handler(&at.key("onChange"), h, secs(60))),
            // TODO(config): parse `handlers.prePromote`.
            pre_promote: None,
            pre_stop: pre_stop.map(|h| self.handler(&at.key("preStop"), h, secs(30))),
            post_stop: post_stop.map(|h| self.handler(&at.key("postStop"), h, secs(30))),
        }
    }

    /// A handler without an interval.
    fn handler(
        &mut self,
        at: &FieldPath,
        raw: RawHandler,
        default_timeout: Duration,
    ) -> HandlerConfig {
        let RawHandler {
            exec,
            env,
            cwd,
            timeout,
            interval,
        } = raw;
        if interval.is_some() {
            let name = at.0.last().map(|s| match s {
                super::locate::Seg::Key(k) => k.clone(),
                super::locate::Seg::Index(i) => i.to_string(),
            });
            self.problem(
                &at.key("interval"),
                Target::Key,
                format!(
                    "is not allowed on {}; expected interval only on the health handler and jobs",
                    name.unwrap_or_default()
                ),
            );
        }
        HandlerConfig {
            exec: self.exec(at, exec),
            env: self.env(&at.key("env"), env),
            cwd: self.cwd(&at.key("cwd"), cwd),
            timeout: self.duration(&at.key("timeout"), timeout, default_timeout),
            interval: None,
        }
    }

    /// The health handler: interval required, timeout default min(interval, 10s).
    fn health(&mut self, at: &FieldPath, raw: RawHandler) -> HandlerConfig {
        let RawHandler {
            exec,
            env,
            cwd,
            timeout,
            interval,
        } = raw;
        let (interval, timeout) =
            self.interval_timeout(at, interval, timeout, Duration::from_secs(10), "health");
        HandlerConfig {
            exec: self.exec(at, exec),
            env: self.env(&at.key("env"), env),
            cwd: self.cwd(&at.key("cwd"), cwd),
            timeout,
            interval: Some(interval),
        }
    }

    /// Check a required interval and a timeout that defaults to min(interval, `cap`) and may
    /// not exceed the interval.
    fn interval_timeout(
        &mut self,
        at: &FieldPath,
        interval: Option<RawDuration>,
        timeout: Option<RawDuration>,
        cap: Duration,
        what: &str,
    ) -> (Duration, Duration) {
        let interval = match interval {
            Some(_) => self.duration(&at.key("interval"), interval, Duration::from_secs(1)),
            None => {
                self.problem(
                    &at.key("interval"),
                    Target::Key,
                    format!("required for {what}; expected an interval like 10s"),
                );
                Duration::from_secs(1)
            }
        };
        let timeout = match timeout {
            Some(_) => {
                let t = self.duration(&at.key("timeout"), timeout, interval);
                if t > interval {
                    self.problem(
                        &at.key("timeout"),
                        Target::Value,
                        format!(
                            "{} is longer than the interval {}; expected a timeout no longer than the interval",
                            show(t),
                            show(interval)
                        ),
                    );
                }
                t
            }
            None => interval.min(cap),
        };
        (interval, timeout)
    }

    fn jobs(&mut self, raw: Vec<RawJob>) -> Vec<JobConfig> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, job) in raw.into_iter().enumerate() {
            let RawJob {
                name,
                exec,
                env,
                cwd,
                interval,
                timeout,
            } = job;
            let at = root("jobs").index(i);
            let name = match name {
                Some(name) => {
                    if let Err(e) = checks::job_name(&name) {
                        self.problem(&at.key("name"), Target::Value, e);
                    } else if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                        self.problem(
                            &at.key("name"),
                            Target::Value,
                            format!("duplicate job name {name:?} (also jobs[{first}].name); expected unique job names"),
                        );
                    } else {
                        seen.push((name.clone(), i));
                    }
                    name
                }
                None => {
                    self.problem(
                        &at.key("name"),
                        Target::Key,
                        "required; expected a job name like rotate-logs",
                    );
                    String::new()
                }
            };
            let (interval, timeout) =
                self.interval_timeout(&at, interval, timeout, Duration::MAX, "a job");
            out.push(JobConfig {
                name,
                handler: HandlerConfig {
                    exec: self.exec(&at, exec),
                    env: self.env(&at.key("env"), env),
                    cwd: self.cwd(&at.key("cwd"), cwd),
                    timeout,
                    interval: Some(interval),
                },
            });
        }
        out
    }

    fn telemetry(&mut self, raw: RawTelemetry) -> TelemetryConfig {
        let RawTelemetry { listen } = raw;
        let default: SocketAddr = ([0, 0, 0, 0], 9187).into();
        let listen = match listen.as_deref() {
            None => Some(default),
            Some("off") => None,
            Some(s) => match s.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        &root("telemetry").key("listen"),
                        Target::Value,
                        format!("{s:?} is not a socket address; expected IP:PORT like 0.0.0.0:9187, or off"),
                    );
                    Some(default)
                }
            },
        };
        TelemetryConfig { listen }
    }

    fn log(&mut self, raw: RawLog) -> LogConfig {
        let RawLog { level, format } = raw;
        let level = level.unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            self.problem(
                &root("log").key("level"),
                Target::Value,
                format!("{level:?} is not a log filter ({e}); expected a level like info or directives like autopilot=debug,info"),
            );
        }
        let format = match format {
            None | Some(RawLogFormat::Text) => LogFormat::Text,
            Some(RawLogFormat::Json) => LogFormat::Json,
        };
        LogConfig { level, format }
    }
}

/// Stands in for a missing `process` section so validation can go on collecting problems.
fn placeholder_process() -> ProcessConfig {
    ProcessConfig {
        exec: Vec::new(),
        cwd: None,
        env: Vec::new(),
        stop_timeout: Duration::from_secs(30),
        restart: RestartPolicy::Never,
    }
}
