//! Shared steps of the Redis cluster scenarios: start a cluster, wait for it to settle, run
//! the writer and checker, and assert that no acknowledged write was lost and no two nodes
//! accepted writes at once. The scenario files in `tests/tests/` build on these.

use std::time::{Duration, Instant};

use crate::redis::{RedisCluster, RedisOpts, RedisWorkload};
use crate::resp::Reply;
use crate::util::eventually;
use crate::workload::{CheckerReport, WriterReport};

/// The first primary of a fresh cluster: bootstrap plus Redis start-up.
pub const BOOTSTRAP: Duration = Duration::from_secs(30);
/// Replicas attach to the primary (full sync of a tiny data set).
pub const ATTACH: Duration = Duration::from_secs(20);
/// Upper bound for any writer or checker thread.
pub const MAX_RUN: Duration = Duration::from_secs(120);
/// How long the primary must stay put to count as settled.
pub const STABLE: Duration = Duration::from_secs(1);

pub fn start(n: usize) -> RedisCluster {
    RedisCluster::start(n, RedisOpts::default()).expect("start the Redis cluster")
}

pub fn ttl(c: &RedisCluster) -> Duration {
    c.opts().ttl
}

/// Waits for a primary, for every other node to replicate from it, and for the primary to
/// stay the same for [`STABLE`]; the primary's index.
pub fn settled(c: &RedisCluster) -> usize {
    let deadline = Instant::now() + BOOTSTRAP;
    loop {
        let p = c.wait_primary(BOOTSTRAP);
        for i in (0..c.len()).filter(|&i| i != p) {
            c.wait_replicating(i, p, ATTACH);
        }
        if stays_primary(c, p, STABLE) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "the primary does not settle within {BOOTSTRAP:?}; roles {:?}\n{}",
            c.roles(),
            c.logs()
        );
    }
}

/// Whether `p` answers `/primary` throughout `window`.
pub fn stays_primary(c: &RedisCluster, p: usize, window: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < window {
        if c.primary() != Some(p) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Waits until `node` accepts writes.
pub fn wait_writable(c: &RedisCluster, node: usize, within: Duration) {
    let ok = eventually(within, Duration::from_millis(20), || {
        c.writable(node).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} does not accept writes within {within:?}; roles {:?}\n{}",
        c.name(node),
        c.roles(),
        c.logs()
    );
}

/// Waits until the writer has had `n` more writes acknowledged by `primary` than when asked.
pub fn let_writer_run(c: &RedisCluster, primary: usize, n: i64) {
    let len = || match c.cmd(primary, &["LLEN", RedisWorkload::KEY]) {
        Ok(Reply::Int(l)) => Some(l),
        _ => None,
    };
    let start = eventually(Duration::from_secs(5), Duration::from_millis(20), len).unwrap_or(0);
    let ok = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        len().filter(|&l| l >= start + n)
    });
    assert!(
        ok.is_some(),
        "the writer does not get writes through to {}\n{}",
        c.name(primary),
        c.logs()
    );
}

pub fn summary(w: &WriterReport, k: &CheckerReport) -> String {
    format!(
        "writer: {} attempts, {} acknowledged (by node {:?}); checker: {} rounds, writable timeline {:?}",
        w.attempts,
        w.acked.len(),
        w.acked_by_node,
        k.rounds,
        k.timeline
    )
}

/// No split brain seen and every acknowledged write is on `primary`.
pub fn assert_no_split_brain_no_loss(
    c: &RedisCluster,
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
    let list = c.list_numbers(primary, RedisWorkload::KEY);
    let lost = w.lost(&list);
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost (first {:?}); {} on the primary\n{info}\n{}",
        lost.len(),
        &lost[..lost.len().min(20)],
        list.len(),
        c.logs()
    );
}
