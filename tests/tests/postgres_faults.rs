//! PostgreSQL fault scenarios under real agents (real etcd, three real PostgreSQL 15
//! servers, agents as processes): kill -9 of the primary's postmaster, node loss, and a
//! frozen (SIGSTOP) primary agent with async and with sync durability. Every scenario runs
//! the writer and checker: no acknowledged row lost, never two writable nodes. And a former
//! primary that pg_rewind cannot rewind: flagged `needs_rebuild`, re-cloned with
//! `auto_rebuild`.

use std::time::{Duration, Instant};

use e2e::harness::util::{eventually, throughout};
use e2e::harness::workload::{Checker, Writer};
use e2e::postgres::cluster::{PgCluster, PgOpts};
use e2e::postgres::scenario::{
    MAX_RUN, assert_no_split_brain_no_loss, let_writer_run, same_rows_everywhere, settled, start,
    wait_writable,
};
use e2e::postgres::workload::TABLE;

/// How long a node flagged `needs_rebuild` is watched not to stream.
const STAYS_APART: Duration = Duration::from_secs(2);

fn opts(durability: &'static str) -> PgOpts {
    PgOpts {
        durability,
        ..PgOpts::default()
    }
}

/// Writer and checker around `fault`; returns the new primary after checking no loss.
fn around(c: &mut PgCluster, fault: impl FnOnce(&mut PgCluster, usize)) -> usize {
    let p = settled(c);
    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(c, p, 30);
    fault(c, p);
    let (np, took) = c.wait_new_primary(p, Duration::from_secs(30));
    println!("new primary {} after {took:?}", c.name(np));
    wait_writable(c, np, Duration::from_secs(15));
    let_writer_run(c, np, 30);
    let (w, k) = (w.stop(), k.stop());
    assert_no_split_brain_no_loss(c, np, &w, &k);
    np
}

#[test]
fn frozen_primary_agent_async_loses_nothing() {
    let mut c = start(3, opts("async"));
    let np = around(&mut c, |c, p| c.stop_agent(p));
    // The old primary's agent wakes up: it must rejoin as a replica of the new primary.
    let old = (0..3)
        .find(|&i| i != np && c.role(i) == "down")
        .expect("the frozen node");
    c.cont_agent(old);
    c.wait_streaming(old, np, Duration::from_secs(40));
}

#[test]
fn frozen_primary_agent_sync_loses_nothing() {
    let mut c = start(3, opts("sync"));
    around(&mut c, |c, p| c.stop_agent(p));
}

/// No service manager restarts anything: the agent restarts its own server (the default
/// restart policy of a cluster node), which comes back as a standby, rewinds if it must,
/// and streams from the new primary with every row.
#[test]
fn killed_postmaster_fails_over_and_the_node_heals_itself() {
    let mut c = start(3, opts("sync"));
    let mut old = 0;
    let np = around(&mut c, |c, p| {
        old = p;
        c.kill_postgres(p);
    });
    assert!(
        c.agent_alive(old),
        "{}'s agent exited\n{}",
        c.name(old),
        c.logs()
    );
    assert!(
        c.values_under("events/")
            .iter()
            .any(|e| e.contains("database_exited") && e.contains("SIGKILL")),
        "no database_exited event naming the signal: {:?}",
        c.values_under("events/")
    );
    // The new primary's event names the failover, from whom to whom.
    let e = c.wait_event("failover", np, Duration::from_secs(5));
    assert_eq!(e["from"], c.name(old), "{e:#}");
    assert_eq!(e["to"], c.name(np), "{e:#}");
    c.wait_streaming(old, np, Duration::from_secs(30));
    c.wait_event("joined", old, Duration::from_secs(10));
    same_rows_everywhere(&c, np);
}

