//! An `autopilot` agent under test, run as a separate process.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::util::{eventually, system_bin, workspace_bin};

/// A running agent; killed (TERM, then KILL) when dropped.
pub struct Agent {
    /// The agent process (or the `unshare` wrapper around it).
    child: Child,
    /// Where its stderr (the log) goes.
    log: PathBuf,
    /// Set once it exited and was waited for.
    status: Option<ExitStatus>,
}

impl Agent {
    /// `autopilot run --config <config>`, logging to `<config>.log` at debug level.
    pub fn run(config: &Path) -> Agent {
        let mut cmd = Command::new(workspace_bin("autopilot"));
        cmd.arg("run").arg("--config").arg(config);
        Self::spawn(cmd, config)
    }

    /// [`Agent::run`] from the working directory `cwd`, the config named relative to it, as
    /// an operator types it (`autopilot run --config examples/postgres/agent-1.yaml`).
    pub fn run_relative(config: &Path, cwd: &Path) -> Agent {
        let rel = config
            .strip_prefix(cwd)
            .expect("the config lies under the working directory");
        let mut cmd = Command::new(workspace_bin("autopilot"));
        cmd.current_dir(cwd).arg("run").arg("--config").arg(rel);
        Self::spawn(cmd, config)
    }

    /// [`Agent::run`] under `prlimit --nofile=<n>:<n>`: soft and hard open-file limits of `n`,
    /// so the agent cannot raise its own limit above it (flood tests).
    pub fn run_with_open_files(config: &Path, n: u64) -> Agent {
        let mut cmd = Command::new(system_bin("/usr/bin/prlimit", "util-linux"));
        cmd.arg(format!("--nofile={n}:{n}"))
            .arg("--")
            .arg(workspace_bin("autopilot"))
            .arg("run")
            .arg("--config")
            .arg(config);
        Self::spawn(cmd, config)
    }

    /// [`Agent::run`] inside network namespace `netns` (`ip netns exec`, which execs the
    /// agent: the pid is the agent's).
    pub fn run_in_netns(config: &Path, netns: &str) -> Agent {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns])
            .arg(workspace_bin("autopilot"))
            .arg("run")
            .arg("--config")
            .arg(config);
        Self::spawn(cmd, config)
    }

    /// Run `cmd` (an agent, possibly wrapped) with stderr into `<config>.log`.
    pub fn spawn(mut cmd: Command, config: &Path) -> Agent {
        let log = config.with_extension("log");
        let file = File::create(&log).expect("create agent log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .env("RUST_LOG", "debug");
        let child = cmd.spawn().expect("spawn the agent");
        Agent {
            child,
            log,
            status: None,
        }
    }

    /// The agent's PID (outside any namespace).
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// Send `sig` to the agent.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the agent");
    }

    /// Wait up to `within` for the agent to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = eventually(within, Duration::from_millis(20), || {
                self.child.try_wait().expect("try_wait the agent")
            });
        }
        self.status
    }

    /// Whether the agent has exited (reaps it if so: its pid is no longer ours to signal).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_some()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
