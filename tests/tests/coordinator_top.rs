//! Top statements through the coordinator (issue 15, item 7), with real servers: a
//! three-node PostgreSQL cluster whose agents serve HTTPS, a real etcd and the coordinator
//! binary. A recognisable statement run 50 times on the primary shows in the primary's list
//! (first in the answer) through `GET …/statements` and `autopilotctl top`; a frozen
//! (SIGSTOP) and a killed agent are reported with their own error while the other nodes
//! still answer, within the agent timeout; a coordinator without `--agent-ca-file` names the
//! flag for every https agent; bad limits and an unknown cluster get clear errors.

use std::time::{Duration, Instant};

use e2e::harness::cluster::Security;
use e2e::harness::coordinator::{ADMIN_TOKEN, Api, Coordinator, ctl};
use e2e::harness::util::eventually;
use e2e::postgres::cluster::{PgCluster, PgOpts};
use e2e::postgres::scenario::{settled, start};
use serde_json::Value;

const C: &str = "/v1/clusters/e2e/pg/main";
const CLUSTER: &str = "e2e/pg/main";
/// A column alias survives pg_stat_statements' normalisation (literals do not).
const MARKER: &str = "top_marker_e2e";
const RUNS: u64 = 50;
/// The coordinator's default `--agent-timeout`.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);
const CTL: Duration = Duration::from_secs(30);

/// The node entry of `id` in a `…/statements` answer.
fn entry<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == id))
        .unwrap_or_else(|| panic!("no entry for {id}: {v}"))
}

/// The marker statement in `node`'s list, if there.
fn marker(node: &Value) -> Option<&Value> {
    node["statements"]
        .as_array()?
        .iter()
        .find(|s| s["query"].as_str().is_some_and(|q| q.contains(MARKER)))
}

fn error_code(node: &Value) -> &str {
    node["error"]["code"].as_str().unwrap_or("")
}

fn names_in_order(v: &Value) -> Vec<String> {
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["node"].as_str().expect("node").to_owned())
        .collect()
}

/// The expected order: the primary, then the others by id.
fn expected_order(c: &PgCluster, p: usize) -> Vec<String> {
    let mut rest: Vec<String> = (0..c.len())
        .filter(|&i| i != p)
        .map(|i| c.name(i).to_owned())
        .collect();
    rest.sort();
    let mut all = vec![c.name(p).to_owned()];
    all.extend(rest);
    all
}

