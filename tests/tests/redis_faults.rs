//! End-to-end faults of the store and of node restarts, on three agents driving real Redis
//! servers (the `process` engine and the hooks of `examples/redis/hooks`), TTL 2 s:
//! - etcd down for twice the TTL: the primary fences itself before the TTL, nobody accepts
//!   writes during the outage, and once etcd is back exactly one primary serves again, with
//!   `initialized` unchanged and no new `bootstrap` in `history` (I1, I3);
//! - a replica's agent stopped and started again with its state rejoins as a replica;
//! - a replica wiped (no marker, no data) and started again clones the primary instead of
//!   initialising (I3);
//! - a three-member etcd losing one member: no failover and no fence; a later node loss still
//!   fails over on the two members left.

use std::time::{Duration, Instant};

use e2e::harness::util::{eventually, throughout};
use e2e::harness::workload::{Checker, Writer};
use e2e::redis::cluster::{RedisCluster, RedisOpts};
use e2e::redis::scenario::*;

/// The `history` key's entries (empty when the key is absent).
fn history(c: &RedisCluster) -> Vec<serde_json::Value> {
    let Some(raw) = c.key("history") else {
        return Vec::new();
    };
    let doc: serde_json::Value =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("history is not JSON ({e}): {raw}"));
    doc["entries"].as_array().cloned().unwrap_or_default()
}

/// The `history` entries whose reason is `bootstrap` (first word).
fn bootstraps(c: &RedisCluster) -> Vec<serde_json::Value> {
    history(c)
        .into_iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.split_whitespace().next() == Some("bootstrap"))
        })
        .collect()
}

/// Asserts that `initialized` still holds `before` and that `history` has exactly the
/// `bootstrap` entries it had.
fn assert_not_reinitialised(c: &RedisCluster, initialized: &str, boots: &[serde_json::Value]) {
    assert_eq!(
        c.key("initialized").as_deref(),
        Some(initialized),
        "initialized was rewritten\n{}",
        c.logs()
    );
    let now = bootstraps(c);
    assert_eq!(
        now,
        boots,
        "history gained a bootstrap entry; history {:?}\n{}",
        history(c),
        c.logs()
    );
}

/// Whether node `i`'s state dir holds anything (the bootstrap marker).
fn has_state(c: &RedisCluster, i: usize) -> bool {
    std::fs::read_dir(c.state_dir(i)).is_ok_and(|mut d| d.next().is_some())
}

/// Waits until node `i`'s Redis no longer answers PING.
fn wait_redis_gone(c: &RedisCluster, i: usize) {
    let gone = eventually(Duration::from_secs(15), Duration::from_millis(50), || {
        c.cmd(i, &["PING"]).is_err().then_some(())
    });
    assert!(
        gone.is_some(),
        "{}'s Redis still answers after its agent exited\n{}",
        c.name(i),
        c.logs()
    );
}

/// Waits up to `within` until `i` reports role `replica` and its Redis replicates from
/// `primary`, asserting on every round that `primary` stays the primary.
fn rejoins_as_replica_of(c: &RedisCluster, i: usize, primary: usize, within: Duration) {
    let t0 = Instant::now();
    let rejoined = eventually(within, Duration::from_millis(50), || {
        assert_eq!(
            c.primary(),
            Some(primary),
            "the primary changed while {} rejoined ({:?} after its start); roles {:?}\n{}",
            c.name(i),
            t0.elapsed(),
            c.roles(),
            c.logs()
        );
        (c.role(i) == "replica" && c.replicates_from(i, primary)).then_some(())
    });
    assert!(
        rejoined.is_some(),
        "{} is not a replica of {} within {within:?}: role {:?}, redis {}; roles {:?}\n{}",
        c.name(i),
        c.name(primary),
        c.role(i),
        c.replication_info(i),
        c.roles(),
        c.logs()
    );
    println!(
        "{} rejoined as a replica after {:?}",
        c.name(i),
        t0.elapsed()
    );
}

/// Waits until node `i` reads `value` at `key`.
fn wait_value(c: &RedisCluster, i: usize, key: &str, value: &str) {
    let seen = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        let v = c.cmd(i, &["GET", key]).ok()?;
        (v.as_str() == Some(value)).then_some(())
    });
    assert!(
        seen.is_some(),
        "{} does not have {key}={value}: {:?}\n{}",
        c.name(i),
        c.cmd(i, &["GET", key]),
        c.logs()
    );
}

