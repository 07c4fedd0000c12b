//! A MariaDB cluster under real agents: [`MariaCluster`] starts one etcd and `n` agents,
//! each running its own `mariadbd` through the `mariadb` engine (the engine initialises the
//! data directory, creates the accounts and builds the server command line). Fault
//! injection (kill -9 mariadbd, node loss, SIGSTOP/SIGCONT, SIGTERM) and SQL access as the
//! admin and application accounts.
//!
//! Layout of the temp dir (mode 0755 so the `mysql` user can reach the data dirs):
//! `agent-<k>.yaml`, `agent-<k>.log`, `state-<k>/` (bootstrap marker, socket),
//! `data-<k>/`, `admin.pass`, `repl.pass`. Node indexes are 0-based; node `i` is `node-<i+1>`.

use std::ops::{Deref, DerefMut};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::cluster::{Agents, NodeSpec, Secured, Security};
use crate::harness::etcd::{Etcd, EtcdCluster, EtcdServer};
use crate::harness::netns::Lan;
use crate::harness::util::{eventually, free_port, system_bin};
use crate::mariadb::workload::{APP_PASSWORD, APP_USER, Sql, app_at, writable_at};

const NAMESPACE: &str = "e2e";
const PROJECT: &str = "maria";
const CLUSTER: &str = "billing";
/// The admin account's password: a marker the tests grep agent output for.
pub const ADMIN_PASSWORD: &str = "adm-MARKER-5e1f9c";
/// The backup account's password, also a marker.
pub const BACKUP_PASSWORD: &str = "bak-MARKER-77c1e0";
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
    /// `engine.seed`: `primary` (default), `backup` or `auto`.
    pub seed: &'static str,
    /// `cluster.bootstrap.from_backup` as flow YAML (`{ repository: local }`), when set.
    pub from_backup: Option<String>,
    /// `cluster.bootstrap.migrate_from` as flow YAML (`{ host: …, port: …, account: … }`),
    /// when set.
    pub migrate_from: Option<String>,
    /// The admin account's password (written to `admin.pass` with one trailing newline).
    pub admin_password: &'static str,
    /// TLS and authentication of etcd and the agents' listeners (all off by default).
    pub security: Security,
    /// YAML appended to every agent's configuration (e.g. a `backup:` section); `{k}` is
    /// replaced by the node's number (1-based).
    pub extra_yaml: String,
    /// The server program each node runs (`{k}` replaced as in `extra_yaml`); default
    /// `/usr/sbin/mariadbd`. The upgrade tests point it at a symlink their hooks switch.
    pub server: Option<String>,
}

impl Default for MariaOpts {
    fn default() -> Self {
        MariaOpts {
            ttl: Duration::from_secs(3),
            settle: Duration::from_millis(300),
            durability: "sync",
            auto_rebuild: false,
            seed: "primary",
            from_backup: None,
            migrate_from: None,
            admin_password: ADMIN_PASSWORD,
            security: Security::default(),
            extra_yaml: String::new(),
            server: None,
        }
    }
}

/// Node `i`'s database side; its agent is in [`Agents`].
struct Node {
    port: u16,
}

/// `n` agents running MariaDB and one etcd in one temp dir; everything is killed on drop.
/// Agents, logs and HTTP endpoints: [`Agents`], which this dereferences to.
pub struct MariaCluster {
    agents: Agents,
    nodes: Vec<Node>,
    etcd: Etcd,
    opts: MariaOpts,
    /// The config lines and files `opts.security` asked for.
    secured: Secured,
    dir: tempfile::TempDir,
    /// The network namespaces the nodes run in, when started with
    /// [`MariaCluster::start_on_lan`] (last: removed after every process in them is gone).
    lan: Option<Lan>,
}

/// A cluster is its agents plus its databases: [`Agents`]' methods (roles, the primary, logs,
/// faults on agents, etcd keys) are called on the cluster itself, `c.wait_primary(…)`. A plain
/// `Deref` rather than an accessor because the scenarios make hundreds of such calls.
impl Deref for MariaCluster {
    type Target = Agents;

    fn deref(&self) -> &Agents {
        &self.agents
    }
}

impl DerefMut for MariaCluster {
    fn deref_mut(&mut self) -> &mut Agents {
        &mut self.agents
    }
}

impl MariaCluster {
    /// Starts etcd and `n` agents (not waiting for a primary).
    pub fn start(n: usize, opts: MariaOpts) -> anyhow::Result<Self> {
        Self::create(n, opts).map(Self::started)
    }

    fn started(mut self) -> Self {
        for i in 0..self.len() {
            self.start_agent(i);
        }
        self
    }

    /// Starts etcd and writes `n` agent configs, starting no agent.
    pub fn create(n: usize, opts: MariaOpts) -> anyhow::Result<Self> {
        Self::create_with(n, opts, None, 1)
    }