#[test]
fn top_statements_through_the_api_and_autopilotctl() {
    let mut c = start(
        3,
        PgOpts {
            // Long enough that a frozen or killed agent's node key outlives the checks.
            ttl: Duration::from_secs(10),
            security: Security {
                listener_tls: true,
                ..Security::default()
            },
            ..PgOpts::default()
        },
    );
    let p = settled(&c);
    let ca = c.dir().join("listener-tls").join("ca.pem");
    let etcd = c.etcd().endpoint();
    let ca_flag = ca.display().to_string();
    let coord = Coordinator::start(&etcd, &["--rate-limit", "0", "--agent-ca-file", &ca_flag])
        .expect("start the coordinator");
    let root = coord.api(Some(ADMIN_TOKEN));
    let viewer = root.issue("top", "viewer", &["e2e"]);
    let api = Api::new(coord.url(), Some(&viewer));
    let primary = c.name(p).to_owned();
    let node_doc = c
        .doc(&format!("nodes/{primary}"))
        .expect("the primary's node document");
    let agent_url = node_doc["agent_url"]
        .as_str()
        .expect("agent_url")
        .to_owned();
    assert!(agent_url.starts_with("https://"), "{node_doc}");

    // A recognisable statement, RUNS times on the primary.
    for _ in 0..RUNS {
        c.sql()
            .query(
                c.pg_port(p),
                &format!("SELECT pg_sleep(0.01) AS {MARKER}"),
                Duration::from_secs(10),
            )
            .expect("run the marker statement");
    }

    // The API: the primary first with the marker (calls >= RUNS), every node answering.
    let path = format!("{C}/statements?limit=100");
    let mut last = Value::Null;
    let seen = eventually(Duration::from_secs(60), Duration::from_millis(500), || {
        let (s, v) = api.get(&path);
        last = v.clone();
        let ok = s == 200
            && marker(entry(&v, &primary))
                .and_then(|m| m["calls"].as_u64())
                .is_some_and(|n| n >= RUNS)
            && v["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == c.len() && n.iter().all(|n| n["error"].is_null()));
        ok.then_some(v)
    });
    let v = seen.unwrap_or_else(|| {
        panic!(
            "the marker never showed on {primary} with every node answering: {last:#}\n{}",
            c.logs()
        )
    });
    assert_eq!(names_in_order(&v), expected_order(&c, p), "{v:#}");
    assert_eq!(v["limit"], 100);
    let first = &v["nodes"][0];
    assert_eq!(first["role"], "primary", "{first}");
    assert_eq!(first["agent_url"], agent_url.as_str(), "{first}");
    assert!(first["time"].is_string(), "{first}");
    let m = marker(first).expect("the marker");
    assert!(
        m["mean_seconds"].as_f64().is_some_and(|s| s >= 0.009),
        "{m}"
    );
    assert!(
        m["total_seconds"].as_f64().is_some_and(|s| s >= 0.45),
        "{m}"
    );
    assert_eq!(m["rows"].as_u64(), m["calls"].as_u64(), "{m}");
    assert_eq!(m["database"], "postgres", "{m}");
    println!("marker on {primary}: {m}");

    // No password nor its hash reaches a viewer (utility statements keep their literals, so
    // the engine does not track them).
    let (_, everything) = api.get(&format!("{C}/statements?limit=100"));
    let text = everything.to_string();
    for secret in ["SCRAM-SHA-256", "PASSWORD '", "secret"] {
        assert!(!text.contains(secret), "{secret} in the statements: {text}");
    }

    // The agents' default limit (10) without `limit`; an explicit small one.
    let (s, v) = api.get(&format!("{C}/statements"));
    assert_eq!(s, 200, "{v}");
    assert!(v["limit"].is_null(), "{v}");
    for n in v["nodes"].as_array().expect("nodes") {
        let k = n["statements"].as_array().map_or(0, Vec::len);
        assert!(k <= 10, "{n}");
    }
    let (s, v) = api.get(&format!("{C}/statements?limit=1"));
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        entry(&v, &primary)["statements"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );

    // autopilotctl top: a table per node, the primary's first, the marker in it.
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", viewer.as_str()),
    ];
    let (code, out, err) = ctl(&["top", CLUSTER, "--limit", "100"], &env, CTL);
    assert_eq!(code, 0, "{out}{err}");
    println!("{out}");
    let first_line = out.lines().next().unwrap_or("");
    assert!(
        first_line.starts_with(&format!("{primary} (primary)  {agent_url}")),
        "{out}"
    );
    let row = out
        .lines()
        .take_while(|l| !l.is_empty())
        .find(|l| l.contains(MARKER))
        .unwrap_or_else(|| panic!("no marker row under {primary}:\n{out}"));
    let calls: u64 = row
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no calls in {row:?}"));
    assert!(calls >= RUNS, "{row}");
    assert!(row.contains("postgres"), "{row}");
    for i in 0..c.len() {
        assert!(out.contains(&format!("{} (", c.name(i))), "{out}");
    }
    let (code, out, err) = ctl(&["-o", "json", "top", CLUSTER], &env, CTL);
    assert_eq!(code, 0, "{out}{err}");
    let j: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(j["nodes"][0]["node"], primary.as_str(), "{j}");

    // Bad input.
    for (q, what) in [
        ("limit=0", "between 1 and 100"),
        ("limit=101", "between 1 and 100"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("lmit=5", "lmit"),
    ] {
        let (s, v) = api.get(&format!("{C}/statements?{q}"));
        assert_eq!(
            (s, v["code"].as_str()),
            (400, Some("invalid_query")),
            "{q}: {v}"
        );
        assert!(
            v["detail"].as_str().is_some_and(|d| d.contains(what)),
            "{q}: {v}"
        );
    }
    let (s, v) = api.get("/v1/clusters/e2e/pg/nope/statements");
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("cluster_not_found")),
        "{v}"
    );
    let (s, v) = Api::new(coord.url(), None).get(&path);
    assert_eq!(s, 401, "{v}");
    let other = root.issue("elsewhere", "viewer", &["other"]);
    let (s, v) = Api::new(coord.url(), Some(&other)).get(&path);
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("cluster_not_found")),
        "{v}"
    );
    let (code, out, err) = ctl(&["top", CLUSTER, "--limit", "0"], &env, CTL);
    assert_eq!(code, 2, "{out}{err}");
    let (code, out, err) = ctl(&["top", "e2e/pg/nope"], &env, CTL);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("cluster_not_found"), "{err}");
    let (code, out, err) = ctl(&["top", "e2e/pg"], &env, CTL);
    assert_eq!(code, 2, "{out}{err}");

    // A coordinator without --agent-ca-file: every https agent's error names the flag, and
    // autopilotctl says no agent answered (exit 7).
    let bare = Coordinator::start(&etcd, &["--rate-limit", "0"]).expect("start a coordinator");
    let (s, v) = Api::new(bare.url(), Some(ADMIN_TOKEN)).get(&path);
    assert_eq!(s, 200, "{v}");
    for n in v["nodes"].as_array().expect("nodes") {
        assert_eq!(error_code(n), "agent_ca_missing", "{n}");
        assert!(
            n["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("--agent-ca-file")),
            "{n}"
        );
    }
    let bare_env = [
        ("AUTOPILOT_URL", bare.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let (code, out, err) = ctl(&["top", CLUSTER], &bare_env, CTL);
    assert_eq!(code, 7, "{out}{err}");
    assert!(out.contains("--agent-ca-file"), "{out}");
    assert!(err.contains("no agent of the cluster answered"), "{err}");
    drop(bare);

    // A frozen agent (SIGSTOP): its node says so after the agent timeout, the others answer.
    let mut replicas: Vec<usize> = (0..c.len()).filter(|&i| i != p).collect();
    replicas.sort_by_key(|&i| c.name(i).to_owned());
    let (frozen, killed) = (replicas[0], replicas[1]);
    c.stop_agent(frozen);
    let t0 = Instant::now();
    let (s, v) = api.get(&path);
    let took = t0.elapsed();
    assert_eq!(s, 200, "{v}");
    assert!(
        took >= AGENT_TIMEOUT - Duration::from_millis(200)
            && took < AGENT_TIMEOUT + Duration::from_secs(2),
        "answered in {took:?}: {v}"
    );
    assert_eq!(names_in_order(&v), expected_order(&c, p), "{v:#}");
    let f = entry(&v, c.name(frozen));
    assert_eq!(error_code(f), "agent_timeout", "{f}");
    assert!(f["statements"].is_null(), "{f}");
    assert!(marker(entry(&v, &primary)).is_some(), "{v:#}");
    let k = entry(&v, c.name(killed));
    assert!(k["error"].is_null() && k["statements"].is_array(), "{k}");
    let (code, out, err) = ctl(&["top", CLUSTER], &env, CTL);
    assert_eq!(code, 0, "one node down is not a failure: {out}{err}");
    assert!(
        out.contains(&format!("{} (replica)", c.name(frozen))) && out.contains("[agent_timeout]"),
        "{out}"
    );
    c.cont_agent(frozen);

    // A killed agent (its node key stays until its lease expires): refused at once.
    c.kill_node(killed);
    let t0 = Instant::now();
    let (s, v) = api.get(&path);
    assert_eq!(s, 200, "{v}");
    assert!(t0.elapsed() < AGENT_TIMEOUT, "{:?}", t0.elapsed());
    let k = entry(&v, c.name(killed));
    assert_eq!(error_code(k), "agent_unreachable", "{k}");
    assert!(marker(entry(&v, &primary)).is_some(), "{v:#}");
    let back = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        let (_, v) = api.get(&path);
        entry(&v, c.name(frozen))["error"].is_null().then_some(())
    });
    assert!(back.is_some(), "the thawed agent never answered again");
}
