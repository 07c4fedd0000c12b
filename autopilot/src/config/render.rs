//! [`Config::to_effective_yaml`]: the configuration as the agent will run it, every default
//! written out, in the file's own schema so it parses again to the same [`Config`].
//!
//! Secrets are shown by where they come from (`password_file: /x  # <secret from file /x>`),
//! never by value; TLS files by their paths only. Hand-written rather than serialised so that key order follows the docs and
//! the secret comments can be added.

use cluster::secret::{EtcdTls, Secret};
use std::fmt::Write as _;
use std::path::Path;

use super::model::*;
use super::secrets::origin_parts;
use super::values::show;

impl Config {
    /// The effective configuration as YAML: defaults filled in, relative paths resolved,
    /// secrets replaced by their origin. Parsing it again yields the same configuration.
    pub fn to_effective_yaml(&self) -> String {
        let mut o = Out::default();
        o.line(0, "node:");
        o.kv(1, "name", &self.node.name);
        o.kv(1, "address", &self.node.address);
        o.raw(1, "priority", &self.node.priority.to_string());
        o.raw(1, "nofailover", &self.node.nofailover.to_string());
        o.kv(1, "state_dir", &self.node.state_dir.to_string_lossy());
        if let Some(c) = &self.cluster {
            o.line(0, "cluster:");
            o.kv(1, "namespace", &c.namespace);
            o.kv(1, "project", &c.project);
            o.kv(1, "name", &c.name);
            if let Some(f) = &c.from_backup {
                o.line(1, "bootstrap:");
                o.line(2, "from_backup:");
                o.kv(3, "repository", &f.repository);
                if let Some((namespace, project, name)) = &f.cluster {
                    o.kv(3, "cluster", &format!("{namespace}/{project}/{name}"));
                }
                match &f.backup {
                    BackupChoice::Latest => o.kv(3, "backup", "latest"),
                    BackupChoice::Id(id) => o.kv(3, "backup", id),
                }
                if let Some(t) = &f.time {
                    o.kv(3, "time", t);
                }
            }
            if let Some(m) = &c.migrate_from {
                o.line(1, "bootstrap:");
                o.line(2, "migrate_from:");
                o.kv(3, "host", &m.host);
                o.raw(3, "port", &m.port.to_string());
                o.line(3, "account:");
                o.kv(4, "user", &m.account.user);
                let (kind, from) = origin_parts(&m.account.password);
                o.secret(4, &format!("password_{kind}"), from, &m.account.password);
                if let Some(slot) = &m.slot {
                    o.kv(3, "slot", slot);
                }
            }
        }
        if let Some(s) = &self.store {
            o.line(0, "store:");
            o.line(1, "etcd:");
            o.list(2, "endpoints", &s.endpoints);
            if let Some(u) = &s.username {
                o.kv(2, "username", u);
            }
            if let Some(p) = &s.password {
                let (kind, from) = origin_parts(p);
                o.secret(2, &format!("password_{kind}"), from, p);
            }
            if let Some(t) = &s.tls {
                o.tls(2, t);
            }
            o.kv(1, "prefix", &s.prefix);
            o.kv(1, "ttl", &show(s.ttl));
        }
        let f = &self.failover;
        o.line(0, "failover:");
        o.kv(1, "settle", &show(f.settle));
        o.kv(1, "cooldown", &show(f.cooldown));
        match f.max_lag {
            Some(n) => o.raw(1, "max_lag", &n.to_string()),
            None => o.kv(1, "max_lag", "unlimited"),
        }
        o.line(0, "engine:");
        o.kv(
            1,
            "kind",
            match self.engine {
                EngineConfig::Process { .. } => "process",
                EngineConfig::Mariadb { .. } => "mariadb",
                EngineConfig::Postgres { .. } => "postgres",
            },
        );
        if let EngineConfig::Mariadb { mariadb: m, .. } = &self.engine {
            o.line(1, "mariadb:");
            o.kv(2, "datadir", &m.datadir.display().to_string());
            o.kv(
                2,
                "admin",
                &format!(
                    "{} (password from {})",
                    m.admin.user, m.admin.password.origin
                ),
            );
            o.kv(
                2,
                "replication",
                &format!(
                    "{} (password from {})",
                    m.replication.user, m.replication.password.origin
                ),
            );
            if let Some(b) = &m.backup {
                o.kv(
                    2,
                    "backup",
                    &format!("{} (password from {})", b.user, b.password.origin),
                );
            }
        }
        if let Some(port) = self.engine.port() {
            o.raw(1, "port", &port.to_string());
        }
        o.raw(1, "auto_rebuild", &self.engine.auto_rebuild().to_string());
        o.kv(1, "seed", self.engine.seed().as_str());
        if let EngineConfig::Process {
            hooks: Some(hooks), ..
        } = &self.engine
        {
            o.line(1, "hooks:");
            let all = [
                ("position", &hooks.position),
                ("promote", &hooks.promote),
                ("follow", &hooks.follow),
                ("fence", &hooks.fence),
                ("unfence", &hooks.unfence),
            ];
            for (name, hook) in all {
                o.line(2, &format!("{name}:"));
                o.handler(3, hook);
            }
        }
        if let EngineConfig::Postgres { postgres: pg, .. } = &self.engine {
            o.line(1, "postgres:");
            o.kv(2, "bin_dir", &pg.bin_dir.display().to_string());
            o.kv(2, "data_dir", &pg.data_dir.display().to_string());
            o.kv(
                2,
                "listen",
                pg.listen.as_deref().unwrap_or(&self.node.address),
            );
            o.kv(
                2,
                "durability",
                match pg.durability {
                    super::PgDurability::Async => "async",
                    super::PgDurability::Sync => "sync",
                },
            );
            for (name, user) in [
                ("superuser", Some(&pg.superuser)),
                ("replication", Some(&pg.replication)),
                ("backup", pg.backup.as_ref()),
            ]
            .into_iter()
            .filter_map(|(n, u)| Some((n, u?)))
            {
                o.line(2, &format!("{name}:"));
                o.kv(3, "user", &user.user);
                let (kind, from) = origin_parts(&user.password);
                o.secret(3, &format!("password_{kind}"), from, &user.password);
            }
            o.kv(2, "max_slot_wal_keep_size", &pg.max_slot_wal_keep_size);
            if pg.parameters.is_empty() {
                o.line(2, "parameters: {}");
            } else {
                o.line(2, "parameters:");
                for (k, v) in &pg.parameters {
                    o.kv(3, k, v);
                }
            }
        }
        let p = &self.process;
        o.line(0, "process:");
        // PostgreSQL's command line is the engine's own: no `exec` (it would not read back).
        if !matches!(self.engine, EngineConfig::Postgres { .. }) {
            o.list(1, "exec", &p.exec);
        }
        o.cwd(1, p.cwd.as_deref());
        o.env(1, &p.env);
        o.kv(1, "stop_timeout", &show(p.stop_timeout));
        if let Some(user) = &p.user {
            o.kv(1, "user", &user.name);
        }
        o.line(1, "restart:");
        match p.restart {
            RestartPolicy::Never => o.kv(2, "policy", "never"),
            RestartPolicy::OnFailure(b) => o.backoff(2, "on-failure", &b),
            RestartPolicy::Always(b) => o.backoff(2, "always", &b),
        }
        let h = &self.handlers;
        let all = [
            ("preStart", &h.pre_start),
            ("health", &h.health),
            ("onChange", &h.on_change),
            ("prePromote", &h.pre_promote),
            ("preStop", &h.pre_stop),
            ("postStop", &h.post_stop),
            ("upgrade", &h.upgrade),
            ("rollback", &h.rollback),
        ];
        if all.iter().all(|(_, h)| h.is_none()) {
            o.line(0, "handlers: {}");
        } else {
            o.line(0, "handlers:");
            for (name, handler) in all {
                if let Some(handler) = handler {
                    o.line(1, &format!("{name}:"));
                    o.handler(2, handler);
                }
            }
        }
        if self.jobs.is_empty() {
            o.line(0, "jobs: []");
        } else {
            o.line(0, "jobs:");
            for job in &self.jobs {
                o.line(1, &format!("- name: {}", scalar(&job.name)));
                o.handler(2, &job.handler);
            }
        }
        if let Some(p) = &self.packages {
            o.line(0, "packages:");
            o.list(1, "watch", &p.watch);
            o.kv(1, "interval", &show(p.interval));
            o.kv(1, "timeout", &show(p.timeout));
            o.env(1, &p.env);
            if let Some(r) = &p.refresh {
                o.line(1, "refresh:");
                o.handler(2, r);
            }
        }
        o.line(0, "telemetry:");
        match self.telemetry.listen {
            Some(addr) => o.kv(1, "listen", &addr.to_string()),
            None => o.kv(1, "listen", "off"),
        }
        if let Some(a) = &self.telemetry.advertise {
            o.kv(1, "advertise", a);
        }
        if let Some(t) = &self.telemetry.tls {
            o.listener_tls(1, t);
        }
        o.raw(
            1,
            "top_statements",
            &self.telemetry.top_statements.to_string(),
        );
        o.line(0, "log:");
        o.kv(1, "level", &self.log.level);
        o.kv(
            1,
            "format",
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        );
        let mut outputs = Vec::new();
        if self.log.stderr {
            outputs.push("stderr");
        }
        if self.log.syslog.is_some() {
            outputs.push("syslog");
        }
        if self.log.journal {
            outputs.push("journal");
        }
        let outputs: Vec<String> = outputs.into_iter().map(str::to_owned).collect();
        o.list(1, "output", &outputs);
        if let Some(s) = &self.log.syslog {
            o.line(1, "syslog:");
            o.kv(2, "address", &s.transport.address());
            let facility = SYSLOG_FACILITIES
                .iter()
                .find(|(_, f)| *f == s.facility)
                .map_or("daemon", |(n, _)| *n);
            o.kv(2, "facility", facility);
            o.kv(2, "app_name", &s.app_name);
        }
        if let Some(b) = &self.backup {
            o.backup(b);
        }
        o.0
    }
}

