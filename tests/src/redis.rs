//! A Redis cluster under real agents: [`RedisCluster`] starts one etcd and `n` agents, each
//! supervising a `redis-server` through the `process` engine and the hook scripts of
//! `examples/redis/hooks` (copied, so the example scripts are what is tested). Fault
//! injection (kill -9 Redis, node loss, SIGSTOP/SIGCONT, SIGTERM), etcd access, and
//! [`RedisWorkload`], Redis as the [`crate::workload`] writer and checker see it.
//!
//! Layout of the temp dir, mirroring `examples/redis/`: `agent-<i>.yaml` and `agent-<i>.log`,
//! `hooks/`, `state-<i>/` (the agent's bootstrap marker), `data-<i>/` (Redis's dir).
//! Node indexes are 0-based; node `i` is named `node-<i+1>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::agent::Agent;
use crate::etcd::{EtcdCluster, EtcdServer};
use crate::resp::{self, Reply};
use crate::util::{eventually, free_port, system_bin, workspace_root};
use crate::workload::Workload;

/// Debian's Redis server binary.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// Debian's Redis CLI.
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";

/// The cluster's names in etcd.
const NAMESPACE: &str = "e2e";
const PROJECT: &str = "redis";
const CLUSTER: &str = "cache";

/// How long one writability probe may take; a paused Redis never answers a write.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Timeout of the agents' HTTP endpoints.
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// Tuning of the agents.
#[derive(Clone, Debug)]
pub struct RedisOpts {
    /// `store.ttl`.
    pub ttl: Duration,
    /// `failover.settle`.
    pub settle: Duration,
    /// `failover.cooldown`.
    pub cooldown: Duration,
}

impl Default for RedisOpts {
    fn default() -> Self {
        RedisOpts {
            ttl: Duration::from_secs(2),
            settle: Duration::from_millis(300),
            cooldown: Duration::ZERO,
        }
    }
}

/// One node: its ports, files and agent.
struct Node {
    name: String,
    redis_port: u16,
    telemetry_port: u16,
    config: PathBuf,
    state_dir: PathBuf,
    agent: Option<Agent>,
    /// Set while the agent is SIGSTOPped.
    stopped: bool,
}

/// The etcd the agents use: one server, or a multi-member cluster (every agent gets every
/// member's endpoint).
enum Store {
    One(EtcdServer),
    Many(EtcdCluster),
}

impl Store {
    fn endpoints(&self) -> Vec<String> {
        match self {
            Store::One(e) => vec![e.endpoint()],
            Store::Many(c) => c.endpoints(),
        }
    }
}

/// `n` agents driving Redis, one etcd (or an etcd cluster), in one temp dir; everything is
/// killed on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    etcd: Store,
    http: reqwest::blocking::Client,
    opts: RedisOpts,
    /// Owns every file; removed on drop.
    dir: tempfile::TempDir,
}

