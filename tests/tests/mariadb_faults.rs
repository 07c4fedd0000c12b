//! MariaDB failovers under a writer and a checker, with real etcd, three real `mariadbd`
//! and agents as processes (TTL 3 s): kill -9 of the primary's mariadbd, node loss, a
//! frozen (SIGSTOP) primary agent with sync and with async durability, and the choice of
//! the most advanced replica. Each asserts that no acknowledged row is missing on the new
//! primary (I2) and that no two nodes accepted writes at once (I1).

use std::time::Duration;

use e2e::harness::util::{eventually, hold, throughout};
use e2e::harness::workload::{Checker, Writer};
use e2e::mariadb::cluster::MariaOpts;
use e2e::mariadb::scenario::*;

/// Time for replicas that just joined to finish their first `Follow`. Nothing outside the
/// agent tells it apart (role, node key and replication read the same before and after it
/// answers), so there is nothing to wait on.
const FIRST_FOLLOW: Duration = Duration::from_secs(2);

fn opts(durability: &'static str) -> MariaOpts {
    MariaOpts {
        durability,
        ..MariaOpts::default()
    }
}

/// No service manager restarts anything: the agent restarts its own mariadbd (the default
/// restart policy of a cluster node), which comes back read-only and replicates from the
/// new primary with every row.
#[test]
fn kill_9_of_the_primary_mariadbd_fails_over_without_loss_and_the_node_heals_itself() {
    let (mut c, p) = settled(opts("sync"));
    let run = failover(&mut c, p, |c, p| {
        c.kill_mariadbd(p);
    });
    assert_safe(&c, &run);
    assert!(
        c.agent_alive(p),
        "{}'s agent exited\n{}",
        c.name(p),
        c.logs()
    );
    let e = c.wait_event("failover", run.new, Duration::from_secs(5));
    assert_eq!(e["from"], c.name(p), "{e:#}");
    assert_eq!(e["to"], c.name(run.new), "{e:#}");
    c.wait_replicating(p, run.new, ATTACH);
    c.wait_event("joined", p, Duration::from_secs(10));
    same_rows_everywhere(&c, run.new);
}

/// A hung primary mariadbd (SIGSTOPped, the agent alive): its agent sees no answer within
/// the health budget, kills it (a fence that holds however hung it is) and hands over; the
/// successor needs no connection to it. The node then heals itself and replicates again.
#[test]
fn a_hung_primary_mariadbd_is_killed_and_fails_over_then_the_node_heals_itself() {
    let (mut c, p) = settled(opts("sync"));
    let mut stopped = Vec::new();
    let run = failover(&mut c, p, |c, p| stopped = c.freeze_database(p));
    assert_safe(&c, &run);
    c.thaw_database(&stopped);
    assert!(
        c.agent_alive(p),
        "{}'s agent exited\n{}",
        c.name(p),
        c.logs()
    );
    c.wait_replicating(p, run.new, ATTACH);
    same_rows_everywhere(&c, run.new);
}

#[test]
fn node_loss_fails_over_without_loss() {
    let (mut c, p) = settled(opts("sync"));
    let run = failover(&mut c, p, |c, p| c.kill_node(p));
    assert_safe(&c, &run);
}

#[test]
fn frozen_primary_agent_with_sync_durability_loses_nothing() {
    let (mut c, p) = settled(opts("sync"));
    let run = failover(&mut c, p, |c, p| c.stop_agent(p));
    c.cont_agent(p);
    assert_safe(&c, &run);
}

/// Async replication: the winner must fence the still-running old mariadbd over its
/// connection and catch up to its final position before promoting.
#[test]
fn frozen_primary_agent_with_async_durability_loses_nothing() {
    let (mut c, p) = settled(opts("async"));
    let run = failover(&mut c, p, |c, p| c.stop_agent(p));
    assert!(
        !c.writable(p),
        "the old primary still accepts writes after the failover"
    );
    c.cont_agent(p);
    assert_safe(&c, &run);
    // The old primary's agent, thawed, must follow the new primary.
    c.wait_replicating(p, run.new, ATTACH);
}

