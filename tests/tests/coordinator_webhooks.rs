//! Webhooks end to end: a real etcd, the real `coordinator` binary with `--webhooks-file`,
//! and real HTTP receivers on 127.0.0.1. Events are written into etcd as agents write them;
//! the receivers must get each as a signed CloudEvents 1.0 JSON body, filtered per webhook,
//! retried after 5xx, while a dead and a hanging endpoint delay nobody else; the secrets
//! appear in no log line, `/metrics` or etcd key. A second scenario restarts etcd under the
//! coordinator: delivery resumes with nothing skipped and nothing sent twice.

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::harness::coordinator::{Coordinator, seed_node};
use e2e::harness::etcd::EtcdServer;
use e2e::harness::util::{eventually, free_port, throughout};
use e2e::harness::webhook::{Receiver, Request};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

const SECRET_ALL: &str = "secret-all-7f3c9a0e5b2d4c61a8e0";
const SECRET_FAILOVERS: &str = "secret-failovers-1d9e8c7b6a5f4e3d";
const SECRET_FLAKY: &str = "secret-flaky-0a1b2c3d4e5f6a7b8c";
const SECRET_DEAD: &str = "secret-dead-9e8d7c6b5a4f3e2d1c";
const SECRET_HANG: &str = "secret-hang-5c4b3a2f1e0d9c8b7a";
/// In the `all` webhook's URL: a token in a query string must never be logged.
const QUERY_TOKEN: &str = "querytoken-b5e1f0";

/// Bound on a delivery that nothing holds up.
const PROMPT: Duration = Duration::from_secs(10);

/// Checks `Autopilot-Signature` as a receiver would: HMAC-SHA256 over `"<t>.<body>"`, `t`
/// within five minutes of now.
fn signature_ok(secret: &str, req: &Request) -> bool {
    let Some(h) = req.header("autopilot-signature") else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in h.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<u64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    if t.abs_diff(now) > 300 {
        return false;
    }
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(&req.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

/// An event document as agents write it.
fn event(kind: &str, node: &str, ms: u64) -> Value {
    let secs = ms / 1000;
    json!({
        "schema": 1,
        "time": format!("2026-11-24T16:{:02}:{:02}.{:03}Z", (secs / 60) % 60, secs % 60, ms % 1000),
        "kind": kind,
        "node": node,
        "detail": format!("{kind} on {node} (e2e)"),
        "to": node,
    })
}

/// Writes `doc` as `<cluster>/events/<id>`; returns the id.
fn put_event(etcd: &EtcdServer, cluster: &str, doc: &Value, ms: u64) -> String {
    let id = format!("{ms:013}-{}", doc["node"].as_str().expect("node"));
    etcd.etcdctl(&[
        "put",
        &format!("/autopilot/{cluster}/events/{id}"),
        &doc.to_string(),
    ])
    .expect("put an event");
    id
}

/// The value of the series `name{labels…}` in a Prometheus text (0 when absent).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn metrics_text(coord: &Coordinator) -> String {
    reqwest::blocking::get(format!("{}/metrics", coord.url()))
        .and_then(|r| r.text())
        .expect("GET /metrics")
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).expect("write a secret file");
    p.to_string_lossy().into_owned()
}

/// Waits until the coordinator follows etcd for its webhooks (events from then on are sent).
fn wait_following(coord: &Coordinator) {
    assert!(
        eventually(PROMPT, Duration::from_millis(50), || coord
            .log()
            .contains("webhooks: following events")
            .then_some(()))
        .is_some(),
        "the webhooks never started following etcd:\n{}",
        coord.log()
    );
}

