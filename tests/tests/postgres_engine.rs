//! The PostgreSQL engine against real PostgreSQL 15 servers, without agents: bootstrap,
//! clone, the SQL fence (including a client that turns read-only off), catch-up,
//! promotion to a new timeline, divergence detection and pg_rewind, and synchronous
//! durability. The control of each server's process is served by the test.

use std::time::Duration;

use e2e::harness::util::eventually;
use e2e::postgres::server::{EngineNode, Sql, settings, temp_dir};
use engines::postgres::Durability;
use engines::{Engine, Member, Peer};

fn peer(port: u16) -> Peer {
    Peer {
        host: "127.0.0.1".to_owned(),
        port,
        agent: None,
        standby: false,
    }
}

fn count(sql: &Sql, port: u16) -> Option<i64> {
    sql.query(port, "SELECT count(*) FROM t", Duration::from_secs(2))
        .ok()
        .and_then(|r| r.first()?.first()?.clone())
        .and_then(|s| s.parse().ok())
}

fn wait_count(sql: &Sql, port: u16, n: i64) {
    let ok = eventually(Duration::from_secs(20), Duration::from_millis(50), || {
        count(sql, port).filter(|&c| c == n)
    });
    assert!(
        ok.is_some(),
        "port {port}: count is {:?}, want {n}",
        count(sql, port)
    );
}

#[test]
fn clone_fence_promote_and_rewind() {
    let sql = Sql::new();
    let dir = temp_dir("pg-engine-").expect("temp dir");
    let (pa, pb) = (e2e::postgres::server::port(), e2e::postgres::server::port());
    let a = EngineNode::start(
        &sql,
        settings("a", dir.path(), pa, Durability::Async),
        dir.path(),
    )
    .expect("start a");
    a.wait_ready(&sql);
    // Every start is a standby start, even the very first one.
    assert_eq!(
        sql.scalar(pa, "SELECT pg_is_in_recovery()").expect("query"),
        "t"
    );
    let p0 = sql.block_on(a.engine.position()).expect("position");
    assert_eq!(p0.epoch, 1, "a fresh cluster is on timeline 1");
    let p1 = sql.block_on(a.engine.promote()).expect("promote a");
    assert_eq!(p1.epoch, 2, "promotion starts a new timeline");
    let members = [Member {
        id: "b".to_owned(),
        peer: peer(pb),
    }];
    sql.block_on(a.engine.set_replicas(&members))
        .expect("set replicas");
    sql.query(
        pa,
        "CREATE TABLE t(seq bigint PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)",
        Duration::from_secs(5),
    )
    .expect("write on a");

    // b: prepared empty (initdb), then cloned from a.
    let b = EngineNode::start(
        &sql,
        settings("b", dir.path(), pb, Durability::Async),
        dir.path(),
    )
    .expect("start b");
    b.wait_ready(&sql);
    let pos_b = sql
        .block_on(b.engine.clone_from_primary(&peer(pa)))
        .unwrap_or_else(|e| panic!("clone: {e}\n{}", b.log()));
    assert_eq!(pos_b.epoch, 2);
    wait_count(&sql, pb, 100);
    let streaming = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        sql.scalar(
            pa,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'autopilot_b' AND state = 'streaming'",
        )
        .ok()
        .filter(|c| c == "1")
    });
    assert!(
        streaming.is_some(),
        "b does not stream from a through its slot"
    );

    // Fence a: nobody gets a commit acknowledged, not even a client that turns
    // default_transaction_read_only off for its session.
    let fenced = sql.block_on(a.engine.fence()).expect("fence a");
    assert!(
        sql.query(pa, "INSERT INTO t VALUES (1000)", Duration::from_secs(2))
            .is_err(),
        "a fenced primary took a plain write"
    );
    let sneaky = sql.query(
        pa,
        "BEGIN READ WRITE; INSERT INTO t VALUES (1001); COMMIT",
        Duration::from_secs(2),
    );
    assert!(
        sneaky.is_err(),
        "a fenced primary acknowledged a commit: {sneaky:?}"
    );

    // b replays up to a's final position, then promotes onto timeline 3.
    let caught = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        sql.block_on(b.engine.catch_up())
            .ok()
            .filter(|p| p.offset >= fenced.offset)
    });
    assert!(
        caught.is_some(),
        "b does not reach a's final position {fenced}"
    );
    let pb1 = sql.block_on(b.engine.promote()).expect("promote b");
    assert_eq!(pb1.epoch, 3);
    sql.query(
        pb,
        "INSERT INTO t SELECT generate_series(2001, 2010)",
        Duration::from_secs(5),
    )
    .expect("write on b");

    // a takes writes of its own after b's promotion (a split brain we make on purpose),
    // so its history diverged: following b must rewind it.
    sql.block_on(a.engine.unfence()).expect("unfence a");
    sql.query(
        pa,
        "INSERT INTO t SELECT generate_series(3001, 3050)",
        Duration::from_secs(5),
    )
    .expect("diverging write on a");
    let after = sql
        .block_on(a.engine.follow(&peer(pb)))
        .unwrap_or_else(|e| panic!("follow b: {e}\n{}", a.log()));
    assert_eq!(after.epoch, 3, "a is on b's timeline after the rewind");
    assert_eq!(
        sql.scalar(pa, "SELECT pg_is_in_recovery()").expect("query"),
        "t"
    );
    let b_count = count(&sql, pb).expect("count on b");
    wait_count(&sql, pa, b_count);
    assert_eq!(
        sql.scalar(pa, "SELECT count(*) FROM t WHERE seq > 3000")
            .expect("query"),
        "0",
        "the diverged writes are gone after the rewind"
    );
    sql.query(pb, "INSERT INTO t VALUES (4000)", Duration::from_secs(5))
        .expect("write on b");
    wait_count(&sql, pa, b_count + 1);
}

