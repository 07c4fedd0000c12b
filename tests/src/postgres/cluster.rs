//! A PostgreSQL cluster under real agents: [`PgCluster`] starts one etcd and `n` agents,
//! each running its own PostgreSQL 15 through the `postgres` engine (as the `postgres` OS
//! user), with fault injection (kill -9 the postmaster, node loss, SIGSTOP/SIGCONT of an
//! agent, SIGTERM) and the engine-neutral writer/checker of [`crate::harness::workload`]
//! ([`PgWorkload`], in [`crate::postgres::workload`]).
//!
//! Layout of the temp dir (mode 0777 so `postgres` can use it): `agent-<k>.yaml` and
//! `agent-<k>.log`, `state-<k>/` (bootstrap marker), `data-<k>/` (PostgreSQL data dir),
//! `su.pw` and `repl.pw` (passwords). Node indexes are 0-based; node `i` is `node-<i+1>`.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::cluster::{Agents, NodeSpec, Secured, Security, yaml_ms as ms};
use crate::harness::etcd::{Etcd, EtcdCluster, EtcdServer};
use crate::harness::netns::Lan;
use crate::harness::util::{eventually, free_port};
use crate::harness::workload::Workload;
use crate::postgres::server::{
    BACKUP_PASSWORD, REPLICATOR, REPLICATOR_PASSWORD, SUPERUSER, SUPERUSER_PASSWORD, Sql,
    check_installed, temp_dir, wait_down,
};
use crate::postgres::workload::{PgWorkload, create_tables};

const NAMESPACE: &str = "e2e";
const PROJECT: &str = "pg";
const CLUSTER: &str = "main";

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
    /// `engine.seed`: `primary` (default), `backup` or `auto`.
    pub seed: &'static str,
    /// `cluster.bootstrap.from_backup` as flow YAML (`{ repository: local }`), when set.
    pub from_backup: Option<String>,
    /// `cluster.bootstrap.migrate_from` as flow YAML (`{ host: …, port: …, account: … }`),
    /// when set.
    pub migrate_from: Option<String>,
    /// TLS and authentication of etcd and the agents' listeners (all off by default).
    pub security: Security,
    /// YAML appended to every agent's configuration (e.g. a `backup:` section).
    pub extra_yaml: String,
    /// `engine.postgres.bin_dir` (`{k}` replaced by the node's number); default the
    /// installed server's. The upgrade tests point it at a directory their hooks switch.
    pub bin_dir: Option<String>,
    /// Lines added under `handlers:` (`{k}` replaced), e.g. `upgrade` and `rollback`.
    pub handlers_yaml: String,
}

impl Default for PgOpts {
    fn default() -> Self {
        PgOpts {
            ttl: Duration::from_secs(3),
            settle: Duration::from_millis(300),
            cooldown: Duration::ZERO,
            durability: "async",
            auto_rebuild: true,
            seed: "primary",
            from_backup: None,
            migrate_from: None,
            security: Security::default(),
            extra_yaml: String::new(),
            bin_dir: None,
            handlers_yaml: String::new(),
        }
    }
}

/// Node `i`'s database side; its agent is in [`Agents`].
struct Node {
    pg_port: u16,
    telemetry_port: u16,
    data_dir: PathBuf,
    state_dir: PathBuf,
}

/// `n` agents driving PostgreSQL and one etcd in one temp dir; everything is killed on drop.
/// Agents, logs and HTTP endpoints: [`Agents`], which this dereferences to.
pub struct PgCluster {
    agents: Agents,
    nodes: Vec<Node>,
    etcd: Etcd,
    sql: Arc<Sql>,
    opts: PgOpts,
    /// The config lines and files `opts.security` asked for.
    secured: Secured,
    dir: tempfile::TempDir,
    /// The network namespaces the nodes run in, when started with [`PgCluster::start_on_lan`]
    /// (last: removed after every process in them is gone).
    lan: Option<Lan>,
}

/// A cluster is its agents plus its databases: [`Agents`]' methods (roles, the primary, logs,
/// faults on agents, etcd keys) are called on the cluster itself, `c.wait_primary(…)`. A plain
/// `Deref` rather than an accessor because the scenarios make hundreds of such calls.
impl Deref for PgCluster {
    type Target = Agents;

    fn deref(&self) -> &Agents {
        &self.agents
    }
}

impl DerefMut for PgCluster {
    fn deref_mut(&mut self) -> &mut Agents {
        &mut self.agents
    }
}

impl PgCluster {
    /// Starts etcd and `n` agents (not waiting for a primary).
    pub fn start(n: usize, opts: PgOpts) -> anyhow::Result<Self> {
        Self::start_with(n, opts, None, 1)
    }

