//! `autopilotctl migrate status CLUSTER` and `autopilotctl migrate cutover CLUSTER --confirm
//! [--wait [SECONDS]]`: a live migration from an external database
//! (`cluster.bootstrap.migrate_from`). `status` reads `GET …/migration`; `cutover` sends
//! `POST …/migration/cutover` and, with `--wait`, follows the cluster's events until the
//! standby leader reports the outcome (`request_done`, with the write outage: exit 0;
//! `request_failed`: exit 1).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, CtlError, exit};
use super::output::s;
use super::{ClusterArg, Printer};

/// `migrate` subcommands.
#[derive(Subcommand, Debug)]
pub enum MigrateCmd {
    /// Whether the cluster still replicates from its source, its standby leader and lag.
    Status(ClusterArg),
    /// End the migration: the source is made read-only, the standby leader waits until it
    /// has everything the source committed and is promoted (admin).
    Cutover(CutoverArgs),
}

/// Arguments of `migrate cutover`.
#[derive(Args, Debug)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub c: ClusterArg,
    /// Confirm that the source stops taking writes: its clients must reconnect to this
    /// cluster.
    #[arg(long)]
    pub confirm: bool,
    /// Wait for the standby leader's outcome (at most SECONDS; no limit without a value):
    /// exit 0 when the cluster takes writes, 1 when the cutover failed or the wait ran out.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: Option<Option<u64>>,
}

impl CutoverArgs {
    /// Refuses to go on without `--confirm`, saying what the command would do.
    pub fn confirmed(&self) -> Result<(), CtlError> {
        if self.confirm {
            return Ok(());
        }
        Err(CtlError::new(
            exit::USAGE,
            format!(
                "cutover makes the source of cluster {} refuse writes (read-only, its client \
                 sessions ended), waits until the cluster has everything the source committed \
                 and promotes the cluster: writes fail until the applications use the \
                 cluster. Run again with --confirm to go ahead",
                self.c.cluster
            ),
        ))
    }
}

/// Runs a `migrate` subcommand.
pub fn run(
    client: &Client,
    cmd: MigrateCmd,
    print: Printer<'_>,
    json_out: bool,
) -> Result<(), CtlError> {
    match cmd {
        MigrateCmd::Status(c) => {
            let v = client.get(&format!("{}/migration", c.path()?))?;
            let cluster = c.cluster.clone();
            print(&v, &move |v| status(v, &cluster));
            Ok(())
        }
        MigrateCmd::Cutover(a) => cutover(client, &a, print, json_out),
    }
}

fn cutover(
    client: &Client,
    a: &CutoverArgs,
    print: Printer<'_>,
    json_out: bool,
) -> Result<(), CtlError> {
    a.confirmed()?;
    let base = a.c.path()?;
    let name = a.c.cluster.rsplit('/').next().unwrap_or(&a.c.cluster);
    let v = client.call(
        Method::POST,
        &format!("{base}/migration/cutover"),
        Some(&json!({ "confirm": name })),
    )?;
    let waiting = a.wait.is_some();
    print(&v, &move |v| accepted(v, waiting));
    let Some(limit) = a.wait else {
        return Ok(());
    };
    let node = v["node"].as_str().unwrap_or_default().to_owned();
    let since = v["revision"].as_i64().unwrap_or_default();
    let deadline = limit.map(|secs| Instant::now() + Duration::from_secs(secs));
    match super::restore::wait(
        client,
        &format!("{base}/events"),
        &node,
        "cutover",
        since,
        deadline,
        json_out,
    )? {
        Some(true) => Ok(()),
        Some(false) => Err(CtlError::new(
            exit::OTHER,
            format!(
                "the cutover of {} failed (see the event above): look at `autopilotctl migrate \
                 status {}` and the agent's log on {node}",
                a.c.cluster, a.c.cluster
            ),
        )),
        None => Err(CtlError::new(
            exit::OTHER,
            format!(
                "no outcome from {node} within {}s; the cutover goes on: follow with \
                 `autopilotctl events {} --follow`",
                limit.unwrap_or_default(),
                a.c.cluster
            ),
        )),
    }
}

