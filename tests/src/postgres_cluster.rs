//! A PostgreSQL cluster under real agents: [`PgCluster`] starts one etcd and `n` agents,
//! each running its own PostgreSQL 15 through the `postgres` engine (as the `postgres` OS
//! user), with fault injection (kill -9 the postmaster, node loss, SIGSTOP/SIGCONT of an
//! agent, SIGTERM) and the engine-neutral writer/checker of `workload.rs` ([`PgWorkload`]).
//!
//! Layout of the temp dir (mode 0777 so `postgres` can use it): `agent-<k>.yaml` and
//! `agent-<k>.log`, `state-<k>/` (bootstrap marker), `data-<k>/` (PostgreSQL data dir),
//! `su.pw` and `repl.pw` (passwords). Node indexes are 0-based; node `i` is `node-<i+1>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::agent::Agent;
use crate::etcd::EtcdServer;
use crate::postgres::{
    Kept, REPLICATOR, REPLICATOR_PASSWORD, SUPERUSER, SUPERUSER_PASSWORD, Sql, check_installed,
    temp_dir, wait_down,
};
use crate::util::{eventually, free_port};
use crate::workload::Workload;

const NAMESPACE: &str = "e2e";
const PROJECT: &str = "pg";
const CLUSTER: &str = "main";
/// Lines of each agent log shown in failure messages.
const LOG_TAIL: usize = 60;
/// Timeout of the agents' HTTP endpoints.
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// The writer's table.
pub const TABLE: &str = "e2e_writes";

/// Tuning of the agents.
#[derive(Clone, Debug)]
pub struct PgOpts {
    /// `store.ttl`.
    pub ttl: Duration,
    /// `failover.settle`.
    pub settle: Duration,
    /// `failover.cooldown`.
    pub cooldown: Duration,
    /// `engine.postgres.durability`: `async` or `sync`.
    pub durability: &'static str,
    /// `engine.auto_rebuild`.
    pub auto_rebuild: bool,
}

impl Default for PgOpts {
    fn default() -> Self {
        PgOpts {
            ttl: Duration::from_secs(3),
            settle: Duration::from_millis(300),
            cooldown: Duration::ZERO,
            durability: "async",
            auto_rebuild: true,
        }
    }
}

struct Node {
    name: String,
    pg_port: u16,
    telemetry_port: u16,
    config: PathBuf,
    data_dir: PathBuf,
    state_dir: PathBuf,
    agent: Option<Agent>,
    stopped: bool,
}

