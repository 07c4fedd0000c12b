//! A MariaDB cluster under real agents: [`MariaCluster`] starts one etcd and `n` agents,
//! each running its own `mariadbd` through the `mariadb` engine (the engine initialises the
//! data directory, creates the accounts and builds the server command line). Fault
//! injection (kill -9 mariadbd, node loss, SIGSTOP/SIGCONT, SIGTERM) and SQL access as the
//! admin and application accounts.
//!
//! Layout of the temp dir (mode 0755 so the `mysql` user can reach the data dirs):
//! `agent-<k>.yaml`, `agent-<k>.log`, `state-<k>/` (bootstrap marker, socket),
//! `data-<k>/`, `admin.pass`, `repl.pass`. Node indexes are 0-based; node `i` is `node-<i+1>`.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::agent::Agent;
use crate::etcd::EtcdServer;
use crate::mariadb_workload::{APP_PASSWORD, APP_USER, Sql, writable};
use crate::util::{eventually, free_port, system_bin};

const NAMESPACE: &str = "e2e";
const PROJECT: &str = "maria";
const CLUSTER: &str = "billing";
/// The admin account's password: a marker the tests grep agent output for.
pub const ADMIN_PASSWORD: &str = "adm-MARKER-5e1f9c";
/// The replication account's password, also a marker.
pub const REPL_PASSWORD: &str = "repl-MARKER-0b7d2a";

/// Tuning of the agents.
#[derive(Clone, Debug)]
pub struct MariaOpts {
    /// `store.ttl`.
    pub ttl: Duration,
    /// `failover.settle`.
    pub settle: Duration,
    /// `engine.mariadb.durability`: `sync` or `async`.
    pub durability: &'static str,
    /// `engine.auto_rebuild`.
    pub auto_rebuild: bool,
}

impl Default for MariaOpts {
    fn default() -> Self {
        MariaOpts {
            ttl: Duration::from_secs(3),
            settle: Duration::from_millis(300),
            durability: "sync",
            auto_rebuild: false,
        }
    }
}

struct Node {
    name: String,
    port: u16,
    telemetry_port: u16,
    config: PathBuf,
    agent: Option<Agent>,
    stopped: bool,
}

/// `n` agents running MariaDB and one etcd in one temp dir; everything is killed on drop.
pub struct MariaCluster {
    nodes: Vec<Node>,
    etcd: EtcdServer,
    http: reqwest::blocking::Client,
    opts: MariaOpts,
    dir: tempfile::TempDir,
}

impl MariaCluster {
    /// Starts etcd and `n` agents (not waiting for a primary).
    pub fn start(n: usize, opts: MariaOpts) -> anyhow::Result<Self> {
        let mut c = Self::create(n, opts)?;
        for i in 0..n {
            c.start_agent(i);
        }
        Ok(c)
    }

    /// Starts etcd and writes `n` agent configs, starting no agent.
    pub fn create(n: usize, opts: MariaOpts) -> anyhow::Result<Self> {
        system_bin("/usr/sbin/mariadbd", "mariadb-server");
        system_bin("/usr/bin/mariadb-install-db", "mariadb-server");
        system_bin("/usr/bin/mariadb-backup", "mariadb-backup");
        system_bin("/usr/bin/mbstream", "mariadb-backup");
        let etcd = EtcdServer::start()?;
        let dir = tempfile::Builder::new()
            .prefix("maria-cluster-")
            .tempdir()
            .context("create the cluster's temp dir")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(dir.path().join("admin.pass"), format!("{ADMIN_PASSWORD}\n"))?;
        std::fs::write(dir.path().join("repl.pass"), format!("{REPL_PASSWORD}\n"))?;
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            nodes.push(Node {
                name: format!("node-{}", i + 1),
                port: free_port(),
                telemetry_port: free_port(),
                config: dir.path().join(format!("agent-{}.yaml", i + 1)),
                agent: None,
                stopped: false,
            });
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()?;
        let c = MariaCluster {
            nodes,
            etcd,
            http,
            opts,
            dir,
        };
        for i in 0..n {
            c.write_config(i)?;
        }
        Ok(c)
    }

