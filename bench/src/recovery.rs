//! `bench recovery`: the faults of issue 12 on MariaDB and PostgreSQL under Autopilot's
//! agents, each measured from the fault to the cluster back at full redundancy. One fresh
//! 3-node cluster per run; the writer and the checker of `e2e::harness::workload` run
//! throughout.
//!
//! Per run: settle, let 50 rows in, inject the fault on the primary, then measure
//! - **write outage**: the longest stretch in which no node acknowledged a write (from the
//!   writer's acknowledgements, so it counts an outage with no failover too: etcd outage);
//! - **rows lost**: acknowledged inserts missing on the primary at the end;
//! - **two writable nodes**: checker rounds in which two nodes accepted a write;
//! - **full redundancy**: fault → one primary and every other node replicating from it with
//!   the same rows. What a service manager would do is done: a killed node's agent is started
//!   again after the new primary took writes, a frozen agent or database is resumed 2 s later;
//! - **rejoin**: from the moment the failed node could come back (its agent restarted, its
//!   process resumed, etcd back, the switchover's new primary in place) to full redundancy.

use std::fmt::Write as _;
use std::ops::{Deref, DerefMut};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::proc::median;
use e2e::harness::cluster::Agents;
use e2e::harness::util::eventually;
use e2e::harness::workload::{Checker, Workload, Writer};
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::postgres::cluster::{PgCluster, PgOpts};

/// A fault of issue 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the primary's database; its agent lives and restarts it.
    Crash,
    /// The primary's database stopped (SIGSTOP of the server and every process of it).
    Hung,
    /// SIGSTOP of the primary's agent; its database runs on.
    FrozenAgent,
    /// kill -9 of agent and database; the agent is started again afterwards.
    NodeLoss,
    /// etcd down for 2 × TTL.
    EtcdOutage,
    /// A planned switchover to a replica; the old primary must stream from it again.
    Switchover,
    /// kill -9 of a replica's agent and database, its agent started again at once.
    ReplicaRestart,
}

impl Fault {
    /// Every fault, in table order.
    pub const ALL: [Fault; 7] = [
        Fault::Crash,
        Fault::Hung,
        Fault::FrozenAgent,
        Fault::NodeLoss,
        Fault::EtcdOutage,
        Fault::Switchover,
        Fault::ReplicaRestart,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Crash => "kill -9 database (agent alive, no outside restart)",
            Fault::Hung => "hung database (SIGSTOP server, agent alive)",
            Fault::FrozenAgent => "SIGSTOP primary's agent",
            Fault::NodeLoss => "node loss (kill -9 agent + database, agent restarted)",
            Fault::EtcdOutage => "etcd down for 2 × TTL",
            Fault::Switchover => "switchover to a replica",
            Fault::ReplicaRestart => "replica node restart (kill -9 agent + database)",
        }
    }
}

/// The engine under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// MariaDB, semi-sync or async.
    Mariadb,
    /// PostgreSQL 15, synchronous or async.
    Postgres,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Mariadb => "MariaDB",
            Engine::Postgres => "PostgreSQL",
        }
    }
}

/// What the bench needs of a cluster, whatever its engine.
trait Cluster: DerefMut<Target = Agents> {
    fn workload(&self) -> Arc<dyn Workload>;
    fn replicates(&self, i: usize, from: usize) -> bool;
    fn kill_database(&self, i: usize);
    fn kill_node(&mut self, i: usize);
    fn stop_etcd(&mut self);
    fn restart_etcd(&mut self);
    fn ttl(&self) -> Duration;
}

impl Cluster for PgCluster {
    fn workload(&self) -> Arc<dyn Workload> {
        PgCluster::workload(self)
    }
    fn replicates(&self, i: usize, from: usize) -> bool {
        self.streams_from(i, from)
    }
    fn kill_database(&self, i: usize) {
        self.kill_postgres(i);
    }
    fn kill_node(&mut self, i: usize) {
        PgCluster::kill_node(self, i);
    }
    fn stop_etcd(&mut self) {
        self.etcd_mut().stop();
    }
    fn restart_etcd(&mut self) {
        self.etcd_mut().restart().expect("restart etcd");
    }
    fn ttl(&self) -> Duration {
        self.opts().ttl
    }
}

/// A MariaDB cluster and the TTL it was started with.
struct Maria(MariaCluster, Duration);

