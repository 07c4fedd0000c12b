//! The command line as an operator meets it: help, version, check-config, exit codes.

use std::process::{Command, Output};

fn autopilot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(args)
        .output()
        .expect("run autopilot")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_names_the_commands_and_exit_codes() {
    let out = autopilot(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["run", "check-config", "Exit codes", "64", "69"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn unknown_arguments_exit_64() {
    let out = autopilot(&["run", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("--no-such-flag"));
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("agent.yaml");
    std::fs::write(&file, "process: { exec: [sleep, \"1\"] }\n").expect("write");
    let out = autopilot(&["check-config", file.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    for default in ["stop_timeout", "listen", "9187", "level"] {
        assert!(
            yaml.contains(default),
            "effective config lacks {default}:\n{yaml}"
        );
    }
}

#[test]
fn check_config_reports_every_problem_with_its_place_and_exits_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("agent.yaml");
    std::fs::write(
        &file,
        "process:\n  exec: [sleep, \"1\"]\nhandlers:\n  health: { exec: [\"true\"], interval: 1s, timeout: 5s }\njobs:\n  - { name: Bad Name, exec: [x], interval: 1s }\n",
    )
    .expect("write");
    let out = autopilot(&["check-config", file.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(64));
    let err = text(&out.stderr);
    assert!(
        err.contains("agent.yaml:4:"),
        "names the health line:\n{err}"
    );
    assert!(err.contains("handlers.health.timeout"), "{err}");
    assert!(
        err.contains("jobs[0].name") || err.contains("jobs.0.name"),
        "{err}"
    );
}

#[test]
fn run_with_a_missing_file_exits_64_naming_it() {
    let out = autopilot(&["run", "--config", "/nonexistent/agent.yaml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("/nonexistent/agent.yaml"));
}
