//! `bench upgrade`: a rolling upgrade of a three-node cluster (issue 19) on MariaDB and
//! PostgreSQL under a writer and a checker (the e2e harness's clusters, lease TTL 3 s, and its
//! rolling-upgrade programs: each node's server is a symlink its upgrade hook points at a
//! wrapper that runs the server as a newer build). Each run: a new cluster and coordinator,
//! `autopilotctl upgrade start --deadline 60`, followed to its end. Reported per engine: the
//! rollout's wall time, the longest write outage (the switchover's), the longest one outside
//! the switchover (the replicas' upgrades), and acknowledged rows missing from the primary.
//! After the rollout, the primary's agent is upgraded in place (`autopilot upgrade-self` to
//! a copy of the agent binary) under a new writer: the write outage it causes, beside the
//! writer's own longest pause over an equally long stretch just before (what the writer
//! sees with nothing happening), how long the command took, and whether anything changed
//! that must not (agent and database PIDs, lease, role, history).
//! A failed run is a note, never an abort of the others.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use std::sync::Arc;

use e2e::harness::cluster::Agents;
use e2e::harness::coordinator::Coordinator;
use e2e::harness::in_place::{NewBinary, kept, upgrade_self};
use e2e::harness::upgrade::{Programs, Rollout, Server, rollout};
use e2e::harness::util::eventually;
use e2e::harness::workload::{Workload, Writer};

use crate::backup::servers::Kind;
use crate::proc::median;
use crate::report::{per_engine, runs_cells};

/// One run's figures.
#[derive(Debug)]
struct Run {
    took: f64,
    outage: f64,
    outside: f64,
    lost: usize,
    in_place: InPlaceRun,
}

/// The in-place upgrade of the primary's agent.
#[derive(Debug)]
struct InPlaceRun {
    /// Longest pause between two acknowledged writes while it ran (s).
    outage: f64,
    /// The writer's longest pause over as long a stretch just before (s).
    baseline: f64,
    /// `autopilot upgrade-self`'s wall time (s).
    took: f64,
}

/// Upgrade the primary's agent in place under a writer (numbering after `last`, the
/// rollout writer's) and measure it.
fn in_place(a: &Agents, workload: Arc<dyn Workload>, last: u64) -> Result<InPlaceRun> {
    let p = a.wait_primary(Duration::from_secs(30));
    let before = kept(a, p);
    let new = NewBinary::copy();
    let writer = Writer::start_after(workload, last, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(4));
    let t0 = Instant::now();
    let r = upgrade_self(a, p, &new.path);
    std::thread::sleep(Duration::from_secs(1));
    let t1 = Instant::now();
    let w = writer.stop();
    if r.code != 0 {
        bail!("upgrade-self failed: {r:?}");
    }
    let after = kept(a, p);
    if after != before {
        bail!("the in-place upgrade changed what it must keep: {before:?} -> {after:?}");
    }
    let window = t1 - t0;
    if !w.acked_at.iter().any(|&t| t >= t0 - window) {
        bail!("the writer got no acknowledgement around the in-place upgrade");
    }
    Ok(InPlaceRun {
        outage: w.longest_gap_between(t0, t1).as_secs_f64(),
        baseline: w.longest_gap_between(t0 - window, t0).as_secs_f64(),
        took: r.took.as_secs_f64(),
    })
}

/// Measures `runs` rollouts per engine; the table.
pub fn run(runs: usize, engines: &[Kind]) -> Result<String> {
    let began = Instant::now();
    let (rows, notes) = per_engine(runs, engines, "rolling upgrade", |kind| match kind {
        Kind::Postgres => postgres(),
        Kind::Mariadb => mariadb(),
    });
    Ok(render(runs, &rows, &notes, began.elapsed()))
}

fn figures(r: &Rollout, rows: Option<Vec<u64>>, in_place: InPlaceRun) -> Result<Run> {
    // Each step's time on the progress output, to tell a slow run's slow step.
    eprintln!("  steps: {}", e2e::harness::upgrade::steps_summary(&r.doc));
    if r.doc["state"] != "done" {
        bail!("the rollout ended {}: {}", r.doc["state"], r.doc["detail"]);
    }
    let Some(rows) = rows else {
        bail!("the primary did not answer after the rollout");
    };
    Ok(Run {
        took: r.took.as_secs_f64(),
        outage: r.outage.as_secs_f64(),
        outside: r.outside_switchover.as_secs_f64(),
        lost: r.writer.lost(&rows).len(),
        in_place,
    })
}

fn mariadb() -> Result<Run> {
    use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
    use e2e::mariadb::scenario::{settle, workload};
    let programs = Programs::new(Server::Mariadb);
    let mut c = MariaCluster::start(
        3,
        MariaOpts {
            server: Some(programs.server_yaml()),
            extra_yaml: format!("handlers:\n{}", programs.handlers_yaml()),
            ..MariaOpts::default()
        },
    )?;
    settle(&c);
    let coord = Coordinator::start(&c.etcd_mut().endpoint(), &[])?;
    let r = rollout(&c, coord.url(), &c.cluster_id(), workload(&c));
    let q = c.wait_primary(Duration::from_secs(30));
    let rows = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        e2e::harness::scenario::sorted_rows(workload(&c).as_ref(), q)
    });
    let in_place = in_place(&c, workload(&c), r.writer.attempts)?;
    figures(&r, rows, in_place)
}

