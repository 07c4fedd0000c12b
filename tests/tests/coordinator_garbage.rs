//! Documents written by hand into a cluster's keys — not JSON, the wrong shape, values of a
//! newer version — never crash the coordinator: the cluster still reads, what cannot be
//! decoded is listed as `unreadable`, the rest is served, and events keep flowing.

mod common;

use common::*;
use e2e::harness::coordinator::ctl;

#[test]
fn malformed_documents_are_reported_and_the_rest_is_served() {
    let w = world(&[]);
    let put = |key: &str, value: &str| {
        w.etcd
            .etcdctl(&["put", &format!("/autopilot/a/p/c1/{key}"), value])
            .expect("etcdctl put");
    };
    put("nodes/intruder", "{not json");
    put("nodes/half", r#"{"schema":1,"id":"half"}"#);
    put("state", "\u{1}binary");
    put("switchover", "[1,2,3]");
    put("history", r#"{"entries":"none"}"#);
    put("events/0000000000000-bogus", "null");
    // A newer agent's node: unknown fields and enum values are read as unknown.
    put(
        "nodes/future",
        r#"{"schema":1,"id":"future","name":"future","hostname":"h","ip_address":"127.0.0.1","port":1,"role":"witness","status":"hibernating","health":"glowing","replication":{"position":{"epoch":1,"offset":1},"state":"teleporting","brand_new":{"x":1}},"priority":1,"eligible":false,"version":"99","last_updated":"2026-01-01T00:00:00Z","ttlseconds":10,"field_of_tomorrow":[1]}"#,
    );

    let (s, v) = w.root.get(C1);
    assert_eq!(s, 200, "{v}");
    let unreadable: Vec<&str> = v["unreadable"]
        .as_array()
        .expect("an unreadable list")
        .iter()
        .filter_map(|u| u.as_str())
        .collect();
    for key in [
        "nodes/intruder",
        "nodes/half",
        "state",
        "switchover",
        "history",
    ] {
        assert!(
            unreadable.contains(&key),
            "{key} not reported unreadable: {v:#}"
        );
    }
    let nodes: Vec<&str> = v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    for id in ["n1", "n2", "n3", "future"] {
        assert!(nodes.contains(&id), "{id} missing: {nodes:?}");
    }
    let future = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["id"] == "future"))
        .expect("the newer node");
    assert_eq!(future["role"], "unknown", "{future}");
    assert_eq!(future["status"], "unknown", "{future}");
    assert_eq!(future["replication"]["state"], "unknown", "{future}");

    // The listing, the events and the CLI still answer; the coordinator lives on.
    let (s, v) = w.root.get("/v1/clusters");
    assert_eq!(s, 200, "{v}");
    let (s, v) = w.root.get(&format!("{C1}/events"));
    assert_eq!(s, 200, "{v}");
    let env = [
        ("AUTOPILOT_URL", w.coord.url()),
        ("AUTOPILOT_TOKEN", e2e::harness::coordinator::ADMIN_TOKEN),
    ];
    let (code, out, err) = ctl(
        &["show", "a/p/c1"],
        &env,
        std::time::Duration::from_secs(10),
    );
    assert_eq!(code, 0, "autopilotctl show: {out}{err}");
    assert!(out.contains("n1"), "{out}");
    let (s, _) = w.root.get("/healthz");
    assert_eq!(s, 200);
    assert!(
        !w.coord.log().contains("panicked"),
        "the coordinator panicked:\n{}",
        w.coord.log()
    );
}
