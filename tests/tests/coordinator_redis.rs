//! The coordinator drives real agents: three agents supervising Redis (the `process` engine
//! and `examples/redis/hooks`) on a real etcd, and a real coordinator in front. A switchover
//! and a forced failover (hand-over mode) requested through the API move the primary, a
//! maintenance toggle made with `autopilotctl` stops and restarts automatic failover, and
//! the event stream reports each change.

use std::time::{Duration, Instant};

use e2e::harness::coordinator::{ADMIN_TOKEN, Api, Coordinator, ctl, sse, wait_event};
use e2e::harness::util::{eventually, hold, throughout};
use e2e::redis::scenario::*;
use serde_json::json;

const C: &str = "/v1/clusters/e2e/redis/cache";

#[test]
fn switchover_failover_and_maintenance_through_the_api_reach_real_agents() {
    let mut c = start(3);
    let p = settled(&c);
    let coord = Coordinator::start(&c.etcd_endpoints().join(","), &["--rate-limit", "0"])
        .expect("start the coordinator");
    let root = coord.api(Some(ADMIN_TOKEN));
    let operator = root.issue("ops", "operator", &["e2e"]);
    let op = Api::new(coord.url(), Some(&operator));
    let viewer = root.issue("watch", "viewer", &["e2e"]);

    // The API shows what the agents publish.
    let (s, doc) = op.get(C);
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["primary"]["id"], c.name(p), "{doc}");
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3), "{doc}");
    let rev = doc["revision"].as_i64().expect("revision");
    let (s, rx) = sse(
        coord.url(),
        &viewer,
        &format!("{C}/events?since={rev}"),
        Duration::from_secs(120),
    );
    assert_eq!(s, 200);

    // Switchover to a named replica.
    let target = (0..3).rev().find(|&i| i != p).expect("another node");
    let t0 = Instant::now();
    let (s, v) = op.call(
        "POST",
        &format!("{C}/switchover"),
        Some(&json!({"candidate": c.name(target)})),
    );
    assert_eq!(s, 202, "{v}");
    let moved = eventually(Duration::from_secs(20), Duration::from_millis(20), || {
        (c.primary() == Some(target)).then_some(())
    });
    assert!(
        moved.is_some(),
        "{} did not become primary; roles {:?}\n{}",
        c.name(target),
        c.roles(),
        c.logs()
    );
    println!(
        "switchover through the API: {} -> {} in {:?}",
        c.name(p),
        c.name(target),
        t0.elapsed()
    );
    wait_writable(&c, target, Duration::from_secs(5));
    let name = c.name(target).to_owned();
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "primary" && d["doc"]["id"] == name.as_str()
    });
    assert!(hit.is_some(), "no primary event for {name}: {seen:?}");
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "switchover" && d["doc"].is_null()
    });
    assert!(
        hit.is_some(),
        "the consumed switchover request was not reported: {seen:?}"
    );
    let (s, v) = op.get(&format!("{C}/primary"));
    assert_eq!((s, v["id"].as_str()), (200, Some(name.as_str())), "{v}");
    let (_, h) = op.get(&format!("{C}/history"));
    let last = h["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .expect("history");
    assert_eq!(last["to"].as_str(), Some(name.as_str()), "{last}");
    assert_eq!(last["reason"].as_str(), Some("switchover"), "{last}");
    for i in (0..3).filter(|&i| i != target) {
        c.wait_replicating(i, target, ATTACH);
    }

    // A forced failover (admin) to the third node while a primary exists: a hand-over.
    let third = (0..3).find(|&i| i != p && i != target).expect("third");
    let ready = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        let (_, v) = op.get(&format!("{C}/nodes/{}", c.name(third)));
        (v["eligible"] == true).then_some(())
    });
    assert!(
        ready.is_some(),
        "{} never eligible\n{}",
        c.name(third),
        c.logs()
    );
    let (s, v) = op.call(
        "POST",
        &format!("{C}/failover"),
        Some(&json!({"candidate": c.name(third)})),
    );
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("forbidden")),
        "operators cannot force: {v}"
    );
    let forced = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        let (s, v) = root.call(
            "POST",
            &format!("{C}/failover"),
            Some(&json!({"candidate": c.name(third)})),
        );
        // 409 candidate_behind can happen for a moment while the replica catches up.
        (s == 202).then_some(v)
    });
    let v = forced.expect("the forced failover was never accepted");
    assert_eq!(v["mode"], "handover", "{v}");
    let moved = eventually(Duration::from_secs(20), Duration::from_millis(20), || {
        (c.primary() == Some(third)).then_some(())
    });
    assert!(
        moved.is_some(),
        "{} did not become primary; roles {:?}\n{}",
        c.name(third),
        c.roles(),
        c.logs()
    );
    wait_writable(&c, third, Duration::from_secs(5));
    // History says what it was: an operator's forced failover, not a switchover.
    let history = c.doc("history").expect("history");
    let last = history["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (last["to"].as_str(), last["reason"].as_str()),
        (Some(c.name(third)), Some("manual_failover")),
        "{history:#}"
    );
    let name3 = c.name(third).to_owned();
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "primary" && d["doc"]["id"] == name3.as_str()
    });
    assert!(hit.is_some(), "no primary event for {name3}: {seen:?}");
    for i in (0..3).filter(|&i| i != third) {
        c.wait_replicating(i, third, ATTACH);
    }

    // Maintenance on through autopilotctl: losing the primary elects nobody.
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", operator.as_str()),
    ];
    let (code, out, err) = ctl(
        &["pause", "e2e/redis/cache", "--reason", "e2e"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "maintenance" && d["doc"]["enabled"] == true
    });
    assert!(hit.is_some(), "no maintenance event: {seen:?}");
    hold(WATCH_DELIVERY);
    c.kill_agent(third);
    let (hit, seen) = wait_event(&rx, Duration::from_secs(15), |(_, k, d)| {
        k == "primary" && d["doc"].is_null()
    });
    assert!(
        hit.is_some(),
        "the primary's loss was not reported: {seen:?}"
    );
    let window = ttl(&c) + Duration::from_secs(2);
    throughout(Instant::now() + window, Duration::from_millis(100), || {
        assert_eq!(
            c.primary(),
            None,
            "a primary was elected in maintenance mode\n{}",
            c.logs()
        );
    });
    let (s, v) = op.get(&format!("{C}/primary"));
    assert_eq!((s, v["code"].as_str()), (404, Some("no_primary")), "{v}");
    let (code, out, err) = ctl(
        &["resume", "e2e/redis/cache"],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}{err}");
    let (new, took) = c.wait_new_primary(third, Duration::from_secs(15));
    println!(
        "maintenance off through autopilotctl: {} is primary after {took:?}",
        c.name(new)
    );
    let name_new = c.name(new).to_owned();
    let (hit, seen) = wait_event(&rx, Duration::from_secs(10), |(_, k, d)| {
        k == "primary" && d["doc"]["id"] == name_new.as_str()
    });
    assert!(hit.is_some(), "no primary event after resume: {seen:?}");

    // Every change is in the audit log with the token that made it.
    let (_, a) = root.get("/v1/audit?limit=100");
    let recs = a["records"].as_array().expect("records");
    let ops_id = e2e::harness::coordinator::token_id(&operator);
    for action in ["cluster.switchover", "cluster.maintenance"] {
        assert!(
            recs.iter().any(|r| r["action"] == action
                && r["outcome"] == "ok"
                && r["token_id"] == ops_id.as_str()),
            "{action} not audited: {a}"
        );
    }
    assert!(
        recs.iter()
            .any(|r| r["action"] == "cluster.failover" && r["outcome"] == "denied"),
        "{a}"
    );
    assert!(
        recs.iter().any(|r| r["action"] == "cluster.failover"
            && r["outcome"] == "ok"
            && r["token_id"] == "admin"),
        "{a}"
    );
}
