//! What `bench pitr` does with a cluster, whatever its engine: the e2e harness's PostgreSQL
//! and MariaDB clusters under real agents ([`Db`]), their `backup:` section, the S3 archive
//! as the agents write it ([`Archive`]) and what it covers ([`Coverage`]).

use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use backup::archive::binlog::{self, Binlog};
use backup::archive::{self, ArchivedFile, wal};
use backup::repo::{ClusterId, Repository, S3Config};
use e2e::harness::agent::Agent;
use e2e::harness::backup::records;
use e2e::harness::cluster::Agents;
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::postgres::cluster::{PgCluster, PgOpts};

use super::writer::{Position, Target, parse_gtid};
use crate::backup::servers::{
    self, BATCH_LIMIT, BATCH_ROWS, Kind, MARIADB_FILE, MARIADB_TABLE, PG_SIZE, PG_TABLE,
};

/// `backup.archive.interval`, as in the e2e PITR tests.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// `backup.archive.spool_limit_mb`: room for the WAL of the whole load, so that no file is
/// dropped while the archiver catches up.
const SPOOL_LIMIT_MB: u64 = 16_384;
/// MariaDB, while the data set is generated on the primary only: binary logs rotated at
/// 16 MiB (the archive takes files up to 64 MiB; a 25,000-row statement is ~26 MiB of row
/// events), and a larger buffer pool and a relaxed log flush to generate faster (as `bench
/// backup` generates its data set). Dynamic settings: gone when the server restarts.
const MARIADB_LOAD: [&str; 3] = [
    "SET GLOBAL max_binlog_size = 16777216",
    "SET GLOBAL innodb_buffer_pool_size = 268435456",
    "SET GLOBAL innodb_flush_log_at_trx_commit = 2",
];

