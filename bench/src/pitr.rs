//! `bench pitr`: continuous archiving and point-in-time recovery (issue 18) on PostgreSQL and
//! MariaDB clusters under the `autopilot` agents (the e2e harness's clusters), archiving
//! into a real S3 server on loopback (SeaweedFS, one per engine). Per engine, two clusters:
//!
//! 1. **Archive** (3 nodes, synchronous replication, `backup.archive.interval: 2s`, a base
//!    backup taken first): the steady writer ([`writer`]) commits a row every 20 ms and
//!    records each commit's position in the change stream.
//!    - **RPO**: every 500 ms the archive is listed and the age of the newest archived
//!      change is sampled: now − the acknowledgement time of the newest commit the archive
//!      covers ([`db::Coverage`]: PostgreSQL, a complete segment that ends at or past the
//!      commit's LSN; MariaDB, the binary logs chained from the base backup reach the
//!      commit's GTID). p50, p99 and max over `--seconds`.
//!    - **Archiving after a failover** (`--runs` times): kill -9 of the primary's node (agent
//!      and database) with the writer running, then from the kill until the archive covers
//!      the first commit the new primary acknowledged (PostgreSQL: a segment of the new
//!      timeline; MariaDB: a binary log of the new primary). The killed node's agent is then
//!      started again and the run ends at full redundancy.
//! 2. **Restore and seeding** (2 nodes, asynchronous, only the first started at first): the
//!    data set of `bench backup` (rows of 512 random bytes beside 512 bytes of a repeated
//!    MD5) grown to `--base-mb`, a base backup, `--changes-mb` more, archived.
//!    - **Restore**: `autopilot backup restore --latest --target-dir …` (the CLI, with node
//!      1's configuration), timed; the archived files it replayed, from its JSON output.
//!    - **Seeding**: a fresh base backup of everything and a little more written and
//!      archived; then the second node joins with `engine.seed: backup` (restores the
//!      backup and the archive, then replicates), and again, wiped, with `engine.seed:
//!      primary` (clones the primary). Each: from its agent's start until it replicates from
//!      the primary and has applied the primary's position, and the bytes the primary's
//!      database and agent ports sent meanwhile ([`traffic`]).
//!
//! The clusters' and the harness's failures are panics: each part is run under
//! `catch_unwind` and a failure is a note in the section, never an abort of the others.

mod db;
mod traffic;
mod writer;

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup::archive::binlog::Binlog;
use backup::archive::wal;
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;

use crate::backup::servers::Kind;
use crate::proc::median;
use crate::report::runs_cells;
use db::{Archive, Db, INTERVAL, backup_yaml, gtid_seq, key_pair};
use traffic::Traffic;
use writer::{Writer, written_elsewhere};

const MIB: u64 = 1024 * 1024;
/// How often the RPO is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// The longest a backup of the data set may take.
const BACKUP_LIMIT: Duration = Duration::from_secs(1800);
/// The longest the archive may take to catch up with the primary.
const ARCHIVE_LIMIT: Duration = Duration::from_secs(1800);
/// The longest the archive may take to hold a change written after a failover.
const RESUME_LIMIT: Duration = Duration::from_secs(180);
/// The longest a cluster may take back to full redundancy.
const REDUNDANCY_LIMIT: Duration = Duration::from_secs(300);
/// The longest a seeded or cloned node may take to replicate and catch up.
const SEED_LIMIT: Duration = Duration::from_secs(1800);

/// A part of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// RPO under the steady writer.
    Rpo,
    /// Archiving resumed after a failover.
    Failover,
    /// Point-in-time restore time.
    Restore,
    /// Seeding from the repository vs cloning the primary.
    Seed,
}

impl Part {
    /// `rpo`, `failover`, `restore` or `seed`.
    pub fn parse(s: &str) -> Option<Part> {
        match s.trim() {
            "rpo" => Some(Part::Rpo),
            "failover" => Some(Part::Failover),
            "restore" => Some(Part::Restore),
            "seed" => Some(Part::Seed),
            _ => None,
        }
    }

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Rpo => "rpo",
            Part::Failover => "failover",
            Part::Restore => "restore",
            Part::Seed => "seed",
        }
    }

    /// Every part, in order.
    pub const ALL: [Part; 4] = [Part::Rpo, Part::Failover, Part::Restore, Part::Seed];
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Seconds of RPO sampling.
    pub seconds: u64,
    /// Failovers per engine.
    pub runs: usize,
    /// MiB of rows in the restore's base backup.
    pub base_mb: u64,
    /// MiB of rows after it.
    pub changes_mb: u64,
    /// Engines, in order.
    pub engines: Vec<Kind>,
    /// Parts.
    pub parts: Vec<Part>,
}

