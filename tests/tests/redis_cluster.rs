//! End-to-end: three agents driving real Redis servers through the `process` engine and the
//! hook scripts of `examples/redis/hooks`, coordinated through a real etcd (TTL 2 s).
//! Faults: kill -9 Redis, node loss, a frozen (SIGSTOP) primary agent, a graceful stop,
//! maintenance mode, a switchover, and a restart with wiped state. A writer records every
//! acknowledged write and a checker records every instant where two nodes accepted writes.

use std::time::{Duration, Instant};

use e2e::harness::util::{eventually, hold, throughout};
use e2e::harness::workload::{Checker, Writer};
use e2e::redis::scenario::*;
use e2e::redis::workload::RedisWorkload;

#[test]
fn fresh_cluster_has_one_primary_and_two_replicas() {
    let c = start(3);
    let first = c.wait_primary(BOOTSTRAP);
    let window = ttl(&c) + Duration::from_secs(1);
    let t0 = Instant::now();
    throughout(t0 + window, Duration::from_millis(50), || {
        let now = c.primary();
        assert_eq!(
            now,
            Some(first),
            "the bootstrap primary {} did not stay primary ({:?} after it was first seen): roles {:?}\n{}",
            c.name(first),
            t0.elapsed(),
            c.roles(),
            c.logs()
        );
    });
    let p = settled(&c);
    assert_eq!(p, first);
    assert_eq!(
        c.primary_in_etcd().as_deref(),
        Some(c.name(p)),
        "the primary key names the node answering /primary\n{}",
        c.logs()
    );
    assert!(
        c.key("initialized").is_some(),
        "no initialized key\n{}",
        c.logs()
    );
    let online = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
        let doc: serde_json::Value = serde_json::from_str(&c.key("primary")?).ok()?;
        (doc["status"] == "online").then_some(())
    });
    assert!(
        online.is_some(),
        "the primary key does not say online once promoted: {:?}\n{}",
        c.key("primary"),
        c.logs()
    );
    assert!(c.writable(p), "the primary refuses writes\n{}", c.logs());
    let reply = c.cmd(p, &["SET", "greeting", "hello"]).expect("SET");
    assert_eq!(reply.as_str(), Some("OK"));
    for r in (0..3).filter(|&i| i != p) {
        let seen = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
            let v = c.cmd(r, &["GET", "greeting"]).ok()?;
            (v.as_str() == Some("hello")).then_some(())
        });
        assert!(
            seen.is_some(),
            "{} does not see the write\n{}",
            c.name(r),
            c.logs()
        );
        assert!(!c.writable(r), "replica {} accepts writes", c.name(r));
        let replica_ok = eventually(Duration::from_secs(5), Duration::from_millis(50), || {
            (c.http_status(r, "/replica") == Some(200)).then_some(())
        });
        assert!(
            replica_ok.is_some(),
            "{} does not answer 200 on /replica; roles {:?}\n{}",
            c.name(r),
            c.roles(),
            c.logs()
        );
    }
    let roles = c.roles();
    assert_eq!(roles[p], "primary", "roles {roles:?}");
    for r in (0..3).filter(|&i| i != p) {
        assert_eq!(roles[r], "replica", "roles {roles:?}");
    }
}

#[test]
fn killing_the_primarys_redis_fails_over() {
    let c = start(3);
    let p = settled(&c);
    let writer = Writer::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);
    c.kill_redis(p);
    let (new, took) = c.wait_new_primary(p, ttl(&c) + Duration::from_secs(10));
    println!(
        "kill -9 redis on {}: {} is primary after {took:?}",
        c.name(p),
        c.name(new)
    );
    wait_writable(&c, new, Duration::from_secs(5));
    let other = (0..3).find(|&i| i != p && i != new).expect("a third node");
    c.wait_replicating(other, new, ATTACH);
    let_writer_run(&c, new, 20);
    let w = writer.stop();
    let lost = w.lost(&c.list_numbers(new, RedisWorkload::KEY));
    println!(
        "{} acknowledged, {} lost (async replication, Redis gone: losses allowed)",
        w.acked.len(),
        lost.len()
    );
    // Full redundancy: the agent restarts its Redis, which follows the new primary with
    // the same data.
    c.wait_replicating(p, new, ATTACH);
    same_list_everywhere(&c, new);
}

/// Every node holds the primary's list (replication caught up).
fn same_list_everywhere(c: &e2e::redis::cluster::RedisCluster, primary: usize) {
    let want = c.list_numbers(primary, RedisWorkload::KEY);
    for i in (0..3).filter(|&i| i != primary) {
        let same = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
            (c.list_numbers(i, RedisWorkload::KEY) == want).then_some(())
        });
        assert!(
            same.is_some(),
            "{} does not hold the primary's {} items",
            c.name(i),
            want.len()
        );
    }
}