/// `migrate status` for people.
pub fn status(v: &Value, cluster: &str) -> String {
    if v["migrating"] != Value::Bool(true) {
        let leader = match v["leader"].as_str() {
            Some(l) => format!("; its primary is {l}"),
            None => String::new(),
        };
        return format!(
            "{cluster} does not replicate from an external source (never did, or cut over){leader}\n"
        );
    }
    let mut out = format!("{cluster} migrates from {}\n", s(&v["source"]));
    match v["leader"].as_str() {
        Some(l) => out += &format!("standby leader: {l}\n"),
        None => out += "standby leader: none right now (an election?)\n",
    }
    let receiving = match v["receiving"].as_bool() {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    out += &format!("receiving from the source: {receiving}");
    if let Some(st) = v["state"].as_str() {
        out += &format!(" ({st})");
    }
    out += "\n";
    let mut lag = Vec::new();
    if let Some(sec) = v["lag_seconds"].as_f64() {
        lag.push(format!("{sec:.1} s"));
    }
    if let Some(b) = v["lag_bytes"].as_u64() {
        lag.push(format!("{b} bytes of WAL not replayed"));
    }
    if let Some(t) = v["lag_transactions"].as_u64() {
        lag.push(format!("{t} transactions not applied"));
    }
    out += &format!(
        "lag: {}\n",
        if lag.is_empty() {
            "unknown".to_owned()
        } else {
            lag.join(", ")
        }
    );
    if let Some(g) = v["gtid"].as_str() {
        out += &format!("position: {g}\n");
    }
    if let Some(e) = v["last_error"].as_str() {
        out += &format!("last error: {e}\n");
    }
    out += &format!(
        "replicas following the leader: {}\n",
        v["replicas_following"].as_u64().unwrap_or(0)
    );
    if v["cutover_pending"] == Value::Bool(true) {
        out += "a cutover is pending\n";
    }
    out
}

/// The answer to a cutover.
pub fn accepted(v: &Value, waiting: bool) -> String {
    let mut out = format!(
        "cutover requested: {} makes the source {} refuse writes, waits until it has \
         everything the source committed, and is promoted\n",
        s(&v["node"]),
        s(&v["source"])
    );
    if waiting {
        out += &format!("waiting for {}'s outcome…\n", s(&v["node"]));
    } else {
        out += &format!("{}\n", s(&v["hint"]));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::ctl::{Cli, Cmd};

    fn parse(args: &[&str]) -> Result<MigrateCmd, clap::Error> {
        let mut all = vec!["autopilotctl", "migrate"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.cmd {
            Cmd::Migrate(m) => Ok(m),
            other => panic!("not migrate: {other:?}"),
        }
    }

    #[test]
    fn cutover_needs_confirm_and_says_why() {
        let MigrateCmd::Cutover(a) = parse(&["cutover", "a/p/main"]).expect("parses") else {
            panic!("not cutover");
        };
        let e = a.confirmed().expect_err("unconfirmed");
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.contains("--confirm") && e.message.contains("refuse writes"),
            "{}",
            e.message
        );
        let MigrateCmd::Cutover(a) =
            parse(&["cutover", "a/p/main", "--confirm", "--wait", "60"]).expect("parses")
        else {
            panic!("not cutover");
        };
        assert!(a.confirmed().is_ok());
        assert_eq!(a.wait, Some(Some(60)));
        assert!(parse(&["cutover", "a/p/main", "--confirm", "--wait", "0"]).is_err());
        assert!(matches!(
            parse(&["status", "a/p/main"]),
            Ok(MigrateCmd::Status(_))
        ));
        assert!(parse(&["status"]).is_err());
    }

    #[test]
    fn status_and_answer_for_people() {
        let v = json!({"migrating": true, "source": "10.0.0.9:5432", "leader": "db-1",
            "receiving": true, "state": "streaming", "lag_seconds": 0.0, "lag_bytes": 0,
            "replicas_following": 2, "cutover_pending": false});
        insta::assert_snapshot!(status(&v, "a/p/main"), @r"
        a/p/main migrates from 10.0.0.9:5432
        standby leader: db-1
        receiving from the source: yes (streaming)
        lag: 0.0 s, 0 bytes of WAL not replayed
        replicas following the leader: 2
        ");
        let v = json!({"migrating": false, "leader": "db-1", "replicas_following": 2,
            "cutover_pending": false});
        insta::assert_snapshot!(status(&v, "a/p/main"), @"a/p/main does not replicate from an external source (never did, or cut over); its primary is db-1");
        let v = json!({"action": "cutover", "node": "db-1", "source": "10.0.0.9:5432",
            "revision": 7, "hint": "follow with autopilotctl events a/p/main --follow"});
        insta::assert_snapshot!(accepted(&v, true), @r"
        cutover requested: db-1 makes the source 10.0.0.9:5432 refuse writes, waits until it has everything the source committed, and is promoted
        waiting for db-1's outcome…
        ");
    }
}
