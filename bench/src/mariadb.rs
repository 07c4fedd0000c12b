//! `bench mariadb-failover`: failover time and rows lost on a 3-node MariaDB cluster under
//! real agents, per scenario, durability and lease TTL. One fresh cluster per run, the same
//! writer and checker as the e2e tests (`e2e::mariadb::scenario::failover`): time = from just
//! before the fault to the moment the new primary answers `/primary` and accepts an
//! application write; rows lost = acknowledged inserts missing on the new primary.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::proc::median;
use crate::report::runs_cells;
use e2e::mariadb::cluster::MariaOpts;
use e2e::mariadb::scenario::{FailoverRun, failover, settled};

/// A fault injected on the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Crash,
    NodeLoss,
    Frozen,
    Graceful,
    Switchover,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Crash,
        Scenario::NodeLoss,
        Scenario::Frozen,
        Scenario::Graceful,
        Scenario::Switchover,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Crash => "kill -9 mariadbd (agent alive)",
            Scenario::NodeLoss => "node loss (kill -9 agent + mariadbd)",
            Scenario::Frozen => "SIGSTOP primary agent",
            Scenario::Graceful => "graceful stop (SIGTERM agent)",
            Scenario::Switchover => "planned switchover",
        }
    }
}

/// One run: the failover, or why it could not be measured.
type Outcome = std::result::Result<FailoverRun, String>;

fn one_run(ttl: Duration, durability: &'static str, scenario: Scenario) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| {
        let opts = MariaOpts {
            ttl,
            durability,
            ..MariaOpts::default()
        };
        let (mut c, p) = settled(opts);
        let target = (0..c.len()).rev().find(|&i| i != p).expect("another node");
        if scenario == Scenario::Switchover {
            // Not timed: a switchover to a node not yet eligible is rejected, by design.
            c.wait_eligible(target, Duration::from_secs(20));
        }
        let run = failover(&mut c, p, |c, p| match scenario {
            Scenario::Crash => {
                c.kill_mariadbd(p);
            }
            Scenario::NodeLoss => c.kill_node(p),
            Scenario::Frozen => c.stop_agent(p),
            Scenario::Graceful => c.sigterm_agent(p),
            Scenario::Switchover => {
                c.put_key(
                    "switchover",
                    &format!(r#"{{"schema":1,"candidate":"{}"}}"#, c.name(target)),
                );
            }
        });
        if scenario == Scenario::Frozen {
            c.cont_agent(p);
        }
        run
    }))
    .map_err(|p| crate::report::panic_line(p.as_ref()))
}

/// Runs every scenario `runs` times per durability and TTL; returns the Markdown section.
pub fn run(runs: usize, ttls: &[Duration], durabilities: &[&'static str]) -> Result<String> {
    let began = Instant::now();
    let mut t = String::new();
    writeln!(
        t,
        "### MariaDB failover: fault → the new primary accepts an application write (3 nodes, seconds; rows lost of acknowledged inserts)\n"
    )?;
    writeln!(
        t,
        "| scenario | durability | TTL (s) | runs | median | min | max | rows lost (total) | two writable nodes (rounds) | every run, in order |"
    )?;
    writeln!(t, "|---|---|---|---|---|---|---|---|---|---|")?;
    let mut notes = Vec::new();
    for &ttl in ttls {
        for &durability in durabilities {
            for scenario in Scenario::ALL {
                let mut outcomes = Vec::new();
                for r in 0..runs {
                    eprintln!(
                        "[{:>5.0} s] TTL {} s, {durability}, {}: run {}/{runs}",
                        began.elapsed().as_secs_f64(),
                        ttl.as_secs(),
                        scenario.name(),
                        r + 1
                    );
                    let o = one_run(ttl, durability, scenario);
                    match &o {
                        Ok(run) => eprintln!(
                            "          {:.3} s, {} lost, {} split-brain rounds",
                            run.took.as_secs_f64(),
                            run.lost.len(),
                            run.split_brain
                        ),
                        Err(e) => eprintln!("          failed: {e}"),
                    }
                    outcomes.push(o);
                }
                let mut took: Vec<f64> = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().map(|r| r.took.as_secs_f64()))
                    .collect();
                let lost: usize = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().map(|r| r.lost.len()))
                    .sum();
                let split: usize = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok().map(|r| r.split_brain))
                    .sum();
                for e in outcomes.iter().filter_map(|o| o.as_ref().err()) {
                    notes.push(format!(
                        "{} / {durability} / TTL {} s: a run failed: {e}",
                        scenario.name(),
                        ttl.as_secs()
                    ));
                }
                let (runs_cell, every) = runs_cells(
                    &outcomes
                        .iter()
                        .map(|o| o.as_ref().ok().map(|r| r.took.as_secs_f64()))
                        .collect::<Vec<_>>(),
                );
                if took.is_empty() {
                    writeln!(
                        t,
                        "| {} | {durability} | {} | {runs_cell} | — | — | — | — | — | {every} |",
                        scenario.name(),
                        ttl.as_secs()
                    )?;
                } else {
                    let min = took.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = took.iter().copied().fold(0.0, f64::max);
                    writeln!(
                        t,
                        "| {} | {durability} | {} | {runs_cell} | {:.2} | {min:.2} | {max:.2} | {lost} | {split} | {every} |",
                        scenario.name(),
                        ttl.as_secs(),
                        median(&mut took)
                    )?;
                }
            }
        }
    }
    writeln!(
        t,
        "\nEach run: a fresh cluster (etcd + 3 agents running MariaDB 10.11, `failover.settle` 300 ms, `cooldown` 0), \
         both replicas replicating, a writer inserting numbered rows as an application account (a fresh connection per insert, \
         1 s limit) and a checker probing every node's writability every ~50 ms with a rolled-back insert. After 50 rows the \
         fault is injected; time = until the new primary answers `/primary` and accepts a write (polled every 20 ms). \
         Rows lost = acknowledged inserts missing on the new primary once the third node follows it. Whole benchmark: {:.0} s.",
        began.elapsed().as_secs_f64()
    )?;
    for n in notes {
        writeln!(t, "\n{n}")?;
    }
    Ok(t)
}