impl Deref for Maria {
    type Target = Agents;
    fn deref(&self) -> &Agents {
        &self.0
    }
}

impl DerefMut for Maria {
    fn deref_mut(&mut self) -> &mut Agents {
        &mut self.0
    }
}

impl Cluster for Maria {
    fn workload(&self) -> Arc<dyn Workload> {
        e2e::mariadb::scenario::workload(&self.0)
    }
    fn replicates(&self, i: usize, from: usize) -> bool {
        self.0.replica_of(i) == Some((self.0.port(from), true))
    }
    fn kill_database(&self, i: usize) {
        self.0.kill_mariadbd(i);
    }
    fn kill_node(&mut self, i: usize) {
        self.0.kill_node(i);
    }
    fn stop_etcd(&mut self) {
        self.0.etcd_mut().stop();
    }
    fn restart_etcd(&mut self) {
        self.0.etcd_mut().restart().expect("restart etcd");
    }
    fn ttl(&self) -> Duration {
        self.1
    }
}

/// What one run measured.
#[derive(Debug)]
struct Run {
    outage: Duration,
    lost: usize,
    split_brain: usize,
    redundant: Duration,
    rejoin: Duration,
}

/// Every other node replicates from the primary and holds every row the primary held a
/// moment before (the writer keeps writing: a replica read later may hold more, never
/// less); the primary.
fn redundant(c: &dyn Cluster, within: Duration) -> Option<usize> {
    let work = c.workload();
    let rows = |i: usize| e2e::harness::scenario::sorted_rows(work.as_ref(), i);
    eventually(within, Duration::from_millis(100), || {
        let p = c.primary()?;
        let others: Vec<usize> = (0..c.len()).filter(|&i| i != p).collect();
        if !others.iter().all(|&i| c.replicates(i, p)) {
            return None;
        }
        let want = rows(p)?;
        others
            .iter()
            .all(|&i| {
                rows(i).is_some_and(|have| {
                    let have: std::collections::HashSet<u64> = have.into_iter().collect();
                    want.iter().all(|n| have.contains(n))
                })
            })
            .then_some(p)
    })
}

