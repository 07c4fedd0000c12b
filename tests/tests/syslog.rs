//! End-to-end: the agent's log records reach real syslog receivers on loopback — a UDP socket
//! and a TCP listener (octet-counting framing) bound to 127.0.0.1 — as RFC 5424 messages with
//! the configured facility and APP-NAME; and a receiver that is down does not stop the agent,
//! which counts what it drops. Nothing leaves loopback.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use e2e::harness::agent::Agent;
use e2e::harness::util::{eventually, free_port};

/// An agent running `sleep` whose log goes to stderr and to syslog at `address`.
fn agent(dir: &Path, address: &str, telemetry: u16) -> Agent {
    let config = dir.join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
process: {{ exec: [sleep, "120"] }}
handlers:
  health: {{ exec: ["true"], interval: 200ms }}
telemetry: {{ listen: "127.0.0.1:{telemetry}" }}
log:
  output: [stderr, syslog]
  syslog: {{ address: "{address}", facility: local3, app_name: ap-e2e }}
"#
        ),
    )
    .expect("write the agent config");
    Agent::run(&config)
}

/// Checks one RFC 5424 message from the agent: PRI local3 (19) × 8 + informational (6) = 158
/// (or another severity), version 1, a recent UTC timestamp, this host, the APP-NAME, the
/// agent's PID; returns MSG.
fn check(msg: &str, pid: i32) -> String {
    let (pri, rest) = msg
        .strip_prefix('<')
        .and_then(|m| m.split_once('>'))
        .unwrap_or_else(|| panic!("no PRI: {msg:?}"));
    let pri: u16 = pri.parse().expect("PRI is a number");
    assert_eq!(pri / 8, 19, "facility local3: {msg:?}");
    assert!(matches!(pri % 8, 3 | 4 | 6 | 7), "severity: {msg:?}");
    let parts: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(parts.len(), 8, "{msg:?}");
    assert_eq!(parts[0], "1", "version: {msg:?}");
    let ts = humantime_parse(parts[1]);
    let age = SystemTime::now()
        .duration_since(ts)
        .unwrap_or(Duration::ZERO);
    assert!(
        age < Duration::from_secs(60),
        "timestamp {}: {msg:?}",
        parts[1]
    );
    let host = nix::unistd::gethostname().expect("hostname");
    assert_eq!(parts[2], host.to_string_lossy(), "hostname: {msg:?}");
    assert_eq!(parts[3], "ap-e2e", "app-name: {msg:?}");
    assert_eq!(parts[4], pid.to_string(), "procid: {msg:?}");
    assert_eq!((parts[5], parts[6]), ("-", "-"), "msgid, sd: {msg:?}");
    parts[7].to_owned()
}

/// RFC 3339 `YYYY-MM-DDTHH:MM:SS.ffffffZ` to a time (UTC only).
fn humantime_parse(ts: &str) -> SystemTime {
    assert!(
        ts.ends_with('Z') && ts.len() == 27,
        "timestamp format: {ts:?}"
    );
    let n = |r: std::ops::Range<usize>| -> u64 { ts[r].parse().expect("digits") };
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    let (h, mi, s, us) = (n(11..13), n(14..16), n(17..19), n(20..26));
    // Days since 1970-01-01 (civil from days, Howard Hinnant's algorithm, inverted).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2 / 400;
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + s)
        + Duration::from_micros(us)
}

/// Messages until one contains `needle`, within 30 s.
fn until(
    mut next: impl FnMut() -> Option<String>,
    needle: &str,
    pid: i32,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let Some(msg) = next() else { continue };
        let text = check(&msg, pid);
        if text.contains(needle) {
            return;
        }
        seen.push(text);
    }
    panic!(
        "no message containing {needle:?}; got {seen:?}\nagent log:\n{}",
        log()
    );
}

#[test]
fn log_records_arrive_over_udp() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP receiver");
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let address = format!("udp://{}", rx.local_addr().expect("addr"));
    let agent = agent(dir.path(), &address, free_port());
    let mut buf = vec![0u8; 65_536];
    until(
        || {
            let n = rx.recv(&mut buf).ok()?;
            Some(String::from_utf8(buf[..n].to_vec()).expect("UTF-8"))
        },
        "main process started",
        agent.pid(),
        || agent.log(),
    );
}

#[test]
fn log_records_arrive_over_tcp_with_octet_counting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a TCP receiver");
    let address = format!("tcp://{}", listener.local_addr().expect("addr"));
    let agent = agent(dir.path(), &address, free_port());
    let (mut conn, _) = listener.accept().expect("the agent connects");
    conn.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut frame = || -> Option<String> {
        // LEN SP MSG
        let mut len = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            conn.read_exact(&mut byte).ok()?;
            if byte[0] == b' ' {
                break;
            }
            assert!(
                byte[0].is_ascii_digit(),
                "frame length: {len:?} then {byte:?}"
            );
            len.push(byte[0]);
        }
        let len: usize = String::from_utf8(len).ok()?.parse().ok()?;
        let mut msg = vec![0u8; len];
        conn.read_exact(&mut msg).expect("the whole frame");
        Some(String::from_utf8(msg).expect("UTF-8"))
    };
    until(&mut frame, "main process started", agent.pid(), || {
        agent.log()
    });
}

#[test]
fn a_receiver_that_is_down_never_stops_the_agent() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens there: every connection is refused.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let telemetry = free_port();
    let agent = agent(dir.path(), &format!("tcp://127.0.0.1:{port}"), telemetry);
    let metrics = format!("http://127.0.0.1:{telemetry}/metrics");
    let dropped = eventually(Duration::from_secs(30), Duration::from_millis(250), || {
        let health = reqwest::blocking::get(format!("http://127.0.0.1:{telemetry}/health")).ok()?;
        if !health.status().is_success() {
            return None;
        }
        let body = reqwest::blocking::get(&metrics).ok()?.text().ok()?;
        body.lines()
            .find(|l| l.starts_with("autopilot_log_records_dropped_total{output=\"syslog\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|n| *n >= 1.0)
    });
    assert!(
        dropped.is_some(),
        "the agent is not healthy with its records counted as dropped; agent log:\n{}",
        agent.log()
    );
    // stderr still has everything.
    assert!(
        agent.log().contains("main process started"),
        "{}",
        agent.log()
    );
}
