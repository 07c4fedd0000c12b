//! Bytes a node's servers sent over TCP while something happened: the kernel's own
//! per-connection counter (`tcpi_bytes_sent`, as `ss -ti` prints it) of every connection
//! whose local port is one of the node's listening ports (its database and its agent's
//! listener, which serves MariaDB's clone stream). Everything is on loopback, so network
//! interface counters would mix every process's traffic; these count only what was sent
//! *from* those ports, to anyone: the joining node, the other nodes, the benchmark's own
//! probes, the agents' health checks.
//!
//! A connection's counter disappears with it, so three readings are combined: a snapshot of
//! the open connections at the start and at the end (`ss -tinH state connected`), and in
//! between `ss -tinHE`, which prints every connection the kernel destroys with its final
//! counters (sock_diag's destroy events; root). Per connection: its last counter (at its
//! destruction, else at the end) minus its counter at the start (0 when it opened later).
//! The event listener starts before the first snapshot, so a connection that closes in
//! between is counted whole rather than lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long the event listener gets to subscribe, and the last events to arrive.
const SETTLE: Duration = Duration::from_millis(500);

/// Counting under way; [`Traffic::stop`] tells the bytes.
pub struct Traffic {
    ports: Vec<u16>,
    start: HashMap<String, u64>,
    /// `ss -tinHE` (line-buffered through `stdbuf`, so what it printed is in the file when
    /// it is killed).
    monitor: Child,
    events: PathBuf,
}

impl Traffic {
    /// Starts counting what is sent from `ports`; the event log goes into `dir`.
    pub fn start(ports: &[u16], dir: &Path) -> Result<Traffic> {
        let tag: Vec<String> = ports.iter().map(u16::to_string).collect();
        let events = dir.join(format!("ss-events-{}.txt", tag.join("-")));
        let out = std::fs::File::create(&events)
            .with_context(|| format!("create {}", events.display()))?;
        let mut monitor = Command::new("stdbuf")
            .args(["-oL", "ss", "-tinHE", &filter(ports)])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .context("run `stdbuf -oL ss -tinHE` (coreutils, iproute2)")?;
        std::thread::sleep(SETTLE);
        if let Some(st) = monitor.try_wait()? {
            bail!("`ss -tinHE` exited at once ({st}): it needs root (sock_diag destroy events)");
        }
        let start = match snapshot(ports) {
            Ok(s) => s,
            Err(e) => {
                let _ = monitor.kill();
                let _ = monitor.wait();
                return Err(e);
            }
        };
        Ok(Traffic {
            ports: ports.to_vec(),
            start,
            monitor,
            events,
        })
    }

    /// Stops counting; the bytes sent from the ports since [`Traffic::start`].
    pub fn stop(mut self) -> Result<u64> {
        let end = snapshot(&self.ports);
        std::thread::sleep(SETTLE);
        let _ = self.monitor.kill();
        let _ = self.monitor.wait();
        let end = end?;
        let text = std::fs::read_to_string(&self.events)
            .with_context(|| format!("read {}", self.events.display()))?;
        let destroyed = parse(&text, &self.ports);
        Ok(total(&self.start, &destroyed, &end))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        let _ = self.monitor.kill();
        let _ = self.monitor.wait();
    }
}

/// `( sport = :A or sport = :B )`.
fn filter(ports: &[u16]) -> String {
    let any: Vec<String> = ports.iter().map(|p| format!("sport = :{p}")).collect();
    format!("( {} )", any.join(" or "))
}

/// The open connections from `ports` and their counters.
fn snapshot(ports: &[u16]) -> Result<HashMap<String, u64>> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "connected", &filter(ports)])
        .stdin(Stdio::null())
        .output()
        .context("run ss (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ss -tinH exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout), ports))
}

/// `ss -tin` output: per connection from one of `ports` (`"local peer"`), its bytes sent;
/// a connection listed twice keeps its larger counter (counters only grow).
fn parse(text: &str, ports: &[u16]) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // `STATE RECV-Q SEND-Q LOCAL PEER`: the first two tokens with a port.
            let mut addrs = line.split_whitespace().filter(|t| t.contains(':'));
            current = match (addrs.next(), addrs.next()) {
                (Some(local), Some(peer))
                    if local
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .is_some_and(|p| ports.contains(&p)) =>
                {
                    Some(format!("{local} {peer}"))
                }
                _ => None,
            };
            continue;
        }
        let Some(key) = current.take() else {
            continue;
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|t| t.strip_prefix(name))
                .and_then(|v| v.parse::<u64>().ok())
        };
        // `bytes_sent` (Linux 4.19+); before that `bytes_acked`, which counts the SYN too.
        let sent = field("bytes_sent:")
            .or_else(|| field("bytes_acked:").map(|a| a.saturating_sub(1)))
            .unwrap_or(0);
        let slot = out.entry(key).or_insert(0);
        *slot = (*slot).max(sent);
    }
    out
}

/// Per connection: the last counter seen (at its destruction, else at the end, else at the
/// start) minus the counter at the start.
fn total(
    start: &HashMap<String, u64>,
    destroyed: &HashMap<String, u64>,
    end: &HashMap<String, u64>,
) -> u64 {
    let mut keys: Vec<&String> = start
        .keys()
        .chain(destroyed.keys())
        .chain(end.keys())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let before = start.get(k).copied().unwrap_or(0);
            let last = destroyed
                .get(k)
                .or_else(|| end.get(k))
                .copied()
                .unwrap_or(before);
            last.saturating_sub(before)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SS: &str = "ESTAB 0      0      127.0.0.1:5432 127.0.0.1:39792
\t bbr wscale:10,10 rto:204 bytes_sent:3000000 bytes_acked:3000001 segs_out:66
UNCONN 0      0      127.0.0.1:41401   0.0.0.0:*
\t rto:1000 mss:536 cwnd:10 app_limited
ESTAB 0      0      127.0.0.1:40000 127.0.0.1:5432
\t bytes_sent:77 bytes_acked:78 bytes_received:3000000
ESTAB 0      0      127.0.0.1:8008 127.0.0.1:40002
\t bytes_acked:11
";

    #[test]
    fn only_connections_from_the_ports_are_read() {
        let got = parse(SS, &[5432, 8008]);
        assert_eq!(got.get("127.0.0.1:5432 127.0.0.1:39792"), Some(&3_000_000));
        assert_eq!(got.get("127.0.0.1:8008 127.0.0.1:40002"), Some(&10));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn connections_are_counted_from_the_start_to_their_end() {
        let map = |v: &[(&str, u64)]| -> HashMap<String, u64> {
            v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
        };
        let start = map(&[("a", 100), ("b", 50), ("gone-before", 7)]);
        let destroyed = map(&[("a", 400), ("c", 1000)]);
        let end = map(&[("a", 300), ("b", 60), ("d", 5)]);
        // a: 400 - 100; b: 60 - 50; c: 1000; d: 5; gone-before: 0.
        assert_eq!(total(&start, &destroyed, &end), 300 + 10 + 1000 + 5);
    }
}
