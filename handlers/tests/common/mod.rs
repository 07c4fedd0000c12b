//! Helpers shared by the integration tests: real processes, bounded waits.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use handlers::ExecSpec;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// A `sh -c script` spec with a short kill grace.
pub fn sh(script: &str) -> ExecSpec {
    let mut spec = ExecSpec::new(["sh", "-c", script]);
    spec.kill_grace = Duration::from_millis(500);
    spec
}

/// Poll `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The process no longer exists at all (not even as a zombie).
pub fn is_gone(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
}

/// The state letter from `/proc/<pid>/stat` ('Z' for a zombie), or None if it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Wait (bounded) for a file holding a pid, written by a test script.
pub async fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    let found = eventually(Duration::from_secs(5), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        pid.is_some()
    })
    .await;
    assert!(found, "no pid written to {}", path.display());
    pid.expect("checked above")
}

/// Shell-quote a path for a test script.
pub fn q(path: &Path) -> String {
    format!("'{}'", path.display())
}
