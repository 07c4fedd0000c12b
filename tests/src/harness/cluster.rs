//! What every engine's cluster harness shares ([`Agents`]): the agents as processes (start
//! and restart with the earlier log kept, SIGSTOP/SIGCONT/SIGTERM/SIGKILL, exit), their logs
//! for failure messages, their HTTP endpoints (`/health`, `/metrics`, `/primary`), from
//! which roles and the primary are read, and the cluster's keys in etcd. `RedisCluster`,
//! `MariaCluster` and `PgCluster` hold one and dereference to it (a plain `Deref` impl in
//! each, documented there); each adds its database, its faults and its config.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::agent::Agent;
use crate::harness::util::eventually;

/// Timeout of the agents' HTTP endpoints.
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// Lines of each agent's log shown in failure messages.
const LOG_TAIL: usize = 120;

/// TLS and authentication of a test cluster (all off by default): what etcd requires of the
/// agents and whether their listeners serve HTTPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Security {
    /// etcd serves clients over TLS only and requires a client certificate
    /// ([`EtcdServer::start_tls`](crate::harness::etcd::EtcdServer::start_tls)); agents get
    /// `store.etcd.tls` with its CA and client certificate.
    pub etcd_tls: bool,
    /// etcd authentication on ([`EtcdServer::enable_auth`](crate::harness::etcd::EtcdServer::enable_auth)):
    /// agents log in as [`ETCD_USER`] (`store.etcd.username`, `password_file`), whose role may
    /// only read and write the cluster's prefix.
    pub etcd_auth: bool,
    /// Every agent's listener serves HTTPS (`telemetry.tls` with a certificate for
    /// 127.0.0.1 and the CA that signed it, shared by all nodes).
    pub listener_tls: bool,
}

/// The etcd user agents log in as with [`Security::etcd_auth`].
pub const ETCD_USER: &str = "agents";
/// Its password: a marker the tests grep agent output for.
pub const ETCD_PASSWORD: &str = "etcd-MARKER-7d41aa";

/// What a cluster harness set up for [`Security`]: the YAML it adds to agent configs.
#[derive(Clone, Debug, Default)]
pub struct Secured {
    /// `store.etcd` lines after `endpoints` (username, password file, tls), each indented for
    /// a block mapping under `etcd:` (4 spaces).
    pub etcd_yaml: String,
    /// The listener's certificates (`telemetry.tls`); `None` serves plain HTTP.
    pub listener: Option<crate::harness::tls::TlsFiles>,
}

impl Secured {
    /// Turns on in `etcd` what `sec` asks for (auth limited to `prefix`) and makes the files
    /// agents need in `dir` (the password file, the listener's certificates).
    pub fn set_up(
        sec: Security,
        etcd: &mut crate::harness::etcd::EtcdServer,
        prefix: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut yaml = String::new();
        if sec.etcd_auth {
            etcd.enable_auth(prefix, ETCD_USER, ETCD_PASSWORD)
                .context("turn etcd auth on")?;
            let pass = dir.join("etcd.pass");
            std::fs::write(&pass, format!("{ETCD_PASSWORD}\n")).context("write etcd.pass")?;
            let _ = writeln!(yaml, "    username: {ETCD_USER}");
            let _ = writeln!(yaml, "    password_file: {}", pass.display());
        }
        if let Some(tls) = etcd.tls() {
            let _ = writeln!(yaml, "    tls:");
            let _ = writeln!(yaml, "      ca_file: {}", tls.ca.display());
            let _ = writeln!(yaml, "      cert_file: {}", tls.client_cert.display());
            let _ = writeln!(yaml, "      key_file: {}", tls.client_key.display());
        }
        let listener = if sec.listener_tls {
            Some(crate::harness::tls::TlsFiles::generate(
                &dir.join("listener-tls"),
            )?)
        } else {
            None
        };
        Ok(Secured {
            etcd_yaml: yaml,
            listener,
        })
    }

    /// The `telemetry:` section for a listener on `host`:`port`.
    pub fn telemetry_yaml(&self, host: &str, port: u16) -> String {
        let mut yaml = format!("telemetry:\n  listen: \"{host}:{port}\"\n");
        if let Some(t) = &self.listener {
            let _ = write!(
                yaml,
                "  tls:\n    cert: {}\n    key: {}\n    ca: {}\n",
                t.server_cert.display(),
                t.server_key.display(),
                t.ca.display()
            );
        }
        yaml
    }
}

