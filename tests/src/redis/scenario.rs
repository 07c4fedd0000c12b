//! Shared steps of the Redis cluster scenarios: start a cluster, wait for it to settle, run
//! the writer and checker, and assert that no acknowledged write was lost and no two nodes
//! accepted writes at once. The scenario files in `tests/tests/` build on these.

use std::time::{Duration, Instant};

use crate::harness::scenario as shared;
pub use crate::harness::scenario::summary;
use crate::harness::workload::{CheckerReport, WriterReport};
use crate::redis::cluster::{RedisCluster, RedisOpts};
use crate::redis::workload::RedisWorkload;

/// The first primary of a fresh cluster: bootstrap plus Redis start-up.
pub const BOOTSTRAP: Duration = Duration::from_secs(30);
/// Replicas attach to the primary (full sync of a tiny data set).
pub const ATTACH: Duration = Duration::from_secs(20);
/// Upper bound for any writer or checker thread.
pub const MAX_RUN: Duration = Duration::from_secs(120);
/// How long the primary must stay put to count as settled.
pub const STABLE: Duration = Duration::from_secs(1);
/// Time for every agent to learn of a request key (`maintenance`) by watch: the agents show
/// nothing when they did, so there is nothing to wait on.
pub const WATCH_DELIVERY: Duration = Duration::from_millis(500);

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
    shared::wait_writable(c, c.workload().as_ref(), node, within);
}

/// Waits until the writer has had `n` more writes acknowledged by `primary` than when asked.
pub fn let_writer_run(c: &RedisCluster, primary: usize, n: usize) {
    shared::let_writer_run(
        c,
        c.workload().as_ref(),
        primary,
        n,
        Duration::from_secs(10),
    );
}

/// No split brain seen and every acknowledged write is on `primary`.
pub fn assert_no_split_brain_no_loss(
    c: &RedisCluster,
    primary: usize,
    w: &WriterReport,
    k: &CheckerReport,
) {
    let list = c.list_numbers(primary, RedisWorkload::KEY);
    shared::assert_no_split_brain_no_loss(c, &list, w, k);
}
