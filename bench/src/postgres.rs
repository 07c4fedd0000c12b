//! `bench postgres-failover`: a 3-node PostgreSQL 15 cluster under Autopilot's agents and,
//! side by side, under Patroni 4.1.5 ([`crate::patroni`]), each on a fresh etcd 3.4 of the
//! same binary, with the same PostgreSQL parameters, the same asked TTL and the same faults.
//! One fresh cluster per run; the systems alternate run by run so machine load hits both.
//!
//! Each run: settle (one primary, every other node streaming), start the writer and the
//! checker of `e2e::harness::workload` (one row per autocommit INSERT to whichever node
//! accepts it; a probe of every node's writability every ~50 ms), let 50 rows in, inject
//! the fault on the primary, then poll every other node with a write: time = from just
//! before the fault to the first write a node other than the old primary acknowledges.
//! Afterwards (a frozen agent is resumed 2 s after that write) the writer runs until 20 more
//! rows are on the new primary; rows lost = acknowledged inserts missing there; split brain
//! = checker rounds in which two nodes accepted a write.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::patroni::{PatroniCluster, PatroniOpts};
use crate::proc::median;
use crate::report::runs_cells;
use e2e::harness::cluster::Agents;
use e2e::harness::util::eventually;
use e2e::harness::workload::{Checker, Workload, Writer};
use e2e::postgres::cluster::{PgCluster, PgOpts};
use e2e::postgres::scenario::{MAX_RUN, settled};

/// A fault injected on the primary (or a planned switchover).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// kill -9 the postmaster; the agent lives.
    Crash,
    /// kill -9 agent and postmaster.
    NodeLoss,
    /// SIGSTOP the primary's agent; its PostgreSQL keeps running.
    Frozen,
    /// SIGTERM the primary's agent.
    Graceful,
    /// A planned switchover to a named replica.
    Switchover,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 5] = [
        Scenario::Crash,
        Scenario::NodeLoss,
        Scenario::Frozen,
        Scenario::Graceful,
        Scenario::Switchover,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Crash => "kill -9 postmaster (agent alive)",
            Scenario::NodeLoss => "node loss (kill -9 agent + postmaster)",
            Scenario::Frozen => "SIGSTOP primary's agent",
            Scenario::Graceful => "graceful (SIGTERM agent)",
            Scenario::Switchover => "planned switchover",
        }
    }
}

/// The system supervising PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// Autopilot's agents (built in this profile).
    Autopilot,
    /// Patroni 4.1.5 from `/opt/patroni`.
    Patroni,
}

impl System {
    /// Parses `autopilot` or `patroni`.
    pub fn parse(s: &str) -> Option<System> {
        match s.trim() {
            "autopilot" => Some(System::Autopilot),
            "patroni" => Some(System::Patroni),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            System::Autopilot => "Autopilot",
            System::Patroni => "Patroni",
        }
    }
}

/// What one run measured.
#[derive(Debug)]
pub struct Run {
    /// Fault → first write acknowledged by a node other than the old primary.
    pub took: Duration,
    /// Acknowledged rows missing on the new primary.
    pub lost: usize,
    /// Checker rounds with two writable nodes.
    pub split_brain: usize,
    /// The lease TTL the system really used.
    pub effective_ttl: Duration,
    /// The old and the new primary.
    pub old: usize,
    /// The new primary.
    pub new: usize,
}

/// A cluster under test, as the measurement sees it.
pub trait Supervised {
    /// The writer and checker's view.
    fn workload(&self) -> Arc<dyn Workload>;
    /// Number of nodes.
    fn nodes(&self) -> usize;
    /// A replica a switchover from `p` may name, once it is eligible (not timed).
    fn switchover_target(&self, p: usize) -> Result<usize>;
    /// Injects `scenario` on primary `p` (`target`: the switchover's candidate).
    fn inject(&mut self, scenario: Scenario, p: usize, target: usize) -> Result<()>;
    /// Resumes a frozen agent.
    fn resume(&mut self, p: usize);
    /// The lease TTL really in use.
    fn effective_ttl(&self) -> Result<Duration>;
    /// Logs for a failure message.
    fn logs(&self) -> String;
}