#[test]
fn sync_durability_waits_for_a_replica() {
    let sql = Sql::new();
    let dir = temp_dir("pg-engine-sync-").expect("temp dir");
    let (pa, pb) = (e2e::postgres::server::port(), e2e::postgres::server::port());
    let a = EngineNode::start(
        &sql,
        settings("a", dir.path(), pa, Durability::Sync),
        dir.path(),
    )
    .expect("start a");
    a.wait_ready(&sql);
    sql.block_on(a.engine.promote()).expect("promote a");
    let members = [Member {
        id: "b".to_owned(),
        peer: peer(pb),
    }];
    sql.block_on(a.engine.set_replicas(&members))
        .expect("set replicas");
    assert_eq!(
        sql.scalar(pa, "SHOW synchronous_standby_names")
            .expect("query"),
        "ANY 1 (\"autopilot_b\")"
    );
    // No replica yet: a commit is not acknowledged (it waits).
    assert!(
        sql.query(
            pa,
            "CREATE TABLE t(seq bigint PRIMARY KEY)",
            Duration::from_secs(1)
        )
        .is_err(),
        "a sync primary without replicas acknowledged a commit"
    );
    let b = EngineNode::start(
        &sql,
        settings("b", dir.path(), pb, Durability::Sync),
        dir.path(),
    )
    .expect("start b");
    b.wait_ready(&sql);
    sql.block_on(b.engine.clone_from_primary(&peer(pa)))
        .unwrap_or_else(|e| panic!("clone: {e}\n{}", b.log()));
    let ok = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        sql.query(pa, "INSERT INTO t VALUES (1)", Duration::from_secs(2))
            .ok()
    });
    assert!(
        ok.is_some(),
        "commits do not go through with a sync replica streaming"
    );
    assert_eq!(
        sql.scalar(
            pa,
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'autopilot_b'"
        )
        .expect("query"),
        "quorum"
    );
    // The replica dies: commits wait again (documented: no silent fallback to async).
    b.kill();
    assert!(
        sql.query(pa, "INSERT INTO t VALUES (2)", Duration::from_secs(1))
            .is_err(),
        "a sync primary acknowledged a commit with no replica left"
    );
}