/// The text being built, two spaces per level.
#[derive(Default)]
struct Out(String);

impl Out {
    fn line(&mut self, level: usize, text: &str) {
        let _ = writeln!(self.0, "{:width$}{text}", "", width = level * 2);
    }

    fn kv(&mut self, level: usize, key: &str, value: &str) {
        self.line(level, &format!("{key}: {}", scalar(value)));
    }

    /// A value written as is (numbers, booleans).
    fn raw(&mut self, level: usize, key: &str, value: &str) {
        self.line(level, &format!("{key}: {value}"));
    }

    fn list(&mut self, level: usize, key: &str, items: &[String]) {
        if items.is_empty() {
            self.line(level, &format!("{key}: []"));
            return;
        }
        self.line(level, &format!("{key}:"));
        for item in items {
            self.line(level + 1, &format!("- {}", scalar(item)));
        }
    }

    fn secret(&mut self, level: usize, key: &str, from: &str, secret: &Secret) {
        self.line(level, &format!("{key}: {}  # {secret}", scalar(from)));
    }

    /// `tls:` with the paths only; the key is marked as a secret.
    fn tls(&mut self, level: usize, t: &EtcdTls) {
        if t.ca.is_none() && t.identity.is_none() {
            self.line(level, "tls: {}");
            return;
        }
        self.line(level, "tls:");
        if let Some(ca) = &t.ca {
            self.kv(level + 1, "ca_file", &ca.path.to_string_lossy());
        }
        if let Some(id) = &t.identity {
            self.kv(level + 1, "cert_file", &id.cert.path.to_string_lossy());
            let key = &id.key;
            self.line(
                level + 1,
                &format!("key_file: {}  # {key}", scalar(&key.path.to_string_lossy())),
            );
        }
    }