impl Supervised for PgCluster {
    fn workload(&self) -> Arc<dyn Workload> {
        PgCluster::workload(self)
    }
    fn nodes(&self) -> usize {
        self.len()
    }
    fn switchover_target(&self, p: usize) -> Result<usize> {
        let target = (0..self.len()).rev().find(|&i| i != p).unwrap_or(0);
        // A switchover to a node not yet eligible is rejected, by design.
        let key = format!("nodes/{}", self.name(target));
        eventually(Duration::from_secs(20), Duration::from_millis(100), || {
            self.key(&key).filter(|d| d.contains("\"eligible\":true"))
        })
        .map(|_| target)
        .ok_or_else(|| anyhow::anyhow!("{} never eligible", self.name(target)))
    }
    fn inject(&mut self, scenario: Scenario, p: usize, target: usize) -> Result<()> {
        match scenario {
            Scenario::Crash => {
                self.kill_postgres(p);
            }
            Scenario::NodeLoss => self.kill_node(p),
            Scenario::Frozen => self.stop_agent(p),
            Scenario::Graceful => self.sigterm_agent(p),
            Scenario::Switchover => self.put_key(
                "switchover",
                &format!(r#"{{"schema":1,"candidate":"{}"}}"#, self.name(target)),
            ),
        }
        Ok(())
    }
    fn resume(&mut self, p: usize) {
        self.cont_agent(p);
    }
    fn effective_ttl(&self) -> Result<Duration> {
        Ok(self.opts().ttl)
    }
    fn logs(&self) -> String {
        Agents::logs(self)
    }
}

impl Supervised for PatroniCluster {
    fn workload(&self) -> Arc<dyn Workload> {
        PatroniCluster::workload(self)
    }
    fn nodes(&self) -> usize {
        self.len()
    }
    fn switchover_target(&self, p: usize) -> Result<usize> {
        // With synchronous_mode Patroni only switches over to the synchronous standby.
        let found = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
            let ms = self.members();
            ms.iter()
                .find(|(i, r, s)| *i != p && r == "sync_standby" && s == "streaming")
                .or_else(|| {
                    ms.iter()
                        .find(|(i, r, s)| *i != p && r == "replica" && s == "streaming")
                })
                .map(|m| m.0)
        });
        found.ok_or_else(|| anyhow::anyhow!("no streaming replica to switch over to"))
    }
    fn inject(&mut self, scenario: Scenario, p: usize, target: usize) -> Result<()> {
        match scenario {
            Scenario::Crash => self.kill_postgres(p)?,
            Scenario::NodeLoss => self.kill_node(p)?,
            Scenario::Frozen => self.stop_agent(p),
            Scenario::Graceful => self.sigterm_agent(p),
            // Patroni answers once the switchover is done; the measurement polls meanwhile.
            Scenario::Switchover => drop(self.switchover(p, target)),
        }
        Ok(())
    }
    fn resume(&mut self, p: usize) {
        self.cont_agent(p);
    }
    fn effective_ttl(&self) -> Result<Duration> {
        PatroniCluster::effective_ttl(self)
    }
    fn logs(&self) -> String {
        PatroniCluster::logs(self)
    }
}

/// Waits up to `within` until `n` more of the writer's rows are on `node`.
fn wait_rows(work: &Arc<dyn Workload>, node: usize, n: usize, within: Duration) -> bool {
    let count = || catch_unwind(AssertUnwindSafe(|| work.written(node).len())).ok();
    let start = count().unwrap_or(0);
    eventually(within, Duration::from_millis(50), || {
        count().filter(|&l| l >= start + n)
    })
    .is_some()
}

