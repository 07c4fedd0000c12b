//! Patroni side by side: [`PatroniCluster`] runs a 3-node Patroni 4.1.5 cluster (the venv
//! `scripts/install-deps` builds at [`PATRONI_VENV`]) on the same PostgreSQL 15 binaries and
//! a fresh etcd server of the same binary as the Autopilot runs, so `bench postgres-failover`
//! can inject the same faults and measure them with the same writer and checker.
//!
//! Everything runs as the unprivileged `postgres` OS user (`setpriv` execs, so the child's
//! PID is Patroni's), on random free loopback ports, in one temp dir (mode 0777) that is
//! deleted on drop after every process was stopped by PID. Every wait is bounded.
//!
//! Settings (recipes.md Part 2 and its gotchas): Patroni raises `ttl` below 20 s to 20 s, so
//! the asked TTL is written to the configuration and the lease etcd really grants is read
//! back ([`PatroniCluster::effective_ttl`]) for the report; `loop_wait` and `retry_timeout`
//! are chosen so that `loop_wait + 2 × retry_timeout ≤ ttl` holds for the asked TTL
//! (10 s → 2 and 4, 5 s → 1 and 3, the minimum Patroni accepts);
//! `primary_start_timeout: 0`, so a crashed postmaster fails over instead of being restarted
//! in place for up to 300 s; `durability: sync` is `synchronous_mode: true`. PostgreSQL gets
//! the same parameters as the agents' nodes (`shared_buffers` 16MB, `max_connections` 50,
//! `fsync` off) and SCRAM logins for the same superuser and replication users.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use e2e::harness::etcd::EtcdServer;
use e2e::harness::util::{alive, eventually, free_port};
use e2e::harness::workload::Workload;
use e2e::postgres::server::{
    BIN_DIR, REPLICATOR, REPLICATOR_PASSWORD, SUPERUSER, SUPERUSER_PASSWORD, Sql,
    check_installed as check_postgres, temp_dir, wait_down,
};
use e2e::postgres::workload::{PgWorkload, create_tables};

/// Where `scripts/install-deps` puts the Patroni venv.
pub const PATRONI_VENV: &str = "/opt/patroni";
/// The Patroni version `scripts/install-deps` pins (and recipes.md measured).
pub const PATRONI_VERSION: &str = "4.1.5";
/// Patroni's `scope`.
const SCOPE: &str = "bench";
/// Timeout of the REST calls.
const HTTP_TIMEOUT: Duration = Duration::from_millis(800);
/// Lines of each Patroni log shown in failure messages.
const LOG_TAIL: usize = 40;

