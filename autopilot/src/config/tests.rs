//! The config test suite: a table of broken documents with the exact place and field of each
//! reported problem, multi-problem reporting, defaults, the effective-YAML round trip, secret
//! redaction. The engine hooks and failover tuning are tested in `tests_roles.rs`, the
//! examples and docs in `tests_files.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::parse_with;
use super::*;

pub(super) const FILE: &str = "/etc/autopilot/node.yaml";

/// Test environment: only `SET_VAR` and `ETCD_PASSWORD` are set.
pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "SET_VAR" => Some("from-env".to_owned()),
        "ETCD_PASSWORD" => Some("etcd-pass-MARKER\n".to_owned()),
        _ => None,
    }
}

pub(super) fn host() -> Result<String, String> {
    Ok("test-host".to_owned())
}

pub(super) fn parse_at(source: &Path, text: &str) -> Result<Config, ConfigError> {
    parse_with(source, text, &env, &host)
}

pub(super) fn ok(text: &str) -> Config {
    match parse_at(Path::new(FILE), text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}\n---\n{text}"),
    }
}

pub(super) fn problems(text: &str) -> Vec<Problem> {
    match parse_at(Path::new(FILE), text) {
        Ok(c) => panic!("expected problems, got {c:?}\n---\n{text}"),
        Err(ConfigError::Invalid { path, problems }) => {
            assert_eq!(path, Path::new(FILE));
            assert!(!problems.is_empty());
            problems
        }
        Err(e) => panic!("expected Invalid, got {e:?}"),
    }
}

/// One broken document and the problem it must produce.
struct Case {
    name: &'static str,
    yaml: &'static str,
    line: Option<usize>,
    column: Option<usize>,
    field: &'static str,
    /// A fragment of the message; every message must also say what was expected (or, for
    /// engine kinds, what is supported).
    says: &'static str,
}

