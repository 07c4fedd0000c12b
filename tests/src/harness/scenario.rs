//! Scenario steps every engine runs, on [`Agents`] and a [`Workload`]: wait until a node
//! takes writes, let the writer get rows through, and check I1 and I2 (no two writable nodes,
//! no acknowledged write lost) and full redundancy (every node holds the primary's rows).
//! The engines' `scenario` modules wrap these with their own workload.

use std::time::{Duration, Instant};

use crate::harness::cluster::Agents;
use crate::harness::util::eventually;
use crate::harness::workload::{CheckerReport, Workload, WriterReport};

/// Waits until `node` accepts writes (the workload's probe); how long it took.
pub fn wait_writable(a: &Agents, w: &dyn Workload, node: usize, within: Duration) -> Duration {
    let t0 = Instant::now();
    let ok = eventually(within, Duration::from_millis(20), || {
        w.writable(node).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} does not accept writes within {within:?}; roles {:?}\n{}",
        a.name(node),
        a.roles(),
        a.logs()
    );
    t0.elapsed()
}

/// Waits up to `within` until `n` more of the writer's rows are on `node` than when asked.
pub fn let_writer_run(a: &Agents, w: &dyn Workload, node: usize, n: usize, within: Duration) {
    // `written` panics when the node does not answer: count that as "not yet".
    let count =
        || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.written(node).len())).ok();
    let start = eventually(Duration::from_secs(5), Duration::from_millis(20), count).unwrap_or(0);
    let ok = eventually(within, Duration::from_millis(50), || {
        count().filter(|&l| l >= start + n)
    });
    assert!(
        ok.is_some(),
        "the writer does not get rows through to {}\n{}",
        a.name(node),
        a.logs()
    );
}

/// One line about the writer and the checker.
pub fn summary(w: &WriterReport, k: &CheckerReport) -> String {
    format!(
        "writer: {} attempts, {} acknowledged (by node {:?}); checker: {} rounds, writable timeline {:?}, split brain {:?}",
        w.attempts,
        w.acked.len(),
        w.acked_by_node,
        k.rounds,
        k.timeline,
        k.split_brain
    )
}

/// I1 and I2 for a run: the checker never saw two writable nodes, and every acknowledged
/// write is in `rows` (what the new primary holds).
pub fn assert_no_split_brain_no_loss(
    a: &Agents,
    rows: &[u64],
    w: &WriterReport,
    k: &CheckerReport,
) {
    let info = summary(w, k);
    println!("{info}");
    assert!(
        k.split_brain.is_empty(),
        "two nodes accepted writes at once: {:?}\n{info}\n{}",
        k.split_brain,
        a.logs()
    );
    let lost = w.lost(rows);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost (first {:?}); {} on the primary\n{info}\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        rows.len(),
        a.logs()
    );
}

/// The writer's rows on `node`, sorted; `None` when it does not answer.
pub fn sorted_rows(w: &dyn Workload, node: usize) -> Option<Vec<u64>> {
    // `written` panics when the node does not answer: that is "not now".
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut rows = w.written(node);
        rows.sort_unstable();
        rows
    }))
    .ok()
}

/// Every node holds exactly the writer's rows of `primary` (the writer has stopped), within
/// 15 s: the last step of full redundancy.
pub fn same_rows_everywhere(a: &Agents, w: &dyn Workload, primary: usize) {
    let want = sorted_rows(w, primary).expect("read the rows on the primary");
    for i in (0..a.len()).filter(|&i| i != primary) {
        let same = eventually(Duration::from_secs(15), Duration::from_millis(50), || {
            (sorted_rows(w, i).as_ref() == Some(&want)).then_some(())
        });
        assert!(
            same.is_some(),
            "{} does not hold the primary's {} rows\n{}",
            a.name(i),
            want.len(),
            a.logs()
        );
    }
}
