//! Shared steps of the MariaDB scenarios: a settled cluster with the workload's schema, a
//! failover run under the writer and the checker, and the I1/I2 assertions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::scenario as shared;
pub use crate::harness::scenario::summary;
use crate::harness::workload::{Checker, CheckerReport, Workload, Writer, WriterReport};
use crate::mariadb::cluster::{MariaCluster, MariaOpts};
use crate::mariadb::workload::MariaWorkload;

/// Bootstrap of a fresh cluster (install-db ~3 s per node, three at once on 2 cores).
pub const BOOTSTRAP: Duration = Duration::from_secs(60);
/// Replicas attach to a primary (each clones it first, one clone at a time).
pub const ATTACH: Duration = Duration::from_secs(90);
/// Upper bound for the writer and checker threads.
pub const MAX_RUN: Duration = Duration::from_secs(120);
/// A failover must produce a new primary within this (TTL 3 s plus settle plus catch-up).
pub const FAILOVER: Duration = Duration::from_secs(30);

/// Starts three nodes, waits for a primary and two replicas, creates the schema.
pub fn settled(opts: MariaOpts) -> (MariaCluster, usize) {
    let c = MariaCluster::start(3, opts).expect("start the MariaDB cluster");
    let p = settle(&c);
    (c, p)
}

/// Waits for a primary with every other node replicating from it and eligible, and creates
/// the schema; the primary's index.
pub fn settle(c: &MariaCluster) -> usize {
    let p = c.wait_primary(BOOTSTRAP);
    for i in (0..3).filter(|&i| i != p) {
        c.wait_replicating(i, p, ATTACH);
        // A replica that just cloned restarted its server: until its health checks pass
        // again it would not compete, and a fault now would measure that, not the failover.
        c.wait_eligible(i, ATTACH);
    }
    c.create_schema(p);
    p
}

/// The workload over every node of `c`.
pub fn workload(c: &MariaCluster) -> Arc<dyn Workload> {
    Arc::new(MariaWorkload {
        nodes: (0..c.len())
            .map(|i| (c.host(i).to_owned(), c.port(i)))
            .collect(),
    })
}

/// Waits until `n` more rows are in `e2e.seq` on `node` than when asked.
pub fn let_writer_run(c: &MariaCluster, node: usize, n: usize) {
    shared::let_writer_run(c, workload(c).as_ref(), node, n, Duration::from_secs(20));
}

/// Waits until `node` accepts the application's writes.
pub fn wait_writable(c: &MariaCluster, node: usize, within: Duration) {
    shared::wait_writable(c, workload(c).as_ref(), node, within);
}

/// What one failover run measured.
#[derive(Debug)]
pub struct FailoverRun {
    /// The old primary.
    pub old: usize,
    /// The new primary.
    pub new: usize,
    /// Fault → the new primary accepts a write.
    pub took: Duration,
    /// Acknowledged rows missing on the new primary.
    pub lost: Vec<u64>,
    /// Rounds in which two nodes accepted writes.
    pub split_brain: usize,
    /// The writer's and checker's reports, for messages.
    pub summary: String,
}

/// Runs the writer and checker, injects `fault` on the primary, waits for a new primary
/// that accepts writes and for the third node to follow it, lets the writer go on, and
/// reports. `after` runs once the new primary was found (e.g. SIGCONT a frozen agent).
pub fn failover(
    c: &mut MariaCluster,
    p: usize,
    fault: impl FnOnce(&mut MariaCluster, usize),
) -> FailoverRun {
    let checker = Checker::start(workload(c), MAX_RUN);
    let writer = Writer::start(workload(c), MAX_RUN);
    let_writer_run(c, p, 50);
    let t0 = Instant::now();
    fault(c, p);
    let (new, _) = c.wait_new_primary(p, FAILOVER);
    wait_writable(c, new, Duration::from_secs(10));
    let took = t0.elapsed();
    if let Some(other) = (0..c.len()).find(|&i| i != p && i != new) {
        c.wait_replicating(other, new, ATTACH);
    }
    let_writer_run(c, new, 20);
    let w = writer.stop();
    let k = checker.stop();
    let rows = workload(c).written(new);
    FailoverRun {
        old: p,
        new,
        took,
        lost: w.lost(&rows),
        split_brain: k.split_brain.len(),
        summary: summary(&w, &k),
    }
}

/// I1 and I2 for a run.
pub fn assert_safe(c: &MariaCluster, run: &FailoverRun) {
    println!(
        "failover {} -> {} in {:?}; {}",
        c.name(run.old),
        c.name(run.new),
        run.took,
        run.summary
    );
    assert_eq!(
        run.split_brain,
        0,
        "two nodes accepted writes at once: {}\n{}",
        run.summary,
        c.logs()
    );
    assert!(
        run.lost.is_empty(),
        "{} acknowledged rows lost (first {:?}): {}\n{}",
        run.lost.len(),
        &run.lost[..run.lost.len().min(20)],
        run.summary,
        c.logs()
    );
}

/// I1 and I2 once the writer and checker stopped: `primary` answers (within 30 s) with
/// every acknowledged row, and no two nodes took writes at once.
pub fn assert_no_split_brain_no_loss(
    c: &MariaCluster,
    primary: usize,
    w: &WriterReport,
    k: &CheckerReport,
) {
    let rows = crate::harness::util::eventually(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || shared::sorted_rows(workload(c).as_ref(), primary),
    )
    .expect("the primary answers");
    shared::assert_no_split_brain_no_loss(c, &rows, w, k);
}

/// Every node holds exactly the rows of `primary` (the writer has stopped), within 15 s.
pub fn same_rows_everywhere(c: &MariaCluster, primary: usize) {
    shared::same_rows_everywhere(c, workload(c).as_ref(), primary);
}
