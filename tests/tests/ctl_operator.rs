//! `autopilotctl` for the operator's first hour (issue 16), against a real coordinator and
//! etcd, with the cluster's documents written as agents write them: `list` names the primary
//! and counts healthy replicas; `show` lists every member, a member whose agent is down as
//! `stopped`, with the reason a node is not eligible and what holds a failover, in the
//! engine's notation, `--watch` redraws with a time line and no escape codes into a pipe;
//! `events` lines start with their time, `history` says `manual_failover`; the node verbs
//! (`reinit`, `restart`, `reload`, `remove`, `show-config`) write what agents act on, refuse
//! what must not be done, are audited and need their role; and the papercuts: the
//! switchover hint is a command that works, the usage line does not ask for `--url`, `--help`
//! describes autopilotctl, coordinator flags read variables, and a coordinator without an
//! admin token or etcd warns at start and never shows gRPC debug text.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::harness::coordinator::{ADMIN_TOKEN, Api, Coordinator, ctl};
use e2e::harness::etcd::EtcdServer;
use e2e::harness::util::workspace_bin;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const C: &str = "a/p/c1";

fn put(etcd: &EtcdServer, key: &str, v: &Value) {
    etcd.etcdctl(&["put", &format!("/autopilot/{C}/{key}"), &v.to_string()])
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

fn get(etcd: &EtcdServer, key: &str) -> Option<Value> {
    let out = etcd
        .etcdctl(&[
            "get",
            "--print-value-only",
            &format!("/autopilot/{C}/{key}"),
        ])
        .expect("get");
    let line = out.lines().next()?.trim().to_owned();
    (!line.is_empty()).then(|| serde_json::from_str(&line).expect("a JSON value"))
}

fn node(id: &str, port: u16, primary: bool, agent_url: Option<&str>) -> Value {
    json!({
        "schema": 1, "id": id, "name": id, "hostname": "h", "ip_address": "127.0.0.1",
        "port": port, "role": if primary { "primary" } else { "replica" },
        "status": "online", "health": "healthy",
        "replication": {
            "position": {"epoch": 3, "offset": 0x11C8_8BB8_u64},
            "lag_seconds": if primary { Value::Null } else { json!(0.0) },
            "lag_bytes": if primary { Value::Null } else { json!(0) },
            "state": if primary { Value::Null } else { json!("streaming") },
            "receiving": if primary { Value::Null } else { json!(true) },
            "source": if primary { Value::Null } else { json!("n1") },
        },
        "priority": 1, "eligible": true, "agent_url": agent_url, "version": "PostgreSQL 15",
        "last_updated": "2026-11-24T15:00:00.000Z", "ttlseconds": 10
    })
}

fn member(id: &str, port: u16) -> Value {
    json!({"schema": 1, "id": id, "name": id, "hostname": "h", "ip_address": "127.0.0.1",
        "port": port, "agent_url": null, "started": "2026-11-24T14:00:00.000Z"})
}

/// n1 primary, n2 streaming replica (sync), n3 a member whose agent is down, n4 a replica
/// behind and not eligible, with its reason and the cooldown holding a failover.
fn seed(etcd: &EtcdServer, agent_url: Option<&str>) {
    put(
        etcd,
        "initialized",
        &json!({"schema": 1, "database": {"engine": "postgres", "system_id": "7"},
            "time": "2026-11-24T14:00:00.000Z", "node": "n1"}),
    );
    put(etcd, "nodes/n1", &node("n1", 5432, true, agent_url));
    put(etcd, "nodes/n2", &node("n2", 5442, false, None));
    let mut n4 = node("n4", 5462, false, Some("http://127.0.0.1:1"));
    n4["replication"]["lag_bytes"] = json!(13_000_000);
    n4["replication"]["lag_seconds"] = json!(4.5);
    n4["eligible"] = json!(false);
    n4["ineligible"] = json!({"code": "lagging",
        "reason": "behind the primary by 12.4 MiB, more than max_lag_on_failover 1 MiB"});
    n4["waiting"] = json!({"kind": "cooldown", "since": "2026-11-24T15:00:00.000Z",
        "until": "2026-11-24T15:01:00.000Z", "detail": "the last failover was at 15:00:00Z"});
    put(etcd, "nodes/n4", &n4);
    for (id, port) in [("n1", 5432), ("n2", 5442), ("n3", 5452), ("n4", 5462)] {
        put(etcd, &format!("members/{id}"), &member(id, port));
    }
    put(
        etcd,
        "primary",
        &json!({"schema": 1, "id": "n1", "name": "n1", "hostname": "h",
            "ip_address": "127.0.0.1", "port": 5432, "status": "online", "version": "PostgreSQL 15",
            "replication": {"position": {"epoch": 3, "offset": 0x11C8_8BB8_u64},
                "synchronous": true, "streaming": [
                    {"name": "n2", "synchronous": true, "lag_bytes": 0},
                    {"name": "n4", "synchronous": false, "lag_bytes": 13_000_000}]},
            "last_updated": "2026-11-24T15:00:00.000Z", "ttlseconds": 10, "lease": "0"}),
    );
    put(
        etcd,
        "history",
        &json!({"schema": 1, "entries": [
            {"time": "2026-11-24T14:00:00.000Z", "from": null, "to": "n1", "reason": "bootstrap",
             "position": {"epoch": 1, "offset": 0}},
            {"time": "2026-11-24T15:00:00.000Z", "from": "n2", "to": "n1",
             "reason": "manual_failover", "position": {"epoch": 3, "offset": 0x11C8_8BB8_u64}}]}),
    );
}

/// A fake agent listener answering `GET /config` with `body`, for `requests` requests.
fn fake_agent(body: &'static str) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut r = BufReader::new(s.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let (status, text) = if line.starts_with("GET /config ") {
                ("200 OK", body)
            } else {
                ("404 Not Found", r#"{"error":"no such route"}"#)
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

const CONFIG: &str = r#"{"node":{"name":"n1"},"store":{"etcd":{"endpoints":["http://127.0.0.1:2379"],"password":"(secret from file /etc/autopilot/etcd-password)"}},"failover":{"cooldown":"60s"}}"#;

fn env(url: &str, token: &str) -> Vec<(String, String)> {
    vec![
        ("AUTOPILOT_URL".into(), url.into()),
        ("AUTOPILOT_TOKEN".into(), token.into()),
    ]
}

fn run(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ctl(args, &e, T)
}

/// Whether `line` starts with an RFC 3339 time (`2026-11-24T15:00:00.000Z`).
fn starts_with_time(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && line
            .split_whitespace()
            .next()
            .is_some_and(|t| t.ends_with('Z'))
}

#[test]
fn list_and_show_every_member_with_state_reason_and_notation() {
    let etcd = EtcdServer::start().expect("etcd");
    seed(&etcd, None);
    let coord = Coordinator::start(&etcd.endpoint(), &["--rate-limit", "0"]).expect("start");
    let admin = env(coord.url(), ADMIN_TOKEN);

    let (code, out, err) = run(&["list"], &admin);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.contains("c1")).expect("the cluster");
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells, ["a", "p", "c1", "n1", "2/3", "1", "off"], "{out}");
    assert!(
        out.starts_with("NAMESPACE  PROJECT  CLUSTER  PRIMARY  REPLICAS"),
        "{out}"
    );

    let (code, out, err) = run(&["show", C], &admin);
    assert_eq!(code, 0, "{err}");
    println!("{out}");
    assert!(out.contains("engine:      postgres\n"), "{out}");
    assert!(
        out.contains("failover:    held by cooldown until 2026-11-24T15:01:00.000Z"),
        "{out}"
    );
    let row = |id: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}: {out}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(out.contains("NODE  HOST"), "{out}");
    assert_eq!(
        row("n1")[..9],
        [
            "n1",
            "127.0.0.1:5432",
            "primary",
            "running",
            "-",
            "-",
            "-",
            "3",
            "0/11C88BB8"
        ]
    );
    assert_eq!(
        row("n2")[..10],
        [
            "n2",
            "127.0.0.1:5442",
            "replica",
            "streaming",
            "sync",
            "0",
            "B",
            "0.0",
            "3",
            "0/11C88BB8"
        ]
    );
    assert_eq!(row("n3")[..4], ["n3", "127.0.0.1:5452", "-", "stopped"]);
    let n4 = out.lines().find(|l| l.starts_with("n4 ")).expect("n4");
    assert!(
        n4.contains("catching up")
            && n4.contains("async")
            && n4.contains("12.4 MiB")
            && n4.contains("4.5")
            && n4.ends_with(
                "no: behind the primary by 12.4 MiB, more than max_lag_on_failover 1 MiB"
            ),
        "{n4}"
    );

    // Scripts get the same.
    let (code, out, _) = run(&["-o", "json", "show", C], &admin);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["engine"], "postgres");
    let members = v["members"].as_array().expect("members");
    let ids: Vec<&str> = members.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["n1", "n2", "n3", "n4"]);
    assert_eq!(members[2]["state"], "stopped");
    assert_eq!(members[2]["live"], false);
    assert_eq!(members[3]["ineligible"]["code"], "lagging");
    assert_eq!(members[3]["waiting"]["kind"], "cooldown");
    assert_eq!(members[1]["lsn"], "0/11C88BB8");
    let (_, out, _) = run(&["-o", "json", "list"], &admin);
    let v: Value = serde_json::from_str(&out).expect("json");
    let c = &v["clusters"][0];
    assert_eq!(
        (&c["primary"], &c["healthy_replicas"], &c["replicas"]),
        (&json!("n1"), &json!(2), &json!(3))
    );
    assert_eq!(c["has_primary"], true, "the old fields stay");

    // History and events with their own kinds and times.
    let (code, out, err) = run(&["history", C], &admin);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("2026-11-24T15:00:00.000Z")
                && l.contains("manual_failover")
                && l.contains("0/11C88BB8")),
        "{out}"
    );
    let (code, _, err) = run(&["pause", C, "--reason", "e2e"], &admin);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["events", C, "--since", "1"], &admin);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 5, "{out}");
    assert!(lines.iter().all(|l| starts_with_time(l)), "{out}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" maintenance ") && l.contains("maintenance on by")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" history ") && l.contains("manual_failover")),
        "{out}"
    );

    // --watch: a time line per drawing, no escape codes into a pipe.
    let mut child = Command::new(workspace_bin("autopilotctl"))
        .args(["show", C, "--watch", "1"])
        .env("AUTOPILOT_URL", coord.url())
        .env("AUTOPILOT_TOKEN", ADMIN_TOKEN)
        .env("HOME", "/nonexistent")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn autopilotctl --watch");
    std::thread::sleep(Duration::from_millis(2600));
    child.kill().expect("kill");
    let _ = child.wait();
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    let drawings = out
        .lines()
        .filter(|l| starts_with_time(l) && l.contains(&format!("autopilotctl show {C}")))
        .count();
    assert!(drawings >= 2, "{out}");
    assert_eq!(
        out.matches("cluster:     a/p/c1").count(),
        drawings,
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "escape codes into a pipe: {out:?}");
}

