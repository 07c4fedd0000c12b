//! `bench backup-worker JOB.json`: one backup or one restore through the agent's code path
//! (the engine's tool → `backup::pipeline::store` → a repository; or `fetch` → the engine's
//! restore), in a process of its own so that its peak memory (`VmHWM`) is the pipeline's and
//! nothing else's. Runs on a two-thread tokio runtime, as the agent does on a two-core host.
//!
//! The job and the result are JSON files the parent writes and reads ([`Job`], [`Outcome`]);
//! the engine is rebuilt here from the server's `(dir, port)` ([`super::servers`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use backup::pipeline::{StoreOptions, StreamSummary, fetch, parse_identities, store};
use backup::repo::{BackupId, ClusterId, Repository, S3Config, StreamLocation};
use engines::backups::{BackupMethod, BackupSpec, RestoreSink, RestoreSpec, StreamPlan};
use engines::mariadb::MariadbEngine;
use engines::postgres::PostgresEngine;
use engines::{Engine, MainControl};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use super::servers::{Kind, mariadb_settings, pg_settings};

/// The one stream of a physical backup of either engine.
const STREAM: &str = "base";

/// Where a job stores to or restores from.
#[derive(Clone, Debug)]
pub enum Repo {
    /// A local directory.
    Local(PathBuf),
    /// The benchmark's SeaweedFS bucket.
    S3 {
        /// `http://127.0.0.1:<port>`.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The access key id.
        key: String,
        /// Its secret.
        secret: String,
    },
}

/// What the worker does.
#[derive(Clone, Debug)]
pub enum Op {
    /// Back up the server into the repository; the summary goes to `summary`.
    Store,
    /// Restore the stream described by `summary` into `target` (which must not exist).
    Restore {
        /// The directory to restore into.
        target: PathBuf,
    },
}

/// One job.
#[derive(Clone, Debug)]
pub struct Job {
    /// Store or restore.
    pub op: Op,
    /// Which engine's server.
    pub kind: Kind,
    /// The server's directory (settings are derived from it).
    pub dir: PathBuf,
    /// The server's port.
    pub port: u16,
    /// The repository.
    pub repo: Repo,
    /// The backup's id (unique per store).
    pub backup_id: String,
    /// The age identity file (`age-keygen -o`); the recipient is derived from it.
    pub key_file: PathBuf,
    /// zstd level.
    pub zstd_level: i32,
    /// zstd worker threads.
    pub zstd_threads: u32,
    /// The stream summary: written by a store, read by a restore.
    pub summary_file: PathBuf,
}

/// What a job measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Wall time of the operation inside the worker (tool start to tool verdict; restore
    /// start to a ready directory).
    pub seconds: f64,
    /// Plain bytes (the tool's stream).
    pub plain_bytes: u64,
    /// Stored bytes (compressed, encrypted).
    pub stored_bytes: u64,
    /// The worker's own peak RSS (`VmHWM`), bytes.
    pub peak_rss: u64,
}

impl Job {
    /// The job as JSON.
    pub fn to_json(&self) -> Value {
        let repo = match &self.repo {
            Repo::Local(p) => json!({"kind": "local", "path": p}),
            Repo::S3 {
                endpoint,
                bucket,
                key,
                secret,
            } => {
                json!({"kind": "s3", "endpoint": endpoint, "bucket": bucket, "key": key, "secret": secret})
            }
        };
        let (op, target) = match &self.op {
            Op::Store => ("store", None),
            Op::Restore { target } => ("restore", Some(target)),
        };
        json!({
            "op": op,
            "target": target,
            "engine": self.kind.as_str(),
            "dir": self.dir,
            "port": self.port,
            "repo": repo,
            "backup_id": self.backup_id,
            "key_file": self.key_file,
            "zstd_level": self.zstd_level,
            "zstd_threads": self.zstd_threads,
            "summary_file": self.summary_file,
        })
    }

