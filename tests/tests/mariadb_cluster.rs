//! MariaDB cluster scenarios with real etcd, three real `mariadbd` and agents as processes:
//! bootstrap, planned switchover, graceful stop, an errant transaction on a former primary,
//! and that no password reaches the logs or metrics.

use std::time::{Duration, Instant};

use e2e::harness::util::{eventually, throughout};
use e2e::harness::workload::{Checker, Writer};
use e2e::mariadb::cluster::{ADMIN_PASSWORD, MariaOpts, REPL_PASSWORD};
use e2e::mariadb::scenario::*;
use e2e::mariadb::workload::written;

/// How long a node flagged `needs_rebuild` is watched not to replicate.
const STAYS_APART: Duration = Duration::from_secs(2);

#[test]
fn fresh_cluster_replicates_a_row_to_both_replicas() {
    let (c, p) = settled(MariaOpts::default());
    c.sql(p, &["INSERT INTO e2e.seq VALUES (42)"])
        .expect("insert on the primary");
    let pos = c
        .admin(p)
        .value("SELECT @@gtid_current_pos")
        .expect("read the primary's GTID");
    for i in (0..3).filter(|&i| i != p) {
        if let Err(e) = c.wait_gtid(i, &pos, Duration::from_secs(10)) {
            panic!(
                "{} did not apply {pos}: {e}; {:?} {:?}",
                c.name(i),
                c.sql(i, &["SHOW SLAVE STATUS"]),
                c.sql(
                    i,
                    &["SELECT @@gtid_slave_pos, @@gtid_current_pos, @@gtid_binlog_pos"]
                )
            );
        }
        let n = c
            .admin(i)
            .value("SELECT COUNT(*) FROM e2e.seq WHERE n = 42")
            .expect("count");
        assert_eq!(n, "1", "row missing on {}", c.name(i));
        assert!(!c.writable(i), "replica {} accepts writes", c.name(i));
    }
    assert!(c.writable(p), "the primary does not accept writes");
    let metrics = c.metrics(p);
    assert!(
        metrics.contains("autopilot_mysql_up"),
        "no MariaDB metrics:\n{metrics}"
    );
    for i in 0..3 {
        let log = c.agent_log(i);
        assert!(
            !log.contains(ADMIN_PASSWORD) && !log.contains(REPL_PASSWORD),
            "a password is in {}'s log",
            c.name(i)
        );
        assert!(
            !c.metrics(i).contains("MARKER"),
            "a password is in {}'s metrics",
            c.name(i)
        );
    }
}