    /// Sets node `i`'s MariaDB port and rewrites its config.
    pub fn set_port(&mut self, i: usize, port: u16) -> anyhow::Result<()> {
        self.nodes[i].port = port;
        self.write_config(i)
    }

    /// Rewrites node `i`'s config (e.g. after changing its port).
    pub fn write_config(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let k = i + 1;
        let yaml = format!(
            r#"node: {{ name: {name}, address: 127.0.0.1, state_dir: ./state-{k} }}
cluster: {{ namespace: {NAMESPACE}, project: {PROJECT}, name: {CLUSTER} }}
store:
  etcd: {{ endpoints: ["{etcd}"] }}
  ttl: {ttl}ms
failover: {{ settle: {settle}ms, cooldown: 0s }}
engine:
  kind: mariadb
  port: {port}
  auto_rebuild: {auto_rebuild}
  mariadb:
    datadir: ./data-{k}
    durability: {durability}
    credentials:
      admin: {{ user: autopilot, password_file: ./admin.pass }}
      replication: {{ user: repl, password_file: ./repl.pass }}
process:
  exec: [/usr/sbin/mariadbd, --no-defaults, --innodb-buffer-pool-size=32M, --innodb-log-file-size=16M, --log-warnings=1]
  stop_timeout: 20s
telemetry: {{ listen: "127.0.0.1:{tel}" }}
"#,
            name = node.name,
            etcd = self.etcd.endpoint(),
            ttl = self.opts.ttl.as_millis(),
            settle = self.opts.settle.as_millis(),
            port = node.port,
            durability = self.opts.durability,
            auto_rebuild = self.opts.auto_rebuild,
            tel = node.telemetry_port,
        );
        std::fs::write(&node.config, yaml).context("write an agent config")
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s MariaDB port.
    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Every node's port, by index.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The cluster's identity a clone request's proof is bound to.
    pub fn cluster_id(&self) -> String {
        format!("{NAMESPACE}/{PROJECT}/{CLUSTER}")
    }

    /// Node `i`'s agent base URL (its telemetry listener).
    pub fn agent_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].telemetry_port)
    }

    /// The names of the entries of the cluster's temp dir that start with `prefix`.
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

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The temp dir.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// `etcdctl get <prefix><key>`, `None` when absent.
    pub fn key(&self, key: &str) -> Option<String> {
        let full = format!("/autopilot/{NAMESPACE}/{PROJECT}/{CLUSTER}/{key}");
        let out = self
            .etcd
            .etcdctl(&["get", &full, "--print-value-only"])
            .unwrap_or_else(|e| panic!("etcdctl get {full}: {e:#}"));
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_owned())
    }

    /// `etcdctl put <prefix><key> <value>`.
    pub fn put_key(&self, key: &str, value: &str) {
        let full = format!("/autopilot/{NAMESPACE}/{PROJECT}/{CLUSTER}/{key}");
        self.etcd
            .etcdctl(&["put", &full, value])
            .unwrap_or_else(|e| panic!("etcdctl put {full}: {e:#}"));
    }

    /// Waits until node `i`'s node key says it is eligible for promotion (a switchover to a
    /// node that is not yet is rejected by the primary, as it should be).
    pub fn wait_eligible(&self, i: usize, within: Duration) {
        let ok = crate::util::wait_node_eligible(|k| self.key(k), self.name(i), within);
        assert!(
            ok,
            "{} is not eligible within {within:?}\n{}",
            self.name(i),
            self.logs()
        );
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

    /// Node `i`'s agent.
    pub fn agent_mut(&mut self, i: usize) -> Option<&mut Agent> {
        self.nodes[i].agent.as_mut()
    }

    fn signal_agent(&self, i: usize, sig: Signal) {
        if let Some(a) = &self.nodes[i].agent {
            a.signal(sig);
        }
    }

    /// SIGKILL node `i`'s mariadbd (the agent's main process). Returns its pid.
    pub fn kill_mariadbd(&self, i: usize) -> i32 {
        let pid = self
            .mariadbd_pid(i)
            .unwrap_or_else(|| panic!("no mariadbd pid for node {i}\n{}", self.logs()));
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        pid
    }

    /// Node loss: SIGKILL node `i`'s agent, then its mariadbd.
    pub fn kill_node(&mut self, i: usize) {
        let pid = self.mariadbd_pid(i);
        if let Some(agent) = self.nodes[i].agent.as_mut() {
            let _ = kill(Pid::from_raw(agent.pid()), Signal::SIGKILL);
            agent.wait_exit(Duration::from_secs(5));
        }
        self.nodes[i].stopped = false;
        if let Some(pid) = pid.or_else(|| self.pid_from_file(i)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let port = self.nodes[i].port;
        let gone = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        });
        assert!(
            gone.is_some(),
            "mariadbd of node {i} still listens after kill"
        );
    }

    /// SIGSTOP node `i`'s agent (its mariadbd keeps running).
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

    /// Waits up to `within` for node `i`'s agent to exit.
    pub fn wait_agent_exit(&mut self, i: usize, within: Duration) -> bool {
        self.nodes[i]
            .agent
            .as_mut()
            .is_some_and(|a| a.wait_exit(within).is_some())
    }

    /// Node `i`'s agent log so far (all incarnations).
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
            let lines: Vec<&str> = all.lines().filter(|l| !is_noise(l)).collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            let _ = write!(
                s,
                "\n===== {} (index {i}, mariadb {}, http {}) =====\n{}\n",
                node.name,
                node.port,
                node.telemetry_port,
                tail.join("\n")
            );
        }
        s
    }

    // ---- HTTP ----

    fn http_status(&self, i: usize, path: &str) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}{path}", self.nodes[i].telemetry_port);
        self.http.get(url).send().ok().map(|r| r.status().as_u16())
    }

    /// Node `i`'s `/health` JSON.
    pub fn health(&self, i: usize) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/health", self.nodes[i].telemetry_port);
        serde_json::from_str(&self.http.get(url).send().ok()?.text().ok()?).ok()
    }

    /// Node `i`'s `/metrics` text.
    pub fn metrics(&self, i: usize) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.nodes[i].telemetry_port);
        self.http
            .get(url)
            .send()
            .ok()
            .and_then(|r| r.text().ok())
            .unwrap_or_default()
    }

    /// Every node's role from `/health` (`down` when it does not answer).
    pub fn roles(&self) -> Vec<String> {
        (0..self.nodes.len())
            .map(|i| {
                self.health(i)
                    .and_then(|h| h["role"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "down".into())
            })
            .collect()
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

    /// Waits for a primary; its index.
    pub fn wait_primary(&self, within: Duration) -> usize {
        eventually(within, Duration::from_millis(50), || self.primary()).unwrap_or_else(|| {
            panic!(
                "no primary within {within:?}; roles {:?}\n{}",
                self.roles(),
                self.logs()
            )
        })
    }

    /// Waits for a primary other than `old` that accepts writes; its index and the time.
    pub fn wait_new_primary(&self, old: usize, within: Duration) -> (usize, Duration) {
        let t0 = Instant::now();
        let p = eventually(within, Duration::from_millis(20), || {
            self.primary().filter(|&p| p != old)
        })
        .unwrap_or_else(|| {
            panic!(
                "no new primary (other than index {old}) within {within:?}; roles {:?}\n{}",
                self.roles(),
                self.logs()
            )
        });
        (p, t0.elapsed())
    }

    // ---- SQL ----

    /// The admin account's client for node `i`.
    pub fn admin(&self, i: usize) -> Sql {
        Sql {
            port: self.nodes[i].port,
            user: "autopilot".into(),
            password: ADMIN_PASSWORD.into(),
        }
    }

    /// Runs `sql` as admin on node `i`; the rows of the last statement.
    pub fn sql(&self, i: usize, sql: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
        self.admin(i).run(sql, Duration::from_secs(10))
    }

    /// Creates the workload's schema and application account on the primary `p`.
    pub fn create_schema(&self, p: usize) {
        let user =
            format!("CREATE USER IF NOT EXISTS {APP_USER}@'%' IDENTIFIED BY '{APP_PASSWORD}'");
        let grant = format!("GRANT SELECT, INSERT, DELETE ON e2e.* TO {APP_USER}@'%'");
        self.sql(
            p,
            &[
                "CREATE DATABASE IF NOT EXISTS e2e",
                "CREATE TABLE IF NOT EXISTS e2e.seq (n BIGINT PRIMARY KEY)",
                "CREATE TABLE IF NOT EXISTS e2e.probe (id INT PRIMARY KEY)",
                &user,
                &grant,
            ],
        )
        .unwrap_or_else(|e| panic!("create the schema on node {p}: {e:#}\n{}", self.logs()));
    }

    /// Whether node `i` accepts the application's writes.
    pub fn writable(&self, i: usize) -> bool {
        writable(self.nodes[i].port)
    }

    /// `SHOW SLAVE STATUS` fields (Master_Port, Slave_IO_Running, Slave_SQL_Running) of node `i`.
    pub fn replica_of(&self, i: usize) -> Option<(u16, bool)> {
        let status = self
            .admin(i)
            .run(&["SHOW SLAVE STATUS"], Duration::from_secs(2))
            .ok()?;
        let row = status.first()?;
        // SHOW SLAVE STATUS columns: 0 Slave_IO_State, 1 Master_Host, 2 Master_User,
        // 3 Master_Port, ..., 10 Slave_IO_Running, 11 Slave_SQL_Running.
        let port = row.get(3)?.parse().ok()?;
        let running = row.get(10).map(String::as_str) == Some("Yes")
            && row.get(11).map(String::as_str) == Some("Yes");
        Some((port, running))
    }

    /// Waits until node `i` replicates from node `p` with both threads running.
    pub fn wait_replicating(&self, i: usize, p: usize, within: Duration) {
        let want = self.nodes[p].port;
        let ok = eventually(within, Duration::from_millis(50), || {
            (self.replica_of(i) == Some((want, true))).then_some(())
        });
        assert!(
            ok.is_some(),
            "{} does not replicate from {} within {within:?} (status {:?}); roles {:?}\n{}",
            self.name(i),
            self.name(p),
            self.replica_of(i),
            self.roles(),
            self.logs()
        );
    }

    /// Waits until node `i` has applied the GTID position `pos` (as `SELECT
    /// @@gtid_current_pos` prints it on the primary).
    pub fn wait_gtid(&self, i: usize, pos: &str, within: Duration) -> Result<(), String> {
        let sql = format!("SELECT MASTER_GTID_WAIT('{pos}', {})", within.as_secs_f64());
        match self.admin(i).run(&[&sql], within + Duration::from_secs(2)) {
            Ok(rows) if rows.first().and_then(|r| r.first()).map(String::as_str) == Some("0") => {
                Ok(())
            }
            Ok(rows) => Err(format!("MASTER_GTID_WAIT answered {rows:?}")),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Node `i`'s mariadbd pid (`/health`'s `main_pid`, else the pid file).
    pub fn mariadbd_pid(&self, i: usize) -> Option<i32> {
        if !self.nodes[i].stopped
            && let Some(pid) = self
                .health(i)
                .and_then(|h| h["main_pid"].as_i64())
                .and_then(|p| i32::try_from(p).ok())
        {
            return Some(pid);
        }
        self.pid_from_file(i)
    }

    fn pid_from_file(&self, i: usize) -> Option<i32> {
        let f = self
            .dir
            .path()
            .join(format!("state-{}/mariadb/mariadbd.pid", i + 1));
        std::fs::read_to_string(f).ok()?.trim().parse().ok()
    }

    /// Stops every agent (SIGTERM, then SIGKILL) and kills any mariadbd left.
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
                && a.wait_exit(Duration::from_secs(25)).is_none()
            {
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGKILL);
                a.wait_exit(Duration::from_secs(5));
            }
        }
        for i in 0..self.nodes.len() {
            if let Some(pid) = self.pid_from_file(i)
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|e| e.to_string_lossy().contains("mariadbd"))
            {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for MariaCluster {
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

/// Log lines that only repeat (etcd client and HTTP/2 debug output).
fn is_noise(line: &str) -> bool {
    const NOISE: [&str; 6] = [
        "Aborted connection",
        "frame=",
        "Connection{peer",
        "updating from discover",
        "service.ready=",
        "idle connection",
    ];
    NOISE.iter().any(|n| line.contains(n))
}
