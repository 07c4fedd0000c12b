//! Hostile clients against the agent's HTTP listener (issue 13, finding 1): a flood of
//! half-sent requests against a MariaDB primary whose agent runs with a low open-file limit
//! must make neither a failover nor a false `/health` answer.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use e2e::harness::util::{hold, throughout};
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};

/// The open-file limit the agents run under (soft and hard, so they cannot raise it).
const OPEN_FILES: u64 = 256;
/// Connections the flood holds open at once, well over the limit.
const FLOOD: usize = 1_100;
/// How long the flood lasts: several probe intervals, TTLs and header-read timeouts.
const FLOOD_FOR: Duration = Duration::from_secs(20);
/// The flood's pace: a pause after every [`FLOOD`] connections opened.
const FLOOD_PAUSE: Duration = Duration::from_millis(200);
/// How often the primary key and `/health` are checked from another address meanwhile.
const HEALTH_EVERY: Duration = Duration::from_millis(500);

/// `GET /health` from another loopback address than the flood's (a load balancer's view).
fn health_from_elsewhere(port: u16) -> Option<(u16, serde_json::Value)> {
    let client = reqwest::blocking::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build the HTTP client");
    let r = client
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.json().ok()?))
}

#[test]
fn a_half_open_connection_flood_neither_fails_over_the_primary_nor_falsifies_health() {
    let mut c = MariaCluster::create(2, MariaOpts::default()).expect("create the cluster");
    c.limit_open_files(OPEN_FILES);
    c.start_agent(0);
    c.start_agent(1);
    let p = c.wait_primary(Duration::from_secs(90));
    let r = 1 - p;
    c.wait_replicating(r, p, Duration::from_secs(90));
    c.wait_eligible(r, Duration::from_secs(60));
    // Who holds the key, under which lease (the document's figures are refreshed as they
    // change: a replica attaching, uptime).
    let holder = |c: &MariaCluster| {
        c.doc("primary")
            .map(|d| (d["id"].to_string(), d["lease"].to_string()))
    };
    let primary_key = holder(&c).expect("a primary key");
    let port = c.telemetry_port(p);
    let log_before = c.agent_log(p).len();

    let flood = std::thread::spawn(move || {
        let mut held: std::collections::VecDeque<TcpStream> = Default::default();
        let mut opened = 0usize;
        let until = Instant::now() + FLOOD_FOR;
        while Instant::now() < until {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n");
                opened += 1;
                held.push_back(s);
            }
            if held.len() > FLOOD {
                held.pop_front();
            }
            if opened.is_multiple_of(FLOOD) {
                hold(FLOOD_PAUSE);
            }
        }
        opened
    });

    let mut answered = 0;
    throughout(Instant::now() + FLOOD_FOR, HEALTH_EVERY, || {
        assert_eq!(
            holder(&c).as_ref(),
            Some(&primary_key),
            "the primary key changed hands under the flood\n{}",
            c.logs()
        );
        if let Some((code, body)) = health_from_elsewhere(port) {
            assert_eq!(
                (code, body["healthy"].as_bool(), body["role"].as_str()),
                (200, Some(true), Some("primary")),
                "/health is not truthful under the flood: {body}\n{}",
                c.logs()
            );
            answered += 1;
        }
    });
    let opened = flood.join().expect("the flood thread");
    eprintln!(
        "figures: {opened} flood connections in {FLOOD_FOR:?} ({:.0}/s), up to {FLOOD} held at once; \
         /health answered another address {answered} times, primary unchanged",
        opened as f64 / FLOOD_FOR.as_secs_f64()
    );
    assert!(
        opened >= FLOOD,
        "the flood opened only {opened} connections"
    );
    assert!(
        answered >= 10,
        "/health answered another client only {answered} times under the flood\n{}",
        c.logs()
    );
    let log = c.agent_log(p).split_off(log_before);
    for bad in [
        "the main process is not running",
        "handover",
        "Too many open files",
    ] {
        assert!(
            !log.contains(bad),
            "the primary's agent logged {bad:?} under the flood\n{log}"
        );
    }
    assert!(
        log.contains("refused a connection: the listener is at its cap"),
        "the flood was never refused\n{log}"
    );
}