#[test]
fn etcd_outage_longer_than_the_ttl_fences_the_primary_then_one_primary_returns() {
    let mut c = start(3);
    let p = settled(&c);
    let initialized = c.key("initialized").expect("initialized key");
    let boots = bootstraps(&c);
    assert_eq!(
        boots.len(),
        1,
        "one bootstrap in history: {:?}",
        history(&c)
    );
    let checker = Checker::start(c.workload(), MAX_RUN);
    let writer = Writer::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);

    let outage = ttl(&c) * 2;
    let t0 = Instant::now();
    c.etcd_mut().stop();
    let stop_took = t0.elapsed();
    let fenced = eventually(
        ttl(&c) + Duration::from_secs(3),
        Duration::from_millis(10),
        || (!c.writable(p)).then(|| t0.elapsed()),
    );
    let fenced = fenced.unwrap_or_else(|| {
        panic!(
            "{} still accepts writes {:?} after etcd stopped; roles {:?}\n{}",
            c.name(p),
            t0.elapsed(),
            c.roles(),
            c.logs()
        )
    });
    println!(
        "etcd stopped (took {stop_took:?}): {} refuses writes {fenced:?} after the stop began (TTL {:?})",
        c.name(p),
        ttl(&c)
    );
    assert!(
        fenced < ttl(&c),
        "{} refused writes only {fenced:?} after etcd stopped, not under the TTL {:?}\n{}",
        c.name(p),
        ttl(&c),
        c.logs()
    );
    // No node accepts writes for the rest of the outage.
    throughout(t0 + outage, Duration::from_millis(50), || {
        for i in 0..c.len() {
            assert!(
                !c.writable(i),
                "{} accepts writes {:?} into the etcd outage (fenced at {fenced:?}); roles {:?}\n{}",
                c.name(i),
                t0.elapsed(),
                c.roles(),
                c.logs()
            );
        }
    });
    println!("roles at the end of the outage: {:?}", c.roles());
    c.etcd_mut().restart().expect("restart etcd");
    let back = Instant::now();
    let q = c.wait_primary(ttl(&c) + Duration::from_secs(15));
    wait_writable(&c, q, Duration::from_secs(10));
    println!(
        "etcd back after {:?}: {} is primary and accepts writes {:?} later (was {})",
        t0.elapsed(),
        c.name(q),
        back.elapsed(),
        c.name(p)
    );
    for i in (0..c.len()).filter(|&i| i != q) {
        c.wait_replicating(i, q, ATTACH);
    }
    assert!(
        stays_primary(&c, q, STABLE),
        "the primary after the outage does not stay put; roles {:?}\n{}",
        c.roles(),
        c.logs()
    );
    assert_eq!(
        c.primary_in_etcd().as_deref(),
        Some(c.name(q)),
        "the primary key names the node answering /primary\n{}",
        c.logs()
    );
    let_writer_run(&c, q, 50);
    let w = writer.stop();
    let k = checker.stop();
    assert_no_split_brain_no_loss(&c, q, &w, &k);
    assert_not_reinitialised(&c, &initialized, &boots);
}

#[test]
fn a_replica_restarted_with_its_data_rejoins_as_a_replica() {
    let mut c = start(3);
    let p = settled(&c);
    let r = (0..3).find(|&i| i != p).expect("a replica");
    c.cmd(p, &["SET", "before", "1"]).expect("SET before");
    wait_value(&c, r, "before", "1");
    assert!(
        has_state(&c, r),
        "{}'s state dir {} is empty before the restart",
        c.name(r),
        c.state_dir(r).display()
    );
    c.sigterm_agent(r);
    assert!(
        c.wait_agent_exit(r, Duration::from_secs(15)),
        "{}'s agent does not exit on SIGTERM\n{}",
        c.name(r),
        c.logs()
    );
    wait_redis_gone(&c, r);
    assert!(
        has_state(&c, r),
        "{}'s state dir lost its marker on a graceful stop",
        c.name(r)
    );
    assert_eq!(
        c.primary(),
        Some(p),
        "the primary changed when a replica stopped\n{}",
        c.logs()
    );
    c.cmd(p, &["SET", "while_down", "2"])
        .expect("SET while_down");
    c.start_agent(r);
    rejoins_as_replica_of(&c, r, p, ATTACH);
    wait_value(&c, r, "before", "1");
    wait_value(&c, r, "while_down", "2");
    assert!(!c.writable(r), "the rejoined replica accepts writes");
    assert!(
        stays_primary(&c, p, ttl(&c)),
        "the primary changed after the replica rejoined; roles {:?}\n{}",
        c.roles(),
        c.logs()
    );
    let other = (0..3).find(|&i| i != p && i != r).expect("a third node");
    assert!(c.replicates_from(other, p), "the other replica detached");
}

