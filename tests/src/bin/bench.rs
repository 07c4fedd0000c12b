//! `bench`: measures what BENCHMARKS.md reports, prints a table, and rewrites its section of
//! BENCHMARKS.md. Not a test: figures are reported, never asserted.
//!
//! ```text
//! cargo build --release -p autopilot -p e2e --bins
//! target/release/bench idle [--seconds 60]
//! target/release/bench failover [--runs 5] [--ttls 10,5]
//! target/release/bench etcd-load [--seconds 60]
//! target/release/bench hostile [--seconds 10]
//! target/release/bench mariadb-failover [--runs 5] [--ttls 10,5] [--durability sync,async]
//! target/release/bench postgres-failover [--runs 5] [--ttls 10,5] [--durability sync,async] [--systems autopilot,patroni]
//! target/release/bench recovery [--runs 5] [--ttls 5] [--durability sync,async]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use e2e::bench::{etcd_load, failover, hostile, idle, mariadb, postgres, recovery, report};

const USAGE: &str =
    "usage: bench idle [--seconds N] | failover [--runs N] [--ttls 10,5] | etcd-load [--seconds N]
       | mariadb-failover [--runs N] [--ttls 10,5] [--durability sync,async]
       | postgres-failover [--runs N] [--ttls 10,5] [--durability sync,async] [--systems autopilot,patroni]
       | recovery [--runs N] [--ttls 5] [--durability sync,async] | hostile [--seconds N]
  idle:      agent RSS and CPU supervising `sleep infinity` with a 1 s health handler, beside tini
  failover:  fault -> first write on the new primary, 3 Redis nodes: crash, node loss, graceful stop
  etcd-load: etcd gRPC requests per second of an idle 3-node cluster (lease TTL 10 s)
  mariadb-failover: failover time and rows lost, 3 MariaDB nodes, 5 faults incl. switchover
  postgres-failover: fault -> first write on a new primary and rows lost, 3 PostgreSQL nodes,
    Autopilot and Patroni side by side (Patroni from /opt/patroni: run scripts/install-deps)
  recovery:  crash, hung database, frozen agent, node loss, etcd outage, switchover, replica
    restart on PostgreSQL and MariaDB: write outage, rows lost, two writable nodes, time back
    to full redundancy and rejoin time (first TTL only)
  hostile:   the request rate the agent's and the coordinator's listeners answer under wrk from one
    address, with /health(z) latency seen from another address and the primary watched";

/// The value after `--name`, parsed; `default` when the flag is absent.
fn flag<T>(
    args: &[String],
    name: &str,
    default: T,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| parse(v))
            .ok_or_else(|| format!("bad or missing value for {name}")),
    }
}

/// `base`, with `-ttl<N>` per TTL when the list is not the default 10,5 (so TTLs can be run
/// separately without overwriting each other's section).
fn section_name(base: &str, ttls: &[Duration]) -> String {
    let mut name = base.to_owned();
    if ttls != [Duration::from_secs(10), Duration::from_secs(5)] {
        for t in ttls {
            name.push_str(&format!("-ttl{}", t.as_secs()));
        }
    }
    name
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| -> Result<_, String> {
        let seconds = flag(&args, "--seconds", 60u64, |s| {
            s.parse().ok().filter(|&n| n > 0)
        })?;
        let runs = flag(&args, "--runs", 5usize, |s| {
            s.parse().ok().filter(|&n| n > 0)
        })?;
        let ttls = flag(
            &args,
            "--ttls",
            vec![Duration::from_secs(10), Duration::from_secs(5)],
            |s| {
                s.split(',')
                    .map(|t| t.trim().parse::<u64>().ok().filter(|&n| n > 0))
                    .map(|t| t.map(Duration::from_secs))
                    .collect()
            },
        )?;
        let durabilities = flag(&args, "--durability", vec!["sync", "async"], |s| {
            s.split(',')
                .map(|d| match d.trim() {
                    "sync" => Some("sync"),
                    "async" => Some("async"),
                    _ => None,
                })
                .collect()
        })?;
        let systems = flag(
            &args,
            "--systems",
            vec![postgres::System::Autopilot, postgres::System::Patroni],
            |s| s.split(',').map(postgres::System::parse).collect(),
        )?;
        Ok((seconds, runs, ttls, durabilities, systems))
    })();
    let (seconds, runs, ttls, durabilities, systems) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bench: {e}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let (section, result) = match args.first().map(String::as_str) {
        Some("idle") => ("idle".to_owned(), idle::run(seconds)),
        Some("failover") => ("failover".to_owned(), failover::run(runs, &ttls)),
        Some("etcd-load") => ("etcd-load".to_owned(), etcd_load::run(seconds)),
        Some("hostile") => ("hostile".to_owned(), hostile::run(seconds)),
        // One section per TTL other than the default 10,5 list, so TTLs can be run separately.
        Some("mariadb-failover") => (
            section_name("mariadb-failover", &ttls),
            mariadb::run(runs, &ttls, &durabilities),
        ),
        Some("postgres-failover") => (
            // A durability run on its own gets its own section too.
            match durabilities.as_slice() {
                [one] => format!("{}-{one}", section_name("postgres-failover", &ttls)),
                _ => section_name("postgres-failover", &ttls),
            },
            postgres::run(runs, &ttls, &durabilities, &systems),
        ),
        Some("recovery") => (
            format!("recovery-ttl{}", ttls[0].as_secs()),
            recovery::run(runs, ttls[0], &durabilities),
        ),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    match result {
        Ok(table) => {
            println!("{table}");
            if let Err(e) = report::write_section(&section, &table) {
                eprintln!("bench: update BENCHMARKS.md: {e:#}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
