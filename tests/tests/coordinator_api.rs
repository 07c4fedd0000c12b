//! End-to-end tests of the coordinator's API against a real etcd and the real `coordinator`
//! binary: every endpoint with every role (allowed, denied, audit record), namespace
//! isolation, bad input, expired and revoked tokens, rate limits, etcd outages, TLS, event
//! streams, and two coordinators over one etcd (one killed mid-request).

use std::time::{Duration, Instant};

use e2e::coordinator::{ADMIN_TOKEN, Api, Coordinator, seed_node, sse, token_id, wait_event};
use e2e::etcd::{EtcdServer, TlsFiles};
use e2e::util::eventually;
use serde_json::{Value, json};

const C1: &str = "/v1/clusters/a/p/c1";

/// etcd, a coordinator, and two fake clusters: `a/p/c1` (n1 primary at offset 10, n2 at 10,
/// n3 behind at 5) and `b/p/c2` (m1 primary).
struct World {
    etcd: EtcdServer,
    coord: Coordinator,
    root: Api,
}

fn world(extra: &[&str]) -> World {
    let etcd = EtcdServer::start().expect("start etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 10);
    seed_node(&etcd, "a/p/c1", "n2", false, 10);
    seed_node(&etcd, "a/p/c1", "n3", false, 5);
    seed_node(&etcd, "b/p/c2", "m1", true, 3);
    let coord = Coordinator::start(&etcd.endpoint(), extra).expect("start the coordinator");
    let root = coord.api(Some(ADMIN_TOKEN));
    World { etcd, coord, root }
}

/// The newest audit record (read with the root admin token, which is not audited).
fn newest_audit(root: &Api) -> Value {
    let (s, v) = root.get("/v1/audit?limit=1");
    assert_eq!(s, 200, "{v}");
    v["records"][0].clone()
}

fn assert_problem(status: u16, v: &Value, code: &str, ctx: &str) {
    assert_eq!(v["code"], code, "{ctx}: {status} {v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| d.len() > 10),
        "{ctx}: a problem needs a detail that says what to do: {v}"
    );
    assert_eq!(v["status"], status, "{ctx}: {v}");
}

#[test]
fn every_endpoint_with_each_role_is_allowed_denied_and_audited() {
    let w = world(&["--rate-limit", "0"]);
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
    let (s, _) = e2e::coordinator::sse(
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
fn bad_input_gets_clear_problems_and_never_a_panic() {
    let w = world(&["--body-limit", "4096", "--rate-limit", "0"]);
    let api = &w.root;
    let body = |b: &[u8]| Some(b.to_vec());
    /// (method, path, body, status, code)
    type Case<'a> = (&'a str, String, Option<Vec<u8>>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", format!("{C1}/switchover"), body(b"{"), 400, "invalid_json"),
        ("POST", format!("{C1}/switchover"), body(b"[1,2"), 400, "invalid_json"),
        ("POST", format!("{C1}/switchover"), body(b"\xff\xfe"), 400, "invalid_json"),
        ("POST", format!("{C1}/switchover"), body(br#"{"candidate":"n2","extra":1}"#), 400, "invalid_body"),
        ("POST", format!("{C1}/switchover"), body(br#"{"candidate":5}"#), 400, "invalid_body"),
        ("POST", format!("{C1}/failover"), body(b"{}"), 400, "invalid_body"),
        ("PUT", format!("{C1}/maintenance"), body(br#"{"enabled":"yes"}"#), 400, "invalid_body"),
        ("PUT", format!("{C1}/maintenance"), Some(vec![b'a'; 16 << 10]), 413, "body_too_large"),
        ("POST", "/v1/tokens".into(), Some(format!(r#"{{"name":"{}","role":"viewer","namespaces":["a"]}}"#, "x".repeat(8192)).into_bytes()), 413, "body_too_large"),
        ("POST", "/v1/tokens".into(), body(br#"{"name":"x","role":"god","namespaces":["a"]}"#), 400, "invalid_role"),
        ("POST", "/v1/tokens".into(), body(br#"{"name":"x","role":"viewer","namespaces":[]}"#), 400, "invalid_scope"),
        ("POST", "/v1/tokens".into(), body(br#"{"name":"x","role":"viewer","namespaces":["a/b"]}"#), 400, "invalid_scope"),
        ("POST", "/v1/tokens".into(), body(br#"{"name":"","role":"viewer","namespaces":["a"]}"#), 400, "invalid_body"),
        ("POST", "/v1/tokens".into(), body(br#"{"name":"x","role":"viewer","namespaces":["a"],"expires_in_seconds":0}"#), 400, "invalid_body"),
        ("POST", "/v1/tokens".into(), body(br#"{"name":"x","role":"viewer","namespaces":["a"],"expires_in_seconds":18446744073709551615}"#), 400, "invalid_body"),
        ("POST", "/v1/agents/register".into(), body(br#"{"namespace":"a"}"#), 400, "invalid_body"),
        ("POST", "/v1/agents/register".into(), body(br#"{"namespace":"_x","project":"p","cluster":"c","node":"n"}"#), 400, "invalid_body"),
        ("GET", "/v1/clusters/a/p".into(), None, 404, "route_not_found"),
        ("GET", "/v1/nope".into(), None, 404, "route_not_found"),
        ("GET", format!("/v1/clusters/a/p/{}", "x".repeat(5000)), None, 404, "cluster_not_found"),
        ("GET", "/v1/clusters/a/p/c%2F1".into(), None, 404, "cluster_not_found"),
        ("GET", "/v1/clusters/a/p/%FF".into(), None, 400, "invalid_path"),
        ("GET", "/v1/clusters/_coordinator/tokens/x".into(), None, 404, "cluster_not_found"),
        ("GET", format!("{C1}/nodes/zz"), None, 404, "node_not_found"),
        ("GET", "/v1/clusters?limit=3".into(), None, 400, "invalid_query"),
        ("GET", "/v1/audit?limit=abc".into(), None, 400, "invalid_query"),
        ("GET", "/v1/audit?limit=0".into(), None, 400, "invalid_query"),
        ("GET", format!("{C1}/events?since=-5"), None, 400, "invalid_query"),
        ("DELETE", "/v1/tokens/not-a-token".into(), None, 404, "token_not_found"),
        ("DELETE", "/v1/tokens/0123456789abcdef".into(), None, 404, "token_not_found"),
        ("PATCH", C1.into(), None, 405, "method_not_allowed"),
        ("POST", format!("{C1}/switchover"), body(br#"{"candidate":"zz"}"#), 409, "candidate_not_found"),
        ("POST", format!("{C1}/switchover"), body(br#"{"candidate":"n1"}"#), 409, "candidate_is_primary"),
        ("POST", format!("{C1}/failover"), body(br#"{"candidate":"n3"}"#), 409, "candidate_behind"),
        ("POST", "/v1/clusters/a/p/missing/switchover".into(), body(b"{}"), 404, "cluster_not_found"),
    ];
    for (m, path, b, status, code) in &cases {
        let (s, v) = api.raw(m, path, b.clone());
        let short: String = path.chars().take(80).collect();
        assert_eq!(s, *status, "{m} {short}: {v}");
        assert_problem(s, &v, code, &format!("{m} {short}"));
    }
    // A huge body: refused (413) or the connection closed before it was all sent; either way
    // the coordinator lives on.
    let huge = reqwest::blocking::Client::new()
        .put(format!("{}{C1}/maintenance", w.coord.url()))
        .bearer_auth(ADMIN_TOKEN)
        .body(vec![b'{'; 8 << 20])
        .send();
    if let Ok(r) = huge {
        assert_eq!(r.status().as_u16(), 413);
    }
    // Tokens that are not right.
    let bad_auth = [
        ("garbage", "token_invalid"),
        ("Bearer", "token_invalid"),
        ("Basic dXNlcjpwdw==", "token_invalid"),
        (
            "Bearer apt_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            "token_invalid",
        ),
        ("Bearer not-even-close", "token_invalid"),
    ];
    let http = reqwest::blocking::Client::new();
    for (header, code) in bad_auth {
        let r = http
            .get(format!("{}{C1}", w.coord.url()))
            .header("authorization", header)
            .send()
            .expect("send");
        assert_eq!(r.status().as_u16(), 401, "{header}");
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let v: Value = r.json().expect("json");
        assert_eq!(v["code"], code, "{header}: {v}");
    }
    // A real token with a wrong secret.
    let t = api.issue("v", "viewer", &["a"]);
    let forged = format!("apt_{}_{}", token_id(&t), "f".repeat(64));
    let (s, v) = Api::new(w.coord.url(), Some(&forged)).get(C1);
    assert_eq!((s, v["code"].as_str()), (401, Some("token_invalid")), "{v}");
    // Forced failover to a lagging node is allowed with force, and says so.
    let (s, v) = api.call(
        "POST",
        &format!("{C1}/failover"),
        Some(&json!({"candidate":"n3","force":true})),
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["mode"], "handover");
    assert!(
        v["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("behind")),
        "{v}"
    );
    let (s, v) = api.call("POST", &format!("{C1}/switchover"), Some(&json!({})));
    assert_problem(s, &v, "switchover_pending", "second request");
    w.etcd
        .etcdctl(&["del", "/autopilot/a/p/c1/switchover"])
        .expect("del");
    // Maintenance on refuses switchovers with a clear code.
    assert_eq!(
        api.call(
            "PUT",
            &format!("{C1}/maintenance"),
            Some(&json!({"enabled":true}))
        )
        .0,
        200
    );
    let (s, v) = api.call("POST", &format!("{C1}/switchover"), Some(&json!({})));
    assert_problem(s, &v, "maintenance_enabled", "switchover in maintenance");
    // Still alive, and nothing panicked.
    assert_eq!(api.get("/healthz").0, 200);
    assert!(!w.coord.log().contains("panicked"), "{}", w.coord.log());
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
    std::thread::sleep(Duration::from_millis(1100));
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
fn two_coordinators_agree_and_a_killed_one_loses_nothing() {
    let mut w = world(&["--rate-limit", "0"]);
    let b = Coordinator::start(&w.etcd.endpoint(), &["--rate-limit", "0"]).expect("second");
    let rb = b.api(Some(ADMIN_TOKEN));
    let t = w.root.issue("shared", "operator", &["a"]);
    for path in [
        "/v1/clusters",
        C1,
        "/v1/clusters/b/p/c2/nodes",
        "/v1/tokens",
    ] {
        let (sa, va) = w.root.get(path);
        let (sb, vb) = rb.get(path);
        assert_eq!((sa, &va), (sb, &vb), "{path}: the coordinators disagree");
    }
    assert_eq!(
        Api::new(b.url(), Some(&t)).get(C1).0,
        200,
        "a token issued by A works on B"
    );
    // Hammer A with token creations and kill it mid-stream: every creation A acknowledged
    // is on B, and every token it handed out works there.
    let url = w.coord.url().to_owned();
    let writer = std::thread::spawn(move || {
        let api = Api::new(&url, Some(ADMIN_TOKEN));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let mut acked = Vec::new();
        for i in 0..2000 {
            let r = http
                .post(format!("{url}/v1/tokens"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"name": format!("burst-{i}"), "role": "viewer", "namespaces": ["a"]}))
                .send();
            match r {
                Ok(r) if r.status().as_u16() == 201 => {
                    let v: Value = r.json().expect("json");
                    acked.push(v["token"].as_str().expect("token").to_owned());
                }
                _ => break,
            }
        }
        drop(api);
        acked
    });
    let started = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        let (_, v) = rb.get("/v1/tokens");
        (v["tokens"].as_array().map_or(0, Vec::len) > 20).then_some(())
    });
    assert!(started.is_some(), "A made no tokens");
    w.coord.kill();
    let acked = writer.join().expect("writer");
    assert!(!acked.is_empty());
    let (_, v) = rb.get("/v1/tokens");
    let ids: std::collections::HashSet<String> = v["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["id"].as_str().unwrap_or("").to_owned())
        .collect();
    for tok in &acked {
        assert!(
            ids.contains(&token_id(tok)),
            "token {} acknowledged by A is missing on B",
            token_id(tok)
        );
    }
    let last = acked.last().expect("one");
    assert_eq!(Api::new(b.url(), Some(last)).get(C1).0, 200);
    // The audit records A wrote are readable through B.
    let (_, a) = rb.get("/v1/audit?limit=1000");
    let creates = a["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "token.create" && r["outcome"] == "ok")
        .count();
    assert!(
        creates >= acked.len(),
        "{creates} audit records for {} acknowledged creations",
        acked.len()
    );
    println!(
        "A acknowledged {} creations before it was killed; all on B",
        acked.len()
    );
}

#[test]
fn rate_limit_per_token_answers_429_with_retry_after() {
    let w = world(&["--rate-limit", "1", "--rate-burst", "3"]);
    let v = w.root.issue("v", "viewer", &["a"]);
    let api = Api::new(w.coord.url(), Some(&v));
    let codes: Vec<u16> = (0..5).map(|_| api.get(C1).0).collect();
    assert_eq!(&codes[..3], &[200, 200, 200], "{codes:?}");
    assert_eq!(codes[4], 429, "{codes:?}");
    let (s, p) = api.get(C1);
    assert_eq!(s, 429);
    assert_problem(s, &p, "rate_limited", "rate limit");
    assert!(p["retry_after_seconds"].as_u64().is_some_and(|r| r >= 1));
    let rec = newest_audit(&w.root);
    assert_eq!(
        (rec["code"].as_str(), rec["token_id"].as_str()),
        (Some("rate_limited"), Some(token_id(&v).as_str())),
        "{rec}"
    );
    // Another token has its own budget.
    let other = w.root.issue("o", "viewer", &["a"]);
    assert_eq!(Api::new(w.coord.url(), Some(&other)).get(C1).0, 200);
}

#[test]
fn an_etcd_outage_is_a_503_problem_and_the_coordinator_recovers() {
    let mut w = world(&[]);
    w.etcd.stop();
    let t0 = Instant::now();
    let (s, v) = w.root.get(C1);
    assert_problem(s, &v, "store_unavailable", "etcd down");
    assert_eq!(s, 503);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(w.root.get("/healthz").0, 503);
    w.etcd.restart().expect("restart etcd");
    let back = eventually(Duration::from_secs(15), Duration::from_millis(100), || {
        (w.root.get(C1).0 == 200).then_some(())
    });
    assert!(
        back.is_some(),
        "no recovery after etcd came back\n{}",
        w.coord.log()
    );
}

#[test]
fn events_stream_reports_changes_and_resumes_from_a_revision() {
    let w = world(&[]);
    let v = w.root.issue("v", "viewer", &["a"]);
    let (_, c) = w.root.get(C1);
    let rev = c["revision"].as_i64().expect("revision");
    let (s, rx) = sse(
        w.coord.url(),
        &v,
        &format!("{C1}/events"),
        Duration::from_secs(20),
    );
    assert_eq!(s, 200);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        w.root
            .call(
                "PUT",
                &format!("{C1}/maintenance"),
                Some(&json!({"enabled":true,"reason":"e2e"}))
            )
            .0,
        200
    );
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "maintenance" && d["doc"]["enabled"] == true
    });
    let (id, _, _) = hit.unwrap_or_else(|| panic!("no maintenance event; saw {seen:?}"));
    assert!(id.parse::<i64>().expect("numeric id") > rev);
    w.etcd
        .etcdctl(&["del", "/autopilot/a/p/c1/primary"])
        .expect("del primary");
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "primary" && d["doc"].is_null()
    });
    assert!(hit.is_some(), "no primary-gone event: {seen:?}");
    // Resume from the revision read before: both changes are replayed.
    let (_, rx2) = sse(
        w.coord.url(),
        &v,
        &format!("{C1}/events?since={rev}"),
        Duration::from_secs(5),
    );
    let (hit, seen) = wait_event(&rx2, Duration::from_secs(5), |(_, k, _)| k == "primary");
    assert!(hit.is_some(), "no replay: {seen:?}");
    assert!(seen.iter().any(|(_, k, _)| k == "maintenance"), "{seen:?}");
}

#[test]
fn https_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().expect("tmp");
    let tls = TlsFiles::generate(dir.path()).expect("certificates");
    let etcd = EtcdServer::start().expect("etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 1);
    let cert = tls.server_cert.to_string_lossy().into_owned();
    let key = tls.server_key.to_string_lossy().into_owned();
    let coord = Coordinator::start(
        &etcd.endpoint(),
        &["--tls-cert-file", &cert, "--tls-key-file", &key],
    )
    .expect("start");
    assert!(coord.url().starts_with("https://"), "{}", coord.url());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca).expect("ca")).expect("pem");
    let http = reqwest::blocking::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let r = http
        .get(format!("{}{C1}", coord.url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .expect("https request");
    assert_eq!(r.status().as_u16(), 200);
    // Plain HTTP to the TLS port does not get an answer.
    let plain = coord.url().replace("https://", "http://");
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("c")
        .get(format!("{plain}/healthz"))
        .send();
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true));
    let (code, out, err) = e2e::coordinator::ctl(
        &[
            "--url",
            coord.url(),
            "--ca-file",
            &tls.ca.to_string_lossy(),
            "list",
        ],
        &[("AUTOPILOT_TOKEN", ADMIN_TOKEN)],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("c1"), "{out}");
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