    /// Like [`start`](Self::start), each node in a network namespace of its own on a test
    /// LAN (see [`crate::harness::netns`]), so that [`MariaCluster::lan_mut`] can partition it.
    pub fn start_on_lan(n: usize, opts: MariaOpts) -> anyhow::Result<Self> {
        Self::create_with(n, opts, Some(Lan::create(n)?), 1).map(Self::started)
    }

    /// Like [`start`](Self::start), on an etcd cluster of `members` (see
    /// [`MariaCluster::etcd_cluster_mut`]).
    pub fn start_on_etcd_cluster(
        n: usize,
        opts: MariaOpts,
        members: usize,
    ) -> anyhow::Result<Self> {
        Self::create_with(n, opts, None, members).map(Self::started)
    }

    /// The test LAN, when started with [`MariaCluster::start_on_lan`].
    pub fn lan_mut(&mut self) -> &mut Lan {
        self.lan
            .as_mut()
            .expect("started with MariaCluster::start_on_lan")
    }

    fn create_with(
        n: usize,
        opts: MariaOpts,
        lan: Option<Lan>,
        etcd_members: usize,
    ) -> anyhow::Result<Self> {
        system_bin("/usr/sbin/mariadbd", "mariadb-server");
        system_bin("/usr/bin/mariadb-install-db", "mariadb-server");
        system_bin("/usr/bin/mariadb-backup", "mariadb-backup");
        system_bin("/usr/bin/mbstream", "mariadb-backup");
        let mut etcd = Etcd::start(lan.as_ref(), opts.security.etcd_tls, etcd_members)?;
        let dir = tempfile::Builder::new()
            .prefix("maria-cluster-")
            .tempdir()
            .context("create the cluster's temp dir")?;
        let prefix = format!("/autopilot/{NAMESPACE}/{PROJECT}/{CLUSTER}/");
        let secured = etcd.secure(opts.security, &prefix, dir.path())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::write(
            dir.path().join("admin.pass"),
            format!("{}\n", opts.admin_password),
        )?;
        std::fs::write(dir.path().join("repl.pass"), format!("{REPL_PASSWORD}\n"))?;
        std::fs::write(
            dir.path().join("backup.pass"),
            format!("{BACKUP_PASSWORD}\n"),
        )?;
        let mut nodes = Vec::with_capacity(n);
        let mut specs = Vec::with_capacity(n);
        for k in 1..=n {
            let node = Node { port: free_port() };
            specs.push(NodeSpec {
                name: format!("node-{k}"),
                config: dir.path().join(format!("agent-{k}.yaml")),
                telemetry_port: free_port(),
                detail: format!("mariadb {}", node.port),
            });
            nodes.push(node);
        }
        let mut agents = Agents::new(specs, &etcd.endpoints(), [NAMESPACE, PROJECT, CLUSTER])?;
        agents.set_etcd_access(etcd.access());
        if let Some(t) = &secured.listener {
            agents.use_https(&t.ca)?;
        }
        if let Some(l) = &lan {
            for i in 0..n {
                agents.place(i, &l.node_ip(i).to_string(), &l.namespace(i));
            }
        }
        let c = MariaCluster {
            agents,
            nodes,
            etcd,
            opts,
            secured,
            dir,
            lan,
        };
        for i in 0..n {
            c.write_config(i)?;
        }
        Ok(c)
    }

    /// Sets node `i`'s MariaDB port and rewrites its config.
    pub fn set_port(&mut self, i: usize, port: u16) -> anyhow::Result<()> {
        self.nodes[i].port = port;
        self.agents.set_detail(i, format!("mariadb {port}"));
        self.write_config(i)
    }