#[test]
fn node_loss_fails_over_once_the_lease_expires() {
    let mut c = start(3);
    let p = settled(&c);
    let t0 = Instant::now();
    c.kill_agent(p);
    // How fast is `bench`'s to measure: a loaded CI machine may expire the lease late.
    let (new, _) = c.wait_new_primary(p, ttl(&c) + Duration::from_secs(30));
    println!(
        "node loss of {}: {} is primary after {:?} (TTL {:?})",
        c.name(p),
        c.name(new),
        t0.elapsed(),
        ttl(&c)
    );
    wait_writable(&c, new, Duration::from_secs(5));
    let other = (0..3).find(|&i| i != p && i != new).expect("a third node");
    c.wait_replicating(other, new, ATTACH);
    // The lost node's lease expired with its node key; its events live on their own lease.
    assert!(c.key(&format!("nodes/{}", c.name(p))).is_none());
    let events = c
        .etcdctl(&[
            "get",
            "--prefix",
            "--keys-only",
            &format!("{}events/", c.prefix()),
        ])
        .expect("list events");
    assert!(
        events
            .lines()
            .any(|k| k.ends_with(&format!("-{}", c.name(p)))),
        "the lost node's events vanished with its lease:\n{events}"
    );
    // The new primary's event says what happened, from whom to whom, and where it stood.
    let e = c.wait_event("failover", new, Duration::from_secs(5));
    assert_eq!(e["from"], c.name(p), "{e:#}");
    assert_eq!(e["to"], c.name(new), "{e:#}");
    assert!(e["position"]["offset"].as_u64().is_some(), "{e:#}");
    // The third node says whom it follows now.
    let joined = eventually(Duration::from_secs(5), Duration::from_millis(100), || {
        c.events()
            .into_iter()
            .find(|e| e["kind"] == "joined" && e["node"] == c.name(other) && e["to"] == c.name(new))
    });
    assert!(joined.is_some(), "no joined event: {:#?}", c.events());
    // Full redundancy: the lost node comes back (a service manager's restart) and follows.
    c.start_agent(p);
    c.wait_replicating(p, new, ATTACH);
    same_list_everywhere(&c, new);
}

#[test]
fn frozen_primary_agent_is_fenced_and_no_acknowledged_write_is_lost() {
    let mut c = start(3);
    let p = settled(&c);
    let checker = Checker::start(c.workload(), MAX_RUN);
    let writer = Writer::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 100);
    c.stop_agent(p);
    let (new, took) = c.wait_new_primary(p, ttl(&c) + Duration::from_secs(10));
    println!(
        "SIGSTOP agent of {}: {} is primary after {took:?}",
        c.name(p),
        c.name(new)
    );
    wait_writable(&c, new, Duration::from_secs(5));
    assert!(
        !c.writable(p),
        "the frozen primary's Redis still accepts writes (not fenced)\n{}",
        c.logs()
    );
    let_writer_run(&c, new, 50);
    c.cont_agent(p);
    c.wait_replicating(p, new, ATTACH);
    let other = (0..3).find(|&i| i != p && i != new).expect("a third node");
    c.wait_replicating(other, new, ATTACH);
    let_writer_run(&c, new, 50);
    let w = writer.stop();
    let k = checker.stop();
    assert!(
        !c.writable(p),
        "the old primary accepts writes after SIGCONT"
    );
    assert_eq!(c.primary(), Some(new), "the primary changed after SIGCONT");
    assert_no_split_brain_no_loss(&c, new, &w, &k);
}

#[test]
fn graceful_stop_hands_over_within_a_second() {
    let mut c = start(3);
    let p = settled(&c);
    let writer = Writer::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 50);
    c.sigterm_agent(p);
    let (new, took) = c.wait_new_primary(p, ttl(&c) + Duration::from_secs(5));
    println!(
        "SIGTERM agent of {}: {} is primary after {took:?} (TTL {:?})",
        c.name(p),
        c.name(new),
        ttl(&c)
    );
    assert!(
        took < ttl(&c),
        "graceful hand-over took {took:?}, not under the TTL {:?}\n{}",
        ttl(&c),
        c.logs()
    );
    wait_writable(&c, new, Duration::from_secs(5));
    assert!(
        c.wait_agent_exit(p, Duration::from_secs(15)),
        "the stopped agent does not exit\n{}",
        c.logs()
    );
    let_writer_run(&c, new, 20);
    let w = writer.stop();
    let lost = w.lost(&c.list_numbers(new, RedisWorkload::KEY));
    println!(
        "{} acknowledged, {} lost over the graceful stop",
        w.acked.len(),
        lost.len()
    );
}

