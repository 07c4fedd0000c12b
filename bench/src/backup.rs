//! `bench backup`: backup and restore throughput of the agent's pipeline (SHA-256, zstd,
//! age, chunks) on a generated data set, beside the raw tool writing to /dev/null and, for
//! PostgreSQL, pgBackRest on the same data.
//!
//! Per engine, one real server ([`servers`]) is filled with `--size-mb` of rows; then each
//! run measures, one after the other in the same window:
//!
//! 1. the raw tool (`pg_basebackup -D - -Ft -X fetch` / `mariadb-backup --backup
//!    --stream=xbstream`, the engine's own arguments) with its output on /dev/null;
//! 2. the engine's backup stream through `backup::pipeline::store` into a local repository,
//! 3. the same into the S3 repository (SeaweedFS on loopback),
//! 4. a restore from the local repository into a new directory through the engine's
//!    restore (`begin_restore` + `fetch`, as `autopilot backup restore` does),
//!
//!    each of 2–4 in a worker process (`bench backup-worker`, [`worker`]) whose own peak RSS
//!    (`VmHWM`) is the pipeline's memory;
//! 5. PostgreSQL only: pgBackRest's full backup and restore ([`pgbackrest`]).
//!
//! Every process this benchmark starts goes through `handlers::ManagedChild`: the engines
//! use it, and its reaper owns every child of the process (a `std::process` wait would lose
//! its status to it). The S3 server starts first, before that reaper exists.

mod pgbackrest;
pub mod servers;
pub mod worker;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use e2e::harness::s3::S3Server;
use handlers::exec::RunOutcome;
use handlers::{ExecSpec, ManagedChild, RunAs};

use crate::proc::{TreeSampler, median};
use pgbackrest::PgBackRest;
use servers::{Kind, Server};
use worker::{Job, Op, Outcome, Repo};

/// zstd level, ours and pgBackRest's.
const ZSTD_LEVEL: i32 = 3;
/// zstd worker threads (the agent's default, `compression.threads: 2`), and pgBackRest's
/// `process-max`.
const ZSTD_THREADS: u32 = 2;
/// The longest any one measured command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(3600);
const MIB: f64 = 1024.0 * 1024.0;

/// What one measured command took.
#[derive(Clone, Copy, Debug, Default)]
pub struct Measured {
    /// Wall time.
    pub seconds: f64,
    /// The highest summed RSS of its process tree, sampled.
    pub tree_rss: u64,
}

/// One subject's figures over the runs (`None`: that run failed).
#[derive(Default)]
struct Series {
    /// Per run: wall seconds.
    seconds: Vec<Option<f64>>,
    /// Per run: this subject's throughput over the raw tool's, same run.
    vs_raw: Vec<f64>,
    /// Per run: stored / plain bytes.
    stored: Vec<f64>,
    /// Per run: plain bytes (for MB/s).
    plain: Vec<u64>,
    /// Per run: the pipeline process's own peak RSS (VmHWM).
    own_rss: Vec<u64>,
    /// Per run: the process tree's sampled peak RSS.
    tree_rss: Vec<u64>,
}

/// The subjects of one engine, in table order.
#[derive(Default)]
struct EngineFigures {
    raw: Series,
    local: Series,
    s3: Series,
    restore: Series,
    pgbr_backup: Series,
    pgbr_restore: Series,
    /// Size of the table on disk, rows.
    table: (u64, u64),
    /// What failed, once per kind of failure.
    failures: Vec<String>,
}

