//! The Patroni side of `bench postgres-failover`, so it does not rot: a 3-node Patroni
//! cluster on a fresh etcd settles (a leader, two streaming replicas), reports the lease TTL
//! it really uses, and one kill -9 of the postmaster is measured with the bench's own
//! measurement; afterwards every process is gone and the temp dir deleted. A missing
//! Patroni fails the test (run scripts/install-deps), it never skips.

use std::time::Duration;

use bench::patroni::{PatroniCluster, PatroniOpts, check_installed, timing};
use bench::postgres::{Scenario, measure};
use e2e::harness::util::alive;

#[test]
fn timing_respects_patronis_rule() {
    for ttl in [5, 10, 20, 30] {
        let (loop_wait, retry_timeout) = timing(Duration::from_secs(ttl));
        assert!(
            loop_wait >= 1 && retry_timeout >= 3,
            "{ttl}: {loop_wait} {retry_timeout}"
        );
        // loop_wait + 2 × retry_timeout ≤ the TTL Patroni uses (at least 20 s).
        assert!(loop_wait + 2 * retry_timeout <= ttl.max(20), "{ttl}");
    }
    assert_eq!(timing(Duration::from_secs(10)), (2, 4));
    assert_eq!(timing(Duration::from_secs(5)), (1, 3));
}

#[test]
fn patroni_cluster_fails_over_after_kill_9_of_the_postmaster() {
    if let Err(e) = check_installed() {
        panic!("{e:#}");
    }
    let t0 = std::time::Instant::now();
    let mut c = PatroniCluster::start(
        3,
        PatroniOpts {
            ttl: Duration::from_secs(10),
            durability: "async",
        },
    )
    .expect("start the Patroni cluster");
    let p = c
        .wait_settled(Duration::from_secs(90))
        .expect("a leader and two streaming replicas");
    println!("settled after {:?}", t0.elapsed());
    assert_eq!(c.leader(), Some(p));
    // Patroni raises a TTL below 20 s to 20 s (recipes.md gotcha 1): the lease says so.
    let lease = c.effective_ttl().expect("the leader key's lease");
    assert_eq!(lease, Duration::from_secs(20), "lease TTL");

    let mut pids: Vec<i32> = (0..c.len()).filter_map(|i| c.patroni_pid(i)).collect();
    pids.extend((0..c.len()).filter_map(|i| c.postmaster_pid(i)));
    assert_eq!(pids.len(), 6, "3 Patroni and 3 postmasters");

    let run = measure(
        &mut c,
        p,
        Scenario::Crash,
        lease * 3 + Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("measure: {e:#}"));
    println!(
        "Patroni kill -9 postmaster: {run:?} (at {:?})",
        t0.elapsed()
    );
    assert_ne!(run.new, p, "a replica took over");
    // primary_start_timeout 0: Patroni fails over once the leader's loop sees PostgreSQL down
    // (recipes.md: 1.8–5.3 s), well within a lease.
    assert!(
        run.took > Duration::from_millis(50) && run.took < lease,
        "failover took {:?}",
        run.took
    );
    assert_eq!(run.split_brain, 0, "two writable nodes after a crash");
    // Async: only what no replica had received when the postmaster died may be lost.
    assert!(run.lost < 50, "{} acknowledged rows lost", run.lost);
    assert_eq!(
        c.leader(),
        Some(run.new),
        "Patroni's leader is the node that took the write"
    );

    let dir = c.dir().to_path_buf();
    drop(c);
    println!("dropped at {:?}", t0.elapsed());
    for pid in pids {
        assert!(
            !alive(pid),
            "pid {pid} still runs after the cluster was dropped"
        );
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
}
