//! End-to-end: a real Prometheus scrapes the agent and sees the handler metrics.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::harness::agent::Agent;
use e2e::harness::util::{eventually, free_port, system_bin};
use serde_json::Value;

/// Kills Prometheus when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn query(url: &str) -> Option<Value> {
    let v: Value = reqwest::blocking::get(url).ok()?.json().ok()?;
    (v["status"] == "success").then(|| v["data"].clone())
}

#[test]
fn prometheus_scrapes_the_agent() {
    let prometheus = system_bin("/usr/bin/prometheus", "prometheus");
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_port = free_port();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
process: {{ exec: [sleep, "120"] }}
handlers:
  health: {{ exec: ["true"], interval: 200ms }}
telemetry: {{ listen: "127.0.0.1:{agent_port}" }}
"#
        ),
    )
    .expect("write agent config");
    let agent = Agent::run(&config);

    let prom_port = free_port();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            r#"
global: {{ scrape_interval: 1s, scrape_timeout: 900ms }}
scrape_configs:
  - job_name: autopilot
    static_configs: [{{ targets: ["127.0.0.1:{agent_port}"] }}]
"#
        ),
    )
    .expect("write prometheus config");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let _prometheus = KillOnDrop(child);
    let api = format!("http://127.0.0.1:{prom_port}/api/v1");

    // The target is up: Prometheus parsed our exposition format.
    let up = eventually(Duration::from_secs(30), Duration::from_millis(250), || {
        let targets = query(&format!("{api}/targets"))?;
        let t = targets["activeTargets"].as_array()?.first()?.clone();
        (t["health"] == "up").then_some(t)
    });
    assert!(
        up.is_some(),
        "target not up; prometheus log:\n{}\nagent log:\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default(),
        agent.log()
    );

    // And the handler metrics are there, labelled by handler and outcome.
    let q = format!(
        "{api}/query?query=autopilot_handler_runs_total%7Bhandler%3D%22health%22%2Coutcome%3D%22success%22%7D"
    );
    let result = eventually(Duration::from_secs(15), Duration::from_millis(250), || {
        let data = query(&q)?;
        let first = data["result"].as_array()?.first()?.clone();
        let value: f64 = first["value"][1].as_str()?.parse().ok()?;
        (value >= 1.0).then_some(value)
    });
    assert!(result.is_some(), "handler metrics not in Prometheus");
    let hist = format!("{api}/query?query=autopilot_handler_duration_seconds_count");
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(250), || {
            query(&hist)?["result"]
                .as_array()
                .filter(|r| !r.is_empty())
                .map(|_| ())
        })
        .is_some(),
        "handler duration histogram not in Prometheus"
    );

    // The counters the alert rules take `increase()` of start at 0, so the first failover or
    // restart is an increase Prometheus can see.
    for counter in [
        "autopilot_failovers_total",
        "autopilot_main_process_restarts_total",
        "autopilot_database_kills_total",
        "autopilot_lease_keepalive_failures_total",
    ] {
        let q = format!("{api}/query?query={counter}");
        assert!(
            eventually(Duration::from_secs(5), Duration::from_millis(250), || {
                let data = query(&q)?;
                let value = data["result"].as_array()?.first()?["value"][1].clone();
                (value == "0").then_some(())
            })
            .is_some(),
            "{counter} is not exported at 0 from the start"
        );
    }
}