    /// `telemetry.tls:` with the paths only; the key is marked as a secret.
    fn listener_tls(&mut self, level: usize, t: &ListenerTls) {
        if t.ca.is_none() && t.identity.is_none() {
            self.line(level, "tls: {}");
            return;
        }
        self.line(level, "tls:");
        if let Some(id) = &t.identity {
            self.kv(level + 1, "cert", &id.cert.path.to_string_lossy());
            let key = &id.key;
            self.line(
                level + 1,
                &format!("key: {}  # {key}", scalar(&key.path.to_string_lossy())),
            );
        }
        if let Some(ca) = &t.ca {
            self.kv(level + 1, "ca", &ca.path.to_string_lossy());
        }
    }

    fn cwd(&mut self, level: usize, cwd: Option<&Path>) {
        if let Some(cwd) = cwd {
            self.kv(level, "cwd", &cwd.to_string_lossy());
        }
    }

    fn env(&mut self, level: usize, env: &[EnvVar]) {
        if env.is_empty() {
            self.line(level, "env: {}");
            return;
        }
        self.line(level, "env:");
        for var in env {
            match &var.value {
                EnvValue::Plain(v) => self.kv(level + 1, &var.name, v),
                EnvValue::Secret(s) => {
                    let (kind, from) = origin_parts(s);
                    self.line(level + 1, &format!("{}:", var.name));
                    self.secret(level + 2, kind, from, s);
                }
            }
        }
    }