impl Options {
    /// The defaults: 60 s, 3 failovers, 2048 + 1024 MiB.
    pub const DEFAULT: (u64, usize, u64, u64) = (60, 3, 2048, 1024);
    /// `--quick`: 10 s, 1 failover, 64 + 32 MiB.
    pub const QUICK: (u64, usize, u64, u64) = (10, 1, 64, 32);

    fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// RPO samples.
struct Rpo {
    /// Seconds, one per sample.
    samples: Vec<f64>,
    /// Samples at which the archive could not be listed or covered none of the writer's
    /// commits.
    misses: usize,
    /// The writer's commits while sampling.
    commits: usize,
}

/// One failover run.
struct Resume {
    /// Kill → the new primary acknowledged its first commit.
    first_write: Option<f64>,
    /// Kill → the archive covers that commit.
    archived: f64,
}

/// The restore.
struct Restore {
    /// The table after the base data set and after the changes, bytes on disk.
    base_bytes: u64,
    changes_bytes: u64,
    /// The base backup: request → done (s), stored bytes.
    backup_seconds: f64,
    backup_stored: u64,
    /// Archived files replayed, their stored bytes and, when known, their plain bytes.
    files: usize,
    stored: u64,
    plain: Option<u64>,
    /// The CLI's wall time and its own figure.
    wall: f64,
    cli_seconds: Option<f64>,
}

/// One joining node.
struct Seed {
    /// `engine.seed`.
    mode: &'static str,
    /// Its agent's start → replicating and caught up (s).
    seconds: f64,
    /// Bytes the primary's ports sent, or why they could not be counted.
    bytes: std::result::Result<u64, String>,
    /// What its agent's log says it did.
    path: &'static str,
}

/// One engine's figures.
#[derive(Default)]
struct Figures {
    rpo: Option<Rpo>,
    /// Per run; `None`: that run failed.
    failovers: Vec<Option<Resume>>,
    /// The writer's attempts and commits over the archive cluster's life.
    writes: Option<(u64, usize)>,
    restore: Option<Restore>,
    /// The table the seeded nodes copy, bytes on disk.
    seed_bytes: Option<u64>,
    seeds: Vec<Seed>,
    notes: Vec<String>,
}

/// Runs the benchmark; the Markdown section.
pub fn run(o: &Options) -> Result<String> {
    let began = Instant::now();
    let mut all = Vec::new();
    for &kind in &o.engines {
        let f = engine(kind, o, began);
        all.push((kind, f));
    }
    Ok(render(o, &all, began.elapsed()))
}

/// Progress on stderr.
fn say(began: Instant, kind: Kind, what: &str) {
    eprintln!(
        "[{:>5.0} s] bench pitr: {}: {what}",
        began.elapsed().as_secs_f64(),
        kind.title()
    );
}

/// Runs `f`, a failure (error or panic) as a note.
fn guarded(notes: &mut Vec<String>, what: &str, f: impl FnOnce() -> Result<()>) {
    let line = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("{what}: {e:#}"),
        Err(p) => format!("{what}: {}", crate::report::panic_line(p.as_ref())),
    };
    eprintln!("bench pitr: {line}");
    notes.push(line.lines().next().unwrap_or_default().to_owned());
}