/// Runs the benchmark; the Markdown section.
pub fn run(size_mb: u64, runs: usize, engines: &[Kind]) -> Result<String> {
    let started = Instant::now();
    // First: its readiness probes wait on their children with std.
    let s3 = S3Server::start().context("start SeaweedFS (scripts/install-deps installs it)")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-backup")
        .enable_all()
        .build()?;
    let root = e2e::postgres::server::temp_dir("bench-backup-")?;
    let key_file = root.path().join("age.key");
    rt.block_on(run_ok(
        "age-keygen",
        ExecSpec::new(["age-keygen", "-o", &key_file.display().to_string()]),
    ))?;
    let mut all = Vec::new();
    for &kind in engines {
        eprintln!("bench backup: {}: starting the server", kind.title());
        let dir = root.path().join(kind.as_str());
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let mut server = Server::start(kind, &dir)?;
        let t = Instant::now();
        let table = server.generate(size_mb)?;
        eprintln!(
            "bench backup: {}: {:.0} MiB in {} rows generated in {:.0} s",
            kind.title(),
            table.0 as f64 / MIB,
            table.1,
            t.elapsed().as_secs_f64()
        );
        let bench = Bench {
            rt: &rt,
            s3: &s3,
            kind,
            dir: dir.clone(),
            port: server.port(),
            key_file: key_file.clone(),
        };
        let pgbr = match kind {
            Kind::Postgres => Some(PgBackRest::setup(
                &rt,
                &dir,
                &servers::pg_settings(&dir, server.port()).data_dir,
                server.port(),
                ZSTD_THREADS,
            )?),
            Kind::Mariadb => None,
        };
        let mut figures = EngineFigures {
            table,
            ..EngineFigures::default()
        };
        for i in 1..=runs {
            eprintln!("bench backup: {}: run {i}/{runs}", kind.title());
            bench.one_run(i, pgbr.as_ref(), &mut figures);
        }
        server.stop();
        all.push((kind, figures));
    }
    drop(s3);
    Ok(render(size_mb, runs, &all, started.elapsed()))
}

/// What the runs of one engine share.
struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    s3: &'a S3Server,
    kind: Kind,
    /// The server's directory (also holds the repositories and restore targets).
    dir: PathBuf,
    port: u16,
    key_file: PathBuf,
}

