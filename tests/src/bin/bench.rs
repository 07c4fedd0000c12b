//! `bench`: measures what BENCHMARKS.md reports, prints a table, and rewrites its section of
//! BENCHMARKS.md. Not a test: figures are reported, never asserted.
//!
//! ```text
//! cargo run --release -p e2e --bin bench -- idle [--seconds 60]
//! ```

use std::process::ExitCode;

use e2e::bench::{idle, report};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<u64>())
        .unwrap_or(Ok(60));
    let Ok(seconds) = seconds else {
        eprintln!("bench: --seconds takes a whole number of seconds, e.g. --seconds 60");
        return ExitCode::from(64);
    };
    match args.first().map(String::as_str) {
        Some("idle") => match idle::run(seconds) {
            Ok(table) => {
                println!("{table}");
                if let Err(e) = report::write_section("idle", &table) {
                    eprintln!("bench: update BENCHMARKS.md: {e:#}");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!(
                "usage: bench idle [--seconds N]\n  idle: agent RSS and CPU supervising `sleep infinity` with a 1 s health handler, beside tini"
            );
            ExitCode::from(64)
        }
    }
}
