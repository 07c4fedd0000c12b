//! `autopilotctl restore CLUSTER (--time T | --latest) --confirm [--wait [SECONDS]]`: rewind a
//! whole cluster in place (`POST …/restore`). Without `--confirm` nothing is sent and the
//! command says what would happen. With `--wait` it follows the cluster's events from the
//! revision the answer names until the primary reports the restore's outcome
//! (`request_done`: exit 0, `request_failed`: exit 1).

use std::time::{Duration, Instant};

use clap::{ArgGroup, Args};
use cluster::wire::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, CtlError, exit};
use super::output::{self, s};
use super::{ClusterArg, Printer, show};

/// Arguments of `restore`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("point").required(true).args(["time", "latest"])))]
pub struct RestoreArgs {
    #[command(flatten)]
    pub c: ClusterArg,
    /// Rewind to the last change committed at or before this time (RFC 3339, e.g.
    /// 2026-11-23T23:05:00Z; not in the future).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub time: Option<Timestamp>,
    /// Rewind to the end of the archive (every archived change).
    #[arg(long)]
    pub latest: bool,
    /// Confirm that every node of the cluster is rewound: changes after the point are kept
    /// aside (the old data directories) but no longer served.
    #[arg(long)]
    pub confirm: bool,
    /// Wait for the primary's outcome (at most SECONDS; no limit without a value): exit 0
    /// when the restored data serves, 1 when the restore failed or the wait ran out.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1,
        value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: Option<Option<u64>>,
}

/// `--time`: an RFC 3339 time.
fn parse_time(s: &str) -> Result<Timestamp, String> {
    humantime::parse_rfc3339_weak(s)
        .map(Timestamp::from)
        .map_err(|e| format!("not an RFC 3339 time ({e}); write e.g. 2026-11-23T23:05:00Z"))
}

impl RestoreArgs {
    /// The point as people read it.
    fn point(&self) -> String {
        match &self.time {
            Some(t) => t.to_string(),
            None => "the end of the archive".into(),
        }
    }

    /// The cluster's name: the last part of namespace/project/cluster.
    fn name(&self) -> &str {
        self.c.cluster.rsplit('/').next().unwrap_or(&self.c.cluster)
    }

    /// Refuses to go on without `--confirm`, saying what the command would do.
    pub fn confirmed(&self) -> Result<(), CtlError> {
        if self.confirm {
            return Ok(());
        }
        Err(CtlError::new(
            exit::USAGE,
            format!(
                "restore rewinds every node of cluster {} to {}: the cluster goes into \
                 maintenance, its primary restores the newest base backup and the archive up to \
                 that point, and every other node rebuilds from it; data written after the \
                 point is kept aside (the old data directories) but no longer served. Run \
                 again with --confirm to go ahead",
                self.c.cluster,
                self.point()
            ),
        ))
    }

    /// The request body.
    pub fn body(&self) -> Value {
        let mut b = match &self.time {
            Some(t) => json!({ "time": t.to_string() }),
            None => json!({ "latest": true }),
        };
        b["confirm"] = Value::String(self.name().to_owned());
        b
    }
}

/// Sends the restore and prints the answer; with `--wait`, follows it to its outcome.
pub fn run(
    client: &Client,
    a: &RestoreArgs,
    print: Printer<'_>,
    json_out: bool,
) -> Result<(), CtlError> {
    a.confirmed()?;
    let base = a.c.path()?;
    let v = client.call(Method::POST, &format!("{base}/restore"), Some(&a.body()))?;
    let cluster = a.c.cluster.clone();
    let waiting = a.wait.is_some();
    print(&v, &move |v| accepted(v, &cluster, waiting));
    let Some(limit) = a.wait else {
        return Ok(());
    };
    let node = v["node"].as_str().unwrap_or_default().to_owned();
    let since = v["revision"].as_i64().unwrap_or_default();
    let deadline = limit.map(|secs| Instant::now() + Duration::from_secs(secs));
    let outcome = wait(
        client,
        &format!("{base}/events"),
        &node,
        "restore",
        since,
        deadline,
        json_out,
    )?;
    match outcome {
        Some(true) => Ok(()),
        Some(false) => Err(CtlError::new(
            exit::OTHER,
            format!(
                "the restore of {} failed (see the event above); the cluster stays in \
                 maintenance: look at `autopilotctl show {}` and the agent's log on {node}",
                a.c.cluster, a.c.cluster
            ),
        )),
        None => Err(CtlError::new(
            exit::OTHER,
            format!(
                "no outcome from {node} within {}s; the restore goes on: follow with \
                 `autopilotctl events {} --follow`",
                limit.unwrap_or_default(),
                a.c.cluster
            ),
        )),
    }
}

