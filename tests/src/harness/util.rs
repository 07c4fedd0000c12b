//! Small helpers: free ports, bounded waits ([`eventually`], [`poll_until`], [`throughout`],
//! [`hold`]), processes, workspace paths.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A loopback TCP port that was free a moment ago, for a test server to listen on. Servers
/// started on it must still be checked to be the ones answering.
///
/// Picked at random *below* the kernel's ephemeral range (`ip_local_port_range`), never
/// handed out twice by this process, and checked bindable. Not from the ephemeral range
/// (binding port 0): the tests' own client connections take their local ports from there,
/// and one of them holding the port makes the server's bind fail (seen in CI: PostgreSQL's
/// "could not bind IPv4 address: Address already in use").
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    const LOW: u16 = 16384;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > LOW + 1024 {
        let span = u64::from(ephemeral_low - LOW);
        for _ in 0..1000 {
            // A per-process random key (RandomState) over a counter: a different sequence in
            // every test process, so concurrent tests rarely draw the same port.
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
            h.write_u32(std::process::id());
            let port = LOW + u16::try_from(h.finish() % span).expect("span fits u16");
            let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.push(port);
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// Whether process `pid` is still the one its pid file named: its command line mentions
/// `marker` (its data directory or pid file). PIDs are reused (`kernel.pid_max` is 32768 on
/// many machines and the suite spawns thousands of processes), so a stale pid file left by a
/// killed server must never make a test signal a process of another test running beside it.
pub fn runs_with(pid: i32, marker: &std::path::Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = marker.as_os_str().as_encoded_bytes();
    !marker.is_empty() && cmdline.windows(marker.len()).any(|w| w == marker)
}

/// Poll `check` every `every` until it returns `Some` or `within` has passed: a bounded
/// eventual assertion. The last check starts at or after the deadline, so waiting this way is
/// never weaker than sleeping `within` and checking once.
pub fn eventually<T>(
    within: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(every.min(deadline - now));
    }
}

/// Call `probe` every `every` until `done` accepts its answer or `within` has passed (the
/// last call at or after the deadline, as [`eventually`]); the last answer, for the caller to
/// assert on, so that a timeout fails with what was seen last.
pub fn poll_until<T>(
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let mut last = None;
    eventually(within, every, || {
        let answer = probe();
        let finished = done(&answer);
        last = Some(answer);
        finished.then_some(())
    });
    last.expect("eventually calls its check at least once")
}

/// Run `check` every `every` until `until`, the first time at once and the last at or after
/// `until`: a bounded "always" assertion for a property that must hold throughout a window
/// the scenario sets (an outage held for 2 × TTL, a flood under way). `check` panics when the
/// property does not hold; it may also record what it saw.
pub fn throughout(until: Instant, every: Duration, mut check: impl FnMut()) {
    loop {
        check();
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep(every.min(until - now));
    }
}

/// Let the scenario run as it is for `d`: a fault stays injected, a load keeps its pace, a
/// token's lifetime passes. This pause *is* the scenario, or waits for something the system
/// under test does not show (its doc says which); a wait for a condition is [`eventually`],
/// and a property that must hold meanwhile is [`throughout`].
pub fn hold(d: Duration) {
    std::thread::sleep(d);
}

/// Whether process `pid` runs (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// The workspace root (the directory holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A binary built from this workspace, next to the test executable's `deps/` directory.
///
/// `scripts/test` builds the workspace's binaries before any test runs; if one is missing
/// the message says how to build it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // Test executables live in target/<profile>/deps, the `bench` binary in target/<profile>.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect();
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in {candidates:?}; build it with `cargo build --workspace --bins` (scripts/test does this)"
            )
        })
}

/// The path of a required system binary; panics (fails the test) when it is missing, with
/// the package that provides it. A missing server must fail, never skip.
pub fn system_bin(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: install it with `apt-get install -y {package}` (or run .ci/run)"
    );
    p
}

/// Send `sig` to `child` (if it still runs) and wait up to `grace` for it to exit; returns
/// whether it exited. `child` becomes `None` once it is gone.
pub fn signal_and_wait(
    child: &mut Option<Child>,
    sig: nix::sys::signal::Signal,
    grace: Duration,
) -> bool {
    let Some(c) = child.as_mut() else {
        return true;
    };
    let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pids fit in i32"));
    let _ = nix::sys::signal::kill(pid, sig);
    let deadline = Instant::now() + grace;
    loop {
        match c.try_wait() {
            Ok(Some(_)) | Err(_) => {
                *child = None;
                return true;
            }
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Waits until the node document `nodes/<name>` (read with `key`) says `eligible: true`: the
/// node itself judges it could take part in a failover (healthy, caught up, not handing over).
pub fn wait_node_eligible(
    key: impl Fn(&str) -> Option<String>,
    name: &str,
    within: Duration,
) -> bool {
    let path = format!("nodes/{name}");
    eventually(within, Duration::from_millis(50), || {
        let doc: serde_json::Value = serde_json::from_str(&key(&path)?).ok()?;
        doc["eligible"].as_bool().filter(|&e| e)
    })
    .is_some()
}

/// The state letter of `pid` from `/proc/<pid>/stat` (`Z` for a zombie, `T` stopped), or
/// `None` when it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain anything, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_counts_as_ours_only_while_its_command_line_names_the_marker() {
        let me = i32::try_from(std::process::id()).expect("pid fits i32");
        let exe = std::env::current_exe().expect("own executable");
        assert!(runs_with(me, &exe));
        assert!(!runs_with(me, std::path::Path::new("/no/such/data-dir")));
        assert!(!runs_with(i32::MAX, &exe), "no such process");
    }

    #[test]
    fn eventually_checks_once_more_at_the_deadline_not_a_poll_later() {
        let t0 = Instant::now();
        let within = Duration::from_millis(100);
        let found = eventually(within, Duration::from_secs(30), || {
            (t0.elapsed() >= within).then_some(())
        });
        assert!(found.is_some(), "no check at the deadline");
        assert!(t0.elapsed() < Duration::from_secs(10), "slept a whole poll");
        let never = eventually(within, Duration::from_millis(10), || None::<()>);
        assert!(never.is_none());
        assert!(t0.elapsed() >= within * 2);
    }

    #[test]
    fn throughout_checks_at_once_and_at_the_end_of_the_window() {
        let t0 = Instant::now();
        let window = Duration::from_millis(200);
        let mut checks = Vec::new();
        throughout(t0 + window, Duration::from_secs(30), || {
            checks.push(t0.elapsed())
        });
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert!(checks[0] < window && checks[1] >= window, "{checks:?}");
        assert!(t0.elapsed() < Duration::from_secs(10), "slept a whole poll");
    }
}