    /// The job from JSON.
    pub fn from_json(v: &Value) -> Result<Job> {
        let s = |k: &str| -> Result<String> {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("job field {k}"))
        };
        let n = |k: &str| -> Result<u64> {
            v.get(k)
                .and_then(Value::as_u64)
                .with_context(|| format!("job field {k}"))
        };
        let r = v.get("repo").context("job field repo")?;
        let rs = |k: &str| -> Result<String> {
            r.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("job field repo.{k}"))
        };
        let repo = match rs("kind")?.as_str() {
            "local" => Repo::Local(rs("path")?.into()),
            "s3" => Repo::S3 {
                endpoint: rs("endpoint")?,
                bucket: rs("bucket")?,
                key: rs("key")?,
                secret: rs("secret")?,
            },
            other => bail!("unknown repository kind {other}"),
        };
        let op = match s("op")?.as_str() {
            "store" => Op::Store,
            "restore" => Op::Restore {
                target: s("target")?.into(),
            },
            other => bail!("unknown op {other}"),
        };
        Ok(Job {
            op,
            kind: Kind::parse(&s("engine")?).context("job field engine")?,
            dir: s("dir")?.into(),
            port: u16::try_from(n("port")?)?,
            repo,
            backup_id: s("backup_id")?,
            key_file: s("key_file")?.into(),
            zstd_level: i32::try_from(n("zstd_level")?)?,
            zstd_threads: u32::try_from(n("zstd_threads")?)?,
            summary_file: s("summary_file")?.into(),
        })
    }
}

impl Outcome {
    /// The outcome as JSON.
    pub fn to_json(self) -> Value {
        json!({
            "seconds": self.seconds,
            "plain_bytes": self.plain_bytes,
            "stored_bytes": self.stored_bytes,
            "peak_rss": self.peak_rss,
        })
    }

    /// The outcome from JSON.
    pub fn from_json(v: &Value) -> Result<Outcome> {
        let n = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .with_context(|| format!("result field {k}"))
        };
        Ok(Outcome {
            seconds: v
                .get("seconds")
                .and_then(Value::as_f64)
                .context("result field seconds")?,
            plain_bytes: n("plain_bytes")?,
            stored_bytes: n("stored_bytes")?,
            peak_rss: n("peak_rss")?,
        })
    }
}

/// The worker's entry point: runs the job in `job_file`, writes the outcome to
/// `result_file`.
pub fn main(job_file: &Path, result_file: &Path) -> Result<()> {
    let text = std::fs::read_to_string(job_file)
        .with_context(|| format!("read {}", job_file.display()))?;
    let job = Job::from_json(&serde_json::from_str(&text)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-worker")
        .enable_all()
        .build()?;
    let mut outcome = rt.block_on(run(&job))?;
    outcome.peak_rss = own_peak_rss()?;
    std::fs::write(result_file, outcome.to_json().to_string())
        .with_context(|| format!("write {}", result_file.display()))
}

/// This process's peak RSS (`VmHWM`), bytes.
fn own_peak_rss() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("parse VmHWM")?;
    Ok(kib * 1024)
}

/// The repository of a job.
fn repository(repo: &Repo) -> Result<Repository> {
    Ok(match repo {
        Repo::Local(path) => Repository::local("local", path)?,
        Repo::S3 {
            endpoint,
            bucket,
            key,
            secret,
        } => Repository::s3(
            "s3",
            &S3Config {
                bucket: bucket.clone(),
                prefix: "bench".to_owned(),
                endpoint: Some(endpoint.clone()),
                region: e2e::harness::s3::REGION.to_owned(),
                path_style: true,
                access_key_id: key.clone(),
                secret_access_key: secret.clone(),
            },
        )?,
    })
}

/// The engine of a job's server (not started here: it runs in the parent).
enum AnyEngine {
    Postgres(PostgresEngine),
    Mariadb(MariadbEngine),
}