/// Injects `scenario` on the settled primary `p` of `c` while the writer and the checker
/// run, and measures it (see the module doc). `bound`: how long a new primary may take.
pub fn measure(
    c: &mut dyn Supervised,
    p: usize,
    scenario: Scenario,
    bound: Duration,
) -> Result<Run> {
    let effective_ttl = c.effective_ttl()?;
    let work = c.workload();
    let target = if scenario == Scenario::Switchover {
        c.switchover_target(p)?
    } else {
        p
    };
    let checker = Checker::start(c.workload(), MAX_RUN);
    let writer = Writer::start(work.clone(), MAX_RUN);
    if !wait_rows(&work, p, 50, Duration::from_secs(15)) {
        bail!("the writer does not get rows to the primary\n{}", c.logs());
    }
    let others: Vec<usize> = (0..c.nodes()).filter(|&i| i != p).collect();
    let t0 = Instant::now();
    c.inject(scenario, p, target)?;
    // One probe thread per node, so a node that does not answer delays no other; the
    // first acknowledged write stops them all.
    let done = AtomicBool::new(false);
    let new = std::thread::scope(|s| {
        let probes: Vec<_> = others
            .iter()
            .map(|&i| {
                let (work, done) = (&work, &done);
                s.spawn(move || {
                    eventually(bound, Duration::from_millis(10), || {
                        if done.load(Ordering::Relaxed) {
                            return Some(None);
                        }
                        let ok = work.writable(i);
                        let at = t0.elapsed();
                        ok.then(|| {
                            done.store(true, Ordering::Relaxed);
                            Some((at, i))
                        })
                    })
                    .flatten()
                })
            })
            .collect();
        probes
            .into_iter()
            .filter_map(|h| h.join().ok().flatten())
            .min()
    });
    if scenario == Scenario::Frozen {
        std::thread::sleep(Duration::from_secs(2));
        c.resume(p);
    }
    let Some((took, new)) = new else {
        let _ = (writer.stop(), checker.stop());
        bail!(
            "no new primary accepted a write within {bound:?}\n{}",
            c.logs()
        );
    };
    let followed = wait_rows(&work, new, 20, Duration::from_secs(40));
    let w = writer.stop();
    let k = checker.stop();
    if !followed {
        bail!(
            "the writer does not get rows to the new primary\n{}",
            c.logs()
        );
    }
    let rows = catch_unwind(AssertUnwindSafe(|| work.written(new)))
        .map_err(|_| anyhow::anyhow!("cannot read the rows on the new primary"))?;
    Ok(Run {
        took,
        lost: w.lost(&rows).len(),
        split_brain: k.split_brain.len(),
        effective_ttl,
        old: p,
        new,
    })
}

/// One run of `scenario` on a fresh cluster of `system`.
pub fn one_run(
    system: System,
    scenario: Scenario,
    ttl: Duration,
    durability: &'static str,
) -> Result<Run> {
    let outcome = catch_unwind(AssertUnwindSafe(|| match system {
        System::Autopilot => {
            let mut c = PgCluster::start(
                3,
                PgOpts {
                    ttl,
                    durability,
                    ..PgOpts::default()
                },
            )?;
            let p = settled(&c);
            measure(&mut c, p, scenario, ttl * 3 + Duration::from_secs(20))
        }
        System::Patroni => {
            let mut c = PatroniCluster::start(3, PatroniOpts { ttl, durability })?;
            let p = c.wait_settled(Duration::from_secs(90))?;
            let bound = c.effective_ttl()? * 3 + Duration::from_secs(20);
            measure(&mut c, p, scenario, bound)
        }
    }));
    outcome.unwrap_or_else(|p| bail!("{}", crate::report::panic_line(p.as_ref())))
}