/// One node's agent.
struct AgentNode {
    name: String,
    /// The agent's config; its log is beside it (`.log`, earlier runs in `.prev.log`).
    config: PathBuf,
    telemetry_port: u16,
    /// The address its listener is on (127.0.0.1 unless on a test LAN).
    host: String,
    /// The network namespace its agent runs in (`ip netns exec`), on a test LAN.
    netns: Option<String>,
    /// What the log header says of the node's database (e.g. `pg 5432`).
    detail: String,
    agent: Option<Agent>,
    /// SIGSTOPped by the test.
    stopped: bool,
    /// Another `autopilot` binary than the workspace's (an older release).
    binary: Option<PathBuf>,
}

/// The agents of a test cluster, by node index (node `i` is usually `node-<i+1>`).
pub struct Agents {
    nodes: Vec<AgentNode>,
    http: reqwest::blocking::Client,
    /// The etcd endpoints the agents use, comma-separated (for `etcdctl`).
    endpoints: String,
    /// The cluster's key prefix, `/autopilot/<namespace>/<project>/<cluster>/`.
    prefix: String,
    /// Agents started from now on run under this open-file limit (soft and hard).
    open_files: Option<u64>,
    /// How `etcdctl` reaches the etcd (client certificate, user).
    etcd_access: crate::harness::etcd::EtcdAccess,
    /// `http` or `https` (the agents' listeners have certificates).
    scheme: &'static str,
    /// Agents started from now on run in this directory, their configs named relative to it.
    cwd: Option<PathBuf>,
}

/// Node `i`'s name, config path, telemetry port and database detail for [`Agents::new`].
pub struct NodeSpec {
    /// The node's name (`node.name`).
    pub name: String,
    /// Where its agent config is (written by the harness).
    pub config: PathBuf,
    /// Its `telemetry.listen` port on 127.0.0.1.
    pub telemetry_port: u16,
    /// Shown in log headers, e.g. `redis 6379`.
    pub detail: String,
}

impl Agents {
    /// The agents of `nodes` of cluster `namespace/project/cluster` on the etcd at
    /// `endpoints`; none is started yet.
    pub fn new(
        nodes: Vec<NodeSpec>,
        endpoints: &[String],
        [namespace, project, cluster]: [&str; 3],
    ) -> anyhow::Result<Self> {
        let http = reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .context("build the HTTP client")?;
        let nodes = nodes
            .into_iter()
            .map(|n| AgentNode {
                name: n.name,
                config: n.config,
                telemetry_port: n.telemetry_port,
                host: "127.0.0.1".to_owned(),
                netns: None,
                detail: n.detail,
                agent: None,
                stopped: false,
                binary: None,
            })
            .collect();
        Ok(Agents {
            nodes,
            http,
            endpoints: endpoints.join(","),
            prefix: format!("/autopilot/{namespace}/{project}/{cluster}/"),
            open_files: None,
            etcd_access: crate::harness::etcd::EtcdAccess::default(),
            scheme: "http",
            cwd: None,
        })
    }

    /// Puts node `i` on a test LAN: its listener is at `host`, its agent (and so its
    /// database) runs in network namespace `netns` from its next start on.
    pub fn place(&mut self, i: usize, host: &str, netns: &str) {
        self.nodes[i].host = host.to_owned();
        self.nodes[i].netns = Some(netns.to_owned());
    }

    /// The address node `i`'s listener (and database) is on.
    pub fn host(&self, i: usize) -> &str {
        &self.nodes[i].host
    }

    /// `etcdctl` runs with `access` (an etcd with TLS or auth).
    pub fn set_etcd_access(&mut self, access: crate::harness::etcd::EtcdAccess) {
        self.etcd_access = access;
    }