    /// Like [`start`](Self::start), on an etcd cluster of `members` (see
    /// [`PgCluster::etcd_cluster_mut`]).
    pub fn start_on_etcd_cluster(n: usize, opts: PgOpts, members: usize) -> anyhow::Result<Self> {
        Self::start_with(n, opts, None, members)
    }

    /// Like [`start`](Self::start), each node in a network namespace of its own on a test
    /// LAN (see [`crate::harness::netns`]), so that [`PgCluster::lan_mut`] can partition it.
    pub fn start_on_lan(n: usize, opts: PgOpts) -> anyhow::Result<Self> {
        Self::start_with(n, opts, Some(Lan::create(n)?), 1)
    }

    /// Like [`start`](Self::start), but no agent is started yet ([`Agents::start_agent`]
    /// starts each).
    pub fn create(n: usize, opts: PgOpts) -> anyhow::Result<Self> {
        Self::create_with(n, opts, None, 1)
    }

    fn start_with(
        n: usize,
        opts: PgOpts,
        lan: Option<Lan>,
        etcd_members: usize,
    ) -> anyhow::Result<Self> {
        let mut c = Self::create_with(n, opts, lan, etcd_members)?;
        for i in 0..n {
            c.start_agent(i);
        }
        Ok(c)
    }

    fn create_with(
        n: usize,
        opts: PgOpts,
        lan: Option<Lan>,
        etcd_members: usize,
    ) -> anyhow::Result<Self> {
        check_installed();
        let mut etcd = Etcd::start(lan.as_ref(), opts.security.etcd_tls, etcd_members)?;
        let endpoints = etcd.agent_endpoints();
        let host = |k: usize| {
            lan.as_ref()
                .map_or_else(|| "127.0.0.1".to_owned(), |l| l.node_ip(k - 1).to_string())
        };
        let dir = temp_dir("pg-cluster-")?;
        let prefix = format!("/autopilot/{NAMESPACE}/{PROJECT}/{CLUSTER}/");
        let secured = etcd.secure(opts.security, &prefix, dir.path())?;
        std::fs::write(dir.path().join("su.pw"), SUPERUSER_PASSWORD).context("write su.pw")?;
        std::fs::write(dir.path().join("repl.pw"), REPLICATOR_PASSWORD).context("write repl.pw")?;
        std::fs::write(dir.path().join("backup.pw"), BACKUP_PASSWORD).context("write backup.pw")?;
        let mut nodes = Vec::with_capacity(n);
        let mut specs = Vec::with_capacity(n);
        for k in 1..=n {
            let node = Node {
                pg_port: free_port(),
                telemetry_port: free_port(),
                data_dir: dir.path().join(format!("data-{k}")),
                state_dir: dir.path().join(format!("state-{k}")),
            };
            let spec = NodeSpec {
                name: format!("node-{k}"),
                config: dir.path().join(format!("agent-{k}.yaml")),
                telemetry_port: node.telemetry_port,
                detail: format!("pg {}", node.pg_port),
            };
            std::fs::write(
                &spec.config,
                agent_yaml(k, &spec.name, &host(k), &node, &endpoints, &opts, &secured),
            )
            .context("write an agent config")?;
            nodes.push(node);
            specs.push(spec);
        }
        let hosts = (1..=n).map(|k| (nodes[k - 1].pg_port, host(k))).collect();
        let mut agents = Agents::new(specs, &etcd.endpoints(), [NAMESPACE, PROJECT, CLUSTER])?;
        agents.set_etcd_access(etcd.access());
        if let Some(t) = &secured.listener {
            agents.use_https(&t.ca)?;
        }
        if let Some(l) = &lan {
            for i in 0..n {
                agents.place(i, &host(i + 1), &l.namespace(i));
            }
        }
        Ok(PgCluster {
            agents,
            nodes,
            etcd,
            sql: Arc::new(Sql::with_hosts(hosts)),
            opts,
            secured,
            dir,
            lan,
        })
    }

    /// The test LAN, when started with [`PgCluster::start_on_lan`].
    pub fn lan_mut(&mut self) -> &mut Lan {
        self.lan
            .as_mut()
            .expect("started with PgCluster::start_on_lan")
    }