pub(super) const P: &str = "process: {exec: [sleep, \"1\"]}\n";

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let c = |name, yaml, line, column, field, says| Case { name, yaml, line, column, field, says };
    vec![
        c("syntax error", "process:\n  exec: [a\n  cwd: x\n", Some(3), Some(6), "", "invalid YAML: did not find expected ',' or ']'"),
        c("unknown top-level key", "proces:\n  exec: [a]\n", Some(1), Some(1), "proces", "unknown field `proces`, expected one of `node`, `cluster`"),
        c("unknown nested key (typo)", "process: {exec: [a]}\nhandlers:\n  health:\n    exec: [check]\n    intervall: 5s\n", Some(5), Some(5), "handlers.health.intervall", "expected one of `exec`, `env`, `cwd`, `timeout`, `interval`"),
        c("wrong type", "node:\n  priority: high\nprocess: {exec: [a]}\n", Some(2), Some(13), "node.priority", "invalid type: string \"high\", expected a whole number"),
        c("wrong type for a section", "process: [a, b]\n", Some(1), Some(10), "process", "invalid type: sequence, expected a mapping"),
        c("bad duration", "process: {exec: [a], stop_timeout: 10x}\n", Some(1), Some(36), "process.stop_timeout", "10x is not a duration; expected a duration like 10s or 500ms"),
        c("duration without unit", "process: {exec: [a], stop_timeout: 10}\n", Some(1), Some(36), "process.stop_timeout", "expected a duration like 10s or 500ms"),
        c("negative duration", "process:\n  exec: [a]\n  stop_timeout: -5s\n", Some(3), Some(17), "process.stop_timeout", "-5s is negative; expected a positive duration"),
        c("zero duration", "process:\n  exec: [a]\n  stop_timeout: 0s\n", Some(3), Some(17), "process.stop_timeout", "is zero; expected a duration greater than 0"),
        c("unknown user", "process: {exec: [a], user: no-such-user-x}\n", Some(1), Some(28), "process.user", "no user \"no-such-user-x\" on this host; expected an existing user"),
        c("empty user", "process: {exec: [a], user: ''}\n", Some(1), Some(28), "process.user", "is empty; expected a user name"),
        c("missing process", "node: {name: a}\n", None, None, "process", "missing; expected a process section"),
        c("empty document", "", None, None, "process", "missing; expected a process section"),
        c("missing process.exec", "process:\n  cwd: /tmp\n", Some(1), Some(1), "process.exec", "required; expected a list like [prog, arg]"),
        c("empty exec", "process:\n  exec: []\n", Some(2), Some(9), "process.exec", "is empty; expected a list like [prog, arg]"),
        c("empty program", "process:\n  exec: [\"\", x]\n", Some(2), Some(10), "process.exec[0]", "the program is empty; expected a program name"),
        c("exec as string", "process:\n  exec: redis-server --port 6379\n", Some(2), Some(9), "process.exec", "is the string \"redis-server --port 6379\"; expected a list like [prog, arg]"),
        c("health without interval", "process: {exec: [a]}\nhandlers:\n  health:\n    exec: [check]\n", Some(3), Some(3), "handlers.health.interval", "required for health; expected an interval like 10s"),
        c("health timeout > interval", "process: {exec: [a]}\nhandlers:\n  health:\n    exec: [check]\n    interval: 5s\n    timeout: 10s\n", Some(6), Some(14), "handlers.health.timeout", "10s is longer than the interval 5s; expected a timeout no longer than the interval"),
        c("job timeout > interval", "process: {exec: [a]}\njobs:\n  - name: rotate\n    exec: [logrotate]\n    interval: 1m\n    timeout: 1m30s\n", Some(6), Some(14), "jobs[0].timeout", "1m30s is longer than the interval 1m; expected a timeout no longer than the interval"),
        c("job without interval", "process: {exec: [a]}\njobs:\n  - {name: rotate, exec: [x]}\n", Some(3), Some(5), "jobs[0].interval", "required for a job; expected an interval like 10s"),
        c("duplicate job names", "process: {exec: [a]}\njobs:\n  - {name: rotate, exec: [x], interval: 1s}\n  - {name: rotate, exec: [y], interval: 1s}\n", Some(4), Some(12), "jobs[1].name", "duplicate job name \"rotate\" (also jobs[0].name); expected unique job names"),
        c("bad job name", "process: {exec: [a]}\njobs:\n  - {name: Rotate_Logs!, exec: [x], interval: 1s}\n", Some(3), Some(12), "jobs[0].name", "\"Rotate_Logs!\" is not a valid name; expected 1 to 63 lowercase"),
        c("interval on preStart", "process: {exec: [a]}\nhandlers:\n  preStart: {exec: [x], interval: 5s}\n", Some(3), Some(25), "handlers.preStart.interval", "is not allowed on preStart; expected interval only on the health handler and jobs"),
        c("store without cluster", "node: {address: 10.0.0.5}\nstore:\n  etcd: {endpoints: [\"http://127.0.0.1:2379\"]}\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(2), Some(1), "cluster", "required when store is set; expected cluster:"),
        c("store without node address", "cluster: {namespace: a, project: b, name: c}\nstore:\n  etcd: {endpoints: [\"http://127.0.0.1:2379\"]}\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", None, None, "node.address", "required when store is set; expected the address"),
        c("bad endpoint URL", "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd:\n    endpoints: [\"http://127.0.0.1:2379\", \"127.0.0.1:2379\"]\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(5), Some(42), "store.etcd.endpoints[1]", "does not start with http:// or https://; expected a URL like http://127.0.0.1:2379"),
        c("ttl too short", "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd: {endpoints: [\"http://h:2379\"]}\n  ttl: 1s\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(5), Some(8), "store.ttl", "1s is out of range; expected a ttl between 2s and 300s"),
        c("password inline", "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd:\n    endpoints: [\"http://h:2379\"]\n    password: hunter2\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(6), Some(5), "store.etcd.password", "inline passwords are not allowed; expected password_file: PATH or password_env: VAR"),
        c("password_file and password_env", "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd:\n    endpoints: [\"http://h:2379\"]\n    password_file: /x\n    password_env: ETCD_PASSWORD\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(7), Some(5), "store.etcd.password_env", "expected only one of password_file and password_env"),
        c("unset password env", "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd:\n    endpoints: [\"http://h:2379\"]\n    password_env: NOT_SET_ANYWHERE\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(6), Some(19), "store.etcd.password_env", "the environment variable NOT_SET_ANYWHERE is not set; expected it to hold the secret"),
        c("unreadable password file", "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd:\n    endpoints: [\"http://h:2379\"]\n    password_file: /nonexistent/etcd.pass\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(6), Some(20), "store.etcd.password_file", "cannot read the secret file /nonexistent/etcd.pass"),
        c("bad restart policy", "process:\n  exec: [a]\n  restart: {policy: sometimes}\n", Some(3), Some(21), "process.restart.policy", "unknown variant `sometimes`, expected one of `never`, `on-failure`, `always`"),
        c("backoff with policy never", "process:\n  exec: [a]\n  restart:\n    policy: never\n    max_backoff: 10s\n", Some(5), Some(5), "process.restart.max_backoff", "is only allowed with policy on-failure or always"),
        c("initial_backoff > max_backoff", "process:\n  exec: [a]\n  restart: {policy: always, initial_backoff: 1m, max_backoff: 30s}\n", Some(3), Some(46), "process.restart.initial_backoff", "1m is longer than max_backoff 30s; expected initial_backoff no longer than max_backoff"),
        c("bad max_restarts", "process:\n  exec: [a]\n  restart: {policy: always, max_restarts: lots}\n", Some(3), Some(43), "process.restart.max_restarts", "\"lots\" is not a count; expected a whole number or `unlimited`"),
        c("unsupported engine kind", "engine: {kind: mysql}\nprocess: {exec: [a]}\n", Some(1), Some(16), "engine.kind", "mysql is not supported by this build yet; supported: process, mariadb, postgres"),
        c("unknown engine kind", "engine: {kind: oracle}\nprocess: {exec: [a]}\n", Some(1), Some(16), "engine.kind", "unknown engine kind \"oracle\"; supported: process, mariadb, postgres"),
        c("bad log format", "process: {exec: [a]}\nlog: {format: xml}\n", Some(2), Some(15), "log.format", "unknown variant `xml`, expected `text` or `json`"),
        c("bad log level", "process: {exec: [a]}\nlog: {level: \"autopilot=loud\"}\n", Some(2), Some(14), "log.level", "is not a log filter"),
        c("bad advertise url", "process: {exec: [a]}\ntelemetry: {advertise: \"db1:9187\"}\n", Some(2), Some(24), "telemetry.advertise", "\"db1:9187\" is not an http:// or https:// URL"),
        c("bad listen address", "process: {exec: [a]}\ntelemetry: {listen: \"localhost\"}\n", Some(2), Some(21), "telemetry.listen", "\"localhost\" is not a socket address; expected IP:PORT like 0.0.0.0:9187, or off"),
        c("bad env value", "process:\n  exec: [a]\n  env: {PORT: 6379}\n", Some(3), Some(15), "process.env.PORT", "expected a string (quote numbers and booleans), {file: PATH} or {env: VAR}"),
        c("bad env value mapping", "process:\n  exec: [a]\n  env: {A: {path: /x}}\n", Some(3), Some(12), "process.env.A", "unknown key `path`; expected a string"),
        c("bad env name", "process:\n  exec: [a]\n  env: {BAD-NAME: x}\n", Some(3), Some(9), "process.env.BAD-NAME", "is not a valid environment variable name; expected letters, digits and '_'"),
        c("unset env secret", "process:\n  exec: [a]\n  env:\n    TOKEN: {env: NOT_SET_ANYWHERE}\n", Some(4), Some(18), "process.env.TOKEN.env", "NOT_SET_ANYWHERE is not set"),
        c("bad node name", "node: {name: \"-db\"}\nprocess: {exec: [a]}\n", Some(1), Some(14), "node.name", "is not a valid name; expected 1 to 63 letters"),
        c("bad cluster part", "node: {address: h}\ncluster: {namespace: Prod, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(2), Some(22), "cluster.namespace", "expected 1 to 63 lowercase"),
        c("cluster part missing", "node: {address: h}\ncluster: {namespace: a, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(2), Some(1), "cluster.project", "required; expected cluster.project"),
        c("bad store prefix", "node: {address: h}\ncluster: {namespace: a, project: b, name: c}\nstore:\n  etcd: {endpoints: [\"http://h:2379\"]}\n  prefix: autopilot/\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(5), Some(11), "store.prefix", "expected a path starting with '/'"),
        c("negative priority", "node: {priority: -1}\nprocess: {exec: [a]}\n", Some(1), Some(18), "node.priority", "expected a whole number"),
        c("unknown failover field", "process: {exec: [a]}\nfailover:\n  settel: 1s\n", Some(3), Some(3), "failover.settel", "unknown field `settel`, expected one of `settle`, `cooldown`, `max_lag`"),
        c("zero settle", "process: {exec: [a]}\nfailover: {settle: 0s}\n", Some(2), Some(20), "failover.settle", "is zero; expected a duration greater than 0"),
        c("settle not shorter than ttl", "node: {address: h}\ncluster: {namespace: a, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}, ttl: 2s}\nfailover: {settle: 3s}\nprocess: {exec: [a]}\nengine: {port: 6379, hooks: {position: {exec: [p]}, promote: {exec: [p]}, follow: {exec: [f]}, fence: {exec: [f]}, unfence: {exec: [u]}}}\n", Some(4), Some(20), "failover.settle", "3s is not shorter than store.ttl 2s; expected a settle shorter than the lease ttl"),
        c("negative cooldown", "process: {exec: [a]}\nfailover: {cooldown: -1s}\n", Some(2), Some(22), "failover.cooldown", "-1s is negative; expected a positive duration"),
        c("negative max_lag", "process: {exec: [a]}\nfailover: {max_lag: -5}\n", Some(2), Some(21), "failover.max_lag", "-5 is negative; expected a whole number or `unlimited`"),
        c("bad max_lag", "process: {exec: [a]}\nfailover: {max_lag: some}\n", Some(2), Some(21), "failover.max_lag", "\"some\" is not a count; expected a whole number or `unlimited`"),
        c("port out of range", "engine: {port: 70000}\nprocess: {exec: [a]}\n", Some(1), Some(16), "engine.port", "70000 is out of range; expected a port from 1 to 65535"),
        c("port zero", "engine: {port: 0}\nprocess: {exec: [a]}\n", Some(1), Some(16), "engine.port", "0 is out of range; expected a port from 1 to 65535"),
        c("port as a word", "engine: {port: redis}\nprocess: {exec: [a]}\n", Some(1), Some(16), "engine.port", "\"redis\" is not a port number; expected a port number from 1 to 65535"),
        c("store without engine.port", "node: {address: h}\ncluster: {namespace: a, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nprocess: {exec: [a]}\n", None, None, "engine.port", "required when store is set; expected the port the database listens on, e.g. port: 6379"),
        c("store without engine.port (engine present)", "node: {address: h}\ncluster: {namespace: a, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nengine: {kind: process}\nprocess: {exec: [a]}\n", Some(4), Some(1), "engine.port", "required when store is set; expected the port the database listens on"),
        c("store without engine.hooks", "node: {address: h}\ncluster: {namespace: a, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nengine: {port: 6379}\nprocess: {exec: [a]}\n", Some(4), Some(1), "engine.hooks", "required when store is set with kind: process; expected hooks position, promote, follow, fence and unfence"),
        c("store with a hook missing", "node: {address: h}\ncluster: {namespace: a, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nengine:\n  port: 6379\n  hooks:\n    position: {exec: [p]}\n    promote: {exec: [p]}\n    follow: {exec: [f]}\n    unfence: {exec: [u]}\nprocess: {exec: [a]}\n", Some(6), Some(3), "engine.hooks.fence", "required when store is set; expected a fence hook like fence: {exec: [prog, arg]}"),
        c("interval on a hook", "engine:\n  hooks:\n    follow: {exec: [f], interval: 1s}\nprocess: {exec: [a]}\n", Some(3), Some(25), "engine.hooks.follow.interval", "is not allowed on follow; expected interval only on the health handler and jobs"),
        c("unknown hook", "engine:\n  hooks:\n    demote: {exec: [d]}\nprocess: {exec: [a]}\n", Some(3), Some(5), "engine.hooks.demote", "unknown field `demote`, expected one of `position`, `promote`, `follow`, `fence`, `unfence`"),
        c("hook without exec", "engine:\n  hooks:\n    fence: {timeout: 5s}\nprocess: {exec: [a]}\n", Some(3), Some(5), "engine.hooks.fence.exec", "required; expected a list like [prog, arg]"),
        c("hook with zero timeout", "engine:\n  hooks:\n    fence: {exec: [f], timeout: 0s}\nprocess: {exec: [a]}\n", Some(3), Some(33), "engine.hooks.fence.timeout", "is zero; expected a duration greater than 0"),
        c("hooks with another engine kind", "engine: {kind: mysql, hooks: {}}\nprocess: {exec: [a]}\n", Some(1), Some(23), "engine.hooks", "is only for kind: process; expected no hooks with kind mysql"),
        c("empty state_dir", "node: {state_dir: \"\"}\nprocess: {exec: [a]}\n", Some(1), Some(19), "node.state_dir", "is empty; expected a directory path"),
        c("interval on prePromote", "process: {exec: [a]}\nhandlers:\n  prePromote: {exec: [x], interval: 5s}\n", Some(3), Some(27), "handlers.prePromote.interval", "is not allowed on prePromote; expected interval only on the health handler and jobs"),
    ]
}

#[test]
fn broken_documents_report_place_field_and_expectation() {
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for case in &cases {
        let found = problems(case.yaml);
        let Some(p) = found.iter().find(|p| p.field == case.field) else {
            failures.push(format!(
                "{}: no problem for field {:?}; got {found:#?}",
                case.name, case.field
            ));
            continue;
        };
        if (p.line, p.column) != (case.line, case.column)
            || !p.message.contains(case.says)
            || !(p.message.contains("expected") || p.message.contains("supported:"))
        {
            failures.push(format!(
                "{}: expected {:?}:{:?} {} containing {:?}, got {p:?}",
                case.name, case.line, case.column, case.field, case.says
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn problem_messages_snapshot() {
    let mut out = String::new();
    for case in cases() {
        let err = parse_at(Path::new(FILE), case.yaml).expect_err(case.name);
        out.push_str(&format!("# {}\n{err}\n", case.name));
    }
    insta::assert_snapshot!(out);
}

#[test]
fn every_semantic_problem_is_reported() {
    let yaml = "\
node:
  name: \"bad name\"
engine:
  kind: mysql
process:
  exec: []
  stop_timeout: 0s
handlers:
  health:
    exec: [check]
    interval: 5s
    timeout: 10s
  preStop:
    exec: [drain]
    interval: 1s
jobs:
  - {name: a, exec: [x], interval: 1s}
  - {name: a, exec: [x], interval: 1s, timeout: 2s}
telemetry:
  listen: nowhere
";
    let err = parse_at(Path::new(FILE), yaml).expect_err("many problems");
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "/etc/autopilot/node.yaml:2:9: node.name: \"bad name\" is not a valid name; expected 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit",
            "/etc/autopilot/node.yaml:4:9: engine.kind: mysql is not supported by this build yet; supported: process, mariadb, postgres",
            "/etc/autopilot/node.yaml:6:9: process.exec: is empty; expected a list like [prog, arg]",
            "/etc/autopilot/node.yaml:7:17: process.stop_timeout: is zero; expected a duration greater than 0 like 10s or 500ms",
            "/etc/autopilot/node.yaml:12:14: handlers.health.timeout: 10s is longer than the interval 5s; expected a timeout no longer than the interval",
            "/etc/autopilot/node.yaml:15:5: handlers.preStop.interval: is not allowed on preStop; expected interval only on the health handler and jobs",
            "/etc/autopilot/node.yaml:18:12: jobs[1].name: duplicate job name \"a\" (also jobs[0].name); expected unique job names",
            "/etc/autopilot/node.yaml:18:49: jobs[1].timeout: 2s is longer than the interval 1s; expected a timeout no longer than the interval",
            "/etc/autopilot/node.yaml:20:11: telemetry.listen: \"nowhere\" is not a socket address; expected IP:PORT like 0.0.0.0:9187, or off",
        ]
    );
}

#[test]
fn minimal_config_gets_every_default() {
    let c = ok(P);
    assert_eq!(c.source, Path::new(FILE));
    assert_eq!(c.node.name, "test-host");
    assert_eq!(c.node.address, "127.0.0.1");
    assert_eq!(c.node.priority, 100);
    assert!(!c.node.nofailover);
    assert_eq!(c.node.state_dir, Path::new("/var/lib/autopilot"));
    assert_eq!(
        c.failover,
        FailoverConfig {
            settle: Duration::from_millis(500),
            cooldown: Duration::from_secs(60),
            max_lag: None,
        }
    );
    assert!(
        matches!(
            c.engine,
            EngineConfig::Process {
                port: None,
                hooks: None,
                ..
            }
        ),
        "{:?}",
        c.engine
    );
    assert!(c.handlers.pre_promote.is_none());
    assert!(c.cluster.is_none());
    assert!(c.store.is_none());
    assert_eq!(c.process.exec, ["sleep", "1"]);
    assert_eq!(c.process.cwd, None);
    assert!(c.process.env.is_empty());
    assert_eq!(c.process.stop_timeout, Duration::from_secs(30));
    assert_eq!(c.process.restart, RestartPolicy::Never);
    assert!(c.handlers.pre_start.is_none() && c.handlers.health.is_none());
    assert!(c.handlers.on_change.is_none() && c.handlers.pre_stop.is_none());
    assert!(c.handlers.post_stop.is_none());
    assert!(c.jobs.is_empty());
    assert_eq!(
        c.telemetry.listen,
        Some("0.0.0.0:9187".parse().expect("literal"))
    );
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn default_node_name_is_the_real_host_name() {
    let c = parse(Path::new(FILE), P).expect("valid");
    let host = nix::unistd::gethostname().expect("host name");
    assert_eq!(c.node.name, host.to_string_lossy());
}

/// A config directory holding two secret files with a marker string in them.
struct Dir {
    dir: tempfile::TempDir,
}

const MARKER: &str = "s3cr3t-MARKER-value";

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("etcd.pass"), format!("{MARKER}-etcd\n")).expect("write");
        std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
        std::fs::write(dir.path().join("secrets/token"), format!("{MARKER}-token")).expect("write");
        Self { dir }
    }
    fn file(&self) -> PathBuf {
        self.dir.path().join("agent.yaml")
    }
}

const FULL: &str = "\
node:
  name: db-node-1
  address: 10.0.0.5
  priority: 50
  nofailover: true
  state_dir: state
cluster: { namespace: production, project: bluebird, name: mybillingapp }
store:
  etcd:
    endpoints: [\"http://127.0.0.1:2379\", \"https://[::1]:2379\"]
    username: autopilot
    password_file: etcd.pass
  prefix: /ap
  ttl: 15s
failover: { settle: 1s, cooldown: 0s, max_lag: 1048576 }
engine:
  kind: process
  port: 6379
  hooks:
    position: { exec: [/bin/position.sh] }
    promote:  { exec: [/bin/promote.sh], timeout: 30s }
    follow:   { exec: [/bin/follow.sh], env: { MODE: replica } }
    fence:    { exec: [/bin/fence.sh], cwd: hooks }
    unfence:  { exec: [/bin/unfence.sh] }
process:
  exec: [redis-server, --port, \"6379\"]
  cwd: data
  env:
    PLAIN: \"value with spaces\"
    SECRET_A: { file: secrets/token }
    SECRET_B: { env: SET_VAR }
  stop_timeout: 20s
  restart: { policy: on-failure, initial_backoff: 500ms, max_backoff: 1m, max_restarts: unlimited, reset_after: 2m }
handlers:
  preStart: { exec: [/bin/prepare.sh], env: { A: b }, cwd: /tmp, timeout: 1m30s }
  health:   { exec: [/bin/check.sh], interval: 2s }
  onChange: { exec: [/bin/reload.sh] }
  prePromote: { exec: [/bin/pre-promote.sh] }
  preStop:  { exec: [/bin/drain.sh], timeout: 20s }
  postStop: { exec: [/bin/cleanup.sh] }
jobs:
  - { name: rotate-logs, exec: [logrotate, /etc/lr.conf], interval: 60s, env: { X: y }, cwd: /var/log }
  - { name: backup, exec: [backup.sh], interval: 1h, timeout: 10m }
telemetry:
  listen: 127.0.0.1:9999
log:
  level: autopilot=debug,info
  format: json
";

#[test]
fn full_config_parses_every_field() {
    let d = Dir::new();
    let c = parse_at(&d.file(), FULL).unwrap_or_else(|e| panic!("{e}"));
    let base = d.dir.path();
    assert_eq!(c.node.name, "db-node-1");
    assert_eq!(c.node.address, "10.0.0.5");
    assert_eq!(c.node.priority, 50);
    assert!(c.node.nofailover);
    assert_eq!(c.node.state_dir, base.join("state"));
    let cl = c.cluster.as_ref().expect("cluster");
    assert_eq!(
        (cl.namespace.as_str(), cl.project.as_str(), cl.name.as_str()),
        ("production", "bluebird", "mybillingapp")
    );
    let s = c.store.as_ref().expect("store");
    assert_eq!(s.endpoints, ["http://127.0.0.1:2379", "https://[::1]:2379"]);
    assert_eq!(s.username.as_deref(), Some("autopilot"));
    let pw = s.password.as_ref().expect("password");
    assert_eq!(pw.expose(), format!("{MARKER}-etcd"));
    assert_eq!(
        pw.origin,
        format!("file {}", base.join("etcd.pass").display())
    );
    assert_eq!(s.prefix, "/ap");
    assert_eq!(s.ttl, Duration::from_secs(15));
    assert_eq!(
        c.failover,
        FailoverConfig {
            settle: Duration::from_secs(1),
            cooldown: Duration::ZERO,
            max_lag: Some(1_048_576),
        }
    );
    let EngineConfig::Process {
        port: Some(6379),
        hooks: Some(hooks),
        ..
    } = &c.engine
    else {
        panic!("a process engine with port 6379 and hooks: {:?}", c.engine);
    };
    assert_eq!(hooks.position.exec, ["/bin/position.sh"]);
    assert_eq!(hooks.position.timeout, Duration::from_secs(10));
    assert_eq!(hooks.promote.timeout, Duration::from_secs(30));
    assert_eq!(
        hooks.follow.env[0].pair(),
        ("MODE".into(), "replica".into())
    );
    assert_eq!(
        hooks.fence.cwd.as_deref(),
        Some(base.join("hooks").as_path())
    );
    assert_eq!(hooks.unfence.interval, None);
    assert_eq!(c.process.exec, ["redis-server", "--port", "6379"]);
    assert_eq!(c.process.cwd.as_deref(), Some(base.join("data").as_path()));
    let env: Vec<(String, String)> = c.process.env.iter().map(EnvVar::pair).collect();
    assert_eq!(
        env,
        [
            ("PLAIN".into(), "value with spaces".into()),
            ("SECRET_A".into(), format!("{MARKER}-token")),
            ("SECRET_B".into(), "from-env".into()),
        ]
    );
    assert_eq!(c.process.stop_timeout, Duration::from_secs(20));
    assert_eq!(
        c.process.restart,
        RestartPolicy::OnFailure(Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(60),
            max_restarts: None,
            reset_after: Duration::from_secs(120),
        })
    );
    let h = &c.handlers;
    let pre = h.pre_start.as_ref().expect("preStart");
    assert_eq!((pre.timeout, pre.interval), (Duration::from_secs(90), None));
    assert_eq!(pre.cwd.as_deref(), Some(Path::new("/tmp")));
    assert_eq!(pre.env[0].pair(), ("A".into(), "b".into()));
    let health = h.health.as_ref().expect("health");
    assert_eq!(
        (health.interval, health.timeout),
        (Some(Duration::from_secs(2)), Duration::from_secs(2))
    );
    assert_eq!(
        h.on_change.as_ref().expect("onChange").timeout,
        Duration::from_secs(60)
    );
    let pre_promote = h.pre_promote.as_ref().expect("prePromote");
    assert_eq!(
        (pre_promote.timeout, pre_promote.interval),
        (Duration::from_secs(30), None)
    );
    assert_eq!(
        h.pre_stop.as_ref().expect("preStop").timeout,
        Duration::from_secs(20)
    );
    assert_eq!(
        h.post_stop.as_ref().expect("postStop").timeout,
        Duration::from_secs(30)
    );
    assert_eq!(c.jobs.len(), 2);
    assert_eq!(c.jobs[0].name, "rotate-logs");
    assert_eq!(c.jobs[0].handler.interval, Some(Duration::from_secs(60)));
    assert_eq!(c.jobs[0].handler.timeout, Duration::from_secs(60));
    assert_eq!(c.jobs[1].handler.timeout, Duration::from_secs(600));
    assert_eq!(
        c.telemetry.listen,
        Some("127.0.0.1:9999".parse().expect("literal"))
    );
    assert_eq!(c.log.level, "autopilot=debug,info");
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn health_timeout_defaults_to_at_most_ten_seconds() {
    let c = ok("process: {exec: [a]}\nhandlers:\n  health: {exec: [c], interval: 1m}\n");
    assert_eq!(
        c.handlers.health.expect("health").timeout,
        Duration::from_secs(10)
    );
    let c = ok("process: {exec: [a]}\ntelemetry: {listen: \"off\"}\n");
    assert_eq!(c.telemetry.listen, None);
}

#[test]
fn the_agent_url_is_advertised_or_derived_from_the_listener() {
    let c = ok("process: {exec: [a]}\n");
    assert_eq!(
        c.telemetry.agent_url("10.0.0.5").as_deref(),
        Some("http://10.0.0.5:9187")
    );
    let c = ok("process: {exec: [a]}\ntelemetry: {listen: \"127.0.0.1:9100\"}\n");
    assert_eq!(
        c.telemetry.agent_url("10.0.0.5").as_deref(),
        Some("http://127.0.0.1:9100")
    );
    let c = ok("process: {exec: [a]}\ntelemetry: {advertise: \"https://db1.example:443\"}\n");
    assert_eq!(
        c.telemetry.agent_url("10.0.0.5").as_deref(),
        Some("https://db1.example:443")
    );
    let c = ok("process: {exec: [a]}\ntelemetry: {listen: \"off\"}\n");
    assert_eq!(c.telemetry.agent_url("10.0.0.5"), None);
}

#[test]
fn effective_yaml_round_trips() {
    let minimal = ok(P);
    let yaml = minimal.to_effective_yaml();
    let again = ok(&yaml);
    assert_eq!(format!("{again:?}"), format!("{minimal:?}"), "{yaml}");
    insta::assert_snapshot!("effective_minimal", yaml);

    let d = Dir::new();
    let full = parse_at(&d.file(), FULL).unwrap_or_else(|e| panic!("{e}"));
    let yaml = full.to_effective_yaml();
    let again = parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(format!("{again:?}"), format!("{full:?}"), "{yaml}");
    // Exposed values are equal too (Debug hides them).
    let pairs = |c: &Config| c.process.env.iter().map(EnvVar::pair).collect::<Vec<_>>();
    assert_eq!(pairs(&again), pairs(&full));
}

#[test]
fn secrets_never_show_in_debug_errors_or_effective_yaml() {
    let d = Dir::new();
    let c = parse_at(&d.file(), FULL).unwrap_or_else(|e| panic!("{e}"));
    let debug = format!("{c:?}");
    let yaml = c.to_effective_yaml();
    for out in [&debug, &yaml] {
        assert!(!out.contains(MARKER), "{out}");
        assert!(!out.contains("from-env"), "{out}");
    }
    let token = d.dir.path().join("secrets/token");
    assert!(
        yaml.contains(&format!(
            "file: {}  # <secret from file {}>",
            token.display(),
            token.display()
        )),
        "{yaml}"
    );
    assert!(
        yaml.contains("env: SET_VAR  # <secret from env SET_VAR>"),
        "{yaml}"
    );
    assert!(debug.contains("<secret from env SET_VAR>"), "{debug}");

    // A broken config with secrets in it: the error names the files, never the values.
    let broken = FULL.replace("ttl: 15s", "ttl: 1s").replace(
        "password_file: etcd.pass",
        "password_file: secrets/token\n    password: inline-MARKER",
    );
    let err = parse_at(&d.file(), &broken).expect_err("broken");
    for out in [err.to_string(), format!("{err:?}")] {
        assert!(!out.contains(MARKER), "{out}");
        assert!(!out.contains("inline-MARKER"), "{out}");
    }
    // A credential inside an endpoint URL is not echoed either.
    let broken = FULL.replace(
        "http://127.0.0.1:2379",
        "http://root:inline-MARKER@127.0.0.1:2379",
    );
    let err = parse_at(&d.file(), &broken).expect_err("broken");
    assert!(!err.to_string().contains("inline-MARKER"), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let d = Dir::new();
    let c = parse_at(
        &d.file(),
        "node: {state_dir: var/state}\nprocess:\n  exec: [a]\n  cwd: .\n  env: {T: {file: ./secrets/token}}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.process.cwd.as_deref(),
        Some(d.dir.path().join(".").as_path())
    );
    assert_eq!(c.process.env[0].pair().1, format!("{MARKER}-token"));
    assert_eq!(c.node.state_dir, d.dir.path().join("var/state"));
}

#[test]
fn load_reads_the_file_and_reports_io_errors() {
    let d = Dir::new();
    std::fs::write(d.file(), P).expect("write");
    let c = load(&d.file()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.source, d.file());
    let missing = d.dir.path().join("nope.yaml");
    match load(&missing) {
        Err(ConfigError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Io, got {other:?}"),
    }
}

#[test]
fn process_user_resolves_to_ids() {
    let c = ok("process: {exec: [a], user: nobody}\n");
    let user = c.process.user.expect("user set");
    assert_eq!(
        (user.name.as_str(), user.uid, user.gid),
        ("nobody", 65534, 65534)
    );
}
