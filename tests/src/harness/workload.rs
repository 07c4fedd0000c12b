//! Engine-neutral fault-scenario instruments: a [`Writer`] that records every acknowledged
//! write and a [`Checker`] that records every moment two nodes accepted writes at once.
//! Each database says how to write, probe and read back through [`Workload`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the writer and checker talk to one database cluster, node by node (0-based).
///
/// Every call must be bounded in time (a paused or unreachable node must not stall a probe
/// round for more than ~300 ms) and must never panic on a database error.
pub trait Workload: Send + Sync + 'static {
    /// How many nodes there are.
    fn nodes(&self) -> usize;
    /// Durably write `seq` on `node`; `true` only when the database acknowledged it (the
    /// commit returned OK).
    fn write(&self, node: usize, seq: u64) -> bool;
    /// Whether `node` accepts a write right now; never touches the writer's data.
    fn writable(&self, node: usize) -> bool;
    /// Every number the writer's data holds on `node` (for the loss check); may panic when
    /// the node cannot be read, since the scenario cannot be judged then.
    fn written(&self, node: usize) -> Vec<u64>;
}

/// What a [`Writer`] did.
#[derive(Debug, Default)]
pub struct WriterReport {
    /// Sequence numbers whose RPUSH was acknowledged, in order.
    pub acked: Vec<u64>,
    /// Writes attempted (acknowledged or not).
    pub attempts: u64,
    /// Acknowledgements per node index.
    pub acked_by_node: Vec<u64>,
    /// When each acknowledgement in `acked` arrived.
    pub acked_at: Vec<Instant>,
    /// Which node acknowledged each number in `acked`.
    pub acked_on: Vec<usize>,
}

impl WriterReport {
    /// The longest stretch after `since` with no acknowledgement (the writer writes every
    /// few milliseconds while a node takes writes): the write outage a fault caused.
    pub fn longest_gap_since(&self, since: Instant) -> Duration {
        let mut last = since;
        let mut worst = Duration::ZERO;
        for &t in self.acked_at.iter().filter(|&&t| t >= since) {
            worst = worst.max(t - last);
            last = t;
        }
        worst
    }

    /// The longest stretch without an acknowledgement from the first one at or after `from`
    /// to `to` (the writer's own start is no outage): the write outage of what happened in
    /// between.
    pub fn longest_gap_between(&self, from: Instant, to: Instant) -> Duration {
        let mut acks = self.acked_at.iter().filter(|&&t| t >= from && t <= to);
        let Some(&first) = acks.next() else {
            return to.saturating_duration_since(from);
        };
        let mut last = first;
        let mut worst = Duration::ZERO;
        for &t in acks {
            worst = worst.max(t - last);
            last = t;
        }
        worst.max(to.saturating_duration_since(last))
    }

    /// The numbers `node` acknowledged at or after `since`, with when.
    pub fn acked_by_since(&self, node: usize, since: Instant) -> Vec<(u64, Instant)> {
        (0..self.acked.len())
            .filter(|&j| self.acked_on[j] == node && self.acked_at[j] >= since)
            .map(|j| (self.acked[j], self.acked_at[j]))
            .collect()
    }

    /// Acknowledged numbers missing from `list` (the final primary's copy).
    pub fn lost(&self, list: &[u64]) -> Vec<u64> {
        let have: std::collections::HashSet<u64> = list.iter().copied().collect();
        self.acked
            .iter()
            .copied()
            .filter(|n| !have.contains(n))
            .collect()
    }
}

/// A thread that writes 1, 2, 3, ... to whichever node accepts the write (it does not ask
/// the agents: a node that wrongly accepts writes gets them), and records every
/// acknowledged number. Stops after [`Writer::stop`] or `max_run`.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<WriterReport>>,
}

impl Writer {
    /// Starts writing to the nodes of `db`, for at most `max_run`.
    pub fn start(db: Arc<dyn Workload>, max_run: Duration) -> Writer {
        Self::start_after(db, 0, max_run)
    }

    /// Like [`Writer::start`], numbering from `last + 1` (a later round on the same table).
    pub fn start_after(db: Arc<dyn Workload>, last: u64, max_run: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + max_run;
            let mut report = WriterReport {
                acked_by_node: vec![0; db.nodes()],
                ..WriterReport::default()
            };
            let mut target = 0usize;
            let mut seq = last;
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                seq += 1;
                report.attempts += 1;
                if db.write(target, seq) {
                    report.acked.push(seq);
                    report.acked_at.push(Instant::now());
                    report.acked_on.push(target);
                    report.acked_by_node[target] += 1;
                    std::thread::sleep(Duration::from_millis(2));
                } else {
                    target = (target + 1) % db.nodes();
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            report
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns what it did.
    pub fn stop(mut self) -> WriterReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One instant where more than one node accepted a write.
#[derive(Clone, Debug)]
pub struct SplitBrain {
    /// Time since the checker started.
    pub at: Duration,
    /// The node indexes that were writable.
    pub nodes: Vec<usize>,
}

/// What a [`Checker`] saw.
#[derive(Debug, Default)]
pub struct CheckerReport {
    /// Probe rounds run.
    pub rounds: u64,
    /// Rounds in which two or more nodes were writable.
    pub split_brain: Vec<SplitBrain>,
    /// Changes of the writable set: (time since start, writable node indexes).
    pub timeline: Vec<(Duration, Vec<usize>)>,
}

/// A thread that every ~50 ms probes every node's writability at the same moment (one probe
/// thread per node, each bounded by the workload) and records every round in which two or
/// more nodes accepted the write. Stops after [`Checker::stop`] or `max_run`.
pub struct Checker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<CheckerReport>>,
}

impl Checker {
    /// Starts probing the nodes of `db`, for at most `max_run`.
    pub fn start(db: Arc<dyn Workload>, max_run: Duration) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let deadline = t0 + max_run;
            let mut report = CheckerReport::default();
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let at = t0.elapsed();
                let writable: Vec<usize> = std::thread::scope(|s| {
                    let db = &db;
                    let probes: Vec<_> = (0..db.nodes())
                        .map(|i| s.spawn(move || db.writable(i)))
                        .collect();
                    probes
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, h)| h.join().unwrap_or(false).then_some(i))
                        .collect()
                });
                report.rounds += 1;
                if report.timeline.last().is_none_or(|(_, w)| *w != writable) {
                    report.timeline.push((at, writable.clone()));
                }
                if writable.len() > 1 {
                    report.split_brain.push(SplitBrain {
                        at,
                        nodes: writable,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            report
        });
        Checker {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns what it saw.
    pub fn stop(mut self) -> CheckerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("joined once")
            .join()
            .expect("checker thread")
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