#[test]
fn node_verbs_write_requests_refuse_what_must_not_be_done_and_are_audited() {
    let etcd = EtcdServer::start().expect("etcd");
    let agent = fake_agent(CONFIG);
    seed(&etcd, Some(&agent));
    let coord = Coordinator::start(&etcd.endpoint(), &["--rate-limit", "0"]).expect("start");
    let api = Api::new(coord.url(), Some(ADMIN_TOKEN));
    let admin = env(coord.url(), ADMIN_TOKEN);
    let operator = env(coord.url(), &api.issue("ops", "operator", &["a"]));
    let viewer = env(coord.url(), &api.issue("eyes", "viewer", &["a"]));

    // reinit: a replica, once; never the primary; 404 for no member.
    let (code, out, err) = run(&["reinit", C, "n2"], &operator);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("reinit requested for n2")
            && out.contains(&format!("autopilotctl events {C} --since ")),
        "{out}"
    );
    let req = get(&etcd, "requests/n2").expect("requests/n2 written");
    assert_eq!(
        (&req["action"], &req["requested_by"]),
        (&json!("reinit"), &json!("ops"))
    );
    let (code, _, err) = run(&["reinit", C, "n2"], &operator);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("request_pending") && err.contains("reinit by ops"),
        "{err}"
    );
    let (code, _, err) = run(&["reinit", C, "n1"], &operator);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("node_is_primary") && err.contains("switch over first"),
        "{err}"
    );
    let (code, _, err) = run(&["reinit", C, "nope"], &operator);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("node_not_found"), "{err}");
    let (code, _, err) = run(&["reinit", C, "n2"], &viewer);
    assert_eq!(code, 3, "a viewer may not: {err}");
    let (code, out, err) = run(&["reinit", C, "n3"], &operator);
    assert_eq!(code, 0, "a stopped member rebuilds when it starts: {err}");
    assert!(out.contains("warning: \"n3\" has no live agent"), "{out}");
    let (_, out, _) = run(&["show", C], &admin);
    assert!(
        out.contains("request:     reinit n2 pending (by ops at "),
        "{out}"
    );
    let (code, out, err) = run(&["events", C, "--since", "1"], &admin);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| starts_with_time(l)
            && l.contains(" request ")
            && l.contains(" n2 ")
            && l.contains("reinit requested by ops")),
        "{out}"
    );

    // restart: not the primary (with the hint), not a node without an agent.
    let (code, _, err) = run(&["restart", C, "n1"], &operator);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains(&format!("autopilotctl switchover {C}")),
        "{err}"
    );
    let (code, _, err) = run(&["restart", C, "n4"], &operator);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        get(&etcd, "requests/n4").expect("requests/n4")["action"],
        "restart"
    );

    // reload: one node, or every live node (those with a request pending are skipped).
    let (code, out, err) = run(&["reload", C], &operator);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("reload requested for n1"), "{out}");
    assert!(
        out.contains("warning: \"n2\" skipped") && out.contains("warning: \"n4\" skipped"),
        "{out}"
    );
    assert_eq!(
        get(&etcd, "requests/n1").expect("requests/n1")["action"],
        "reload"
    );
    let (code, _, err) = run(&["reload", C, "n1"], &operator);
    assert_eq!(code, 5, "pending: {err}");
    let (code, _, err) = run(&["reload", C, "n3"], &operator);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("node_down"), "{err}");
    let (code, _, err) = run(&["reload", C], &operator);
    assert_eq!(code, 5, "every live node has a request pending: {err}");

    // remove: admin only, refused while the agent is alive, forgets a member that is gone.
    let (code, _, err) = run(&["remove", C, "n3"], &operator);
    assert_eq!(code, 3, "an operator may not remove: {err}");
    let (code, _, err) = run(&["remove", C, "n2"], &admin);
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("node_alive") && err.contains("stop its agent first"),
        "{err}"
    );
    let (code, out, err) = run(&["remove", C, "n3"], &admin);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("n3 forgotten"), "{out}");
    assert_eq!(get(&etcd, "members/n3"), None);
    assert_eq!(
        get(&etcd, "requests/n3"),
        None,
        "its pending request goes too"
    );
    assert_eq!(run(&["remove", C, "n3"], &admin).0, 4, "gone");
    let (_, out, _) = run(&["show", C], &admin);
    assert!(!out.lines().any(|l| l.starts_with("n3 ")), "{out}");

    // show-config: a viewer may; from the node's agent.
    let (code, out, err) = run(&["show-config", C, "n1"], &viewer);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "# n1: effective configuration from its agent at {agent}"
        )),
        "{out}"
    );
    assert!(out.contains("cooldown: 60s"), "{out}");
    let (code, out, _) = run(&["-o", "json", "show-config", C, "n1"], &viewer);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["config"]["failover"]["cooldown"], "60s");
    let (code, _, err) = run(&["show-config", C, "n4"], &viewer);
    assert_eq!(code, 7, "an agent that does not answer: {err}");
    assert!(
        err.contains("agent_unreachable") && err.contains("n4"),
        "{err}"
    );
    let (code, _, err) = run(&["show-config", C, "n2"], &viewer);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("no_agent_url"), "{err}");
    assert_eq!(run(&["show-config", C, "nope"], &viewer).0, 4);

    // Audited with who did it.
    let (_, a) = api.get("/v1/audit?limit=100");
    let recs = a["records"].as_array().expect("records");
    for (action, outcome) in [
        ("node.reinit", "ok"),
        ("node.reinit", "failed"),
        ("node.restart", "ok"),
        ("cluster.reload", "ok"),
        ("member.remove", "ok"),
        ("member.remove", "failed"),
    ] {
        assert!(
            recs.iter()
                .any(|r| r["action"] == action && r["outcome"] == outcome),
            "no {outcome} {action} record: {a}"
        );
    }
}

