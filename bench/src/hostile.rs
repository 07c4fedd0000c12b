//! `bench hostile`: the request rate each listener sustains and what it does to everyone else
//! (issue 13). `wrk` (Debian package `wrk`, installed by `scripts/install-deps`) loads one
//! listener from 127.0.0.1 for a few seconds while an observer on 127.0.0.2 asks the health
//! endpoint every 50 ms and the cluster is watched for a change of primary:
//!
//! - the primary's agent (a 3-node PostgreSQL cluster): `GET /health`, within and beyond the
//!   per-address connection cap;
//! - the coordinator on the same etcd: `GET /v1/clusters` with an admin token, and without
//!   a token (the throttled case).
//!
//! Reported: requests answered per second (every status), how many were not 2xx, socket
//! errors, the observer's latency (median, 99th percentile, worst) and failures, and whether
//! the primary stayed.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator};
use e2e::harness::util::system_bin;
use e2e::postgres::cluster::{PgCluster, PgOpts};

/// What `wrk` reported.
#[derive(Debug, Default)]
struct Load {
    requests_per_second: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
}

/// Parses wrk's summary: `N requests in …`, `Requests/sec: X`, `Non-2xx or 3xx responses: N`,
/// `Socket errors: connect A, read B, write C, timeout D`.
fn parse_wrk(out: &str) -> anyhow::Result<Load> {
    let mut load = Load::default();
    for line in out.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            load.requests_per_second = v.trim().parse().context("Requests/sec")?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            load.non_2xx = v.trim().parse().context("Non-2xx")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            load.socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if line.contains(" requests in ") {
            load.requests = line
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .context("N requests in")?;
        }
    }
    if load.requests_per_second == 0.0 && load.requests == 0 {
        bail!("no summary in wrk's output:\n{out}");
    }
    Ok(load)
}

/// The observer's view: latencies of answered requests, and failures (no answer, or not 200).
struct Observed {
    latencies: Vec<Duration>,
    failures: usize,
}

/// Asks `url` from 127.0.0.2 every 50 ms until `stop`.
fn observe(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Observed> {
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("build the observer's client");
        let mut seen = Observed {
            latencies: Vec::new(),
            failures: 0,
        };
        while !stop.load(Ordering::Relaxed) {
            let t0 = Instant::now();
            match http.get(&url).send() {
                Ok(r) if r.status().as_u16() == 200 => seen.latencies.push(t0.elapsed()),
                _ => seen.failures += 1,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    })
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// One row: `wrk -c connections` against `target` for `seconds`, observed through `health`.
fn measure(
    target: &str,
    header: Option<&str>,
    connections: u32,
    seconds: u64,
    health: &str,
) -> anyhow::Result<(Load, Observed)> {
    let stop = Arc::new(AtomicBool::new(false));
    let observer = observe(health.to_owned(), stop.clone());
    let mut cmd = Command::new(system_bin("/usr/bin/wrk", "wrk"));
    cmd.args(["-t", "2", "-c", &connections.to_string()]).args([
        "-d",
        &format!("{seconds}s"),
        "--timeout",
        "2s",
    ]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(target).output().context("run wrk")?;
    stop.store(true, Ordering::Relaxed);
    let seen = observer
        .join()
        .map_err(|_| anyhow::anyhow!("observer panicked"))?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((parse_wrk(&String::from_utf8_lossy(&out.stdout))?, seen))
}

fn row(
    t: &mut String,
    what: &str,
    connections: u32,
    (load, mut seen): (Load, Observed),
    primary_stayed: Option<bool>,
) -> anyhow::Result<()> {
    seen.latencies.sort_unstable();
    let pick = |q: f64| {
        seen.latencies
            .get(((seen.latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    writeln!(
        t,
        "| {what} | {connections} | {:.0} | {} | {} | {} | {} / {} / {} | {} / {} | {} |",
        load.requests_per_second,
        load.requests,
        load.non_2xx,
        load.socket_errors,
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(seen.latencies.last().copied().unwrap_or_default()),
        seen.failures,
        seen.latencies.len() + seen.failures,
        match primary_stayed {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        }
    )?;
    Ok(())
}

/// Runs every row for `seconds` each; the Markdown section.
pub fn run(seconds: u64) -> anyhow::Result<String> {
    let c = PgCluster::start(3, PgOpts::default())?;
    let p = e2e::postgres::scenario::settled(&c);
    let coord = Coordinator::start(&c.etcd().endpoint(), &[])?;
    let agent = format!("http://127.0.0.1:{}", c.telemetry_port(p));
    let mut t = String::new();
    writeln!(
        t,
        "### Load on one listener from one address ({seconds} s per row, wrk 2 threads; observer on another address every 50 ms)\n"
    )?;
    writeln!(
        t,
        "| target | connections | answered/s | requests | not 2xx | socket errors | observer latency ms median / p99 / max | observer failures / polls | primary stayed |"
    )?;
    writeln!(t, "|---|---|---|---|---|---|---|---|---|")?;
    for connections in [16, 256] {
        let m = measure(
            &format!("{agent}/health"),
            None,
            connections,
            seconds,
            &format!("{agent}/health"),
        )?;
        row(
            &mut t,
            "agent `GET /health` (primary)",
            connections,
            m,
            Some(c.primary() == Some(p)),
        )?;
    }
    let bearer = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let healthz = format!("{}/healthz", coord.url());
    for connections in [16, 256] {
        let m = measure(
            &format!("{}/v1/clusters", coord.url()),
            Some(&bearer),
            connections,
            seconds,
            &healthz,
        )?;
        row(
            &mut t,
            "coordinator `GET /v1/clusters`, admin token",
            connections,
            m,
            Some(c.primary() == Some(p)),
        )?;
    }
    let m = measure(
        &format!("{}/v1/clusters", coord.url()),
        None,
        64,
        seconds,
        &healthz,
    )?;
    row(
        &mut t,
        "coordinator `GET /v1/clusters`, no token",
        64,
        m,
        Some(c.primary() == Some(p)),
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_summaries() {
        let out = "Running 5s test @ http://127.0.0.1:1/health\n  2 threads and 16 connections\n  \
                   Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     1.00ms  \
                   0.50ms  10.00ms   90.00%\n  52345 requests in 5.00s, 10.00MB read\n  \
                   Socket errors: connect 3, read 4, write 0, timeout 2\n  \
                   Non-2xx or 3xx responses: 17\nRequests/sec:  10469.12\nTransfer/sec:      2.00MB\n";
        let l = parse_wrk(out).expect("parse");
        assert_eq!(l.requests, 52_345);
        assert_eq!(l.non_2xx, 17);
        assert_eq!(l.socket_errors, 9);
        assert!((l.requests_per_second - 10_469.12).abs() < 0.01);
        assert!(parse_wrk("garbage").is_err());
    }
}
