//! The agent upgraded in place (issue 19): `autopilot upgrade-self` on real three-node
//! clusters under a writer. The agent re-executes from the new binary (its PID kept), adopts
//! the running database (its PID kept) and keeps the node's lease, so no failover happens
//! and the writes go on.
//! - MariaDB: bad input is refused with nothing changed; the primary's agent and then a
//!   replica's are upgraded in place; a release that cannot start goes back to the previous
//!   binary; then the adopted database is killed, the cluster fails over, and the node
//!   rejoins with the same rows (the new image really supervises what it adopted).
//! - PostgreSQL: the primary's agent upgraded in place, the same checks.

use std::time::{Duration, Instant};

use e2e::harness::cluster::Agents;
use e2e::harness::in_place::{
    Kept, NewBinary, exe, history_len, kept, upgrade_self, upgrade_self_with,
};
use e2e::harness::util::{eventually, hold};
use e2e::harness::workload::{Checker, Writer, WriterReport};
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::mariadb::scenario::{
    assert_no_split_brain_no_loss, same_rows_everywhere, settle, workload,
};
use e2e::postgres::cluster::{PgCluster, PgOpts};
use e2e::postgres::scenario::settled;

/// Longer than any pause of a healthy writer on a loaded CI machine, shorter than a failover
/// (the TTL is 3 s): a write outage past it means the upgrade cost one. A restart of the
/// database shows in its PID, checked after each upgrade. (The 100 ms target is measured by
/// `bench upgrade`, not asserted on a shared CI machine.)
const NO_OUTAGE: Duration = Duration::from_secs(2);

/// The upgrades between `t0` and `t1` cost no write outage (see [`NO_OUTAGE`]).
fn assert_no_outage(a: &Agents, w: &WriterReport, t0: Instant, t1: Instant) {
    let outage = w.longest_gap_between(t0, t1);
    println!("longest write outage over the in-place upgrades: {outage:?}");
    assert!(
        outage < NO_OUTAGE,
        "the upgrades stopped the writes for {outage:?}\n{}",
        a.logs()
    );
}