#[test]
fn events_reach_every_webhook_signed_filtered_and_retried_without_blocking() {
    let etcd = EtcdServer::start().expect("start etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 10);
    seed_node(&etcd, "b/q/c2", "m1", true, 3);
    // Already in etcd before the coordinator starts: not sent.
    let old = put_event(&etcd, "a/p/c1", &event("promoted", "n1", 1_000), 1_000);

    let all = Receiver::ok().expect("receiver");
    let failovers = Receiver::ok().expect("receiver");
    // The first two requests fail with 500, the third gets 200.
    let flaky = Receiver::start(Box::new(|n| if n < 2 { 500 } else { 200 })).expect("receiver");
    let dead_port = free_port(); // nothing listens there
    let hang = TcpListener::bind("127.0.0.1:0").expect("bind"); // accepts (backlog), never answers
    let hang_addr = hang.local_addr().expect("addr");

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("webhooks.yaml");
    std::fs::write(
        &file,
        format!(
            r#"webhooks:
  - name: all
    url: {all}/hooks/all?token={QUERY_TOKEN}
    secret_file: {s_all}
  - name: failovers
    url: {failovers}/hooks/failovers
    secret_env: E2E_FAILOVERS_SECRET
    events: [failover, switchover]
    clusters: ["a/*/*"]
  - name: flaky
    url: {flaky}/hooks/flaky
    secret_file: {s_flaky}
    events: [fenced]
    retry: {{ max_attempts: 5, initial_backoff: 100ms, max_backoff: 1s }}
  - name: dead
    url: http://127.0.0.1:{dead_port}/hooks/dead
    secret_file: {s_dead}
    timeout: 1s
    retry: {{ max_attempts: 3, initial_backoff: 100ms, max_backoff: 200ms }}
  - name: hang
    url: http://{hang_addr}/hooks/hang
    secret_file: {s_hang}
    timeout: 2s
    retry: {{ max_attempts: 2, initial_backoff: 100ms, max_backoff: 100ms }}
    queue: 1
"#,
            all = all.url(),
            failovers = failovers.url(),
            flaky = flaky.url(),
            s_all = write_secret(dir.path(), "all.secret", SECRET_ALL),
            s_flaky = write_secret(dir.path(), "flaky.secret", SECRET_FLAKY),
            s_dead = write_secret(dir.path(), "dead.secret", SECRET_DEAD),
            s_hang = write_secret(dir.path(), "hang.secret", SECRET_HANG),
        ),
    )
    .expect("write the webhooks file");
    let coord = Coordinator::start_env(
        &etcd.endpoint(),
        &["--webhooks-file", &file.to_string_lossy()],
        &[("E2E_FAILOVERS_SECRET", SECRET_FAILOVERS)],
    )
    .expect("start the coordinator");
    wait_following(&coord);

    // Four events of three kinds in two clusters.
    let docs = [
        ("a/p/c1", event("failover", "n2", 2_000), 2_000),
        ("a/p/c1", event("fenced", "n1", 2_001), 2_001),
        ("a/p/c1", event("joined", "n3", 2_002), 2_002),
        ("b/q/c2", event("failover", "m1", 2_003), 2_003),
    ];
    let written = Instant::now();
    let ids: Vec<String> = docs
        .iter()
        .map(|(c, d, ms)| put_event(&etcd, c, d, *ms))
        .collect();

    // `all` gets every one promptly, although `dead` and `hang` are failing meanwhile (a
    // hanging attempt alone takes 2 s, and `hang` makes four of them).
    let got = eventually(PROMPT, Duration::from_millis(50), || {
        let r = all.received();
        (r.len() >= docs.len()).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "`all` got {:?}\n{}",
            all.received().iter().map(Request::json).collect::<Vec<_>>(),
            coord.log()
        )
    });
    let prompt = got.iter().map(|r| r.at).max().expect("some") - written;
    assert!(
        prompt < Duration::from_secs(3),
        "the healthy endpoint waited {prompt:?}: a dead or hanging endpoint held it up"
    );
    let api_started = Instant::now();
    let (s, _) = coord.api(None).get("/healthz");
    assert_eq!(s, 200);
    assert!(
        api_started.elapsed() < Duration::from_secs(2),
        "the API was slow while endpoints hang"
    );
    assert_eq!(
        got.len(),
        docs.len(),
        "each event once; nothing from before the start"
    );
    for ((cluster, doc, _), id) in docs.iter().zip(&ids) {
        let req = got
            .iter()
            .find(|r| r.json()["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no delivery of {id}"));
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, format!("/hooks/all?token={QUERY_TOKEN}"));
        assert_eq!(
            req.header("content-type"),
            Some("application/cloudevents+json")
        );
        assert_eq!(req.header("autopilot-webhook"), Some("all"));
        assert!(
            signature_ok(SECRET_ALL, req),
            "signature of {id}: {:?}",
            req.headers
        );
        assert!(
            !signature_ok(SECRET_FLAKY, req),
            "another secret must not verify"
        );
        let node = doc["node"].as_str().expect("node");
        let ce = req.json();
        assert_eq!(
            ce,
            json!({
                "specversion": "1.0",
                "id": id,
                "source": format!("/autopilot/{cluster}/nodes/{node}"),
                "type": format!("io.autopilot.{}", doc["kind"].as_str().expect("kind")),
                "time": doc["time"],
                "subject": node,
                "datacontenttype": "application/json",
                "data": doc,
            }),
            "the CloudEvent of {id}"
        );
    }
    assert!(
        !got.iter().any(|r| r.json()["id"] == old.as_str()),
        "an event from before the start was sent"
    );

    // `failovers`: failover in a/*/* only (not the fenced or joined one, not b/q/c2's).
    let f = eventually(PROMPT, Duration::from_millis(50), || {
        let r = failovers.received();
        (!r.is_empty()).then_some(r)
    })
    .expect("`failovers` got nothing");
    assert_eq!(f[0].json()["id"], ids[0].as_str());
    assert_eq!(f[0].json()["type"], "io.autopilot.failover");
    assert!(
        signature_ok(SECRET_FAILOVERS, &f[0]),
        "a secret from the environment"
    );
    throughout(
        Instant::now() + Duration::from_secs(1),
        Duration::from_millis(100),
        || {
            let n = failovers.received().len();
            assert_eq!(n, 1, "the filter let other events through");
        },
    );

    // `flaky`: the fenced event, answered 500, 500, then 200: three attempts, one delivery.
    let tries = eventually(PROMPT, Duration::from_millis(50), || {
        let r = flaky.received();
        (r.len() >= 3).then_some(r)
    })
    .unwrap_or_else(|| {
        panic!(
            "`flaky` got {} attempts\n{}",
            flaky.received().len(),
            coord.log()
        )
    });
    for (i, r) in tries.iter().enumerate() {
        assert_eq!(r.json()["id"], ids[1].as_str(), "attempt {i}");
        assert_eq!(r.json()["type"], "io.autopilot.fenced");
        let attempt = (i + 1).to_string();
        assert_eq!(
            r.header("autopilot-delivery-attempt"),
            Some(attempt.as_str())
        );
        assert!(signature_ok(SECRET_FLAKY, r), "each attempt is signed");
    }
    assert!(
        tries[1].at - tries[0].at >= Duration::from_millis(50),
        "retried without backing off"
    );

    // `dead`: every event fails after its three attempts. `hang` holds one event at a time
    // (queue: 1): the first hangs in its attempts while the other three arrive, so two of
    // them are pushed out and dropped, and the two it attempts fail after two timeouts each.
    let m = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        let m = metrics_text(&coord);
        let done = metric(
            &m,
            "autopilot_coordinator_webhook_deliveries_total",
            &[("webhook", "dead"), ("outcome", "failed")],
        ) >= 4.0
            && metric(
                &m,
                "autopilot_coordinator_webhook_deliveries_total",
                &[("webhook", "hang"), ("outcome", "failed")],
            ) >= 2.0;
        done.then_some(m)
    })
    .unwrap_or_else(|| {
        panic!(
            "failures not counted:\n{}\n{}",
            metrics_text(&coord),
            coord.log()
        )
    });
    let count = |hook: &str, outcome: &str| {
        metric(
            &m,
            "autopilot_coordinator_webhook_deliveries_total",
            &[("webhook", hook), ("outcome", outcome)],
        )
    };
    assert_eq!(count("all", "delivered"), 4.0);
    assert_eq!(count("all", "failed"), 0.0);
    assert_eq!(count("failovers", "delivered"), 1.0);
    assert_eq!(count("flaky", "delivered"), 1.0);
    assert_eq!(count("flaky", "failed"), 0.0);
    assert_eq!(count("dead", "failed"), 4.0);
    assert_eq!(count("dead", "delivered"), 0.0);
    assert_eq!(count("hang", "failed"), 2.0);
    assert_eq!(
        count("hang", "dropped"),
        2.0,
        "a full queue drops its oldest"
    );
    assert_eq!(count("hang", "delivered"), 0.0);
    assert_eq!(
        metric(
            &m,
            "autopilot_coordinator_webhook_retries_total",
            &[("webhook", "flaky")]
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            "autopilot_coordinator_webhook_retries_total",
            &[("webhook", "dead")]
        ),
        8.0,
        "two retries for each of four events"
    );
    assert!(
        m.contains(
            "autopilot_coordinator_webhook_delivery_duration_seconds_bucket{webhook=\"all\""
        ),
        "no duration histogram:\n{m}"
    );

    // Logs name the webhook and the status; no secret, no query string, anywhere.
    let log = coord.log();
    assert!(
        log.lines()
            .any(|l| l.contains("webhook=flaky") && l.contains("status=500")),
        "no log line names the webhook and its status:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("webhook=dead") && l.contains("connection")),
        "{log}"
    );
    let dump = etcd.etcdctl(&["get", "--prefix", ""]).expect("read etcd");
    for secret in [
        SECRET_ALL,
        SECRET_FAILOVERS,
        SECRET_FLAKY,
        SECRET_DEAD,
        SECRET_HANG,
        QUERY_TOKEN,
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!m.contains(secret), "{secret} in /metrics");
        assert!(!dump.contains(secret), "{secret} in etcd");
    }
    drop(hang);
}

