//! The coordinator's backup routes and `autopilotctl backup` (issue 17) against a real etcd
//! and the real binaries, with the records written into etcd as the backup agents write
//! them: list (newest first, pending requests, unreadable keys) and show (the chain and the
//! manual restore instructions) through the API and the CLI (tables snapshotted); each
//! request (`backup`, `verify`, `test_restore`) read back from etcd; roles (a viewer may
//! read, not ask); the audit record of every mutating call; and bad input: an unknown
//! cluster, a malformed id, an unknown backup, a backup that is not done, empty or invalid
//! job names, broken JSON, a duplicate request.

mod common;

use std::time::Duration;

use common::*;
use e2e::harness::coordinator::{ADMIN_TOKEN, ctl};
use e2e::harness::etcd::EtcdServer;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const CLUSTER: &str = "a/p/c1";
const FULL: &str = "20261201T020000Z-0000000a";
const INC: &str = "20261202T020000Z-0000000b";
const FAILED: &str = "20261203T020000Z-0000000c";
const LOGICAL: &str = "20261130T010000Z-0000000d";

fn put(etcd: &EtcdServer, key: &str, value: &str) {
    etcd.etcdctl(&["put", &format!("/autopilot/{CLUSTER}/{key}"), value])
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// The document at the full key `key`, if any.
fn get(etcd: &EtcdServer, key: &str) -> Option<Value> {
    let out = etcd
        .etcdctl(&["get", "--print-value-only", key])
        .expect("etcdctl get");
    let line = out.lines().next()?.trim().to_owned();
    (!line.is_empty()).then(|| serde_json::from_str(&line).expect("a JSON document"))
}

/// How many `backup/requests/*` keys the cluster has.
fn requests(etcd: &EtcdServer) -> usize {
    etcd.etcdctl(&[
        "get",
        "--prefix",
        "--keys-only",
        &format!("/autopilot/{CLUSTER}/backup/requests/"),
    ])
    .expect("etcdctl get")
    .lines()
    .filter(|l| !l.trim().is_empty())
    .count()
}

fn record(id: &str, parent: Option<&str>, status: &str) -> Value {
    json!({
        "schema": 1, "id": id, "set_id": FULL, "parent_id": parent, "job": "nightly",
        "node": "n2", "engine": "mariadb", "engine_version": "10.11.19", "method": "physical",
        "type": if parent.is_some() { "incremental" } else { "full" },
        "status": status, "started": format!("{}-{}-{}T{}:{}:00.000Z",
            &id[..4], &id[4..6], &id[6..8], &id[9..11], &id[11..13]),
        "finished": if status == "done" { json!(format!("{}-{}-{}T{}:03:25.500Z",
            &id[..4], &id[4..6], &id[6..8], &id[9..11])) } else { Value::Null },
        "position": if status == "done" { json!("0-1-2143") } else { Value::Null },
        "size_plain": 3_221_225_472_u64, "size_stored": 1_288_490_189_u64,
        "repositories": ["offsite"], "databases": [], "streams": ["base"],
        "error": if status == "failed" { json!("mariadb-backup exited with status 1") } else { Value::Null },
        "verified": if id == FULL { json!("2026-12-01T06:00:00.000Z") } else { Value::Null },
    })
}

/// The cluster's records: a full and an incremental on it, a failed one, a logical full on
/// PostgreSQL's words (another job), and a key no reader can decode.
fn seed(etcd: &EtcdServer) {
    for (id, parent, status) in [
        (FULL, None, "done"),
        (INC, Some(FULL), "done"),
        (FAILED, Some(INC), "failed"),
    ] {
        put(
            etcd,
            &format!("backup/records/{id}"),
            &record(id, parent, status).to_string(),
        );
    }
    let mut logical = record(LOGICAL, None, "done");
    logical["job"] = json!("weekly-dump");
    logical["set_id"] = json!(LOGICAL);
    logical["method"] = json!("logical");
    logical["streams"] = json!(["db-shop", "users"]);
    logical["size_stored"] = json!(52_428_800);
    put(
        etcd,
        &format!("backup/records/{LOGICAL}"),
        &logical.to_string(),
    );
    put(etcd, "backup/records/20261204T020000Z-0000000e", "not json");
}

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

#[test]
fn backups_are_listed_shown_requested_refused_and_audited() {
    let w = world(&[
        "--rate-limit",
        "0",
        "--client-failure-rate",
        "0",
        "--audit-denial-window",
        "0s",
    ]);
    seed(&w.etcd);
    let viewer = w.coord.api(Some(&w.root.issue("eyes", "viewer", &["a"])));
    let operator = w.coord.api(Some(&w.root.issue("ops", "operator", &["a"])));
    let base = format!("{C1}/backups");

    // List: newest first, the undecodable key named, no request yet.
    let (s, v) = viewer.get(&base);
    assert_eq!(s, 200, "{v}");
    let ids: Vec<&str> = v["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    assert_eq!(ids, [FAILED, INC, FULL, LOGICAL], "{v}");
    assert_eq!(
        v["unreadable"],
        json!(["backup/records/20261204T020000Z-0000000e"])
    );
    assert_eq!(v["requests"], json!([]));
    assert!(v["revision"].as_i64().is_some_and(|r| r > 0), "{v}");

    // Show: the record, the chain (the full first) and the manual instructions.
    let (s, v) = viewer.get(&format!("{base}/{INC}"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["backup"]["id"], INC);
    assert_eq!(v["chain"], json!([FULL, INC]));
    let text = v["instructions"].as_str().expect("instructions");
    for needle in [
        "aws s3 cp --recursive",
        "sha256sum -c -",
        &format!(
            "cat \"$WORK/{FULL}/data/base/\"*.age | age -d -i \"$KEY\" | zstd -d | mbstream -x -C \"$WORK/full\""
        ),
        "mariadb-backup --prepare --target-dir=\"$WORK/full\" --incremental-dir=\"$WORK/inc-1\"",
        "repository \"offsite\"",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let (s, v) = viewer.get(&format!("{base}/{FAILED}"));
    assert_eq!(s, 200, "{v}");
    assert!(
        v["instructions"]
            .as_str()
            .is_some_and(|t| t.contains("# WARNING: 20261203T020000Z-0000000c is failed")),
        "{v}"
    );

    // Reads of what is not there.
    let (s, v) = viewer.get(&format!("{base}/nope"));
    assert_eq!(s, 400);
    assert_problem(400, &v, "invalid_backup_id", "malformed id");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("20261203T153000Z-1a2b3c4d") && d.contains("\"nope\"")),
        "{v}"
    );
    let unknown = "20261205T020000Z-0000000f";
    let (s, v) = viewer.get(&format!("{base}/{unknown}"));
    assert_eq!(s, 404);
    assert_problem(404, &v, "backup_not_found", "unknown backup");
    assert!(
        v["detail"].as_str().is_some_and(|d| d.contains(unknown)),
        "{v}"
    );
    for path in [
        "/v1/clusters/a/p/zz/backups".to_owned(),
        format!("/v1/clusters/a/p/zz/backups/{FULL}"),
        "/v1/clusters/b/p/c2/backups".to_owned(), // another namespace: not visible
    ] {
        let (s, v) = viewer.get(&path);
        assert_eq!(s, 404, "{path}: {v}");
        assert_problem(404, &v, "cluster_not_found", &path);
    }
    // A cluster without backups lists none (it exists: no 404).
    let (s, v) = w.root.get("/v1/clusters/b/p/c2/backups");
    assert_eq!((s, &v["backups"]), (200, &json!([])), "{v}");

    // A viewer may not ask; the refusal is audited.
    let (s, v) = viewer.call("POST", &base, Some(&json!({"job": "nightly"})));
    assert_eq!(s, 403, "{v}");
    let rec = newest_audit(&w.root);
    assert_eq!(
        (&rec["action"], &rec["outcome"], &rec["status"]),
        (&json!("backup.run"), &json!("denied"), &json!(403)),
        "{rec}"
    );
    for verb in ["verify", "test-restore"] {
        let (s, v) = viewer.call("POST", &format!("{base}/{FULL}/{verb}"), None);
        assert_eq!(s, 403, "{verb}: {v}");
    }
    assert_eq!(requests(&w.etcd), 0, "nothing written for a viewer");

    // A backup now: the request in etcd, the answer names it, the audit record too.
    let (s, v) = operator.call("POST", &base, Some(&json!({"job": "nightly"})));
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().expect("request id").to_owned();
    let key = v["key"].as_str().expect("key").to_owned();
    assert_eq!(key, format!("/autopilot/{CLUSTER}/backup/requests/{id}"));
    assert_eq!(
        (&v["action"], &v["job"]),
        (&json!("backup"), &json!("nightly"))
    );
    let doc = get(&w.etcd, &key).expect("the request is written");
    assert_eq!(
        (
            &doc["schema"],
            &doc["action"],
            &doc["job"],
            &doc["requested_by"]
        ),
        (
            &json!(1),
            &json!("backup"),
            &json!("nightly"),
            &json!("ops")
        ),
        "{doc}"
    );
    assert!(doc.get("backup_id").is_none(), "{doc}");
    assert!(doc["time"].is_string(), "{doc}");
    let rec = newest_audit(&w.root);
    assert_eq!(
        (
            &rec["action"],
            &rec["outcome"],
            &rec["status"],
            &rec["target"]
        ),
        (
            &json!("backup.run"),
            &json!("ok"),
            &json!(202),
            &json!(CLUSTER)
        ),
        "{rec}"
    );
    assert_eq!(rec["detail"], format!("request={id} job=nightly"), "{rec}");
    // The same again while it is pending: refused, audited as failed.
    let (s, v) = operator.call("POST", &base, Some(&json!({"job": "nightly"})));
    assert_eq!(s, 409, "{v}");
    assert_problem(409, &v, "request_pending", "duplicate");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains(&id)), "{v}");
    let rec = newest_audit(&w.root);
    assert_eq!(
        (&rec["action"], &rec["outcome"], &rec["code"]),
        (
            &json!("backup.run"),
            &json!("failed"),
            &json!("request_pending")
        ),
        "{rec}"
    );

    // Bad bodies name the field.
    for (body, code, needle) in [
        (&b"{}"[..], "invalid_body", "job is required"),
        (&b""[..], "invalid_body", "job is required"),
        (br#"{"job":""}"#, "invalid_body", "job \"\" is empty"),
        (br#"{"job":"Nightly"}"#, "invalid_body", "job \"Nightly\""),
        (br#"{"job":"a/b"}"#, "invalid_body", "job \"a/b\""),
        (br#"{"job":7}"#, "invalid_body", "job must be a string"),
        (br#"{"job":null}"#, "invalid_body", "job is required"),
        (br#"{"job":"x","when":"now"}"#, "invalid_body", "when"),
        (br#"{"job":"#, "invalid_json", "not valid JSON"),
    ] {
        let (s, v) = operator.raw("POST", &base, Some(body.to_vec()));
        let ctx = String::from_utf8_lossy(body).into_owned();
        assert_eq!(s, 400, "{ctx}: {v}");
        assert_problem(400, &v, code, &ctx);
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains(needle)),
            "{ctx}: {v}"
        );
    }
    let (s, v) = operator.call(
        "POST",
        "/v1/clusters/a/p/zz/backups",
        Some(&json!({"job": "nightly"})),
    );
    assert_eq!(s, 404, "{v}");
    assert_problem(404, &v, "cluster_not_found", "run on an unknown cluster");

    // Verify and test restore: a recorded, done backup only.
    let mut asked = vec![id];
    for (verb, action, backup) in [
        ("verify", "verify", INC),
        ("test-restore", "test_restore", FULL),
    ] {
        let (s, v) = operator.call("POST", &format!("{base}/{backup}/{verb}"), None);
        assert_eq!(s, 202, "{verb}: {v}");
        let doc = get(&w.etcd, v["key"].as_str().expect("key")).expect("written");
        assert_eq!(
            (&doc["action"], &doc["backup_id"], &doc["requested_by"]),
            (&json!(action), &json!(backup), &json!("ops")),
            "{doc}"
        );
        assert!(doc.get("job").is_none(), "{doc}");
        let rec = newest_audit(&w.root);
        let audit = if verb == "verify" {
            "backup.verify"
        } else {
            "backup.test_restore"
        };
        assert_eq!(
            (&rec["action"], &rec["outcome"]),
            (&json!(audit), &json!("ok")),
            "{rec}"
        );
        assert_eq!(
            rec["detail"],
            format!("request={} backup={backup}", v["id"].as_str().expect("id"))
        );
        asked.push(v["id"].as_str().expect("id").to_owned());
        let (s, v) = operator.call("POST", &format!("{base}/{backup}/{verb}"), None);
        assert_eq!(s, 409, "{verb} twice: {v}");
        assert_problem(409, &v, "request_pending", verb);
    }
    for (path, status, code) in [
        (format!("{base}/{unknown}/verify"), 404, "backup_not_found"),
        (format!("{base}/{FAILED}/verify"), 409, "backup_not_done"),
        (
            format!("{base}/not-an-id/test-restore"),
            400,
            "invalid_backup_id",
        ),
        (
            format!("/v1/clusters/a/p/zz/backups/{FULL}/verify"),
            404,
            "cluster_not_found",
        ),
    ] {
        let (s, v) = operator.call("POST", &path, None);
        assert_eq!(s, status, "{path}: {v}");
        assert_problem(status, &v, code, &path);
        let rec = newest_audit(&w.root);
        assert_eq!(
            (&rec["outcome"], &rec["code"]),
            (&json!("failed"), &json!(code)),
            "{path}: {rec}"
        );
    }

    // The list shows the three pending requests, oldest first.
    let (_, v) = viewer.get(&base);
    let pending: Vec<&str> = v["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(pending, asked, "{v}");
    assert_eq!(requests(&w.etcd), 3);
    assert_eq!(v["requests"][1]["action"], "verify");
    assert_eq!(v["requests"][1]["backup_id"], INC);
}

#[test]
fn autopilotctl_backup_lists_shows_and_requests() {
    let w = world(&["--rate-limit", "0"]);
    seed(&w.etcd);
    let admin = env(w.coord.url(), ADMIN_TOKEN);
    let viewer = env(w.coord.url(), &w.root.issue("eyes", "viewer", &["a"]));
    let operator = env(w.coord.url(), &w.root.issue("ops", "operator", &["a"]));

    let (code, out, err) = run(&["backup", "list", CLUSTER], &viewer);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("backup_list", out);
    let (code, out, err) = run(&["backup", "show", CLUSTER, INC], &viewer);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("backup_show_incremental", out);
    let (code, out, err) = run(&["backup", "show", CLUSTER, LOGICAL], &viewer);
    assert_eq!(code, 0, "{err}");
    // Each database dump creates its database; the accounts load last.
    let shop = out
        .find("data/db-shop/")
        .expect("the db-shop stream is loaded");
    let users = out.find("data/users/").expect("the users stream is loaded");
    assert!(shop < users, "{out}");

    // Scripts get the API's JSON.
    let (code, out, _) = run(&["-o", "json", "backup", "list", CLUSTER], &viewer);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["backups"][0]["id"], FAILED);
    let (code, out, _) = run(&["-o", "json", "backup", "show", CLUSTER, FULL], &viewer);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["chain"], json!([FULL]));

    // Requests, with the command that follows them.
    let (code, out, err) = run(&["backup", "run", CLUSTER, "--job", "nightly"], &operator);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("backup of job nightly requested (request 2")
            && out.contains(&format!("`autopilotctl events {CLUSTER} --since ")),
        "{out}"
    );
    let (code, out, err) = run(&["backup", "verify", CLUSTER, FULL], &operator);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("verify of backup {FULL} requested")),
        "{out}"
    );
    let (code, out, err) = run(&["backup", "test-restore", CLUSTER, INC], &operator);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("test restore of backup {INC} requested")),
        "{out}"
    );
    let (code, out, err) = run(&["backup", "list", CLUSTER], &admin);
    assert_eq!(code, 0, "{err}");
    for needle in [
        "request:     backup of job nightly pending (request 2",
        &format!("request:     verify of {FULL} pending"),
        &format!("request:     test restore of {INC} pending"),
        "by ops at 2",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }

    // Exit codes as the other commands use them.
    for (args, env, want) in [
        (
            vec!["backup", "run", CLUSTER, "--job", "nightly"],
            &viewer,
            3,
        ), // role
        (
            vec!["backup", "run", CLUSTER, "--job", "nightly"],
            &operator,
            5,
        ), // pending
        (vec!["backup", "run", CLUSTER, "--job", "Bad"], &operator, 6),
        (vec!["backup", "show", CLUSTER, "bad-id"], &viewer, 6),
        (
            vec!["backup", "show", CLUSTER, "20261205T020000Z-0000000f"],
            &viewer,
            4,
        ),
        (vec!["backup", "verify", CLUSTER, FAILED], &operator, 5),
        (vec!["backup", "list", "a/p/zz"], &viewer, 4),
        (vec!["backup", "list", "a/p"], &viewer, 2),
        (vec!["backup", "run", CLUSTER], &operator, 2), // --job is required
    ] {
        let (code, _, err) = run(&args, env);
        assert_eq!(code, want, "{args:?}: {err}");
        if want != 2 {
            assert!(err.contains("HTTP "), "{args:?}: {err}");
        }
    }
}
