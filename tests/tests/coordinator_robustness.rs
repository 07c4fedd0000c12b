//! The coordinator under bad conditions, against a real etcd and the real binary: malformed
//! input, rate limits, an etcd outage, two coordinators with one killed mid-request, TLS,
//! and event streams that resume.

mod common;

use std::time::{Duration, Instant};

use common::*;
use e2e::harness::coordinator::{
    ADMIN_TOKEN, Api, Coordinator, seed_node, sse, token_id, wait_event,
};
use e2e::harness::etcd::{EtcdServer, TlsFiles};
use e2e::harness::util::eventually;
use serde_json::{Value, json};

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
    // Nothing to wait for: the stream starts at the revision the coordinator read before it
    // answered 200, so the change below is in it however soon it comes.
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
        .unwrap_or_else(|e| panic!("https request: {e:?}\n{}", coord.log()));
    assert_eq!(r.status().as_u16(), 200);
    // A client that offers HTTP/2 (curl does by default) is answered over HTTP/1.1, the one
    // protocol the server speaks: before, ALPN let it pick h2 and the connection broke.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
        ])
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
        .arg(format!("{}{C1}", coord.url()))
        .output()
        .expect("curl (scripts/install-deps installs it)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 1.1",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plain HTTP to the TLS port does not get an answer.
    let plain = coord.url().replace("https://", "http://");
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("c")
        .get(format!("{plain}/healthz"))
        .send();
    assert!(r.map(|r| !r.status().is_success()).unwrap_or(true));
    let (code, out, err) = e2e::harness::coordinator::ctl(
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
