//! `autopilotctl backup …`: a cluster's backups (`list`), one backup with its manual restore
//! instructions (`show`), and the requests an agent carries out (`run --job`, `verify`,
//! `test-restore`). The renderers are pure functions of the API's JSON, snapshot-tested.

use std::time::Duration;

use clap::{Args, Subcommand};
use cluster::wire::Timestamp;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Client, CtlError};
use super::output::{list, s, table};
use super::show::human_bytes;
use super::{ClusterArg, Printer, encode};

/// A cluster and one of its backups.
#[derive(Args, Debug, Clone)]
pub struct BackupArg {
    #[command(flatten)]
    pub c: ClusterArg,
    /// The backup id (from `autopilotctl backup list`), e.g. 20261203T153000Z-1a2b3c4d.
    pub id: String,
}

impl BackupArg {
    /// `/v1/clusters/…/backups/<id>`.
    fn path(&self) -> Result<String, CtlError> {
        Ok(format!("{}/backups/{}", self.c.path()?, encode(&self.id)))
    }
}

/// Backup commands.
#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// A cluster's backups, newest first, and the requests not carried out yet.
    List(ClusterArg),
    /// One backup: its record, and the shell commands that restore it without Autopilot.
    Show(BackupArg),
    /// Take a backup now with one of the agents' backup jobs (operator).
    Run {
        #[command(flatten)]
        c: ClusterArg,
        /// The job (a name from the agents' backup.jobs), e.g. nightly.
        #[arg(long)]
        job: String,
    },
    /// Re-read and re-hash every stored object of a backup (operator).
    Verify(BackupArg),
    /// Restore a backup into a scratch server and run the engine's checks (operator).
    TestRestore(BackupArg),
}

/// Runs one backup command.
pub fn run(client: &Client, cmd: BackupCmd, print: Printer<'_>) -> Result<(), CtlError> {
    match cmd {
        BackupCmd::List(c) => {
            let v = client.get(&format!("{}/backups", c.path()?))?;
            print(&v, &backups);
        }
        BackupCmd::Show(b) => print(&client.get(&b.path()?)?, &backup),
        BackupCmd::Run { c, job } => {
            let body = json!({ "job": job });
            let v = client.call(Method::POST, &format!("{}/backups", c.path()?), Some(&body))?;
            let cluster = c.cluster.clone();
            print(&v, &move |v| requested(v, &cluster));
        }
        BackupCmd::Verify(b) => verb(client, &b, "verify", print)?,
        BackupCmd::TestRestore(b) => verb(client, &b, "test-restore", print)?,
    }
    Ok(())
}

fn verb(client: &Client, b: &BackupArg, what: &str, print: Printer<'_>) -> Result<(), CtlError> {
    let v = client.call(Method::POST, &format!("{}/{what}", b.path()?), None)?;
    let cluster = b.c.cluster.clone();
    print(&v, &move |v| requested(v, &cluster));
    Ok(())
}

/// How long a backup took (`finished - started`), `-` while running or unknown.
fn took(b: &Value) -> String {
    let at = |k: &str| serde_json::from_value::<Timestamp>(b[k].clone()).ok();
    match (at("started"), at("finished")) {
        (Some(a), Some(z)) => z
            .system_time()
            .duration_since(a.system_time())
            .map(|d| {
                humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
            })
            .unwrap_or_else(|_| "-".into()),
        _ => "-".into(),
    }
}

/// A byte count for people, `-` when absent.
fn size(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), human_bytes)
}

/// One pending request as a header line.
fn request_line(r: &Value) -> String {
    let what = match r["action"].as_str() {
        Some("backup") => format!("backup of job {}", s(&r["job"])),
        Some("verify") => format!("verify of {}", s(&r["backup_id"])),
        Some("test_restore") => format!("test restore of {}", s(&r["backup_id"])),
        _ => format!("{} (unknown to this autopilotctl)", s(&r["action"])),
    };
    format!(
        "request:     {what} pending (request {}, by {} at {})\n",
        s(&r["id"]),
        s(&r["requested_by"]),
        s(&r["time"])
    )
}