/// A fresh age identity in `<dir>/key.txt` (`age-keygen`); its recipient.
pub fn key_pair(dir: &Path) -> Result<String> {
    let file = dir.join("key.txt");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .context("run age-keygen (apt-get install -y age)")?;
    if !out.status.success() {
        bail!(
            "age-keygen exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = std::fs::read_to_string(&file)?;
    let lines: Vec<&str> = text.lines().collect();
    let ids = backup::pipeline::parse_identities(&lines)?;
    let id = ids.first().context("age-keygen wrote no identity")?;
    Ok(id.to_public().to_string())
}

/// The agents' `backup:` section: the S3 repository under `prefix`, encryption to
/// `recipient` (its identity in `<dir>/key.txt`), zstd 3 with the default 2 threads, the
/// archive every [`INTERVAL`], and one physical job that runs on request only.
pub fn backup_yaml(dir: &Path, s3: &S3Server, prefix: &str, recipient: &str) -> Result<String> {
    std::fs::write(dir.join("s3.key"), s3.access_key_id())?;
    std::fs::write(dir.join("s3.secret"), s3.secret_access_key())?;
    Ok(format!(
        r#"backup:
  repositories:
    - name: s3
      s3:
        bucket: {bucket}
        prefix: {prefix}
        endpoint: {endpoint}
        region: {region}
        path_style: true
        access_key_id: {{ file: {dir}/s3.key }}
        secret_access_key: {{ file: {dir}/s3.secret }}
  encryption: {{ recipients: [{recipient}] }}
  compression: {{ level: 3, threads: 2 }}
  identity: {{ file: {dir}/key.txt }}
  archive: {{ interval: {interval}s, spool_limit_mb: {SPOOL_LIMIT_MB} }}
  jobs:
    - name: base
      schedule: "0 0 1 1 *"
      retention: {{ keep_last: 5 }}
"#,
        bucket = s3.bucket(),
        endpoint = s3.endpoint(),
        region = s3.region(),
        dir = dir.display(),
        interval = INTERVAL.as_secs(),
    ))
}

/// A cluster of either engine; [`Agents`]' methods are called on it directly.
pub enum Db {
    Postgres(PgCluster),
    Mariadb(MariaCluster),
}

impl Deref for Db {
    type Target = Agents;

    fn deref(&self) -> &Agents {
        match self {
            Db::Postgres(c) => c,
            Db::Mariadb(c) => c,
        }
    }
}

impl DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Agents {
        match self {
            Db::Postgres(c) => c,
            Db::Mariadb(c) => c,
        }
    }
}

impl Db {
    /// etcd and `n` agent configurations (`durability`, `engine.seed: primary`, `yaml`
    /// appended), no agent started.
    pub fn create(kind: Kind, n: usize, durability: &'static str, yaml: String) -> Result<Db> {
        Ok(match kind {
            Kind::Postgres => Db::Postgres(PgCluster::create(
                n,
                PgOpts {
                    durability,
                    extra_yaml: yaml,
                    ..PgOpts::default()
                },
            )?),
            Kind::Mariadb => Db::Mariadb(MariaCluster::create(
                n,
                MariaOpts {
                    durability,
                    extra_yaml: yaml,
                    ..MariaOpts::default()
                },
            )?),
        })
    }

    /// Waits for a primary with every other node replicating and eligible, and creates the
    /// writer's tables; the primary (the e2e scenarios' `settled`).
    pub fn settle(&self) -> usize {
        match self {
            Db::Postgres(c) => e2e::postgres::scenario::settled(c),
            Db::Mariadb(c) => e2e::mariadb::scenario::settle(c),
        }
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        match self {
            Db::Postgres(c) => c.dir(),
            Db::Mariadb(c) => c.dir(),
        }
    }

    /// The cluster's id, from its key prefix (`/autopilot/<ns>/<project>/<name>/`).
    pub fn cluster_id(&self) -> Result<ClusterId> {
        let parts: Vec<&str> = self.prefix().split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [_, namespace, project, name] => Ok(ClusterId {
                namespace: (*namespace).to_owned(),
                project: (*project).to_owned(),
                name: (*name).to_owned(),
            }),
            _ => bail!("unexpected key prefix {}", self.prefix()),
        }
    }

    /// Node `i`'s database port.
    pub fn db_port(&self, i: usize) -> u16 {
        match self {
            Db::Postgres(c) => c.pg_port(i),
            Db::Mariadb(c) => c.port(i),
        }
    }

    /// What the steady writer writes to.
    pub fn writer_target(&self) -> Target {
        match self {
            Db::Postgres(c) => Target::Postgres((0..c.len()).map(|i| c.pg_port(i)).collect()),
            Db::Mariadb(c) => Target::Mariadb(
                (0..c.len())
                    .map(|i| (c.host(i).to_owned(), c.port(i)))
                    .collect(),
            ),
        }
    }

    /// Whether node `i` replicates from node `from` (PostgreSQL: streams, per the primary's
    /// `pg_stat_replication`; MariaDB: both replication threads run against it).
    pub fn replicates(&self, i: usize, from: usize) -> bool {
        match self {
            Db::Postgres(c) => c.streams_from(i, from),
            Db::Mariadb(c) => c.replica_of(i) == Some((c.port(from), true)),
        }
    }

    /// One primary, every other node replicating from it and eligible again; the primary.
    pub fn full_redundancy(&self, within: Duration) -> Result<usize> {
        let deadline = Instant::now() + within;
        let q = self.wait_primary(within);
        for i in (0..self.len()).filter(|&i| i != q) {
            let left = deadline.saturating_duration_since(Instant::now());
            eventually(left, Duration::from_millis(100), || {
                self.replicates(i, q).then_some(())
            })
            .with_context(|| {
                format!("{} does not replicate from {}", self.name(i), self.name(q))
            })?;
            self.wait_eligible(i, deadline.saturating_duration_since(Instant::now()));
        }
        Ok(q)
    }

    /// Node loss: kill -9 of node `i`'s agent and database.
    pub fn kill_node(&mut self, i: usize) {
        match self {
            Db::Postgres(c) => c.kill_node(i),
            Db::Mariadb(c) => c.kill_node(i),
        }
    }

    /// Removes node `i`'s data and state directories (its agent is down).
    pub fn wipe_node(&self, i: usize) {
        match self {
            Db::Postgres(c) => c.wipe_node(i),
            Db::Mariadb(c) => c.wipe_node(i),
        }
    }

    /// Node `i`'s `engine.seed` from its next start on.
    pub fn set_seed(&mut self, i: usize, seed: &'static str) -> Result<()> {
        match self {
            Db::Postgres(c) => {
                let opts = PgOpts {
                    seed,
                    ..c.opts().clone()
                };
                c.reconfigure(i, &opts);
                Ok(())
            }
            Db::Mariadb(c) => {
                c.opts_mut().seed = seed;
                c.write_config(i)
            }
        }
    }

    /// Node `i`'s agent log since its last start.
    pub fn current_log(&self, i: usize) -> String {
        self.agent(i).map(Agent::log).unwrap_or_default()
    }

    /// The primary's position: `pg_current_wal_lsn()` / `@@gtid_binlog_pos`.
    pub fn position(&self, p: usize) -> Result<String> {
        match self {
            Db::Postgres(c) => c.scalar(p, "SELECT pg_current_wal_lsn()"),
            Db::Mariadb(c) => first(c.sql(p, &["SELECT @@gtid_binlog_pos"])?),
        }
    }

    /// Whether node `i` has applied everything up to `pos` (a [`Db::position`]).
    pub fn caught_up(&self, i: usize, pos: &str) -> bool {
        match self {
            Db::Postgres(c) => c
                .scalar(
                    i,
                    &format!("SELECT pg_last_wal_replay_lsn() >= '{pos}'::pg_lsn"),
                )
                .is_ok_and(|v| v == "t"),
            Db::Mariadb(c) => c
                .admin(i)
                .run(
                    &[&format!("SELECT MASTER_GTID_WAIT('{pos}', 0.5)")],
                    Duration::from_secs(3),
                )
                .ok()
                .and_then(|rows| first(rows).ok())
                .is_some_and(|v| v == "0"),
        }
    }

    /// Creates the data set's table on the primary `p`; MariaDB's settings for the load
    /// ([`MARIADB_LOAD`]) that the server refused, as notes.
    pub fn prepare_load(&self, p: usize) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        match self {
            Db::Postgres(c) => {
                c.sql()
                    .query(c.pg_port(p), PG_TABLE, Duration::from_secs(30))?;
            }
            Db::Mariadb(c) => {
                for s in MARIADB_LOAD {
                    if let Err(e) = c.sql(p, &[s]) {
                        notes.push(format!("`{s}` refused: {e:#}"));
                    }
                }
                c.admin(p).run(&MARIADB_TABLE, Duration::from_secs(30))?;
            }
        }
        Ok(notes)
    }

    /// The data set's table on node `p`, bytes on disk.
    pub fn table_bytes(&self, p: usize) -> Result<u64> {
        match self {
            Db::Postgres(c) => c
                .scalar(p, PG_SIZE)?
                .parse()
                .context("parse the table size"),
            Db::Mariadb(c) => {
                let file = c.dir().join(format!("data-{}", p + 1)).join(MARIADB_FILE);
                Ok(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0))
            }
        }
    }

    /// Inserts rows of the data set on the primary `p`, [`BATCH_ROWS`] per statement from
    /// row `*next`, until the table holds `want` bytes; its size then.
    pub fn grow_to(&self, p: usize, next: &mut u64, want: u64) -> Result<u64> {
        loop {
            let size = self.table_bytes(p)?;
            if size >= want {
                return Ok(size);
            }
            let (from, to) = (*next, *next + BATCH_ROWS - 1);
            match self {
                Db::Postgres(c) => {
                    c.sql()
                        .query(c.pg_port(p), &servers::pg_rows(from, to), BATCH_LIMIT)?;
                }
                Db::Mariadb(c) => {
                    c.admin(p)
                        .run(&[&servers::mariadb_rows(from, to)], BATCH_LIMIT)?;
                }
            }
            *next = to + 1;
        }
    }

    /// MariaDB: the primary's binary logs and their sizes (`SHOW BINARY LOGS`).
    pub fn binlog_sizes(&self, p: usize) -> HashMap<String, u64> {
        match self {
            Db::Postgres(_) => HashMap::new(),
            Db::Mariadb(c) => c
                .sql(p, &["SHOW BINARY LOGS"])
                .unwrap_or_default()
                .into_iter()
                .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.parse().ok()?)))
                .collect(),
        }
    }

    /// Waits until the archive holds every change the primary `p` had when asked:
    /// PostgreSQL closes the current WAL segment (`pg_switch_wal`) and waits for it;
    /// MariaDB waits for an archived binary log that reaches `@@gtid_binlog_pos`.
    pub fn wait_archived(&self, p: usize, a: &Archive, within: Duration) -> Result<()> {
        match self {
            Db::Postgres(c) => {
                let name = first_opt(c.sql().query(
                    c.pg_port(p),
                    "SELECT pg_walfile_name(pg_switch_wal())",
                    Duration::from_secs(30),
                )?)?;
                eventually(within, Duration::from_millis(500), || {
                    a.list()
                        .ok()
                        .filter(|files| files.iter().any(|f| f.name == name))
                        .map(drop)
                })
                .with_context(|| format!("segment {name} not archived within {within:?}"))
            }
            Db::Mariadb(_) => {
                let pos = self.position(p)?;
                let Some((domain, seq)) = gtid_seq(&pos) else {
                    bail!("no GTID in the primary's position {pos:?}");
                };
                eventually(within, Duration::from_millis(500), || {
                    a.list()
                        .ok()
                        .filter(|files| {
                            files
                                .iter()
                                .filter_map(|f| Binlog::parse(&f.name))
                                .any(|b| !b.superseded && b.domain == domain && b.last >= seq)
                        })
                        .map(drop)
                })
                .with_context(|| format!("the archive did not reach {pos} within {within:?}"))
            }
        }
    }

    /// Requests a backup of job `base` (`backup/requests/<request>`) and waits until it is
    /// done; its record and how long it took from the request.
    pub fn backup_now(&self, request: &str, within: Duration) -> Result<(serde_json::Value, f64)> {
        let before: HashSet<String> = records(self)
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        let asked = Instant::now();
        self.put_key(
            &format!("backup/requests/{request}"),
            r#"{"schema":1,"action":"backup","job":"base","requested_by":"bench"}"#,
        );
        let ended = eventually(within, Duration::from_millis(500), || {
            records(self).into_iter().find(|r| {
                r["job"] == "base"
                    && r["id"].as_str().is_some_and(|id| !before.contains(id))
                    && (r["status"] == "done" || r["status"] == "failed")
            })
        });
        let took = asked.elapsed().as_secs_f64();
        match ended {
            Some(r) if r["status"] == "done" => Ok((r, took)),
            Some(r) => bail!("backup {} failed: {}", r["id"], r["error"]),
            None => bail!("no backup done within {within:?}\n{}", self.logs()),
        }
    }
}