    fn backoff(&mut self, level: usize, policy: &str, b: &Backoff) {
        self.kv(level, "policy", policy);
        self.kv(level, "initial_backoff", &show(b.initial));
        self.kv(level, "max_backoff", &show(b.max));
        match b.max_restarts {
            Some(n) => self.raw(level, "max_restarts", &n.to_string()),
            None => self.kv(level, "max_restarts", "unlimited"),
        }
        self.kv(level, "reset_after", &show(b.reset_after));
    }

    /// `backup:`, secrets by origin only.
    fn backup(&mut self, b: &super::BackupConfig) {
        use super::RepositoryLocation;
        self.line(0, "backup:");
        self.kv(1, "catalog", &b.catalog.to_string_lossy());
        self.line(1, "repositories:");
        for r in &b.repositories {
            self.line(2, &format!("- name: {}", scalar(&r.name)));
            match &r.location {
                RepositoryLocation::Path(p) => self.kv(3, "path", &p.to_string_lossy()),
                RepositoryLocation::S3(s) => {
                    self.line(3, "s3:");
                    self.kv(4, "bucket", &s.bucket);
                    self.kv(4, "prefix", &s.prefix);
                    if let Some(e) = &s.endpoint {
                        self.kv(4, "endpoint", e);
                    }
                    self.kv(4, "region", &s.region);
                    self.raw(4, "path_style", &s.path_style.to_string());
                    for (key, secret) in [
                        ("access_key_id", &s.access_key_id),
                        ("secret_access_key", &s.secret_access_key),
                    ] {
                        let (kind, from) = origin_parts(secret);
                        self.line(4, &format!("{key}:"));
                        self.secret(5, kind, from, secret);
                    }
                }
            }
        }
        self.line(1, "encryption:");
        self.list(2, "recipients", &b.recipients);
        self.line(1, "compression:");
        self.raw(2, "level", &b.compression_level.to_string());
        self.raw(2, "threads", &b.compression_threads.to_string());
        if let Some(s) = &b.identity {
            let (kind, from) = origin_parts(s);
            self.line(1, "identity:");
            self.secret(2, kind, from, s);
        }
        if let Some(v) = &b.verification {
            self.line(1, "verification:");
            self.kv(2, "schedule", &v.schedule);
            self.kv(2, "time_zone", &v.time_zone);
            self.kv(2, "run_on", v.run_on.as_str());
            self.kv(2, "scratch_dir", &v.scratch_dir.to_string_lossy());
        }
        if let Some(a) = &b.archive {
            self.line(1, "archive:");
            self.list(2, "destinations", &a.destinations);
            self.kv(2, "interval", &show(a.interval));
            self.kv(2, "spool", &a.spool.to_string_lossy());
            self.raw(2, "spool_limit_mb", &a.spool_limit_mb.to_string());
        }
        if b.jobs.is_empty() {
            self.line(1, "jobs: []");
            return;
        }
        self.line(1, "jobs:");
        for j in &b.jobs {
            self.line(2, &format!("- name: {}", scalar(&j.name)));
            if let Some(d) = &j.description {
                self.kv(3, "description", d);
            }
            self.kv(3, "schedule", &j.schedule);
            self.kv(3, "time_zone", &j.time_zone);
            self.line(3, "retention:");
            if let Some(n) = j.keep_last {
                self.raw(4, "keep_last", &n.to_string());
            }
            if let Some(d) = j.keep_within {
                self.kv(4, "keep_within", &show(d));
            }
            if !j.databases.is_empty() {
                self.list(3, "databases", &j.databases);
            }
            self.list(3, "destinations", &j.destinations);
            self.kv(3, "method", j.method.as_str());
            self.kv(3, "type", j.kind.as_str());
            self.kv(3, "run_on", j.run_on.as_str());
            self.raw(3, "fallback_to_primary", &j.fallback_to_primary.to_string());
            if j.kind == backup::manifest::BackupType::Incremental {
                self.raw(3, "full_every", &j.full_every.to_string());
            }
            if j.tool.is_some() || !j.tool_args.is_empty() {
                self.line(3, "tool:");
                if let Some(t) = &j.tool {
                    self.kv(4, "path", &t.to_string_lossy());
                }
                self.list(4, "args", &j.tool_args);
            }
            for (key, h) in [
                ("pre_backup", &j.pre_backup),
                ("post_backup", &j.post_backup),
            ] {
                if let Some(h) = h {
                    self.line(3, &format!("{key}:"));
                    self.handler(4, h);
                }
            }
            if !j.notify.is_empty() {
                self.line(3, "notify:");
                for n in &j.notify {
                    self.line(4, &format!("- url: {}", scalar(&n.url)));
                    let mut on = Vec::new();
                    if n.on_success {
                        on.push("success".to_owned());
                    }
                    if n.on_failure {
                        on.push("failure".to_owned());
                    }
                    self.list(5, "on", &on);
                    if let Some(s) = &n.secret {
                        let (kind, from) = origin_parts(s);
                        self.line(5, "secret:");
                        self.secret(6, kind, from, s);
                    }
                }
            }
        }
    }

