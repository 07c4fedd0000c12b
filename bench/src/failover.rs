//! Failover time: a 3-node Redis cluster under real agents and a real etcd; a fault is
//! injected on the settled primary and the time is measured from the fault to the first
//! write accepted by the new primary. One fresh cluster per run.
//!
//! Writability is probed on every node at once (one thread per node, a `SET` every 20 ms,
//! each probe bounded by 200 ms), so a dead or paused node never delays the others.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::proc::median;
use e2e::redis::cluster::{RedisCluster, RedisOpts};
use e2e::redis::resp::{self, Reply};

/// How often each node is probed with a write.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long one write probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Bootstrap of a fresh cluster: first primary and both replicas attached.
const BOOTSTRAP: Duration = Duration::from_secs(45);
/// How long the primary must stay put (and writable) before the fault.
const STABLE: Duration = Duration::from_secs(1);
/// `failover.settle` (the agent's default).
const SETTLE: Duration = Duration::from_millis(500);

/// A fault injected on the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// kill -9 the primary's Redis; its agent lives.
    Crash,
    /// kill -9 the primary's agent, then its Redis.
    NodeLoss,
    /// SIGTERM the primary's agent.
    Graceful,
}

impl Scenario {
    const ALL: [Scenario; 3] = [Scenario::Crash, Scenario::NodeLoss, Scenario::Graceful];

    fn name(self) -> &'static str {
        match self {
            Scenario::Crash => "crash (kill -9 Redis, agent alive)",
            Scenario::NodeLoss => "node loss (kill -9 agent + Redis)",
            Scenario::Graceful => "graceful (SIGTERM agent)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Scenario::Crash => "crash",
            Scenario::NodeLoss => "node loss",
            Scenario::Graceful => "graceful",
        }
    }

    /// The target from the issue, if there is one: (text, bound).
    fn target(self, ttl: Duration) -> Option<(String, Duration)> {
        match self {
            Scenario::Crash => None,
            Scenario::NodeLoss => Some((
                format!("< TTL + 2 s = {} s", ttl.as_secs() + 2),
                ttl + Duration::from_secs(2),
            )),
            Scenario::Graceful => Some(("< 1 s".into(), Duration::from_secs(1))),
        }
    }
}

/// What one run gave.
enum Outcome {
    /// Fault → first write on the new primary.
    Took(Duration),
    /// No write accepted on a new primary within the bound.
    TimedOut(Duration),
    /// The run could not be set up or measured.
    Failed(String),
}

/// Runs every scenario `runs` times for each TTL; returns the Markdown section.
pub fn run(runs: usize, ttls: &[Duration]) -> Result<String> {
    let began = Instant::now();
    let mut rows = Vec::new();
    for &ttl in ttls {
        for scenario in Scenario::ALL {
            let mut outcomes = Vec::new();
            for r in 0..runs {
                eprintln!(
                    "[{:>5.0} s] TTL {} s, {}: run {}/{runs}",
                    began.elapsed().as_secs_f64(),
                    ttl.as_secs(),
                    scenario.short(),
                    r + 1
                );
                let outcome = catch_unwind(AssertUnwindSafe(|| one_run(ttl, scenario)))
                    .unwrap_or_else(|p| Outcome::Failed(crate::report::panic_line(p.as_ref())));
                match &outcome {
                    Outcome::Took(d) => eprintln!("          {:.3} s", d.as_secs_f64()),
                    Outcome::TimedOut(b) => eprintln!("          timed out after {b:?}"),
                    Outcome::Failed(e) => eprintln!("          failed: {e}"),
                }
                outcomes.push(outcome);
            }
            rows.push((ttl, scenario, outcomes));
        }
    }
    let total = began.elapsed();

    let mut t = String::new();
    writeln!(
        t,
        "### Failover: fault → first write accepted on the new primary (3 Redis nodes, seconds)\n"
    )?;
    writeln!(
        t,
        "| scenario | TTL (s) | runs | median | min | max | target | median meets it | every run, in order |"
    )?;
    writeln!(t, "|---|---|---|---|---|---|---|---|---|")?;
    let mut notes = Vec::new();
    for (ttl, scenario, outcomes) in &rows {
        let mut ok: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Took(d) => Some(d.as_secs_f64()),
                _ => None,
            })
            .collect();
        let timed_out = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::TimedOut(_)))
            .count();
        let failed: Vec<&str> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Failed(e) => Some(e.as_str()),
                _ => None,
            })
            .collect();
        let mut runs_cell = format!("{}", ok.len());
        if timed_out > 0 {
            write!(runs_cell, " (+{timed_out} timed out)")?;
            notes.push(format!(
                "{} at TTL {} s: {timed_out} run(s) saw no write on a new primary within {} s.",
                scenario.short(),
                ttl.as_secs(),
                bound(*ttl).as_secs()
            ));
        }
        if !failed.is_empty() {
            write!(runs_cell, " (+{} failed)", failed.len())?;
            for e in &failed {
                notes.push(format!(
                    "{} at TTL {} s: a run failed: {e}",
                    scenario.short(),
                    ttl.as_secs()
                ));
            }
        }
        let every = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Took(d) => format!("{:.2}", d.as_secs_f64()),
                Outcome::TimedOut(_) => "timeout".into(),
                Outcome::Failed(_) => "failed".into(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let (target, verdict) = match scenario.target(*ttl) {
            Some((text, b)) if !ok.is_empty() => {
                let m = median(&mut ok.clone());
                (text, if m < b.as_secs_f64() { "yes" } else { "**no**" })
            }
            Some((text, _)) => (text, "n/a"),
            None => ("—".into(), "—"),
        };
        if ok.is_empty() {
            writeln!(
                t,
                "| {} | {} | {runs_cell} | — | — | — | {target} | {verdict} | {every} |",
                scenario.name(),
                ttl.as_secs()
            )?;
        } else {
            let min = ok.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ok.iter().copied().fold(0.0, f64::max);
            writeln!(
                t,
                "| {} | {} | {runs_cell} | {:.2} | {:.2} | {:.2} | {target} | {verdict} | {every} |",
                scenario.name(),
                ttl.as_secs(),
                median(&mut ok),
                min,
                max
            )?;
        }
    }
    writeln!(
        t,
        "\nEach run: a fresh cluster (etcd + 3 agents, `failover.settle` {} ms, `cooldown` 0), wait for one primary with both replicas attached that holds for {} s, \
         inject the fault, then probe every node with a `SET` every {} ms (one thread per node). Time = from just before the fault to the first `OK` \
         on a node other than the old primary (crash: on any node, the old one counting only once its Redis has been seen down). \
         A run is bounded by 3 × TTL + 10 s. Whole benchmark: {:.0} s.",
        SETTLE.as_millis(),
        STABLE.as_secs(),
        PROBE_EVERY.as_millis(),
        total.as_secs_f64()
    )?;
    for n in notes {
        writeln!(t, "\n{n}")?;
    }
    Ok(t)
}