/// Every scenario × durability × system, `runs` times each, one table per TTL; the
/// BENCHMARKS.md section.
pub fn run(
    runs: usize,
    ttls: &[Duration],
    durabilities: &[&'static str],
    systems: &[System],
) -> Result<String> {
    let began = Instant::now();
    let mut t = String::new();
    let mut notes = Vec::new();
    for &ttl in ttls {
        writeln!(
            t,
            "### PostgreSQL failover, TTL {} s: fault → first write acknowledged by a new primary (3 nodes, seconds; rows lost of acknowledged inserts)\n",
            ttl.as_secs()
        )?;
        writeln!(
            t,
            "| scenario | durability | system | TTL asked (lease) | runs | median | min | max | rows lost (total) | two writable nodes (rounds) | every run, in order |"
        )?;
        writeln!(t, "|---|---|---|---|---|---|---|---|---|---|---|")?;
        for &durability in durabilities {
            for scenario in Scenario::ALL {
                let mut outcomes: Vec<Vec<Result<Run>>> =
                    systems.iter().map(|_| Vec::new()).collect();
                for r in 0..runs {
                    for (s, &system) in systems.iter().enumerate() {
                        eprintln!(
                            "[{:>5.0} s] TTL {} s, {durability}, {}, {}: run {}/{runs}",
                            began.elapsed().as_secs_f64(),
                            ttl.as_secs(),
                            scenario.name(),
                            system.name(),
                            r + 1
                        );
                        let o = one_run(system, scenario, ttl, durability);
                        match &o {
                            Ok(run) => eprintln!(
                                "          {:.3} s, {} lost, {} split-brain rounds, lease {} s",
                                run.took.as_secs_f64(),
                                run.lost,
                                run.split_brain,
                                run.effective_ttl.as_secs()
                            ),
                            Err(e) => eprintln!("          failed: {e:#}"),
                        }
                        outcomes[s].push(o);
                    }
                }
                for (s, &system) in systems.iter().enumerate() {
                    let row = &outcomes[s];
                    let ok: Vec<&Run> = row.iter().filter_map(|o| o.as_ref().ok()).collect();
                    for e in row.iter().filter_map(|o| o.as_ref().err()) {
                        let first = format!("{e:#}");
                        notes.push(format!(
                            "{} / {durability} / {} / TTL {} s: a run failed: {}",
                            scenario.name(),
                            system.name(),
                            ttl.as_secs(),
                            first.lines().next().unwrap_or("")
                        ));
                    }
                    let mut leases: Vec<u64> =
                        ok.iter().map(|r| r.effective_ttl.as_secs()).collect();
                    leases.sort_unstable();
                    leases.dedup();
                    let lease = leases
                        .iter()
                        .map(|l| format!("{l} s"))
                        .collect::<Vec<_>>()
                        .join("/");
                    let (runs_cell, every) = runs_cells(
                        &row.iter()
                            .map(|o| o.as_ref().ok().map(|r| r.took.as_secs_f64()))
                            .collect::<Vec<_>>(),
                    );
                    let head = format!(
                        "| {} | {durability} | {} | {} s ({}) | {runs_cell} |",
                        scenario.name(),
                        system.name(),
                        ttl.as_secs(),
                        if lease.is_empty() { "—" } else { &lease }
                    );
                    if ok.is_empty() {
                        writeln!(t, "{head} — | — | — | — | — | {every} |")?;
                    } else {
                        let mut took: Vec<f64> = ok.iter().map(|r| r.took.as_secs_f64()).collect();
                        let min = took.iter().copied().fold(f64::INFINITY, f64::min);
                        let max = took.iter().copied().fold(0.0, f64::max);
                        let lost: usize = ok.iter().map(|r| r.lost).sum();
                        let split: usize = ok.iter().map(|r| r.split_brain).sum();
                        writeln!(
                            t,
                            "{head} {:.2} | {min:.2} | {max:.2} | {lost} | {split} | {every} |",
                            median(&mut took)
                        )?;
                    }
                }
            }
        }
        writeln!(t)?;
    }
    writeln!(
        t,
        "Each run: a fresh cluster (a fresh etcd 3.4 and 3 nodes of PostgreSQL 15 with `shared_buffers` 16MB, \
         `max_connections` 50, `fsync` off), settled (one primary, both replicas streaming; with sync one of them \
         synchronous), a writer inserting numbered rows (autocommit, acknowledged = COMMIT returned within 1 s) and a \
         checker probing every node's writability every ~50 ms. After 50 rows the fault is injected; time = until a \
         node other than the old primary acknowledges a write (each node polled every 10 ms by its own thread). A frozen \
         agent is resumed 2 s after that. Rows lost = acknowledged inserts missing on the new primary once 20 more rows \
         are there. Autopilot: `failover.settle` 300 ms, `cooldown` 0, agents built in this profile. Patroni 4.1.5: \
         `loop_wait`/`retry_timeout` 2/4 s for TTL 10, 1/3 s for TTL 5, `primary_start_timeout` 0 (the default 300 s \
         restarts a crashed postmaster in place instead of failing over), `synchronous_mode` for sync, pg_rewind and slots \
         on; \"lease\" is the TTL etcd granted the leader key (Patroni raises a TTL below 20 s to 20 s). \
         Planned switchover: Autopilot's `switchover` key naming an eligible replica, Patroni's `POST /switchover` naming \
         a streaming (with sync: the synchronous) standby. Whole benchmark: {:.0} s.",
        began.elapsed().as_secs_f64()
    )?;
    for n in notes {
        writeln!(t, "\n{n}")?;
    }
    Ok(t)
}
