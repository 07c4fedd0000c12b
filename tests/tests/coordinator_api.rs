//! End-to-end tests of the coordinator's API against a real etcd and the real `coordinator`
//! binary: every endpoint with every role (allowed, denied, audit record), namespace
//! isolation, expired and revoked tokens, and audit retention. See also
//! `coordinator_robustness.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use e2e::harness::coordinator::{ADMIN_TOKEN, Api, Coordinator, token_id};
use e2e::harness::util::{eventually, hold};
use serde_json::{Value, json};

#[test]
fn every_endpoint_with_each_role_is_allowed_denied_and_audited() {
    // Every refusal is checked on its own record here: no per-address failure budget and no
    // aggregation (both are tested in coordinator_abuse.rs).
    let w = world(&[
        "--rate-limit",
        "0",
        "--client-failure-rate",
        "0",
        "--audit-denial-window",
        "0s",
    ]);
    let viewer = w.root.issue("v", "viewer", &["a"]);
    let operator = w.root.issue("o", "operator", &["a"]);
    let admin_a = w.root.issue("ad", "admin", &["a"]);
    let (s, v) = w.coord.api(Some(&operator)).call(
        "POST",
        "/v1/agents/register",
        Some(&json!({"namespace":"a","project":"p","cluster":"c1","node":"n1"})),
    );
    assert_eq!(s, 201, "{v}");
    let agent = v["token"].as_str().expect("agent token").to_owned();
    assert_eq!(v["info"]["role"], "agent");
    // (name, token, rank): agent 1, viewer 2, operator 3, admin 4.
    let callers: Vec<(&str, Option<String>, u8)> = vec![
        ("none", None, 0),
        ("agent", Some(agent), 1),
        ("viewer", Some(viewer), 2),
        ("operator", Some(operator), 3),
        ("admin_a", Some(admin_a), 4),
        ("root", Some(ADMIN_TOKEN.to_owned()), 4),
    ];
    struct Ep {
        method: &'static str,
        path: String,
        body: Option<Value>,
        need: u8,
        ok: u16,
        action: &'static str,
        mutating: bool,
    }
    let ep = |method, path: &str, body, need, ok, action, mutating| Ep {
        method,
        path: path.to_owned(),
        body,
        need,
        ok,
        action,
        mutating,
    };
    let mut eps = vec![
        ep("GET", "/v1/clusters", None, 1, 200, "cluster.list", false),
        ep("GET", C1, None, 1, 200, "cluster.get", false),
        ep(
            "GET",
            &format!("{C1}/nodes"),
            None,
            1,
            200,
            "cluster.nodes",
            false,
        ),
        ep(
            "GET",
            &format!("{C1}/nodes/n2"),
            None,
            1,
            200,
            "cluster.node",
            false,
        ),
        ep(
            "GET",
            &format!("{C1}/primary"),
            None,
            1,
            200,
            "cluster.primary",
            false,
        ),
        ep(
            "GET",
            &format!("{C1}/history"),
            None,
            1,
            200,
            "cluster.history",
            false,
        ),
        ep(
            "PUT",
            &format!("{C1}/maintenance"),
            Some(json!({"enabled": false, "reason": "test"})),
            3,
            200,
            "cluster.maintenance",
            true,
        ),
        ep(
            "POST",
            &format!("{C1}/switchover"),
            Some(json!({"candidate": "n2"})),
            3,
            202,
            "cluster.switchover",
            true,
        ),
        ep(
            "POST",
            &format!("{C1}/failover"),
            Some(json!({"candidate": "n2"})),
            4,
            202,
            "cluster.failover",
            true,
        ),
        ep(
            "POST",
            "/v1/tokens",
            Some(json!({"name": "x", "role": "viewer", "namespaces": ["a"]})),
            4,
            201,
            "token.create",
            true,
        ),
        ep("GET", "/v1/tokens", None, 4, 200, "token.list", false),
        ep(
            "POST",
            "/v1/agents/register",
            Some(json!({"namespace":"a","project":"p","cluster":"c1","node":"n2"})),
            3,
            201,
            "agent.register",
            true,
        ),
        ep("GET", "/v1/audit", None, 4, 200, "audit.list", false),
    ];
    // One revocable token per caller, so revocation can be tried by each.
    for (name, _, _) in &callers {
        let t = w.root.issue(&format!("victim-{name}"), "viewer", &["a"]);
        eps.push(ep(
            "DELETE",
            &format!("/v1/tokens/{}", token_id(&t)),
            None,
            4,
            200,
            "token.revoke",
            true,
        ));
    }
    let mut checked = 0;
    for e in &eps {
        for (name, token, rank) in &callers {
            let before = newest_audit(&w.root)["id"].clone();
            let api = Api::new(w.coord.url(), token.as_deref());
            let (s, v) = api.call(e.method, &e.path, e.body.as_ref());
            let ctx = format!("{} {} as {name}", e.method, e.path);
            let allowed = *rank >= e.need;
            if allowed {
                assert_eq!(s, e.ok, "{ctx}: {v}");
            } else if token.is_none() {
                assert_problem(401, &v, "token_missing", &ctx);
            } else {
                assert_problem(403, &v, "forbidden", &ctx);
            }
            let rec = newest_audit(&w.root);
            if allowed && !e.mutating {
                assert_eq!(
                    rec["id"], before,
                    "{ctx}: an allowed read must not be audited"
                );
            } else {
                assert_ne!(rec["id"], before, "{ctx}: no audit record");
                assert_eq!(rec["action"], e.action, "{ctx}: {rec}");
                assert_eq!(rec["status"], s, "{ctx}: {rec}");
                assert_eq!(
                    rec["outcome"],
                    if allowed { "ok" } else { "denied" },
                    "{ctx}: {rec}"
                );
                assert!(
                    rec["client"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("127.0.0.1:")),
                    "{rec}"
                );
                assert!(rec["time"].is_string(), "{rec}");
                match token {
                    Some(t) if t == ADMIN_TOKEN => assert_eq!(rec["token_id"], "admin"),
                    Some(t) => assert_eq!(rec["token_id"], token_id(t), "{ctx}: {rec}"),
                    None => assert!(rec["token_id"].is_null(), "{rec}"),
                }
                if token.is_some() {
                    assert!(rec["role"].is_string(), "{ctx}: {rec}");
                }
            }
            if allowed && matches!(e.action, "cluster.switchover" | "cluster.failover") {
                w.etcd
                    .etcdctl(&["del", "/autopilot/a/p/c1/switchover"])
                    .expect("del");
            }
            checked += 1;
        }
    }
    println!("{checked} endpoint × role combinations checked");
    // The audit log holds no secret: neither token strings nor hashes.
    let (_, all) = w.root.get("/v1/audit?limit=1000");
    let text = all.to_string();
    assert!(
        !text.contains("apt_") && !text.contains("sha256:"),
        "a secret in the audit log"
    );
    assert!(
        !w.coord.log().contains(ADMIN_TOKEN),
        "the admin token is in the log"
    );
    assert!(
        !w.coord.log().contains("sha256:"),
        "a token hash is in the log"
    );
}

