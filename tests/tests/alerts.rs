//! The shipped alert rules (`examples/prometheus/alerts.yml`) pass `promtool check rules` and
//! their unit tests (`alerts_test.yml`, `promtool test rules`); every rule is tiered
//! (`severity` page, notify or info), says what to do, and has a unit-test case where it fires
//! and one where it does not. promtool comes with the Debian `prometheus` package
//! (`scripts/install-deps`); without it these tests fail.
//!
//! The backup rules read metrics the backup agent emits, by name.
//!
//! And the coordinator exports the per-cluster gauge `AutopilotNoPrimary` relies on when every
//! agent of a cluster is down, read from a real etcd.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use e2e::harness::coordinator::{Coordinator, seed_node};
use e2e::harness::etcd::EtcdServer;
use e2e::harness::util::{eventually, system_bin, workspace_root};
use yaml_serde::Value;

fn dir() -> PathBuf {
    workspace_root().join("examples/prometheus")
}

/// Runs promtool in `examples/prometheus`; fails with its output.
fn promtool(args: &[&str]) {
    let promtool = system_bin("/usr/bin/promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).expect("read the rules file");
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

#[test]
fn alert_rules_pass_promtool_check() {
    promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool(&["test", "rules", "alerts_test.yml"]);
}

#[test]
fn every_rule_is_tiered_says_what_to_do_and_is_tested_both_ways() {
    let rules = load("alerts.yml");
    let mut names = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = str_of(rule, "alert")
                .expect("only alerting rules")
                .to_owned();
            let severity = str_of(&rule["labels"], "severity");
            assert!(
                matches!(severity, Some("page" | "notify" | "info")),
                "{name}: severity must be page, notify or info, not {severity:?}"
            );
            for key in ["summary", "description", "action"] {
                assert!(
                    str_of(&rule["annotations"], key).is_some_and(|s| s.len() > 10),
                    "{name}: annotation {key} is missing or empty"
                );
            }
            names.push(name);
        }
    }
    assert!(names.len() >= 20, "only {} rules", names.len());

    // (fires somewhere, stays silent somewhere) per alert name.
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let tests = load("alerts_test.yml");
    for test in tests["tests"].as_sequence().expect("tests") {
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = str_of(case, "alertname").expect("alertname").to_owned();
            let fires = case["exp_alerts"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty());
            let e = seen.entry(name).or_default();
            if fires {
                e.0 = true;
            } else {
                e.1 = true;
            }
        }
    }
    let missing: Vec<String> = names
        .iter()
        .filter_map(|n| match seen.get(n) {
            Some((true, true)) => None,
            Some((fires, silent)) => Some(format!("{n} (fires: {fires}, silent: {silent})")),
            None => Some(format!("{n} (no case)")),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a firing and a non-firing case in alerts_test.yml: {missing:?}"
    );
    let unknown: Vec<&String> = seen.keys().filter(|n| !names.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "tests of rules that do not exist: {unknown:?}"
    );
}

/// The backup rules read metrics by name; those names are the ones the backup agent emits
/// (`autopilot/src/node/backup/`), so a renamed metric cannot silence an alert unnoticed.
#[test]
fn backup_rules_read_metrics_the_backup_agent_emits() {
    let rules = std::fs::read_to_string(dir().join("alerts.yml")).expect("read the rules");
    let src_dir = workspace_root().join("autopilot/src/node/backup");
    let mut source = String::new();
    for entry in std::fs::read_dir(&src_dir).expect("the backup agent's sources") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            source += &std::fs::read_to_string(&path).expect("read a source file");
        }
    }
    let mut names: Vec<&str> = rules
        .match_indices("autopilot_backup")
        .map(|(i, _)| {
            let rest = &rules[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 5, "backup metrics in the rules: {names:?}");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|n| !source.contains(&format!("\"{n}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "alerts.yml reads backup metrics the agent does not emit: {missing:?}"
    );
}

/// The coordinator's `/metrics` body.
fn scrape(coord: &Coordinator) -> Option<String> {
    let resp = reqwest::blocking::get(format!("{}/metrics", coord.url())).ok()?;
    resp.status().is_success().then(|| resp.text().ok())?
}

/// Waits until every line in `want` is on `/metrics` (and none of `gone`); fails with the body.
fn wait_for(coord: &Coordinator, want: &[&str], gone: &[&str]) {
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        last = scrape(coord)?;
        let lines: Vec<&str> = last.lines().collect();
        (want.iter().all(|w| lines.contains(w)) && gone.iter().all(|g| !last.contains(g)))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "want {want:?}, not {gone:?} on /metrics:\n{last}\ncoordinator log:\n{}",
        coord.log()
    );
}

#[test]
fn coordinator_exports_primaries_per_cluster_even_without_agents() {
    let mut etcd = EtcdServer::start().expect("start etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 10);
    seed_node(&etcd, "a/p/c1", "n2", false, 10);
    seed_node(&etcd, "b/p/c2", "m1", false, 3);
    // A cluster whose agents are all gone: only its lease-less keys are left.
    for c in ["a/p/c1", "d/p/c3"] {
        etcd.etcdctl(&["put", &format!("/autopilot/{c}/initialized"), "{}"])
            .expect("put initialized");
    }
    let coord = Coordinator::start(&etcd.endpoint(), &[]).expect("start the coordinator");
    wait_for(
        &coord,
        &[
            "autopilot_coordinator_cluster_primaries{cluster=\"a/p/c1\"} 1",
            "autopilot_coordinator_cluster_primaries{cluster=\"b/p/c2\"} 0",
            "autopilot_coordinator_cluster_primaries{cluster=\"d/p/c3\"} 0",
            "autopilot_coordinator_cluster_nodes{cluster=\"a/p/c1\"} 2",
            "autopilot_coordinator_cluster_nodes{cluster=\"d/p/c3\"} 0",
        ],
        &[],
    );

    // Every agent of c1 dies: their leased keys go, the cluster stays listed, without primary.
    for key in ["primary", "nodes/n1", "nodes/n2"] {
        etcd.etcdctl(&["del", &format!("/autopilot/a/p/c1/{key}")])
            .expect("delete a key");
    }
    wait_for(
        &coord,
        &[
            "autopilot_coordinator_cluster_primaries{cluster=\"a/p/c1\"} 0",
            "autopilot_coordinator_cluster_nodes{cluster=\"a/p/c1\"} 0",
        ],
        &[],
    );

    // Without etcd the coordinator does not repeat an old answer: the gauges go away (and
    // the rule falls back on the agents' metrics).
    etcd.stop();
    wait_for(
        &coord,
        &[],
        &[
            "autopilot_coordinator_cluster_primaries{",
            "autopilot_coordinator_cluster_nodes{",
        ],
    );
}
