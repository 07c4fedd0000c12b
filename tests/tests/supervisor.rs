//! End-to-end: the agent supervising real processes — handler order, signals, exit status,
//! restarts, preStart failure, health endpoint. Every test runs the real `autopilot` binary.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::harness::agent::Agent;
use e2e::harness::util::{eventually, free_port};
use nix::sys::signal::Signal;

/// A temp dir with an event file that handlers and the main process append lines to.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        Scene {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn events_path(&self) -> PathBuf {
        self.dir.path().join("events")
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.events_path())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Write `agent.yaml` from `body`, where `$EVENTS` stands for the event file.
    fn config(&self, body: &str) -> PathBuf {
        let path = self.dir.path().join("agent.yaml");
        let body = body.replace("$EVENTS", &self.events_path().display().to_string());
        std::fs::write(&path, body).expect("write config");
        path
    }

    fn wait_for_event(&self, line: &str, within: Duration) -> bool {
        eventually(within, Duration::from_millis(20), || {
            self.events().iter().any(|l| l == line).then_some(())
        })
        .is_some()
    }
}

/// A shell snippet for a main process that logs `main`, traps TERM (logging `main-stopped`),
/// and otherwise idles.
const TRAPPING_MAIN: &str = r#"[sh, -c, "echo main >> $EVENTS; trap 'echo main-stopped >> $EVENTS; exit 0' TERM; while true; do sleep 0.05; done"]"#;

fn append(what: &str) -> String {
    format!(r#"[sh, -c, "echo {what} >> $EVENTS"]"#)
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .expect("the agent exits with a code, not by a signal")
}

#[test]
fn handlers_run_in_lifecycle_order() {
    let s = Scene::new();
    let config = s.config(&format!(
        r#"
process:
  exec: {TRAPPING_MAIN}
  stop_timeout: 10s
handlers:
  preStart: {{ exec: {pre_start} }}
  health: {{ exec: {health}, interval: 100ms }}
  preStop: {{ exec: {pre_stop} }}
  postStop: {{ exec: [sh, -c, "echo postStop $AUTOPILOT_MAIN_EXIT_CODE >> $EVENTS"] }}
telemetry: {{ listen: "off" }}
"#,
        pre_start = append("preStart"),
        health = append("health"),
        pre_stop = append("preStop"),
    ));
    let mut agent = Agent::run(&config);
    let healthy_twice = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        (s.events().iter().filter(|l| *l == "health").count() >= 2).then_some(())
    });
    assert!(
        healthy_twice.is_some(),
        "no health runs; log:\n{}",
        agent.log()
    );
    agent.signal(Signal::SIGTERM);
    let status = agent
        .wait_exit(Duration::from_secs(15))
        .expect("agent exits after SIGTERM");
    assert_eq!(exit_code(status), 0, "log:\n{}", agent.log());

    // Health checks start with the main process (the first may be written before the main
    // process's own line) and end before preStop; the rest is in exact order.
    let events = s.events();
    let order: Vec<&str> = events
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "health")
        .collect();
    assert_eq!(
        order,
        ["preStart", "main", "preStop", "main-stopped", "postStop 0"],
        "log:\n{}",
        agent.log()
    );
    let at = |what: &str| events.iter().position(|e| e == what);
    let health = events.iter().enumerate().filter(|(_, e)| *e == "health");
    assert!(
        health
            .clone()
            .all(|(i, _)| Some(i) > at("preStart") && Some(i) < at("preStop")),
        "a health check outside the main process's life: {events:?}"
    );
}

#[test]
fn exit_status_of_the_main_process_is_the_agents() {
    let s = Scene::new();
    let config = s.config(
        r#"
process: { exec: [sh, -c, "exit 3"] }
handlers:
  postStop: { exec: [sh, -c, "echo postStop $AUTOPILOT_MAIN_EXIT_CODE >> $EVENTS"] }
telemetry: { listen: "off" }
"#,
    );
    let mut agent = Agent::run(&config);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("agent exits");
    assert_eq!(exit_code(status), 3, "log:\n{}", agent.log());
    assert_eq!(s.events(), ["postStop 3"]);
}

#[test]
fn main_killed_by_a_signal_exits_128_plus_signal() {
    let s = Scene::new();
    let config = s.config(
        r#"
process: { exec: [sh, -c, "kill -KILL $$"] }
telemetry: { listen: "off" }
"#,
    );
    let mut agent = Agent::run(&config);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("agent exits");
    assert_eq!(exit_code(status), 128 + 9, "log:\n{}", agent.log());
}

#[test]
fn stop_timeout_escalates_to_sigkill() {
    let s = Scene::new();
    let config = s.config(
        r#"
process:
  exec: [sh, -c, "trap '' TERM; echo main >> $EVENTS; while true; do sleep 0.05; done"]
  stop_timeout: 500ms
telemetry: { listen: "off" }
"#,
    );
    let mut agent = Agent::run(&config);
    assert!(
        s.wait_for_event("main", Duration::from_secs(10)),
        "log:\n{}",
        agent.log()
    );
    let asked = Instant::now();
    agent.signal(Signal::SIGTERM);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("agent exits");
    assert_eq!(exit_code(status), 128 + 9, "log:\n{}", agent.log());
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "SIGKILL came before stop_timeout"
    );
}