fn engine(kind: Kind, o: &Options, began: Instant) -> Figures {
    let mut f = Figures::default();
    say(began, kind, "starting SeaweedFS");
    let s3 = match S3Server::start() {
        Ok(s) => s,
        Err(e) => {
            f.notes.push(format!(
                "S3 server: {e:#} (scripts/install-deps installs SeaweedFS)"
            ));
            return f;
        }
    };
    let keys = match tempfile::Builder::new()
        .prefix("bench-pitr-keys-")
        .tempdir()
    {
        Ok(k) => k,
        Err(e) => {
            f.notes.push(format!("temp dir: {e}"));
            return f;
        }
    };
    let recipient = match key_pair(keys.path()) {
        Ok(r) => r,
        Err(e) => {
            f.notes.push(format!("age key: {e:#}"));
            return f;
        }
    };
    let ctx = Ctx {
        kind,
        o,
        began,
        s3: &s3,
        keys: keys.path(),
        recipient: &recipient,
    };
    if o.has(Part::Rpo) || o.has(Part::Failover) {
        let mut notes = Vec::new();
        guarded(&mut notes, "archive cluster", || {
            ctx.archive_cluster(&mut f)
        });
        f.notes.extend(notes);
    }
    if o.has(Part::Restore) || o.has(Part::Seed) {
        let mut notes = Vec::new();
        guarded(&mut notes, "restore cluster", || {
            ctx.restore_cluster(&mut f)
        });
        f.notes.extend(notes);
    }
    f
}

/// What one engine's measurements share.
struct Ctx<'a> {
    kind: Kind,
    o: &'a Options,
    began: Instant,
    s3: &'a S3Server,
    /// `key.txt` (the age identity), the S3 credentials' files.
    keys: &'a Path,
    recipient: &'a str,
}

