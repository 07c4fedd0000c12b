//! The shipped Prometheus configuration and alert rules pass `promtool`, and every example
//! agent configuration passes `autopilot check-config` (the binary an operator runs).

use std::process::Command;

use e2e::harness::util::{system_bin, workspace_bin, workspace_root};

fn promtool(args: &[&str]) {
    let promtool = system_bin("/usr/bin/promtool", "prometheus");
    let out = Command::new(promtool)
        .args(args)
        .current_dir(workspace_root().join("examples/prometheus"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool() {
    promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn prometheus_config_passes_promtool() {
    promtool(&["check", "config", "prometheus.yml"]);
}

#[test]
fn example_agent_configs_pass_check_config() {
    let examples = workspace_root().join("examples");
    let mut checked = 0;
    for dir in std::fs::read_dir(&examples).expect("examples/ exists") {
        let dir = dir.expect("read examples/").path();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in files {
            let path = file.expect("read example dir").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !(name.starts_with("agent") && name.ends_with(".yaml")) {
                continue;
            }
            let out = Command::new(workspace_bin("autopilot"))
                .arg("check-config")
                .arg(&path)
                .output()
                .expect("run autopilot check-config");
            assert!(
                out.status.success(),
                "{} does not pass check-config:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected the demo, redis and container examples; checked {checked}"
    );
}