#[test]
fn a_second_sigterm_speeds_up_the_stop() {
    let s = Scene::new();
    let config = s.config(
        r#"
process:
  exec: [sh, -c, "trap '' TERM; echo main >> $EVENTS; while true; do sleep 0.05; done"]
  stop_timeout: 120s
handlers:
  postStop: { exec: [sh, -c, "echo postStop >> $EVENTS"] }
telemetry: { listen: "off" }
"#,
    );
    let mut agent = Agent::run(&config);
    assert!(
        s.wait_for_event("main", Duration::from_secs(10)),
        "log:\n{}",
        agent.log()
    );
    agent.signal(Signal::SIGTERM);
    assert!(
        agent.wait_exit(Duration::from_millis(300)).is_none(),
        "agent must wait for stop_timeout"
    );
    agent.signal(Signal::SIGTERM);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("a second SIGTERM makes the agent exit without waiting out stop_timeout");
    assert_eq!(exit_code(status), 128 + 9, "log:\n{}", agent.log());
    assert!(
        !s.events().contains(&"postStop".to_owned()),
        "postStop is skipped after escalation"
    );
}

#[test]
fn other_signals_are_forwarded_to_the_main_process() {
    let s = Scene::new();
    let config = s.config(
        r#"
process:
  exec: [sh, -c, "trap 'echo HUP >> $EVENTS' HUP; trap 'echo USR1 >> $EVENTS' USR1; trap 'echo USR2 >> $EVENTS' USR2; echo main >> $EVENTS; while true; do sleep 0.05; done"]
telemetry: { listen: "off" }
"#,
    );
    let agent = Agent::run(&config);
    assert!(
        s.wait_for_event("main", Duration::from_secs(10)),
        "log:\n{}",
        agent.log()
    );
    for (sig, line) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
    ] {
        agent.signal(sig);
        assert!(
            s.wait_for_event(line, Duration::from_secs(5)),
            "{sig} did not reach the main process; log:\n{}",
            agent.log()
        );
    }
}

#[test]
fn failed_pre_start_keeps_the_main_process_from_starting() {
    let s = Scene::new();
    let config = s.config(&format!(
        r#"
process: {{ exec: {main} }}
handlers:
  preStart: {{ exec: [sh, -c, "echo preparing; exit 1"] }}
telemetry: {{ listen: "off" }}
"#,
        main = append("main"),
    ));
    let mut agent = Agent::run(&config);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("agent exits");
    assert_eq!(exit_code(status), 69, "log:\n{}", agent.log());
    assert!(
        s.events().is_empty(),
        "main must not start: {:?}",
        s.events()
    );
    assert!(
        agent.log().contains("preStart"),
        "the log names the failed handler"
    );
}

#[test]
fn on_failure_restarts_with_backoff_then_gives_up() {
    let s = Scene::new();
    let config = s.config(
        r#"
process:
  exec: [sh, -c, "echo main >> $EVENTS; exit 1"]
  restart: { policy: on-failure, initial_backoff: 50ms, max_backoff: 100ms, max_restarts: 2 }
telemetry: { listen: "off" }
"#,
    );
    let mut agent = Agent::run(&config);
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .expect("agent gives up");
    assert_eq!(exit_code(status), 1, "log:\n{}", agent.log());
    assert_eq!(
        s.events(),
        ["main", "main", "main"],
        "one start and two restarts"
    );
}

#[test]
fn health_endpoint_follows_the_health_handler() {
    let s = Scene::new();
    let flag = s.dir.path().join("healthy");
    let port = free_port();
    let config = s.config(&format!(
        r#"
process: {{ exec: [sleep, "60"] }}
handlers:
  health: {{ exec: [test, -e, "{flag}"], interval: 100ms }}
telemetry: {{ listen: "127.0.0.1:{port}" }}
"#,
        flag = flag.display()
    ));
    let agent = Agent::run(&config);
    let url = format!("http://127.0.0.1:{port}/health");
    let code = |want: u16| {
        eventually(Duration::from_secs(10), Duration::from_millis(50), || {
            let r = reqwest::blocking::get(&url).ok()?;
            (r.status().as_u16() == want).then(|| r.text().unwrap_or_default())
        })
    };
    // Before the first check has run the answer is 503 too, for another reason (`starting`,
    // "waiting for the first health check"): wait for the failed check's own answer, which
    // says why.
    eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let r = reqwest::blocking::get(&url).ok()?;
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        (status == 503 && body.contains("health handler")).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no 503 saying the health handler failed; log:\n{}",
            agent.log()
        )
    });
    std::fs::write(&flag, "").expect("create flag");
    let body = code(200).unwrap_or_else(|| panic!("no 200 once healthy; log:\n{}", agent.log()));
    assert!(body.contains(r#""healthy":true"#), "{body}");
    std::fs::remove_file(&flag).expect("remove flag");
    code(503).unwrap_or_else(|| panic!("no 503 after the check fails again"));
}

#[test]
fn metrics_endpoint_serves_handler_and_process_metrics() {
    let s = Scene::new();
    let port = free_port();
    let config = s.config(&format!(
        r#"
process: {{ exec: [sleep, "60"] }}
handlers:
  health: {{ exec: ["true"], interval: 100ms }}
jobs:
  - {{ name: tick, exec: ["false"], interval: 100ms }}
telemetry: {{ listen: "127.0.0.1:{port}" }}
"#
    ));
    let agent = Agent::run(&config);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let wanted = [
        r#"autopilot_handler_runs_total{handler="health",outcome="success"}"#,
        r#"autopilot_handler_runs_total{handler="job:tick",outcome="failure"}"#,
        "autopilot_handler_duration_seconds_bucket{handler=\"health\"",
        "autopilot_main_process_up 1",
        "autopilot_host_memory_total_bytes",
        "autopilot_build_info{version=",
    ];
    let found = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        let text = reqwest::blocking::get(&url).ok()?.text().ok()?;
        wanted.iter().all(|w| text.contains(w)).then_some(text)
    });
    assert!(found.is_some(), "metrics missing; log:\n{}", agent.log());
}
