//! A Redis cluster under real agents: [`RedisCluster`] starts one etcd and `n` agents, each
//! supervising a `redis-server` through the `process` engine and the hook scripts of
//! `examples/redis/hooks` (copied, so the example scripts are what is tested). Fault
//! injection (kill -9 Redis, node loss, SIGSTOP/SIGCONT, SIGTERM) and etcd access; the
//! writer and the checker see it through [`RedisWorkload`].
//!
//! Layout of the temp dir, mirroring `examples/redis/`: `agent-<i>.yaml` and `agent-<i>.log`,
//! `hooks/`, `state-<i>/` (the agent's bootstrap marker), `data-<i>/` (Redis's dir).
//! Node indexes are 0-based; node `i` is named `node-<i+1>`.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::cluster::{Agents, NodeSpec, yaml_ms as ms};
use crate::harness::etcd::{EtcdCluster, EtcdServer};
use crate::harness::util::{eventually, free_port, system_bin, workspace_root};
use crate::harness::workload::Workload;
use crate::redis::resp::{self, Reply};
use crate::redis::workload::{PROBE_TIMEOUT, RedisWorkload, probe_writable};

/// Debian's Redis server binary.
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// Debian's Redis CLI.
pub const REDIS_CLI: &str = "/usr/bin/redis-cli";

/// The cluster's names in etcd.
const NAMESPACE: &str = "e2e";
const PROJECT: &str = "redis";
const CLUSTER: &str = "cache";

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

/// One node's Redis side; its agent is in [`Agents`].
struct Node {
    redis_port: u16,
    telemetry_port: u16,
    state_dir: PathBuf,
}

/// The etcd the agents use: one server, or a multi-member cluster (every agent gets every
/// member's endpoint).
enum Store {
    One(Box<EtcdServer>),
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
/// Agents, logs and HTTP endpoints: [`Agents`], which this dereferences to.
pub struct RedisCluster {
    agents: Agents,
    nodes: Vec<Node>,
    etcd: Store,
    opts: RedisOpts,
    /// Owns every file; removed on drop.
    dir: tempfile::TempDir,
}

/// A cluster is its agents plus its databases: [`Agents`]' methods (roles, the primary, logs,
/// faults on agents, etcd keys) are called on the cluster itself, `c.wait_primary(…)`. A plain
/// `Deref` rather than an accessor because the scenarios make hundreds of such calls.
impl Deref for RedisCluster {
    type Target = Agents;

    fn deref(&self) -> &Agents {
        &self.agents
    }
}

impl DerefMut for RedisCluster {
    fn deref_mut(&mut self) -> &mut Agents {
        &mut self.agents
    }
}

impl RedisCluster {
    /// Starts etcd and `n` agents (not waiting for a primary: see [`Self::wait_primary`]).
    pub fn start(n: usize, opts: RedisOpts) -> anyhow::Result<Self> {
        Self::start_on(n, opts, Store::One(Box::new(EtcdServer::start()?)))
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
        let mut specs = Vec::with_capacity(n);
        for k in 1..=n {
            let node = Node {
                state_dir: dir.path().join(format!("state-{k}")),
                redis_port: free_port(),
                telemetry_port: free_port(),
            };
            let spec = NodeSpec {
                name: format!("node-{k}"),
                config: dir.path().join(format!("agent-{k}.yaml")),
                telemetry_port: node.telemetry_port,
                detail: format!("redis {}", node.redis_port),
            };
            std::fs::write(
                &spec.config,
                agent_yaml(k, &spec.name, &node, &endpoints, &opts),
            )
            .context("write an agent config")?;
            nodes.push(node);
            specs.push(spec);
        }
        let mut cluster = RedisCluster {
            agents: Agents::new(specs, &endpoints, [NAMESPACE, PROJECT, CLUSTER])?,
            nodes,
            etcd,
            opts,
            dir,
        };
        for i in 0..n {
            cluster.start_agent(i);
        }
        Ok(cluster)
    }

    /// The options the agents run with.
    pub fn opts(&self) -> &RedisOpts {
        &self.opts
    }

    /// The temp dir holding every config, log, state and data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
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

    /// The node name in the `primary` key (its `name`, else its `id`), if the key exists.
    pub fn primary_in_etcd(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.key("primary")?).ok()?;
        v["name"]
            .as_str()
            .or_else(|| v["id"].as_str())
            .map(str::to_owned)
    }

    // ---- faults ----

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
        self.kill_agent_process(i);
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

    /// Stops every agent: SIGTERM to all, then waits (SIGKILL after 15 s), then kills any
    /// Redis left over.
    pub fn stop_all(&mut self) {
        self.agents.terminate_all(Duration::from_secs(15));
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
            "{} does not replicate from {} within {within:?}: {}; roles {:?}\n{}",
            self.name(i),
            self.name(primary),
            self.replication_info(i),
            self.roles(),
            self.logs()
        );
    }

    /// Node `i`'s `INFO replication` as failure messages show it: role, master port, link.
    pub fn replication_info(&self, i: usize) -> String {
        format!(
            "role {:?} master_port {:?} link {:?}",
            self.replication(i, "role"),
            self.replication(i, "master_port"),
            self.replication(i, "master_link_status")
        )
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
        self.main_pid(i).or_else(|| self.redis_pid_from_info(i))
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
        crate::harness::cluster::keep_if_asked(&mut self.dir);
    }
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
fn agent_yaml(k: usize, name: &str, node: &Node, endpoints: &[String], opts: &RedisOpts) -> String {
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
