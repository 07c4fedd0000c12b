//! Stage two: raw structs → validated [`Config`], collecting every problem.
//!
//! Every raw struct is destructured field by field, so adding a field to `raw.rs` without
//! handling it here does not compile. Problems are recorded with a field path and whether they
//! concern the key or the value; [`Validator::finish`] turns them into [`Problem`]s with line
//! and column via `locate.rs`. Relative paths (`cwd`, `state_dir`, `password_file`,
//! `env.*.file`, `store.etcd.tls.*`, `telemetry.tls.*`) resolve against the config file's directory; secrets
//! and TLS files are read at load time.
//! Leaf checks live in `leaves.rs`; the engine, its hooks, handlers and jobs in
//! `validate_handlers.rs`; `store.etcd.tls` and `telemetry.tls` in `validate_tls.rs`.

use cluster::secret::{EtcdTls, Secret};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::Problem;
use super::locate::{FieldPath, Target, locate_or_parent};
use super::model::*;
use super::raw::*;
use super::secrets::EnvLookup;
use super::validate_handlers::EngineKind;
use super::values::{self, show};

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

pub(super) fn root(key: &str) -> FieldPath {
    FieldPath::default().key(key)
}

impl<'a> Validator<'a> {
    pub(crate) fn new(
        source: &Path,
        text: &'a str,
        env: EnvLookup<'a>,
        hostname: HostLookup<'a>,
    ) -> Self {
        // Relative paths resolve once, here, against the file's directory made absolute: the
        // agent, the database (a replica's `passfile` in `primary_conninfo` is resolved by
        // PostgreSQL inside its data directory) and every handler see absolute paths.
        let base_dir = absolute(source.parent().unwrap_or(Path::new("")));
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
    pub(super) fn problem_at(
        &mut self,
        field: &FieldPath,
        at: &FieldPath,
        message: impl Into<String>,
    ) {
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
            failover,
            engine,
            process,
            handlers,
            jobs,
            telemetry,
            log,
            backup,
            packages,
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
        let failover = self.failover(failover, store.as_ref().map(|s| s.ttl));
        let (kind, engine) = self.engine(engine, has_store);
        let process = match process {
            Some(p) => self.process(p, kind, has_store),
            None if kind != EngineKind::Process => {
                self.process(RawProcess::default(), kind, has_store)
            }
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
        let backup = backup.map(|b| self.backup(b, &node.state_dir, kind));
        let packages = packages.map(|p| self.packages(p));
        if let Some(m) = cluster.as_ref().and_then(|c| c.migrate_from.as_ref()) {
            let at = root("cluster").key("bootstrap").key("migrate_from");
            if kind == EngineKind::Process {
                self.problem(
                    &at,
                    Target::Key,
                    "is only for engine.kind mariadb or postgres; expected no migrate_from with this engine",
                );
            } else if kind != EngineKind::Postgres && m.slot.is_some() {
                self.problem(
                    &at.key("slot"),
                    Target::Key,
                    "is only for engine.kind postgres (MariaDB replicates by GTID, without slots); expected no slot",
                );
            }
        }
        self.backup_sources(
            kind,
            engine.as_ref().map(EngineConfig::seed),
            cluster.as_ref().and_then(|c| c.from_backup.as_ref()),
            backup.as_ref(),
        );

        let problems = self.finish();
        match engine {
            Some(engine) if problems.is_empty() => Ok(Config {
                source: source.to_path_buf(),
                node,
                cluster,
                store,
                failover,
                engine,
                process,
                handlers,
                jobs,
                telemetry,
                log,
                backup,
                packages,
            }),
            engine => {
                debug_assert!(
                    engine.is_some() || !problems.is_empty(),
                    "the engine is missing only after a problem was recorded"
                );
                Err(problems)
            }
        }
    }

    fn node(&mut self, raw: RawNode, has_store: bool) -> NodeConfig {
        let RawNode {
            name,
            address,
            priority,
            nofailover,
            state_dir,
        } = raw;
        let at = root("node");
        let name = match name {
            Some(name) => {
                if let Err(e) = values::node_name(&name) {
                    self.problem(&at.key("name"), Target::Value, e);
                }
                name
            }
            None => match (self.hostname)() {
                Ok(host) => {
                    if let Err(e) = values::node_name(&host) {
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
            state_dir: self.state_dir(&at.key("state_dir"), state_dir),
        }
    }

    /// `node.state_dir`: default `/var/lib/autopilot`, relative to the config directory.
    fn state_dir(&mut self, field: &FieldPath, raw: Option<String>) -> PathBuf {
        let default = PathBuf::from("/var/lib/autopilot");
        match raw {
            None => default,
            Some(dir) if dir.is_empty() => {
                self.problem(
                    field,
                    Target::Value,
                    "is empty; expected a directory path like /var/lib/autopilot",
                );
                default
            }
            Some(dir) => self.resolve(&dir),
        }
    }

    fn cluster(&mut self, raw: RawCluster) -> ClusterConfig {
        let RawCluster {
            namespace,
            project,
            name,
            bootstrap,
        } = raw;
        let at = root("cluster");
        let part = |v: &mut Self, key: &str, value: Option<String>| match value {
            Some(s) => {
                if let Err(e) = values::cluster_part(&s) {
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
        let (from_backup, migrate_from) = bootstrap.map_or((None, None), |b| {
            let RawBootstrap {
                from_backup,
                migrate_from,
            } = b;
            (from_backup, migrate_from)
        });
        if from_backup.is_some() && migrate_from.is_some() {
            self.problem(
                &at.key("bootstrap").key("migrate_from"),
                Target::Key,
                "is set together with from_backup; expected one of them: a new cluster starts from a backup or as a replica of an external database",
            );
        }
        let from_backup = from_backup
            .and_then(|f| self.bootstrap_backup(&at.key("bootstrap").key("from_backup"), f));
        let migrate_from = migrate_from
            .and_then(|m| self.migrate_from(&at.key("bootstrap").key("migrate_from"), m));
        ClusterConfig {
            namespace: part(self, "namespace", namespace),
            project: part(self, "project", project),
            name: part(self, "name", name),
            from_backup,
            migrate_from,
        }
    }

    /// `cluster.bootstrap.migrate_from`: where the source is, the account, the slot.
    fn migrate_from(&mut self, at: &FieldPath, raw: RawMigrateFrom) -> Option<MigrateFrom> {
        let RawMigrateFrom {
            host,
            port,
            account,
            slot,
        } = raw;
        let host = match host {
            Some(h) if !h.trim().is_empty() && !h.contains(char::is_whitespace) => Some(h),
            Some(h) => {
                self.problem(
                    &at.key("host"),
                    Target::Value,
                    format!("{h:?} is not a host; expected a host name or address like db-old.example.com"),
                );
                None
            }
            None => {
                self.problem(
                    &at.key("host"),
                    Target::Key,
                    "required; expected the source database's host, e.g. host: db-old.example.com",
                );
                None
            }
        };
        let port = match port {
            Some(RawPort(p)) => self.port_number(&at.key("port"), p),
            None => {
                self.problem(
                    &at.key("port"),
                    Target::Key,
                    "required; expected the source database's port, e.g. port: 5432",
                );
                None
            }
        };
        let account = self.db_account(&at.key("account"), account, 63, "migrator");
        let slot = slot.and_then(|s| {
            let ok = !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if ok {
                Some(s)
            } else {
                self.problem(
                    &at.key("slot"),
                    Target::Value,
                    format!("{s:?} is not a replication slot name; expected 1 to 63 lowercase letters, digits or underscores, e.g. slot: autopilot_migration"),
                );
                None
            }
        });
        Some(MigrateFrom {
            host: host?,
            port: port?,
            account: account?,
            slot,
        })
    }

    /// `cluster.bootstrap.from_backup`, its own fields; that the repository exists and the
    /// backup section has an identity is checked in [`Self::backup_sources`].
    fn bootstrap_backup(&mut self, at: &FieldPath, raw: RawFromBackup) -> Option<FromBackup> {
        let RawFromBackup {
            repository,
            cluster,
            backup,
            time,
        } = raw;
        let time = time.and_then(|t| match humantime::parse_rfc3339_weak(&t) {
            Ok(_) => Some(t),
            Err(_) => {
                self.problem(
                    &at.key("time"),
                    Target::Value,
                    format!("{t:?} is not an RFC 3339 time; expected e.g. 2026-12-04T03:20:00Z"),
                );
                None
            }
        });
        let repository = match repository {
            Some(r) => Some(r),
            None => {
                self.problem(
                    &at.key("repository"),
                    Target::Key,
                    "required; expected the name of a repository in backup.repositories, like repository: offsite",
                );
                None
            }
        };
        let cluster = cluster.and_then(|c| {
            let parts: Vec<&str> = c.split('/').collect();
            let expected = "expected namespace/project/name like prod/shop/orders";
            let [namespace, project, name] = parts[..] else {
                self.problem(
                    &at.key("cluster"),
                    Target::Value,
                    format!("{c:?} is not a cluster; {expected}"),
                );
                return None;
            };
            for part in [namespace, project, name] {
                if let Err(e) = values::cluster_part(part) {
                    self.problem(
                        &at.key("cluster"),
                        Target::Value,
                        format!("{c:?} is not a cluster ({e}); {expected}"),
                    );
                    return None;
                }
            }
            Some((namespace.to_owned(), project.to_owned(), name.to_owned()))
        });
        let backup = match backup.as_deref() {
            None | Some("latest") => BackupChoice::Latest,
            Some(id) => match backup::repo::BackupId::parse(id) {
                Ok(id) => BackupChoice::Id(id.as_str().to_owned()),
                Err(_) => {
                    self.problem(
                        &at.key("backup"),
                        Target::Value,
                        format!("{id:?} is not a backup id; expected latest or an id like 20261203T020000Z-1a2b3c4d (YYYYMMDDTHHMMSSZ-, 8 lowercase hex digits; autopilotctl backup list shows them)"),
                    );
                    BackupChoice::Latest
                }
            },
        };
        Some(FromBackup {
            repository: repository?,
            cluster,
            backup,
            time,
        })
    }

    /// What restoring from backups needs, checked once the engine, the cluster and the backup
    /// section are validated: `engine.seed: backup | auto` and `cluster.bootstrap.from_backup`
    /// need a database engine, a backup section (with the named repository) and
    /// `backup.identity`, the key that opens the backups.
    fn backup_sources(
        &mut self,
        kind: EngineKind,
        seed: Option<SeedSource>,
        from_backup: Option<&FromBackup>,
        backup: Option<&super::validate_backup::BackupConfig>,
    ) {
        let seed_at = root("engine").key("seed");
        let from_at = root("cluster").key("bootstrap").key("from_backup");
        let seed = seed.filter(|s| *s != SeedSource::Primary);
        let from_backup = match from_backup {
            Some(_) if kind == EngineKind::Process => {
                self.problem(
                    &from_at,
                    Target::Key,
                    "is only for engine.kind mariadb or postgres (the process engine has no backups); expected no from_backup with this engine",
                );
                None
            }
            f => f,
        };
        let Some(b) = backup else {
            if let Some(seed) = seed {
                self.problem(
                    &seed_at,
                    Target::Value,
                    format!("{} restores from backup.repositories, but there is no backup section; expected a backup section with repositories and identity, or seed: primary", seed.as_str()),
                );
            }
            if let Some(f) = from_backup {
                self.problem(
                    &from_at,
                    Target::Key,
                    format!("restores from backup.repositories, but there is no backup section; expected a backup section with the repository {:?} and identity", f.repository),
                );
            }
            return;
        };
        let backup_at = root("backup");
        if let Some(f) = from_backup {
            let names: Vec<&str> = b.repositories.iter().map(|r| r.name.as_str()).collect();
            if !names.contains(&f.repository.as_str())
                && !self.has_problem_under(&backup_at.key("repositories"))
            {
                let configured = if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                };
                self.problem(
                    &from_at.key("repository"),
                    Target::Value,
                    format!(
                        "no repository {:?} in backup.repositories (configured: {configured}); expected one of them",
                        f.repository
                    ),
                );
            }
        }
        let mut needs = Vec::new();
        if let Some(seed) = seed {
            needs.push(format!("engine.seed: {}", seed.as_str()));
        }
        if from_backup.is_some() {
            needs.push("cluster.bootstrap.from_backup".to_owned());
        }
        if !needs.is_empty()
            && b.identity.is_none()
            && !self.has_problem_under(&backup_at.key("identity"))
        {
            self.problem_at(
                &backup_at.key("identity"),
                &backup_at,
                format!(
                    "required with {}: it is the key that opens the backups; expected identity: {{file: PATH}} (or env: VAR, or credential: NAME) under backup, an age identity whose public key is among encryption.recipients",
                    needs.join(" and ")
                ),
            );
        }
    }

    fn store(&mut self, raw: RawStore) -> StoreConfig {
        let RawStore { etcd, prefix, ttl } = raw;
        let at = root("store");
        let (endpoints, username, password, tls) = match etcd {
            Some(etcd) => self.etcd(etcd),
            None => {
                self.problem(
                    &at.key("etcd"),
                    Target::Key,
                    "required; expected etcd: {endpoints: [http://127.0.0.1:2379]}",
                );
                (Vec::new(), None, None, None)
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
            tls,
        }
    }

    fn etcd(
        &mut self,
        raw: RawEtcd,
    ) -> (Vec<String>, Option<String>, Option<Secret>, Option<EtcdTls>) {
        let RawEtcd {
            endpoints,
            username,
            password_file,
            password_env,
            password,
            tls,
        } = raw;
        let at = root("store").key("etcd");
        let endpoints = match endpoints {
            Some(list) if !list.is_empty() => {
                for (i, url) in list.iter().enumerate() {
                    if let Err(e) = values::endpoint(url) {
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
        let password = self.password_source(&at, password_file, password_env);
        let tls = tls.map(|t| self.tls(&at, t, &endpoints));
        (endpoints, username, password, tls)
    }

    /// `process:`. `exec` is required for kind process. Kind mariadb builds the server's
    /// settings itself, and an optional `exec` names the server program and operator
    /// arguments the engine appends its settings to. Kind postgres builds the whole command
    /// line, so `exec` must be absent (`engine.postgres.parameters` adds settings).
    /// `clustered` (a store is configured) changes the default restart policy.
    fn process(&mut self, raw: RawProcess, kind: EngineKind, clustered: bool) -> ProcessConfig {
        let RawProcess {
            exec,
            cwd,
            env,
            stop_timeout,
            restart,
            user,
        } = raw;
        let at = root("process");
        ProcessConfig {
            exec: match (kind, exec) {
                (EngineKind::Mariadb, None) => {
                    vec!["/usr/sbin/mariadbd".to_owned(), "--no-defaults".to_owned()]
                }
                (EngineKind::Postgres, exec) => {
                    if exec.is_some() {
                        self.problem(
                            &at.key("exec"),
                            Target::Key,
                            "the engine builds the server command line itself; expected no exec with kind postgres (engine.postgres.parameters adds settings)",
                        );
                    }
                    Vec::new()
                }
                (_, exec) => self.exec(&at, exec),
            },
            cwd: self.cwd(&at.key("cwd"), cwd),
            env: self.env(&at.key("env"), env),
            stop_timeout: self.duration(
                &at.key("stop_timeout"),
                stop_timeout,
                Duration::from_secs(30),
            ),
            restart: self.restart(&at.key("restart"), restart, clustered),
            user: user.and_then(|name| self.os_user(&at.key("user"), name)),
        }
    }

    /// `process.restart`. The default policy is `on-failure` for a clustered node: its
    /// database is replaced by a failover at once, and restarting it in place (fenced, as a
    /// replica) is how the cluster gets its redundancy back without a service manager (as
    /// PID 1 there is none: the agent exiting would end the machine). A standalone agent
    /// keeps `never`: its exit status is its only report.
    fn restart(
        &mut self,
        at: &FieldPath,
        raw: Option<RawRestart>,
        clustered: bool,
    ) -> RestartPolicy {
        let default_policy = if clustered {
            RawPolicy::OnFailure
        } else {
            RawPolicy::Never
        };
        let raw = raw.unwrap_or(RawRestart {
            policy: Some(default_policy),
            ..RawRestart::default()
        });
        let RawRestart {
            policy,
            initial_backoff,
            max_backoff,
            max_restarts,
            reset_after,
        } = raw;
        let policy = policy.unwrap_or(default_policy);
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

    /// `failover:`; `ttl` is the store's lease TTL when `store` is set.
    fn failover(&mut self, raw: Option<RawFailover>, ttl: Option<Duration>) -> FailoverConfig {
        let RawFailover {
            settle,
            cooldown,
            max_lag,
        } = raw.unwrap_or_default();
        let at = root("failover");
        let settle = self.duration(&at.key("settle"), settle, Duration::from_millis(500));
        if let Some(ttl) = ttl.filter(|ttl| settle >= *ttl) {
            self.problem(
                &at.key("settle"),
                Target::Value,
                format!(
                    "{} is not shorter than store.ttl {}; expected a settle shorter than the lease ttl",
                    show(settle),
                    show(ttl)
                ),
            );
        }
        FailoverConfig {
            settle,
            // Zero is allowed here only: no cooldown between automatic failovers.
            cooldown: cooldown.map_or(Duration::from_secs(60), |d| d.0),
            max_lag: max_lag.and_then(|m| m.0),
        }
    }

    fn telemetry(&mut self, raw: RawTelemetry) -> TelemetryConfig {
        let RawTelemetry {
            listen,
            advertise,
            tls,
            top_statements,
        } = raw;
        let top_statements = match top_statements {
            None => 10,
            Some(n) if (0..=100).contains(&n) => u32::try_from(n).unwrap_or(10),
            Some(n) => {
                self.problem(
                    &root("telemetry").key("top_statements"),
                    Target::Value,
                    format!("{n} is out of range; expected 0 (statement statistics off) to 100"),
                );
                10
            }
        };
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
        if let Some(a) = &advertise {
            let rest = a
                .strip_prefix("http://")
                .or_else(|| a.strip_prefix("https://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
                self.problem(
                    &root("telemetry").key("advertise"),
                    Target::Value,
                    format!("{a:?} is not an http:// or https:// URL; expected the listener's address as other nodes reach it, like http://10.0.0.5:9187"),
                );
            }
        }
        let tls = tls.map(|t| self.listener_tls(t, advertise.as_deref()));
        TelemetryConfig {
            listen,
            advertise,
            tls,
            top_statements,
        }
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
        user: None,
    }
}

/// `path` as an absolute path without `.` components: relative paths are taken from the
/// working directory (not touching the file system, so it works for files not created yet).
pub(super) fn absolute(path: &Path) -> PathBuf {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