/// The `patroni` program; an error saying to run `scripts/install-deps` when it is missing
/// or does not run (a missing Patroni must fail a test, never skip it).
pub fn check_installed() -> Result<PathBuf> {
    let bin = Path::new(PATRONI_VENV).join("bin/patroni");
    let out = Command::new(&bin).arg("--version").output();
    match out {
        Ok(o) if o.status.success() => Ok(bin),
        Ok(o) => bail!(
            "{} --version failed ({}): {}; run scripts/install-deps",
            bin.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => bail!(
            "Patroni is not installed ({}: {e}); run scripts/install-deps (it builds the venv at {PATRONI_VENV})",
            bin.display()
        ),
    }
}

/// Tuning of the Patroni cluster.
#[derive(Clone, Debug)]
pub struct PatroniOpts {
    /// The `ttl` asked for (Patroni raises it to at least 20 s).
    pub ttl: Duration,
    /// `async`, or `sync` (`synchronous_mode: true`).
    pub durability: &'static str,
}

/// `loop_wait` and `retry_timeout` (seconds) for an asked TTL: `loop_wait` a fifth of it (at
/// least 1), `retry_timeout` what is left halved (at least 3, Patroni's minimum).
pub fn timing(ttl: Duration) -> (u64, u64) {
    let ttl = ttl.as_secs().max(1);
    let loop_wait = (ttl / 5).max(1);
    let retry_timeout = (ttl.saturating_sub(loop_wait) / 2).max(3);
    (loop_wait, retry_timeout)
}

struct Node {
    name: String,
    pg_port: u16,
    rest_port: u16,
    config: PathBuf,
    log: PathBuf,
    data_dir: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

/// A 3-node (or n-node) Patroni cluster and its etcd; every process is stopped on drop.
pub struct PatroniCluster {
    nodes: Vec<Node>,
    etcd: EtcdServer,
    http: reqwest::blocking::Client,
    sql: Arc<Sql>,
    opts: PatroniOpts,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl PatroniCluster {
    /// Starts a fresh etcd and `n` Patroni agents (not waiting for a leader).
    pub fn start(n: usize, opts: PatroniOpts) -> Result<Self> {
        let bin = check_installed()?;
        check_postgres();
        e2e::harness::util::system_bin("/usr/bin/setpriv", "util-linux");
        let etcd = EtcdServer::start()?;
        let dir = temp_dir("patroni-cluster-")?;
        let etcd_host = etcd
            .endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut nodes = Vec::with_capacity(n);
        for k in 1..=n {
            let node = Node {
                name: format!("node{k}"),
                pg_port: free_port(),
                rest_port: free_port(),
                config: dir.path().join(format!("node{k}.yml")),
                log: dir.path().join(format!("node{k}.log")),
                data_dir: dir.path().join(format!("data{k}")),
                child: None,
                stopped: false,
            };
            std::fs::write(
                &node.config,
                node_yaml(k, &node, dir.path(), &etcd_host, &opts),
            )
            .context("write a Patroni config")?;
            nodes.push(node);
        }
        let http = reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("build the HTTP client")?;
        let mut c = PatroniCluster {
            nodes,
            etcd,
            http,
            sql: Arc::new(Sql::new()),
            opts,
            bin,
            dir,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let user = e2e::postgres::server::os_user();
        let node = &mut self.nodes[i];
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .context("open the Patroni log")?;
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .arg("--init-groups")
            .arg("env")
            .arg(format!("HOME={}", self.dir.path().display()))
            .arg(&self.bin)
            .arg(&node.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("clone log handle")?)
            .stderr(out)
            // Its own process group: a signal to the bench's group must not reach it.
            .process_group(0);
        node.child = Some(cmd.spawn().context("spawn patroni")?);
        node.stopped = false;
        Ok(())
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s member name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The temp dir (deleted on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Node `i`'s Patroni PID, while it runs.
    pub fn patroni_pid(&self, i: usize) -> Option<i32> {
        self.nodes[i]
            .child
            .as_ref()
            .and_then(|c| i32::try_from(c.id()).ok())
    }

    /// The postmaster's pid of node `i` (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self, i: usize) -> Option<i32> {
        e2e::postgres::server::postmaster_pid(&self.nodes[i].data_dir)
    }

    /// `GET /cluster` from the first node that answers (skipping frozen agents).
    pub fn cluster(&self) -> Option<serde_json::Value> {
        self.nodes.iter().filter(|n| !n.stopped).find_map(|n| {
            self.http
                .get(format!("http://127.0.0.1:{}/cluster", n.rest_port))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.json::<serde_json::Value>().ok())
        })
    }

    /// Each member's (index, role, state) as `/cluster` reports them.
    pub fn members(&self) -> Vec<(usize, String, String)> {
        let Some(c) = self.cluster() else {
            return Vec::new();
        };
        c["members"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| {
                        let i = self.index(m["name"].as_str()?)?;
                        Some((
                            i,
                            m["role"].as_str().unwrap_or("").to_owned(),
                            m["state"].as_str().unwrap_or("").to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The running leader, per `/cluster`.
    pub fn leader(&self) -> Option<usize> {
        self.members()
            .into_iter()
            .find(|(_, role, state)| role == "leader" && state == "running")
            .map(|(i, _, _)| i)
    }

    /// The synchronous standby, per `/cluster` (`durability: sync`).
    pub fn sync_standby(&self) -> Option<usize> {
        self.members()
            .into_iter()
            .find(|(_, role, state)| role == "sync_standby" && state == "streaming")
            .map(|(i, _, _)| i)
    }

    /// Waits (up to `within`) for a running leader with every other member streaming
    /// (and, with `sync`, one of them the synchronous standby), then creates the writer's
    /// tables on the leader; the leader's index.
    pub fn wait_settled(&self, within: Duration) -> Result<usize> {
        let sync = self.opts.durability == "sync";
        let leader = eventually(within, Duration::from_millis(200), || {
            let ms = self.members();
            let leader = ms
                .iter()
                .find(|(_, r, s)| r == "leader" && s == "running")?
                .0;
            let streaming = ms
                .iter()
                .filter(|(i, r, s)| {
                    *i != leader
                        && ["replica", "sync_standby", "quorum_standby"].contains(&r.as_str())
                        && s == "streaming"
                })
                .count();
            let has_sync = !sync || ms.iter().any(|(_, r, _)| r == "sync_standby");
            (streaming == self.len() - 1 && has_sync).then_some(leader)
        });
        let Some(leader) = leader else {
            bail!(
                "no leader with {} streaming replicas within {within:?}; members {:?}\n{}",
                self.len() - 1,
                self.members(),
                self.logs()
            );
        };
        if !create_tables(&self.sql, self.nodes[leader].pg_port) {
            bail!("cannot create the tables on the leader\n{}", self.logs());
        }
        Ok(leader)
    }

    /// The TTL of the lease etcd granted the leader key (what Patroni really uses).
    pub fn effective_ttl(&self) -> Result<Duration> {
        let key = format!("/service/{SCOPE}/leader");
        let json = self.etcd.etcdctl(&["get", &key, "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&json).context("parse etcdctl get")?;
        let lease = v["kvs"][0]["lease"]
            .as_i64()
            .with_context(|| format!("no lease on {key}: {json}"))?;
        let out = self
            .etcd
            .etcdctl(&["lease", "timetolive", &format!("{lease:x}")])?;
        // "lease 694d... granted with TTL(20s), remaining(18s)"
        let secs = out
            .split("TTL(")
            .nth(1)
            .and_then(|r| r.split('s').next())
            .and_then(|s| s.parse::<u64>().ok())
            .with_context(|| format!("parse {out:?}"))?;
        Ok(Duration::from_secs(secs))
    }

    /// SIGKILL node `i`'s postmaster (Patroni lives).
    pub fn kill_postgres(&self, i: usize) -> Result<()> {
        let pid = self
            .postmaster_pid(i)
            .with_context(|| format!("no postmaster pid for {}", self.name(i)))?;
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        Ok(())
    }

    /// Node loss: SIGKILL node `i`'s Patroni, then its postmaster; waits until its
    /// PostgreSQL no longer answers.
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        let pid = self.postmaster_pid(i);
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.nodes[i].stopped = false;
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !wait_down(&self.sql, self.nodes[i].pg_port, Duration::from_secs(10)) {
            bail!("PostgreSQL of {} still answers after kill", self.name(i));
        }
        Ok(())
    }

    /// SIGSTOP node `i`'s Patroni (its PostgreSQL keeps running).
    pub fn stop_agent(&mut self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
        self.nodes[i].stopped = true;
    }

    /// SIGCONT node `i`'s Patroni.
    pub fn cont_agent(&mut self, i: usize) {
        self.signal(i, Signal::SIGCONT);
        self.nodes[i].stopped = false;
    }

    /// SIGTERM node `i`'s Patroni (it stops PostgreSQL and gives the leader key up).
    pub fn sigterm_agent(&self, i: usize) {
        self.signal(i, Signal::SIGTERM);
    }

    fn signal(&self, i: usize, sig: Signal) {
        if let Some(pid) = self.patroni_pid(i) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }

    /// `POST /switchover` on the leader `from`'s REST API, naming `to` as the candidate;
    /// runs in a thread (Patroni answers once it is done) and returns its answer through
    /// the handle.
    pub fn switchover(&self, from: usize, to: usize) -> std::thread::JoinHandle<Result<()>> {
        let url = format!("http://127.0.0.1:{}/switchover", self.nodes[from].rest_port);
        let body = serde_json::json!({
            "leader": self.name(from),
            "candidate": self.name(to),
        });
        std::thread::spawn(move || {
            let r = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?
                .post(url)
                .json(&body)
                .send()?;
            let status = r.status();
            let text = r.text().unwrap_or_default();
            if !status.is_success() {
                bail!("POST /switchover: {status}: {text}");
            }
            Ok(())
        })
    }

    /// The writer and checker's view of this cluster (same as the agents' clusters).
    pub fn workload(&self) -> Arc<dyn Workload> {
        PgWorkload::shared(
            self.nodes.iter().map(|n| n.pg_port).collect(),
            self.sql.clone(),
        )
    }

    /// The last lines of every Patroni log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let all = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = all.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            let _ = write!(
                s,
                "\n===== Patroni {} (index {i}, pg {}, rest {}) =====\n{}\n",
                node.name,
                node.pg_port,
                node.rest_port,
                tail.join("\n")
            );
        }
        s
    }
}

impl Drop for PatroniCluster {
    /// SIGKILL every Patroni, then an immediate shutdown (SIGQUIT) of every postmaster, which
    /// cleans up its shared memory; SIGKILL for one that is still there after 10 s.
    fn drop(&mut self) {
        let postmasters: Vec<i32> = (0..self.nodes.len())
            .filter_map(|i| self.postmaster_pid(i))
            .collect();
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for &pid in &postmasters {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for &pid in &postmasters {
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn node_yaml(k: usize, node: &Node, dir: &Path, etcd: &str, opts: &PatroniOpts) -> String {
    let (loop_wait, retry_timeout) = timing(opts.ttl);
    let dir = dir.display();
    format!(
        r#"scope: {SCOPE}
namespace: /service/
name: {name}
log: {{ level: INFO }}
restapi: {{ listen: "127.0.0.1:{rest}", connect_address: "127.0.0.1:{rest}" }}
etcd3: {{ hosts: "{etcd}", protocol: http }}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry_timeout}
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0
    synchronous_mode: {sync}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_connections: 50
        shared_buffers: 16MB
        fsync: "off"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 64MB
  initdb: [{{ encoding: UTF8 }}, data-checksums]
postgresql:
  listen: "127.0.0.1:{pg}"
  connect_address: "127.0.0.1:{pg}"
  data_dir: {dir}/data{k}
  bin_dir: {BIN_DIR}
  pgpass: {dir}/pgpass{k}
  authentication:
    superuser: {{ username: {SUPERUSER}, password: "{SUPERUSER_PASSWORD}" }}
    replication: {{ username: {REPLICATOR}, password: "{REPLICATOR_PASSWORD}" }}
    rewind: {{ username: rewinder, password: "{SUPERUSER_PASSWORD}" }}
  parameters: {{ unix_socket_directories: "{dir}" }}
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication all 127.0.0.1/32 scram-sha-256
"#,
        name = node.name,
        rest = node.rest_port,
        ttl = opts.ttl.as_secs(),
        sync = opts.durability == "sync",
        pg = node.pg_port,
    )
}
