//! `bench migrate`: the write outage of a live migration's cutover (issue 18), on PostgreSQL
//! and MariaDB. Each run: an external source (a PostgreSQL primary the engine alone runs, or
//! a plain MariaDB server with GTIDs; no agent) with 500 rows, a writer inserting a row every
//! 5 ms into the source, and a new three-node cluster bootstrapped with
//! `cluster.bootstrap.migrate_from` (the e2e harness's clusters, lease TTL 3 s). Once the
//! standby leader replicates from the source and both other nodes follow it, the cutover is
//! asked (`requests/<leader>` with action `cutover`, as the coordinator writes it); the
//! writer moves to the leader's port when the source refuses it. Reported per engine: the
//! write outage the writer saw (from the source's last acknowledgement to the cluster's
//! first), the outage the leader's `request_done` names (from asking the source to refuse
//! writes to the promotion), and the acknowledged rows missing from the new primary.
//!
//! A cutover is one-way, so every run starts a new source and cluster. A failed run is a
//! note, never an abort of the others.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use e2e::harness::migration::{Log, Writer, outage_said};
use e2e::harness::util::eventually;

use crate::backup::servers::Kind;
use crate::proc::median;
use crate::report::{per_engine, runs_cells};

/// Rows in the source before the migration.
const ROWS: u64 = 500;
/// The longest a cluster may take to lead and follow the source.
const READY_LIMIT: Duration = Duration::from_secs(180);
/// The longest a cutover may take until the cluster took 20 rows.
const CUTOVER_LIMIT: Duration = Duration::from_secs(120);

/// One run's figures.
#[derive(Debug)]
struct Run {
    /// As the writer saw it, seconds.
    client: f64,
    /// As the leader said it, seconds.
    agent: Option<f64>,
    /// Acknowledged rows missing from the new primary.
    lost: usize,
}

/// Measures `runs` cutovers per engine; the table.
pub fn run(runs: usize, engines: &[Kind]) -> Result<String> {
    let began = Instant::now();
    let (rows, notes) = per_engine(runs, engines, "cutover", |kind| match kind {
        Kind::Postgres => postgres(),
        Kind::Mariadb => mariadb(),
    });
    Ok(render(runs, &rows, &notes, began.elapsed()))
}

/// The writer's and the agent's figures once the cluster took 20 rows.
fn finish(
    writer: Writer,
    events: impl Fn() -> Vec<serde_json::Value>,
) -> Result<(Log, Option<f64>)> {
    let took = eventually(CUTOVER_LIMIT, Duration::from_millis(50), || {
        (writer.count().1 >= 20).then_some(())
    });
    let log = writer.finish();
    if took.is_none() {
        bail!("the cluster did not take writes within {CUTOVER_LIMIT:?} of the cutover");
    }
    let said = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        outage_said(&events())
    });
    Ok((log, said.map(|d| d.as_secs_f64())))
}

fn lost(acked: &[u64], have: &[u64]) -> usize {
    (1..=ROWS)
        .chain(acked.iter().copied())
        .filter(|n| have.binary_search(n).is_err())
        .count()
}

fn cutover_request() -> &'static str {
    r#"{"schema":1,"action":"cutover","requested_by":"bench"}"#
}

fn postgres() -> Result<Run> {
    use e2e::postgres::cluster::{PgCluster, PgOpts};
    use e2e::postgres::migration::Source;
    use e2e::postgres::server::Sql;

    let src = Source::start(ROWS)?;
    let port = src.port;
    let writer = {
        let sql = Sql::new();
        Writer::start(port, 1_000_000, move |p, n| Source::insert(&sql, p, n))
    };
    let c = PgCluster::start(
        3,
        PgOpts {
            migrate_from: Some(src.migrate_from()),
            ..PgOpts::default()
        },
    )?;
    let p = c.wait_primary(READY_LIMIT);
    for i in (0..3).filter(|&i| i != p) {
        c.wait_streaming(i, p, READY_LIMIT);
    }
    if eventually(Duration::from_secs(30), Duration::from_millis(50), || {
        (writer.count().0 >= 100).then_some(())
    })
    .is_none()
    {
        bail!("the writer did not write to the source");
    }
    writer.target(c.pg_port(p));
    c.put_key(&format!("requests/{}", c.name(p)), cutover_request());
    let (log, agent) = finish(writer, || c.events())?;
    let have = Source::rows(c.sql(), c.pg_port(p)).unwrap_or_default();
    Ok(Run {
        client: log.outage().map_or(f64::NAN, |d| d.as_secs_f64()),
        agent,
        lost: lost(&log.acked, &have),
    })
}