#[test]
fn node_loss_fails_over_then_the_node_rewinds_and_rejoins() {
    // Sync: with async durability a node loss may lose the commits no replica had received
    // (the documented async window; the bench counts them), so the no-loss check needs sync.
    let mut c = start(3, opts("sync"));
    let mut old = 0;
    let np = around(&mut c, |c, p| {
        old = p;
        c.kill_node(p);
    });
    // The lost node comes back with its old data: it follows (rewinding if it diverged).
    c.start_agent(old);
    c.wait_streaming(old, np, Duration::from_secs(60));
    assert_eq!(
        c.scalar(old, "SELECT pg_is_in_recovery()").expect("query"),
        "t"
    );
}

/// A hung primary server (the postmaster and every backend SIGSTOPped for 15 s, the agent
/// alive): its agent sees no answer within the health budget, kills the server's process
/// group (a fence that holds however hung it is) and hands over; the successor needs no
/// connection to it. The woken group is gone: it never takes a write again. The node then
/// heals itself: its server restarts as a standby, rewinds if it must, and streams.
#[test]
fn a_hung_primary_server_is_killed_and_fails_over_then_the_node_heals_itself() {
    let mut c = start(3, opts("sync"));
    let mut old = 0;
    let mut stopped = Vec::new();
    let np = around(&mut c, |c, p| {
        old = p;
        stopped = c.freeze_database(p);
    });
    let events = c.values_under("events/");
    assert!(
        events.iter().any(|e| e.contains("database_killed")),
        "no database_killed event: {events:?}"
    );
    c.thaw_database(&stopped);
    // Killed while stopped: nothing of the old server runs again (its pids may be reused
    // by the restarted server only after they are gone).
    let survivors: Vec<i32> = stopped
        .iter()
        .copied()
        .filter(|&p| {
            e2e::harness::util::proc_state(p).is_some_and(|s| s != 'Z')
                && c.main_pid(old) != Some(p)
        })
        .collect();
    assert!(
        survivors.is_empty(),
        "processes of the hung server survived: {survivors:?}"
    );
    c.wait_streaming(old, np, Duration::from_secs(30));
    same_rows_everywhere(&c, np);
}

/// Rows in the writer's table on node `i` with `seq >= from`, or `None` when it does not
/// answer.
fn rows_from(c: &PgCluster, i: usize, from: u64) -> Option<u64> {
    c.scalar(
        i,
        &format!("SELECT count(*) FROM {TABLE} WHERE seq >= {from}"),
    )
    .ok()?
    .parse()
    .ok()
}

