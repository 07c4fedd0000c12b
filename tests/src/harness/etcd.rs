//! A real etcd for tests: [`EtcdServer`] (one member) and [`EtcdCluster`] (n members),
//! on random free loopback ports in a temp dir, cleaned up on `Drop`.
//!
//! Shared machines are hostile (dependencies.md gotcha 6): a port picked by binding port 0
//! can be taken again before etcd binds it, and a client can then silently talk to somebody
//! else's etcd. So every start gives the member a unique name and, once `/health` answers,
//! asks the endpoint for its member list and checks that the name is ours. On a mismatch or
//! an early exit the start is retried on new ports.
//!
//! [`EtcdServer::start_tls`] serves clients over TLS only (`https://`, `--client-cert-auth`)
//! with a throw-away CA made by the `openssl` CLI ([`TlsFiles`]); its readiness and identity
//! checks go through `etcdctl` with the client certificate instead of plain HTTP.
//! [`EtcdServer::enable_auth`] turns etcd's authentication on (a `root` user, and a user whose
//! role may only read and write one key prefix); `etcdctl` then runs as `root`.
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
use nix::sys::signal::Signal;

pub use crate::harness::tls::TlsFiles;
use crate::harness::util::signal_and_wait;

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
    /// Serve clients over TLS with these files (peers stay on plain http).
    tls: Option<TlsFiles>,
    /// `--quota-backend-bytes`, when not etcd's default.
    quota: Option<u64>,
    /// Also serve clients on this address (same port), e.g. a test LAN's etcd address.
    also_on: Option<std::net::Ipv4Addr>,
    /// The user `etcdctl` runs as once auth is on (`root`, its password).
    user: Option<(String, String)>,
}

impl Member {
    fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
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
        let mut cmd = Command::new(ETCD_BIN);
        if let Some(q) = self.quota {
            cmd.arg(format!("--quota-backend-bytes={q}"));
        }
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(match self.also_on {
                Some(ip) => format!("{},http://{ip}:{}", self.client_url(), self.client_port),
                None => self.client_url(),
            })
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

    fn stop(&mut self) {
        if !signal_and_wait(&mut self.child, Signal::SIGTERM, STOP_GRACE) {
            self.kill();
        }
    }