impl Bench<'_> {
    /// One run of every subject, recorded into `f`.
    fn one_run(&self, i: usize, pgbr: Option<&PgBackRest>, f: &mut EngineFigures) {
        let fail = |f: &mut EngineFigures, what: &str, e: anyhow::Error| {
            let line = format!("{what}: {e:#}");
            eprintln!("bench backup: {}: run {i}: {line}", self.kind.title());
            if !f.failures.iter().any(|l| l.starts_with(what)) {
                f.failures.push(line);
            }
        };
        let raw = self.rt.block_on(self.raw_tool(i));
        let local_repo = self.dir.join(format!("repo-local-{i}"));
        let summary_local = self.dir.join(format!("summary-local-{i}.json"));
        let local = self.worker(
            Op::Store,
            Repo::Local(local_repo.clone()),
            &summary_local,
            i,
        );
        let s3 = self.worker(
            Op::Store,
            Repo::S3 {
                endpoint: self.s3.endpoint(),
                bucket: self.s3.bucket().to_owned(),
                key: self.s3.access_key_id().to_owned(),
                secret: self.s3.secret_access_key().to_owned(),
            },
            &self.dir.join(format!("summary-s3-{i}.json")),
            i,
        );
        let target = self.dir.join(format!("restored-{i}"));
        let restore = match &local {
            Ok(_) => self.worker(
                Op::Restore {
                    target: target.clone(),
                },
                Repo::Local(local_repo.clone()),
                &summary_local,
                i,
            ),
            Err(_) => Err(anyhow::anyhow!("no local backup to restore")),
        };
        let _ = std::fs::remove_dir_all(&target);
        let _ = std::fs::remove_dir_all(&local_repo);
        let (pgbr_backup, pgbr_restore) = match pgbr {
            Some(p) => {
                let b = self.rt.block_on(p.backup()).and_then(|m| {
                    let sizes = self.rt.block_on(p.sizes())?;
                    Ok((m, sizes))
                });
                let target = self.dir.join(format!("pgbackrest-restored-{i}"));
                let r = match &b {
                    Ok(_) => self.rt.block_on(p.restore(&target)),
                    Err(_) => Err(anyhow::anyhow!("no pgBackRest backup to restore")),
                };
                let _ = std::fs::remove_dir_all(&target);
                (Some(b), Some(r))
            }
            None => (None, None),
        };

        // The plain size of this run's stream, for MB/s and for the raw tool's throughput.
        let plain = [&local, &s3]
            .iter()
            .find_map(|o| o.as_ref().ok().map(|(o, _)| o.plain_bytes));
        let raw_seconds = match raw {
            Ok(m) => {
                f.raw.seconds.push(Some(m.seconds));
                f.raw.tree_rss.push(m.tree_rss);
                f.raw.vs_raw.push(1.0);
                if let Some(p) = plain {
                    f.raw.plain.push(p);
                }
                Some(m.seconds)
            }
            Err(e) => {
                f.raw.seconds.push(None);
                fail(f, "raw tool", e);
                None
            }
        };
        let ours = |f: &mut EngineFigures, which: &str, o: Result<(Outcome, Measured)>| {
            let series = match which {
                "local" => &mut f.local,
                "S3" => &mut f.s3,
                _ => &mut f.restore,
            };
            match o {
                Ok((o, m)) => {
                    series.seconds.push(Some(o.seconds));
                    series.plain.push(o.plain_bytes);
                    series
                        .stored
                        .push(o.stored_bytes as f64 / o.plain_bytes.max(1) as f64);
                    series.own_rss.push(o.peak_rss);
                    series.tree_rss.push(m.tree_rss);
                    if let Some(r) = raw_seconds
                        && which != "restore"
                    {
                        series.vs_raw.push(r / o.seconds);
                    }
                }
                Err(e) => {
                    series.seconds.push(None);
                    fail(f, which, e);
                }
            }
        };
        ours(f, "local", local);
        ours(f, "S3", s3);
        ours(f, "restore", restore);
        if let Some(b) = pgbr_backup {
            match b {
                Ok((m, (_, stored))) => {
                    f.pgbr_backup.seconds.push(Some(m.seconds));
                    f.pgbr_backup.tree_rss.push(m.tree_rss);
                    if let Some(p) = plain {
                        f.pgbr_backup.plain.push(p);
                        f.pgbr_backup.stored.push(stored as f64 / p as f64);
                    }
                    if let Some(r) = raw_seconds {
                        f.pgbr_backup.vs_raw.push(r / m.seconds);
                    }
                }
                Err(e) => {
                    f.pgbr_backup.seconds.push(None);
                    fail(f, "pgBackRest backup", e);
                }
            }
        }
        if let Some(r) = pgbr_restore {
            match r {
                Ok(m) => {
                    f.pgbr_restore.seconds.push(Some(m.seconds));
                    f.pgbr_restore.tree_rss.push(m.tree_rss);
                    if let Some(p) = plain {
                        f.pgbr_restore.plain.push(p);
                    }
                }
                Err(e) => {
                    f.pgbr_restore.seconds.push(None);
                    fail(f, "pgBackRest restore", e);
                }
            }
        }
    }

    /// The raw tool, with the engine's arguments, its output on /dev/null.
    async fn raw_tool(&self, i: usize) -> Result<Measured> {
        let log = self.dir.join("raw-tool.log");
        match self.kind {
            Kind::Postgres => {
                let s = servers::pg_settings(&self.dir, self.port);
                let argv = [
                    s.bin_dir.join("pg_basebackup").display().to_string(),
                    "-h".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    self.port.to_string(),
                    "-U".into(),
                    s.superuser.user.clone(),
                    "--no-password".into(),
                    "-D".into(),
                    "-".into(),
                    "-F".into(),
                    "tar".into(),
                    "-X".into(),
                    "fetch".into(),
                    "--checkpoint=fast".into(),
                    "--label=raw".into(),
                ];
                let env = [("PGPASSWORD".to_owned(), s.superuser.password.clone())];
                measure(
                    "pg_basebackup",
                    argv.to_vec(),
                    Path::new("/dev/null"),
                    &log,
                    s.run_as,
                    &env,
                )
                .await
            }
            Kind::Mariadb => {
                let s = servers::mariadb_settings(&self.dir, self.port);
                let mysql = user("mysql")?;
                let work = self.dir.join(format!("raw-work-{i}"));
                std::fs::create_dir(&work)?;
                std::fs::create_dir(work.join("target"))?;
                give_to(&work, &mysql)?;
                give_to(&work.join("target"), &mysql)?;
                let cnf = work.join("client.cnf");
                std::fs::write(
                    &cnf,
                    format!(
                        "[client]\nuser={u}\npassword={p}\n[mariadb-backup]\nuser={u}\npassword={p}\n",
                        u = s.admin.user,
                        p = s.admin.password
                    ),
                )?;
                give_to(&cnf, &mysql)?;
                let argv = vec![
                    "/usr/bin/mariadb-backup".to_owned(),
                    format!("--defaults-extra-file={}", cnf.display()),
                    "--backup".into(),
                    "--stream=xbstream".into(),
                    format!("--target-dir={}", work.join("target").display()),
                    format!("--datadir={}", s.datadir.display()),
                    format!("--socket={}", s.socket().display()),
                    format!("--tmpdir={}", work.display()),
                    format!("--extra-lsndir={}", work.join("lsn").display()),
                ];
                let m = measure(
                    "mariadb-backup",
                    argv,
                    Path::new("/dev/null"),
                    &log,
                    Some(mysql),
                    &[],
                )
                .await;
                let _ = std::fs::remove_dir_all(&work);
                m
            }
        }
    }

    /// Runs one job in a worker process; what it reported, and its process tree's peak.
    fn worker(
        &self,
        op: Op,
        repo: Repo,
        summary_file: &Path,
        i: usize,
    ) -> Result<(Outcome, Measured)> {
        let backup_id =
            backup::repo::BackupId::generate(SystemTime::now()).context("generate a backup id")?;
        let name = match (&op, &repo) {
            (Op::Store, Repo::Local(_)) => "store-local",
            (Op::Store, Repo::S3 { .. }) => "store-s3",
            (Op::Restore { .. }, _) => "restore",
        };
        // A restore reads the id the store used.
        let id_file = summary_file.with_extension("id");
        let backup_id = match op {
            Op::Store => {
                std::fs::write(&id_file, backup_id.as_str())?;
                backup_id.to_string()
            }
            Op::Restore { .. } => std::fs::read_to_string(&id_file)?,
        };
        let job = Job {
            op,
            kind: self.kind,
            dir: self.dir.clone(),
            port: self.port,
            repo,
            backup_id,
            key_file: self.key_file.clone(),
            zstd_level: ZSTD_LEVEL,
            zstd_threads: ZSTD_THREADS,
            summary_file: summary_file.to_path_buf(),
        };
        let job_file = self.dir.join(format!("job-{name}-{i}.json"));
        let result_file = self.dir.join(format!("result-{name}-{i}.json"));
        std::fs::write(&job_file, job.to_json().to_string())?;
        let log = self.dir.join(format!("worker-{name}.log"));
        let argv = vec![
            std::env::current_exe()?.display().to_string(),
            "backup-worker".to_owned(),
            job_file.display().to_string(),
            result_file.display().to_string(),
        ];
        let m = self
            .rt
            .block_on(measure("bench-worker", argv, &log, &log, None, &[]))?;
        let text = std::fs::read_to_string(&result_file)
            .with_context(|| format!("read {}", result_file.display()))?;
        Ok((Outcome::from_json(&serde_json::from_str(&text)?)?, m))
    }
}

