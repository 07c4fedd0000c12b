//! Rolling upgrades (issue 19) of real three-node MariaDB and PostgreSQL clusters under a
//! writer, driven by the coordinator and `autopilotctl upgrade`. Each node runs its server
//! through a symlink its upgrade hook points at the candidate program and its rollback hook
//! back at the real one (`e2e::harness::upgrade`): the good candidate runs the server as a
//! newer build, the bad one does not start.
//! - a rollout upgrades the replicas one at a time, switches over once, upgrades the former
//!   primary: every node on the new program, no acknowledged row lost, the only write outage
//!   the switchover's; a second rollout is refused while it runs; the coordinator restarted
//!   mid-rollout resumes it; bad input is refused;
//! - a bad program on the second node: its deadline passes, its rollback hook brings it back
//!   on the old program, the rollout stops saying why (pause and resume on the way), and the
//!   cluster stays writable with full redundancy; an upgrade hook that hangs is killed at its
//!   timeout and rolled back the same way;
//! - the same rollout on PostgreSQL.

use std::time::{Duration, Instant};

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, ctl};
use e2e::harness::in_place::history_len;
use e2e::harness::scenario::{assert_no_split_brain_no_loss, sorted_rows};
use e2e::harness::upgrade::{
    Programs, Server, outside_switchover, rollout, runs_upgraded, status, wait,
};
use e2e::harness::util::eventually;
use e2e::harness::workload::{Checker, Writer};
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::mariadb::scenario::{same_rows_everywhere, settle, workload};
use e2e::postgres::cluster::{PgCluster, PgOpts};
use e2e::postgres::scenario::settled;

fn maria_opts(programs: &Programs) -> MariaOpts {
    MariaOpts {
        server: Some(programs.server_yaml()),
        extra_yaml: format!("handlers:\n{}", programs.handlers_yaml()),
        ..MariaOpts::default()
    }
}

fn node_doc(c: &MariaCluster, i: usize) -> serde_json::Value {
    c.key(&format!("nodes/{}", c.name(i)))
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default()
}