    /// The agents' options.
    pub fn opts(&self) -> &PgOpts {
        &self.opts
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s PostgreSQL data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Names in the temp dir starting with `prefix` (e.g. `data-1.aside-`).
    pub fn entries(&self, prefix: &str) -> Vec<String> {
        crate::harness::cluster::entries(self.dir(), prefix)
    }

    /// Rewrites node `i`'s agent config with `opts`; takes effect at its next start.
    pub fn reconfigure(&self, i: usize, opts: &PgOpts) {
        let config = self.config_path(i);
        let yaml = agent_yaml(
            i + 1,
            self.name(i),
            self.host(i),
            &self.nodes[i],
            &self.etcd.agent_endpoints(),
            opts,
            &self.secured,
        );
        std::fs::write(config, yaml)
            .unwrap_or_else(|e| panic!("rewrite {}: {e}", config.display()));
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
        self.etcd.server()
    }

    /// The etcd server, mutably (to stop or restart it).
    pub fn etcd_mut(&mut self) -> &mut EtcdServer {
        self.etcd.server_mut()
    }

    /// The etcd members, when started with [`PgCluster::start_on_etcd_cluster`].
    pub fn etcd_cluster_mut(&mut self) -> &mut EtcdCluster {
        self.etcd.cluster_mut()
    }

    // ---- faults ----

    /// The postmaster's pid of node `i` (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self, i: usize) -> Option<i32> {
        crate::postgres::server::postmaster_pid(&self.nodes[i].data_dir)
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
        self.kill_agent_process(i);
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

    /// Removes node `i`'s state dir (bootstrap marker) and data dir; its agent must be down.
    pub fn wipe_node(&self, i: usize) {
        let _ = std::fs::remove_dir_all(&self.nodes[i].state_dir);
        let _ = std::fs::remove_dir_all(&self.nodes[i].data_dir);
    }

    // ---- PostgreSQL ----

    /// `SELECT` one value on node `i` (5 s bound).
    pub fn scalar(&self, i: usize, sql: &str) -> anyhow::Result<String> {
        self.sql.scalar(self.nodes[i].pg_port, sql)
    }

    /// Whether node `i` streams from node `primary` (per the primary's `pg_stat_replication`).
    pub fn streams_from(&self, i: usize, primary: usize) -> bool {
        let app = engines::postgres::settings::slot_name(self.name(i));
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

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.agents.terminate_all(Duration::from_secs(15));
        for i in 0..self.nodes.len() {
            if let Some(pid) = self.postmaster_pid(i) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        crate::harness::cluster::keep_if_asked(&mut self.dir);
    }
}

fn agent_yaml(
    k: usize,
    name: &str,
    host: &str,
    node: &Node,
    endpoints: &[String],
    opts: &PgOpts,
    secured: &Secured,
) -> String {
    let endpoints = serde_json::to_string(endpoints).expect("endpoints as JSON");
    let _ = (SUPERUSER, REPLICATOR);
    format!(
        r#"node: {{ name: {name}, address: {host}, state_dir: ./state-{k} }}
cluster: {{ namespace: {NAMESPACE}, project: {PROJECT}, name: {CLUSTER}{bootstrap} }}
store:
  etcd:
    endpoints: {endpoints}
{etcd_extra}  ttl: {ttl}
failover: {{ settle: {settle}, cooldown: {cooldown} }}
engine:
  kind: postgres
  port: {port}
  auto_rebuild: {auto_rebuild}
  seed: {seed}
  postgres:
    data_dir: ./data-{k}{bin_dir}
    durability: {durability}
    superuser: {{ user: {SUPERUSER}, password_file: su.pw }}
    replication: {{ user: {REPLICATOR}, password_file: repl.pw }}
    backup: {{ user: backup, password_file: backup.pw }}
    parameters: {{ shared_buffers: 16MB, max_connections: 50, fsync: "off" }}
process:
  user: postgres
  stop_timeout: 10s
handlers:
  onChange: {{ exec: [sh, -c, 'echo "role $AUTOPILOT_PREVIOUS_ROLE -> $AUTOPILOT_ROLE, primary $AUTOPILOT_PRIMARY_ADDRESS"'] }}
{handlers}{telemetry}{extra}"#,
        extra = opts.extra_yaml,
        handlers = opts.handlers_yaml.replace("{k}", &k.to_string()),
        bin_dir = opts
            .bin_dir
            .as_ref()
            .map(|b| format!("\n    bin_dir: {}", b.replace("{k}", &k.to_string())))
            .unwrap_or_default(),
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
        seed = opts.seed,
        bootstrap = crate::harness::cluster::bootstrap_yaml(
            opts.from_backup.as_deref(),
            opts.migrate_from.as_deref()
        ),
        etcd_extra = secured.etcd_yaml,
        telemetry = secured.telemetry_yaml(host, node.telemetry_port),
    )
}