/// The first value of the first row.
fn first(rows: Vec<Vec<String>>) -> Result<String> {
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .context("no value")
}

/// The first value of the first row (PostgreSQL's rows).
fn first_opt(rows: Vec<Vec<Option<String>>>) -> Result<String> {
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .context("no value")
}

/// The GTID domain and sequence number of a MariaDB position (its first GTID); `None` for
/// anything else (a PostgreSQL position).
pub fn gtid_seq(position: &str) -> Option<(u32, u64)> {
    position
        .split(|c: char| c.is_whitespace() || c == ',')
        .find_map(|t| match parse_gtid(t)? {
            Position::Gtid { domain, seq, .. } => Some((domain, seq)),
            Position::Wal { .. } => None,
        })
}

/// The cluster's archive in the S3 repository, opened as the agents open it.
pub struct Archive {
    repo: Repository,
    cluster: ClusterId,
    kind: archive::Kind,
    rt: tokio::runtime::Runtime,
}

impl Archive {
    /// The archive of `db` in `s3` under `prefix`.
    pub fn open(s3: &S3Server, prefix: &str, db: &Db) -> Result<Archive> {
        let repo = Repository::s3(
            "s3",
            &S3Config {
                bucket: s3.bucket().to_owned(),
                prefix: prefix.to_owned(),
                endpoint: Some(s3.endpoint()),
                region: s3.region().to_owned(),
                path_style: true,
                access_key_id: s3.access_key_id().to_owned(),
                secret_access_key: s3.secret_access_key().to_owned(),
            },
        )?;
        Ok(Archive {
            repo,
            cluster: db.cluster_id()?,
            kind: match db {
                Db::Postgres(_) => archive::Kind::Wal,
                Db::Mariadb(_) => archive::Kind::Binlog,
            },
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    /// Every archived file, sorted by name.
    pub fn list(&self) -> Result<Vec<ArchivedFile>> {
        Ok(self
            .rt
            .block_on(archive::list(&self.repo, &self.cluster, self.kind))?)
    }

    /// What the archive covers now. MariaDB: from `base` (the base backup's domain and
    /// sequence number) on.
    pub fn coverage(&self, base: Option<(u32, u64)>) -> Result<Coverage> {
        Ok(Coverage::of(self.kind, &self.list()?, base))
    }
}

/// What an archive covers.
pub enum Coverage {
    /// PostgreSQL: the complete segments, `(timeline, segment number)`; a complete segment
    /// holds the WAL up to its end.
    Wal(Vec<(u32, u64)>),
    /// MariaDB: the binary logs a replay from the base backup chains without a hole (not
    /// superseded), and the sequence number they reach.
    Binlog {
        domain: u32,
        reached: u64,
        files: Vec<Binlog>,
    },
}

impl Coverage {
    fn of(kind: archive::Kind, files: &[ArchivedFile], base: Option<(u32, u64)>) -> Coverage {
        match kind {
            archive::Kind::Wal => Coverage::Wal(
                files
                    .iter()
                    .filter_map(|f| match wal::parse(&f.name) {
                        Some(wal::WalFile::Segment { timeline, segment }) => {
                            Some((timeline, segment))
                        }
                        _ => None,
                    })
                    .collect(),
            ),
            archive::Kind::Binlog => {
                let all: Vec<Binlog> = files
                    .iter()
                    .filter_map(|f| Binlog::parse(&f.name))
                    .collect();
                let (domain, after) = base.unwrap_or_else(|| {
                    let live = all.iter().filter(|b| !b.superseded);
                    let domain = live.clone().map(|b| b.domain).min().unwrap_or(0);
                    let first = live.map(|b| b.first).min().unwrap_or(1);
                    (domain, first.saturating_sub(1))
                });
                let chain = binlog::chain(&all, domain, after, None);
                Coverage::Binlog {
                    domain,
                    reached: chain.reached,
                    files: chain.files.into_iter().cloned().collect(),
                }
            }
        }
    }

    /// Whether the archive holds the commit at `at`: PostgreSQL, a complete segment of its
    /// timeline or a later one ends at or past its LSN; MariaDB, the chain reaches its
    /// sequence number and the file holding it is a binary log of the server that wrote the
    /// commit (so not a former primary's file holding other transactions under the same
    /// numbers, before the new primary marked it superseded).
    pub fn covers(&self, at: &Position) -> bool {
        match (self, *at) {
            (Coverage::Wal(segments), Position::Wal { timeline, lsn }) => segments
                .iter()
                .any(|&(t, s)| t >= timeline && (s + 1) * wal::SEGMENT_BYTES >= lsn),
            (
                Coverage::Binlog {
                    domain: d,
                    reached,
                    files,
                },
                Position::Gtid {
                    domain,
                    server,
                    seq,
                },
            ) => {
                *d == domain
                    && *reached >= seq
                    && files
                        .iter()
                        .any(|f| f.first <= seq && seq <= f.last && f.server == server)
            }
            _ => false,
        }
    }
}
