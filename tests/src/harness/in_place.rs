//! The agent's in-place upgrade under test (issue 19): `autopilot upgrade-self` with a copy
//! of the agent binary standing in for a new release (the machine has one build), and a
//! "new release" that cannot start (it refuses the configuration once running), for the
//! e2e tests and `bench upgrade`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::cluster::Agents;
use crate::harness::util::workspace_bin;

/// A binary to upgrade to, in a directory of its own.
pub struct NewBinary {
    _dir: tempfile::TempDir,
    /// Its path.
    pub path: PathBuf,
}

impl NewBinary {
    /// A copy of the workspace's `autopilot`: a release the agent can re-execute into.
    pub fn copy() -> NewBinary {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("autopilot-new");
        std::fs::copy(workspace_bin("autopilot"), &path).expect("copy the autopilot binary");
        NewBinary { _dir: dir, path }
    }

    /// A release that passes `upgrade-self`'s checks (`--version`, `check-config`) but
    /// cannot start: its `run` refuses the configuration, as a release that dropped a
    /// setting would. It must go back to the previous binary.
    pub fn failing_to_start() -> NewBinary {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("autopilot-broken");
        let real = workspace_bin("autopilot");
        let script = format!(
            r#"#!/bin/sh
if [ "$1" = run ]; then
  while [ $# -gt 0 ]; do
    if [ "$1" = --handover ]; then handover="$2"; fi
    shift
  done
  exec {real} run --config {dir}/no-such-config.yaml --handover "$handover"
fi
exec {real} "$@"
"#,
            real = real.display(),
            dir = dir.path().display()
        );
        std::fs::write(&path, script).expect("write the broken release");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        NewBinary { _dir: dir, path }
    }
}

/// What `autopilot upgrade-self` said.
#[derive(Debug)]
pub struct InPlace {
    /// Its exit code.
    pub code: i32,
    /// stdout.
    pub out: String,
    /// stderr.
    pub err: String,
    /// How long it took.
    pub took: Duration,
}

/// `autopilot upgrade-self --config <node i's config> --binary <binary>`.
pub fn upgrade_self(a: &Agents, i: usize, binary: &Path) -> InPlace {
    upgrade_self_with(&[
        "--config",
        &a.config_path(i).display().to_string(),
        "--binary",
        &binary.display().to_string(),
    ])
}

/// `autopilot upgrade-self` with `args`, bounded by 90 s.
pub fn upgrade_self_with(args: &[&str]) -> InPlace {
    let t0 = Instant::now();
    let mut child = Command::new(workspace_bin("autopilot"))
        .arg("upgrade-self")
        .args(args)
        .args(["--timeout", "60"])
        .env_remove("AUTOPILOT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn autopilot upgrade-self");
    let deadline = t0 + Duration::from_secs(90);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("upgrade-self output");
    InPlace {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// The program process `pid` runs (`/proc/<pid>/exe`).
pub fn exe(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

/// The lease `key` (under the cluster prefix) is bound to; `None` when absent or unbound.
pub fn lease_of(a: &Agents, key: &str) -> Option<i64> {
    let full = format!("{}{key}", a.prefix());
    let out = a.etcdctl(&["get", &full, "-w", "json"]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["kvs"][0]["lease"].as_i64().filter(|l| *l != 0)
}

/// The number of entries in the cluster's `history` (one per failover or switchover).
pub fn history_len(a: &Agents) -> usize {
    a.key("history")
        .and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok())
        .and_then(|h| h["entries"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// What must not change when node `i`'s agent is upgraded in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The agent's PID.
    pub agent_pid: i32,
    /// The database's PID.
    pub database_pid: i32,
    /// The lease of the node's key.
    pub lease: Option<i64>,
    /// The role.
    pub role: String,
    /// `history`'s length.
    pub history: usize,
}

/// What is to be kept of node `i` now.
pub fn kept(a: &Agents, i: usize) -> Kept {
    Kept {
        agent_pid: a.agent(i).map(|g| g.pid()).unwrap_or_default(),
        database_pid: a.main_pid(i).unwrap_or_default(),
        lease: lease_of(a, &format!("nodes/{}", a.name(i))),
        role: a.role(i),
        history: history_len(a),
    }
}
