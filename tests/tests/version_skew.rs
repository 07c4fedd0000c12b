//! Version skew (issue 19): one cluster mixing the current agent and the agent built from
//! the commit before the wire format last changed (`tests/previous-agent.rev`, built by
//! `scripts/build-previous-agent`, which `scripts/test` runs first). Under a writer on real
//! MariaDB servers: the cluster forms; a switchover makes the older agent's node the primary;
//! that node is lost and a current agent's node takes over; the older agent comes back and
//! follows it; an `upgrade` request, which the older agent does not know, is refused with
//! `request_failed` (docs/etcd-keys.md, "Version skew"); no acknowledged row is lost and
//! every node ends with the same rows.

use std::path::PathBuf;
use std::time::Duration;

use e2e::harness::in_place::{exe, history_len};
use e2e::harness::util::{eventually, workspace_root};
use e2e::harness::workload::{Checker, Writer};
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::mariadb::scenario::{
    assert_no_split_brain_no_loss, same_rows_everywhere, settle, wait_writable, workload,
};

/// The node that runs the older agent.
const OLD: usize = 2;

fn previous_agent() -> PathBuf {
    let root = workspace_root();
    let rev = std::fs::read_to_string(root.join("tests/previous-agent.rev"))
        .expect("read tests/previous-agent.rev")
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .expect("a commit in tests/previous-agent.rev")
        .trim()
        .to_owned();
    let path = root
        .join("target/previous-agent")
        .join(format!("autopilot-{rev}"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-previous-agent (scripts/test does)",
        path.display()
    );
    path
}

#[test]
fn a_cluster_mixing_the_previous_and_the_current_agent_switches_over_and_fails_over_as_one() {
    let previous = previous_agent();
    let mut c = MariaCluster::create(3, MariaOpts::default()).expect("create the cluster");
    c.use_binary(OLD, &previous);
    for i in 0..3 {
        c.start_agent(i);
    }
    let p = settle(&c);
    let old_pid = c.agent(OLD).map(|a| a.pid()).expect("the older agent");
    assert_eq!(exe(old_pid), previous, "node {OLD} runs the older agent");
    let writer = Writer::start(workload(&c), Duration::from_secs(600));
    let checker = Checker::start(workload(&c), Duration::from_secs(600));

    // The older agent's node becomes the primary: a current agent hands over to it.
    if p != OLD {
        c.wait_eligible(OLD, Duration::from_secs(30));
        c.put_key(
            "switchover",
            &format!(r#"{{"schema":1,"candidate":"{}"}}"#, c.name(OLD)),
        );
        let moved = eventually(Duration::from_secs(30), Duration::from_millis(50), || {
            (c.primary() == Some(OLD)).then_some(())
        });
        assert!(moved.is_some(), "roles {:?}\n{}", c.roles(), c.logs());
        wait_writable(&c, OLD, Duration::from_secs(20));
        c.wait_replicating(p, OLD, Duration::from_secs(60));
    }
    let history = history_len(&c);

    // It is lost: a current agent's node takes over, and the older agent, restarted, follows.
    c.kill_node(OLD);
    let (q, took) = c.wait_new_primary(OLD, Duration::from_secs(60));
    println!(
        "failover from the older agent's node to {}: {took:?}",
        c.name(q)
    );
    assert_eq!(history_len(&c), history + 1, "one failover");
    c.start_agent(OLD);
    c.wait_replicating(OLD, q, Duration::from_secs(120));
    c.wait_replicating(3 - OLD - q, q, Duration::from_secs(60));

    // What it does not know it refuses, and says so.
    c.put_key(
        &format!("requests/{}", c.name(OLD)),
        r#"{"schema":1,"action":"upgrade","requested_by":"e2e","upgrade":{"version":"1.0","deadline_seconds":60}}"#,
    );
    let refused = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        c.events().into_iter().find(|e| {
            e["kind"] == "request_failed"
                && e["node"] == c.name(OLD)
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("does not know"))
        })
    });
    assert!(refused.is_some(), "{:#?}\n{}", c.events(), c.logs());
    assert_eq!(c.primary(), Some(q), "the refusal changed nothing");

    let w = writer.stop();
    let k = checker.stop();
    assert_no_split_brain_no_loss(&c, q, &w, &k);
    same_rows_everywhere(&c, q);
}