async fn run(job: &Job) -> Result<Outcome> {
    let (control, _requests) = MainControl::channel();
    let engine = match job.kind {
        Kind::Postgres => AnyEngine::Postgres(PostgresEngine::new(
            pg_settings(&job.dir, job.port),
            control,
        )),
        Kind::Mariadb => AnyEngine::Mariadb(MariadbEngine::new(
            mariadb_settings(&job.dir, job.port),
            control,
        )),
    };
    match &engine {
        AnyEngine::Postgres(e) => run_with(job, e).await,
        AnyEngine::Mariadb(e) => run_with(job, e).await,
    }
}

async fn run_with<E: Engine>(job: &Job, engine: &E) -> Result<Outcome> {
    let key = std::fs::read_to_string(&job.key_file)
        .with_context(|| format!("read {}", job.key_file.display()))?;
    let identities = parse_identities(&key.lines().collect::<Vec<_>>())?;
    let recipients: Vec<_> = identities.iter().map(|i| i.to_public()).collect();
    let repo = repository(&job.repo)?;
    let location = StreamLocation {
        cluster: ClusterId {
            namespace: "bench".into(),
            project: "backup".into(),
            name: job.kind.as_str().into(),
        },
        backup_id: BackupId::parse(&job.backup_id)?,
        stream: STREAM.into(),
    };
    let started = Instant::now();
    match &job.op {
        Op::Store => {
            let spec = BackupSpec::default();
            let plans = engine
                .backup_streams(&spec)
                .await
                .map_err(|e| anyhow!("plan the backup: {e}"))?;
            let [plan] = plans.as_slice() else {
                bail!("expected one stream, the engine plans {plans:?}");
            };
            let mut tool = engine
                .start_backup_stream(&spec, plan)
                .await
                .map_err(|e| anyhow!("start {}: {e}", plan.name))?;
            let options = StoreOptions {
                zstd_level: job.zstd_level,
                zstd_threads: job.zstd_threads,
                ..StoreOptions::default()
            };
            let stored = store(
                &mut tool.output,
                std::slice::from_ref(&repo),
                &location,
                &recipients,
                &options,
            )
            .await;
            let done = tool.finish().await;
            let summary = stored.map_err(|e| anyhow!("store: {}", handlers::error_chain(&e)))?;
            done.map_err(|e| anyhow!("the tool: {e}"))?;
            let seconds = started.elapsed().as_secs_f64();
            std::fs::write(&job.summary_file, serde_json::to_string(&summary)?)?;
            Ok(Outcome {
                seconds,
                plain_bytes: summary.plain_bytes,
                stored_bytes: summary.stored_bytes,
                peak_rss: 0,
            })
        }
        Op::Restore { target } => {
            let summary: StreamSummary =
                serde_json::from_str(&std::fs::read_to_string(&job.summary_file)?)?;
            let spec = RestoreSpec {
                method: BackupMethod::Physical,
                target_dir: target.clone(),
                chain: vec![vec![StreamPlan {
                    name: STREAM.into(),
                    database: None,
                }]],
            };
            let mut restore = engine
                .begin_restore(&spec)
                .await
                .map_err(|e| anyhow!("begin the restore: {e}"))?;
            let RestoreSink { input, finisher } = restore
                .sink(0, STREAM)
                .await
                .map_err(|e| anyhow!("restore sink: {e}"))?;
            let mut input = input;
            let fetched = fetch(&repo, &location, &summary, &identities, &mut input).await;
            let _ = input.shutdown().await;
            drop(input);
            let consumed = tokio::time::timeout(Duration::from_secs(3600), finisher).await;
            let n = fetched.map_err(|e| anyhow!("fetch: {}", handlers::error_chain(&e)))?;
            consumed
                .map_err(|_| anyhow!("the restore tool did not finish"))?
                .map_err(|e| anyhow!("the restore tool: {e}"))?;
            restore
                .finish()
                .await
                .map_err(|e| anyhow!("finish the restore: {e}"))?;
            Ok(Outcome {
                seconds: started.elapsed().as_secs_f64(),
                plain_bytes: n,
                stored_bytes: summary.stored_bytes,
                peak_rss: 0,
            })
        }
    }
}
