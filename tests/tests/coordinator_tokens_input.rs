//! Token lineage and input limits (issue 13, smaller findings), against the real binary: a
//! token never outlives or out-ranks its issuer and dies with it; a far expiry, a `since`
//! at the end of the range, control characters, and names like `*`, `..`, spaces or NUL are
//! refused with 400 (never a panic); `autopilotctl` shows no control character it got.

mod common;

use std::time::Duration;

use common::*;
use e2e::harness::coordinator::{ADMIN_TOKEN, Api, TOKEN_CACHE, ctl};
use e2e::harness::util::poll_until;
use serde_json::json;

#[test]
fn a_child_token_never_outlives_or_outranks_its_issuer_and_dies_with_it() {
    let w = world(&[]);
    let (s, v) = w.root.call(
        "POST",
        "/v1/tokens",
        Some(&json!({"name": "parent", "role": "admin", "namespaces": ["a"], "expires_in_seconds": 3600})),
    );
    assert_eq!(s, 201, "{v}");
    let parent = v["token"].as_str().expect("a token").to_owned();
    let parent_id = v["info"]["id"].as_str().expect("an id").to_owned();
    let parent_expiry = v["info"]["expires_at"]
        .as_str()
        .expect("an expiry")
        .to_owned();
    let papi = Api::new(w.coord.url(), Some(&parent));
    let (s, v) = papi.call(
        "POST",
        "/v1/tokens",
        Some(&json!({"name": "child", "role": "operator", "namespaces": ["a"]})),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v["info"]["expires_at"].as_str(),
        Some(parent_expiry.as_str()),
        "a child without an expiry outlives its issuer: {v}"
    );
    let child = v["token"].as_str().expect("a token").to_owned();
    let capi = Api::new(w.coord.url(), Some(&child));
    assert_eq!(capi.get(C1).0, 200);
    // Revoking the parent ends the child (within the token cache, 1 s).
    let (s, v) = w
        .root
        .call("DELETE", &format!("/v1/tokens/{parent_id}"), None);
    assert_eq!(s, 200, "{v}");
    let (s, v) = poll_until(
        TOKEN_CACHE + Duration::from_millis(500),
        Duration::from_millis(100),
        || capi.get(C1),
        |(s, _)| *s != 200,
    );
    assert_problem(s, &v, "token_revoked", "the child of a revoked token");
}

#[test]
fn far_expiries_and_revisions_are_400_not_500() {
    let w = world(&[]);
    for secs in [u64::MAX, 400_000_000_000, 100 * 366 * 24 * 3600 + 1] {
        let (s, v) = w.root.call(
            "POST",
            "/v1/tokens",
            Some(&json!({"name": "far", "role": "viewer", "namespaces": ["a"], "expires_in_seconds": secs})),
        );
        assert_problem(s, &v, "invalid_body", &format!("expires_in_seconds={secs}"));
        assert_eq!(s, 400);
    }
    let (s, v) = w.root.get(&format!("{C1}/events?since={}", i64::MAX));
    assert_problem(s, &v, "invalid_query", "since=i64::MAX");
}

#[test]
fn control_characters_and_odd_names_are_refused_at_input() {
    let w = world(&[]);
    let reason = "done\u{1b}]0;owned\u{7}\u{1b}[2J";
    let (s, v) = w.root.call(
        "PUT",
        &format!("{C1}/maintenance"),
        Some(&json!({"enabled": true, "reason": reason})),
    );
    assert_problem(s, &v, "invalid_body", "an escape sequence in a reason");
    let (s, v) = w.root.call(
        "PUT",
        &format!("{C1}/maintenance"),
        Some(&json!({"enabled": true, "reason": "é".repeat(1000)})),
    );
    assert_eq!(
        s, 200,
        "1,000 characters (2,000 bytes) is within the limit: {v}"
    );
    for name in ["x\u{1b}[2J", "two\nlines"] {
        let (s, v) = w.root.call(
            "POST",
            "/v1/tokens",
            Some(&json!({"name": name, "role": "viewer", "namespaces": ["a"]})),
        );
        assert_problem(s, &v, "invalid_body", &format!("token name {name:?}"));
    }
    for ns in ["*", "..", "a b", "a\u{0}b", "."] {
        let (s, v) = w.root.call(
            "POST",
            "/v1/tokens",
            Some(&json!({"name": "n", "role": "viewer", "namespaces": [ns, "a"]})),
        );
        assert_problem(s, &v, "invalid_scope", &format!("namespace {ns:?}"));
        let (s, v) = w.root.call(
            "POST",
            "/v1/agents/register",
            Some(&json!({"namespace": ns, "project": "p", "cluster": "c1", "node": "n1"})),
        );
        assert_eq!(s, 400, "register with namespace {ns:?}: {v}");
    }
}

#[test]
fn autopilotctl_shows_no_control_character_it_received() {
    let w = world(&[]);
    // A reason written before input was checked (straight into etcd, as an old version could).
    w.etcd
        .etcdctl(&[
            "put",
            "/autopilot/a/p/c1/maintenance",
            r#"{"schema":1,"enabled":true,"reason":"x\u001b]0;pwned\u0007\u001b[2J\rgone","by":"old"}"#,
        ])
        .expect("write a maintenance key");
    let env = [("AUTOPILOT_TOKEN", ADMIN_TOKEN)];
    let (code, out, err) = ctl(
        &["--url", w.coord.url(), "show", "a/p/c1"],
        &env,
        Duration::from_secs(10),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the terminal: {out:?}"
    );
    assert!(out.contains("\\u{1b}"), "{out}");
}

#[test]
fn autopilotctl_never_prints_a_password_given_in_the_url() {
    let (code, out, err) = ctl(
        &["--url", "http://operator:s3cret-PW@127.0.0.1:1", "list"],
        &[("AUTOPILOT_TOKEN", "x")],
        Duration::from_secs(10),
    );
    assert_ne!(code, 0);
    assert!(
        !out.contains("s3cret-PW") && !err.contains("s3cret-PW"),
        "the password was printed: {out}{err}"
    );
    assert!(err.contains("127.0.0.1:1"), "{err}");
}
