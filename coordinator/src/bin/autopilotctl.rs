//! `autopilotctl`: the command line over the coordinator's API (logic in `coordinator::ctl`).

use std::process::ExitCode;

use clap::Parser;
use coordinator::ctl::{Cli, run};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autopilotctl: {e}");
            ExitCode::from(e.code)
        }
    }
}