#[test]
fn the_most_advanced_replica_wins() {
    let (mut c, p) = settled(opts("sync"));
    let behind = (0..3).find(|&i| i != p).expect("a replica");
    let ahead = (0..3)
        .find(|&i| i != p && i != behind)
        .expect("another replica");
    // A node that joined a moment ago may still be finishing its first `Follow` (the role
    // logic ignores views until it answers), and such a node does not compete: let both
    // replicas get through that first. Known liveness gap, not a safety one (see BENCHMARKS).
    hold(FIRST_FOLLOW);
    c.sql(behind, &["STOP SLAVE SQL_THREAD"])
        .expect("hold back a replica's SQL thread");
    let run = failover(&mut c, p, |c, p| {
        // Wait until the databases show the gap (the election compares the final positions
        // the candidates publish when the primary is gone; the held-back applier stays
        // behind), rather than two equal ones from before the writer ran (a tie goes to the
        // lower id).
        let seq = |i: usize| -> Option<u64> {
            let pos = c.admin(i).value("SELECT @@gtid_current_pos").ok()?;
            pos.split(',')
                .find(|g| g.trim().starts_with("0-"))?
                .rsplit('-')
                .next()?
                .trim()
                .parse()
                .ok()
        };
        let shown = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
            (seq(ahead)? > seq(behind)?).then_some(())
        });
        assert!(
            shown.is_some(),
            "the databases never showed {} ahead of {}\n{}",
            c.name(ahead),
            c.name(behind),
            c.logs()
        );
        c.kill_mariadbd(p);
    });
    assert_eq!(
        run.new,
        ahead,
        "{} (held back) won over {}\n{}",
        c.name(behind),
        c.name(ahead),
        c.logs()
    );
    assert_safe(&c, &run);
}

/// etcd unreachable for 2 × TTL: the primary fences itself before its lease can expire, no
/// node takes writes during the outage, and once etcd is back one primary takes writes, every
/// other node replicates from it with the same rows, and nothing acknowledged was lost.
#[test]
fn etcd_outage_fences_the_primary_then_the_cluster_is_whole_again() {
    let (mut c, p) = settled(opts("sync"));
    let w = Writer::start(workload(&c), MAX_RUN);
    let k = Checker::start(workload(&c), MAX_RUN);
    let_writer_run(&c, p, 30);
    let ttl = c.opts().ttl;
    let t0 = std::time::Instant::now();
    c.etcd_mut().stop();
    let fenced = eventually(ttl, Duration::from_millis(20), || {
        (!c.writable(p)).then(|| t0.elapsed())
    });
    assert!(
        fenced.is_some_and(|f| f < ttl),
        "{} still takes writes {:?} into the etcd outage (TTL {ttl:?})\n{}",
        c.name(p),
        t0.elapsed(),
        c.logs()
    );
    throughout(t0 + ttl * 2, Duration::from_millis(50), || {
        for i in 0..c.len() {
            assert!(
                !c.writable(i),
                "{} takes writes during the etcd outage",
                c.name(i)
            );
        }
    });
    c.etcd_mut().restart().expect("restart etcd");
    let q = c.wait_primary(ttl * 3 + Duration::from_secs(15));
    wait_writable(&c, q, Duration::from_secs(15));
    let_writer_run(&c, q, 30);
    let (w, k) = (w.stop(), k.stop());
    let rows = e2e::mariadb::workload::written(c.port(q)).expect("read the rows on the primary");
    e2e::harness::scenario::assert_no_split_brain_no_loss(&c, &rows, &w, &k);
    for i in (0..c.len()).filter(|&i| i != q) {
        c.wait_replicating(i, q, ATTACH);
    }
    same_rows_everywhere(&c, q);
}
