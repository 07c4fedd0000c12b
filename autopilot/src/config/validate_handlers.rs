//! Validation of everything that runs an exec besides the main process: the engine's role
//! hooks, the lifecycle handlers and the periodic jobs. Part of [`Validator`]; see
//! `validate.rs` for how problems are recorded and located.

use std::time::Duration;

use super::locate::{FieldPath, Seg, Target};
use super::model::*;
use super::raw::*;
use super::validate::{Validator, root};
use super::values::{self, show};

/// The hook names under `engine.hooks`, in the order they are documented and rendered.
pub(crate) const HOOKS: [&str; 5] = ["position", "promote", "follow", "fence", "unfence"];

/// Default timeout of every engine hook.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// `engine.kind` as validation reads it: which sections and `process` settings apply.
/// An unsupported kind is reported and then checked like `process`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EngineKind {
    /// Any program; roles driven by operator exec hooks.
    Process,
    /// MariaDB 10.11 with GTID replication; the engine builds the server command line.
    Mariadb,
    /// PostgreSQL streaming replication (`engine.postgres`); builds its own command line.
    Postgres,
}

impl Validator<'_> {
    /// `engine:`; `has_store` makes `port` and (for `process`) all five hooks required.
    /// The kind, and the engine unless a problem was recorded that leaves none.
    pub(super) fn engine(
        &mut self,
        raw: RawEngine,
        has_store: bool,
    ) -> (EngineKind, Option<EngineConfig>) {
        let RawEngine {
            kind,
            port,
            hooks,
            mariadb,
            auto_rebuild,
            seed,
            postgres,
        } = raw;
        let at = root("engine");
        let mut engine_kind = EngineKind::Process;
        let is_process = match kind.as_deref() {
            None | Some("process") => true,
            Some("mariadb") => {
                engine_kind = EngineKind::Mariadb;
                false
            }
            Some("postgres") => {
                engine_kind = EngineKind::Postgres;
                false
            }
            Some(k @ "mysql") => {
                self.problem(
                    &at.key("kind"),
                    Target::Value,
                    format!("{k} is not supported by this build yet; supported: process, mariadb, postgres"),
                );
                false
            }
            Some(k) => {
                self.problem(
                    &at.key("kind"),
                    Target::Value,
                    format!("unknown engine kind {k:?}; supported: process, mariadb, postgres"),
                );
                false
            }
        };
        let postgres = match (engine_kind, postgres) {
            (EngineKind::Postgres, raw) => self.postgres(&at.key("postgres"), raw),
            (_, Some(_)) => {
                self.problem(
                    &at.key("postgres"),
                    Target::Key,
                    "is only for kind: postgres; expected kind: postgres or no postgres section",
                );
                None
            }
            (_, None) => None,
        };
        let port = match port {
            Some(RawPort(p)) => self.port_number(&at.key("port"), p),
            None => {
                if has_store || engine_kind != EngineKind::Process {
                    self.problem(
                        &at.key("port"),
                        Target::Key,
                        "required when store is set; expected the port the database listens on, e.g. port: 6379",
                    );
                }
                None
            }
        };
        let hooks = match hooks {
            Some(_) if !is_process => {
                let kind = kind.unwrap_or_default();
                self.problem(
                    &at.key("hooks"),
                    Target::Key,
                    format!("is only for kind: process; expected no hooks with kind {kind}"),
                );
                None
            }
            Some(raw) => self.hooks(&at.key("hooks"), raw, has_store),
            None => {
                if has_store && is_process {
                    self.problem(
                        &at.key("hooks"),
                        Target::Key,
                        "required when store is set with kind: process; expected hooks position, promote, follow, fence and unfence, each like {exec: [prog, arg]}",
                    );
                }
                None
            }
        };
        let is_mariadb = engine_kind == EngineKind::Mariadb;
        let mariadb = match mariadb {
            Some(_) if !is_mariadb => {
                self.problem(
                    &at.key("mariadb"),
                    Target::Key,
                    "is only for kind: mariadb; expected no mariadb section with this kind",
                );
                None
            }
            m if is_mariadb => self.mariadb(&at.key("mariadb"), m),
            _ => None,
        };
        let auto_rebuild = auto_rebuild.unwrap_or(false);
        let seed = self.seed(&at.key("seed"), seed.as_deref(), is_process);
        let engine = match (engine_kind, port) {
            (EngineKind::Process, port) => Some(EngineConfig::Process {
                port,
                hooks,
                auto_rebuild,
            }),
            (EngineKind::Mariadb, Some(port)) => mariadb.map(|mariadb| EngineConfig::Mariadb {
                port,
                auto_rebuild,
                seed,
                mariadb,
            }),
            (EngineKind::Postgres, Some(port)) => postgres.map(|postgres| EngineConfig::Postgres {
                port,
                auto_rebuild,
                seed,
                postgres,
            }),
            (_, None) => None,
        };
        (engine_kind, engine)
    }

    /// `engine.seed`: `primary` (default), `backup` or `auto`; the last two only for the
    /// database engines (`is_process`: the `process` kind, which has no backups). That they
    /// also have a backup section with a repository and `backup.identity` is checked once
    /// the backup section is validated ([`Validator::backup_sources`]).
    fn seed(&mut self, at: &FieldPath, raw: Option<&str>, is_process: bool) -> SeedSource {
        let seed = match raw {
            None | Some("primary") => SeedSource::Primary,
            Some("backup") => SeedSource::Backup,
            Some("auto") => SeedSource::Auto,
            Some(other) => {
                self.problem(
                    at,
                    Target::Value,
                    format!("{other:?} is not a seed source; expected primary, backup or auto"),
                );
                return SeedSource::Primary;
            }
        };
        if is_process && seed != SeedSource::Primary {
            self.problem(
                at,
                Target::Value,
                "the process engine has no backups; remove engine.seed or use primary",
            );
        }
        seed
    }

    /// `engine.hooks:`: every hook present is checked like a handler. All five are required
    /// with `store`; without it an incomplete set is allowed and yields `None` (hooks are
    /// used only with `store`).
    fn hooks(&mut self, at: &FieldPath, raw: RawHooks, has_store: bool) -> Option<EngineHooks> {
        let RawHooks {
            position,
            promote,
            follow,
            fence,
            unfence,
        } = raw;
        let [position, promote, follow, fence, unfence] =
            [position, promote, follow, fence, unfence]
                .into_iter()
                .zip(HOOKS)
                .map(|(hook, name)| match hook {
                    Some(h) => Some(self.handler(&at.key(name), h, HOOK_TIMEOUT)),
                    None => {
                        if has_store {
                            self.problem(
                                &at.key(name),
                                Target::Key,
                                format!("required when store is set; expected a {name} hook like {name}: {{exec: [prog, arg]}}"),
                            );
                        }
                        None
                    }
                })
                .collect::<Vec<_>>()
                .try_into()
                .expect("one entry per hook name");
        Some(EngineHooks {
            position: position?,
            promote: promote?,
            follow: follow?,
            fence: fence?,
            unfence: unfence?,
        })
    }

    pub(super) fn handlers(&mut self, raw: RawHandlers) -> HandlersConfig {
        let RawHandlers {
            pre_start,
            health,
            on_change,
            pre_promote,
            pre_stop,
            post_stop,
            upgrade,
            rollback,
        } = raw;
        let at = root("handlers");
        let secs = Duration::from_secs;
        HandlersConfig {
            pre_start: pre_start.map(|h| self.handler(&at.key("preStart"), h, secs(60))),
            health: health.map(|h| self.health(&at.key("health"), h)),
            on_change: on_change.map(|h| self.handler(&at.key("onChange"), h, secs(60))),
            pre_promote: pre_promote.map(|h| self.handler(&at.key("prePromote"), h, secs(30))),
            pre_stop: pre_stop.map(|h| self.handler(&at.key("preStop"), h, secs(30))),
            post_stop: post_stop.map(|h| self.handler(&at.key("postStop"), h, secs(30))),
            upgrade: upgrade.map(|h| self.handler(&at.key("upgrade"), h, secs(600))),
            rollback: rollback.map(|h| self.handler(&at.key("rollback"), h, secs(600))),
        }
    }

    /// A handler without an interval.
    pub(super) fn handler(
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
                Seg::Key(k) => k.clone(),
                Seg::Index(i) => i.to_string(),
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

    pub(super) fn jobs(&mut self, raw: Vec<RawJob>) -> Vec<JobConfig> {
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
                    if let Err(e) = values::job_name(&name) {
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

    /// `packages:`: names required and valid, interval default 24h, query timeout default
    /// 60 s and no longer than the interval, the refresh handler (default timeout 10 min).
    pub(super) fn packages(&mut self, raw: RawPackages) -> PackagesConfig {
        let RawPackages {
            watch,
            interval,
            timeout,
            env,
            refresh,
        } = raw;
        let at = root("packages");
        let mut names: Vec<String> = Vec::new();
        match watch {
            None => self.problem(
                &at.key("watch"),
                Target::Key,
                "required; expected the Debian packages to watch, like watch: [mariadb-server, mariadb-backup]",
            ),
            Some(list) if list.is_empty() => self.problem(
                &at.key("watch"),
                Target::Value,
                "is empty; expected at least one Debian package name, like [mariadb-server]",
            ),
            Some(list) => {
                for (i, name) in list.into_iter().enumerate() {
                    let here = at.key("watch").index(i);
                    if let Err(e) = values::package_name(&name) {
                        self.problem(&here, Target::Value, e);
                    } else if let Some(first) = names.iter().position(|n| *n == name) {
                        self.problem(
                            &here,
                            Target::Value,
                            format!("duplicate package {name:?} (also packages.watch[{first}]); expected each package once"),
                        );
                    } else {
                        names.push(name);
                        continue;
                    }
                    names.push(String::new());
                }
                names.retain(|n| !n.is_empty());
            }
        }
        let interval = self.duration(
            &at.key("interval"),
            interval,
            Duration::from_secs(24 * 3600),
        );
        let timeout = self.duration(&at.key("timeout"), timeout, Duration::from_secs(60));
        if timeout > interval {
            self.problem(
                &at.key("timeout"),
                Target::Value,
                format!(
                    "{} is longer than the interval {}; expected a timeout no longer than the interval",
                    show(timeout),
                    show(interval)
                ),
            );
        }
        PackagesConfig {
            watch: names,
            interval,
            timeout,
            env: self.env(&at.key("env"), env),
            refresh: refresh.map(|h| self.handler(&at.key("refresh"), h, Duration::from_secs(600))),
        }
    }
}
