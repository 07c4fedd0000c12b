//! The `bench` command line: one subcommand per benchmark, with the flags and defaults the
//! commands in BENCHMARKS.md use. Each run prints its table and rewrites its own section of
//! BENCHMARKS.md. Not a test: figures are reported, never asserted.
//!
//! ```text
//! cargo build --release -p autopilot -p coordinator -p bench --bins
//! target/release/bench idle [--seconds 60]
//! target/release/bench failover [--runs 5] [--ttls 10,5]
//! target/release/bench etcd-load [--seconds 60]
//! target/release/bench hostile [--seconds 60]
//! target/release/bench mariadb-failover [--runs 5] [--ttls 10,5] [--durability sync,async]
//! target/release/bench postgres-failover [--runs 5] [--ttls 10,5] [--durability sync,async] [--systems autopilot,patroni]
//! target/release/bench recovery [--runs 5] [--ttls 10,5] [--durability sync,async]   # measures the first TTL
//! target/release/bench backup [--size-mb 2048] [--runs 3] [--engines mariadb,postgres]
//! target/release/bench migrate [--runs 5] [--engines mariadb,postgres]
//! target/release/bench upgrade [--runs 5] [--engines mariadb,postgres]
//! target/release/bench pitr [--seconds 60] [--runs 3] [--base-mb 2048] [--changes-mb 1024] [--engines mariadb,postgres] [--parts rpo,failover,restore,seed] [--quick]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::backup::servers::Kind;
use crate::pitr::Part;
use crate::postgres::System;
use crate::{
    backup, etcd_load, failover, hostile, idle, mariadb, migrate, pitr, postgres, recovery, report,
    upgrade,
};

/// sysexits EX_USAGE: bad flags.
const EX_USAGE: u8 = 64;

/// Measures what BENCHMARKS.md reports, prints a table, and rewrites its section of
/// BENCHMARKS.md. Figures are reported, never asserted.
#[derive(Parser, Debug)]
#[command(name = "bench")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Agent RSS and CPU supervising `sleep infinity` with a 1 s health handler, beside tini.
    Idle(Seconds),
    /// Fault -> first write on the new primary, 3 Redis nodes: crash, node loss, graceful stop.
    Failover(Runs),
    /// etcd gRPC requests per second of an idle 3-node cluster (lease TTL 10 s).
    EtcdLoad(Seconds),
    /// The request rate the agent's and the coordinator's listeners answer under wrk from one
    /// address, with /health(z) latency seen from another address and the primary watched.
    Hostile(Seconds),
    /// Failover time and rows lost, 3 MariaDB nodes, 5 faults incl. switchover.
    ///
    /// One section per TTL list other than the default 10,5 (`mariadb-failover-ttl5`, …).
    MariadbFailover {
        #[command(flatten)]
        runs: Runs,
        #[command(flatten)]
        durability: Durabilities,
    },
    /// Fault -> first write on a new primary and rows lost, 3 PostgreSQL nodes, Autopilot and
    /// Patroni side by side (Patroni from /opt/patroni: run scripts/install-deps).
    ///
    /// One section per TTL list other than the default 10,5, and per durability when given
    /// one (`postgres-failover-ttl10-async`).
    PostgresFailover {
        #[command(flatten)]
        runs: Runs,
        #[command(flatten)]
        durability: Durabilities,
        /// Systems supervising PostgreSQL, comma-separated: autopilot, patroni.
        #[arg(long, value_delimiter = ',', default_value = "autopilot,patroni", value_parser = system)]
        systems: Vec<System>,
    },
    /// Crash, hung database, frozen agent, node loss, etcd outage, switchover, replica restart
    /// on PostgreSQL and MariaDB: write outage, rows lost, two writable nodes, time back to
    /// full redundancy and rejoin time.
    ///
    /// Only the first TTL of --ttls is measured; its section is `recovery-ttl<N>`.
    Recovery {
        #[command(flatten)]
        runs: Runs,
        #[command(flatten)]
        durability: Durabilities,
    },
    /// Backup throughput (SHA-256, zstd, age) to a local and an S3 repository as a ratio to
    /// the raw tool, restore time and the pipeline's peak memory, on a generated data set;
    /// PostgreSQL beside pgBackRest. Run as root.
    Backup {
        /// MiB of rows generated per engine.
        #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
        size_mb: u64,
        /// Runs of every subject.
        #[arg(long, default_value_t = 3, value_parser = positive)]
        runs: usize,
        /// Engines, comma-separated: mariadb, postgres.
        #[arg(long, value_delimiter = ',', default_value = "mariadb,postgres", value_parser = engine)]
        engines: Vec<Kind>,
    },
    /// Continuous archiving and point-in-time recovery (issue 18) on MariaDB and PostgreSQL
    /// under the agents, archiving to S3 (SeaweedFS) on loopback: RPO under a steady writer
    /// (p50, p99), time until the archive holds a change written after a failover, restore
    /// time of a base backup plus archived changes, and a new replica seeded from the
    /// repository against one cloned from the primary (time, bytes the primary sent). Run as
    /// root.
    ///
    /// With `--quick` its section is `pitr-quick`.
    Pitr(Pitr),
    /// The write outage of a live migration's cutover (issue 18): an external PostgreSQL
    /// primary or MariaDB server under a writer, a new 3-node cluster following it, cut over;
    /// as the writer saw it and as the agent reports it, and acknowledged rows lost. Run as
    /// root.
    Migrate {
        /// Cutovers per engine (each on a new source and cluster).
        #[arg(long, default_value_t = 5, value_parser = positive)]
        runs: usize,
        /// Engines, comma-separated: mariadb, postgres.
        #[arg(long, value_delimiter = ',', default_value = "mariadb,postgres", value_parser = engine)]
        engines: Vec<Kind>,
    },
    /// A rolling upgrade of a 3-node cluster under a writer (issue 19): wall time, write
    /// outage (the switchover's and outside it), acknowledged rows lost. Run as root.
    Upgrade {
        /// Rollouts per engine (each on a new cluster).
        #[arg(long, default_value_t = 5, value_parser = positive)]
        runs: usize,
        /// Engines, comma-separated: mariadb, postgres.
        #[arg(long, value_delimiter = ',', default_value = "mariadb,postgres", value_parser = engine)]
        engines: Vec<Kind>,
    },
    /// Internal to `backup`: one store or restore in a process of its own.
    #[command(hide = true)]
    BackupWorker {
        /// The job (JSON).
        job: std::path::PathBuf,
        /// Where the outcome goes (JSON).
        result: std::path::PathBuf,
    },
}