/// `GET …/backups`: one row per backup, newest first; why each failed one failed; the
/// requests not carried out yet.
pub fn backups(v: &Value) -> String {
    let all = list(&v["backups"]);
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|b| {
            vec![
                s(&b["id"]),
                s(&b["job"]),
                s(&b["method"]),
                s(&b["type"]),
                s(&b["status"]),
                s(&b["started"]),
                took(b),
                size(&b["size_stored"]),
                s(&b["node"]),
                s(&b["verified"]),
                s(&b["restore_tested"]),
            ]
        })
        .collect();
    let mut out = if all.is_empty() {
        "no backup recorded\n".to_owned()
    } else {
        table(
            &[
                "ID", "JOB", "METHOD", "TYPE", "STATUS", "STARTED", "TOOK", "SIZE", "NODE",
                "VERIFIED", "TESTED",
            ],
            &rows,
        )
    };
    let failed: Vec<&Value> = all.iter().filter(|b| !b["error"].is_null()).collect();
    if !failed.is_empty() {
        out.push('\n');
        for b in failed {
            out += &format!("{}: {}\n", s(&b["id"]), s(&b["error"]));
        }
    }
    let requests = list(&v["requests"]);
    if !requests.is_empty() {
        out.push('\n');
        for r in &requests {
            out += &request_line(r);
        }
    }
    let unreadable = list(&v["unreadable"]);
    if !unreadable.is_empty() {
        out += &format!(
            "unreadable:  {}\n",
            unreadable.iter().map(s).collect::<Vec<_>>().join(", ")
        );
    }
    out
}

/// A list as `a, b`, or `none` when empty.
fn words(v: &Value, none: &str) -> String {
    let l = list(v);
    if l.is_empty() {
        none.to_owned()
    } else {
        l.iter().map(s).collect::<Vec<_>>().join(", ")
    }
}