/// Removes every WAL segment of node `i` but the newest `keep` (its agent and server are
/// down): what a careless `rm` or a WAL-recycling accident leaves behind.
fn remove_old_wal(c: &PgCluster, i: usize, keep: usize) -> usize {
    let wal = c.data_dir(i).join("pg_wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap_or_else(|e| panic!("read {}: {e}", wal.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.chars().all(|ch| ch.is_ascii_hexdigit()))
        .collect();
    segments.sort();
    let old = segments.len().saturating_sub(keep);
    for name in &segments[..old] {
        std::fs::remove_file(wal.join(name)).unwrap_or_else(|e| panic!("remove {name}: {e}"));
    }
    old
}

/// A former primary whose history diverged (errant commits after the failover) and whose
/// WAL back to the divergence is gone cannot be rewound: without `auto_rebuild` it reports
/// `needs_rebuild`, follows nobody, takes no writes and keeps its data; restarted with
/// `auto_rebuild: true` it re-clones the primary, its old data directory kept aside.
#[test]
fn a_former_primary_pg_rewind_cannot_rewind_is_flagged_then_rebuilt() {
    let opts = PgOpts {
        auto_rebuild: false,
        ..opts("async")
    };
    let mut c = start(3, opts.clone());
    let p = settled(&c);
    let insert = |c: &PgCluster, i: usize, from: u64, to: u64| {
        c.sql()
            .query(
                c.pg_port(i),
                &format!("INSERT INTO {TABLE} SELECT generate_series({from}, {to})"),
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("write on {}: {e:#}", c.name(i)));
    };
    insert(&c, p, 1, 20);
    c.stop_agent(p); // its postmaster keeps running; the winner fences it over SQL
    let (np, _) = c.wait_new_primary(p, Duration::from_secs(30));
    wait_writable(&c, np, Duration::from_secs(15));
    insert(&c, np, 21, 30);

    // Out of band on the fenced former primary: a superuser who knows the fence's limit
    // commits errant rows locally, moves to new WAL segments and checkpoints (the rows are
    // in the data files). Then the node dies and loses the WAL back to the divergence.
    let errant = "SET synchronous_commit = local; SET default_transaction_read_only = off; \
        BEGIN READ WRITE; INSERT INTO e2e_writes VALUES (999997); COMMIT; SELECT pg_switch_wal(); \
        BEGIN READ WRITE; INSERT INTO e2e_writes VALUES (999998); COMMIT; SELECT pg_switch_wal(); \
        BEGIN READ WRITE; INSERT INTO e2e_writes VALUES (999999); COMMIT; SELECT pg_switch_wal(); \
        CHECKPOINT";
    c.sql()
        .query(c.pg_port(p), errant, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("errant writes on the fenced node: {e:#}"));
    c.kill_node(p);
    assert!(remove_old_wal(&c, p, 2) > 0, "no old WAL segment to remove");
    c.start_agent(p);

    c.wait_flagged_needs_rebuild(p, Duration::from_secs(60));
    let log = c.agent_log(p);
    // The reason names pg_rewind's own error: the WAL it could not find.
    let why = log
        .lines()
        .find(|l| l.contains("pg_rewind against") && l.contains("could not"));
    assert!(
        why.is_some(),
        "the flag does not name pg_rewind's error\n{}",
        c.logs()
    );
    println!("flagged: {}", why.unwrap_or_default());
    throughout(
        Instant::now() + STAYS_APART,
        Duration::from_millis(100),
        || {
            assert!(
                !c.streams_from(p, np),
                "{} streams although diverged",
                c.name(p)
            );
        },
    );
    assert_eq!(c.primary(), Some(np), "the primary changed");
    assert_eq!(
        rows_from(&c, np, 999_997),
        Some(0),
        "errant rows reached the primary"
    );
    // Nothing is thrown away without auto_rebuild: the errant rows are still there, and
    // the server refuses writes.
    let kept = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        rows_from(&c, p, 999_997)
    });
    assert_eq!(
        kept,
        Some(3),
        "the diverged node lost its own rows\n{}",
        c.logs()
    );
    assert!(
        c.sql()
            .query(
                c.pg_port(p),
                "INSERT INTO e2e_writes VALUES (1000000)",
                Duration::from_secs(2)
            )
            .is_err(),
        "the diverged node takes writes"
    );

    // The operator turns auto_rebuild on and restarts the agent: rewind fails again, and
    // the node is rebuilt from the primary.
    c.reconfigure(
        p,
        &PgOpts {
            auto_rebuild: true,
            ..opts
        },
    );
    c.start_agent(p);
    c.wait_streaming(p, np, Duration::from_secs(60));
    insert(&c, np, 31, 40);
    let all = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        c.scalar(p, &format!("SELECT count(*) FROM {TABLE} WHERE seq <= 40"))
            .ok()
            .filter(|n| n == "40")
    });
    assert!(all.is_some(), "the rebuilt node lacks rows\n{}", c.logs());
    assert_eq!(
        rows_from(&c, p, 999_997),
        Some(0),
        "errant rows survived the rebuild"
    );
    let aside = c.entries(&format!("{}.aside-", data_name(&c, p)));
    assert!(
        aside
            .iter()
            .any(|d| c.dir().join(d).join("PG_VERSION").exists()),
        "the diverged data directory was not kept aside: {aside:?}"
    );
    assert!(
        c.agent_log(p).contains("cloned the primary"),
        "the node was not re-cloned\n{}",
        c.logs()
    );
    let flag_gone = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        (!c.needs_rebuild(p)).then_some(())
    });
    assert!(
        flag_gone.is_some(),
        "needs_rebuild stays set after the rebuild"
    );
}