/// The bound on one measurement.
fn bound(ttl: Duration) -> Duration {
    3 * ttl + Duration::from_secs(10)
}

/// One run on a fresh cluster.
fn one_run(ttl: Duration, scenario: Scenario) -> Outcome {
    let opts = RedisOpts {
        ttl,
        settle: SETTLE,
        cooldown: Duration::ZERO,
    };
    let mut c = match RedisCluster::start(3, opts) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("start the cluster: {e:#}")),
    };
    let outcome = match settled(&c) {
        None => Outcome::Failed(format!(
            "no settled primary within {} s; roles {:?}",
            BOOTSTRAP.as_secs(),
            c.roles()
        )),
        Some(p) => measure(&mut c, p, ttl, scenario),
    };
    // Tear down fast: kill -9 what is left (a graceful stop of a whole cluster takes a while).
    for i in 0..c.len() {
        if c.agent_alive(i) {
            c.kill_agent(i);
        }
    }
    outcome
}

/// Injects `scenario` on primary `p` and measures fault → first write on the new primary.
fn measure(c: &mut RedisCluster, p: usize, ttl: Duration, scenario: Scenario) -> Outcome {
    let ports = c.redis_ports();
    let within = bound(ttl);
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    match scenario {
        Scenario::Crash => {
            c.kill_redis(p);
        }
        Scenario::NodeLoss => c.kill_agent(p),
        Scenario::Graceful => c.sigterm_agent(p),
    }
    let probes: Vec<_> = ports
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != p || scenario == Scenario::Crash)
        .map(|(i, &port)| {
            let stop = Arc::clone(&stop);
            // The old primary counts only after its Redis has been seen refusing writes.
            let mut seen_down = i != p;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && t0.elapsed() < within {
                    let ok = matches!(
                        resp::command(port, &["SET", "autopilot:bench:probe", "1"], PROBE_TIMEOUT),
                        Ok(Reply::Simple(ref s)) if s == "OK"
                    );
                    if ok && seen_down {
                        return Some(t0.elapsed());
                    }
                    seen_down |= !ok;
                    std::thread::sleep(PROBE_EVERY);
                }
                None
            })
        })
        .collect();
    // The first node to accept a write wins; stop the others then.
    while !probes.iter().any(|h| h.is_finished()) && t0.elapsed() < within {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let best = probes
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .min();
    match best {
        Some(d) => Outcome::Took(d),
        None => Outcome::TimedOut(within),
    }
}

/// Waits for a primary with both replicas attached that stays primary and writable for
/// [`STABLE`]; its index, `None` when the cluster does not settle within [`BOOTSTRAP`].
fn settled(c: &RedisCluster) -> Option<usize> {
    let deadline = Instant::now() + BOOTSTRAP;
    while Instant::now() < deadline {
        let Some(p) = c.primary() else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let attached = (0..c.len())
            .filter(|&i| i != p)
            .all(|i| c.replicates_from(i, p));
        if attached && c.writable(p) && holds(c, p) {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Whether `p` answers `/primary` throughout [`STABLE`].
fn holds(c: &RedisCluster, p: usize) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < STABLE {
        if c.primary() != Some(p) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