/// Upgrade node `i`'s agent to `binary` and check everything was kept.
fn upgrade_in_place(a: &Agents, i: usize, binary: &std::path::Path, role: &str) -> Kept {
    let before = kept(a, i);
    assert_eq!(before.role, role, "node {i}\n{}", a.logs());
    let r = upgrade_self(a, i, binary);
    assert_eq!(r.code, 0, "{r:?}\n{}", a.agent_log(i));
    assert!(r.out.contains("upgraded in place"), "{r:?}");
    assert!(
        r.out.contains(&format!(
            "the database (pid {}) ran on",
            before.database_pid
        )),
        "{r:?}"
    );
    assert!(r.out.contains(&format!("role {role}")), "{r:?}");
    assert_eq!(
        exe(before.agent_pid),
        binary,
        "the agent's process runs the new binary"
    );
    let after = kept(a, i);
    assert_eq!(
        after,
        before,
        "PIDs, lease, role and history kept\n{}",
        a.agent_log(i)
    );
    let event = a.wait_event("agent_upgraded", i, Duration::from_secs(10));
    assert!(
        event["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("ran on as the {role}"))),
        "{event:#}"
    );
    println!("node {i} ({role}): upgraded in place in {:?}", r.took);
    after
}

#[test]
fn mariadb_agents_are_upgraded_in_place_without_a_failover_and_keep_supervising() {
    let c = MariaCluster::start(3, MariaOpts::default()).expect("start the MariaDB cluster");
    let p = settle(&c);
    let r = (p + 1) % 3;
    let new = NewBinary::copy();
    let before = kept(&c, p);

    // Bad input: nothing changes.
    let cfg = c.config_path(p).display().to_string();
    let missing = upgrade_self_with(&["--config", &cfg, "--binary", "/nonexistent/autopilot"]);
    assert_eq!(missing.code, 64, "{missing:?}");
    assert!(missing.err.contains("does not run"), "{missing:?}");
    let foreign = upgrade_self_with(&["--config", &cfg, "--binary", "/bin/true"]);
    assert_eq!(foreign.code, 69, "{foreign:?}");
    assert!(
        foreign.err.contains("not an autopilot binary"),
        "{foreign:?}"
    );
    let relative = upgrade_self_with(&["--config", "/nonexistent/agent.yaml"]);
    assert_eq!(relative.code, 64, "{relative:?}");
    assert!(
        relative.err.contains("/nonexistent/agent.yaml"),
        "{relative:?}"
    );
    assert_eq!(kept(&c, p), before, "refusals change nothing");

    let writer = Writer::start(workload(&c), Duration::from_secs(600));
    let checker = Checker::start(workload(&c), Duration::from_secs(600));
    let t0 = Instant::now();
    upgrade_in_place(&c, p, &new.path, "primary");
    upgrade_in_place(&c, r, &new.path, "replica");
    c.wait_replicating(r, p, Duration::from_secs(30));
    // Back to the binary it replaced, the one kept for a rollback: run from a copy, since
    // the hand-over keeps the running binary in its place.
    let kept_binary = c
        .dir()
        .join(format!("state-{}", r + 1))
        .join("autopilot.previous");
    let rollback = kept(&c, r);
    let back = upgrade_self(&c, r, &kept_binary);
    assert_eq!(back.code, 0, "{back:?}\n{}", c.agent_log(r));
    assert!(
        exe(rollback.agent_pid).ends_with("autopilot.rollback"),
        "{:?}",
        exe(rollback.agent_pid)
    );
    assert_eq!(kept(&c, r), rollback, "{}", c.agent_log(r));

    // A release that cannot start: the previous binary takes over again, nothing is lost.
    let broken = NewBinary::failing_to_start();
    let before = kept(&c, p);
    let back = upgrade_self(&c, p, &broken.path);
    assert_eq!(back.code, 70, "{back:?}\n{}", c.agent_log(p));
    assert!(
        back.err.contains("could not start; the previous binary"),
        "{back:?}"
    );
    assert!(
        exe(before.agent_pid).ends_with("autopilot.previous"),
        "{:?}",
        exe(before.agent_pid)
    );
    let role_back = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        (c.role(p) == "primary").then_some(())
    });
    assert!(role_back.is_some(), "{}", c.agent_log(p));
    assert_eq!(kept(&c, p), before, "{}", c.agent_log(p));
    let t1 = Instant::now();

    // The adopted database is supervised: killed, the cluster fails over and the node
    // rejoins by itself.
    let history = history_len(&c);
    c.kill_mariadbd(p);
    let (q, took) = c.wait_new_primary(p, Duration::from_secs(60));
    println!("failover after killing the adopted database: {took:?}");
    c.wait_replicating(p, q, Duration::from_secs(120));
    c.wait_replicating((q + 1) % 3, q, Duration::from_secs(60));
    c.wait_replicating((q + 2) % 3, q, Duration::from_secs(60));
    assert_eq!(history_len(&c), history + 1, "one failover");
    let w = writer.stop();
    let k = checker.stop();
    assert_no_outage(&c, &w, t0, t1);
    assert_no_split_brain_no_loss(&c, q, &w, &k);
    same_rows_everywhere(&c, q);
}

#[test]
fn a_postgres_primary_agent_is_upgraded_in_place_without_a_failover() {
    let c = PgCluster::start(3, PgOpts::default()).expect("start the PostgreSQL cluster");
    let p = settled(&c);
    let r = (p + 1) % 3;
    let new = NewBinary::copy();
    let writer = Writer::start(c.workload(), Duration::from_secs(600));
    let checker = Checker::start(c.workload(), Duration::from_secs(600));
    let t0 = Instant::now();
    upgrade_in_place(&c, p, &new.path, "primary");
    upgrade_in_place(&c, r, &new.path, "replica");
    c.wait_streaming(r, p, Duration::from_secs(30));
    hold(Duration::from_secs(2)); // the writer goes on after the upgrades
    let t1 = Instant::now();
    let w = writer.stop();
    let k = checker.stop();
    assert_no_outage(&c, &w, t0, t1);
    e2e::postgres::scenario::assert_no_split_brain_no_loss(&c, p, &w, &k);
    e2e::postgres::scenario::same_rows_everywhere(&c, p);
}