    /// Rewrites node `i`'s config (e.g. after changing its port).
    pub fn write_config(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let k = i + 1;
        let yaml = format!(
            r#"node: {{ name: {name}, address: {host}, state_dir: ./state-{k} }}
cluster: {{ namespace: {NAMESPACE}, project: {PROJECT}, name: {CLUSTER}{bootstrap} }}
store:
  etcd:
    endpoints: {etcd}
{etcd_extra}  ttl: {ttl}ms
failover: {{ settle: {settle}ms, cooldown: 0s }}
engine:
  kind: mariadb
  port: {port}
  auto_rebuild: {auto_rebuild}
  seed: {seed}
  mariadb:
    datadir: ./data-{k}
    durability: {durability}
    credentials:
      admin: {{ user: autopilot, password_file: ./admin.pass }}
      replication: {{ user: repl, password_file: ./repl.pass }}
      backup: {{ user: backup, password_file: ./backup.pass }}
process:
  exec: [{server}, --no-defaults, --innodb-buffer-pool-size=32M, --innodb-log-file-size=16M, --log-warnings=1]
  stop_timeout: 20s
{telemetry}"#,
            name = self.name(i),
            server = self
                .opts
                .server
                .as_deref()
                .unwrap_or("/usr/sbin/mariadbd")
                .replace("{k}", &k.to_string()),
            host = self.host(i),
            etcd = serde_json::to_string(&self.etcd.agent_endpoints())?,
            etcd_extra = self.secured.etcd_yaml,
            ttl = self.opts.ttl.as_millis(),
            settle = self.opts.settle.as_millis(),
            port = node.port,
            durability = self.opts.durability,
            auto_rebuild = self.opts.auto_rebuild,
            seed = self.opts.seed,
            bootstrap = crate::harness::cluster::bootstrap_yaml(
                self.opts.from_backup.as_deref(),
                self.opts.migrate_from.as_deref()
            ),
            telemetry = self
                .secured
                .telemetry_yaml(self.host(i), self.telemetry_port(i)),
        );
        let yaml = yaml + &self.opts.extra_yaml.replace("{k}", &k.to_string());
        std::fs::write(self.config_path(i), yaml).context("write an agent config")
    }

    /// Removes node `i`'s state dir (bootstrap marker) and data dir, as an operator moving
    /// them aside would; its agent must be down.
    pub fn wipe_node(&self, i: usize) {
        let k = i + 1;
        let _ = std::fs::remove_dir_all(self.dir.path().join(format!("state-{k}")));
        let _ = std::fs::remove_dir_all(self.dir.path().join(format!("data-{k}")));
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

    /// Node `i`'s agent base URL (its telemetry listener; `https://` with listener TLS).
    pub fn agent_url(&self, i: usize) -> String {
        self.agent_base(i)
    }

    /// The listener certificates and their CA, with `security.listener_tls`.
    pub fn listener_tls(&self) -> Option<&crate::harness::tls::TlsFiles> {
        self.secured.listener.as_ref()
    }

    /// The names of the entries of the cluster's temp dir that start with `prefix`.
    pub fn entries(&self, prefix: &str) -> Vec<String> {
        crate::harness::cluster::entries(self.dir(), prefix)
    }

    /// The temp dir.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    // ---- faults ----

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
        self.kill_agent_process(i);
        if let Some(pid) = pid.or_else(|| self.pid_from_file(i)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let (host, port) = (self.host(i).to_owned(), self.nodes[i].port);
        let gone = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
            std::net::TcpStream::connect((host.as_str(), port))
                .is_err()
                .then_some(())
        });
        assert!(
            gone.is_some(),
            "mariadbd of node {i} still listens after kill"
        );
    }

    // ---- SQL ----

    /// The admin account's client for node `i`.
    pub fn admin(&self, i: usize) -> Sql {
        Sql {
            host: self.host(i).to_owned(),
            port: self.nodes[i].port,
            user: "autopilot".into(),
            password: self.opts.admin_password.into(),
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

    /// The agents' options, to change (then [`Self::write_config`]).
    pub fn opts_mut(&mut self) -> &mut MariaOpts {
        &mut self.opts
    }

    /// The agents' options.
    pub fn opts(&self) -> &MariaOpts {
        &self.opts
    }

    /// The etcd server, mutably (to stop or restart it).
    pub fn etcd_mut(&mut self) -> &mut EtcdServer {
        self.etcd.server_mut()
    }

    /// The etcd members, when started with [`MariaCluster::start_on_etcd_cluster`].
    pub fn etcd_cluster_mut(&mut self) -> &mut EtcdCluster {
        self.etcd.cluster_mut()
    }

    /// Whether node `i` accepts the application's writes.
    pub fn writable(&self, i: usize) -> bool {
        writable_at(app_at(self.host(i), self.nodes[i].port))
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
        self.main_pid(i).or_else(|| self.pid_from_file(i))
    }

    /// The pid in node `i`'s pid file, only while that process is still its mariadbd (the
    /// file of a killed server may name a pid that now belongs to another process).
    fn pid_from_file(&self, i: usize) -> Option<i32> {
        let f = self
            .dir
            .path()
            .join(format!("state-{}/mariadb/mariadbd.pid", i + 1));
        let pid = std::fs::read_to_string(&f).ok()?.trim().parse().ok()?;
        crate::harness::util::runs_with(pid, &f).then_some(pid)
    }

    /// Stops every agent (SIGTERM, then SIGKILL) and kills any mariadbd left.
    pub fn stop_all(&mut self) {
        self.agents.terminate_all(Duration::from_secs(25));
        for i in 0..self.nodes.len() {
            if let Some(pid) = self.pid_from_file(i) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for MariaCluster {
    fn drop(&mut self) {
        self.stop_all();
        crate::harness::cluster::keep_if_asked(&mut self.dir);
    }
}