/// Runs `argv` (as `user`) with stdout to `out` and stderr appended to `err`, to its end;
/// its wall time and its process tree's sampled peak RSS. Fails on a non-zero exit with the
/// end of `err`.
pub async fn measure(
    name: &str,
    argv: Vec<String>,
    out: &Path,
    err: &Path,
    user: Option<RunAs>,
    env: &[(String, String)],
) -> Result<Measured> {
    // The shell execs the program: same pid, its output where we want it.
    let mut sh = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        format!(
            "exec \"$0\" \"$@\" >>'{}' 2>>'{}'",
            out.display(),
            err.display()
        ),
    ];
    sh.extend(argv);
    let spec = ExecSpec {
        user,
        ..ExecSpec::new(sh)
    };
    let before = std::fs::metadata(err).map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    let mut child = ManagedChild::spawn(name, &spec, env)?;
    let sampler = TreeSampler::start(i32::try_from(child.pid())?);
    let status = tokio::time::timeout(COMMAND_LIMIT, child.wait()).await;
    let seconds = started.elapsed().as_secs_f64();
    let tree_rss = sampler.stop();
    match status {
        Ok(st) if st.success() => Ok(Measured { seconds, tree_rss }),
        Ok(st) => {
            let log = std::fs::read(err).unwrap_or_default();
            let tail = String::from_utf8_lossy(&log[(before as usize).min(log.len())..]);
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "{name} exited with {st:?}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        }
        Err(_) => {
            child.stop_group(Duration::from_secs(5)).await;
            bail!("{name} did not finish within {COMMAND_LIMIT:?}")
        }
    }
}