#[test]
fn planned_switchover_loses_no_row() {
    let (c, p) = settled(MariaOpts::default());
    let target = (0..3).rev().find(|&i| i != p).expect("another node");
    let checker = Checker::start(workload(&c), MAX_RUN);
    let writer = Writer::start(workload(&c), MAX_RUN);
    let_writer_run(&c, p, 50);
    c.wait_eligible(target, Duration::from_secs(20));
    let t0 = Instant::now();
    c.put_key(
        "switchover",
        &format!(r#"{{"schema":1,"candidate":"{}"}}"#, c.name(target)),
    );
    let moved = eventually(Duration::from_secs(20), Duration::from_millis(20), || {
        (c.primary() == Some(target)).then_some(())
    });
    assert!(
        moved.is_some(),
        "{} did not become primary; roles {:?}\n{}",
        c.name(target),
        c.roles(),
        c.logs()
    );
    wait_writable(&c, target, Duration::from_secs(10));
    println!(
        "switchover {} -> {} took {:?}",
        c.name(p),
        c.name(target),
        t0.elapsed()
    );
    let e = c.wait_event("switchover", target, Duration::from_secs(5));
    assert_eq!(e["from"], c.name(p), "{e:#}");
    assert_eq!(e["to"], c.name(target), "{e:#}");
    c.wait_event("handover", p, Duration::from_secs(5));
    c.wait_replicating(p, target, ATTACH);
    let_writer_run(&c, target, 20);
    let (w, k) = (writer.stop(), checker.stop());
    let rows = written(c.port(target)).expect("read rows");
    let run = FailoverRun {
        old: p,
        new: target,
        took: t0.elapsed(),
        lost: w.lost(&rows),
        split_brain: k.split_brain.len(),
        summary: summary(&w, &k),
    };
    assert_safe(&c, &run);
}

#[test]
fn graceful_stop_of_the_primary_hands_over_without_loss() {
    let (mut c, p) = settled(MariaOpts::default());
    let run = failover(&mut c, p, |c, p| c.sigterm_agent(p));
    assert!(
        c.wait_agent_exit(p, Duration::from_secs(30)),
        "the old primary's agent did not exit"
    );
    assert_safe(&c, &run);
}

/// Fails over from `p` (frozen agent), writes rows 1..=3 on the new primary and an errant
/// row on the fenced former primary out of band, then restarts the former primary's node.
/// The new primary's index.
fn errant_former_primary(c: &mut e2e::mariadb::cluster::MariaCluster, p: usize) -> usize {
    c.stop_agent(p); // its mariadbd keeps running; the winner fences it over the network
    let (np, _) = c.wait_new_primary(p, FAILOVER);
    wait_writable(c, np, Duration::from_secs(10));
    c.sql(np, &["INSERT INTO e2e.seq VALUES (1), (2), (3)"])
        .expect("write on the new primary");
    assert!(
        !c.writable(p),
        "the fenced former primary accepts application writes"
    );
    // Out of band: the admin account bypasses read_only; without replicas attached, a
    // semi-sync commit would wait for ever, so the "operator" turns semi-sync off first.
    c.sql(
        p,
        &[
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
            "INSERT INTO e2e.seq VALUES (999999)",
        ],
    )
    .expect("errant write on the fenced node");
    // A clean shutdown: the errant commit is durable. (After a crash, semi-sync crash
    // recovery, `--init-rpl-role=SLAVE`, would roll back a commit whose engine commit was
    // not yet durable, and the node would rejoin without it.)
    let server = c.mariadbd_pid(p);
    c.sql(p, &["SHUTDOWN"])
        .expect("shut the fenced server down");
    let down =
        e2e::harness::util::eventually(Duration::from_secs(30), Duration::from_millis(50), || {
            server
                .is_none_or(|pid| {
                    !std::path::Path::new(&format!("/proc/{pid}")).exists()
                        || e2e::harness::util::proc_state(pid) == Some('Z')
                })
                .then_some(())
        });
    assert!(down.is_some(), "the fenced server did not shut down");
    c.kill_node(p);
    c.start_agent(p);
    np
}

/// A former primary with a transaction the new primary lacks is flagged `needs_rebuild`
/// and never rejoins (auto_rebuild is off).
#[test]
fn errant_transaction_on_a_former_primary_is_flagged_not_rejoined() {
    let (mut c, p) = settled(MariaOpts::default());
    let np = errant_former_primary(&mut c, p);
    c.wait_flagged_needs_rebuild(p, Duration::from_secs(30));
    throughout(
        Instant::now() + STAYS_APART,
        Duration::from_millis(100),
        || {
            assert_ne!(
                c.replica_of(p).map(|(_, running)| running),
                Some(true),
                "{} replicates although diverged",
                c.name(p)
            );
        },
    );
    assert!(!c.writable(p), "the diverged node accepts writes");
    assert_eq!(c.primary(), Some(np), "the primary changed");
    let rows = written(c.port(np)).expect("rows on the primary");
    assert!(
        !rows.contains(&999_999),
        "the errant row reached the primary"
    );
}

/// With `auto_rebuild: true` the diverged former primary is replaced by a copy of the new
/// primary (its old data moved aside) and follows it; the errant row is gone.
#[test]
fn auto_rebuild_replaces_a_diverged_former_primary() {
    let (mut c, p) = settled(MariaOpts {
        auto_rebuild: true,
        ..MariaOpts::default()
    });
    let np = errant_former_primary(&mut c, p);
    c.wait_replicating(p, np, Duration::from_secs(60));
    c.sql(np, &["INSERT INTO e2e.seq VALUES (4)"])
        .expect("write on the primary");
    let pos = c
        .admin(np)
        .value("SELECT @@gtid_current_pos")
        .expect("position");
    if let Err(e) = c.wait_gtid(p, &pos, Duration::from_secs(10)) {
        panic!("the rebuilt node did not apply {pos}: {e}\n{}", c.logs());
    }
    let rows = written(c.port(p)).expect("rows on the rebuilt node");
    assert!(
        !rows.contains(&999_999),
        "the errant row survived the rebuild"
    );
    assert!(
        rows.contains(&1) && rows.contains(&4),
        "rows missing after the rebuild: {rows:?}"
    );
    // The old data is kept aside, with the errant row in it.
    let kept = c.entries(&format!("data-{}.aside-", p + 1));
    let errant_kept = kept.iter().any(|d| {
        std::fs::read_dir(c.dir().join(d).join("e2e"))
            .map(|mut e| e.any(|f| f.is_ok_and(|f| f.file_name() == "seq.ibd")))
            .unwrap_or(false)
    });
    assert!(
        errant_kept,
        "the diverged data directory was not kept (aside: {kept:?})"
    );
    let log = c.agent_log(p);
    assert!(
        log.contains("received the backup stream") && log.contains("cloned the primary"),
        "the node was not rebuilt from a backup stream of the primary\n{}",
        c.logs()
    );
    assert!(!c.writable(p), "the rebuilt replica accepts writes");
}
