//! A real etcd for tests: [`EtcdServer`] (one member) and [`EtcdCluster`] (n members),
//! on random free loopback ports in a temp dir, cleaned up on `Drop`.
//!
//! Shared machines are hostile (dependencies.md gotcha 6): a port picked by binding port 0
//! can be taken again before etcd binds it, and a client can then silently talk to somebody
//! else's etcd. So every start gives the member a unique name and, once `/health` answers,
//! asks the endpoint for its member list and checks that the name is ours. On a mismatch or
//! an early exit the start is retried on new ports.
//!
//! The API is synchronous (std only) so it works from plain and from async tests alike;
//! every wait is bounded.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where Debian's `etcd-server` installs the binary.
pub const ETCD_BIN: &str = "/usr/bin/etcd";
/// How long a start may take before it counts as failed (a warm start takes ~0.1 s).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop()` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Attempts with fresh ports when a port was stolen or another etcd answered.
const START_ATTEMPTS: usize = 5;

/// One etcd member we started: its ports, data dir and process.
#[derive(Debug)]
struct Member {
    /// Unique member name; the identity check compares it with what the endpoint reports.
    name: String,
    /// Client port on 127.0.0.1.
    client_port: u16,
    /// Peer port on 127.0.0.1.
    peer_port: u16,
    /// Data dir, kept across `stop`/`restart`.
    data_dir: PathBuf,
    /// Log file (stdout and stderr of etcd), appended to across restarts.
    log_path: PathBuf,
    /// The running process, `None` while stopped.
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Spawns etcd. `initial_cluster` is `name=peer_url,...`; `state` is `new` or `existing`.
    fn spawn(&mut self, initial_cluster: &str, token: &str) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open etcd log {}", self.log_path.display()))?;
        let log_err = log.try_clone().context("clone etcd log handle")?;
        let child = Command::new(ETCD_BIN)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.client_url())
            .arg("--advertise-client-urls")
            .arg(self.client_url())
            .arg("--listen-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(self.peer_url())
            .arg("--initial-cluster")
            .arg(initial_cluster)
            .arg("--initial-cluster-token")
            .arg(token)
            .arg("--initial-cluster-state")
            .arg("new")
            .args(["--election-timeout", "100", "--heartbeat-interval", "10"])
            .args(["--enable-v2=false", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .with_context(|| format!("spawn {ETCD_BIN}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Sends `sig` and waits up to `grace` for the exit; returns whether it exited.
    fn signal_and_wait(&mut self, sig: Signal, grace: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
        let _ = kill(pid, sig);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => {
                    self.child = None;
                    return true;
                }
                Ok(None) if Instant::now() >= deadline => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn stop(&mut self) {
        if !self.signal_and_wait(Signal::SIGTERM, STOP_GRACE) {
            self.kill();
        }
    }

    fn kill(&mut self) {
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10));
    }

    /// `Some(status)` when the process has exited.
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until this member is healthy and is the member we started.
    fn wait_ready(&mut self, deadline: Instant) -> anyhow::Result<()> {
        loop {
            if let Some(status) = self.exited() {
                bail!(
                    "etcd {} exited during start ({status}); log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if http(self.client_port, "GET", "/health", "")
                .is_ok_and(|body| body.contains("\"health\":\"true\""))
            {
                let names = member_names(self.client_port)?;
                if !names.iter().any(|n| n == &self.name) {
                    bail!(
                        "port {} answers as etcd member(s) {names:?}, not as {}: somebody else's etcd",
                        self.client_port,
                        self.name
                    );
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd {} not healthy within {START_TIMEOUT:?}; log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A single-member etcd for one test.
#[derive(Debug)]
pub struct EtcdServer {
    /// The one member.
    member: Member,
    /// `--initial-cluster-token`, kept for restarts.
    token: String,
    /// Owns the data dir and log; removed on drop.
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd on random free loopback ports in a fresh temp dir and waits until it
    /// answers as itself. Fails (never skips) when etcd is not installed.
    pub fn start() -> anyhow::Result<Self> {
        check_installed()?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("etcd-test-")
                .tempdir()
                .context("create etcd temp dir")?;
            let [client_port, peer_port] = free_ports::<2>()?;
            let name = unique_name("etcd");
            let token = unique_name("token");
            let mut member = Member {
                client_port,
                peer_port,
                data_dir: dir.path().join("data"),
                log_path: dir.path().join("etcd.log"),
                child: None,
                name,
            };
            let initial = format!("{}={}", member.name, member.peer_url());
            member.spawn(&initial, &token)?;
            match member.wait_ready(Instant::now() + START_TIMEOUT) {
                Ok(()) => return Ok(Self { member, token, dir }),
                Err(e) => {
                    member.kill();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt ran")).context("start etcd")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        self.member.client_url()
    }

    /// The temp dir holding `data/` and `etcd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.member.child.is_some() && self.member.exited().is_none()
    }

    /// SIGTERM, then SIGKILL after a grace period; keeps the data dir.
    pub fn stop(&mut self) {
        self.member.stop();
    }

    /// SIGKILL at once; keeps the data dir.
    pub fn kill(&mut self) {
        self.member.kill();
    }

    /// Starts again on the same ports and data dir (stops first if running).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.member.stop();
        let initial = format!("{}={}", self.member.name, self.member.peer_url());
        self.member.spawn(&initial, &self.token)?;
        self.member
            .wait_ready(Instant::now() + START_TIMEOUT)
            .context("restart etcd")
    }

    /// Runs `etcdctl` against this server with `args`; returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        etcdctl(&self.endpoint(), args)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.member.kill();
    }
}

/// An n-member etcd cluster, for tests of the endpoint list.
#[derive(Debug)]
pub struct EtcdCluster {
    /// The members, in start order.
    members: Vec<Member>,
    /// `name=peer_url,...` for every member.
    initial_cluster: String,
    /// `--initial-cluster-token`.
    token: String,
    /// Owns every member's data dir and log.
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts an `n`-member cluster (see [`EtcdCluster`]).
    pub fn start_cluster(n: usize) -> anyhow::Result<EtcdCluster> {
        EtcdCluster::start(n)
    }
}

impl EtcdCluster {
    /// Starts `n` members on random free loopback ports and waits until each answers as itself.
    pub fn start(n: usize) -> anyhow::Result<Self> {
        check_installed()?;
        if n == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("etcd-cluster-test-")
                .tempdir()
                .context("create etcd temp dir")?;
            let ports = free_port_list(2 * n)?;
            let token = unique_name("token");
            let mut members: Vec<Member> = (0..n)
                .map(|i| Member {
                    name: unique_name(&format!("etcd{i}")),
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    data_dir: dir.path().join(format!("data{i}")),
                    log_path: dir.path().join(format!("etcd{i}.log")),
                    child: None,
                })
                .collect();
            let initial_cluster = members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let mut result = Ok(());
            for m in &mut members {
                if let Err(e) = m.spawn(&initial_cluster, &token) {
                    result = Err(e);
                    break;
                }
            }
            let deadline = Instant::now() + START_TIMEOUT;
            if result.is_ok() {
                result = members.iter_mut().try_for_each(|m| m.wait_ready(deadline));
            }
            match result {
                Ok(()) => {
                    return Ok(Self {
                        members,
                        initial_cluster,
                        token,
                        dir,
                    });
                }
                Err(e) => {
                    members.iter_mut().for_each(Member::kill);
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.expect("at least one attempt ran")).context("start etcd cluster")
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The temp dir holding every member's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops member `i` (SIGTERM, then SIGKILL); keeps its data.
    pub fn stop(&mut self, i: usize) {
        self.members[i].stop();
    }

    /// Kills member `i` at once; keeps its data.
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Restarts member `i` on its ports and data dir.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        m.stop();
        m.spawn(&self.initial_cluster, &self.token)?;
        m.wait_ready(Instant::now() + START_TIMEOUT)
            .with_context(|| format!("restart etcd member {i}"))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.members.iter_mut().for_each(Member::kill);
    }
}

/// Runs `/usr/bin/etcdctl --endpoints=<endpoint> args..` with API v3; returns stdout.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .context("run /usr/bin/etcdctl (apt-get install -y etcd-client)")?;
    if !out.status.success() {
        bail!(
            "etcdctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn check_installed() -> anyhow::Result<()> {
    if !Path::new(ETCD_BIN).exists() {
        bail!("{ETCD_BIN} not found: install etcd-server: apt-get install -y etcd-server");
    }
    Ok(())
}

/// A name no other test (in this or another process) uses.
fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{what}-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `N` distinct free loopback ports (bound at once, then released).
fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let list = free_port_list(N)?;
    Ok(std::array::from_fn(|i| list[i]))
}

fn free_port_list(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a free loopback port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("read bound port")?.port()))
        .collect()
}

/// Minimal HTTP/1.0 request to 127.0.0.1:`port`; returns the body of a 200 response.
fn http(port: u16, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("{method} {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_owned())
}

/// The member names the etcd on `port` reports (grpc-gateway `/v3/cluster/member/list`).
fn member_names(port: u16) -> anyhow::Result<Vec<String>> {
    let body = http(port, "POST", "/v3/cluster/member/list", "{}")
        .with_context(|| format!("list members of the etcd on port {port}"))?;
    let v: serde_json::Value = serde_json::from_str(&body).context("parse member list")?;
    Ok(v["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_put_restart_keeps_data_and_drop_cleans_up() {
        let mut etcd = EtcdServer::start().expect("start etcd");
        etcd.etcdctl(&["put", "/k", "v"]).expect("put");
        etcd.restart().expect("restart");
        assert!(etcd.etcdctl(&["get", "/k"]).expect("get").contains('v'));
        etcd.kill();
        assert!(!etcd.is_running());
        let dir = etcd.dir().to_owned();
        drop(etcd);
        assert!(!dir.exists(), "temp dir removed on drop");
    }

    #[test]
    fn identity_check_rejects_a_foreign_etcd() {
        let etcd = EtcdServer::start().expect("start etcd");
        let names = member_names(etcd.member.client_port).expect("member list");
        assert_eq!(names, vec![etcd.member.name.clone()]);
        let mut impostor = Member {
            name: "not-the-one".into(),
            client_port: etcd.member.client_port,
            peer_port: etcd.member.peer_port,
            data_dir: etcd.dir().join("x"),
            log_path: etcd.dir().join("x.log"),
            child: None,
        };
        let err = impostor
            .wait_ready(Instant::now() + Duration::from_secs(2))
            .expect_err("a foreign etcd must be detected");
        assert!(
            format!("{err:#}").contains("somebody else's etcd"),
            "{err:#}"
        );
    }

    #[test]
    fn three_member_cluster_starts() {
        let mut c = EtcdCluster::start(3).expect("start cluster");
        let eps = c.endpoints();
        assert_eq!(eps.len(), 3);
        etcdctl(&eps[0], &["put", "/k", "v"]).expect("put");
        assert!(etcdctl(&eps[2], &["get", "/k"]).expect("get").contains('v'));
        c.stop(1);
        c.restart(1).expect("restart member");
    }
}