/// Runs a short command to its end; fails unless it exits 0.
async fn run_ok(name: &str, spec: ExecSpec) -> Result<()> {
    let out = handlers::exec::run_capture(name, &spec, &[]).await?;
    match out.outcome {
        RunOutcome::Exited(st) if st.success() => Ok(()),
        other => bail!("{name}: {other:?}: {}", out.failure.unwrap_or_default()),
    }
}

/// The OS user `name`.
fn user(name: &str) -> Result<RunAs> {
    let u = nix::unistd::User::from_name(name)?
        .with_context(|| format!("the OS user {name} does not exist"))?;
    Ok(RunAs {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    })
}

/// The `postgres` OS user.
fn postgres_user() -> RunAs {
    e2e::postgres::server::os_user()
}

/// Makes `path` owned by `who`.
fn give_to(path: &Path, who: &RunAs) -> Result<()> {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(who.uid)),
        Some(nix::unistd::Gid::from_raw(who.gid)),
    )
    .with_context(|| format!("chown {}", path.display()))
}

/// `median (min–max)` of the runs that succeeded, with how many failed.
fn spread(values: &[Option<f64>], digits: usize) -> String {
    let mut ok: Vec<f64> = values.iter().flatten().copied().collect();
    let failed = values.len() - ok.len();
    if ok.is_empty() {
        return if failed > 0 {
            format!("failed ×{failed}")
        } else {
            "not measured".to_owned()
        };
    }
    let min = ok.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ok.iter().copied().fold(0.0, f64::max);
    let m = median(&mut ok);
    let mut cell = if ok.len() > 1 {
        format!("{m:.digits$} ({min:.digits$}–{max:.digits$})")
    } else {
        format!("{m:.digits$}")
    };
    if failed > 0 {
        write!(cell, ", failed ×{failed}").expect("write to a String");
    }
    cell
}

/// The median of `values`, or `None` when empty.
fn median_of(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    (!v.is_empty()).then(|| median(&mut v))
}

/// MB/s (MiB of plain data per second) per run that has both.
fn throughput(s: &Series) -> Vec<Option<f64>> {
    s.seconds
        .iter()
        .flatten()
        .zip(&s.plain)
        .map(|(t, p)| Some(*p as f64 / MIB / t))
        .collect()
}

fn mib_max(values: &[u64]) -> String {
    values.iter().max().map_or_else(
        || "not measured".to_owned(),
        |v| format!("{:.1}", *v as f64 / MIB),
    )
}

