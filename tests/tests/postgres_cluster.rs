//! PostgreSQL clusters under real agents (real etcd, three real PostgreSQL 15 servers,
//! agents as processes): bootstrap, planned switchover, graceful stop, and the old primary
//! rejoining. Fault scenarios are in `postgres_faults.rs` (separate so they run in parallel).

use std::time::Duration;

use e2e::postgres_cluster::PgOpts;
use e2e::postgres_scenario::{
    MAX_RUN, assert_no_split_brain_no_loss, let_writer_run, settled, start, wait_writable,
};
use e2e::workload::{Checker, Writer};

#[test]
fn fresh_cluster_bootstraps_clones_and_replicates() {
    let c = start(3, PgOpts::default());
    let p = settled(&c);
    // Timeline 2: the bootstrap node started as a standby and was promoted.
    assert_eq!(c.scalar(p, "SELECT pg_is_in_recovery()").expect("query"), "f");
    for i in (0..3).filter(|&i| i != p) {
        assert_eq!(c.scalar(i, "SELECT pg_is_in_recovery()").expect("query"), "t");
        let ok = e2e::util::eventually(Duration::from_secs(5), Duration::from_millis(50), || {
            (c.http_status(i, "/replica") == Some(200)).then_some(())
        });
        assert!(ok.is_some(), "/replica on {}: {}", c.name(i), c.health(i));
    }
    // Data checksums are on (pg_rewind needs them).
    assert_eq!(c.scalar(p, "SHOW data_checksums").expect("query"), "on");
    // One slot per replica, managed by the primary's agent.
    let slots = c
        .scalar(p, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots WHERE active")
        .expect("query");
    assert_eq!(slots.split(',').count(), 2, "slots: {slots}");
    c.sql()
        .query(c.pg_port(p), "INSERT INTO e2e_writes SELECT generate_series(1, 50)", Duration::from_secs(5))
        .expect("write");
    for i in 0..3 {
        let ok = e2e::util::eventually(Duration::from_secs(10), Duration::from_millis(50), || {
            c.scalar(i, "SELECT count(*) FROM e2e_writes").ok().filter(|n| n == "50")
        });
        assert!(ok.is_some(), "rows do not reach {}", c.name(i));
    }
    let m = c.metrics(p);
    for name in [
        "autopilot_postgres_timeline",
        "autopilot_postgres_replay_lag_seconds",
        "autopilot_postgres_replay_lag_bytes",
        "autopilot_postgres_connections",
        "autopilot_postgres_transactions_per_second",
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
    assert!(c.wait_agent_exit(p, Duration::from_secs(20)), "the stopped agent did not exit");
    let (w, k) = (w.stop(), k.stop());
    assert_no_split_brain_no_loss(&c, np, &w, &k);
}