/// `GET …/backups/{id}`: the record as a header, then the manual restore instructions.
pub fn backup(v: &Value) -> String {
    let b = &v["backup"];
    let mut out = format!("backup:       {}\n", s(&b["id"]));
    out += &format!("job:          {} (node {})\n", s(&b["job"]), s(&b["node"]));
    out += &format!(
        "engine:       {}{}\n",
        s(&b["engine"]),
        match &b["engine_version"] {
            Value::Null => String::new(),
            ver => format!(" {}", s(ver)),
        }
    );
    out += &format!("method:       {} {}\n", s(&b["method"]), s(&b["type"]));
    out += &format!("status:       {}\n", s(&b["status"]));
    if !b["error"].is_null() {
        out += &format!("error:        {}\n", s(&b["error"]));
    }
    out += &format!("started:      {}\n", s(&b["started"]));
    if !b["finished"].is_null() {
        out += &format!("finished:     {} (took {})\n", s(&b["finished"]), took(b));
    }
    if !b["position"].is_null() {
        out += &format!("position:     {}\n", s(&b["position"]));
    }
    out += &format!(
        "size:         {} stored ({} before compression)\n",
        size(&b["size_stored"]),
        size(&b["size_plain"])
    );
    out += &format!("repositories: {}\n", words(&b["repositories"], "-"));
    out += &format!("databases:    {}\n", words(&b["databases"], "all"));
    out += &format!("streams:      {}\n", words(&b["streams"], "-"));
    let chain: Vec<String> = list(&v["chain"]).iter().map(s).collect();
    if chain.len() > 1 {
        out += &format!("chain:        {} (the full first)\n", chain.join(" <- "));
    }
    out += &format!(
        "verified:     {}\n",
        match &b["verified"] {
            Value::Null => "never".to_owned(),
            t => s(t),
        }
    );
    out += &format!(
        "test restore: {}\n",
        match (&b["restore_tested"], b["restore_seconds"].as_f64()) {
            (Value::Null, _) => "never".to_owned(),
            (t, Some(secs)) => format!("{} (the restore took {secs:.1} s)", s(t)),
            (t, None) => s(t),
        }
    );
    out.push('\n');
    let text = v["instructions"].as_str().unwrap_or("");
    out += text;
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The answer to `backup run`, `verify` or `test-restore`, with the command that follows it.
pub fn requested(v: &Value, cluster: &str) -> String {
    let what = match v["action"].as_str() {
        Some("backup") => format!("backup of job {}", s(&v["job"])),
        Some("verify") => format!("verify of backup {}", s(&v["backup_id"])),
        Some("test_restore") => format!("test restore of backup {}", s(&v["backup_id"])),
        _ => s(&v["action"]),
    };
    format!(
        "{what} requested (request {}); an agent carries it out: follow with `autopilotctl \
         events {} --since {}`\n",
        s(&v["id"]),
        s(&Value::String(cluster.into())),
        s(&v["revision"])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, status: &str) -> Value {
        json!({"schema": 1, "id": id, "set_id": id, "job": "nightly", "node": "db-2",
            "engine": "mariadb", "engine_version": "10.11.19", "method": "physical",
            "type": "full", "status": status, "started": "2026-12-03T02:00:00.000Z",
            "finished": "2026-12-03T02:03:25.500Z", "position": "0-1-2143",
            "size_plain": 3_221_225_472_u64, "size_stored": 1_288_490_189_u64,
            "repositories": ["local", "offsite"], "databases": [], "streams": ["base"],
            "verified": "2026-12-03T06:00:00.000Z"})
    }

    #[test]
    fn list_rows_failures_and_requests() {
        let mut failed = record("20261202T020000Z-0000000b", "failed");
        failed["error"] = json!("mariadb-backup exited with status 1: InnoDB: \u{1b}[2J");
        failed["finished"] = Value::Null;
        failed["size_stored"] = json!(0);
        let v = json!({
            "backups": [record("20261203T020000Z-0000000c", "done"), failed],
            "requests": [{"id": "20261203T101500Z-00ff00ff", "action": "verify",
                "backup_id": "20261203T020000Z-0000000c", "requested_by": "ops",
                "time": "2026-12-03T10:15:00.000Z"},
                {"id": "20261203T101600Z-00ff00fe", "action": "backup", "job": "nightly",
                "requested_by": "ops", "time": "2026-12-03T10:16:00.000Z"}],
            "unreadable": [], "revision": 42});
        let out = backups(&v);
        assert!(!out.contains('\u{1b}'), "{out}");
        insta::assert_snapshot!(out);
        assert_eq!(
            backups(&json!({"backups": [], "requests": []})),
            "no backup recorded\n"
        );
    }

    #[test]
    fn show_a_record_and_its_instructions() {
        let mut b = record("20261203T020000Z-0000000c", "done");
        b["type"] = json!("incremental");
        b["parent_id"] = json!("20261202T020000Z-0000000b");
        b["restore_tested"] = json!("2026-12-03T07:00:00.000Z");
        b["restore_seconds"] = json!(74.25);
        let v = json!({"backup": b,
            "chain": ["20261202T020000Z-0000000b", "20261203T020000Z-0000000c"],
            "instructions": "# Restore backup …\nset -euo pipefail\n"});
        insta::assert_snapshot!(backup(&v));
        let out = requested(
            &json!({"id": "20261203T101500Z-00ff00ff", "action": "test_restore",
                "backup_id": "20261203T020000Z-0000000c", "revision": 77}),
            "a/p/c",
        );
        assert_eq!(
            out,
            "test restore of backup 20261203T020000Z-0000000c requested (request \
             20261203T101500Z-00ff00ff); an agent carries it out: follow with `autopilotctl \
             events a/p/c --since 77`\n"
        );
    }
}
