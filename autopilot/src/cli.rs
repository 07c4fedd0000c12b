//! The `autopilot` command line: `run`, `check-config` (`cli/check_config.rs`) and
//! `backup` (`cli/backup.rs`).

mod backup;
mod check_config;
mod upgrade_self;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use ractor::Actor;
use tokio::sync::oneshot;
use tracing::error;

use crate::config::{self, Config};
use crate::node::{Supervisor, SupervisorArgs, exit_code};
use crate::pid1::{self, SignalStreams};
use crate::{logging, telemetry};

/// Autopilot: supervises a database (or any program) on this node, runs the operator's
/// lifecycle handlers, and exports its health and metrics.
///
/// Exit codes: the main process's own exit status (its code, or 128+N when killed by
/// signal N); 64 for a bad command line or configuration; 69 when preStart fails or the
/// main process or telemetry listener cannot start; 70 for an internal error.
#[derive(Parser, Debug)]
#[command(name = "autopilot", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the agent: preStart, then the main process with its health checks and jobs,
    /// until SIGTERM/SIGINT (preStop, stop main, postStop) or the main process ends.
    Run {
        /// The agent's YAML configuration (see docs/configuration.md).
        #[arg(short, long, env = "AUTOPILOT_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// Internal: the hand-over of the agent's previous image when it re-executed in
        /// place (`upgrade-self`).
        #[arg(long, value_name = "FILE", hide = true)]
        handover: Option<PathBuf>,
    },
    /// Upgrade the running agent in place, without a failover: it re-executes from the new
    /// binary (keeping its PID and children), which adopts the running database and keeps
    /// the node's lease, so a primary stays the primary. The new binary must accept the
    /// configuration first (`check-config`); the old one is kept as
    /// `<node.state_dir>/autopilot.previous`. Waits until the new image runs with the role
    /// back. Exit 0 when it does; 64 when the new binary refuses the configuration; 69 when
    /// the agent cannot be reached or refuses now (it says why: not in a steady role, …);
    /// 70 when the new image did not come back in time.
    UpgradeSelf {
        /// The running agent's YAML configuration (its `node.state_dir` locates the agent).
        #[arg(short, long, env = "AUTOPILOT_CONFIG", value_name = "FILE")]
        config: PathBuf,
        /// The new binary (default: the one running this command, i.e. the `autopilot` just
        /// installed).
        #[arg(long, value_name = "FILE")]
        binary: Option<PathBuf>,
        /// How long to wait for the new image, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        timeout: u64,
    },
    /// Validate a configuration file: print a one-line summary (`FILE: OK (engine, node,
    /// cluster)`) and exit 0, or print every error found, each with its line, column and
    /// what was expected, and exit 64. Every validation error is found in one pass; of YAML
    /// and type errors (unknown fields, wrong types) as many as the parser can get past.
    CheckConfig {
        /// The YAML file to check.
        #[arg(short, long, env = "AUTOPILOT_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The YAML file to check, as an argument (instead of --config).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// `text` (one line per error, on stderr) or `json` (one document on stdout:
        /// `{"file", "ok", "errors": [{"line", "column", "field", "message"}]}`).
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// When the file is valid, also print the effective configuration (defaults filled
        /// in, secrets shown only by where they come from).
        #[arg(long, conflicts_with = "output")]
        effective: bool,
    },
    /// Backups: what this node's catalog records, or what a repository holds.
    #[command(subcommand)]
    Backup(BackupCommand),
}

