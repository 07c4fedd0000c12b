//! The command line as an operator meets it: help, version, check-config, exit codes.

use std::path::{Path, PathBuf};
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
    let out = autopilot(&[
        "check-config",
        "--effective",
        file.to_str().expect("utf-8 path"),
    ]);
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

fn autopilot_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(args)
        .env_remove("AUTOPILOT_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run autopilot")
}

/// A file with three problems the YAML stage rejects one at a time (two unknown fields, a
/// wrong type) and two that validation finds (a timeout longer than its interval, a bad
/// job name); its path and the lines and columns each is reported at.
fn many_problems(dir: &Path) -> (PathBuf, [(&'static str, &'static str); 5]) {
    let file = dir.join("agent.yaml");
    std::fs::write(
        &file,
        "process:\n  exec: [sleep, \"1\"]\n  stop_timout: 5s\n\
         handlers:\n  health:\n    exec: [\"true\"]\n    interval: 1s\n    timeout: 5s\n    bogus: 1\n\
         telemetry:\n  listen: 127.0.0.1:0\n\
         store:\n  ttl: [1]\n\
         jobs:\n  - { name: Bad Name, exec: [x], interval: 1s }\n",
    )
    .expect("write");
    let want = [
        ("3:3", "process.stop_timout"),
        ("8:14", "handlers.health.timeout"),
        ("9:5", "handlers.health.bogus"),
        ("13:", "store.ttl"),
        ("15:", "jobs[0].name"),
    ];
    (file, want)
}

#[test]
fn check_config_reports_every_parse_and_validation_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, want) = many_problems(dir.path());
    let out = autopilot_env(
        &["check-config", "--config", file.to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = text(&out.stderr);
    for (place, field) in want {
        let line = err
            .lines()
            .find(|l| l.contains(field))
            .unwrap_or_else(|| panic!("{field} is not reported:\n{err}"));
        assert!(
            line.starts_with(&format!("{}:{place}", file.display())),
            "{field} is not reported at {place}: {line}"
        );
        assert!(
            line.contains("expected"),
            "{field} does not say what is expected: {line}"
        );
    }
    assert!(err.ends_with("agent.yaml: 5 errors\n"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

#[test]
fn check_config_json_lists_the_errors_or_says_ok() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (file, want) = many_problems(dir.path());
    let path = file.to_str().expect("utf-8");
    let out = autopilot_env(&["check-config", "-o", "json", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(64));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["file"], path);
    assert_eq!(doc["ok"], false);
    let errors = doc["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), want.len(), "{doc:#}");
    for (e, (place, field)) in errors.iter().zip(want) {
        let line = e["line"].as_u64().expect("line");
        assert!(e["column"].as_u64().is_some(), "{e}");
        assert!(
            place.starts_with(&format!("{line}:")),
            "{field} at line {line}: {e}"
        );
        assert!(
            e["message"].as_str().expect("message").starts_with(field),
            "{e}"
        );
    }

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "process: { exec: [sleep, \"1\"] }\nnode: { name: db-1 }\n",
    )
    .expect("write");
    let out = autopilot_env(
        &["check-config", "-o", "json"],
        &[("AUTOPILOT_CONFIG", &good)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(doc["errors"], serde_json::json!([]));
    assert_eq!(doc["node"], "db-1");
    assert_eq!(doc["engine"], "process");
}

#[test]
fn check_config_prints_a_one_line_summary_and_reads_autopilot_config() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/postgres/agent-1.yaml");
    let out = autopilot_env(&["check-config"], &[("AUTOPILOT_CONFIG", &example)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}: OK (engine postgres, node pg-1, cluster demo/postgres/main)\n",
            example.display()
        )
    );
    // The argument wins over the environment.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "process: {}\n").expect("write");
    let out = autopilot_env(
        &["check-config", bad.to_str().expect("utf-8")],
        &[("AUTOPILOT_CONFIG", &example)],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stdout));
}

#[test]
fn check_config_without_a_file_or_with_a_missing_one_exits_64() {
    let out = autopilot_env(&["check-config"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("AUTOPILOT_CONFIG"),
        "{}",
        text(&out.stderr)
    );
    let out = autopilot_env(
        &["check-config", "--config", "/nonexistent/agent.yaml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).starts_with("/nonexistent/agent.yaml: cannot read the file"),
        "{}",
        text(&out.stderr)
    );
}