impl Ctx<'_> {
    fn say(&self, what: &str) {
        say(self.began, self.kind, what);
    }

    /// Part 1: the 3-node cluster, its base backup, the writer; RPO, then the failovers.
    fn archive_cluster(&self, f: &mut Figures) -> Result<()> {
        let prefix = format!("bench-pitr-{}-archive", self.kind.as_str());
        let yaml = backup_yaml(self.keys, self.s3, &prefix, self.recipient)?;
        self.say("archive cluster: starting 3 nodes");
        let mut db = Db::create(self.kind, 3, "sync", yaml)?;
        for i in 0..db.len() {
            db.start_agent(i);
        }
        let p = db.settle();
        let (base, _) = db.backup_now("bench-pitr-base", BACKUP_LIMIT)?;
        let base_pos = base["position"].as_str().and_then(gtid_seq);
        let archive = Archive::open(self.s3, &prefix, &db)?;
        let w = Writer::start(db.writer_target(), p);
        if self.o.has(Part::Rpo) {
            self.say(&format!("RPO: {} s under the writer", self.o.seconds));
            let mut notes = Vec::new();
            guarded(&mut notes, "RPO", || {
                f.rpo = Some(rpo(&w, &archive, base_pos, self.o.seconds)?);
                Ok(())
            });
            f.notes.extend(notes);
        }
        if self.o.has(Part::Failover) {
            for r in 1..=self.o.runs {
                self.say(&format!("failover {r}/{}", self.o.runs));
                let mut notes = Vec::new();
                let mut run = None;
                guarded(&mut notes, &format!("failover {r}"), || {
                    let x = failover(&mut db, &w, &archive, base_pos)?;
                    eprintln!(
                        "          first write after {:?} s, archived after {:.2} s",
                        x.first_write, x.archived
                    );
                    run = Some(x);
                    Ok(())
                });
                let failed = run.is_none();
                f.failovers.push(run);
                f.notes.extend(notes);
                if failed {
                    // Not back at full redundancy: the next runs would measure that.
                    break;
                }
            }
        }
        let (attempts, commits) = w.stop();
        f.writes = Some((attempts, commits.len()));
        Ok(())
    }

    /// Part 2: the data set, its base backup and the changes; the restore, then seeding.
    fn restore_cluster(&self, f: &mut Figures) -> Result<()> {
        let prefix = format!("bench-pitr-{}-restore", self.kind.as_str());
        let yaml = backup_yaml(self.keys, self.s3, &prefix, self.recipient)?;
        self.say("restore cluster: starting its first node");
        let mut db = Db::create(self.kind, 2, "async", yaml)?;
        db.start_agent(0);
        let p = db.wait_primary(Duration::from_secs(120));
        eventually(Duration::from_secs(60), Duration::from_millis(300), || {
            db.position(p).ok()
        })
        .context("the primary does not answer")?;
        let archive = Archive::open(self.s3, &prefix, &db)?;
        f.notes.extend(db.prepare_load(p)?);
        let mut next = 1;
        let t = Instant::now();
        let base_bytes = db.grow_to(p, &mut next, self.o.base_mb * MIB)?;
        self.say(&format!(
            "{} MiB generated in {:.0} s",
            base_bytes / MIB,
            t.elapsed().as_secs_f64()
        ));
        let backup = if self.o.has(Part::Restore) {
            self.say("base backup");
            Some(db.backup_now("bench-pitr-base", BACKUP_LIMIT)?)
        } else {
            None
        };
        let t = Instant::now();
        let all_bytes = db.grow_to(p, &mut next, base_bytes + self.o.changes_mb * MIB)?;
        self.say(&format!(
            "{} MiB of changes generated in {:.0} s",
            (all_bytes - base_bytes) / MIB,
            t.elapsed().as_secs_f64()
        ));
        if let Some((record, backup_seconds)) = backup {
            let mut notes = Vec::new();
            guarded(&mut notes, "restore", || {
                db.wait_archived(p, &archive, ARCHIVE_LIMIT)?;
                self.say("restore --latest");
                let mut r = self.restore(&db, p, &archive)?;
                r.base_bytes = base_bytes;
                r.changes_bytes = all_bytes - base_bytes;
                r.backup_seconds = backup_seconds;
                r.backup_stored = record["size_stored"].as_u64().unwrap_or(0);
                eprintln!("          {:.1} s, {} archived files", r.wall, r.files);
                f.restore = Some(r);
                Ok(())
            });
            f.notes.extend(notes);
        }
        if self.o.has(Part::Seed) {
            self.say("a recent base backup for the seeding");
            db.backup_now("bench-pitr-recent", BACKUP_LIMIT)?;
            // A little more after it, archived: the seeded node replays an archive too.
            let size = db.table_bytes(p)?;
            let more = (self.o.changes_mb * MIB / 32).max(MIB);
            f.seed_bytes = Some(db.grow_to(p, &mut next, size + more)?);
            db.wait_archived(p, &archive, ARCHIVE_LIMIT)?;
            let r = 1 - p;
            for (k, mode) in ["backup", "primary"].into_iter().enumerate() {
                self.say(&format!(
                    "node {} joins with engine.seed: {mode}",
                    db.name(r)
                ));
                let mut notes = Vec::new();
                guarded(&mut notes, &format!("seed: {mode}"), || {
                    let s = seed(&mut db, p, r, mode, k > 0)?;
                    eprintln!(
                        "          {:.1} s, {:?} bytes from the primary, {}",
                        s.seconds, s.bytes, s.path
                    );
                    f.seeds.push(s);
                    Ok(())
                });
                f.notes.extend(notes);
            }
        }
        Ok(())
    }

    /// `autopilot backup restore --latest` into a new directory, timed; what it replayed.
    fn restore(&self, db: &Db, p: usize, archive: &Archive) -> Result<Restore> {
        let target = db.dir().join("pitr-restore");
        let key = self.keys.join("key.txt").display().to_string();
        let target_s = target.display().to_string();
        let t = Instant::now();
        let (code, out, err) = e2e::harness::backup::cli(
            db,
            db.dir(),
            &[
                "restore",
                "--repo",
                "s3",
                "--identity",
                &key,
                "--target-dir",
                &target_s,
                "--latest",
                "-o",
                "json",
            ],
        );
        let wall = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&target);
        if code != 0 {
            let text = format!("{out}{err}");
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            bail!(
                "autopilot backup restore --latest exited with {code}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        let done: serde_json::Value =
            serde_json::from_str(out.trim()).context("parse the restore's JSON output")?;
        let (Some(first), Some(last)) = (
            done["first_segment"].as_str(),
            done["last_segment"].as_str(),
        ) else {
            bail!("the restore replayed no archived file: {done}");
        };
        let files = archive.list()?;
        let replayed: Vec<_> = files
            .iter()
            .filter(|f| f.name.as_str() >= first && f.name.as_str() <= last)
            .filter(|f| match self.kind {
                Kind::Postgres => matches!(wal::parse(&f.name), Some(wal::WalFile::Segment { .. })),
                Kind::Mariadb => Binlog::parse(&f.name).is_some_and(|b| !b.superseded),
            })
            .collect();
        let plain = match self.kind {
            Kind::Postgres => Some(replayed.len() as u64 * wal::SEGMENT_BYTES),
            Kind::Mariadb => {
                let sizes = db.binlog_sizes(p);
                replayed
                    .iter()
                    .map(|f| Binlog::parse(&f.name).and_then(|b| sizes.get(&b.file).copied()))
                    .sum::<Option<u64>>()
            }
        };
        Ok(Restore {
            base_bytes: 0,
            changes_bytes: 0,
            backup_seconds: 0.0,
            backup_stored: 0,
            files: replayed.len(),
            stored: replayed.iter().map(|f| f.stored_bytes).sum(),
            plain,
            wall,
            cli_seconds: done["seconds"].as_f64(),
        })
    }
}

