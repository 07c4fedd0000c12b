//! `coordinator`: `serve` runs the HTTP API; `openapi` prints its OpenAPI document. All logic
//! is in the library (`coordinator::serve`).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cluster::error_chain;
use coordinator::config::ServeArgs;
use tracing_subscriber::EnvFilter;

/// The Autopilot coordinator: HTTP API, tokens and audit over the clusters in etcd.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the HTTP API.
    Serve(Box<ServeArgs>),
    /// Print the OpenAPI document (JSON) and exit.
    Openapi,
}

/// sysexits EX_USAGE: bad flags or files.
const EX_USAGE: u8 = 64;
/// sysexits EX_UNAVAILABLE: could not serve.
const EX_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.cmd {
        Cmd::Openapi => {
            let doc = coordinator::api::openapi();
            println!("{}", doc.to_pretty_json().expect("the document serialises"));
            return ExitCode::SUCCESS;
        }
        Cmd::Serve(a) => *a,
    };
    let cfg = match args.validate(&|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("coordinator: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    if cfg.log_json {
        b.json().flatten_event(true).init();
    } else {
        b.init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coordinator")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coordinator: failed to build the runtime: {e}");
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    match rt.block_on(coordinator::serve(cfg, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %error_chain(&e), "coordinator failed");
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only run until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
