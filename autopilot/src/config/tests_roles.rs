//! Tests of the role-related settings: `engine.port`, `engine.hooks` and `failover`
//! (the broken-document table and the snapshots for them are in `tests.rs`).

use std::time::Duration;

use super::model::EngineConfig;
use super::tests::{P, ok, problems};

/// The five hooks, each with just an exec.
pub(super) const HOOKS: &str = "  hooks:\n    position: {exec: [p]}\n    promote: {exec: [p]}\n    follow: {exec: [f]}\n    fence: {exec: [f]}\n    unfence: {exec: [u]}\n";

#[test]
fn hooks_are_optional_and_may_be_incomplete_without_store() {
    let c = ok(&format!("engine:\n  port: 6379\n{HOOKS}{P}"));
    let EngineConfig::Process {
        port: Some(6379),
        hooks: Some(hooks),
        ..
    } = c.engine
    else {
        panic!(
            "a process engine with port 6379 and all five hooks: {:?}",
            c.engine
        );
    };
    assert_eq!(hooks.fence.exec, ["f"]);
    assert_eq!(hooks.fence.timeout, Duration::from_secs(10));
    // Without store an incomplete set is accepted and ignored.
    let c = ok(&format!("engine:\n  hooks:\n    fence: {{exec: [f]}}\n{P}"));
    assert!(
        matches!(c.engine, EngineConfig::Process { hooks: None, .. }),
        "{:?}",
        c.engine
    );
}

#[test]
fn store_with_port_and_hooks_is_valid() {
    let c = ok(&format!(
        "node: {{address: 10.0.0.5}}\ncluster: {{namespace: a, project: b, name: c}}\nstore: {{etcd: {{endpoints: [\"http://h:2379\"]}}}}\nengine:\n  port: 6379\n{HOOKS}{P}"
    ));
    assert!(
        matches!(
            c.engine,
            EngineConfig::Process {
                port: Some(6379),
                hooks: Some(_),
                ..
            }
        ),
        "{:?}",
        c.engine
    );
    // The only problems of a store without port and hooks are those two.
    let found = problems(
        "node: {address: 10.0.0.5}\ncluster: {namespace: a, project: b, name: c}\nstore: {etcd: {endpoints: [\"http://h:2379\"]}}\nprocess: {exec: [a]}\n",
    );
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["engine.port", "engine.hooks"]);
    // A missing hook is one problem per hook, each naming it.
    let found = problems(&format!(
        "node: {{address: 10.0.0.5}}\ncluster: {{namespace: a, project: b, name: c}}\nstore: {{etcd: {{endpoints: [\"http://h:2379\"]}}}}\nengine:\n  port: 6379\n  hooks:\n    promote: {{exec: [p]}}\n{P}"
    ));
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "engine.hooks.position",
            "engine.hooks.follow",
            "engine.hooks.fence",
            "engine.hooks.unfence"
        ]
    );
}

#[test]
fn failover_cooldown_may_be_zero_and_max_lag_unlimited() {
    let c = ok(&format!(
        "failover: {{cooldown: 0s, max_lag: unlimited}}\n{P}"
    ));
    assert_eq!(c.failover.cooldown, Duration::ZERO);
    assert_eq!(c.failover.max_lag, None);
    let c = ok(&format!("failover: {{max_lag: 0}}\n{P}"));
    assert_eq!(c.failover.max_lag, Some(0));
    // Without store, settle is not compared with a ttl.
    let c = ok(&format!("failover: {{settle: 1m}}\n{P}"));
    assert_eq!(c.failover.settle, Duration::from_secs(60));
}
