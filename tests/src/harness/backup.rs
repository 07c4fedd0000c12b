//! What the backup tests share: the cluster's backup records as etcd holds them, and the
//! `autopilot backup …` command line run with node 1's configuration.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::cluster::Agents;
use crate::harness::util::workspace_bin;

/// Every `backup/records/*` document.
pub fn records(c: &Agents) -> Vec<serde_json::Value> {
    c.values_under("backup/records/")
        .iter()
        .filter_map(|v| serde_json::from_str(v).ok())
        .collect()
}

/// `autopilot backup …` with node 1's configuration, run in `dir` (the cluster's directory,
/// which its relative paths start from); (exit code, stdout, stderr).
pub fn cli(c: &Agents, dir: &Path, args: &[&str]) -> (i32, String, String) {
    cli_as(c, 0, dir, args)
}

/// [`cli`] with node `i`'s configuration (its local catalog).
pub fn cli_as(c: &Agents, i: usize, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(workspace_bin("autopilot"))
        .args(["backup"])
        .args(args)
        .arg("--config")
        .arg(c.config_path(i))
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run autopilot backup");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A new age key pair: the identity written to `<dir>/key.txt`, the recipient returned.
pub fn key_pair(dir: &Path) -> String {
    use age::secrecy::ExposeSecret as _;
    let identity = backup::pipeline::Identity::generate();
    std::fs::write(
        dir.join("key.txt"),
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .expect("write the key");
    identity.to_public().to_string()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A backup record's `started`, in Unix milliseconds (0 when absent or malformed).
pub fn started_ms(r: &serde_json::Value) -> u64 {
    let s = r["started"].as_str().unwrap_or_default();
    humantime::parse_rfc3339(s)
        .map(|t| {
            t.duration_since(std::time::SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64
        })
        .unwrap_or_default()
}
