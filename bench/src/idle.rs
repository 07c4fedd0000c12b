//! Idle cost: `autopilot` supervising `sleep infinity` with a 1 s health handler, beside
//! `tini` supervising the same program, measured side by side over the same window.

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::proc::{cpu_seconds, median, rss_bytes};
use e2e::harness::util::{system_bin, workspace_bin};

/// Kills a supervised subject when the benchmark ends.
struct Subject {
    name: &'static str,
    child: Child,
}

impl Drop for Subject {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One subject's figures.
struct Figures {
    rss_median: f64,
    rss_max: f64,
    cpu_own: f64,
    cpu_children: f64,
}

/// Run both subjects for `seconds` and return the Markdown table.
pub fn run(seconds: u64) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "process: { exec: [sleep, infinity] }\n\
         handlers:\n  health: { exec: [\"true\"], interval: 1s, timeout: 1s }\n\
         telemetry: { listen: \"127.0.0.1:0\" }\nlog: { level: warn }\n",
    )?;
    let autopilot = Subject {
        name: "autopilot (1 s health handler)",
        child: Command::new(workspace_bin("autopilot"))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .context("start autopilot")?,
    };
    let tini = Subject {
        name: "tini",
        child: Command::new(system_bin("/usr/bin/tini", "tini"))
            .args(["-s", "--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .context("start tini")?,
    };
    let subjects = [autopilot, tini];

    // Let start-up settle before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let pid = |s: &Subject| i32::try_from(s.child.id()).expect("pid fits i32");
    let start: Vec<(f64, f64)> = subjects
        .iter()
        .map(|s| cpu_seconds(pid(s)))
        .collect::<Result<_>>()?;
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); subjects.len()];
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(seconds) {
        for (i, s) in subjects.iter().enumerate() {
            rss[i].push(rss_bytes(pid(s))? as f64);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let wall = began.elapsed().as_secs_f64();
    let mut figures = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let (own, children) = cpu_seconds(pid(s))?;
        let max = rss[i].iter().copied().fold(0.0, f64::max);
        figures.push(Figures {
            rss_median: median(&mut rss[i]),
            rss_max: max,
            cpu_own: (own - start[i].0) / wall * 100.0,
            cpu_children: (children - start[i].1) / wall * 100.0,
        });
    }

    let mib = |b: f64| b / (1024.0 * 1024.0);
    let mut t = String::new();
    writeln!(
        t,
        "### Idle agent: RSS and CPU supervising `sleep infinity` ({seconds} s window, RSS sampled every second)\n"
    )?;
    writeln!(
        t,
        "| subject | RSS median (MiB) | RSS max (MiB) | CPU, own (% of one core) | CPU, reaped children (% of one core) |"
    )?;
    writeln!(t, "|---|---|---|---|---|")?;
    for (s, f) in subjects.iter().zip(&figures) {
        writeln!(
            t,
            "| {} | {:.2} | {:.2} | {:.3} | {:.3} |",
            s.name,
            mib(f.rss_median),
            mib(f.rss_max),
            f.cpu_own,
            f.cpu_children
        )?;
    }
    let ratio = figures[0].rss_median / figures[1].rss_median;
    writeln!(
        t,
        "\nautopilot / tini RSS ratio (medians): {ratio:.1}×. Targets: autopilot under 10 MiB RSS and under 0.5 % of one core (own CPU)."
    )?;
    writeln!(
        t,
        "\"Reaped children\" is the CPU of the health handler's execs (`true`, once a second), which tini does not run."
    )?;
    Ok(t)
}