/// How long to measure.
#[derive(Args, Debug)]
struct Seconds {
    /// Seconds to measure.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
}

/// How often to fail over, and at which TTLs.
#[derive(Args, Debug)]
struct Runs {
    /// Runs per measured cell.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    runs: usize,
    /// Lease TTLs in seconds, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,5", value_parser = ttl)]
    ttls: Vec<Duration>,
}

/// Which replication durabilities to measure.
#[derive(Args, Debug)]
struct Durabilities {
    /// Durabilities, comma-separated: sync, async.
    #[arg(long, value_delimiter = ',', default_value = "sync,async", value_parser = durability)]
    durability: Vec<&'static str>,
}

/// What `pitr` measures; sizes not given take the defaults, or with `--quick` the smoke
/// test's.
#[derive(Args, Debug)]
struct Pitr {
    /// Seconds the RPO is sampled under the steady writer [default: 60; --quick: 10].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Failovers per engine [default: 3; --quick: 1].
    #[arg(long, value_parser = positive)]
    runs: Option<usize>,
    /// MiB of rows in the restore's base backup [default: 2048; --quick: 64].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    base_mb: Option<u64>,
    /// MiB of rows written after it, archived and replayed by the restore [default: 1024;
    /// --quick: 32].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    changes_mb: Option<u64>,
    /// Engines, comma-separated: mariadb, postgres.
    #[arg(long, value_delimiter = ',', default_value = "mariadb,postgres", value_parser = engine)]
    engines: Vec<Kind>,
    /// Parts, comma-separated: rpo, failover (one cluster), restore, seed (another).
    #[arg(long, value_delimiter = ',', default_value = "rpo,failover,restore,seed", value_parser = part)]
    parts: Vec<Part>,
    /// A smoke test: small sizes for those not given (10 s, 1 failover, 64 + 32 MiB).
    #[arg(long)]
    quick: bool,
}