/// The answer to a restore.
pub fn accepted(v: &Value, cluster: &str, waiting: bool) -> String {
    let cluster = s(&Value::String(cluster.into()));
    let mut out = format!(
        "restore of {cluster} to {} requested: primary {} restores the newest base backup and \
         the archive up to that point, then the other nodes rebuild from it\n",
        show::restore_point(&v["restore_to"]),
        s(&v["node"]),
    );
    let m = &v["maintenance"];
    if v["maintenance_enabled"] == Value::Bool(true) {
        out += &format!(
            "maintenance on ({}); it ends when the restored data serves\n",
            s(&m["reason"])
        );
    } else {
        out += &format!(
            "maintenance was already on ({}, by {})\n",
            s(&m["reason"]),
            s(&m["by"])
        );
    }
    for w in output::list(&v["warnings"]) {
        out += &format!("warning: {}\n", s(&w));
    }
    if waiting {
        out += &format!("waiting for {}'s outcome…\n", s(&v["node"]));
    } else {
        out += &format!("{}\n", s(&v["hint"]));
    }
    out
}

/// What an event means to a request (whose outcome's detail starts with `what`: `restore`,
/// `cutover`) waiting on `node`: `Some(true)` done, `Some(false)` failed, `None` not its
/// outcome.
pub fn outcome(data: &Value, node: &str, what: &str) -> Option<bool> {
    let doc = &data["doc"];
    if data["type"] != "event" || doc["node"] != node {
        return None;
    }
    // Another request's outcome cannot follow ours (one request per node at a time), but an
    // earlier one may still land after the revision read: only a restore's counts.
    if !doc["detail"].as_str().unwrap_or("").starts_with(what) {
        return None;
    }
    match doc["kind"].as_str() {
        Some("request_done") => Some(true),
        Some("request_failed") => Some(false),
        _ => None,
    }
}