fn render(size_mb: u64, runs: usize, all: &[(Kind, EngineFigures)], took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Backup and restore: {size_mb} MiB generated per engine, {runs} run(s), subjects side by side in each run\n"
    );
    out.push_str(
        "| engine | subject | wall s, median (min–max) | MiB/s of plain data | throughput / raw tool | stored / plain | peak RSS, pipeline process (MiB, VmHWM) | peak RSS, process tree (MiB, sampled) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for (kind, f) in all {
        let rows: Vec<(&str, &Series, bool)> = {
            let mut r = vec![
                ("raw tool → /dev/null", &f.raw, false),
                ("ours → local repository", &f.local, true),
                ("ours → S3 repository (SeaweedFS)", &f.s3, true),
                ("ours: restore ← local repository", &f.restore, true),
            ];
            if *kind == Kind::Postgres {
                r.push((
                    "pgBackRest backup (local repository)",
                    &f.pgbr_backup,
                    false,
                ));
                r.push(("pgBackRest restore", &f.pgbr_restore, false));
            }
            r
        };
        for (name, s, own) in rows {
            let ratio = median_of(&s.vs_raw).map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
            let stored = median_of(&s.stored).map_or_else(|| "—".to_owned(), |r| format!("{r:.3}"));
            let own_rss = if own {
                mib_max(&s.own_rss)
            } else {
                "—".to_owned()
            };
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | {ratio} | {stored} | {own_rss} | {} |",
                kind.title(),
                spread(&s.seconds, 2),
                spread(&throughput(s), 0),
                mib_max(&s.tree_rss),
            );
        }
    }
    if let Some((_, f)) = all.iter().find(|(k, _)| *k == Kind::Postgres) {
        let med = |s: &Series| {
            let mut v: Vec<f64> = s.seconds.iter().flatten().copied().collect();
            (!v.is_empty()).then(|| median(&mut v))
        };
        let cmp = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
            (Some(o), Some(t)) => format!("{o:.2} s vs {t:.2} s: pgBackRest / ours = {:.2}", t / o),
            _ => "not measured".to_owned(),
        };
        let _ = writeln!(
            out,
            "\nPostgreSQL, ours vs pgBackRest (medians; target: ours no slower, ratio ≥ 1): backup to a local repository {}; restore from it {}.",
            cmp(med(&f.local), med(&f.pgbr_backup)),
            cmp(med(&f.restore), med(&f.pgbr_restore)),
        );
    }
    let backups: Vec<String> = all
        .iter()
        .flat_map(|(kind, f)| {
            [("local", &f.local), ("S3", &f.s3)].map(|(to, s)| {
                let ratio =
                    median_of(&s.vs_raw).map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"));
                format!(
                    "{} → {to} {ratio} at {} MiB",
                    kind.title(),
                    mib_max(&s.own_rss)
                )
            })
        })
        .collect();
    let _ = writeln!(
        out,
        "\nTargets: backup throughput ≥ 0.9 × the raw tool's, and the pipeline process under 100 MiB during a backup \
         whatever the data size; measured (throughput / raw tool at peak VmHWM): {}.",
        backups.join("; ")
    );
    out.push('\n');
    for (kind, f) in all {
        let _ = writeln!(
            out,
            "{}: table `bench` {:.0} MiB on disk, {} rows; the tool's stream compresses to {} of its size (zstd 3 + age, ours).",
            kind.title(),
            f.table.0 as f64 / MIB,
            f.table.1,
            median_of(&f.local.stored)
                .or_else(|| median_of(&f.s3.stored))
                .map_or_else(
                    || "(not measured)".to_owned(),
                    |r| format!("{:.0} %", r * 100.0)
                ),
        );
        for line in &f.failures {
            let _ = writeln!(out, "{}: failed: {line}", kind.title());
        }
    }
    let _ = write!(
        out,
        "\nSettings: ours = the engine's backup stream (PostgreSQL `pg_basebackup -D - -F tar -X fetch --checkpoint=fast`; \
         MariaDB `mariadb-backup --backup --stream=xbstream`) through `backup::pipeline::store`: SHA-256, zstd level {ZSTD_LEVEL} \
         with {ZSTD_THREADS} worker threads (the agent's default), age (X25519) encryption, 64 MiB chunks, every chunk re-read \
         and hash-checked after upload; run in a worker process (`bench backup-worker`) on a 2-thread tokio runtime, \
         whose own VmHWM is the \"pipeline process\" column (the tool and, on restore, `tar`/`mbstream`/`mariadb-backup --prepare` \
         are separate processes, counted in the process-tree column, sampled every {} ms). Restore = fetch (chunk SHA-256, \
         age, zstd, plain SHA-256) into the engine's restore (`tar -x` / `mbstream -x` + `mariadb-backup --prepare`) until \
         the directory is ready; the restored server is not started. The raw tool runs with the engine's arguments, stdout on \
         /dev/null; its MiB/s uses our stream's size of the same run. \
         pgBackRest 2.45 (Debian): `backup --type=full` into a local repository with `compress-type=zst`, \
         `compress-level={ZSTD_LEVEL}`, `process-max={ZSTD_THREADS}`, `repo1-cipher-type=aes-256-cbc`, `start-fast=y`, and, \
         since WAL archiving is not set up, `archive-check=n` + `archive-mode-check=n` (its backup then holds no WAL; ours \
         carries the WAL it needs); `restore` into a new directory; as `postgres` over the Unix socket; stored / plain \
         = its repository size over our stream's size. Data: rows of 512 random bytes beside 512 bytes of a repeated MD5 \
         (PostgreSQL columns `STORAGE PLAIN`, no TOAST compression), warm page cache. Measured on a shared 2-core machine \
         (others' tests ran meanwhile): figures are indicative. This run took {:.0} min.\n\n\
         Reproduce: `cargo build --release -p bench -p autopilot --bins && target/release/bench backup --size-mb {size_mb} --runs {runs}` \
         (root; needs pgbackrest, mariadb-backup, postgresql-15, SeaweedFS: `scripts/install-deps`).\n",
        TreeSampler::EVERY.as_millis(),
        took.as_secs_f64() / 60.0,
    );
    out
}
