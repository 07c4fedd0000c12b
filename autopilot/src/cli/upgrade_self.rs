//! `autopilot upgrade-self`: have the agent running with this configuration re-execute in
//! place from a new binary (see `node/handover.rs`), and wait until the new image runs.
//!
//! Before asking, the new binary must accept this configuration (`check-config`): an image
//! that refuses it would have to go back to the previous binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config;
use crate::node::control::{self, AgentStatus, Request};
use crate::node::exit_code;
use crate::node::handover;

/// How often the agent is asked whether the new image runs.
const POLL: Duration = Duration::from_millis(100);

/// Run the command; the exit code.
pub fn run(config_path: &Path, binary: Option<PathBuf>, timeout: Duration) -> i32 {
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("autopilot: {}", handlers::error_chain(&e));
            return exit_code::USAGE;
        }
    };
    let binary = match binary.map_or_else(std::env::current_exe, Ok) {
        Ok(b) if b.is_absolute() => b,
        Ok(b) => match std::path::absolute(&b) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("autopilot: {}: {e}", b.display());
                return exit_code::USAGE;
            }
        },
        Err(e) => {
            eprintln!("autopilot: cannot tell which binary runs this command ({e}); pass --binary");
            return exit_code::USAGE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autopilot: start the async runtime: {e}");
            return exit_code::SOFTWARE;
        }
    };
    runtime.block_on(async {
        match upgrade(config_path, &config.node.state_dir, &binary, timeout).await {
            Ok(message) => {
                println!("{message}");
                0
            }
            Err((code, message)) => {
                eprintln!("autopilot: {message}");
                code
            }
        }
    })
}

async fn upgrade(
    config_path: &Path,
    state_dir: &Path,
    binary: &Path,
    timeout: Duration,
) -> Result<String, (i32, String)> {
    accepts_configuration(binary, config_path).await?;
    let unavailable = |m: String| (exit_code::UNAVAILABLE, m);
    let before = status(state_dir).await.map_err(unavailable)?;
    let request = Request::UpgradeSelf {
        binary: binary.to_owned(),
    };
    let answer = control::ask(state_dir, &request)
        .await
        .map_err(unavailable)?;
    if !answer.ok {
        return Err(unavailable(format!(
            "the agent refused: {}",
            answer.message
        )));
    }
    eprintln!("{}", answer.message);
    let deadline = Instant::now() + timeout;
    let mut new_image: Option<AgentStatus> = None;
    loop {
        tokio::time::sleep(POLL).await;
        // The socket is gone for the moment of the `execve`: ask again.
        if let Ok(now) = status(state_dir).await {
            if now.started_at_ms != before.started_at_ms && now.fell_back {
                return Err((
                    exit_code::SOFTWARE,
                    format!(
                        "{} could not start; the previous binary ({}) took over again and runs on (see the agent's log)",
                        binary.display(),
                        now.binary
                    ),
                ));
            }
            if now.started_at_ms != before.started_at_ms && now.upgraded_from.is_some() {
                // Done once the new image has the role back (a second or so: it resumes it
                // after its first health check).
                if now.role == before.role {
                    return Ok(done(&before, &now));
                }
                new_image = Some(now);
                if Instant::now() >= deadline {
                    break;
                }
                continue;
            }
            if now.started_at_ms == before.started_at_ms
                && let Some(why) = now.upgrade_failed
            {
                return Err((
                    exit_code::SOFTWARE,
                    format!("the agent could not re-execute and goes on unchanged: {why}"),
                ));
            }
        }
        if Instant::now() >= deadline {
            if new_image.is_some() {
                break;
            }
            return Err((
                exit_code::SOFTWARE,
                format!(
                    "the new image did not answer within {timeout:?}: see the agent's log (a new binary that cannot start goes back to the previous one)"
                ),
            ));
        }
    }
    let now = new_image.unwrap_or_default();
    Err((
        exit_code::SOFTWARE,
        format!(
            "{}, but its role is {} (was {}) after {timeout:?}",
            done(&before, &now),
            now.role.as_deref().unwrap_or("-"),
            before.role.as_deref().unwrap_or("-")
        ),
    ))
}

/// The new binary's `check-config` on this configuration must pass.
async fn accepts_configuration(binary: &Path, config_path: &Path) -> Result<(), (i32, String)> {
    let config = config_path.display().to_string();
    handover::try_new_binary(
        binary,
        &["check-config", "--config", &config],
        Duration::from_secs(30),
    )
    .await
    .map(drop)
    .map_err(|why| (exit_code::USAGE, format!("{why}; nothing was changed")))
}

async fn status(state_dir: &Path) -> Result<AgentStatus, String> {
    let answer = control::ask(state_dir, &Request::Status).await?;
    answer
        .status
        .ok_or_else(|| format!("the agent did not say its status: {}", answer.message))
}

/// What the operator reads once the new image runs.
fn done(before: &AgentStatus, now: &AgentStatus) -> String {
    let database = match (before.main_pid, now.main_pid) {
        (Some(a), Some(b)) if a == b => format!("the database (pid {b}) ran on"),
        (a, b) => format!(
            "the database's pid changed ({} → {}): it was restarted",
            a.map_or("-".into(), |p| p.to_string()),
            b.map_or("-".into(), |p| p.to_string())
        ),
    };
    let role = now
        .role
        .as_deref()
        .map(|r| format!("; role {r}"))
        .unwrap_or_default();
    format!(
        "upgraded in place: {} → {} (pid {}); {database}{role}",
        now.upgraded_from.as_deref().unwrap_or("?"),
        now.version,
        now.pid
    )
}