/// Follows the events after `since` until `node` reports the outcome of its `what` request
/// or `deadline` passes (`Ok(None)`), printing the agents' events on the way.
pub(super) fn wait(
    client: &Client,
    path: &str,
    node: &str,
    what: &str,
    since: i64,
    deadline: Option<Instant>,
    json_out: bool,
) -> Result<Option<bool>, CtlError> {
    let mut last = Some(since.to_string());
    let mut result = None;
    loop {
        let mut on = |id: &str, kind: &str, data: &str| {
            let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if kind == "event" {
                if json_out {
                    println!("{data}");
                } else {
                    print!("{}", output::terminal_safe(&show::event(id, kind, data)));
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            result = outcome(&v, node, what);
            result.is_none()
        };
        // Reconnect at least every minute, so the deadline is looked at.
        let chunk = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(Duration::from_secs(60)),
                _ => return Ok(None),
            },
            None => Duration::from_secs(60),
        };
        match client.events(path, last.as_deref(), Some(chunk), &mut on) {
            Ok(seen) => last = seen.or(last),
            Err(e) if e.code == exit::UNAVAILABLE => eprintln!("autopilotctl: {e}; reconnecting"),
            Err(e) => return Err(e),
        }
        if result.is_some() {
            return Ok(result);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::ctl::{Cli, Cmd};

    fn parse(args: &[&str]) -> Result<RestoreArgs, clap::Error> {
        let mut all = vec!["autopilotctl", "restore"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all)?.cmd {
            Cmd::Restore(a) => Ok(a),
            other => panic!("not restore: {other:?}"),
        }
    }

    #[test]
    fn exactly_one_point_is_required() {
        let both =
            parse(&["a/p/main", "--time", "2026-11-24T15:00:00Z", "--latest"]).expect_err("both");
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        let neither = parse(&["a/p/main", "--confirm"]).expect_err("neither");
        assert_eq!(
            neither.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let bad = parse(&["a/p/main", "--time", "yesterday", "--confirm"]).expect_err("bad");
        assert_eq!(bad.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(bad.to_string().contains("not an RFC 3339 time"), "{bad}");
    }

    #[test]
    fn the_body_names_the_point_and_confirms_the_cluster_name() {
        let a = parse(&["a/p/main", "--time", "2026-11-24T15:00:00Z", "--confirm"]).expect("ok");
        assert_eq!(
            a.body(),
            json!({"time": "2026-11-24T15:00:00.000Z", "confirm": "main"})
        );
        assert!(a.confirmed().is_ok());
        assert_eq!(a.wait, None);
        let a = parse(&["a/p/main", "--latest", "--confirm", "--wait"]).expect("ok");
        assert_eq!(a.body(), json!({"latest": true, "confirm": "main"}));
        assert_eq!(a.wait, Some(None));
        let a = parse(&["a/p/main", "--latest", "--confirm", "--wait", "600"]).expect("ok");
        assert_eq!(a.wait, Some(Some(600)));
        assert!(parse(&["a/p/main", "--latest", "--confirm", "--wait", "0"]).is_err());
    }

    #[test]
    fn without_confirm_nothing_is_sent_and_the_consequence_is_said() {
        let a = parse(&["a/p/main", "--time", "2026-11-24T15:00:00Z"]).expect("parses");
        let e = a.confirmed().expect_err("unconfirmed");
        assert_eq!(e.code, exit::USAGE);
        insta::assert_snapshot!(e.message, @"restore rewinds every node of cluster a/p/main to 2026-11-24T15:00:00.000Z: the cluster goes into maintenance, its primary restores the newest base backup and the archive up to that point, and every other node rebuilds from it; data written after the point is kept aside (the old data directories) but no longer served. Run again with --confirm to go ahead");
        // Refused before the URL is even looked up: no coordinator is needed to learn it.
        let cli = Cli::try_parse_from(["autopilotctl", "restore", "a/p/main", "--latest"])
            .expect("parses");
        let e = crate::ctl::run_with(cli, &|_| None).expect_err("unconfirmed");
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.contains("to the end of the archive") && e.message.contains("--confirm"),
            "{}",
            e.message
        );
    }

    #[test]
    fn the_answer_and_the_outcome() {
        let v = json!({"action": "restore", "node": "db-1",
            "restore_to": {"time": "2026-11-24T15:00:00.000Z"},
            "maintenance": {"schema": 1, "enabled": true,
                "reason": "restore to 2026-11-24T15:00:00.000Z requested by ops", "by": "ops",
                "time": "2026-11-24T16:00:00.000Z"},
            "maintenance_enabled": true, "revision": 42,
            "hint": "follow with autopilotctl events a/p/main --follow", "warnings": []});
        insta::assert_snapshot!(accepted(&v, "a/p/main", false), @r"
        restore of a/p/main to 2026-11-24T15:00:00.000Z requested: primary db-1 restores the newest base backup and the archive up to that point, then the other nodes rebuild from it
        maintenance on (restore to 2026-11-24T15:00:00.000Z requested by ops); it ends when the restored data serves
        follow with autopilotctl events a/p/main --follow
        ");
        let v = json!({"action": "restore", "node": "db-1", "restore_to": "latest",
            "maintenance": {"schema": 1, "enabled": true, "reason": "kernel upgrade",
                "by": "alice"},
            "maintenance_enabled": false, "revision": 42, "hint": "…",
            "warnings": ["the cluster was already in maintenance (kernel upgrade): it stays in \
                maintenance after the restore; turn it off with `autopilotctl resume a/p/main`"]});
        insta::assert_snapshot!(accepted(&v, "a/p/main", true), @r"
        restore of a/p/main to the end of the archive requested: primary db-1 restores the newest base backup and the archive up to that point, then the other nodes rebuild from it
        maintenance was already on (kernel upgrade, by alice)
        warning: the cluster was already in maintenance (kernel upgrade): it stays in maintenance after the restore; turn it off with `autopilotctl resume a/p/main`
        waiting for db-1's outcome…
        ");
        let ev = |kind: &str, node: &str, detail: &str| {
            json!({"revision": 50, "type": "event", "key": "events/x",
                "doc": {"kind": kind, "node": node, "detail": detail,
                    "time": "2026-11-24T16:01:00.000Z"}})
        };
        assert_eq!(
            outcome(
                &ev("request_done", "db-1", "restore: the restored data serves"),
                "db-1",
                "restore"
            ),
            Some(true)
        );
        assert_eq!(
            outcome(
                &ev("request_failed", "db-1", "restore failed: no base backup"),
                "db-1",
                "restore"
            ),
            Some(false)
        );
        assert_eq!(
            outcome(
                &ev(
                    "request_failed",
                    "db-1",
                    "restore refused: not in maintenance"
                ),
                "db-1",
                "restore"
            ),
            Some(false)
        );
        // Not the outcome: another node, another request, progress, other event types.
        assert_eq!(
            outcome(&ev("request_done", "db-2", "restore: x"), "db-1", "restore"),
            None
        );
        assert_eq!(
            outcome(&ev("request_done", "db-1", "reload: x"), "db-1", "restore"),
            None
        );
        assert_eq!(
            outcome(
                &ev("new_term", "db-1", "restore: restoring"),
                "db-1",
                "restore"
            ),
            None
        );
        assert_eq!(
            outcome(
                &json!({"type": "request", "key": "requests/db-1", "doc": null}),
                "db-1",
                "restore"
            ),
            None
        );
    }
}
