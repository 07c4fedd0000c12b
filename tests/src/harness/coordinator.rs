//! A real `coordinator serve` for tests, as a separate process on `127.0.0.1:0` (the port is
//! read from its `listening on <url>` line, so no port can be stolen), plus small HTTP and
//! `autopilotctl` helpers. Killed on `Drop`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::harness::util::{signal_and_wait, system_bin, workspace_bin};

/// The admin token every test coordinator starts with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The coordinator's default `--token-cache`: every coordinator refuses a revoked token
/// within this.
pub const TOKEN_CACHE: Duration = Duration::from_secs(1);

/// How long a start may take.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on every HTTP request of the helpers.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running coordinator.
pub struct Coordinator {
    /// The process; `None` once it was stopped or killed.
    child: Option<Child>,
    /// `http://127.0.0.1:<port>` (or https).
    url: String,
    /// stderr (the log).
    log: PathBuf,
    /// Owns the log; removed on drop.
    _dir: tempfile::TempDir,
}

impl Coordinator {
    /// `coordinator serve` against `etcd` with [`ADMIN_TOKEN`] and `extra` flags.
    pub fn start(etcd: &str, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_in(Command::new(workspace_bin("coordinator")), etcd, extra)
    }

    /// [`Coordinator::start`] with extra environment variables (secrets given by variable).
    pub fn start_env(etcd: &str, extra: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(workspace_bin("coordinator"));
        cmd.envs(env.iter().copied());
        Self::start_in(cmd, etcd, extra)
    }

    /// [`Coordinator::start`] under `prlimit --nofile=<n>:<n>` (soft and hard open-file
    /// limits of `n`, which the coordinator cannot raise): connection flood tests.
    pub fn start_with_open_files(etcd: &str, extra: &[&str], n: u64) -> anyhow::Result<Self> {
        let mut cmd = Command::new(system_bin("/usr/bin/prlimit", "util-linux"));
        cmd.arg(format!("--nofile={n}:{n}"))
            .arg("--")
            .arg(workspace_bin("coordinator"));
        Self::start_in(cmd, etcd, extra)
    }

    fn start_in(mut cmd: Command, etcd: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("coordinator-")
            .tempdir()
            .context("create the coordinator's temp dir")?;
        let log = dir.path().join("coordinator.log");
        let file = std::fs::File::create(&log).context("create the coordinator log")?;
        let mut child = cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--etcd-endpoints", etcd])
            .args(extra)
            .env("AUTOPILOT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file))
            .spawn()
            .context("spawn the coordinator")?;
        let stdout = child.stdout.take().context("the coordinator's stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {} // keep the pipe drained
        });
        let mut me = Self {
            child: Some(child),
            url: String::new(),
            log,
            _dir: dir,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => match line.strip_prefix("listening on ") {
                Some(url) => me.url = url.to_owned(),
                None => bail!("unexpected first line {line:?}; log:\n{}", me.log()),
            },
            Err(_) => bail!(
                "the coordinator did not report its address within {START_TIMEOUT:?}; log:\n{}",
                me.log()
            ),
        }
        Ok(me)
    }

    /// Base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(10));
    }

    /// SIGTERM; whether it exited within `grace`.
    pub fn stop(&mut self, grace: Duration) -> bool {
        signal_and_wait(&mut self.child, Signal::SIGTERM, grace)
    }

    /// A client for this coordinator with `token`.
    pub fn api(&self, token: Option<&str>) -> Api {
        Api::new(&self.url, token)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client for one coordinator and token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    /// A client for `base` sending `token`.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        Self {
            http: reqwest::blocking::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("build the HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
        }
    }

    /// `method path` with a raw body; (status, JSON answer or `Value::Null`).
    pub fn raw(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut r = self.http.request(m, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let resp = r.send().unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `method path` with a JSON body.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.raw(
            method,
            path,
            body.map(|b| serde_json::to_vec(b).expect("json")),
        )
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    /// Issues a token with the admin token; returns the token string.
    pub fn issue(&self, name: &str, role: &str, namespaces: &[&str]) -> String {
        let (s, v) = self.call(
            "POST",
            "/v1/tokens",
            Some(&serde_json::json!({"name": name, "role": role, "namespaces": namespaces})),
        );
        assert_eq!(s, 201, "issue {role} token: {v}");
        v["token"].as_str().expect("token").to_owned()
    }
}

/// `autopilotctl` with `args` and `env`: (exit code, stdout, stderr). Bounded by `timeout`.
pub fn ctl(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (i32, String, String) {
    let mut cmd = Command::new(workspace_bin("autopilotctl"));
    cmd.args(args)
        .env_remove("AUTOPILOT_URL")
        .env_remove("AUTOPILOT_TOKEN")
        .env_remove("AUTOPILOT_TOKEN_FILE")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn autopilotctl");
    let (tx, rx) = mpsc::channel();
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s.expect("wait autopilotctl"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
                Signal::SIGKILL,
            );
            panic!("autopilotctl {args:?} did not finish within {timeout:?}");
        }
    };
    let (o, e) = (t1.join().unwrap_or_default(), t2.join().unwrap_or_default());
    (status.code().unwrap_or(-1), o, e)
}