fn measure(c: &mut dyn Cluster, fault: Fault) -> Result<Run> {
    let p = c.wait_primary(Duration::from_secs(60));
    let work = c.workload();
    let checker = Checker::start(work.clone(), Duration::from_secs(180));
    let writer = Writer::start(work.clone(), Duration::from_secs(180));
    e2e::harness::scenario::let_writer_run(c, work.as_ref(), p, 50, Duration::from_secs(20));
    let ttl = c.ttl();
    let replica = (0..c.len()).find(|&i| i != p).expect("a replica");
    if fault == Fault::Switchover {
        c.wait_eligible(replica, Duration::from_secs(30));
    }
    let t0 = Instant::now();
    let back_at = match fault {
        Fault::Crash => {
            c.kill_database(p);
            t0
        }
        Fault::Hung => {
            let stopped = c.freeze_database(p);
            c.wait_new_primary(p, ttl * 3 + Duration::from_secs(20));
            std::thread::sleep(Duration::from_secs(2));
            c.thaw_database(&stopped);
            Instant::now()
        }
        Fault::FrozenAgent => {
            c.stop_agent(p);
            c.wait_new_primary(p, ttl * 3 + Duration::from_secs(20));
            std::thread::sleep(Duration::from_secs(2));
            c.cont_agent(p);
            Instant::now()
        }
        Fault::NodeLoss => {
            c.kill_node(p);
            c.wait_new_primary(p, ttl * 3 + Duration::from_secs(20));
            c.start_agent(p);
            Instant::now()
        }
        Fault::EtcdOutage => {
            c.stop_etcd();
            std::thread::sleep(ttl * 2);
            c.restart_etcd();
            Instant::now()
        }
        Fault::Switchover => {
            c.put_key(
                "switchover",
                &format!(r#"{{"schema":1,"candidate":"{}"}}"#, c.name(replica)),
            );
            c.wait_new_primary(p, Duration::from_secs(20));
            Instant::now()
        }
        Fault::ReplicaRestart => {
            c.kill_node(replica);
            c.start_agent(replica);
            Instant::now()
        }
    };
    let back = redundant(c, Duration::from_secs(90));
    let redundant_after = t0.elapsed();
    let rejoin = back_at.elapsed();
    // A few more rows on the primary, then stop and count.
    let np = back.ok_or_else(|| anyhow::anyhow!("no full redundancy within 90 s\n{}", c.logs()))?;
    e2e::harness::scenario::let_writer_run(c, work.as_ref(), np, 20, Duration::from_secs(20));
    let w = writer.stop();
    let k = checker.stop();
    let mut rows = work.written(np);
    rows.sort_unstable();
    Ok(Run {
        outage: w.longest_gap_since(t0),
        lost: w.lost(&rows).len(),
        split_brain: k.split_brain.len(),
        redundant: redundant_after,
        rejoin,
    })
}

fn one_run(engine: Engine, fault: Fault, ttl: Duration, durability: &'static str) -> Result<Run> {
    let outcome = catch_unwind(AssertUnwindSafe(|| match engine {
        Engine::Postgres => {
            let mut c = PgCluster::start(
                3,
                PgOpts {
                    ttl,
                    durability,
                    ..PgOpts::default()
                },
            )?;
            e2e::postgres::scenario::settled(&c);
            measure(&mut c, fault)
        }
        Engine::Mariadb => {
            let (c, _) = e2e::mariadb::scenario::settled(MariaOpts {
                ttl,
                durability,
                ..MariaOpts::default()
            });
            let mut m = Maria(c, ttl);
            measure(&mut m, fault)
        }
    }));
    outcome.unwrap_or_else(|p| Err(anyhow::anyhow!("{}", crate::report::panic_line(p.as_ref()))))
}

fn cells(v: &mut [f64]) -> String {
    if v.is_empty() {
        return "— | — | —".to_owned();
    }
    v.sort_by(f64::total_cmp);
    format!("{:.2} | {:.2} | {:.2}", median(v), v[0], v[v.len() - 1])
}

/// Runs every fault `runs` times per engine and durability; the Markdown section.
pub fn run(runs: usize, ttl: Duration, durabilities: &[&'static str]) -> Result<String> {
    let began = Instant::now();
    let mut t = String::new();
    writeln!(
        t,
        "### Faults to full redundancy (3 nodes, TTL {} s, seconds: median | min | max)\n",
        ttl.as_secs()
    )?;
    writeln!(
        t,
        "| engine | fault | durability | runs | write outage median | min | max | full redundancy median | min | max | rejoin median | min | max | rows lost (total) | two writable nodes (rounds) |"
    )?;
    writeln!(
        t,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    let mut notes = Vec::new();
    for engine in [Engine::Postgres, Engine::Mariadb] {
        for &durability in durabilities {
            for fault in Fault::ALL {
                let mut ok = Vec::new();
                for r in 0..runs {
                    eprintln!(
                        "[{:>5.0} s] {} {durability} {}: run {}/{runs}",
                        began.elapsed().as_secs_f64(),
                        engine.name(),
                        fault.name(),
                        r + 1
                    );
                    match one_run(engine, fault, ttl, durability) {
                        Ok(run) => {
                            eprintln!("          {run:?}");
                            ok.push(run);
                        }
                        Err(e) => {
                            eprintln!("          failed: {e}");
                            notes.push(format!(
                                "{} {durability}, {}: a run failed: {e}",
                                engine.name(),
                                fault.name()
                            ));
                        }
                    }
                }
                let mut outage: Vec<f64> = ok.iter().map(|r| r.outage.as_secs_f64()).collect();
                let mut back: Vec<f64> = ok.iter().map(|r| r.redundant.as_secs_f64()).collect();
                let mut rejoin: Vec<f64> = ok.iter().map(|r| r.rejoin.as_secs_f64()).collect();
                writeln!(
                    t,
                    "| {} | {} | {durability} | {}/{runs} | {} | {} | {} | {} | {} |",
                    engine.name(),
                    fault.name(),
                    ok.len(),
                    cells(&mut outage),
                    cells(&mut back),
                    cells(&mut rejoin),
                    ok.iter().map(|r| r.lost).sum::<usize>(),
                    ok.iter().map(|r| r.split_brain).sum::<usize>(),
                )?;
            }
        }
    }
    for n in notes {
        writeln!(t, "\n- {n}")?;
    }
    Ok(t)
}