/// Samples the RPO every [`SAMPLE_EVERY`] for `seconds`, once the archive covers one of the
/// writer's commits.
fn rpo(w: &Writer, archive: &Archive, base: Option<(u32, u64)>, seconds: u64) -> Result<Rpo> {
    eventually(Duration::from_secs(120), SAMPLE_EVERY, || {
        let cov = archive.coverage(base).ok()?;
        w.commits()
            .iter()
            .rev()
            .any(|c| cov.covers(&c.at))
            .then_some(())
    })
    .context("the archive covered none of the writer's commits within 120 s")?;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let (mut samples, mut misses) = (Vec::new(), 0);
    let mut next = start;
    while Instant::now() < end {
        let cov = archive.coverage(base);
        let now = Instant::now();
        let newest = cov.ok().and_then(|cov| {
            w.commits()
                .iter()
                .rev()
                .find(|c| cov.covers(&c.at))
                .map(|c| now.saturating_duration_since(c.acked))
        });
        match newest {
            Some(age) => samples.push(age.as_secs_f64()),
            None => misses += 1,
        }
        next += SAMPLE_EVERY;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let commits = w
        .commits()
        .iter()
        .filter(|c| c.acked >= start && c.acked < end)
        .count();
    Ok(Rpo {
        samples,
        misses,
        commits,
    })
}

/// kill -9 of the primary's node under the writer; until the archive covers the first
/// commit the new primary acknowledged; then the node's agent started again, to full
/// redundancy.
fn failover(
    db: &mut Db,
    w: &Writer,
    archive: &Archive,
    base: Option<(u32, u64)>,
) -> Result<Resume> {
    let p = db.primary().context("no primary")?;
    // A steady state between faults, as the e2e PITR tests leave.
    std::thread::sleep(INTERVAL);
    let t0 = Instant::now();
    db.kill_node(p);
    let mut first_write = None;
    let archived = eventually(RESUME_LIMIT, Duration::from_millis(200), || {
        // The first commit the new primary acknowledged: sent after the kill, and not
        // by the old primary in the moment before its database died.
        let c = {
            let commits = w.commits();
            let i = commits.partition_point(|c| c.sent < t0);
            let before = i.checked_sub(1).map(|j| commits[j].at);
            *commits[i..]
                .iter()
                .find(|c| written_elsewhere(before, c.at))?
        };
        first_write.get_or_insert(c.acked.saturating_duration_since(t0));
        archive
            .coverage(base)
            .ok()?
            .covers(&c.at)
            .then(|| t0.elapsed())
    });
    let archived = archived.with_context(|| {
        format!(
            "no change written after the kill was archived within {RESUME_LIMIT:?} (first write after {first_write:?})\n{}",
            db.logs()
        )
    })?;
    db.start_agent(p);
    db.full_redundancy(REDUNDANCY_LIMIT)?;
    Ok(Resume {
        first_write: first_write.map(|d| d.as_secs_f64()),
        archived: archived.as_secs_f64(),
    })
}

/// Node `r` joins with `engine.seed: mode` (killed and wiped first when `wipe`): from its
/// agent's start until it replicates from `p` and has applied `p`'s position, and what
/// `p`'s database and agent ports sent meanwhile.
fn seed(db: &mut Db, p: usize, r: usize, mode: &'static str, wipe: bool) -> Result<Seed> {
    if wipe {
        db.kill_node(r);
        db.wipe_node(r);
    }
    db.set_seed(r, mode)?;
    let target = db.position(p)?;
    let ports = [db.db_port(p), db.telemetry_port(p)];
    let traffic = Traffic::start(&ports, db.dir());
    let t0 = Instant::now();
    db.start_agent(r);
    let joined = eventually(SEED_LIMIT, Duration::from_millis(250), || {
        (db.replicates(r, p) && db.caught_up(r, &target)).then_some(())
    });
    let seconds = t0.elapsed().as_secs_f64();
    let bytes = traffic
        .and_then(Traffic::stop)
        .map_err(|e| format!("{e:#}"));
    joined.with_context(|| {
        format!(
            "{} did not replicate from {} and reach {target} within {SEED_LIMIT:?}\n{}",
            db.name(r),
            db.name(p),
            db.logs()
        )
    })?;
    let log = db.current_log(r);
    let path = if log.contains("cloned the primary") {
        "cloned the primary"
    } else if log.contains("seeded from the repository") {
        "seeded from the repository"
    } else {
        "neither logged"
    };
    Ok(Seed {
        mode,
        seconds,
        bytes,
        path,
    })
}

/// The nearest-rank `q` quantile of `sorted`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / MIB as f64)
}