/// Milliseconds of a duration, for YAML.
fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl RedisCluster {
    /// Starts etcd and `n` agents (not waiting for a primary: see [`Self::wait_primary`]).
    pub fn start(n: usize, opts: RedisOpts) -> anyhow::Result<Self> {
        Self::start_on(n, opts, Store::One(EtcdServer::start()?))
    }

    /// Starts an etcd cluster of `members` members and `n` agents configured with every
    /// member's endpoint (not waiting for a primary).
    pub fn start_on_etcd_cluster(
        n: usize,
        members: usize,
        opts: RedisOpts,
    ) -> anyhow::Result<Self> {
        Self::start_on(n, opts, Store::Many(EtcdServer::start_cluster(members)?))
    }

    fn start_on(n: usize, opts: RedisOpts, etcd: Store) -> anyhow::Result<Self> {
        system_bin(REDIS_SERVER, "redis-server");
        system_bin(REDIS_CLI, "redis-tools");
        let endpoints = etcd.endpoints();
        let dir = tempfile::Builder::new()
            .prefix("redis-cluster-")
            .tempdir()
            .context("create the cluster's temp dir")?;
        copy_hooks(&dir.path().join("hooks"))?;
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("node-{}", i + 1);
            let node = Node {
                config: dir.path().join(format!("agent-{}.yaml", i + 1)),
                state_dir: dir.path().join(format!("state-{}", i + 1)),
                redis_port: free_port(),
                telemetry_port: free_port(),
                agent: None,
                stopped: false,
                name,
            };
            std::fs::write(&node.config, agent_yaml(i + 1, &node, &endpoints, &opts))
                .context("write an agent config")?;
            nodes.push(node);
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("build the HTTP client")?;
        let mut cluster = RedisCluster {
            nodes,
            etcd,
            http,
            opts,
            dir,
        };
        for i in 0..n {
            cluster.start_agent(i);
        }
        Ok(cluster)
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The options the agents run with.
    pub fn opts(&self) -> &RedisOpts {
        &self.opts
    }

    /// The temp dir holding every config, log, state and data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s name (`node-<i+1>`), its node id in etcd.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Node `i`'s Redis port.
    pub fn redis_port(&self, i: usize) -> u16 {
        self.nodes[i].redis_port
    }

    /// Every node's Redis port, by index.
    pub fn redis_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.redis_port).collect()
    }

    /// Node `i`'s state dir (holds the bootstrap marker).
    pub fn state_dir(&self, i: usize) -> &Path {
        &self.nodes[i].state_dir
    }

    /// The etcd server; panics when the cluster runs on an etcd cluster.
    pub fn etcd(&self) -> &EtcdServer {
        match &self.etcd {
            Store::One(e) => e,
            Store::Many(_) => panic!("this cluster runs on an etcd cluster: use etcd_cluster()"),
        }
    }

    /// The etcd server, mutably (to stop, kill or restart it); panics when the cluster runs
    /// on an etcd cluster.
    pub fn etcd_mut(&mut self) -> &mut EtcdServer {
        match &mut self.etcd {
            Store::One(e) => e,
            Store::Many(_) => panic!("this cluster runs on an etcd cluster: use etcd_cluster()"),
        }
    }

    /// The etcd cluster (to stop, kill or restart members); panics when the cluster runs on
    /// a single etcd server.
    pub fn etcd_cluster(&mut self) -> &mut EtcdCluster {
        match &mut self.etcd {
            Store::Many(c) => c,
            Store::One(_) => panic!("this cluster runs on one etcd server: use etcd_mut()"),
        }
    }

    /// The etcd client endpoints the agents are configured with.
    pub fn etcd_endpoints(&self) -> Vec<String> {
        self.etcd.endpoints()
    }

    /// The cluster's key prefix, `/autopilot/e2e/redis/cache/`.
    pub fn prefix(&self) -> String {
        format!("/autopilot/{NAMESPACE}/{PROJECT}/{CLUSTER}/")
    }

    /// `etcdctl <args>` against the cluster's etcd; returns stdout.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::etcd::etcdctl(&self.etcd.endpoints().join(","), args)
    }

    /// The value of `<prefix><key>`, `None` when absent.
    pub fn key(&self, key: &str) -> Option<String> {
        let full = format!("{}{key}", self.prefix());
        let out = self
            .etcdctl(&["get", &full, "--print-value-only"])
            .unwrap_or_else(|e| panic!("etcdctl get {full}: {e:#}"));
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_owned())
    }

    /// `etcdctl put <prefix><key> <value>`.
    pub fn put_key(&self, key: &str, value: &str) {
        let full = format!("{}{key}", self.prefix());
        self.etcdctl(&["put", &full, value])
            .unwrap_or_else(|e| panic!("etcdctl put {full}: {e:#}"));
    }

    /// `etcdctl del <prefix><key>`.
    pub fn del_key(&self, key: &str) {
        let full = format!("{}{key}", self.prefix());
        self.etcdctl(&["del", &full])
            .unwrap_or_else(|e| panic!("etcdctl del {full}: {e:#}"));
    }

    /// The node name in the `primary` key (its `name`, else its `id`), if the key exists.
    pub fn primary_in_etcd(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.key("primary")?).ok()?;
        v["name"]
            .as_str()
            .or_else(|| v["id"].as_str())
            .map(str::to_owned)
    }

    // ---- agents ----

    /// Starts (or restarts) node `i`'s agent; an earlier log is kept in `agent-<i>.prev.log`.
    pub fn start_agent(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(old) = node.agent.take() {
            if node.stopped {
                old.signal(Signal::SIGCONT);
            }
            drop(old);
        }
        node.stopped = false;
        let log = node.config.with_extension("log");
        if let Ok(text) = std::fs::read_to_string(&log) {
            let prev = node.config.with_extension("prev.log");
            let mut all = std::fs::read_to_string(&prev).unwrap_or_default();
            all.push_str(&text);
            all.push_str("---- agent restarted ----\n");
            let _ = std::fs::write(prev, all);
        }
        node.agent = Some(Agent::run(&node.config));
    }

    /// Node `i`'s agent, if one was started.
    pub fn agent(&self, i: usize) -> Option<&Agent> {
        self.nodes[i].agent.as_ref()
    }

    /// Whether node `i`'s agent process runs (exists and is not a zombie).
    pub fn agent_alive(&self, i: usize) -> bool {
        let Some(a) = self.nodes[i].agent.as_ref() else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{}/stat", a.pid())).is_ok_and(|stat| {
            // `pid (comm) S ...`: the state follows the last ')'.
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
    }

    /// Node `i`'s agent, mutably.
    pub fn agent_mut(&mut self, i: usize) -> Option<&mut Agent> {
        self.nodes[i].agent.as_mut()
    }

    fn signal_agent(&self, i: usize, sig: Signal) {
        self.nodes[i]
            .agent
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} has no agent"))
            .signal(sig);
    }

    /// SIGKILL node `i`'s Redis (the agent's main process; its pid from `/health`, else from
    /// Redis's `INFO server`). Returns the pid killed.
    pub fn kill_redis(&self, i: usize) -> i32 {
        let pid = self
            .redis_pid(i)
            .unwrap_or_else(|| panic!("no redis pid for node {i}\n{}", self.logs()));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        pid
    }

    /// Node loss: SIGKILL node `i`'s agent, then its Redis.
    pub fn kill_agent(&mut self, i: usize) {
        let pid = self.redis_pid(i);
        if let Some(agent) = self.nodes[i].agent.as_mut() {
            let _ = kill(Pid::from_raw(agent.pid()), Signal::SIGKILL);
            agent.wait_exit(Duration::from_secs(5));
        }
        self.nodes[i].stopped = false;
        let pid = pid.or_else(|| self.redis_pid_from_info(i));
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let port = self.nodes[i].redis_port;
        let gone = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
            resp::command(port, &["PING"], PROBE_TIMEOUT)
                .is_err()
                .then_some(())
        });
        assert!(gone.is_some(), "redis of node {i} still answers after kill");
    }

    /// SIGSTOP node `i`'s agent (a frozen agent; its Redis keeps running).
    pub fn stop_agent(&mut self, i: usize) {
        self.signal_agent(i, Signal::SIGSTOP);
        self.nodes[i].stopped = true;
    }

    /// SIGCONT node `i`'s agent.
    pub fn cont_agent(&mut self, i: usize) {
        self.signal_agent(i, Signal::SIGCONT);
        self.nodes[i].stopped = false;
    }

    /// SIGTERM node `i`'s agent (a graceful stop); does not wait.
    pub fn sigterm_agent(&self, i: usize) {
        self.signal_agent(i, Signal::SIGTERM);
    }

    /// Waits up to `within` for node `i`'s agent to exit; whether it did.
    pub fn wait_agent_exit(&mut self, i: usize, within: Duration) -> bool {
        self.nodes[i]
            .agent
            .as_mut()
            .is_some_and(|a| a.wait_exit(within).is_some())
    }

    /// Stops every agent: SIGTERM to all, then waits (SIGKILL after 15 s), then kills any
    /// Redis left over.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(a) = node.agent.as_ref() {
                if node.stopped {
                    a.signal(Signal::SIGCONT);
                    node.stopped = false;
                }
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGTERM);
            }
        }
        for node in &mut self.nodes {
            if let Some(a) = node.agent.as_mut()
                && a.wait_exit(Duration::from_secs(15)).is_none()
            {
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGKILL);
                a.wait_exit(Duration::from_secs(5));
            }
        }
        for i in 0..self.nodes.len() {
            if let Some(pid) = self.redis_pid_from_info(i) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// Removes node `i`'s state dir (the bootstrap marker) and Redis data dir.
    pub fn wipe_node(&self, i: usize) {
        let _ = std::fs::remove_dir_all(&self.nodes[i].state_dir);
        let _ = std::fs::remove_dir_all(self.dir.path().join(format!("data-{}", i + 1)));
    }

    /// The last [`LOG_TAIL`] lines of every agent's log (health-handler chatter and Redis's
    /// reconnect noise left out), for failure messages. The full logs stay in the temp dir
    /// while the test runs; set `E2E_KEEP=1` to keep them afterwards.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let prev =
                std::fs::read_to_string(node.config.with_extension("prev.log")).unwrap_or_default();
            let now = node.agent.as_ref().map(Agent::log).unwrap_or_default();
            let all = format!("{prev}{now}");
            let lines: Vec<&str> = all.lines().filter(|l| !is_noise(l)).collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            let _ = write!(
                s,
                "\n===== {} (index {i}, redis {}, http {}, log {}; last {} of {} lines) =====\n{}\n",
                node.name,
                node.redis_port,
                node.telemetry_port,
                node.config.with_extension("log").display(),
                tail.len(),
                lines.len(),
                tail.join("\n")
            );
        }
        s
    }

    // ---- HTTP endpoints ----

    /// The HTTP status of `GET <path>` on node `i`'s agent; `None` when it does not answer.
    pub fn http_status(&self, i: usize, path: &str) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[i].telemetry_port);
        self.http.get(url).send().ok().map(|r| r.status().as_u16())
    }

    /// Node `i`'s `/health` JSON (whatever the status code), `None` when it does not answer.
    pub fn health(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/health", self.nodes[i].telemetry_port);
        let body = self.http.get(url).send().ok()?.text().ok()?;
        serde_json::from_str(&body).ok()
    }

    /// Node `i`'s role from `/health` (`primary`, `replica`, `fenced`, `unknown`), or `down`.
    pub fn role(&self, i: usize) -> String {
        self.health(i)
            .and_then(|h| h["role"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "down".to_owned())
    }

    /// Every node's role, by index.
    pub fn roles(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.role(i)).collect()
    }

    /// The node answering 200 on `GET /primary`; panics if more than one does.
    pub fn primary(&self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].stopped && self.http_status(i, "/primary") == Some(200))
            .collect();
        assert!(
            up.len() <= 1,
            "nodes {up:?} all answer 200 on /primary\n{}",
            self.logs()
        );
        up.first().copied()
    }

    /// Waits up to `within` for exactly one node to answer `/primary`; its index. Panics with
    /// every agent's log on timeout.
    pub fn wait_primary(&self, within: Duration) -> usize {
        let found = eventually(within, Duration::from_millis(50), || {
            assert!(
                (0..self.nodes.len()).any(|i| self.agent_alive(i)),
                "every agent has exited; roles {:?}\n{}",
                self.roles(),
                self.logs()
            );
            self.primary()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no primary within {within:?}; roles {:?}\n{}",
                self.roles(),
                self.logs()
            )
        })
    }

    /// Waits up to `within` for a primary other than `old`; its index and the time it took.
    pub fn wait_new_primary(&self, old: usize, within: Duration) -> (usize, Duration) {
        let t0 = Instant::now();
        let p = eventually(within, Duration::from_millis(20), || {
            self.primary().filter(|&p| p != old)
        })
        .unwrap_or_else(|| {
            panic!(
                "no new primary (other than node index {old}) within {within:?}; roles {:?}\n{}",
                self.roles(),
                self.logs()
            )
        });
        (p, t0.elapsed())
    }

    // ---- Redis ----

    /// `redis-cli -p <port> <args>` on node `i` (bounded by `timeout 2`); stdout, CRs stripped.
    pub fn redis_cli(&self, i: usize, args: &[&str]) -> String {
        let out = std::process::Command::new("timeout")
            .arg("2")
            .arg(REDIS_CLI)
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.nodes[i].redis_port.to_string())
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    }

    /// One command on node `i` over the wire (bounded by 1 s).
    pub fn cmd(&self, i: usize, args: &[&str]) -> anyhow::Result<Reply> {
        resp::command(self.nodes[i].redis_port, args, Duration::from_secs(1))
    }

    /// Whether node `i` accepts a write right now (a SET answered OK within 200 ms; READONLY,
    /// a paused Redis, or no Redis are all "no").
    pub fn writable(&self, i: usize) -> bool {
        probe_writable(self.nodes[i].redis_port)
    }

    /// A field of node `i`'s `INFO replication`.
    pub fn replication(&self, i: usize, field: &str) -> Option<String> {
        resp::info_field(
            self.nodes[i].redis_port,
            "replication",
            field,
            Duration::from_secs(1),
        )
    }

    /// Whether node `i`'s Redis is a replica of node `primary`'s with the link up.
    pub fn replicates_from(&self, i: usize, primary: usize) -> bool {
        self.replication(i, "role").as_deref() == Some("slave")
            && self.replication(i, "master_port").as_deref()
                == Some(&self.nodes[primary].redis_port.to_string())
            && self.replication(i, "master_link_status").as_deref() == Some("up")
    }

    /// Waits up to `within` until node `i` replicates from `primary` with the link up.
    pub fn wait_replicating(&self, i: usize, primary: usize, within: Duration) {
        let ok = eventually(within, Duration::from_millis(50), || {
            self.replicates_from(i, primary).then_some(())
        });
        assert!(
            ok.is_some(),
            "{} does not replicate from {} within {within:?}: role {:?} master_port {:?} link {:?}; roles {:?}\n{}",
            self.name(i),
            self.name(primary),
            self.replication(i, "role"),
            self.replication(i, "master_port"),
            self.replication(i, "master_link_status"),
            self.roles(),
            self.logs()
        );
    }

    /// The writer and checker's view of this cluster's Redis servers.
    pub fn workload(&self) -> Arc<dyn Workload> {
        RedisWorkload::shared(self.redis_ports())
    }

    /// The list `key` on node `i` as numbers (what the writer pushed).
    pub fn list_numbers(&self, i: usize, key: &str) -> Vec<u64> {
        match self.cmd(i, &["LRANGE", key, "0", "-1"]) {
            Ok(Reply::Array(Some(items))) => items
                .iter()
                .filter_map(|r| r.as_str().and_then(|s| s.parse().ok()))
                .collect(),
            other => panic!("LRANGE {key} on {}: {other:?}", self.name(i)),
        }
    }

    /// Node `i`'s Redis pid: `/health`'s `main_pid`, else `INFO server`'s `process_id`.
    pub fn redis_pid(&self, i: usize) -> Option<i32> {
        if !self.nodes[i].stopped
            && let Some(pid) = self
                .health(i)
                .and_then(|h| h["main_pid"].as_i64())
                .and_then(|p| i32::try_from(p).ok())
        {
            return Some(pid);
        }
        self.redis_pid_from_info(i)
    }

    /// `INFO server`'s `process_id`, only if that process runs in this cluster's temp dir
    /// (a Redis of somebody else that took the port is never touched).
    fn redis_pid_from_info(&self, i: usize) -> Option<i32> {
        let pid: i32 = resp::info_field(
            self.nodes[i].redis_port,
            "server",
            "process_id",
            Duration::from_millis(500),
        )?
        .trim()
        .parse()
        .ok()?;
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
        cwd.starts_with(self.dir.path()).then_some(pid)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.stop_all();
        if std::env::var_os("E2E_KEEP").is_some() {
            let kept = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a placeholder temp dir"),
            );
            eprintln!("E2E_KEEP: kept {}", kept.keep().display());
        }
    }
}