#[test]
fn papercuts() {
    let etcd = EtcdServer::start().expect("etcd");
    seed(&etcd, None);
    let coord = Coordinator::start(&etcd.endpoint(), &["--rate-limit", "0"]).expect("start");
    let admin = env(coord.url(), ADMIN_TOKEN);

    // The switchover's hint is a command that works as printed.
    let (code, out, err) = run(&["switchover", C, "--candidate", "n2"], &admin);
    assert_eq!(code, 0, "{err}");
    let hint = out
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in {out}"));
    assert!(
        hint.starts_with(&format!("autopilotctl events {C} --since ")),
        "{out}"
    );
    let args: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let (code, out, err) = run(&args, &admin);
    assert_eq!(code, 0, "{hint}: {err}");
    assert!(out.contains("switchover requested to n2 by"), "{out}");

    // The usage line never asks for what the environment gives.
    let (code, _, err) = run(&["show"], &admin);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Usage: autopilotctl show <CLUSTER>"), "{err}");
    assert!(!err.contains("--url") && !err.contains("--token"), "{err}");

    // --help describes autopilotctl.
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let first = out.lines().next().unwrap_or_default();
    assert!(first.starts_with("autopilotctl: the command line"), "{out}");
    assert!(!first.contains("The coordinator:"), "{out}");

    // A coordinator flag from its variable: a bad value is refused naming the flag.
    let bad = Command::new(workspace_bin("coordinator"))
        .args(["serve", "--etcd-endpoints", "http://127.0.0.1:1"])
        .env("AUTOPILOT_COORDINATOR_RATE_LIMIT", "fast")
        .output()
        .expect("run the coordinator");
    assert_eq!(bad.status.code(), Some(2), "clap refuses the value");
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(text.contains("--rate-limit"), "{text}");

    // No admin token and no etcd: warned at start; clients get plain text, never gRPC debug.
    let dead = TcpListener::bind("127.0.0.1:0").expect("a port");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("coordinator.log");
    let mut child = Command::new(workspace_bin("coordinator"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--etcd-endpoints",
            &dead_url,
        ])
        .env_remove("AUTOPILOT_ADMIN_TOKEN")
        .env_remove("AUTOPILOT_ADMIN_TOKEN_FILE")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn the coordinator");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("its address");
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if (text.contains("no admin token configured")
            && text.contains("etcd is unreachable at start"))
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("no admin token configured")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("etcd is unreachable at start")),
        "{text}"
    );
    assert!(!url.is_empty());
    let down = Coordinator::start(&dead_url, &[]).expect("start without etcd");
    let (code, _, err) = run(&["show", C], &env(down.url(), ADMIN_TOKEN));
    assert_eq!(code, 7, "etcd down: {err}");
    assert!(
        err.contains("store_unavailable") && err.contains("etcd may be down"),
        "{err}"
    );
    let (code, _, err) = run(&["list"], &env(down.url(), ADMIN_TOKEN));
    assert_eq!(code, 7, "{err}");
    let logged = down.log();
    let warned: Vec<&str> = text
        .lines()
        .chain(logged.lines())
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(!warned.is_empty(), "{logged}");
    for raw in ["tonic", "Status {", "source:", "ConnectError", "Os {"] {
        assert!(!err.contains(raw), "{raw} shown to the client: {err}");
        for l in &warned {
            assert!(!l.contains(raw), "{raw} in the log: {l}");
        }
    }
}