impl Pitr {
    fn options(&self) -> pitr::Options {
        let (seconds, runs, base_mb, changes_mb) = if self.quick {
            pitr::Options::QUICK
        } else {
            pitr::Options::DEFAULT
        };
        pitr::Options {
            seconds: self.seconds.unwrap_or(seconds),
            runs: self.runs.unwrap_or(runs),
            base_mb: self.base_mb.unwrap_or(base_mb),
            changes_mb: self.changes_mb.unwrap_or(changes_mb),
            engines: self.engines.clone(),
            parts: self.parts.clone(),
        }
    }
}

/// A count above zero.
fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a whole number above 0".to_owned()),
    }
}

/// A TTL: whole seconds above zero.
fn ttl(s: &str) -> Result<Duration, String> {
    match s.trim().parse() {
        Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
        _ => Err("expected whole seconds above 0".to_owned()),
    }
}

/// `sync` or `async`.
fn durability(s: &str) -> Result<&'static str, String> {
    match s.trim() {
        "sync" => Ok("sync"),
        "async" => Ok("async"),
        _ => Err("expected sync or async".to_owned()),
    }
}

/// `mariadb` or `postgres`.
fn engine(s: &str) -> Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| "expected mariadb or postgres".to_owned())
}

/// `rpo`, `failover`, `restore` or `seed`.
fn part(s: &str) -> Result<Part, String> {
    Part::parse(s).ok_or_else(|| "expected rpo, failover, restore or seed".to_owned())
}