/// `autopilot backup …`
#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Every backup of the node's cluster, newest first: from the local catalog, or with
    /// `--repo NAME` from that repository's manifests.
    List {
        #[command(flatten)]
        on: BackupSource,
    },
    /// One backup: its catalog record, or with `--repo NAME` its manifest.
    Show {
        /// The backup id (`20261203T030000Z-1a2b3c4d`).
        id: String,
        #[command(flatten)]
        on: BackupSource,
    },
    /// Re-read every stored object of a backup in a repository and check its size and
    /// SHA-256 against the manifest; with `--identity`, also decrypt, decompress and check
    /// every stream end to end. Exit 0 when it is intact, 65 when it is not.
    Verify {
        /// The backup id.
        id: String,
        #[command(flatten)]
        on: BackupSource,
        /// A file of age identities (`AGE-SECRET-KEY-1…`, `#` comments allowed).
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Download one stream of a backup, decrypted and decompressed and checked, into a new
    /// file (never over an existing one): what the database's own tool reads back
    /// (`mbstream -x`, `tar -x`, `pg_restore`).
    Get {
        /// The backup id.
        id: String,
        #[command(flatten)]
        on: BackupSource,
        /// A file of age identities (`AGE-SECRET-KEY-1…`).
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// The stream (default: the backup's only or first stream).
        #[arg(long)]
        stream: Option<String>,
        /// The file to create.
        #[arg(long = "to", value_name = "FILE")]
        to: PathBuf,
    },
    /// Restore a backup (with the incrementals it builds on, full first) from a repository
    /// into a new data directory, through the engine's own tools: a directory the database
    /// starts on. Never writes into a non-empty directory; a failed restore leaves the
    /// directory as it was.
    ///
    /// With `--time`, `--lsn`, `--gtid` or `--latest` (with `backup.archive`): a
    /// point-in-time recovery from the newest backup before the target (or the one named)
    /// and the archive (PostgreSQL WAL, MariaDB binary logs), replayed up to the target on a
    /// scratch server.
    Restore {
        /// The backup id (with a target: the base backup, default the newest before it).
        #[arg(required_unless_present_any = ["time", "lsn", "gtid", "latest"])]
        id: Option<String>,
        #[command(flatten)]
        on: BackupSource,
        /// A file of age identities (`AGE-SECRET-KEY-1…`).
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// The data directory to create (must not exist, or be empty).
        #[arg(long, value_name = "DIR")]
        target_dir: PathBuf,
        /// Recover to just before this time (RFC 3339, e.g. 2026-12-04T03:20:00.5Z; MariaDB:
        /// to the second, events stamped in that second or later are not replayed).
        #[arg(long, value_name = "RFC3339", conflicts_with_all = ["lsn", "gtid", "latest"])]
        time: Option<String>,
        /// PostgreSQL: recover to this WAL position (e.g. 0/5000100).
        #[arg(long, value_name = "LSN", conflicts_with_all = ["time", "gtid", "latest"])]
        lsn: Option<String>,
        /// MariaDB: recover up to and including this transaction (e.g. 0-1-2143).
        #[arg(long, value_name = "GTID", conflicts_with_all = ["time", "lsn", "latest"])]
        gtid: Option<String>,
        /// Recover to the end of the archive.
        #[arg(long, conflicts_with_all = ["time", "lsn", "gtid"])]
        latest: bool,
    },
    /// Print the exact shell commands that restore a backup by hand, without Autopilot.
    Instructions {
        /// The backup id.
        id: String,
        #[command(flatten)]
        on: BackupSource,
    },
}

/// Where `backup` commands read.
#[derive(clap::Args, Debug)]
struct BackupSource {
    /// The agent's YAML configuration (its `backup` section and cluster).
    #[arg(short, long, env = "AUTOPILOT_CONFIG", value_name = "FILE")]
    config: PathBuf,
    /// Read this repository (a name from `backup.repositories`) instead of the catalog.
    #[arg(long, value_name = "NAME")]
    repo: Option<String>,
    /// `text` (a table) or `json`.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// How `check-config` prints what it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// For people.
    Text,
    /// For programs.
    Json,
}

