//! PostgreSQL clusters under real agents (real etcd, three real PostgreSQL 15 servers,
//! agents as processes): bootstrap, planned switchover, graceful stop, and the old primary
//! rejoining. Fault scenarios are in `postgres_faults.rs` (separate so they run in parallel).

use std::time::{Duration, Instant};

use e2e::harness::util::eventually;
use e2e::harness::workload::{Checker, Writer};
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::scenario::{
    MAX_RUN, assert_no_split_brain_no_loss, let_writer_run, settled, start, wait_writable,
};

#[test]
fn fresh_cluster_bootstraps_clones_and_replicates() {
    let c = start(3, PgOpts::default());
    let p = settled(&c);
    // Timeline 2: the bootstrap node started as a standby and was promoted.
    assert_eq!(
        c.scalar(p, "SELECT pg_is_in_recovery()").expect("query"),
        "f"
    );
    for i in (0..3).filter(|&i| i != p) {
        assert_eq!(
            c.scalar(i, "SELECT pg_is_in_recovery()").expect("query"),
            "t"
        );
        let ok = e2e::harness::util::eventually(
            Duration::from_secs(5),
            Duration::from_millis(50),
            || (c.http_status(i, "/replica") == Some(200)).then_some(()),
        );
        assert!(ok.is_some(), "/replica on {}: {:?}", c.name(i), c.health(i));
    }
    // Data checksums are on (pg_rewind needs them).
    assert_eq!(c.scalar(p, "SHOW data_checksums").expect("query"), "on");
    // One slot per replica, managed by the primary's agent.
    let slots = c
        .scalar(p, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE active")
        .expect("query");
    assert_eq!(slots.split(',').count(), 2, "slots: {slots}");
    c.sql()
        .query(
            c.pg_port(p),
            "INSERT INTO e2e_writes SELECT generate_series(1, 50)",
            Duration::from_secs(5),
        )
        .expect("write");
    for i in 0..3 {
        let ok = e2e::harness::util::eventually(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                c.scalar(i, "SELECT count(*) FROM e2e_writes")
                    .ok()
                    .filter(|n| n == "50")
            },
        );
        assert!(ok.is_some(), "rows do not reach {}", c.name(i));
    }
    let m = c.metrics(p);
    for name in [
        "autopilot_postgres_timeline",
        "autopilot_postgres_replay_lag_seconds",
        "autopilot_postgres_replay_lag_bytes",
        "autopilot_postgres_connections",
        "autopilot_postgres_transactions_total",
        "autopilot_postgres_synchronous_replicas",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
}

#[test]
fn graceful_stop_hands_over_without_loss() {
    let mut c = start(3, PgOpts::default());
    let p = settled(&c);
    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 20);
    c.sigterm_agent(p);
    let (np, took) = c.wait_new_primary(p, Duration::from_secs(20));
    println!("graceful stop: new primary after {took:?}");
    wait_writable(&c, np, Duration::from_secs(10));
    let_writer_run(&c, np, 20);
    assert!(
        c.wait_agent_exit(p, Duration::from_secs(20)),
        "the stopped agent did not exit"
    );
    let (w, k) = (w.stop(), k.stop());
    assert_no_split_brain_no_loss(&c, np, &w, &k);
}

#[test]
fn switchover_to_a_named_node_loses_no_row() {
    let c = start(3, PgOpts::default());
    let p = settled(&c);
    let target = (0..3).rev().find(|&i| i != p).expect("another node");
    let other = (0..3)
        .find(|&i| i != p && i != target)
        .expect("a third node");
    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);
    // A switchover to a target that is not (yet) eligible is rejected: wait for it.
    let eligible = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        c.key(&format!("nodes/{}", c.name(target)))
            .filter(|doc| doc.contains("\"eligible\":true"))
    });
    assert!(
        eligible.is_some(),
        "{} never eligible\n{}",
        c.name(target),
        c.logs()
    );
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
    let outage = wait_writable(&c, target, Duration::from_secs(10));
    println!(
        "switchover {} -> {} took {:?} (+{outage:?} to the first write)",
        c.name(p),
        c.name(target),
        t0.elapsed()
    );
    let e = c.wait_event("switchover", target, Duration::from_secs(5));
    assert_eq!(e["from"], c.name(p), "{e:#}");
    assert_eq!(e["to"], c.name(target), "{e:#}");
    c.wait_event("handover", p, Duration::from_secs(5));
    // The old primary demotes itself to a standby of the target; the third node follows.
    c.wait_streaming(p, target, Duration::from_secs(40));
    c.wait_streaming(other, target, Duration::from_secs(40));
    let_writer_run(&c, target, 50);
    let (w, k) = (w.stop(), k.stop());
    assert_no_split_brain_no_loss(&c, target, &w, &k);
    assert_eq!(w.acked_by_node[other], 0, "the third node took writes");
}

#[test]
fn the_most_advanced_replica_wins_after_replaying_what_it_received() {
    let mut c = start(3, PgOpts::default());
    let p = settled(&c);
    let ahead = (0..3).find(|&i| i != p).expect("a replica");
    let behind = (0..3)
        .find(|&i| i != p && i != ahead)
        .expect("another replica");
    // `behind` stops streaming; `ahead` keeps receiving but does not replay.
    c.sql()
        .query(
            c.pg_port(behind),
            "ALTER SYSTEM SET primary_conninfo = ''",
            Duration::from_secs(5),
        )
        .expect("cut behind off");
    c.scalar(behind, "SELECT pg_reload_conf()").expect("reload");
    c.scalar(ahead, "SELECT pg_wal_replay_pause()")
        .expect("pause replay");
    c.sql()
        .query(
            c.pg_port(p),
            "INSERT INTO e2e_writes SELECT generate_series(1, 500)",
            Duration::from_secs(5),
        )
        .expect("write on the primary");
    let flushed = c
        .scalar(p, "SELECT pg_current_wal_flush_lsn()")
        .expect("lsn");
    let received = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        c.scalar(
            ahead,
            &format!("SELECT pg_last_wal_receive_lsn() >= '{flushed}'"),
        )
        .ok()
        .filter(|v| v == "t")
    });
    assert!(received.is_some(), "the replica did not receive the WAL");
    // The election compares the final positions the candidates publish once the primary is
    // gone (after replaying what they received); outside elections a moving position is
    // republished only every 30 s, so nothing here waits for the node keys.
    assert_eq!(
        c.scalar(ahead, "SELECT count(*) FROM e2e_writes")
            .expect("count"),
        "0"
    );
    c.kill_node(p);
    let (np, took) = c.wait_new_primary(p, Duration::from_secs(30));
    println!("new primary {} after {took:?}", c.name(np));
    assert_eq!(
        np,
        ahead,
        "the replica with the most WAL must win\n{}",
        c.logs()
    );
    wait_writable(&c, np, Duration::from_secs(10));
    assert_eq!(
        c.scalar(np, "SELECT count(*) FROM e2e_writes")
            .expect("count"),
        "500"
    );
    c.wait_streaming(behind, np, Duration::from_secs(40));
}
