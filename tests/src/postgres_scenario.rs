//! Shared steps of the PostgreSQL cluster scenarios: start, settle (one primary, every
//! other node streaming from it), run the writer and checker, and assert that no
//! acknowledged row was lost and no two nodes accepted writes at once.

use std::time::{Duration, Instant};

use crate::postgres_cluster::{PgCluster, PgOpts};
use crate::util::eventually;
use crate::workload::{CheckerReport, WriterReport};

/// The first primary of a fresh cluster: initdb, bootstrap, promotion.
pub const BOOTSTRAP: Duration = Duration::from_secs(40);
/// Replicas clone (pg_basebackup) and stream.
pub const ATTACH: Duration = Duration::from_secs(40);
/// Upper bound for any writer or checker thread.
pub const MAX_RUN: Duration = Duration::from_secs(120);

/// Start `n` nodes with `opts`.
pub fn start(n: usize, opts: PgOpts) -> PgCluster {
    PgCluster::start(n, opts).expect("start the PostgreSQL cluster")
}

/// Waits for a primary with every other node streaming from it and the tables created;
/// the primary's index.
pub fn settled(c: &PgCluster) -> usize {
    let deadline = Instant::now() + BOOTSTRAP + ATTACH;
    loop {
        let p = c.wait_primary(BOOTSTRAP);
        for i in (0..c.len()).filter(|&i| i != p) {
            c.wait_streaming(i, p, ATTACH);
            // Just cloned and restarted: not a candidate until its health checks pass again.
            c.wait_eligible(i, ATTACH);
        }
        if c.primary() == Some(p) {
            c.create_tables(p);
            return p;
        }
        assert!(Instant::now() < deadline, "no stable primary\n{}", c.logs());
    }
}

/// Waits until `node` accepts writes (through the workload's probe).
pub fn wait_writable(c: &PgCluster, node: usize, within: Duration) -> Duration {
    let w = c.workload();
    let t0 = Instant::now();
    let ok = eventually(within, Duration::from_millis(20), || {
        w.writable(node).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} does not accept writes within {within:?}; roles {:?}\n{}",
        c.name(node),
        c.roles(),
        c.logs()
    );
    t0.elapsed()
}

/// Waits until `n` more rows are in the writer's table on `primary`.
pub fn let_writer_run(c: &PgCluster, primary: usize, n: usize) {
    let w = c.workload();
    let count =
        || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.written(primary).len())).ok();
    let start = count().unwrap_or(0);
    let ok = eventually(Duration::from_secs(15), Duration::from_millis(50), || {
        count().filter(|&l| l >= start + n)
    });
    assert!(
        ok.is_some(),
        "the writer does not get rows to {}\n{}",
        c.name(primary),
        c.logs()
    );
}

/// One line about the run.
pub fn summary(w: &WriterReport, k: &CheckerReport) -> String {
    format!(
        "writer: {} attempts, {} acknowledged (by node {:?}); checker: {} rounds",
        w.attempts,
        w.acked.len(),
        w.acked_by_node,
        k.rounds,
    )
}

/// No split brain seen, and every acknowledged row is on `primary`.
pub fn assert_no_split_brain_no_loss(
    c: &PgCluster,
    primary: usize,
    w: &WriterReport,
    k: &CheckerReport,
) {
    let info = summary(w, k);
    println!("{info}");
    assert!(
        k.split_brain.is_empty(),
        "two nodes accepted writes at once: {:?}\n{info}\n{}",
        k.split_brain,
        c.logs()
    );
    let rows = c.workload().written(primary);
    let lost = w.lost(&rows);
    assert!(
        lost.is_empty(),
        "{} acknowledged rows lost (first {:?}); {} on the primary\n{info}\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        rows.len(),
        c.logs()
    );
}
