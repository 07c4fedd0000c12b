//! `autopilotctl upgrade start|status|pause|resume CLUSTER`: a rolling upgrade
//! (`POST|GET …/upgrade`, `POST …/upgrade/pause|resume`). `start --wait` follows the rollout
//! until it ends: exit 0 when every node runs the upgraded program, 1 when it stopped.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, CtlError, exit};
use super::output::{s, table};
use super::{ClusterArg, Printer};

/// `upgrade` subcommands.
#[derive(Subcommand, Debug)]
pub enum UpgradeCmd {
    /// Begin a rolling upgrade (operator): the replicas one at a time, a switchover to an
    /// upgraded replica, then the former primary; each node runs its handlers.upgrade.
    Start(StartArgs),
    /// Where the cluster's rolling upgrade is: its state, the steps taken, why it stopped.
    Status(ClusterArg),
    /// Let the step in flight finish and begin no new one (operator).
    Pause(ClusterArg),
    /// Go on with a paused rolling upgrade (operator).
    Resume(ClusterArg),
}

/// Arguments of `upgrade start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub c: ClusterArg,
    /// The version to install, passed to each node's upgrade hook as
    /// AUTOPILOT_UPGRADE_VERSION (default: the hook chooses).
    #[arg(long)]
    pub version: Option<String>,
    /// How long each node has, once its database runs again, to be healthy and caught up
    /// before its rollback hook runs (10 to 86400).
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(10..=86_400))]
    pub deadline: u64,
    /// Follow the rollout until it ends (at most SECONDS; no limit without a value).
    #[arg(long, value_name = "SECONDS", num_args = 0..=1,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: Option<Option<u64>>,
}

/// Runs an `upgrade` subcommand.
pub fn run(
    client: &Client,
    cmd: UpgradeCmd,
    print: Printer<'_>,
    json_out: bool,
) -> Result<(), CtlError> {
    match cmd {
        UpgradeCmd::Start(a) => start(client, &a, print, json_out),
        UpgradeCmd::Status(c) => {
            let v = client.get(&format!("{}/upgrade", c.path()?))?;
            print(&v, &status);
            Ok(())
        }
        UpgradeCmd::Pause(c) => {
            let v = client.call(Method::POST, &format!("{}/upgrade/pause", c.path()?), None)?;
            print(&v, &status);
            Ok(())
        }
        UpgradeCmd::Resume(c) => {
            let v = client.call(Method::POST, &format!("{}/upgrade/resume", c.path()?), None)?;
            print(&v, &status);
            Ok(())
        }
    }
}

fn start(
    client: &Client,
    a: &StartArgs,
    print: Printer<'_>,
    json_out: bool,
) -> Result<(), CtlError> {
    let base = a.c.path()?;
    let body = json!({ "version": a.version, "deadline_seconds": a.deadline });
    let v = client.call(Method::POST, &format!("{base}/upgrade"), Some(&body))?;
    print(&v, &|_| {
        format!(
            "rolling upgrade of {} begun; follow it with `autopilotctl upgrade status {}`\n",
            a.c.cluster, a.c.cluster
        )
    });
    let Some(limit) = a.wait else {
        return Ok(());
    };
    let deadline = limit.map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut said = String::new();
    loop {
        let v = client.get(&format!("{base}/upgrade"))?;
        let detail = s(&v["detail"]);
        if !json_out && detail != said {
            eprintln!("{}: {detail}", s(&v["state"]));
            said = detail;
        }
        match v["state"].as_str() {
            Some("done") => {
                print(&v, &status);
                return Ok(());
            }
            Some("failed") => {
                print(&v, &status);
                return Err(CtlError::new(
                    exit::OTHER,
                    format!(
                        "the rolling upgrade of {} stopped: {}",
                        a.c.cluster,
                        s(&v["detail"])
                    ),
                ));
            }
            _ => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(CtlError::new(
                exit::OTHER,
                format!(
                    "the rolling upgrade of {} goes on past the wait; follow it with \
                     `autopilotctl upgrade status {}`",
                    a.c.cluster, a.c.cluster
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A rollout document for people.
pub fn status(v: &Value) -> String {
    let mut out = format!(
        "state: {}\n{}\nversion: {}  deadline: {} s  started: {} by {}\nupgraded: {}\n",
        s(&v["state"]),
        s(&v["detail"]),
        v["version"].as_str().unwrap_or("(the hook's choice)"),
        s(&v["deadline_seconds"]),
        s(&v["started"]),
        s(&v["requested_by"]),
        v["upgraded"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "(none yet)".to_owned()),
    );
    let mut steps: Vec<&Value> = v["steps"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if v["step"].is_object() {
        steps.push(&v["step"]);
    }
    if !steps.is_empty() {
        let rows: Vec<Vec<String>> = steps
            .iter()
            .map(|st| {
                vec![
                    s(&st["kind"]),
                    s(&st["node"]),
                    s(&st["started"]),
                    st["outcome"].as_str().unwrap_or("running").to_owned(),
                    s(&st["detail"]),
                ]
            })
            .collect();
        out += &table(&["STEP", "NODE", "STARTED", "OUTCOME", "DETAIL"], &rows);
    }
    out
}