/// Lines per agent in [`RedisCluster::logs`].
const LOG_TAIL: usize = 150;

/// Log lines that only repeat: successful health and position runs, Redis retrying its
/// placeholder master, and the etcd client's HTTP/2 and tower debug output.
fn is_noise(line: &str) -> bool {
    const NOISE: [&str; 9] = [
        "MASTER 127.0.0.1:1",
        "MASTER <-> REPLICA sync started",
        "Connection{peer=Client}",
        "frame=",
        "updating from discover",
        "service.ready=",
        "idle connection",
        "started process=hook:position",
        "process=hook:position stream=\"stdout\"",
    ];
    ((line.contains("process=health") || line.contains("handler=health"))
        && !line.contains("failure"))
        || (line.contains("SYNC") && line.contains("Connection refused"))
        || NOISE.iter().any(|n| line.contains(n))
}

/// A SET within [`PROBE_TIMEOUT`] that answers OK.
fn probe_writable(port: u16) -> bool {
    matches!(
        resp::command(port, &["SET", "autopilot:e2e:probe", "1"], PROBE_TIMEOUT),
        Ok(Reply::Simple(ref s)) if s == "OK"
    )
}

/// Copies `examples/redis/hooks/*` to `to`.
fn copy_hooks(to: &Path) -> anyhow::Result<()> {
    let from = workspace_root().join("examples/redis/hooks");
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(&from).with_context(|| format!("read {}", from.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().expect("a file name")))
                .with_context(|| format!("copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// The agent config of node number `k` (1-based), the shape of `examples/redis/agent-k.yaml`.
fn agent_yaml(k: usize, node: &Node, endpoints: &[String], opts: &RedisOpts) -> String {
    let port = node.redis_port;
    let endpoints = endpoints
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let hook = |name: &str, timeout: &str| {
        format!(
            r#"{{ exec: [sh, hooks/{name}.sh], cwd: ., env: {{ REDIS_PORT: "{port}" }}, timeout: {timeout} }}"#
        )
    };
    format!(
        r#"node: {{ name: {name}, address: 127.0.0.1, state_dir: ./state-{k} }}
cluster: {{ namespace: {NAMESPACE}, project: {PROJECT}, name: {CLUSTER} }}
store:
  etcd: {{ endpoints: [{endpoints}] }}
  ttl: {ttl}
failover: {{ settle: {settle}, cooldown: {cooldown} }}
engine:
  kind: process
  port: {port}
  hooks:
    position: {position}
    promote: {promote}
    follow: {follow}
    fence: {fence}
    unfence: {unfence}
process:
  exec: [{redis}, --port, "{port}", --bind, 127.0.0.1, --dir, ./data-{k},
         --save, "", --appendonly, "no", --replicaof, 127.0.0.1, "1",
         --repl-diskless-sync-delay, "0", --repl-diskless-load, swapdb]
  cwd: .
  stop_timeout: 10s
handlers:
  preStart: {{ exec: [mkdir, -p, data-{k}], cwd: . }}
  health: {{ exec: [{cli}, -p, "{port}", ping], interval: 500ms, timeout: 400ms }}
  onChange: {{ exec: [sh, -c, 'echo "role $AUTOPILOT_PREVIOUS_ROLE -> $AUTOPILOT_ROLE, primary $AUTOPILOT_PRIMARY_ADDRESS"'] }}
telemetry: {{ listen: "127.0.0.1:{tel}" }}
"#,
        name = node.name,
        ttl = ms(opts.ttl),
        settle = ms(opts.settle),
        cooldown = if opts.cooldown.is_zero() {
            "0s".to_owned()
        } else {
            ms(opts.cooldown)
        },
        position = hook("position", "5s"),
        promote = hook("promote", "10s"),
        follow = hook("follow", "10s"),
        fence = hook("fence", "5s"),
        unfence = hook("unfence", "5s"),
        redis = REDIS_SERVER,
        cli = REDIS_CLI,
        tel = node.telemetry_port,
    )
}

// ---- the writer's and checker's view of Redis ----

/// Redis as the [`Writer`] and [`Checker`] see it: RPUSH of each number to the list
/// [`RedisWorkload::KEY`], a SET to a probe key for writability.
pub struct RedisWorkload {
    ports: Vec<u16>,
}

impl RedisWorkload {
    /// The list the writer appends to.
    pub const KEY: &'static str = "autopilot:e2e:seq";

    /// The nodes on `ports` (by index).
    pub fn shared(ports: Vec<u16>) -> Arc<dyn Workload> {
        Arc::new(RedisWorkload { ports })
    }
}

impl Workload for RedisWorkload {
    fn nodes(&self) -> usize {
        self.ports.len()
    }

    fn write(&self, node: usize, seq: u64) -> bool {
        let n = seq.to_string();
        matches!(
            resp::command(
                self.ports[node],
                &["RPUSH", Self::KEY, &n],
                Duration::from_millis(300)
            ),
            Ok(Reply::Int(_))
        )
    }

    fn writable(&self, node: usize) -> bool {
        probe_writable(self.ports[node])
    }

    fn written(&self, node: usize) -> Vec<u64> {
        match resp::command(
            self.ports[node],
            &["LRANGE", Self::KEY, "0", "-1"],
            Duration::from_secs(5),
        ) {
            Ok(Reply::Array(Some(items))) => items
                .iter()
                .filter_map(|r| r.as_str().and_then(|s| s.parse().ok()))
                .collect(),
            other => panic!(
                "LRANGE {} on port {}: {other:?}",
                Self::KEY,
                self.ports[node]
            ),
        }
    }
}