#[test]
fn delivery_resumes_after_an_etcd_restart_with_nothing_skipped_or_repeated() {
    let mut etcd = EtcdServer::start().expect("start etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 10);
    let rx = Receiver::ok().expect("receiver");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("webhooks.yaml");
    std::fs::write(
        &file,
        format!(
            "webhooks:\n  - name: one\n    url: {}/\n    secret_file: {}\n",
            rx.url(),
            write_secret(dir.path(), "one.secret", SECRET_ALL)
        ),
    )
    .expect("write");
    let coord = Coordinator::start(
        &etcd.endpoint(),
        &["--webhooks-file", &file.to_string_lossy()],
    )
    .expect("start the coordinator");
    wait_following(&coord);
    let ids_of = |rx: &Receiver| -> Vec<String> {
        rx.received()
            .iter()
            .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let first = put_event(&etcd, "a/p/c1", &event("failover", "n1", 5_000), 5_000);
    assert!(
        eventually(PROMPT, Duration::from_millis(50), || (ids_of(&rx).len()
            == 1)
            .then_some(()))
        .is_some(),
        "first event not delivered"
    );
    etcd.restart().expect("restart etcd");
    let later: Vec<String> = (0..3)
        .map(|i| {
            let ms = 6_000 + i;
            put_event(&etcd, "a/p/c1", &event("joined", "n2", ms), ms)
        })
        .collect();
    let mut want = vec![first];
    want.extend(later);
    assert!(
        eventually(Duration::from_secs(20), Duration::from_millis(100), || {
            (ids_of(&rx).len() >= want.len()).then_some(())
        })
        .is_some(),
        "events after the restart not delivered: {:?}\n{}",
        ids_of(&rx),
        coord.log()
    );
    assert!(
        coord
            .log()
            .contains("webhooks: the etcd watch ended; watching again"),
        "the restart did not break the watch, so it tested nothing:\n{}",
        coord.log()
    );
    throughout(
        Instant::now() + Duration::from_secs(1),
        Duration::from_millis(100),
        || {
            assert_eq!(ids_of(&rx), want, "each event exactly once, in order");
        },
    );
}
