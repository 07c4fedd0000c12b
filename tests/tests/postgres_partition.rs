//! Network partitions of a PostgreSQL cluster (issue 12): every node runs in a network
//! namespace of its own on a test LAN (`e2e::netns`), etcd and the clients on the bridge.
//!
//! - The primary cut off from etcd and from its peers while its clients still reach it:
//!   it fences itself before its lease can expire, a replica takes over, and once the
//!   partition heals the former primary rejoins as a replica with the winner's rows. With
//!   `sync` no acknowledged commit is lost; with `async` the commits the isolated primary
//!   acknowledged before it fenced itself are lost, and the test measures that window
//!   against the documented bound (TTL / 2 after its last keep-alive).
//! - A replica cut off: the primary stays primary, nothing is lost, and the replica streams
//!   again with the same rows after the partition heals.
//!
//! Needs root (network namespaces); every run ends at full redundancy.

use std::time::{Duration, Instant};

use e2e::postgres_cluster::{PgCluster, PgOpts};
use e2e::postgres_scenario::{
    ATTACH, MAX_RUN, let_writer_run, same_rows_everywhere, settled, wait_writable,
};
use e2e::workload::{Checker, Writer};

fn start(durability: &'static str) -> PgCluster {
    PgCluster::start_on_lan(
        3,
        PgOpts {
            durability,
            ..PgOpts::default()
        },
    )
    .expect("start a PostgreSQL cluster on a test LAN (needs root and iproute2)")
}

fn full_redundancy(c: &PgCluster, primary: usize) {
    for i in (0..c.len()).filter(|&i| i != primary) {
        c.wait_streaming(i, primary, ATTACH);
    }
    same_rows_everywhere(c, primary);
}

/// Isolates the primary for 3 × TTL, heals, and checks what the module docs promise; the
/// commits the isolated primary acknowledged after it was cut off and that the cluster lost.
fn primary_partition(durability: &'static str) -> (usize, Duration) {
    let mut c = start(durability);
    let p = settled(&c);
    let ttl = c.opts().ttl;
    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);
    let cut = Instant::now();
    c.lan_mut().isolate(p).expect("isolate the primary");
    let (np, took) = c.wait_new_primary(p, ttl * 3 + Duration::from_secs(10));
    println!(
        "{durability}: {} cut off; {} primary after {took:?}",
        c.name(p),
        c.name(np)
    );
    wait_writable(&c, np, Duration::from_secs(15));
    let_writer_run(&c, np, 50);
    // The clients still reach the isolated former primary: it must not take writes.
    assert!(
        !c.workload().writable(p),
        "the isolated former primary takes writes\n{}",
        c.logs()
    );
    std::thread::sleep((ttl * 3).saturating_sub(cut.elapsed()));
    c.lan_mut().heal(p).expect("heal");
    let_writer_run(&c, np, 20);
    let (w, k) = (w.stop(), k.stop());
    assert!(
        k.split_brain.is_empty(),
        "two writable nodes: {:?}\n{}",
        k.split_brain,
        c.logs()
    );
    full_redundancy(&c, np);
    let mut rows = c.workload().written(np);
    rows.sort_unstable();
    let lost = w.lost(&rows);
    let after_cut = w.acked_by_since(p, cut);
    let window = after_cut
        .last()
        .map_or(Duration::ZERO, |(_, at)| at.duration_since(cut));
    println!(
        "{durability}: the isolated primary acknowledged {} commits for {window:?} after the cut; {} acknowledged commits lost",
        after_cut.len(),
        lost.len()
    );
    // Whatever was lost was acknowledged by the isolated primary after the cut.
    let cut_off: std::collections::HashSet<u64> = after_cut.iter().map(|(n, _)| *n).collect();
    assert!(
        lost.iter().all(|n| cut_off.contains(n)),
        "lost commits that were acknowledged before the cut or by another node: {lost:?}"
    );
    // The documented bound: it fences itself TTL / 2 after its last acknowledged keep-alive
    // (sent at most a keep-alive interval before the cut); a second for scheduling.
    let bound = ttl / 2 + ttl / 3 + Duration::from_secs(1);
    assert!(
        window <= bound,
        "the isolated primary acknowledged commits {window:?} after the cut (bound {bound:?})"
    );
    (lost.len(), window)
}

#[test]
fn sync_a_primary_cut_off_from_etcd_and_peers_loses_nothing_and_rejoins() {
    let (lost, _) = primary_partition("sync");
    assert_eq!(lost, 0, "sync lost acknowledged commits");
}

#[test]
fn async_a_primary_cut_off_loses_at_most_its_fencing_window_and_rejoins() {
    primary_partition("async");
}

#[test]
fn a_replica_cut_off_and_healed_streams_again_with_the_same_rows() {
    let mut c = start("sync");
    let p = settled(&c);
    let r = (0..c.len()).find(|&i| i != p).expect("a replica");
    let ttl = c.opts().ttl;
    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);
    c.lan_mut().isolate(r).expect("isolate a replica");
    // Longer than the TTL: the replica's lease expires; it must not become primary.
    let until = Instant::now() + ttl * 3;
    while Instant::now() < until {
        assert_eq!(
            c.primary(),
            Some(p),
            "the primary changed while a replica was cut off\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let_writer_run(&c, p, 50);
    c.lan_mut().heal(r).expect("heal");
    c.wait_streaming(r, p, ATTACH);
    let_writer_run(&c, p, 20);
    let (w, k) = (w.stop(), k.stop());
    let mut rows = c.workload().written(p);
    rows.sort_unstable();
    e2e::cluster::assert_no_split_brain_no_loss(&c, &rows, &w, &k);
    full_redundancy(&c, p);
}