fn postgres() -> Result<Run> {
    use e2e::postgres::cluster::{PgCluster, PgOpts};
    use e2e::postgres::scenario::settled;
    let programs = Programs::new(Server::Postgres);
    let mut c = PgCluster::start(
        3,
        PgOpts {
            bin_dir: Some(programs.server_yaml()),
            handlers_yaml: programs.handlers_yaml(),
            ..PgOpts::default()
        },
    )?;
    settled(&c);
    let coord = Coordinator::start(&c.etcd_mut().endpoint(), &[])?;
    let r = rollout(&c, coord.url(), "e2e/pg/main", c.workload());
    let q = c.wait_primary(Duration::from_secs(30));
    let rows = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        e2e::harness::scenario::sorted_rows(c.workload().as_ref(), q)
    });
    let in_place = in_place(&c, c.workload(), r.writer.attempts)?;
    figures(&r, rows, in_place)
}

fn med(v: impl Iterator<Item = f64>) -> String {
    let mut v: Vec<f64> = v.collect();
    if v.is_empty() {
        "—".to_owned()
    } else {
        format!("{:.2}", median(&mut v))
    }
}

fn render(
    runs: usize,
    rows: &[(Kind, Vec<Option<Run>>)],
    notes: &[String],
    took: Duration,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Rolling upgrade and in-place agent upgrade (issue 19)\n\nA rolling upgrade of a 3-node cluster under a writer \
         (the e2e harness's, lease TTL 3 s): two replicas upgraded one at a time, one switchover, \
         the former primary; each node's upgrade hook switches its server program and the \
         database restarts. {runs} run(s) per engine (took {:.0} s). Outage: the longest time \
         between two acknowledged writes during the rollout (the switchover's); outside the \
         switchover: the longest while the replicas were upgraded.\n",
        took.as_secs_f64()
    );
    out += "| engine | runs | wall time, median (s) | every run (s) | write outage, median (s) | outside the switchover, max (s) | acknowledged rows lost |\n";
    out += "|---|---|---|---|---|---|---|\n";
    for (kind, got) in rows {
        let wall: Vec<Option<f64>> = got.iter().map(|r| r.as_ref().map(|r| r.took)).collect();
        let (cell, every) = runs_cells(&wall);
        let outside = got
            .iter()
            .flatten()
            .map(|r| r.outside)
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            .map_or_else(|| "—".to_owned(), |x| format!("{x:.2}"));
        let lost: usize = got.iter().flatten().map(|r| r.lost).sum();
        let _ = writeln!(
            out,
            "| {} | {cell} | {} | {every} | {} | {outside} | {lost} |",
            kind.as_str(),
            med(got.iter().flatten().map(|r| r.took)),
            med(got.iter().flatten().map(|r| r.outage)),
        );
    }
    out += "\nThe primary's agent upgraded in place after each rollout (`autopilot upgrade-self` \
            to a copy of the binary; no failover, the database and its PID kept, checked every \
            run). Outage: the longest pause between two acknowledged writes from the command's \
            start to 1 s after its end; beside it, the writer's longest pause over an equally \
            long stretch just before, with nothing happening. Target: 100 ms.\n\n";
    out += "| engine | runs | write outage, median (ms) | writer's own longest pause, median (ms) | ratio | worst outage (ms) | upgrade-self wall time, median (s) |\n";
    out += "|---|---|---|---|---|---|---|\n";
    for (kind, got) in rows {
        let ok: Vec<&InPlaceRun> = got.iter().flatten().map(|r| &r.in_place).collect();
        let ms = |v: Vec<f64>| {
            if v.is_empty() {
                None
            } else {
                let mut v = v;
                Some(median(&mut v) * 1000.0)
            }
        };
        let outage = ms(ok.iter().map(|r| r.outage).collect());
        let baseline = ms(ok.iter().map(|r| r.baseline).collect());
        let worst = ok.iter().map(|r| r.outage).fold(0.0_f64, f64::max) * 1000.0;
        let cell = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}"));
        let ratio = match (outage, baseline) {
            (Some(o), Some(b)) if b > 0.0 => format!("{:.2}", o / b),
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} | {worst:.0} | {} |",
            kind.as_str(),
            ok.len(),
            cell(outage),
            cell(baseline),
            med(ok.iter().map(|r| r.took)),
        );
    }
    for n in notes {
        let _ = writeln!(out, "\nNote: {n}");
    }
    let _ = writeln!(
        out,
        "\nReproduce: `target/release/bench upgrade --runs {runs}` (as root, after `cargo build --release -p autopilot -p coordinator -p bench --bins`)."
    );
    out
}
