//! Shared steps of the PostgreSQL cluster scenarios: start, settle (one primary, every
//! other node streaming from it), run the writer and checker, and assert that no
//! acknowledged row was lost and no two nodes accepted writes at once.

use std::time::{Duration, Instant};

use crate::harness::scenario as shared;
pub use crate::harness::scenario::summary;
use crate::harness::workload::{CheckerReport, WriterReport};
use crate::postgres::cluster::{PgCluster, PgOpts};

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
    shared::wait_writable(c, c.workload().as_ref(), node, within)
}

/// Waits until `n` more rows are in the writer's table on `primary`.
pub fn let_writer_run(c: &PgCluster, primary: usize, n: usize) {
    shared::let_writer_run(
        c,
        c.workload().as_ref(),
        primary,
        n,
        Duration::from_secs(15),
    );
}

/// No split brain seen, and every acknowledged row is on `primary`.
pub fn assert_no_split_brain_no_loss(
    c: &PgCluster,
    primary: usize,
    w: &WriterReport,
    k: &CheckerReport,
) {
    let rows = c.workload().written(primary);
    shared::assert_no_split_brain_no_loss(c, &rows, w, k);
}

/// Every node holds exactly the rows of `primary` (the writer has stopped), within 15 s.
pub fn same_rows_everywhere(c: &PgCluster, primary: usize) {
    shared::same_rows_everywhere(c, c.workload().as_ref(), primary);
}
