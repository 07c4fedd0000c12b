//! The steady writer of `bench pitr`: one numbered row every [`EVERY`] on whichever node
//! takes it (a node that refuses is left for the next, as the e2e writer does), and for each
//! acknowledged commit when it was sent, when it was acknowledged and where it is in the
//! change stream:
//!
//! - PostgreSQL: `INSERT INTO e2e_writes` as the superuser on a kept connection per node,
//!   then, on the same connection, `pg_current_wal_lsn()` and its timeline
//!   (`pg_walfile_name`): the WAL written up to then, so it holds the commit record;
//! - MariaDB: `INSERT INTO e2e.seq` as the application account (a replica refuses it:
//!   `read_only`), then `@@last_gtid` on the same connection: the commit's own GTID.
//!
//! Every attempt takes a fresh number; only acknowledged commits are recorded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::mariadb::workload::app_at;
use e2e::postgres::server::{Kept, Sql};
use e2e::postgres::workload::TABLE;

/// One write per this.
pub const EVERY: Duration = Duration::from_millis(20);
/// The longest one statement may take.
const LIMIT: Duration = Duration::from_secs(2);

/// Where a commit is in the change stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// PostgreSQL: `pg_current_wal_lsn()` just after the commit, on this timeline.
    Wal { timeline: u32, lsn: u64 },
    /// MariaDB: the commit's GTID.
    Gtid { domain: u32, server: u32, seq: u64 },
}

/// One acknowledged commit.
#[derive(Clone, Copy, Debug)]
pub struct Commit {
    /// When the INSERT was sent.
    pub sent: Instant,
    /// When it was acknowledged.
    pub acked: Instant,
    /// Where it is.
    pub at: Position,
}

/// The nodes to write to.
pub enum Target {
    /// PostgreSQL ports, by node index.
    Postgres(Vec<u16>),
    /// MariaDB addresses and ports, by node index.
    Mariadb(Vec<(String, u16)>),
}

/// What one attempt did.
enum Attempt {
    /// Acknowledged; its position when it could be read.
    Committed(Instant, Option<Position>),
    /// Refused or failed: try another node.
    Refused,
}

/// The writer's connections.
enum Conn {
    Postgres {
        ports: Vec<u16>,
        sql: Sql,
        kept: Vec<Arc<Kept>>,
    },
    Mariadb(Vec<(String, u16)>),
}

impl Conn {
    fn new(target: Target) -> Conn {
        match target {
            Target::Postgres(ports) => Conn::Postgres {
                kept: ports.iter().map(|_| Arc::new(Kept::default())).collect(),
                ports,
                sql: Sql::new(),
            },
            Target::Mariadb(nodes) => Conn::Mariadb(nodes),
        }
    }

    fn nodes(&self) -> usize {
        match self {
            Conn::Postgres { ports, .. } => ports.len(),
            Conn::Mariadb(nodes) => nodes.len(),
        }
    }

    fn write(&self, node: usize, n: u64) -> Attempt {
        match self {
            Conn::Postgres { ports, sql, kept } => {
                let (port, kept) = (ports[node], &kept[node]);
                let insert = format!("INSERT INTO {TABLE}(seq) VALUES ({n})");
                if sql.query_kept(kept, port, &insert, LIMIT).is_err() {
                    return Attempt::Refused;
                }
                let acked = Instant::now();
                let at = sql
                    .query_kept(
                        kept,
                        port,
                        "SELECT pg_current_wal_lsn(), pg_walfile_name(pg_current_wal_lsn())",
                        LIMIT,
                    )
                    .ok()
                    .and_then(|rows| {
                        let row = rows.into_iter().next()?;
                        let lsn = backup::archive::wal::parse_lsn(row.first()?.as_deref()?)?;
                        let file = row.get(1)?.as_deref()?;
                        let timeline = u32::from_str_radix(file.get(..8)?, 16).ok()?;
                        Some(Position::Wal { timeline, lsn })
                    });
                Attempt::Committed(acked, at)
            }
            Conn::Mariadb(nodes) => {
                let (host, port) = &nodes[node];
                let insert = format!("INSERT INTO e2e.seq (n) VALUES ({n})");
                match app_at(host, *port).run(&[&insert, "SELECT @@last_gtid"], LIMIT) {
                    Ok(rows) => {
                        let acked = Instant::now();
                        let at = rows
                            .first()
                            .and_then(|r| r.first())
                            .and_then(|g| parse_gtid(g));
                        Attempt::Committed(acked, at)
                    }
                    Err(_) => Attempt::Refused,
                }
            }
        }
    }
}

/// `DOMAIN-SERVER-SEQ`.
pub fn parse_gtid(text: &str) -> Option<Position> {
    let mut parts = text.trim().split('-');
    let (Some(d), Some(s), Some(n), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(Position::Gtid {
        domain: d.parse().ok()?,
        server: s.parse().ok()?,
        seq: n.parse().ok()?,
    })
}

/// Whether `at` was written by another server than the commit at `before`: PostgreSQL, on a
/// later timeline; MariaDB, under another server id (`true` without an earlier commit).
pub fn written_elsewhere(before: Option<Position>, at: Position) -> bool {
    match (before, at) {
        (Some(Position::Wal { timeline: a, .. }), Position::Wal { timeline: b, .. }) => b > a,
        (Some(Position::Gtid { server: a, .. }), Position::Gtid { server: b, .. }) => b != a,
        _ => true,
    }
}

/// A thread writing until [`Writer::stop`]; its commits can be read meanwhile.
pub struct Writer {
    stop: Arc<AtomicBool>,
    commits: Arc<Mutex<Vec<Commit>>>,
    handle: Option<JoinHandle<u64>>,
}

impl Writer {
    /// Starts writing, first to node `first` (the primary).
    pub fn start(target: Target, first: usize) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(Mutex::new(Vec::new()));
        let (flag, record) = (stop.clone(), commits.clone());
        let handle = std::thread::Builder::new()
            .name("pitr-writer".into())
            .spawn(move || {
                let conn = Conn::new(target);
                let mut node = first % conn.nodes().max(1);
                let mut n = 0u64;
                let mut next = Instant::now();
                while !flag.load(Ordering::Relaxed) {
                    n += 1;
                    let sent = Instant::now();
                    match conn.write(node, n) {
                        Attempt::Committed(acked, Some(at)) => record
                            .lock()
                            .expect("the commit list")
                            .push(Commit { sent, acked, at }),
                        Attempt::Committed(_, None) => {}
                        Attempt::Refused => node = (node + 1) % conn.nodes(),
                    }
                    next += EVERY;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                n
            })
            .expect("spawn the writer thread");
        Writer {
            stop,
            commits,
            handle: Some(handle),
        }
    }

    /// The commits so far, in order of acknowledgement.
    pub fn commits(&self) -> MutexGuard<'_, Vec<Commit>> {
        self.commits.lock().expect("the commit list")
    }

    /// Stops the thread; the attempts it made and its commits.
    pub fn stop(mut self) -> (u64, Vec<Commit>) {
        self.stop.store(true, Ordering::Relaxed);
        let attempts = self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0);
        let commits = std::mem::take(&mut *self.commits());
        (attempts, commits)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