fn mariadb() -> Result<Run> {
    use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
    use e2e::mariadb::migration::Source;

    let src = Source::start(ROWS)?;
    let port = src.port;
    let writer = Writer::start(port, 1_000_000, Source::insert);
    let c = MariaCluster::start(
        3,
        MariaOpts {
            migrate_from: Some(src.migrate_from()),
            ..MariaOpts::default()
        },
    )?;
    let p = c.wait_primary(READY_LIMIT);
    if eventually(READY_LIMIT, Duration::from_millis(100), || {
        (c.replica_of(p) == Some((port, true))).then_some(())
    })
    .is_none()
    {
        bail!("the standby leader does not replicate from the source");
    }
    for i in (0..3).filter(|&i| i != p) {
        c.wait_replicating(i, p, READY_LIMIT);
    }
    if eventually(Duration::from_secs(30), Duration::from_millis(50), || {
        (writer.count().0 >= 100).then_some(())
    })
    .is_none()
    {
        bail!("the writer did not write to the source");
    }
    writer.target(c.port(p));
    c.put_key(&format!("requests/{}", c.name(p)), cutover_request());
    let (log, agent) = finish(writer, || c.events())?;
    let have: Vec<u64> = c
        .sql(p, &["SELECT n FROM mig.t ORDER BY n"])
        .map(|r| r.iter().filter_map(|l| l.first()?.parse().ok()).collect())
        .unwrap_or_default();
    Ok(Run {
        client: log.outage().map_or(f64::NAN, |d| d.as_secs_f64()),
        agent,
        lost: lost(&log.acked, &have),
    })
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
        "### Live-migration cutover (issue 18)\n\nWrite outage of a cutover under a writer (a row \
         every 5 ms), an external source to a new 3-node cluster, {runs} run(s) per engine (took \
         {:.0} s). Client: from the source's last acknowledged row to the cluster's first. Agent: \
         from asking the source to refuse writes to the promotion (the `request_done` figure).\n",
        took.as_secs_f64()
    );
    out += "| engine | runs | client outage, median (s) | every run (s) | agent outage, median (s) | acknowledged rows lost |\n";
    out += "|---|---|---|---|---|---|\n";
    for (kind, got) in rows {
        let client: Vec<Option<f64>> = got.iter().map(|r| r.as_ref().map(|r| r.client)).collect();
        let (cell, every) = runs_cells(&client);
        let mut ok: Vec<f64> = client.iter().flatten().copied().collect();
        let med = if ok.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.2}", median(&mut ok))
        };
        let mut agent: Vec<f64> = got.iter().flatten().filter_map(|r| r.agent).collect();
        let agent = if agent.is_empty() {
            "—".to_owned()
        } else {
            format!("{:.2}", median(&mut agent))
        };
        let lost: usize = got.iter().flatten().map(|r| r.lost).sum();
        let _ = writeln!(
            out,
            "| {} | {cell} | {med} | {every} | {agent} | {lost} |",
            kind.as_str()
        );
    }
    for n in notes {
        let _ = writeln!(out, "\nNote: {n}");
    }
    let _ = writeln!(
        out,
        "\nReproduce: `target/release/bench migrate --runs {runs}` (as root, after `cargo build --release -p autopilot -p coordinator -p bench --bins`)."
    );
    out
}