#[test]
fn a_rolling_upgrade_upgrades_every_node_with_one_switchover_and_resumes_after_a_coordinator_restart()
 {
    let programs = Programs::new(Server::Mariadb);
    let mut c = MariaCluster::start(3, maria_opts(&programs)).expect("start the MariaDB cluster");
    let p = settle(&c);
    let etcd = c.etcd_mut().endpoint();
    let mut coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let url = coord.url().to_owned();
    let env = [
        ("AUTOPILOT_URL", url.as_str()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let cluster = c.cluster_id();
    let history = history_len(&c);

    // Bad input first: an unknown cluster, a bad version, a deadline out of range.
    let (code, _, err) = ctl(
        &["upgrade", "start", "a/b/nosuch"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = ctl(
        &["upgrade", "start", &cluster, "--version", "1.0; rm -rf /"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("version"), "{err}");
    let (code, _, err) = ctl(
        &["upgrade", "start", &cluster, "--deadline", "5"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = ctl(
        &["upgrade", "status", &cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 4, "no rollout yet: {err}");

    let writer = Writer::start(workload(&c), Duration::from_secs(600));
    let checker = Checker::start(workload(&c), Duration::from_secs(600));
    let t0 = Instant::now();
    let (code, out, err) = ctl(
        &["upgrade", "start", &cluster, "--deadline", "60"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    // One rollout per cluster at a time.
    let (code, _, err) = ctl(
        &["upgrade", "start", &cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("already has a rolling upgrade"), "{err}");

    // The coordinator is restarted once the first node is done: the next one resumes it.
    wait(
        &c,
        &env,
        &cluster,
        "the first node upgraded",
        Duration::from_secs(120),
        |v| v["upgraded"].as_array().is_some_and(|u| !u.is_empty()),
    );
    coord.kill();
    let coord2 = Coordinator::start(&etcd, &[]).expect("start the coordinator again");
    let url2 = coord2.url().to_owned();
    let env2 = [
        ("AUTOPILOT_URL", url2.as_str()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let done = wait(
        &c,
        &env2,
        &cluster,
        "the rollout's end",
        Duration::from_secs(300),
        |v| v["state"] != "running",
    );
    let took = t0.elapsed();
    assert_eq!(done["state"], "done", "{done:#}\n{}", c.logs());
    let w = writer.stop();
    let k = checker.stop();

    // Every node on the new program, one switchover, the former primary last.
    for i in 0..3 {
        assert!(runs_upgraded(&c, i), "node {i}: not the upgraded program");
        let v = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
            let d = node_doc(&c, i);
            d["version"]
                .as_str()
                .is_some_and(|v| v.contains("upgraded"))
                .then_some(d)
        });
        assert!(
            v.is_some(),
            "node {i} does not run the new program: {:#}",
            node_doc(&c, i)
        );
    }
    let steps = done["steps"].as_array().expect("steps");
    let kinds: Vec<&str> = steps.iter().filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["upgrade", "upgrade", "switchover", "upgrade"],
        "{done:#}"
    );
    assert_eq!(
        steps[3]["node"],
        c.name(p),
        "the former primary last: {done:#}"
    );
    assert_eq!(history_len(&c), history + 1, "one switchover, no failover");

    // No acknowledged row lost; the replicas' upgrades cost no write outage, the
    // switchover's is the longest.
    let q = c.wait_primary(Duration::from_secs(30));
    e2e::mariadb::scenario::assert_no_split_brain_no_loss(&c, q, &w, &k);
    let longest = w.longest_gap_since(t0);
    let outside = outside_switchover(&done, &w, t0);
    println!(
        "rolling upgrade of 3 MariaDB nodes: {took:?}; longest write outage {longest:?}, \
         outside the switchover {outside:?}; {} rows acknowledged",
        w.acked.len()
    );
    assert!(
        outside <= Duration::from_secs(2),
        "a replica's upgrade stopped the writes for {outside:?}\n{}",
        c.logs()
    );
    // Full redundancy: both replicas follow the new primary with its rows.
    for i in (0..3).filter(|&i| i != q) {
        c.wait_replicating(i, q, Duration::from_secs(60));
    }
    same_rows_everywhere(&c, q);
    drop(coord2);
}

#[test]
fn a_bad_program_on_the_second_node_is_rolled_back_and_stops_the_rollout_with_full_redundancy() {
    let programs = Programs::new(Server::Mariadb);
    let mut c = MariaCluster::start(3, maria_opts(&programs)).expect("start the MariaDB cluster");
    let p = settle(&c);
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let cluster = c.cluster_id();
    let writer = Writer::start(workload(&c), Duration::from_secs(600));
    let checker = Checker::start(workload(&c), Duration::from_secs(600));

    let (code, out, err) = ctl(
        &[
            "upgrade",
            "start",
            &cluster,
            "--deadline",
            "20",
            "--version",
            "10.11.99",
        ],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Paused while the first node upgrades: it finishes, nothing more begins.
    wait(
        &c,
        &env,
        &cluster,
        "the first step",
        Duration::from_secs(60),
        |v| v["step"].is_object(),
    );
    let (code, out, err) = ctl(
        &["upgrade", "pause", &cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let paused = wait(
        &c,
        &env,
        &cluster,
        "the first node, paused",
        Duration::from_secs(120),
        |v| {
            v["state"] == "paused"
                && v["step"].is_null()
                && v["upgraded"].as_array().is_some_and(|u| u.len() == 1)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        status(&env, &cluster)["step"].is_null(),
        "a step began while paused"
    );
    let first = paused["upgraded"][0].as_str().expect("a node").to_owned();

    // The second node gets a program that does not start.
    programs.candidate("server-bad");
    let (code, out, err) = ctl(
        &["upgrade", "resume", &cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let failed = wait(
        &c,
        &env,
        &cluster,
        "the rollout's stop",
        Duration::from_secs(180),
        |v| v["state"] == "failed",
    );
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("rolled back"), "{failed:#}");
    let second = failed["steps"]
        .as_array()
        .and_then(|s| s.last())
        .and_then(|s| s["node"].as_str())
        .expect("the failed step's node")
        .to_owned();
    assert_ne!(second, first);
    assert_ne!(
        second,
        c.name(p),
        "the primary is never upgraded before the replicas"
    );
    let i = (0..3).find(|&i| c.name(i) == second).expect("its index");
    let old = node_doc(&c, i);
    assert!(
        old["version"]
            .as_str()
            .is_some_and(|v| !v.contains("upgraded")),
        "{second} does not run the old program: {old:#}"
    );
    assert_eq!(
        std::fs::read_link(programs.link(i + 1)).expect("link"),
        programs.real()
    );
    let rolled = c.wait_event("upgrade_rolled_back", i, Duration::from_secs(10));
    assert!(
        rolled["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not healthy within 20 s")),
        "{rolled:#}"
    );

    // Still writable, the same primary, every replica streaming; no row lost.
    let q = c.wait_primary(Duration::from_secs(30));
    assert_eq!(q, p, "no failover");
    for j in (0..3).filter(|&j| j != q) {
        c.wait_replicating(j, q, Duration::from_secs(60));
    }
    let w = writer.stop();
    let k = checker.stop();
    e2e::mariadb::scenario::assert_no_split_brain_no_loss(&c, q, &w, &k);
    // A stopped rollout cannot be resumed; a new one may begin.
    let (code, _, err) = ctl(
        &["upgrade", "resume", &cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 5, "{err}");

    // An upgrade hook that hangs is killed at its timeout and the node rolled back.
    programs.candidate("server-new");
    programs.hang(true);
    let (code, out, err) = ctl(
        &["upgrade", "start", &cluster, "--deadline", "20"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let failed = wait(
        &c,
        &env,
        &cluster,
        "the hung hook's stop",
        Duration::from_secs(180),
        |v| v["state"] == "failed",
    );
    assert!(
        failed["detail"]
            .as_str()
            .is_some_and(|d| d.contains("outlived its timeout")),
        "{failed:#}"
    );
    assert_eq!(c.wait_primary(Duration::from_secs(30)), p, "no failover");
    for j in (0..3).filter(|&j| j != p) {
        c.wait_replicating(j, p, Duration::from_secs(60));
    }
}

#[test]
fn a_postgres_rolling_upgrade_upgrades_every_node_with_one_switchover_and_loses_no_row() {
    let programs = Programs::new(Server::Postgres);
    let mut c = PgCluster::start(
        3,
        PgOpts {
            bin_dir: Some(programs.server_yaml()),
            handlers_yaml: programs.handlers_yaml(),
            ..PgOpts::default()
        },
    )
    .expect("start the PostgreSQL cluster");
    let p = settled(&c);
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let history = history_len(&c);
    let r = rollout(&c, coord.url(), "e2e/pg/main", c.workload());
    assert_eq!(r.doc["state"], "done", "{:#}\n{}", r.doc, c.logs());
    let kinds: Vec<&str> = r.doc["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kinds,
        ["upgrade", "upgrade", "switchover", "upgrade"],
        "{:#}",
        r.doc
    );
    assert_eq!(
        r.doc["steps"][3]["node"],
        c.name(p),
        "the former primary last"
    );
    let q = c.wait_primary(Duration::from_secs(30));
    for i in 0..3 {
        let up = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
            runs_upgraded(&c, i).then_some(())
        });
        assert!(
            up.is_some(),
            "node {i}: not the upgraded program\n{}",
            c.logs()
        );
        if i != q {
            c.wait_streaming(i, q, Duration::from_secs(60));
        }
    }
    let after = history_len(&c);
    assert_eq!(after, history + 1, "one switchover, no failover");
    let rows = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        sorted_rows(c.workload().as_ref(), q)
    })
    .expect("the new primary answers");
    assert_no_split_brain_no_loss(&c, &rows, &r.writer, &r.checker);
    println!(
        "rolling upgrade of 3 PostgreSQL nodes: {:?}; longest write outage {:?}, outside the \
         switchover {:?}",
        r.took, r.outage, r.outside_switchover
    );
    assert!(
        r.outside_switchover <= Duration::from_secs(2),
        "a replica's upgrade stopped the writes for {:?}\n{}",
        r.outside_switchover,
        c.logs()
    );
}