    /// The agents' listeners serve HTTPS with certificates signed by the CA in `ca`: the
    /// harness's requests go to `https://127.0.0.1:<port>` and trust that CA only.
    pub fn use_https(&mut self, ca: &Path) -> anyhow::Result<()> {
        let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).context("parse the CA")?;
        self.http = reqwest::blocking::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .tls_certs_only(certs)
            .build()
            .context("build the HTTPS client")?;
        self.scheme = "https";
        Ok(())
    }

    /// Node `i`'s agent base URL (`http://` or `https://<host>:<telemetry port>`).
    pub fn agent_base(&self, i: usize) -> String {
        format!(
            "{}://{}:{}",
            self.scheme, self.nodes[i].host, self.nodes[i].telemetry_port
        )
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Node `i`'s agent config path.
    pub fn config_path(&self, i: usize) -> &Path {
        &self.nodes[i].config
    }

    /// Node `i`'s telemetry port.
    pub fn telemetry_port(&self, i: usize) -> u16 {
        self.nodes[i].telemetry_port
    }

    /// Replaces what node `i`'s log header says of its database.
    pub fn set_detail(&mut self, i: usize, detail: String) {
        self.nodes[i].detail = detail;
    }

    // ---- etcd ----

    /// The cluster's key prefix, `/autopilot/<namespace>/<project>/<cluster>/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `etcdctl <args>` against the cluster's etcd; its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::harness::etcd::etcdctl_as(&self.endpoints, &self.etcd_access, args)
    }

    /// Starts a plain `etcdctl watch --prefix` on the cluster's prefix, as any other tool
    /// would watch it, its output going to `out`; kill it when done.
    pub fn watch_prefix(&self, out: &Path) -> std::process::Child {
        let file = std::fs::File::create(out).expect("create the watcher's output file");
        std::process::Command::new("/usr/bin/etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .args(["watch", "--prefix", &self.prefix])
            .stdout(file)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start etcdctl watch (apt-get install -y etcd-client)")
    }

    /// The JSON document at `<prefix><key>`, `None` when absent or not JSON.
    pub fn doc(&self, key: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.key(key)?).ok()
    }

    /// Every `events/*` document of the cluster, oldest first (their ids start with the time).
    pub fn events(&self) -> Vec<serde_json::Value> {
        let prefix = format!("{}events/", self.prefix);
        let out = self
            .etcdctl(&["get", "--prefix", "--print-value-only", &prefix])
            .unwrap_or_else(|e| panic!("etcdctl get --prefix {prefix}: {e:#}"));
        out.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits up to `within` for an event of `kind` written by node `node`; the document.
    pub fn wait_event(&self, kind: &str, node: usize, within: Duration) -> serde_json::Value {
        let name = self.name(node);
        crate::harness::util::eventually(within, Duration::from_millis(100), || {
            self.events()
                .into_iter()
                .find(|e| e["kind"] == kind && e["node"] == name)
        })
        .unwrap_or_else(|| {
            panic!(
                "no {kind} event from {name} within {within:?}: {:#?}",
                self.events()
            )
        })
    }

    /// The value of `<prefix><key>`, `None` when absent.
    pub fn key(&self, key: &str) -> Option<String> {
        let full = format!("{}{key}", self.prefix);
        let out = self
            .etcdctl(&["get", &full, "--print-value-only"])
            .unwrap_or_else(|e| panic!("etcdctl get {full}: {e:#}"));
        let out = out.trim();
        (!out.is_empty()).then(|| out.to_owned())
    }

    /// The values of every key under `<prefix><key_prefix>`, in key order.
    pub fn values_under(&self, key_prefix: &str) -> Vec<String> {
        let full = format!("{}{key_prefix}", self.prefix);
        self.etcdctl(&["get", "--prefix", &full, "--print-value-only"])
            .unwrap_or_else(|e| panic!("etcdctl get --prefix {full}: {e:#}"))
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// `etcdctl put <prefix><key> <value>`.
    pub fn put_key(&self, key: &str, value: &str) {
        let full = format!("{}{key}", self.prefix);
        self.etcdctl(&["put", &full, value])
            .unwrap_or_else(|e| panic!("etcdctl put {full}: {e:#}"));
    }

    /// `etcdctl del <prefix><key>`.
    pub fn del_key(&self, key: &str) {
        let full = format!("{}{key}", self.prefix);
        self.etcdctl(&["del", &full])
            .unwrap_or_else(|e| panic!("etcdctl del {full}: {e:#}"));
    }

    /// Waits until node `i`'s node key says it is eligible for promotion (a switchover to a
    /// node that is not yet is rejected by the primary, as it should be).
    pub fn wait_eligible(&self, i: usize, within: Duration) {
        let ok = crate::harness::util::wait_node_eligible(|k| self.key(k), self.name(i), within);
        assert!(
            ok,
            "{} is not eligible within {within:?}\n{}",
            self.name(i),
            self.logs()
        );
    }

    /// Whether node `i`'s node key says `needs_rebuild: true`.
    pub fn needs_rebuild(&self, i: usize) -> bool {
        self.key(&format!("nodes/{}", self.name(i)))
            .and_then(|doc| serde_json::from_str::<serde_json::Value>(&doc).ok())
            .is_some_and(|doc| doc["needs_rebuild"].as_bool() == Some(true))
    }

    /// Waits until node `i` reports `needs_rebuild`, in its node key and in its
    /// `autopilot_needs_rebuild` metric.
    pub fn wait_flagged_needs_rebuild(&self, i: usize, within: Duration) {
        let flagged = eventually(within, Duration::from_millis(100), || {
            self.needs_rebuild(i).then_some(())
        });
        assert!(
            flagged.is_some(),
            "{} was not flagged needs_rebuild; roles {:?}\n{}",
            self.name(i),
            self.roles(),
            self.logs()
        );
        let metrics = self.metrics(i);
        assert!(
            metrics.contains("autopilot_needs_rebuild 1"),
            "no needs_rebuild metric on {}:\n{metrics}",
            self.name(i)
        );
    }

    // ---- agents ----

    /// Starts (or restarts) node `i`'s agent; an earlier log is kept in `<config>.prev.log`.
    pub fn start_agent(&mut self, i: usize) {
        let open_files = self.open_files;
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
        node.agent = Some(match (&node.netns, open_files) {
            _ if node.binary.is_some() => {
                let mut cmd = std::process::Command::new(node.binary.as_ref().expect("checked"));
                cmd.arg("run").arg("--config").arg(&node.config);
                Agent::spawn(cmd, &node.config)
            }
            (Some(ns), _) => Agent::run_in_netns(&node.config, ns),
            (None, Some(n)) => Agent::run_with_open_files(&node.config, n),
            (None, None) => match &self.cwd {
                Some(dir) => Agent::run_relative(&node.config, dir),
                None => Agent::run(&node.config),
            },
        });
    }

    /// Node `i`'s agent runs `binary` from its next start on (an older release).
    pub fn use_binary(&mut self, i: usize, binary: &Path) {
        self.nodes[i].binary = Some(binary.to_path_buf());
    }

    /// Agents started from now on run in `dir` with `--config` relative to it (each config
    /// must lie under `dir`), the way an operator starts the README's examples.
    pub fn run_from(&mut self, dir: &Path) {
        self.cwd = Some(dir.to_path_buf());
    }

    /// Agents started from now on run with soft and hard open-file limits of `n`.
    pub fn limit_open_files(&mut self, n: u64) {
        self.open_files = Some(n);
    }

    /// Node `i`'s agent, if one was started.
    pub fn agent(&self, i: usize) -> Option<&Agent> {
        self.nodes[i].agent.as_ref()
    }

    /// Node `i`'s agent, mutably.
    pub fn agent_mut(&mut self, i: usize) -> Option<&mut Agent> {
        self.nodes[i].agent.as_mut()
    }

    /// Whether node `i`'s agent process runs (exists and is not a zombie).
    pub fn agent_alive(&self, i: usize) -> bool {
        self.nodes[i]
            .agent
            .as_ref()
            .is_some_and(|a| crate::harness::util::alive(a.pid()))
    }

    /// Whether node `i`'s agent is SIGSTOPped.
    fn is_stopped(&self, i: usize) -> bool {
        self.nodes[i].stopped
    }

    fn signal_agent(&self, i: usize, sig: Signal) {
        self.nodes[i]
            .agent
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} has no agent"))
            .signal(sig);
    }

    /// SIGSTOP node `i`'s agent (a frozen agent; its database keeps running).
    pub fn stop_agent(&mut self, i: usize) {
        self.signal_agent(i, Signal::SIGSTOP);
        self.nodes[i].stopped = true;
    }

    /// SIGCONT node `i`'s agent.
    pub fn cont_agent(&mut self, i: usize) {
        self.signal_agent(i, Signal::SIGCONT);
        self.nodes[i].stopped = false;
    }

    /// A hung database: SIGSTOP node `i`'s database process group (the main process leads
    /// its own) and every descendant (PostgreSQL's backends each run in a session of their
    /// own), its agent alive. Returns the stopped pids for [`Agents::thaw_database`]; the
    /// main process first.
    pub fn freeze_database(&self, i: usize) -> Vec<i32> {
        let pid = self
            .main_pid(i)
            .unwrap_or_else(|| panic!("no database pid for {}\n{}", self.name(i), self.logs()));
        kill(Pid::from_raw(-pid), Signal::SIGSTOP)
            .unwrap_or_else(|e| panic!("SIGSTOP the process group {pid}: {e}"));
        let mut stopped = vec![pid];
        for child in handlers::exec::descendants(pid as u32) {
            let child = child as i32;
            if kill(Pid::from_raw(child), Signal::SIGSTOP).is_ok() {
                stopped.push(child);
            }
        }
        stopped
    }

    /// SIGCONT what [`Agents::freeze_database`] stopped (gone already when its agent
    /// killed it).
    pub fn thaw_database(&self, stopped: &[i32]) {
        if let Some(&group) = stopped.first() {
            let _ = kill(Pid::from_raw(-group), Signal::SIGCONT);
        }
        for &pid in stopped {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }

    /// SIGTERM node `i`'s agent (a graceful stop); does not wait.
    pub fn sigterm_agent(&self, i: usize) {
        self.signal_agent(i, Signal::SIGTERM);
    }

    /// SIGKILL node `i`'s agent (stopped or not) and wait for it; its database is the
    /// caller's to kill.
    pub fn kill_agent_process(&mut self, i: usize) {
        if let Some(agent) = self.nodes[i].agent.as_mut() {
            let _ = kill(Pid::from_raw(agent.pid()), Signal::SIGKILL);
            agent.wait_exit(Duration::from_secs(5));
        }
        self.nodes[i].stopped = false;
    }

    /// Waits up to `within` for node `i`'s agent to exit; whether it did.
    pub fn wait_agent_exit(&mut self, i: usize, within: Duration) -> bool {
        self.nodes[i]
            .agent
            .as_mut()
            .is_some_and(|a| a.wait_exit(within).is_some())
    }

    /// SIGTERM every agent (SIGCONT first if stopped), wait up to `grace` for each, SIGKILL
    /// what is left. The databases are the caller's to clean up.
    pub fn terminate_all(&mut self, grace: Duration) {
        for node in &mut self.nodes {
            if let Some(a) = node.agent.as_mut()
                && !a.has_exited()
            {
                if node.stopped {
                    let _ = kill(Pid::from_raw(a.pid()), Signal::SIGCONT);
                }
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGTERM);
            }
            node.stopped = false;
        }
        for node in &mut self.nodes {
            if let Some(a) = node.agent.as_mut()
                && !a.has_exited()
                && a.wait_exit(grace).is_none()
            {
                let _ = kill(Pid::from_raw(a.pid()), Signal::SIGKILL);
                a.wait_exit(Duration::from_secs(5));
            }
        }
    }

    // ---- logs ----

    /// Panics when any of `secrets` appears in any agent's log (across restarts).
    pub fn assert_no_secret_in_logs(&self, secrets: &[&str]) {
        for i in 0..self.nodes.len() {
            let log = self.agent_log(i);
            for secret in secrets {
                assert!(
                    !log.contains(secret),
                    "a password is in {}'s log ({} bytes)",
                    self.name(i),
                    log.len()
                );
            }
        }
    }

    /// Node `i`'s whole agent log, across restarts.
    pub fn agent_log(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let prev =
            std::fs::read_to_string(node.config.with_extension("prev.log")).unwrap_or_default();
        let now = node.agent.as_ref().map(Agent::log).unwrap_or_default();
        format!("{prev}{now}")
    }

    /// The last [`LOG_TAIL`] lines of every agent's log, noise left out, for failure
    /// messages. The full logs stay in the temp dir while the test runs; set `E2E_KEEP=1`
    /// to keep them afterwards.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let all = self.agent_log(i);
            let lines: Vec<&str> = all.lines().filter(|l| !is_noise(l)).collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL)..];
            let _ = write!(
                s,
                "\n===== {} (index {i}, {}, http {}, log {}; last {} of {} lines) =====\n{}\n",
                node.name,
                node.detail,
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
        let url = format!("{}{path}", self.agent_base(i));
        self.http.get(url).send().ok().map(|r| r.status().as_u16())
    }

    /// The body of `GET <path>` on node `i`'s agent (whatever the status code).
    fn get_text(&self, i: usize, path: &str) -> Option<String> {
        let url = format!("{}{path}", self.agent_base(i));
        self.http.get(url).send().ok().and_then(|r| r.text().ok())
    }

    /// The JSON body of `GET <path>` on node `i`'s agent (whatever the status code), `None`
    /// when it does not answer or the body is not JSON.
    pub fn get_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        serde_json::from_str(&self.get_text(i, path)?).ok()
    }

    /// Node `i`'s `/health` JSON (whatever the status code), `None` when it does not answer.
    pub fn health(&self, i: usize) -> Option<serde_json::Value> {
        serde_json::from_str(&self.get_text(i, "/health")?).ok()
    }

    /// Node `i`'s `/metrics` text (empty when it does not answer).
    pub fn metrics(&self, i: usize) -> String {
        self.get_text(i, "/metrics").unwrap_or_default()
    }

    /// Node `i`'s main process (its database) pid from `/health`'s `main_pid`; `None` when
    /// the agent is stopped or does not answer.
    pub fn main_pid(&self, i: usize) -> Option<i32> {
        if self.is_stopped(i) {
            return None;
        }
        self.health(i)
            .and_then(|h| h["main_pid"].as_i64())
            .and_then(|p| i32::try_from(p).ok())
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
    /// every agent's log on timeout, or at once when every agent has exited.
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
}

