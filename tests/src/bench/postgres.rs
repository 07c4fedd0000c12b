//! `bench postgres-failover`: a 3-node PostgreSQL cluster under real agents and a real etcd;
//! a fault is injected on the settled primary while a writer runs; measured: fault → first
//! write accepted by a new primary, and acknowledged rows missing on the new primary
//! afterwards. One fresh cluster per run.
//!
//! Patroni side by side (same PostgreSQL, etcd, TTL, scenarios) is not measured by this
//! command yet: see docs/engines/postgres.md and recipes.md for Patroni's figures here.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::proc::median;
use crate::postgres_cluster::{PgCluster, PgOpts};
use crate::postgres_scenario::{MAX_RUN, settled};
use crate::util::eventually;
use crate::workload::Writer;

/// A fault injected on the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// kill -9 the postmaster; the agent lives.
    Crash,
    /// kill -9 agent and postmaster.
    NodeLoss,
    /// SIGSTOP the primary's agent; its PostgreSQL keeps running.
    Frozen,
    /// SIGTERM the primary's agent.
    Graceful,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::Crash,
        Fault::NodeLoss,
        Fault::Frozen,
        Fault::Graceful,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Crash => "kill -9 postmaster",
            Fault::NodeLoss => "node loss (kill -9 agent + postmaster)",
            Fault::Frozen => "SIGSTOP primary's agent",
            Fault::Graceful => "graceful (SIGTERM agent)",
        }
    }

    fn inject(self, c: &mut PgCluster, p: usize) {
        match self {
            Fault::Crash => {
                c.kill_postgres(p);
            }
            Fault::NodeLoss => c.kill_node(p),
            Fault::Frozen => c.stop_agent(p),
            Fault::Graceful => c.sigterm_agent(p),
        }
    }
}

/// One run: (seconds to the first write on a new primary, acknowledged rows lost).
fn one(fault: Fault, ttl: Duration, durability: &'static str) -> Result<(f64, usize)> {
    let mut c = PgCluster::start(
        3,
        PgOpts {
            ttl,
            durability,
            ..PgOpts::default()
        },
    )?;
    let p = settled(&c);
    let work = c.workload();
    let writer = Writer::start(work.clone(), MAX_RUN);
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    fault.inject(&mut c, p);
    let others: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let took = eventually(
        ttl * 3 + Duration::from_secs(20),
        Duration::from_millis(10),
        || {
            others
                .iter()
                .any(|&i| work.writable(i))
                .then(|| t0.elapsed())
        },
    );
    let Some(took) = took else {
        bail!("no new primary accepted a write");
    };
    std::thread::sleep(Duration::from_secs(2));
    let report = writer.stop();
    let np = c.wait_primary(Duration::from_secs(20));
    let lost = report.lost(&work.written(np)).len();
    if fault == Fault::Frozen {
        c.cont_agent(p);
    }
    Ok((took.as_secs_f64(), lost))
}

/// Every fault × TTL × durability, `runs` times each; the BENCHMARKS.md section.
pub fn run(runs: usize, ttls: &[Duration]) -> Result<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## PostgreSQL failover (3 nodes, PostgreSQL 15, etcd 3.4, settle 300 ms)\n\n\
         Fault → first write accepted by a new primary (seconds), and acknowledged rows missing \
         on the new primary afterwards (a writer inserts one row per commit throughout). \
         {runs} run(s) per line, one fresh cluster per run, agents built in this profile.\n\n\
         | fault | TTL | durability | n | median | min | max | rows lost (all runs) |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for &ttl in ttls {
        for fault in Fault::ALL {
            for durability in ["async", "sync"] {
                let mut times = Vec::new();
                let mut lost = 0;
                let mut failed = 0;
                for _ in 0..runs {
                    match one(fault, ttl, durability) {
                        Ok((t, l)) => {
                            times.push(t);
                            lost += l;
                        }
                        Err(e) => {
                            eprintln!("{} ttl {ttl:?} {durability}: {e:#}", fault.name());
                            failed += 1;
                        }
                    }
                }
                let (min, max) = times
                    .iter()
                    .fold((f64::MAX, 0f64), |(a, b), &t| (a.min(t), b.max(t)));
                let med = if times.is_empty() {
                    f64::NAN
                } else {
                    median(&mut times)
                };
                let line = format!(
                    "| {} | {} s | {durability} | {}{} | {med:.2} | {min:.2} | {max:.2} | {lost} |",
                    fault.name(),
                    ttl.as_secs(),
                    times.len(),
                    if failed > 0 {
                        format!(" ({failed} failed)")
                    } else {
                        String::new()
                    },
                );
                println!("{line}");
                let _ = writeln!(out, "{line}");
            }
        }
    }
    Ok(out)
}