/// `autopilot` or `patroni`.
fn system(s: &str) -> Result<System, String> {
    System::parse(s).ok_or_else(|| "expected autopilot or patroni".to_owned())
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

impl Cmd {
    /// The BENCHMARKS.md section this run rewrites.
    fn section(&self) -> String {
        match self {
            Cmd::Idle(_) => "idle".to_owned(),
            Cmd::Failover(_) => "failover".to_owned(),
            Cmd::EtcdLoad(_) => "etcd-load".to_owned(),
            Cmd::Hostile(_) => "hostile".to_owned(),
            Cmd::MariadbFailover { runs, .. } => section_name("mariadb-failover", &runs.ttls),
            // A durability run on its own gets its own section too.
            Cmd::PostgresFailover {
                runs, durability, ..
            } => match durability.durability.as_slice() {
                [one] => format!("{}-{one}", section_name("postgres-failover", &runs.ttls)),
                _ => section_name("postgres-failover", &runs.ttls),
            },
            Cmd::Recovery { runs, .. } => format!("recovery-ttl{}", runs.ttls[0].as_secs()),
            Cmd::Backup { .. } | Cmd::BackupWorker { .. } => "backup".to_owned(),
            Cmd::Pitr(p) if p.quick => "pitr-quick".to_owned(),
            Cmd::Pitr(_) => "pitr".to_owned(),
            Cmd::Migrate { .. } => "migrate".to_owned(),
            Cmd::Upgrade { .. } => "upgrade".to_owned(),
        }
    }

    /// Measures; the table.
    fn run(&self) -> anyhow::Result<String> {
        match self {
            Cmd::Idle(s) => idle::run(s.seconds),
            Cmd::Failover(r) => failover::run(r.runs, &r.ttls),
            Cmd::EtcdLoad(s) => etcd_load::run(s.seconds),
            Cmd::Hostile(s) => hostile::run(s.seconds),
            Cmd::MariadbFailover { runs, durability } => {
                mariadb::run(runs.runs, &runs.ttls, &durability.durability)
            }
            Cmd::PostgresFailover {
                runs,
                durability,
                systems,
            } => postgres::run(runs.runs, &runs.ttls, &durability.durability, systems),
            Cmd::Recovery { runs, durability } => {
                recovery::run(runs.runs, runs.ttls[0], &durability.durability)
            }
            Cmd::Backup {
                size_mb,
                runs,
                engines,
            } => backup::run(*size_mb, *runs, engines),
            Cmd::Pitr(p) => pitr::run(&p.options()),
            Cmd::Migrate { runs, engines } => migrate::run(*runs, engines),
            Cmd::Upgrade { runs, engines } => upgrade::run(*runs, engines),
            Cmd::BackupWorker { .. } => Err(anyhow::anyhow!("backup-worker is run by main")),
        }
    }
}

/// Parses the command line, measures, prints the table and writes it to BENCHMARKS.md; the
/// exit code (64 for bad flags).
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Cmd::BackupWorker { job, result } = &cli.cmd {
        return match backup::worker::main(job, result) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench backup-worker: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let section = cli.cmd.section();
    match cli.cmd.run() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.cmd)
    }

    fn secs(list: &[u64]) -> Vec<Duration> {
        list.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        match parse(&["idle"]).expect("parse") {
            Cmd::Idle(s) => assert_eq!(s.seconds, 60),
            other => panic!("{other:?}"),
        }
        match parse(&["postgres-failover"]).expect("parse") {
            Cmd::PostgresFailover {
                runs,
                durability,
                systems,
            } => {
                assert_eq!(runs.runs, 5);
                assert_eq!(runs.ttls, secs(&[10, 5]));
                assert_eq!(durability.durability, ["sync", "async"]);
                assert_eq!(systems, [System::Autopilot, System::Patroni]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_are_comma_separated() {
        match parse(&[
            "recovery",
            "--runs",
            "3",
            "--ttls",
            "5, 3",
            "--durability",
            "sync",
        ])
        .expect("parse")
        {
            Cmd::Recovery { runs, durability } => {
                assert_eq!((runs.runs, runs.ttls), (3, secs(&[5, 3])));
                assert_eq!(durability.durability, ["sync"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sections_are_named_as_before() {
        let section = |args: &[&str]| parse(args).expect("parse").section();
        assert_eq!(section(&["hostile", "--seconds", "10"]), "hostile");
        assert_eq!(section(&["mariadb-failover"]), "mariadb-failover");
        assert_eq!(
            section(&["mariadb-failover", "--ttls", "5"]),
            "mariadb-failover-ttl5"
        );
        assert_eq!(
            section(&["postgres-failover", "--ttls", "10", "--durability", "async"]),
            "postgres-failover-ttl10-async"
        );
        assert_eq!(
            section(&["postgres-failover", "--durability", "sync"]),
            "postgres-failover-sync"
        );
        assert_eq!(section(&["recovery", "--ttls", "5"]), "recovery-ttl5");
        assert_eq!(section(&["recovery"]), "recovery-ttl10");
    }

    #[test]
    fn pitr_takes_the_defaults_or_the_quick_sizes_for_what_is_not_given() {
        let options = |args: &[&str]| match parse(args).expect("parse") {
            Cmd::Pitr(p) => p.options(),
            other => panic!("{other:?}"),
        };
        let o = options(&["pitr"]);
        assert_eq!(
            (o.seconds, o.runs, o.base_mb, o.changes_mb),
            pitr::Options::DEFAULT
        );
        assert_eq!(o.engines, [Kind::Mariadb, Kind::Postgres]);
        assert_eq!(o.parts, Part::ALL);
        let o = options(&["pitr", "--quick"]);
        assert_eq!(
            (o.seconds, o.runs, o.base_mb, o.changes_mb),
            pitr::Options::QUICK
        );
        let o = options(&[
            "pitr",
            "--quick",
            "--base-mb",
            "128",
            "--parts",
            "restore, seed",
        ]);
        assert_eq!((o.base_mb, o.changes_mb), (128, 32));
        assert_eq!(o.parts, [Part::Restore, Part::Seed]);
        let section = |args: &[&str]| parse(args).expect("parse").section();
        assert_eq!(section(&["pitr"]), "pitr");
        assert_eq!(section(&["pitr", "--quick"]), "pitr-quick");
    }

    #[test]
    fn bad_values_and_unknown_commands_are_refused() {
        for args in [
            &["idle", "--seconds", "0"][..],
            &["failover", "--runs", "0"],
            &["failover", "--ttls", "10,0"],
            &["mariadb-failover", "--durability", "semi"],
            &["postgres-failover", "--systems", "stolon"],
            &["pitr", "--parts", "rpo,backup"],
            &["pitr", "--base-mb", "0"],
            &["idle", "--runs", "3"],
            &["nap"],
            &[],
        ] {
            assert!(parse(args).is_err(), "{args:?} parsed");
        }
    }
}