/// A duration in milliseconds, for agent YAML (`1500ms`).
pub fn yaml_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Names in `dir` starting with `prefix` (e.g. `data-1.aside-`).
pub fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps `dir` on disk when `E2E_KEEP` is set (called from the harnesses' `Drop`).
pub fn keep_if_asked(dir: &mut tempfile::TempDir) {
    if std::env::var_os("E2E_KEEP").is_some() {
        let kept = std::mem::replace(dir, tempfile::tempdir().expect("a placeholder temp dir"));
        eprintln!("E2E_KEEP: kept {}", kept.keep().display());
    }
}

/// Log lines that only repeat: successful health and position runs, debug output of the
/// etcd client (HTTP/2, tower), Redis retrying its placeholder master, MariaDB's aborted
/// connections, PostgreSQL standbys retrying and clients refused by a read-only server.
fn is_noise(line: &str) -> bool {
    const NOISE: [&str; 16] = [
        "DEBUG",
        "TRACE",
        "frame=",
        "Connection{peer",
        "updating from discover",
        "service.ready=",
        "idle connection",
        "started process=hook:position",
        "process=hook:position stream=\"stdout\"",
        "MASTER 127.0.0.1:1",
        "MASTER <-> REPLICA sync started",
        "Aborted connection",
        "could not connect to the primary server",
        "in a read-only transaction",
        "STATEMENT:",
        "cannot be changed without restarting",
    ];
    ((line.contains("process=health") || line.contains("handler=health"))
        && !line.contains("failure"))
        || (line.contains("SYNC") && line.contains("Connection refused"))
        || NOISE.iter().any(|n| line.contains(n))
}

/// `, bootstrap: { from_backup: …, migrate_from: … }` for a flow-style `cluster:` map, or
/// nothing when neither is set.
pub fn bootstrap_yaml(from_backup: Option<&str>, migrate_from: Option<&str>) -> String {
    let parts: Vec<String> = [("from_backup", from_backup), ("migrate_from", migrate_from)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(", bootstrap: {{ {} }}", parts.join(", "))
    }
}