/// The file name of node `i`'s data directory.
fn data_name(c: &PgCluster, i: usize) -> String {
    c.data_dir(i)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Node `i`'s node document, parsed.
fn node_doc(c: &PgCluster, i: usize) -> serde_json::Value {
    let raw = c
        .key(&format!("nodes/{}", c.name(i)))
        .unwrap_or_else(|| panic!("no node key for {}", c.name(i)));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("node key of {}: {e}", c.name(i)))
}

/// A replica whose walreceiver cannot log in (a wrong password in its password file: the
/// relative-path trap of the quick start) says so in its node key (`receiving: false`),
/// metric and events, and stops being a failover candidate; the primary reports one
/// streaming replica. When the primary dies, the replica that receives wins; the stalled
/// one follows the new primary (which rewrites its password file), receives again and is
/// a candidate again, and the old primary heals itself: full redundancy, same rows.
#[test]
fn a_replica_that_does_not_receive_is_no_candidate_and_says_so() {
    let c = start(3, opts("sync"));
    let p = settled(&c);
    let stalled = (p + 1) % 3;
    let good = (p + 2) % 3;
    // The agent writes the password file when it follows, before it announces the replica
    // role: tamper with it only after that, once the replica streams.
    assert!(
        eventually(Duration::from_secs(30), Duration::from_millis(100), || {
            (c.role(stalled) == "replica" && c.streams_from(stalled, p)).then_some(())
        })
        .is_some(),
        "{} never became a streaming replica of {}\n{}",
        c.name(stalled),
        c.name(p),
        c.logs()
    );
    let passfile = c.data_dir(stalled).join("autopilot.pgpass");
    let text = std::fs::read_to_string(&passfile).expect("read the password file");
    let (head, _) = text
        .trim_end()
        .rsplit_once(':')
        .expect("host:port:db:user:password");
    std::fs::write(&passfile, format!("{head}:wrong\n")).expect("write the password file");
    let app = engines::postgres::settings::slot_name(c.name(stalled));
    c.scalar(
        p,
        &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication WHERE application_name = '{app}'"),
    )
    .expect("cut the replica's stream");
    let flagged = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        let d = node_doc(&c, stalled);
        (d["eligible"] == false && d["replication"]["receiving"] == false).then_some(d)
    });
    assert!(
        flagged.is_some(),
        "{} does not say it is not receiving and not eligible: {}\n{}",
        c.name(stalled),
        node_doc(&c, stalled),
        c.logs()
    );
    assert!(
        c.metrics(stalled)
            .contains("autopilot_replication_receiving 0"),
        "no receiving gauge at 0"
    );
    assert!(
        c.values_under("events/")
            .iter()
            .any(|e| e.contains("replication_stalled")),
        "no replication_stalled event"
    );
    let primary = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        let d = node_doc(&c, p);
        (d["replication"]["replicas_streaming"] == 1).then_some(())
    });
    assert!(
        primary.is_some(),
        "the primary does not report one streaming replica: {}",
        node_doc(&c, p)
    );
    assert_eq!(node_doc(&c, good)["eligible"], true);

    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 30);
    c.kill_postgres(p);
    let (np, took) = c.wait_new_primary(p, Duration::from_secs(30));
    println!("new primary {} after {took:?}", c.name(np));
    assert_eq!(np, good, "the replica that did not receive won");
    wait_writable(&c, np, Duration::from_secs(15));
    let_writer_run(&c, np, 30);
    let (w, k) = (w.stop(), k.stop());
    assert_no_split_brain_no_loss(&c, np, &w, &k);
    c.wait_streaming(stalled, np, Duration::from_secs(30));
    c.wait_eligible(stalled, Duration::from_secs(30));
    c.wait_streaming(p, np, Duration::from_secs(30));
    same_rows_everywhere(&c, np);
}