fn render(o: &Options, all: &[(Kind, Figures)], took: Duration) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Continuous archiving and point-in-time recovery (issue 18), S3 (SeaweedFS) on loopback\n"
    );
    if o.has(Part::Rpo) {
        let _ = writeln!(
            t,
            "#### RPO under a steady writer: age of the newest archived change (3 nodes, `backup.archive.interval: {}s`, sampled every {} ms for {} s)\n",
            INTERVAL.as_secs(),
            SAMPLE_EVERY.as_millis(),
            o.seconds
        );
        t.push_str(
            "| engine | writer commits while sampled | samples | RPO p50 (s) | RPO p99 (s) | max (s) |\n|---|---|---|---|---|---|\n",
        );
        for (kind, f) in all {
            match &f.rpo {
                Some(r) if !r.samples.is_empty() => {
                    let mut s = r.samples.clone();
                    s.sort_by(f64::total_cmp);
                    let missed = if r.misses > 0 {
                        format!(" (+{} without a reading)", r.misses)
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        t,
                        "| {} | {} | {}{missed} | {:.2} | {:.2} | {:.2} |",
                        kind.title(),
                        r.commits,
                        s.len(),
                        median(&mut s.clone()),
                        quantile(&s, 0.99),
                        s[s.len() - 1],
                    );
                }
                _ => {
                    let _ = writeln!(t, "| {} | — | not measured | — | — | — |", kind.title());
                }
            }
        }
        t.push('\n');
    }
    if o.has(Part::Failover) {
        let _ = writeln!(
            t,
            "#### Archiving after a failover: kill -9 of the primary's node under the writer (3 nodes, synchronous replication, seconds from the kill)\n"
        );
        t.push_str(
            "| engine | runs | first write acknowledged by the new primary, median | archive holds that write: median | min | max | every run, in order |\n|---|---|---|---|---|---|---|\n",
        );
        for (kind, f) in all {
            let archived: Vec<Option<f64>> = f
                .failovers
                .iter()
                .map(|r| r.as_ref().map(|r| r.archived))
                .collect();
            let (runs, every) = runs_cells(&archived);
            let mut ok: Vec<f64> = archived.iter().flatten().copied().collect();
            let mut first: Vec<f64> = f
                .failovers
                .iter()
                .flatten()
                .filter_map(|r| r.first_write)
                .collect();
            let first = if first.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.2}", median(&mut first))
            };
            if ok.is_empty() {
                let _ = writeln!(
                    t,
                    "| {} | {runs} | {first} | — | — | — | {every} |",
                    kind.title()
                );
            } else {
                ok.sort_by(f64::total_cmp);
                let _ = writeln!(
                    t,
                    "| {} | {runs} | {first} | {:.2} | {:.2} | {:.2} | {every} |",
                    kind.title(),
                    median(&mut ok.clone()),
                    ok[0],
                    ok[ok.len() - 1],
                );
            }
        }
        t.push('\n');
    }
    if o.has(Part::Restore) {
        let _ = writeln!(
            t,
            "#### Point-in-time restore: a base backup of {} MiB of rows, then {} MiB more archived; `autopilot backup restore --latest`\n",
            o.base_mb, o.changes_mb
        );
        t.push_str(
            "| engine | base backup: table on disk (MiB) | changes after it: table growth (MiB) | base backup: request → done (s), stored MiB | archived files replayed | their size, stored (plain) MiB | restore wall time (s) |\n|---|---|---|---|---|---|---|\n",
        );
        for (kind, f) in all {
            match &f.restore {
                Some(r) => {
                    let plain = r.plain.map_or_else(|| "?".to_owned(), mib);
                    let cli = r
                        .cli_seconds
                        .map_or_else(String::new, |s| format!(" (CLI: {s:.1})"));
                    let _ = writeln!(
                        t,
                        "| {} | {} | {} | {:.0}, {} | {} | {} ({plain}) | {:.1}{cli} |",
                        kind.title(),
                        mib(r.base_bytes),
                        mib(r.changes_bytes),
                        r.backup_seconds,
                        mib(r.backup_stored),
                        r.files,
                        mib(r.stored),
                        r.wall,
                    );
                }
                None => {
                    let _ = writeln!(t, "| {} | — | — | — | — | — | not measured |", kind.title());
                }
            }
        }
        t.push('\n');
    }
    if o.has(Part::Seed) {
        let _ = writeln!(
            t,
            "#### A new replica: seeded from the repository (`engine.seed: backup`) vs cloned from the primary (`engine.seed: primary`)\n"
        );
        t.push_str(
            "| engine | data (table on disk, MiB) | seed: backup — s | MiB sent by the primary | seed: primary (clone) — s | MiB sent by the primary | clone / seed: time | clone / seed: bytes |\n|---|---|---|---|---|---|---|---|\n",
        );
        for (kind, f) in all {
            let of = |mode: &str| f.seeds.iter().find(|s| s.mode == mode);
            let cells = |s: Option<&Seed>| match s {
                Some(s) => (
                    format!("{:.1}", s.seconds),
                    match &s.bytes {
                        Ok(b) => format!("{:.1}", *b as f64 / MIB as f64),
                        Err(_) => "not counted".to_owned(),
                    },
                ),
                None => ("failed".to_owned(), "—".to_owned()),
            };
            let (seed, clone) = (of("backup"), of("primary"));
            let ((st, sb), (ct, cb)) = (cells(seed), cells(clone));
            let (rt, rb) = match (seed, clone) {
                (Some(s), Some(c)) => (
                    format!("{:.2}", c.seconds / s.seconds),
                    match (&s.bytes, &c.bytes) {
                        (Ok(sb), Ok(cb)) if *sb > 0 => format!("{:.0}", *cb as f64 / *sb as f64),
                        _ => "—".to_owned(),
                    },
                ),
                _ => ("—".to_owned(), "—".to_owned()),
            };
            let data = f.seed_bytes.map_or_else(|| "—".to_owned(), mib);
            let _ = writeln!(
                t,
                "| {} | {data} | {st} | {sb} | {ct} | {cb} | {rt} | {rb} |",
                kind.title()
            );
        }
        for (kind, f) in all {
            for s in &f.seeds {
                let expected = match s.mode {
                    "backup" => "seeded from the repository",
                    _ => "cloned the primary",
                };
                if s.path != expected {
                    let _ = writeln!(
                        t,
                        "\n{}: the node with `engine.seed: {}` {} (expected: {expected}); its figures are not what the column says.",
                        kind.title(),
                        s.mode,
                        s.path
                    );
                }
                if let Err(e) = &s.bytes {
                    let _ = writeln!(
                        t,
                        "\n{}: `engine.seed: {}`: bytes not counted: {e}",
                        kind.title(),
                        s.mode
                    );
                }
            }
        }
        t.push('\n');
    }
    for (kind, f) in all {
        if let Some((attempts, commits)) = f.writes {
            let _ = writeln!(
                t,
                "{}: the writer made {attempts} attempts, {commits} acknowledged, over the archive cluster's life.",
                kind.title()
            );
        }
        for n in &f.notes {
            let _ = writeln!(t, "{}: failed or refused: {n}", kind.title());
        }
    }
    let _ = write!(
        t,
        "\nHow: one SeaweedFS S3 server per engine, the agents' `backup:` section as in the e2e PITR tests (zstd 3 with 2 threads, \
         age encryption, `archive: {{ interval: {interval}s }}`, a job run on request through `backup/requests/<id>`). \
         **RPO**: a writer commits a row every {every} ms (PostgreSQL: superuser, kept connection, then `pg_current_wal_lsn()` and its \
         timeline; MariaDB: application account, then `@@last_gtid`) on a 3-node cluster with synchronous replication and a base \
         backup; every {sample} ms the archive is listed and a sample is now − the acknowledgement time of the newest commit the \
         archive covers: PostgreSQL, a complete archived segment of its timeline or a later one ends at or past the commit's LSN (a \
         segment switched by `archive_timeout` holds everything before the switch); MariaDB, the archived binary logs chain from the \
         base backup's GTID without a hole up to the commit's sequence number, in a file of the server that wrote it. p99 is \
         nearest-rank. **Failover**: {interval} s after the cluster is steady, kill -9 of the primary's agent and database; the time \
         until the archive covers the first commit the new primary acknowledged (sent after the kill and written on a later \
         timeline / under another server id than the commits before it: not one the old primary took in the moment before its \
         database died); \"first write\" is the kill → that acknowledgement; then the agent is started again and the run ends at full redundancy \
         (every other node replicating and eligible). **Restore**: a 2-node cluster with asynchronous replication, only its first \
         node running; the rows of `bench backup` (512 random bytes beside 512 bytes of a repeated MD5 per row, 25,000 per \
         statement) until the table holds `--base-mb` on disk, a base backup, then rows until it grew by `--changes-mb`; once the \
         archive holds the primary's position, `autopilot backup restore --repo s3 --latest --target-dir … -o json` with node 1's \
         configuration (fetch and prepare the base backup, fetch and replay the archive on a scratch server), wall time; the files \
         replayed are the archived data files between the first and last it names, their stored size (zstd + age) as listed, \
         plain size PostgreSQL 16 MiB per segment, MariaDB the primary's `SHOW BINARY LOGS` size. MariaDB generates with \
         `max_binlog_size` 16 MiB (the archive takes files up to 64 MiB), a 256 MiB buffer pool and \
         `innodb_flush_log_at_trx_commit = 2` set on the primary for the load (`SET GLOBAL`); the restore's scratch server and the \
         joining node run with the harness's settings. **Seeding**: a new base backup of everything, 1/32 of `--changes-mb` more \
         written and archived; then the second node (no data) starts with `engine.seed: backup`, and once more killed and wiped \
         with `engine.seed: primary`; time from its agent's start until it replicates from the primary (PostgreSQL: streaming in \
         the primary's `pg_stat_replication`; MariaDB: both replication threads running) and has applied the primary's position \
         taken at the start (nothing is written meanwhile). \"MiB sent by the primary\": the kernel's per-connection `bytes_sent` \
         (`ss -ti`) of every TCP connection from the primary's database port or its agent's listener (MariaDB's clone stream), \
         connections closed meanwhile counted from `ss -E` destroy events: what the primary's database and agent sent to anyone \
         over that time (the joining node, the other agent's and the benchmark's probes), not what it read from disk; S3 traffic \
         is not from those ports and is not counted. The path each node took is read from its agent's log. Measured on a \
         shared 2-core machine: figures are indicative. This run took {:.0} min.\n\n\
         Reproduce: `cargo build --release -p bench -p autopilot --bins && target/release/bench pitr{}` (root; needs etcd, \
         postgresql-15, mariadb-server, mariadb-backup, age, iproute2 `ss`, SeaweedFS: `scripts/install-deps`).\n",
        took.as_secs_f64() / 60.0,
        reproduce_flags(o),
        interval = INTERVAL.as_secs(),
        every = writer::EVERY.as_millis(),
        sample = SAMPLE_EVERY.as_millis(),
    );
    t
}

/// The flags that differ from the defaults.
fn reproduce_flags(o: &Options) -> String {
    let (seconds, runs, base, changes) = Options::DEFAULT;
    let mut s = String::new();
    if o.seconds != seconds {
        let _ = write!(s, " --seconds {}", o.seconds);
    }
    if o.runs != runs {
        let _ = write!(s, " --runs {}", o.runs);
    }
    if o.base_mb != base {
        let _ = write!(s, " --base-mb {}", o.base_mb);
    }
    if o.changes_mb != changes {
        let _ = write!(s, " --changes-mb {}", o.changes_mb);
    }
    if o.engines != [Kind::Mariadb, Kind::Postgres] {
        let e: Vec<&str> = o.engines.iter().map(|k| k.as_str()).collect();
        let _ = write!(s, " --engines {}", e.join(","));
    }
    if o.parts != Part::ALL {
        let p: Vec<&str> = o.parts.iter().map(|p| p.as_str()).collect();
        let _ = write!(s, " --parts {}", p.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.99), 198.0);
        assert_eq!(quantile(&v, 0.5), 100.0);
        assert_eq!(quantile(&[3.0], 0.99), 3.0);
    }
}