#[test]
fn a_wiped_node_joining_an_initialised_cluster_clones_instead_of_initialising() {
    let mut c = start(3);
    let p = settled(&c);
    let r = (0..3).rev().find(|&i| i != p).expect("a replica");
    let initialized = c.key("initialized").expect("initialized key");
    let boots = bootstraps(&c);
    c.cmd(p, &["SET", "precious", "data"])
        .expect("SET precious");
    c.sigterm_agent(r);
    assert!(
        c.wait_agent_exit(r, Duration::from_secs(15)),
        "{}'s agent does not exit on SIGTERM\n{}",
        c.name(r),
        c.logs()
    );
    wait_redis_gone(&c, r);
    c.wipe_node(r);
    assert!(!has_state(&c, r), "the wipe left state behind");
    c.cmd(p, &["SET", "later", "too"]).expect("SET later");
    c.start_agent(r);
    rejoins_as_replica_of(&c, r, p, ATTACH);
    wait_value(&c, r, "precious", "data");
    wait_value(&c, r, "later", "too");
    assert!(!c.writable(r), "the cloned replica accepts writes");
    assert!(
        stays_primary(&c, p, ttl(&c)),
        "the primary changed after the wiped node joined; roles {:?}\n{}",
        c.roles(),
        c.logs()
    );
    assert_not_reinitialised(&c, &initialized, &boots);
}

/// Run at TTL 3 s rather than the harness's 2 s: a primary fences itself when a keep-alive
/// (sent every TTL/3) is not answered within TTL/2 of the last answered one, a margin of
/// TTL/6, and at 2 s those 333 ms are sometimes spent by the loaded 2-core CI machine alone
/// while the client moves off the dead member. Requests that hit the dead member are sent
/// again by the store (`EtcdStore::call`), so the member loss itself costs nothing.
#[test]
fn losing_one_of_three_etcd_members_changes_nothing_and_failover_still_works() {
    let opts = RedisOpts {
        ttl: Duration::from_secs(3),
        ..RedisOpts::default()
    };
    let mut c = RedisCluster::start_on_etcd_cluster(3, 3, opts)
        .expect("start the Redis cluster on a three-member etcd");
    let p = settled(&c);
    let checker = Checker::start(c.workload(), MAX_RUN);
    let writer = Writer::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);
    // Member 0 is the first endpoint of every agent, the one a client is most likely using.
    c.etcd_cluster().kill(0);
    println!(
        "killed etcd member 0 ({}) of {:?}",
        c.etcd_endpoints()[0],
        c.etcd_endpoints()
    );
    let window = ttl(&c) * 3;
    let t0 = Instant::now();
    throughout(t0 + window, Duration::from_millis(50), || {
        let role = c.role(p);
        assert_eq!(
            role,
            "primary",
            "{} is {role} {:?} after one etcd member of three died; roles {:?}\n{}",
            c.name(p),
            t0.elapsed(),
            c.roles(),
            c.logs()
        );
        assert_eq!(
            c.primary(),
            Some(p),
            "the primary moved {:?} after one etcd member of three died; roles {:?}\n{}",
            t0.elapsed(),
            c.roles(),
            c.logs()
        );
        assert!(
            c.writable(p),
            "{} refuses writes {:?} after one etcd member of three died (fenced?); roles {:?}\n{}",
            c.name(p),
            t0.elapsed(),
            c.roles(),
            c.logs()
        );
    });
    let_writer_run(&c, p, 50);
    let w = writer.stop();
    let k = checker.stop();
    assert_no_split_brain_no_loss(&c, p, &w, &k);
    assert!(
        k.timeline.iter().all(|(_, nodes)| nodes == &[p]),
        "the writable set was not always exactly {}: {:?}\n{}",
        c.name(p),
        k.timeline,
        c.logs()
    );

    let t1 = Instant::now();
    c.kill_agent(p);
    let bound = ttl(&c) + Duration::from_secs(4);
    let (new, _) = c.wait_new_primary(p, bound);
    let took = t1.elapsed();
    println!(
        "node loss of {} with 2 of 3 etcd members: {} is primary after {took:?} (TTL {:?})",
        c.name(p),
        c.name(new),
        ttl(&c)
    );
    wait_writable(&c, new, Duration::from_secs(5));
    let other = (0..3).find(|&i| i != p && i != new).expect("a third node");
    c.wait_replicating(other, new, ATTACH);
    assert_eq!(
        c.primary_in_etcd().as_deref(),
        Some(c.name(new)),
        "the primary key names the new primary\n{}",
        c.logs()
    );
}