#[test]
fn a_namespace_token_sees_nothing_of_another_namespace() {
    let w = world(&[]);
    let op_b = w.root.issue("ob", "operator", &["b"]);
    let api = w.coord.api(Some(&op_b));
    let (s, v) = api.get("/v1/clusters");
    assert_eq!(s, 200);
    let names: Vec<String> = v["clusters"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            format!(
                "{}/{}/{}",
                c["namespace"].as_str().unwrap_or(""),
                c["project"].as_str().unwrap_or(""),
                c["cluster"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, vec!["b/p/c2"]);
    let (s, v) = api.get("/v1/clusters?namespace=a");
    assert_eq!(
        (s, v["clusters"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    // B's own cluster works; A's answers exactly like a cluster that does not exist.
    assert_eq!(api.get("/v1/clusters/b/p/c2").0, 200);
    let (s_hidden, hidden) = api.get(C1);
    let (s_none, none) = api.get("/v1/clusters/b/p/nope");
    assert_eq!((s_hidden, s_none), (404, 404));
    assert_eq!(hidden["code"], none["code"]);
    assert_eq!(hidden["code"], "cluster_not_found");
    for path in ["nodes", "nodes/n1", "primary", "history"] {
        let (s, v) = api.get(&format!("{C1}/{path}"));
        assert_problem(s, &v, "cluster_not_found", path);
        assert_eq!(s, 404);
    }
    let (s, _) = e2e::harness::coordinator::sse(
        w.coord.url(),
        &op_b,
        &format!("{C1}/events"),
        Duration::from_secs(2),
    );
    assert_eq!(s, 404, "events of a hidden cluster");
    for (m, p, b) in [
        ("POST", "switchover", json!({})),
        ("PUT", "maintenance", json!({"enabled": true})),
    ] {
        let (s, v) = api.call(m, &format!("{C1}/{p}"), Some(&b));
        assert_eq!(s, 404, "{p}: {v}");
        let rec = newest_audit(&w.root);
        assert_eq!(
            (rec["outcome"].as_str(), rec["status"].as_u64()),
            (Some("denied"), Some(404)),
            "{rec}"
        );
    }
    let (s, _) = api.call(
        "POST",
        "/v1/agents/register",
        Some(&json!({"namespace":"a","project":"p","cluster":"c1","node":"x"})),
    );
    assert_eq!(s, 404, "registering into a hidden namespace");
    assert!(
        w.etcd
            .etcdctl(&["get", "/autopilot/a/p/c1/maintenance"])
            .expect("get")
            .is_empty()
    );
    // A scoped admin cannot mint tokens for other namespaces, and lists only its own tokens.
    let admin_b = w.root.issue("adb", "admin", &["b"]);
    let api = w.coord.api(Some(&admin_b));
    let (s, v) = api.call(
        "POST",
        "/v1/tokens",
        Some(&json!({"name":"x","role":"viewer","namespaces":["a"]})),
    );
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, v) = api.call(
        "POST",
        "/v1/tokens",
        Some(&json!({"name":"x","role":"viewer","namespaces":["*"]})),
    );
    assert_eq!(s, 403, "{v}");
    let (_, v) = api.get("/v1/tokens");
    for t in v["tokens"].as_array().expect("tokens") {
        assert_eq!(t["namespaces"], json!(["b"]), "{t}");
    }
    // An agent token sees its cluster only.
    let (_, v) = w.root.call(
        "POST",
        "/v1/agents/register",
        Some(&json!({"namespace":"a","project":"p","cluster":"c1","node":"n1"})),
    );
    let agent = w.coord.api(v["token"].as_str());
    let (_, v) = agent.get("/v1/clusters");
    assert_eq!(v["clusters"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(agent.get("/v1/clusters/b/p/c2").0, 404);
    assert_eq!(agent.get(C1).0, 200);
}

#[test]
fn expired_and_revoked_tokens_are_refused_by_every_coordinator() {
    let w = world(&["--token-cache", "1s"]);
    let other = Coordinator::start(&w.etcd.endpoint(), &["--token-cache", "1s"]).expect("second");
    let (s, v) = w.root.call(
        "POST",
        "/v1/tokens",
        Some(&json!({"name":"short","role":"viewer","namespaces":["a"],"expires_in_seconds":1})),
    );
    assert_eq!(s, 201, "{v}");
    let short = v["token"].as_str().expect("token").to_owned();
    assert_eq!(Api::new(w.coord.url(), Some(&short)).get(C1).0, 200);
    // The token's one second passes; `other` has not seen it before it expired.
    hold(Duration::from_millis(1100));
    let (s, v) = Api::new(other.url(), Some(&short)).get(C1);
    assert_eq!((s, v["code"].as_str()), (401, Some("token_expired")), "{v}");
    let rec = newest_audit(&w.root);
    assert_eq!(
        (rec["outcome"].as_str(), rec["code"].as_str()),
        (Some("denied"), Some("token_expired")),
        "{rec}"
    );
    assert_eq!(rec["token_id"], token_id(&short));

    let t = w.root.issue("victim", "operator", &["a"]);
    let (a, b) = (
        Api::new(w.coord.url(), Some(&t)),
        Api::new(other.url(), Some(&t)),
    );
    assert_eq!((a.get(C1).0, b.get(C1).0), (200, 200));
    let t0 = Instant::now();
    let (s, v) = w
        .root
        .call("DELETE", &format!("/v1/tokens/{}", token_id(&t)), None);
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")), "{v}");
    // Refused by both coordinators within the cache time (1 s) plus slack.
    let refused = eventually(Duration::from_secs(3), Duration::from_millis(50), || {
        let (sa, va) = a.get(C1);
        let (sb, vb) = b.get(C1);
        (sa == 401 && sb == 401).then_some((va, vb))
    });
    let (va, vb) = refused.expect("the revoked token still works somewhere after 3 s");
    println!(
        "revocation reached both coordinators after {:?}",
        t0.elapsed()
    );
    assert_eq!(
        (va["code"].as_str(), vb["code"].as_str()),
        (Some("token_revoked"), Some("token_revoked"))
    );
    let (s, v) = w
        .root
        .call("DELETE", &format!("/v1/tokens/{}", token_id(&t)), None);
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("revoked")),
        "revoking twice: {v}"
    );
    let (_, list) = w.root.get("/v1/tokens");
    let listed = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|x| x["id"] == token_id(&t))
        .cloned()
        .expect("listed");
    assert_eq!(listed["status"], "revoked");
    assert!(
        listed.get("hash").is_none(),
        "a hash in the token list: {listed}"
    );
}

#[test]
fn audit_records_older_than_the_retention_are_pruned() {
    let w = world(&["--audit-retention", "2s", "--audit-prune-interval", "1s"]);
    let (s, _) = Api::new(w.coord.url(), None).get(C1);
    assert_eq!(s, 401);
    let rec = newest_audit(&w.root);
    assert_eq!(rec["code"], "token_missing", "{rec}");
    let id = rec["id"].as_str().expect("id").to_owned();
    let key = format!("/autopilot/_coordinator/audit/{id}");
    assert!(
        !w.etcd.etcdctl(&["get", &key]).expect("get").is_empty(),
        "the record is in etcd under {key}"
    );
    let gone = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        w.etcd.etcdctl(&["get", &key]).ok().filter(|o| o.is_empty())
    });
    assert!(
        gone.is_some(),
        "the record outlived the retention\n{}",
        w.coord.log()
    );
}