/// Puts a minimal but valid `nodes/<id>` document (and `primary` when `primary`) for a fake
/// cluster, so API tests need no agents. `offset` is the node's replication offset.
pub fn seed_node(
    etcd: &crate::harness::etcd::EtcdServer,
    cluster: &str,
    id: &str,
    primary: bool,
    offset: u64,
) {
    let role = if primary { "primary" } else { "replica" };
    let node = serde_json::json!({
        "schema": 1, "id": id, "name": id, "hostname": "h", "ip_address": "127.0.0.1",
        "port": 1, "role": role, "status": "online", "health": "healthy",
        "replication": {"position": {"epoch": 1, "offset": offset}}, "priority": 1,
        "eligible": true, "version": "test", "last_updated": "2026-01-01T00:00:00Z", "ttlseconds": 10
    });
    etcd.etcdctl(&[
        "put",
        &format!("/autopilot/{cluster}/nodes/{id}"),
        &node.to_string(),
    ])
    .expect("put a node");
    if primary {
        let p = serde_json::json!({
            "schema": 1, "id": id, "name": id, "hostname": "h", "ip_address": "127.0.0.1",
            "port": 1, "status": "online", "version": "test",
            "replication": {"position": {"epoch": 1, "offset": offset}},
            "last_updated": "2026-01-01T00:00:00Z", "ttlseconds": 10, "lease": "0"
        });
        etcd.etcdctl(&[
            "put",
            &format!("/autopilot/{cluster}/primary"),
            &p.to_string(),
        ])
        .expect("put the primary");
    }
}

/// One server-sent event: (id, type, data as JSON).
pub type Sse = (String, String, Value);

/// Opens `path` (an event stream) and forwards its events into the returned channel for up to
/// `within`; the reader thread ends when the stream does or the time is up.
pub fn sse(base: &str, token: &str, path: &str, within: Duration) -> (u16, mpsc::Receiver<Sse>) {
    let http = reqwest::blocking::Client::builder()
        .timeout(within)
        .build()
        .expect("build the HTTP client");
    let resp = http
        .get(format!("{}{path}", base.trim_end_matches('/')))
        .bearer_auth(token)
        .send()
        .expect("open the event stream");
    let status = resp.status().as_u16();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(resp);
        let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if line.is_empty() {
                if !data.is_empty() {
                    let v = serde_json::from_str(&data).unwrap_or(Value::Null);
                    if tx.send((id.clone(), kind.clone(), v)).is_err() {
                        return;
                    }
                }
                id.clear();
                kind.clear();
                data.clear();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    });
    (status, rx)
}

/// Waits up to `within` for an event matching `want`; every event seen is returned too.
pub fn wait_event(
    rx: &mpsc::Receiver<Sse>,
    within: Duration,
    want: impl Fn(&Sse) -> bool,
) -> (Option<Sse>, Vec<Sse>) {
    let deadline = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) => {
                let hit = want(&e);
                seen.push(e.clone());
                if hit {
                    return (Some(e), seen);
                }
            }
            Err(_) => return (None, seen),
        }
    }
}

/// The id part of a token string `apt_<id>_<secret>`.
pub fn token_id(token: &str) -> String {
    token
        .strip_prefix("apt_")
        .and_then(|r| r.split('_').next())
        .unwrap_or("")
        .to_owned()
}