/// Parse the command line, run the command, and return the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit_code::USAGE } else { 0 };
        }
    };
    match cli.command {
        Command::CheckConfig {
            config,
            file,
            output,
            effective,
        } => match file.or(config) {
            Some(file) => check(&file, output, effective),
            None => {
                eprintln!(
                    "autopilot: check-config needs a file: --config FILE, AUTOPILOT_CONFIG or an argument"
                );
                exit_code::USAGE
            }
        },
        Command::Backup(BackupCommand::List { on }) => backup::run(
            &on.config,
            on.repo.as_deref(),
            backup::What::List,
            on.output,
        ),
        Command::Backup(BackupCommand::Show { id, on }) => backup::run(
            &on.config,
            on.repo.as_deref(),
            backup::What::Show(&id),
            on.output,
        ),
        Command::Backup(BackupCommand::Verify { id, on, identity }) => backup::verify(
            &on.config,
            on.repo.as_deref(),
            &id,
            identity.as_deref(),
            on.output,
        ),
        Command::Backup(BackupCommand::Get {
            id,
            on,
            identity,
            stream,
            to,
        }) => backup::get(
            &on.config,
            on.repo.as_deref(),
            &id,
            &identity,
            stream.as_deref(),
            &to,
        ),
        Command::Backup(BackupCommand::Restore {
            id,
            on,
            identity,
            target_dir,
            time,
            lsn,
            gtid,
            latest,
        }) => {
            use engines::backups::RecoveryTarget;
            let target = match (time, lsn, gtid, latest) {
                (Some(t), ..) => Some(RecoveryTarget::Time(t)),
                (_, Some(l), ..) => Some(RecoveryTarget::Lsn(l)),
                (_, _, Some(g), _) => Some(RecoveryTarget::Gtid(g)),
                (.., true) => Some(RecoveryTarget::Latest),
                _ => None,
            };
            match target {
                Some(target) => backup::restore_to(
                    &on.config,
                    on.repo.as_deref(),
                    id.as_deref(),
                    &identity,
                    &target_dir,
                    target,
                    on.output,
                ),
                None => backup::restore(
                    &on.config,
                    on.repo.as_deref(),
                    id.as_deref().unwrap_or_default(),
                    &identity,
                    &target_dir,
                    on.output,
                ),
            }
        }
        Command::Backup(BackupCommand::Instructions { id, on }) => {
            backup::instructions(&on.config, on.repo.as_deref(), &id, on.output)
        }
        Command::UpgradeSelf {
            config,
            binary,
            timeout,
        } => upgrade_self::run(&config, binary, std::time::Duration::from_secs(timeout)),
        Command::Run { config, handover } => {
            // Claimed first, before anything opens a descriptor of its own.
            let inherited = match handover.as_deref().map(crate::node::handover::take) {
                None => None,
                Some(Ok(i)) => Some(i),
                Some(Err(why)) => {
                    // The database keeps running unwatched; nothing adopts it. Say so loudly:
                    // the service manager restarts the agent, which then starts its own.
                    eprintln!("autopilot: the hand-over cannot be used: {why}");
                    return exit_code::UNAVAILABLE;
                }
            };
            match load(&config) {
                Ok(config) => run(config, inherited),
                Err(code) => match inherited {
                    // This binary refuses the configuration: the previous one takes over again.
                    Some(inherited) => {
                        // The hand-over file lives in the state directory.
                        let state_dir = handover
                            .as_deref()
                            .and_then(Path::parent)
                            .unwrap_or(Path::new("."));
                        let why = crate::node::handover::fall_back(inherited, state_dir);
                        eprintln!("autopilot: going back to the previous binary failed: {why}");
                        code
                    }
                    None => code,
                },
            }
        }
    }
}

/// `check-config`: print what checking `file` found; 0 when valid, 64 when not.
fn check(file: &Path, output: Output, effective: bool) -> i32 {
    let report = check_config::check(file);
    match (output, &report.result) {
        (Output::Json, _) => println!("{}", report.json()),
        // The YAML alone on stdout, so it can be saved as a file.
        (Output::Text, Ok(summary)) if effective => {
            eprint!("{}", report.text());
            print!("{}", summary.config.to_effective_yaml());
        }
        (Output::Text, Ok(_)) => print!("{}", report.text()),
        (Output::Text, Err(_)) => eprint!("{}", report.text()),
    }
    if report.ok() { 0 } else { exit_code::USAGE }
}

fn load(path: &Path) -> Result<Config, i32> {
    config::load(path).map_err(|e| {
        match e {
            config::ConfigError::Invalid { .. } => {
                eprintln!("autopilot: invalid configuration:\n{e}")
            }
            _ => eprintln!("autopilot: {}", handlers::error_chain(&e)),
        }
        exit_code::USAGE
    })
}

fn run(config: Config, inherited: Option<crate::node::handover::Inherited>) -> i32 {
    logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("autopilot-rt")
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run_agent(config, inherited)),
        Err(e) => {
            error!(cause = %e, "failed to start the async runtime");
            exit_code::SOFTWARE
        }
    }
}

/// Run the agent until it decides to exit; returns the exit code.
pub async fn run_agent(config: Config, inherited: Option<crate::node::handover::Inherited>) -> i32 {
    let signals = match SignalStreams::install() {
        Ok(s) => s,
        Err(e) => {
            error!(cause = %e, "failed to install signal handlers");
            return exit_code::SOFTWARE;
        }
    };
    pid1::adopt_orphans();
    listen::raise_open_file_limit();
    let metrics = match telemetry::install_recorder() {
        Ok(h) => h,
        Err(e) => {
            error!(cause = %e, "failed to install the metrics recorder");
            return exit_code::SOFTWARE;
        }
    };
    logging::export_metrics(&config.log);
    let (control, main_requests) = engines::MainControl::channel();
    let engine = Arc::new(crate::node::build_engine(&config, control));
    let (exit_tx, exit_rx) = oneshot::channel();
    let args = SupervisorArgs {
        config,
        engine,
        metrics,
        exit: exit_tx,
        main_requests,
        inherited,
    };
    let (supervisor, join) = match Actor::spawn(None, Supervisor, args).await {
        Ok(s) => s,
        Err(e) => {
            error!(cause = %e, "failed to start the agent");
            return exit_code::UNAVAILABLE;
        }
    };
    signals.forward_to(supervisor);
    let _ = join.await;
    exit_rx.await.unwrap_or(exit_code::SOFTWARE)
}