/// `autopilotctl restore` (issue 18): nothing without `--confirm`; exactly one point; admin
/// only; it turns maintenance on (reason `restore to …`) and writes the primary's request
/// with the point; a second one is refused while the first is pending; an operator's own
/// maintenance is kept; a request that cannot be written takes the maintenance back; audited.
#[test]
fn restore_asks_the_primary_under_maintenance_and_refuses_what_it_must() {
    let etcd = EtcdServer::start().expect("etcd");
    seed(&etcd, None);
    let coord = Coordinator::start(&etcd.endpoint(), &["--rate-limit", "0"]).expect("start");
    let api = Api::new(coord.url(), Some(ADMIN_TOKEN));
    let admin = env(coord.url(), ADMIN_TOKEN);
    let operator = env(coord.url(), &api.issue("ops", "operator", &["a"]));
    let t = "2026-11-24T14:30:00Z";

    let (code, _, err) = run(&["restore", C, "--time", t], &admin);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("every node"), "{err}");
    assert_eq!(get(&etcd, "maintenance"), None);
    assert_eq!(get(&etcd, "requests/n1"), None);
    assert_eq!(
        run(
            &["restore", C, "--time", t, "--latest", "--confirm"],
            &admin
        )
        .0,
        2
    );
    assert_eq!(run(&["restore", C, "--confirm"], &admin).0, 2);
    let (code, _, err) = run(
        &["restore", C, "--time", "2999-01-01T00:00:00Z", "--confirm"],
        &admin,
    );
    assert_ne!(code, 0, "a future time: {err}");
    assert!(err.contains("time_in_future"), "{err}");
    let (code, _, err) = run(&["restore", C, "--latest", "--confirm"], &operator);
    assert_eq!(code, 3, "admin only: {err}");
    assert_eq!(get(&etcd, "maintenance"), None);

    let (code, out, err) = run(&["restore", C, "--time", t, "--confirm"], &admin);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("n1"), "{out}");
    let m = get(&etcd, "maintenance").expect("maintenance on");
    assert_eq!(m["enabled"], true);
    assert!(
        m["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("restore to")),
        "{m}"
    );
    let req = get(&etcd, "requests/n1").expect("the primary's request");
    assert_eq!(req["action"], "restore");
    assert!(req["restore_to"]["time"].as_str().is_some(), "{req}");
    let (code, _, err) = run(&["restore", C, "--latest", "--confirm"], &admin);
    assert_eq!(code, 5, "pending: {err}");
    assert!(err.contains("request_pending"), "{err}");
    let (_, out, _) = run(&["show", C], &admin);
    assert!(out.contains("restore n1 pending"), "{out}");

    // An operator's own maintenance stays as it is.
    etcd.etcdctl(&["del", &format!("/autopilot/{C}/requests/n1")])
        .expect("del");
    put(
        &etcd,
        "maintenance",
        &json!({"schema": 1, "enabled": true, "reason": "kernel upgrade"}),
    );
    let (code, out, err) = run(&["restore", C, "--latest", "--confirm"], &admin);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("warning"), "{out}");
    assert_eq!(
        get(&etcd, "maintenance").expect("maintenance")["reason"],
        "kernel upgrade"
    );
    assert_eq!(
        get(&etcd, "requests/n1").expect("request")["restore_to"],
        "latest"
    );

    let (_, a) = api.get("/v1/audit?limit=100");
    let recs = a["records"].as_array().expect("records");
    for outcome in ["ok", "failed"] {
        assert!(
            recs.iter()
                .any(|r| r["action"] == "cluster.restore" && r["outcome"] == outcome),
            "no {outcome} cluster.restore record: {a}"
        );
    }
}
