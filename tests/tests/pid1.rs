//! End-to-end: the agent as PID 1 of a fresh PID namespace reaps orphaned grandchildren.

use std::process::Command;
use std::time::Duration;

use e2e::harness::agent::Agent;
use e2e::harness::in_place::{NewBinary, exe, upgrade_self_with};
use e2e::harness::util::{eventually, free_port, system_bin, workspace_bin};

/// `(pid, ppid, state)` of every process, read from `/proc`.
fn processes() -> Vec<(i32, i32, char)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces: parse after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split(' ');
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some((pid, ppid, state))
    })
    .collect()
}

/// The agent for `config` as PID 1 of a fresh PID namespace; its PID outside it.
fn run_as_pid1(config: &std::path::Path) -> (Agent, i32) {
    let unshare = system_bin("/usr/bin/unshare", "util-linux");
    let mut cmd = Command::new(unshare);
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(workspace_bin("autopilot"))
        .arg("run")
        .arg("--config")
        .arg(config);
    let agent = Agent::spawn(cmd, config);
    // The agent is the child of the `unshare` process, and PID 1 inside the namespace.
    let agent_pid = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        processes()
            .into_iter()
            .find(|&(_, ppid, _)| ppid == agent.pid())
            .map(|(pid, _, _)| pid)
    })
    .expect("the agent runs under unshare");
    (agent, agent_pid)
}

#[test]
fn agent_as_pid1_reaps_orphaned_grandchildren() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events");
    let port = free_port();
    let config = dir.path().join("agent.yaml");
    // Each inner shell backgrounds a short sleep and exits at once: the sleeps are
    // orphaned, re-parented to PID 1 (the agent), and exit a moment later.
    std::fs::write(
        &config,
        format!(
            r#"
process:
  exec: [sh, -c, "for i in 1 2 3 4 5 6 7 8; do sh -c 'sleep 0.2 & exit 0'; done; echo spawned >> {events}; exec sleep 60"]
telemetry: {{ listen: "127.0.0.1:{port}" }}
"#,
            events = events.display()
        ),
    )
    .expect("write config");

    let (agent, agent_pid) = run_as_pid1(&config);
    let spawned = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        std::fs::read_to_string(&events)
            .ok()
            .filter(|s| s.contains("spawned"))
    });
    assert!(spawned.is_some(), "main did not run; log:\n{}", agent.log());

    // All eight orphans are reaped by the agent (the metric counts them) ...
    let url = format!("http://127.0.0.1:{port}/metrics");
    let reaped = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        let text = reqwest::blocking::get(&url).ok()?.text().ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("autopilot_orphans_reaped_total"))?;
        let n: f64 = line.rsplit(' ').next()?.parse().ok()?;
        (n >= 8.0).then_some(n)
    });
    assert!(
        reaped.is_some(),
        "orphans were not reaped; log:\n{}",
        agent.log()
    );
    // ... and none of the agent's children is left a zombie.
    let zombies: Vec<_> = processes()
        .into_iter()
        .filter(|&(_, ppid, state)| ppid == agent_pid && state == 'Z')
        .collect();
    assert!(
        zombies.is_empty(),
        "zombies left under the agent: {zombies:?}"
    );

    // As PID 1 it still stops on SIGTERM, and the whole namespace goes with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the agent");
    let gone = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        (!std::path::Path::new(&format!("/proc/{agent_pid}")).exists()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the agent did not stop on SIGTERM; log:\n{}",
        agent.log()
    );
}

#[test]
fn agent_as_pid1_upgrades_in_place_keeping_its_pid_its_child_and_its_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("agent.yaml");
    // The main process writes a numbered line every 100 ms: its output must reach the log
    // before and after the agent re-executes.
    std::fs::write(
        &config,
        format!(
            r#"
node: {{ state_dir: "{state}" }}
process:
  exec: [sh, -c, "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done"]
telemetry: {{ listen: "127.0.0.1:{port}" }}
"#,
            state = dir.path().join("state").display()
        ),
    )
    .expect("write config");
    let (agent, agent_pid) = run_as_pid1(&config);
    let child = || {
        processes()
            .into_iter()
            .find(|&(_, ppid, state)| ppid == agent_pid && state != 'Z')
            .map(|(pid, _, _)| pid)
    };
    let main = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        child().filter(|_| agent.log().contains("tick-3"))
    })
    .unwrap_or_else(|| panic!("the main process did not run; log:\n{}", agent.log()));

    let new = NewBinary::copy();
    let r = upgrade_self_with(&[
        "--config",
        &config.display().to_string(),
        "--binary",
        &new.path.display().to_string(),
    ]);
    assert_eq!(r.code, 0, "{r:?}\n{}", agent.log());
    assert!(r.out.contains("upgraded in place"), "{r:?}");
    assert!(r.out.contains("(pid 1)"), "PID 1 kept: {r:?}");
    assert_eq!(exe(agent_pid), new.path, "{}", agent.log());
    assert_eq!(
        child(),
        Some(main),
        "the same main process, still our child"
    );
    // Its output still reaches the log, through the adopted pipes.
    let last_before = agent.log().matches("tick-").count();
    let more = eventually(Duration::from_secs(10), Duration::from_millis(100), || {
        let log = agent.log();
        let upgraded = log.find("took over the running database")?;
        log[upgraded..].contains("tick-").then_some(())
    });
    assert!(
        more.is_some(),
        "no output of the main process after the upgrade ({last_before} lines before); log:\n{}",
        agent.log()
    );
    // And the adopted process is supervised: SIGTERM stops it and the agent.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the agent");
    let gone = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        (!std::path::Path::new(&format!("/proc/{main}")).exists()
            && !std::path::Path::new(&format!("/proc/{agent_pid}")).exists())
        .then_some(())
    });
    assert!(
        gone.is_some(),
        "the agent did not stop; log:\n{}",
        agent.log()
    );
}