#[test]
fn maintenance_mode_blocks_failover_until_turned_off() {
    let mut c = start(3);
    let p = settled(&c);
    c.put_key(
        "maintenance",
        r#"{"schema":1,"enabled":true,"reason":"e2e"}"#,
    );
    hold(WATCH_DELIVERY);
    c.kill_agent(p);
    let window = ttl(&c) + Duration::from_secs(3);
    let t0 = Instant::now();
    throughout(t0 + window, Duration::from_millis(100), || {
        if let Some(q) = c.primary() {
            panic!(
                "{} became primary {:?} after the primary's loss in maintenance mode\n{}",
                c.name(q),
                t0.elapsed(),
                c.logs()
            );
        }
        for i in (0..3).filter(|&i| i != p) {
            assert!(
                !c.writable(i),
                "{} accepts writes in maintenance mode\n{}",
                c.name(i),
                c.logs()
            );
        }
    });
    c.del_key("maintenance");
    let (new, took) = c.wait_new_primary(p, Duration::from_secs(10));
    println!("maintenance off: {} is primary after {took:?}", c.name(new));
    wait_writable(&c, new, Duration::from_secs(5));
}

#[test]
fn switchover_to_a_named_node_loses_no_write() {
    let c = start(3);
    let p = settled(&c);
    let target = (0..3).rev().find(|&i| i != p).expect("another node");
    let checker = Checker::start(c.workload(), MAX_RUN);
    let writer = Writer::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 100);
    let t0 = Instant::now();
    c.put_key(
        "switchover",
        &format!(r#"{{"schema":1,"candidate":"{}"}}"#, c.name(target)),
    );
    let moved = eventually(Duration::from_secs(15), Duration::from_millis(20), || {
        (c.primary() == Some(target)).then_some(())
    });
    assert!(
        moved.is_some(),
        "{} did not become primary; roles {:?}\n{}",
        c.name(target),
        c.roles(),
        c.logs()
    );
    println!(
        "switchover {} -> {} took {:?}",
        c.name(p),
        c.name(target),
        t0.elapsed()
    );
    wait_writable(&c, target, Duration::from_secs(5));
    let e = c.wait_event("switchover", target, Duration::from_secs(5));
    assert_eq!(e["from"], c.name(p), "{e:#}");
    assert_eq!(e["to"], c.name(target), "{e:#}");
    c.wait_event("handover", p, Duration::from_secs(5));
    c.wait_replicating(p, target, ATTACH);
    let other = (0..3)
        .find(|&i| i != p && i != target)
        .expect("a third node");
    c.wait_replicating(other, target, ATTACH);
    let cleared = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        c.key("switchover").is_none().then_some(())
    });
    assert!(
        cleared.is_some(),
        "the switchover key is still there\n{}",
        c.logs()
    );
    // Recorded as planned: it must not count towards the failover cooldown (I5).
    let history: serde_json::Value =
        serde_json::from_str(&c.key("history").expect("history")).expect("history JSON");
    let last = history["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned();
    assert_eq!(
        last.as_ref()
            .map(|e| (e["to"].clone(), e["reason"].clone())),
        Some((c.name(target).into(), "switchover".into())),
        "history: {history}"
    );
    let_writer_run(&c, target, 50);
    let w = writer.stop();
    let k = checker.stop();
    assert_no_split_brain_no_loss(&c, target, &w, &k);
    assert!(
        w.acked_by_node[other] == 0 && k.timeline.iter().all(|(_, nodes)| !nodes.contains(&other)),
        "{} accepted writes during a switchover from {} to {}: the role went through a third node\n{}\n{}",
        c.name(other),
        c.name(p),
        c.name(target),
        summary(&w, &k),
        c.logs()
    );
}

#[test]
fn an_initialised_cluster_is_never_reinitialised_empty() {
    let mut c = start(3);
    let p = settled(&c);
    c.cmd(p, &["SET", "precious", "data"]).expect("SET");
    let initialized = c.key("initialized").expect("initialized key");
    c.stop_all();
    let gone = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        c.key("primary").is_none().then_some(())
    });
    assert!(gone.is_some(), "the primary key outlives every agent");
    for i in 0..3 {
        c.wipe_node(i);
    }
    c.start_agent(0);
    let up = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        c.health(0)
    });
    assert!(
        up.is_some(),
        "the restarted agent never answers\n{}",
        c.logs()
    );
    let window = ttl(&c) * 3;
    throughout(Instant::now() + window, Duration::from_millis(100), || {
        assert_eq!(
            c.primary(),
            None,
            "a wiped node re-initialised the cluster\n{}",
            c.logs()
        );
        assert!(
            c.key("primary").is_none(),
            "a primary key appeared: {:?}\n{}",
            c.key("primary"),
            c.logs()
        );
        assert!(
            !c.writable(0),
            "the wiped node accepts writes\n{}",
            c.logs()
        );
    });
    assert_eq!(
        c.key("initialized").as_deref(),
        Some(initialized.as_str()),
        "initialized was rewritten"
    );
    println!("roles after {window:?}: {:?}", c.roles());
}