    fn kill(&mut self) {
        signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(10));
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
            if self.healthy() {
                let names = self.member_names()?;
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

    /// `/health` says true (over TLS: `etcdctl endpoint health` with the client certificate).
    fn healthy(&self) -> bool {
        match &self.tls {
            None => http(self.client_port, "GET", "/health", "")
                .is_ok_and(|body| body.contains("\"health\":\"true\"")),
            Some(tls) => etcdctl_with(
                &self.client_url(),
                Some(tls),
                self.user.as_ref(),
                &["endpoint", "health"],
            )
            .is_ok(),
        }
    }

    /// The member names the endpoint reports.
    fn member_names(&self) -> anyhow::Result<Vec<String>> {
        match &self.tls {
            None => member_names(self.client_port),
            Some(tls) => {
                let out = etcdctl_with(
                    &self.client_url(),
                    Some(tls),
                    self.user.as_ref(),
                    &["member", "list", "-w", "json"],
                )
                .with_context(|| {
                    format!("list members of the etcd on port {}", self.client_port)
                })?;
                names_of(&out)
            }
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
        Self::start_with(false, None, None)
    }

    /// Like [`start`](Self::start), also serving clients on `ip` (same port; see
    /// [`endpoint_on`](Self::endpoint_on)): etcd for the nodes of a [`crate::harness::netns::Lan`].
    pub fn start_also_on(ip: std::net::Ipv4Addr) -> anyhow::Result<Self> {
        Self::start_with(false, None, Some(ip))
    }

    /// Like [`start`](Self::start), with `--quota-backend-bytes=<quota>` (NOSPACE tests).
    pub fn start_with_quota(quota: u64) -> anyhow::Result<Self> {
        Self::start_with(false, Some(quota), None)
    }

    /// Like [`start`](Self::start), but clients must use TLS with a client certificate
    /// (`https://` endpoint, `--client-cert-auth`). Returns the server and the PEM files
    /// (under [`dir`](Self::dir)`/tls`, removed with the server).
    pub fn start_tls() -> anyhow::Result<(Self, TlsFiles)> {
        let server = Self::start_with(true, None, None)?;
        let files = server.member.tls.clone().expect("started with TLS");
        Ok((server, files))
    }

    fn start_with(
        tls: bool,
        quota: Option<u64>,
        also_on: Option<std::net::Ipv4Addr>,
    ) -> anyhow::Result<Self> {
        check_installed()?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("etcd-test-")
                .tempdir()
                .context("create etcd temp dir")?;
            let tls = if tls {
                Some(TlsFiles::generate(&dir.path().join("tls"))?)
            } else {
                None
            };
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
                tls,
                quota,
                also_on,
                user: None,
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

    /// `http://127.0.0.1:<port>` (`https://` when started with [`start_tls`](Self::start_tls)).
    pub fn endpoint(&self) -> String {
        self.member.client_url()
    }

    /// `http://<ip>:<port>` when started with [`start_also_on`](Self::start_also_on)`(ip)`.
    pub fn endpoint_on(&self) -> Option<String> {
        self.member
            .also_on
            .map(|ip| format!("http://{ip}:{}", self.member.client_port))
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

    /// Runs `etcdctl` against this server with `args` (and the client certificate when TLS
    /// is on, as `root` once auth is on); returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        etcdctl_with(
            &self.endpoint(),
            self.member.tls.as_ref(),
            self.member.user.as_ref(),
            args,
        )
    }

    /// How `etcdctl` reaches this server (for harnesses that run their own).
    pub fn access(&self) -> EtcdAccess {
        EtcdAccess {
            tls: self.member.tls.clone(),
            user: self.member.user.clone(),
        }
    }

    /// The CA and certificates when started with [`start_tls`](Self::start_tls).
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.member.tls.as_ref()
    }

    /// Turns authentication on: a `root` user with [`ROOT_PASSWORD`] (what
    /// [`etcdctl`](Self::etcdctl) runs as from now on), and `user` with `password`, granted a
    /// role that may read and write the keys under `prefix` and nothing else. Checks that the
    /// user can write under `prefix` and is refused elsewhere.
    pub fn enable_auth(&mut self, prefix: &str, user: &str, password: &str) -> anyhow::Result<()> {
        let role = format!("{user}-prefix");
        let steps: [&[&str]; 6] = [
            &[
                "user",
                "add",
                &format!("root:{ROOT_PASSWORD}"),
                "--interactive=false",
            ],
            &["role", "add", &role],
            &[
                "role",
                "grant-permission",
                &role,
                "readwrite",
                prefix,
                "--prefix=true",
            ],
            &[
                "user",
                "add",
                &format!("{user}:{password}"),
                "--interactive=false",
            ],
            &["user", "grant-role", user, &role],
            &["auth", "enable"],
        ];
        for args in steps {
            self.etcdctl(args)
                .with_context(|| format!("etcdctl {}", args[..2].join(" ")))?;
        }
        self.member.user = Some(("root".to_owned(), ROOT_PASSWORD.to_owned()));
        let tls = self.member.tls.as_ref();
        let as_user = (user.to_owned(), password.to_owned());
        let probe = format!("{prefix}auth-probe");
        etcdctl_with(&self.endpoint(), tls, Some(&as_user), &["put", &probe, "x"])
            .context("the prefix's user writes under its prefix")?;
        etcdctl_with(&self.endpoint(), tls, Some(&as_user), &["del", &probe])
            .context("the prefix's user deletes under its prefix")?;
        if etcdctl_with(
            &self.endpoint(),
            tls,
            Some(&as_user),
            &["put", "/outside", "x"],
        )
        .is_ok()
        {
            bail!("the user {user} may write outside {prefix}: auth is not on");
        }
        Ok(())
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
                    tls: None,
                    quota: None,
                    also_on: None,
                    user: None,
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

impl EtcdCluster {
    /// The index of the member that is the raft leader now, as the members that answer
    /// report it.
    pub fn leader(&self) -> Option<usize> {
        let status = |m: &Member| -> Option<(u64, u64)> {
            let out = etcdctl(&m.client_url(), &["endpoint", "status", "-w", "json"]).ok()?;
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            let s = v.get(0)?.get("Status")?;
            Some((
                s.get("header")?.get("member_id")?.as_u64()?,
                s.get("leader")?.as_u64()?,
            ))
        };
        let seen: Vec<Option<(u64, u64)>> = self.members.iter().map(status).collect();
        let leader = seen.iter().flatten().map(|&(_, l)| l).find(|&l| l != 0)?;
        seen.iter()
            .position(|s| s.is_some_and(|(id, _)| id == leader))
    }
}

/// The etcd a test cluster's agents use: one server, or a cluster of members.
pub enum Etcd {
    /// One server (boxed: it is the larger by far).
    Server(Box<EtcdServer>),
    /// Several members.
    Cluster(EtcdCluster),
}

impl Etcd {
    /// What a test cluster runs on: one server reachable on `lan`'s etcd address too, one
    /// server with TLS, one server, or a cluster of `members`.
    pub fn start(
        lan: Option<&crate::harness::netns::Lan>,
        tls: bool,
        members: usize,
    ) -> anyhow::Result<Self> {
        Ok(match (lan, members) {
            (Some(l), _) => Etcd::Server(Box::new(EtcdServer::start_also_on(l.etcd_ip())?)),
            (None, 1) if tls => Etcd::Server(Box::new(EtcdServer::start_tls()?.0)),
            (None, 1) => Etcd::Server(Box::new(EtcdServer::start()?)),
            (None, m) => Etcd::Cluster(EtcdCluster::start(m)?),
        })
    }

    /// The endpoints the agents are given (a server's LAN address when it has one).
    pub fn agent_endpoints(&self) -> Vec<String> {
        match self {
            Etcd::Server(s) => vec![s.endpoint_on().unwrap_or_else(|| s.endpoint())],
            Etcd::Cluster(c) => c.endpoints(),
        }
    }

    /// The endpoints the test's own `etcdctl` uses.
    pub fn endpoints(&self) -> Vec<String> {
        match self {
            Etcd::Server(s) => vec![s.endpoint()],
            Etcd::Cluster(c) => c.endpoints(),
        }
    }

    /// How `etcdctl` reaches it (an etcd cluster runs without TLS or auth).
    pub fn access(&self) -> EtcdAccess {
        match self {
            Etcd::Server(s) => s.access(),
            Etcd::Cluster(_) => EtcdAccess::default(),
        }
    }

    /// What `security` asks of the one server (see [`crate::harness::cluster::Secured::set_up`]); an
    /// etcd cluster runs without TLS or auth.
    pub fn secure(
        &mut self,
        security: crate::harness::cluster::Security,
        prefix: &str,
        dir: &Path,
    ) -> anyhow::Result<crate::harness::cluster::Secured> {
        match self {
            Etcd::Server(s) => crate::harness::cluster::Secured::set_up(security, s, prefix, dir),
            Etcd::Cluster(_) if security == crate::harness::cluster::Security::default() => {
                Ok(crate::harness::cluster::Secured::default())
            }
            Etcd::Cluster(_) => bail!("TLS and auth are set up on a single etcd server only"),
        }
    }

    /// The one server (a test that stops or restarts it).
    pub fn server(&self) -> &EtcdServer {
        match self {
            Etcd::Server(s) => s,
            Etcd::Cluster(_) => panic!("this test cluster runs on an etcd cluster"),
        }
    }

    /// The one server, mutably.
    pub fn server_mut(&mut self) -> &mut EtcdServer {
        match self {
            Etcd::Server(s) => s,
            Etcd::Cluster(_) => panic!("this test cluster runs on an etcd cluster"),
        }
    }

    /// The members, mutably (a test that stops one).
    pub fn cluster_mut(&mut self) -> &mut EtcdCluster {
        match self {
            Etcd::Cluster(c) => c,
            Etcd::Server(_) => panic!("this test cluster runs on one etcd server"),
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.members.iter_mut().for_each(Member::kill);
    }
}

/// The `root` user's password once [`EtcdServer::enable_auth`] ran.
pub const ROOT_PASSWORD: &str = "root-MARKER-3c9e51";

/// How `etcdctl` reaches an etcd: the client certificate (TLS) and the user (auth), when on.
#[derive(Clone, Debug, Default)]
pub struct EtcdAccess {
    /// CA and client certificate, for an etcd started with [`EtcdServer::start_tls`].
    pub tls: Option<TlsFiles>,
    /// User and password, once auth is on.
    pub user: Option<(String, String)>,
}

/// Runs `/usr/bin/etcdctl --endpoints=<endpoint> args..` with API v3; returns stdout.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    etcdctl_with(endpoint, None, None, args)
}

/// [`etcdctl`] with the client certificate and user of `access`.
pub fn etcdctl_as(endpoint: &str, access: &EtcdAccess, args: &[&str]) -> anyhow::Result<String> {
    etcdctl_with(endpoint, access.tls.as_ref(), access.user.as_ref(), args)
}

/// [`etcdctl`] with the CA and client certificate of `tls` and as `user`; bounded by its dial
/// and command timeouts.
fn etcdctl_with(
    endpoint: &str,
    tls: Option<&TlsFiles>,
    user: Option<&(String, String)>,
    args: &[&str],
) -> anyhow::Result<String> {
    let mut cmd = Command::new("/usr/bin/etcdctl");
    if let Some((name, password)) = user {
        cmd.arg(format!("--user={name}:{password}"));
    }
    if let Some(tls) = tls {
        cmd.arg("--cacert")
            .arg(&tls.ca)
            .arg("--cert")
            .arg(&tls.client_cert)
            .arg("--key")
            .arg(&tls.client_key)
            .args(["--dial-timeout=1s", "--command-timeout=2s"]);
    }
    let out = cmd
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
    names_of(&body)
}

/// The `name`s in a member list (JSON from the gateway or from `etcdctl -w json`).
fn names_of(body: &str) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(body).context("parse member list")?;
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
        impostor_is_detected(&etcd, None, Duration::from_secs(2));
    }

    /// A member that expects another name on `etcd`'s ports refuses to call it ready.
    fn impostor_is_detected(etcd: &EtcdServer, tls: Option<TlsFiles>, within: Duration) {
        let mut impostor = Member {
            name: "not-the-one".into(),
            client_port: etcd.member.client_port,
            peer_port: etcd.member.peer_port,
            data_dir: etcd.dir().join("x"),
            log_path: etcd.dir().join("x.log"),
            child: None,
            tls,
            quota: None,
            also_on: None,
            user: None,
        };
        let err = impostor
            .wait_ready(Instant::now() + within)
            .expect_err("a foreign etcd must be detected");
        assert!(
            format!("{err:#}").contains("somebody else's etcd"),
            "{err:#}"
        );
    }

    #[test]
    fn tls_server_requires_a_client_certificate_and_checks_identity() {
        let (etcd, tls) = EtcdServer::start_tls().expect("start etcd with TLS");
        assert!(etcd.endpoint().starts_with("https://127.0.0.1:"));
        etcd.etcdctl(&["put", "/k", "v"]).expect("put over TLS");
        assert!(etcd.etcdctl(&["get", "/k"]).expect("get").contains('v'));
        // Plain http to the TLS port fails, and so does TLS without the client certificate.
        let plain = etcd.endpoint().replace("https://", "http://");
        assert!(
            etcdctl_with(
                &plain,
                None,
                None,
                &["--dial-timeout=1s", "--command-timeout=1s", "get", "/k"]
            )
            .is_err()
        );
        let out = Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoint()))
            .arg("--cacert")
            .arg(&tls.ca)
            .args(["--dial-timeout=1s", "--command-timeout=1s", "get", "/k"])
            .output()
            .expect("run etcdctl");
        assert!(
            !out.status.success(),
            "a client without a certificate got in"
        );

        // The identity check works over TLS too.
        impostor_is_detected(&etcd, Some(tls), Duration::from_secs(5));
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