/// `n` agents driving PostgreSQL and one etcd in one temp dir; everything is killed on drop.
pub struct PgCluster {
    nodes: Vec<Node>,
    etcd: EtcdServer,
    http: reqwest::blocking::Client,
    sql: Arc<Sql>,
    opts: PgOpts,
    dir: tempfile::TempDir,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl PgCluster {
    /// Starts etcd and `n` agents (not waiting for a primary).
    pub fn start(n: usize, opts: PgOpts) -> anyhow::Result<Self> {
        check_installed();
        let etcd = EtcdServer::start()?;
        let dir = temp_dir("pg-cluster-")?;
        std::fs::write(dir.path().join("su.pw"), SUPERUSER_PASSWORD).context("write su.pw")?;
        std::fs::write(dir.path().join("repl.pw"), REPLICATOR_PASSWORD).context("write repl.pw")?;
        let mut nodes = Vec::with_capacity(n);
        for k in 1..=n {
            let node = Node {
                name: format!("node-{k}"),
                pg_port: free_port(),
                telemetry_port: free_port(),
                config: dir.path().join(format!("agent-{k}.yaml")),
                data_dir: dir.path().join(format!("data-{k}")),
                state_dir: dir.path().join(format!("state-{k}")),
                agent: None,
                stopped: false,
            };
            std::fs::write(&node.config, agent_yaml(k, &node, &etcd.endpoint(), &opts))
                .context("write an agent config")?;
            nodes.push(node);
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("build the HTTP client")?;
        let mut c = PgCluster {
            nodes,
            etcd,
            http,
            sql: Arc::new(Sql::new()),
            opts,
            dir,
        };
        for i in 0..n {
            c.start_agent(i);
        }
        Ok(c)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The agents' options.
    pub fn opts(&self) -> &PgOpts {
        &self.opts
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i`'s PostgreSQL data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Names in the temp dir starting with `prefix` (e.g. `data-1.aside-`).
    pub fn entries(&self, prefix: &str) -> Vec<String> {
        std::fs::read_dir(self.dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Rewrites node `i`'s agent config with `opts`; takes effect at its next start.
    pub fn reconfigure(&self, i: usize, opts: &PgOpts) {
        let node = &self.nodes[i];
        std::fs::write(
            &node.config,
            agent_yaml(i + 1, node, &self.etcd.endpoint(), opts),
        )
        .unwrap_or_else(|e| panic!("rewrite {}: {e}", node.config.display()));
    }

    /// Node `i`'s PostgreSQL port.
    pub fn pg_port(&self, i: usize) -> u16 {
        self.nodes[i].pg_port
    }

    /// The shared SQL client.
    pub fn sql(&self) -> &Sql {
        &self.sql
    }

    /// The etcd server.
    pub fn etcd(&self) -> &EtcdServer {
        &self.etcd
    }

    /// The cluster's key prefix.
    pub fn prefix(&self) -> String {
        format!("/autopilot/{NAMESPACE}/{PROJECT}/{CLUSTER}/")
    }

    /// The value of `<prefix><key>`.
    pub fn key(&self, key: &str) -> Option<String> {
        let full = format!("{}{key}", self.prefix());
        let out = self
            .etcd
            .etcdctl(&["get", &full, "--print-value-only"])
            .unwrap_or_else(|e| panic!("etcdctl get {full}: {e:#}"));
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_owned())
    }

    /// Waits until node `i` publishes itself eligible for failover.
    pub fn wait_eligible(&self, i: usize, within: Duration) {
        let ok = crate::util::wait_node_eligible(|k| self.key(k), self.name(i), within);
        assert!(
            ok,
            "{} is not eligible within {within:?}\n{}",
            self.name(i),
            self.logs()
        );
    }

    /// `etcdctl put <prefix><key> <value>`.
    pub fn put_key(&self, key: &str, value: &str) {
        let full = format!("{}{key}", self.prefix());
        self.etcd
            .etcdctl(&["put", &full, value])
            .unwrap_or_else(|e| panic!("etcdctl put {full}: {e:#}"));
    }

    // ---- agents ----

    /// Starts (or restarts) node `i`'s agent; the earlier log goes to `agent-<k>.prev.log`.
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

    /// Whether node `i`'s agent process runs (and is not a zombie).
    pub fn agent_alive(&self, i: usize) -> bool {
        self.nodes[i]
            .agent
            .as_ref()
            .is_some_and(|a| crate::util::alive(a.pid()))
    }

    /// The postmaster's pid of node `i` (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self, i: usize) -> Option<i32> {
        crate::postgres::postmaster_pid(&self.nodes[i].data_dir)
    }

    /// SIGKILL node `i`'s postmaster (the agent's main process).
    pub fn kill_postgres(&self, i: usize) -> i32 {
        let pid = self
            .postmaster_pid(i)
            .unwrap_or_else(|| panic!("no postmaster pid for node {i}\n{}", self.logs()));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        pid
    }

    /// Node loss: SIGKILL node `i`'s agent, then its postmaster and every backend.
    pub fn kill_node(&mut self, i: usize) {
        let pid = self.postmaster_pid(i);
        if let Some(agent) = self.nodes[i].agent.as_mut() {
            let _ = kill(Pid::from_raw(agent.pid()), Signal::SIGKILL);
            agent.wait_exit(Duration::from_secs(5));
        }
        self.nodes[i].stopped = false;
        if let Some(pid) = pid {
            // The postmaster leads its own process group (spawned by the agent).
            let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        assert!(
            wait_down(&self.sql, self.nodes[i].pg_port, Duration::from_secs(10)),
            "postgres of node {i} still answers after kill"
        );
        // Until the orphaned postmaster is reaped (by PID 1, not by us), its pid in
        // `postmaster.pid` still exists and a new postmaster on this data directory refuses
        // to start.
        if let Some(pid) = pid {
            let gone = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
                (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
            assert!(
                gone.is_some(),
                "the killed postmaster {pid} was never reaped"
            );
        }
    }

    /// SIGSTOP node `i`'s agent (its PostgreSQL keeps running).
    pub fn stop_agent(&mut self, i: usize) {
        self.signal_agent(i, Signal::SIGSTOP);
        self.nodes[i].stopped = true;
    }

    /// SIGCONT node `i`'s agent.
    pub fn cont_agent(&mut self, i: usize) {
        self.signal_agent(i, Signal::SIGCONT);
        self.nodes[i].stopped = false;
    }

    /// SIGTERM node `i`'s agent (graceful stop); does not wait.
    pub fn sigterm_agent(&self, i: usize) {
        self.signal_agent(i, Signal::SIGTERM);
    }

    fn signal_agent(&self, i: usize, sig: Signal) {
        self.nodes[i]
            .agent
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} has no agent"))
            .signal(sig);
    }

    /// Waits up to `within` for node `i`'s agent to exit.
    pub fn wait_agent_exit(&mut self, i: usize, within: Duration) -> bool {
        self.nodes[i]
            .agent
            .as_mut()
            .is_some_and(|a| a.wait_exit(within).is_some())
    }

    /// Removes node `i`'s state dir (bootstrap marker) and data dir; its agent must be down.
    pub fn wipe_node(&self, i: usize) {
        let _ = std::fs::remove_dir_all(&self.nodes[i].state_dir);
        let _ = std::fs::remove_dir_all(&self.nodes[i].data_dir);
    }

    /// Node `i`'s whole agent log, across restarts.
    pub fn agent_log(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let prev =
            std::fs::read_to_string(node.config.with_extension("prev.log")).unwrap_or_default();
        let now = node.agent.as_ref().map(Agent::log).unwrap_or_default();
        format!("{prev}{now}")
    }

    /// The last lines of every agent's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let all = self.agent_log(i);
            let lines: Vec<&str> = all
                .lines()
                .filter(|l| {
                    !l.contains("DEBUG")
                        && !l.contains("TRACE")
                        && !l.contains("could not connect to the primary server")
                        && !l.contains("in a read-only transaction")
                        && !l.contains("STATEMENT:")
                        && !l.contains("cannot be changed without restarting")
                })
                .collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            let _ = write!(
                s,
                "\n===== {} (index {i}, pg {}, http {}, log {}) =====\n{}\n",
                node.name,
                node.pg_port,
                node.telemetry_port,
                node.config.with_extension("log").display(),
                tail.join("\n")
            );
        }
        s
    }

    // ---- HTTP ----

    /// The status of `GET <path>` on node `i`'s agent.
    pub fn http_status(&self, i: usize, path: &str) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[i].telemetry_port);
        self.http.get(url).send().ok().map(|r| r.status().as_u16())
    }

    /// The body of `GET <path>` on node `i`'s telemetry port, if it answers.
    fn get_text(&self, i: usize, path: &str) -> Option<String> {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[i].telemetry_port);
        self.http.get(url).send().ok().and_then(|r| r.text().ok())
    }

    /// Node `i`'s `/metrics` text.
    pub fn metrics(&self, i: usize) -> String {
        self.get_text(i, "/metrics").unwrap_or_default()
    }

    /// Node `i`'s `/health` body.
    pub fn health(&self, i: usize) -> String {
        self.get_text(i, "/health").unwrap_or_default()
    }

    /// Node `i`'s role from `/health`, or `down`.
    pub fn role(&self, i: usize) -> String {
        self.get_text(i, "/health")
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|h| h["role"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "down".to_owned())
    }

    /// Every node's role.
    pub fn roles(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.role(i)).collect()
    }

    /// The node answering 200 on `/primary`; panics if several do.
    pub fn primary(&self) -> Option<usize> {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].stopped && self.http_status(i, "/primary") == Some(200))
            .collect();
        assert!(
            up.len() <= 1,
            "nodes {up:?} all answer /primary\n{}",
            self.logs()
        );
        up.first().copied()
    }

    /// Waits for exactly one node to answer `/primary`.
    pub fn wait_primary(&self, within: Duration) -> usize {
        eventually(within, Duration::from_millis(50), || self.primary()).unwrap_or_else(|| {
            panic!(
                "no primary within {within:?}; roles {:?}\n{}",
                self.roles(),
                self.logs()
            )
        })
    }

    /// Waits for a primary other than `old`; its index and the time it took.
    pub fn wait_new_primary(&self, old: usize, within: Duration) -> (usize, Duration) {
        let t0 = Instant::now();
        let p = eventually(within, Duration::from_millis(20), || {
            self.primary().filter(|&p| p != old)
        })
        .unwrap_or_else(|| {
            panic!(
                "no new primary within {within:?}; roles {:?}\n{}",
                self.roles(),
                self.logs()
            )
        });
        (p, t0.elapsed())
    }

    // ---- PostgreSQL ----

    /// `SELECT` one value on node `i` (5 s bound).
    pub fn scalar(&self, i: usize, sql: &str) -> anyhow::Result<String> {
        self.sql.scalar(self.nodes[i].pg_port, sql)
    }

    /// Whether node `i` streams from node `primary` (per the primary's `pg_stat_replication`).
    pub fn streams_from(&self, i: usize, primary: usize) -> bool {
        let app = engines::postgres::settings::slot_name(&self.nodes[i].name);
        self.scalar(
            primary,
            &format!(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{app}' AND state = 'streaming'"
            ),
        )
        .is_ok_and(|c| c == "1")
    }

    /// Waits until node `i` streams from `primary`.
    pub fn wait_streaming(&self, i: usize, primary: usize, within: Duration) {
        let ok = eventually(within, Duration::from_millis(100), || {
            self.streams_from(i, primary).then_some(())
        });
        assert!(
            ok.is_some(),
            "{} does not stream from {} within {within:?}; roles {:?}\n{}",
            self.name(i),
            self.name(primary),
            self.roles(),
            self.logs()
        );
    }

    /// Create the writer's and the probe's tables on the primary (idempotent).
    pub fn create_tables(&self, primary: usize) {
        let ok = create_tables(&self.sql, self.nodes[primary].pg_port);
        assert!(ok, "cannot create the tables\n{}", self.logs());
    }

    /// The writer and checker's view of this cluster.
    pub fn workload(&self) -> Arc<dyn Workload> {
        PgWorkload::shared(
            self.nodes.iter().map(|n| n.pg_port).collect(),
            self.sql.clone(),
        )
    }
}

/// Creates the writer's and the probe's tables on the server at `port` (idempotent),
/// retrying for up to 20 s; whether it worked.
pub fn create_tables(sql: &Sql, port: u16) -> bool {
    eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        sql.query(
            port,
            &format!(
                "CREATE TABLE IF NOT EXISTS {TABLE}(seq bigint PRIMARY KEY); \
                 CREATE TABLE IF NOT EXISTS e2e_probe(at timestamptz)"
            ),
            Duration::from_secs(3),
        )
        .ok()
    })
    .is_some()
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(a) = node.agent.as_ref() {
                if node.stopped {
                    a.signal(Signal::SIGCONT);
                }
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGTERM);
            }
        }
        for node in &mut self.nodes {
            if let Some(a) = node.agent.as_mut()
                && a.wait_exit(Duration::from_secs(15)).is_none()
            {
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGKILL);
            }
        }
        for i in 0..self.nodes.len() {
            if let Some(pid) = self.postmaster_pid(i) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if std::env::var_os("E2E_KEEP").is_some() {
            let kept = self.dir.path().to_path_buf();
            eprintln!("keeping {}", kept.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a temp dir"),
            ));
        }
    }
}

/// The writer/checker's access to the cluster's PostgreSQL servers (as the superuser).
pub struct PgWorkload {
    /// Each node's port.
    ports: Vec<u16>,
    /// Shared client.
    sql: Arc<Sql>,
    /// The writer's kept connection per node.
    writers: Vec<Arc<Kept>>,
    /// The checker's kept connection per node.
    probes: Vec<Arc<Kept>>,
}

impl PgWorkload {
    /// The writer/checker's access to the servers on `ports` (node `i` on `ports[i]`), as
    /// the test superuser; used for the agents' clusters and for Patroni's.
    pub fn shared(ports: Vec<u16>, sql: Arc<Sql>) -> Arc<dyn Workload> {
        let kept = || ports.iter().map(|_| Arc::new(Kept::default())).collect();
        Arc::new(PgWorkload {
            writers: kept(),
            probes: kept(),
            ports,
            sql,
        })
    }
}

impl Workload for PgWorkload {
    fn nodes(&self) -> usize {
        self.ports.len()
    }

    /// One INSERT (autocommit) on a kept connection; acknowledged only when COMMIT returned
    /// within 1 s (a commit waiting for a synchronous standby is never cancelled: the
    /// connection is abandoned and a new one opened for the next write).
    fn write(&self, node: usize, seq: u64) -> bool {
        self.sql
            .query_kept(
                &self.writers[node],
                self.ports[node],
                &format!("INSERT INTO {TABLE}(seq) VALUES ({seq})"),
                Duration::from_secs(1),
            )
            .is_ok()
    }

    fn writable(&self, node: usize) -> bool {
        self.sql
            .query_kept(
                &self.probes[node],
                self.ports[node],
                "INSERT INTO e2e_probe(at) VALUES (now())",
                Duration::from_millis(300),
            )
            .is_ok()
    }

    fn written(&self, node: usize) -> Vec<u64> {
        let rows = self
            .sql
            .query(
                self.ports[node],
                &format!("SELECT seq FROM {TABLE}"),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("read the writer's table on node {node}: {e:#}"));
        rows.into_iter()
            .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
            .collect()
    }
}

fn agent_yaml(k: usize, node: &Node, endpoint: &str, opts: &PgOpts) -> String {
    let _ = (SUPERUSER, REPLICATOR);
    format!(
        r#"node: {{ name: {name}, address: 127.0.0.1, state_dir: ./state-{k} }}
cluster: {{ namespace: {NAMESPACE}, project: {PROJECT}, name: {CLUSTER} }}
store:
  etcd: {{ endpoints: ["{endpoint}"] }}
  ttl: {ttl}
failover: {{ settle: {settle}, cooldown: {cooldown} }}
engine:
  kind: postgres
  port: {port}
  auto_rebuild: {auto_rebuild}
  postgres:
    data_dir: ./data-{k}
    durability: {durability}
    superuser: {{ user: {SUPERUSER}, password_file: su.pw }}
    replication: {{ user: {REPLICATOR}, password_file: repl.pw }}
    parameters: {{ shared_buffers: 16MB, max_connections: 50, fsync: "off" }}
process:
  user: postgres
  stop_timeout: 10s
handlers:
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
        port = node.pg_port,
        durability = opts.durability,
        auto_rebuild = opts.auto_rebuild,
        tel = node.telemetry_port,
    )
}