    fn handler(&mut self, level: usize, h: &HandlerConfig) {
        self.list(level, "exec", &h.exec);
        self.env(level, &h.env);
        self.cwd(level, h.cwd.as_deref());
        if let Some(i) = h.interval {
            self.kv(level, "interval", &show(i));
        }
        self.kv(level, "timeout", &show(h.timeout));
    }
}

/// A YAML scalar for `s`: plain when that reads back as the same string, else double-quoted
/// (JSON string syntax is valid YAML).
fn scalar(s: &str) -> String {
    let plain_chars = s.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | ':' | '-' | '=' | '+' | ',')
    });
    let plain_start = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'));
    let reads_back = || matches!(yaml_serde::from_str::<yaml_serde::Value>(s), Ok(yaml_serde::Value::String(v)) if v == s);
    if plain_chars && plain_start && reads_back() {
        s.to_owned()
    } else {
        serde_json::to_string(s).expect("serialising a string to JSON cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::scalar;

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(scalar("db-node-1"), "db-node-1");
        assert_eq!(scalar("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(scalar("--port"), "--port");
        assert_eq!(scalar("6379"), "\"6379\"");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("# x"), "\"# x\"");
        assert_eq!(scalar("line\nbreak"), "\"line\\nbreak\"");
    }
}
