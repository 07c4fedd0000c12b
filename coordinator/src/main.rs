//! `coordinator`: the HTTP API over the clusters (issue #6). For now it only states what it will be.

use clap::Parser;

/// The Autopilot coordinator: an HTTP API, CLI and tokens over the clusters the agents keep in etcd.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    anyhow::bail!("the coordinator API is not implemented yet (see issue #6)")
}
