//! Backups of the local server with MariaDB's own tools (issue 17; the engine-independent
//! interface is [`crate::backups`]). Restores are in `restore.rs`, the scratch server that
//! loads and checks restored data in `scratch.rs`.
//!
//! - **Physical**: one stream, `base`: `mariadb-backup --backup --stream=xbstream` of the
//!   running server, with `--extra-lsndir` so that once it exited its `xtrabackup_checkpoints`
//!   (`to_lsn`: where a following incremental starts, `--incremental-lsn`) and
//!   `xtrabackup_info` (the GTID position, the tool's version) can be read.
//! - **Logical**: one stream per database, `db-<name>` (`mariadb-dump --single-transaction
//!   --gtid --master-data=2 …`; the GTID position is the commented `SET GLOBAL
//!   gtid_slave_pos` line near the dump's end), then `users` (`mariadb-dump --system=users
//!   --replace`: the accounts and their grants).
//!
//! It normally runs on a replica. `mariadb-backup` runs without `--safe-slave-backup`: the
//! binary log is ROW-based, so the replica's applier never holds temporary tables (what that
//! option waits out), and stopping the applier would stall replication for the backup and
//! need REPLICATION SLAVE ADMIN; `BACKUP STAGE BLOCK_COMMIT` already makes the copy
//! consistent with the GTID position it records. It also runs without `--slave-info`: with
//! `log_slave_updates` and `gtid_strict_mode` the server's own `gtid_current_pos`, which it
//! records, is the position a restored server resumes from whichever node was primary (and
//! on a primary the option only logs a failure-looking warning). Operators may still add
//! either through `extra_args`; the backup account has SLAVE MONITOR for `--slave-info`.
//! `mariadb-dump --master-data=2` works on a replica with binary logging: with
//! `--single-transaction` it reads the consistent snapshot's binary log position of the
//! server itself (no global read lock, no `--dump-slave`, which would stop the applier).
//!
//! The tools log in over the local socket with the backup account
//! ([`MariadbSettings::backup`], created or updated before each stream; see
//! `conn::BACKUP_PRIVILEGES`) through a private options file. Without a configured backup
//! account they use the admin account (the agent's configuration check requires the
//! account when backup jobs exist).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use handlers::{ManagedChild, Pipe, Piped};
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncRead, ReadBuf};

use super::backup::{self, BACKUP};
use super::conn;
use super::gtid::GtidSet;
use super::settings::MariadbSettings;
use super::tools::{self, WorkDir, failed};
use crate::backups::{BackupMethod, BackupSpec, BackupType, StreamDone, StreamPlan, ToolStream};
use crate::engine::EngineError;

/// MariaDB's logical backup tool (package `mariadb-client`).
pub const DUMP: &str = "mariadb-dump";
/// The physical backup's one stream.
pub const BASE_STREAM: &str = "base";
/// The logical backup's last stream: the accounts.
pub const USERS_STREAM: &str = "users";
/// A logical backup's per-database streams: `db-<name>`.
pub const DB_PREFIX: &str = "db-";
/// Databases a logical backup of "every database" leaves out: the server's own.
pub(super) const SYSTEM_DATABASES: [&str; 4] =
    ["information_schema", "performance_schema", "sys", "mysql"];
/// How long a tool may take to exit once its output ended.
const EXIT_LIMIT: Duration = Duration::from_secs(120);
/// How much of a dump's end is kept to find its GTID position.
const TAIL_KEEP: usize = 16 * 1024;
/// How much of a dump's start is kept to find its version line.
const HEAD_KEEP: usize = 1024;

/// The streams of a backup of `spec`, in order: `base`, or a `db-<name>` per database and
/// then `users`. A logical plan lists the databases over `c` when `spec.databases` is empty.
pub async fn plan(s: &MariadbSettings, spec: &BackupSpec) -> Result<Vec<StreamPlan>, EngineError> {
    match check_spec(spec)? {
        Kind::Physical => Ok(vec![StreamPlan {
            name: BASE_STREAM.to_owned(),
            database: None,
        }]),
        Kind::Logical => {
            let mut c = conn::local(s).await?;
            let found = databases(&mut c).await;
            let _ = c.disconnect().await;
            logical_plan(&spec.databases, &found?)
        }
    }
}

/// The two kinds of MariaDB backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `mariadb-backup`.
    Physical,
    /// `mariadb-dump`.
    Logical,
}

/// The kind of backup `spec` asks for, or what no MariaDB backup can do.
fn check_spec(spec: &BackupSpec) -> Result<Kind, EngineError> {
    let op = "plan a backup";
    let kind = match spec.method {
        BackupMethod::Physical => Kind::Physical,
        BackupMethod::Logical => Kind::Logical,
        BackupMethod::Unknown => {
            return Err(failed(
                op,
                "the backup method is unknown to this agent (written by a newer version); expected physical or logical".into(),
            ));
        }
    };
    match (spec.method, spec.backup_type) {
        (_, BackupType::Unknown) => Err(failed(
            op,
            "the backup type is unknown to this agent (written by a newer version); expected full or incremental".into(),
        )),
        (BackupMethod::Logical, BackupType::Incremental) => Err(failed(
            op,
            "incremental backups are physical only (mariadb-backup); take a full logical backup or use method: physical".into(),
        )),
        (BackupMethod::Physical, BackupType::Incremental) => {
            match spec.incremental_lsn.as_deref() {
                None => Err(failed(
                    op,
                    "an incremental backup needs its parent's LSN (incremental_lsn, the parent's to_lsn); take a full backup first".into(),
                )),
                Some(lsn) if lsn.is_empty() || !lsn.bytes().all(|b| b.is_ascii_digit()) => {
                    Err(failed(
                        op,
                        format!("incremental_lsn {lsn:?} is not an InnoDB LSN (a decimal number)"),
                    ))
                }
                Some(_) => Ok(kind),
            }
        }
        _ => Ok(kind),
    }
}

/// The user databases of the server, sorted.
async fn databases(c: &mut mysql_async::Conn) -> Result<Vec<String>, EngineError> {
    let names: Vec<String> = conn::bounded(
        "list the databases",
        false,
        c.query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME"),
    )
    .await?;
    Ok(names
        .into_iter()
        .filter(|n| !SYSTEM_DATABASES.contains(&n.as_str()))
        .collect())
}

/// The logical plan for `wanted` (empty: all of `found`), each checked to exist and to make
/// a stream name.
fn logical_plan(wanted: &[String], found: &[String]) -> Result<Vec<StreamPlan>, EngineError> {
    let op = "plan a logical backup";
    let chosen: Vec<&String> = if wanted.is_empty() {
        found.iter().collect()
    } else {
        for w in wanted {
            if !found.contains(w) {
                return Err(failed(
                    op,
                    format!(
                        "database {w:?} does not exist on this server (it has: {}); fix the job's databases",
                        found.join(", ")
                    ),
                ));
            }
        }
        wanted.iter().collect()
    };
    let mut plan = Vec::with_capacity(chosen.len() + 1);
    for name in chosen {
        plan.push(StreamPlan {
            name: stream_name(name).map_err(|reason| failed(op, reason))?,
            database: Some(name.clone()),
        });
    }
    plan.push(StreamPlan {
        name: USERS_STREAM.to_owned(),
        database: None,
    });
    Ok(plan)
}

/// `db-<database>`, when that is a key segment the repositories accept (ASCII letters,
/// digits, `.`, `_`, `-`; at most 128 bytes) and the name cannot be read as a tool's option.
pub fn stream_name(database: &str) -> Result<String, String> {
    let name = format!("{DB_PREFIX}{database}");
    let ok = !database.is_empty()
        && !database.starts_with('-')
        && name.len() <= 128
        && database
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "database {database:?} cannot be a backup stream name (only ASCII letters, digits, '.', '_' and '-', not first, at most 125 characters); list the other databases in the job's databases and back this one up by other means"
        ))
    }
}

/// Start the tool of one stream of `spec`.
pub async fn start(
    s: &MariadbSettings,
    spec: &BackupSpec,
    plan: &StreamPlan,
) -> Result<ToolStream, EngineError> {
    let kind = check_spec(spec)?;
    let op = "start a backup stream";
    let database = match (kind, plan.name.as_str()) {
        (Kind::Physical, BASE_STREAM) => None,
        (Kind::Logical, USERS_STREAM) => None,
        (Kind::Logical, name) if name.starts_with(DB_PREFIX) => {
            let db = plan
                .database
                .clone()
                .unwrap_or_else(|| name[DB_PREFIX.len()..].to_owned());
            if stream_name(&db).map_err(|r| failed(op, r))? != name {
                return Err(failed(
                    op,
                    format!("stream {name:?} does not hold database {db:?}"),
                ));
            }
            Some(db)
        }
        (kind, name) => {
            return Err(failed(
                op,
                format!("a {kind:?} MariaDB backup has no stream {name:?}"),
            ));
        }
    };
    let mut c = conn::local(s).await?;
    let ensured = conn::ensure_backup_account(s, &mut c).await;
    let _ = c.disconnect().await;
    ensured?;
    let owner = backup::run_as(s)?;
    let parent = s.run_dir.join("backup-work");
    clear_stale(&parent);
    let work = WorkDir::create(
        "create the backup work directory",
        parent.join(tools::unique(&plan.name)),
        owner,
    )?;
    let cnf = work.path().join("client.cnf");
    let account = s.backup.as_ref().unwrap_or(&s.admin);
    backup::write_private(&cnf, &backup::client_options(account), owner)?;
    let default = match kind {
        Kind::Physical => BACKUP,
        Kind::Logical => DUMP,
    };
    let program = spec
        .tool
        .as_ref()
        .map_or_else(|| default.to_owned(), |p| p.display().to_string());
    let mut argv = match kind {
        Kind::Physical => {
            backup::make_target(work.path(), owner)?;
            let mut argv = backup::backup_argv(s, &program, &cnf, work.path());
            argv.push(format!(
                "--extra-lsndir={}",
                work.path().join("lsn").display()
            ));
            if spec.backup_type == BackupType::Incremental
                && let Some(lsn) = &spec.incremental_lsn
            {
                argv.push(format!("--incremental-lsn={lsn}"));
            }
            argv
        }
        Kind::Logical => dump_argv(s, &program, &cnf, database.as_deref()),
    };
    argv.extend(spec.extra_args.iter().cloned());
    // Neither the program nor the options file's path: the rest, for the record.
    let parameters = argv[2..].to_vec();
    let stderr = work.path().join("stderr.log");
    let (child, pipe) = tools::spawn_logged(op, &s.env, owner, argv, &stderr, Piped::Stdout)?;
    let Pipe::Stdout(stdout) = pipe else {
        return Err(failed(op, "the tool's output pipe is missing".into()));
    };
    let tool = tools::program_name(&program).to_owned();
    let running = Running { child, work };
    let (output, finisher): (crate::backups::BoxRead, _) = match kind {
        Kind::Physical => (
            Box::pin(stdout),
            Box::pin(finish_physical(running, tool.clone(), stderr)) as Finisher,
        ),
        Kind::Logical => {
            let scan = Arc::new(Mutex::new(Scan::default()));
            (
                Box::pin(Scanned {
                    inner: stdout,
                    scan: scan.clone(),
                }),
                Box::pin(finish_logical(running, tool.clone(), stderr, scan)) as Finisher,
            )
        }
    };
    Ok(ToolStream {
        name: plan.name.clone(),
        tool,
        parameters,
        output,
        finisher,
    })
}

type Finisher = Pin<Box<dyn Future<Output = Result<StreamDone, EngineError>> + Send>>;

/// `mariadb-dump` of one database (`Some`), or of the accounts (`None`).
fn dump_argv(
    s: &MariadbSettings,
    program: &str,
    cnf: &Path,
    database: Option<&str>,
) -> Vec<String> {
    let mut argv = vec![
        program.to_owned(),
        // Must come first; the only place the password is.
        format!("--defaults-extra-file={}", cnf.display()),
        format!("--socket={}", s.socket().display()),
    ];
    match database {
        Some(db) => argv.extend(
            [
                // One consistent snapshot; with --master-data no global read lock is
                // needed (the snapshot's own binary log position is read).
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                // The position as a commented `SET GLOBAL gtid_slave_pos=…` at the end.
                "--gtid",
                "--master-data=2",
                "--databases",
                db,
            ]
            .map(str::to_owned),
        ),
        // `--replace`: `DROP USER IF EXISTS` + `CREATE OR REPLACE USER`, so the accounts
        // replace those a fresh server has (root) instead of failing on them.
        None => argv.extend(["--system=users", "--replace"].map(str::to_owned)),
    }
    argv
}

/// A running tool and its work directory; the child is killed before the directory goes.
struct Running {
    child: ManagedChild,
    work: WorkDir,
}

async fn finish_physical(
    mut r: Running,
    tool: String,
    stderr: PathBuf,
) -> Result<StreamDone, EngineError> {
    let op = "take a physical backup (mariadb-backup)";
    tools::wait_tool(op, &tool, &mut r.child, EXIT_LIMIT, &stderr).await?;
    let lsn_dir = r.work.path().join("lsn");
    let read = |name: &str| {
        let path = lsn_dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| {
            failed(
                "read the physical backup's checkpoints",
                format!("{}: {e}", path.display()),
            )
        })
    };
    let to_lsn = checkpoint_lsn(&read("xtrabackup_checkpoints")?)
        .map_err(|reason| failed("read the physical backup's checkpoints", reason))?;
    let info = read("xtrabackup_info")?;
    let position = info_position(&info)
        .map_err(|reason| failed("read the physical backup's GTID position", reason))?;
    Ok(StreamDone {
        position,
        incremental_lsn: Some(to_lsn),
        tool_version: info_value(&info, "tool_version").map(|v| format!("{tool} {v}")),
    })
}

async fn finish_logical(
    mut r: Running,
    tool: String,
    stderr: PathBuf,
    scan: Arc<Mutex<Scan>>,
) -> Result<StreamDone, EngineError> {
    let op = "take a logical backup (mariadb-dump)";
    tools::wait_tool(op, &tool, &mut r.child, EXIT_LIMIT, &stderr).await?;
    let scan = scan.lock().map(|s| s.clone()).unwrap_or_default();
    let position = match dump_position(&scan.tail) {
        Some(text) => Some(
            GtidSet::parse(&text)
                .map_err(|e| {
                    failed(
                        "read the logical backup's GTID position",
                        format!("the dump names {text:?}: {e}"),
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    Ok(StreamDone {
        position,
        incremental_lsn: None,
        tool_version: dump_version(&scan.head),
    })
}

/// `to_lsn` of an `xtrabackup_checkpoints` file: the LSN a following incremental starts
/// from (what `--incremental-basedir` would read).
pub fn checkpoint_lsn(text: &str) -> Result<String, String> {
    match info_value(text, "to_lsn") {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Ok(v.to_owned()),
        Some(v) => Err(format!(
            "xtrabackup_checkpoints has to_lsn = {v:?}, not a number"
        )),
        None => Err("xtrabackup_checkpoints has no to_lsn".to_owned()),
    }
}

/// A `key = value` line's value of an `xtrabackup_checkpoints`/`xtrabackup_info` file.
fn info_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The GTID position of `xtrabackup_info`'s `binlog_pos = filename '…', position '…', GTID
/// of the last change '0-1-5'`; `None` without a binary log or before any GTID.
pub fn info_position(text: &str) -> Result<Option<String>, String> {
    let Some(pos) = info_value(text, "binlog_pos") else {
        return Ok(None);
    };
    const MARK: &str = "GTID of the last change '";
    let Some(start) = pos.find(MARK).map(|i| i + MARK.len()) else {
        return Ok(None);
    };
    let Some(len) = pos[start..].find('\'') else {
        return Err(format!("xtrabackup_info's binlog_pos {pos:?} is cut short"));
    };
    let gtid = &pos[start..start + len];
    if gtid.is_empty() {
        return Ok(None);
    }
    GtidSet::parse(gtid)
        .map(|g| Some(g.to_string()))
        .map_err(|e| format!("xtrabackup_info names the GTID position {gtid:?}: {e}"))
}

/// The last `gtid_slave_pos='…'` of a dump's end (`--gtid --master-data=2` writes it,
/// commented, after the data).
pub fn dump_position(tail: &[u8]) -> Option<String> {
    const MARK: &[u8] = b"gtid_slave_pos='";
    let start = tail.windows(MARK.len()).rposition(|w| w == MARK)? + MARK.len();
    let len = tail[start..].iter().position(|&b| b == b'\'')?;
    let text = std::str::from_utf8(&tail[start..start + len]).ok()?;
    (!text.is_empty()).then(|| text.to_owned())
}

/// The dump's version line (`MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for …`).
pub fn dump_version(head: &[u8]) -> Option<String> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let l = l.strip_prefix("-- ")?;
        (l.starts_with("MariaDB dump") || l.starts_with("MySQL dump"))
            .then(|| l.split_whitespace().collect::<Vec<_>>().join(" "))
    })
}

/// What the reader of a dump saw of its start and its end.
#[derive(Clone, Debug, Default)]
struct Scan {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Scan {
    fn saw(&mut self, bytes: &[u8]) {
        if self.head.len() < HEAD_KEEP {
            let n = (HEAD_KEEP - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..n]);
        }
        if bytes.len() >= TAIL_KEEP {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - TAIL_KEEP..]);
        } else {
            let excess = (self.tail.len() + bytes.len()).saturating_sub(TAIL_KEEP);
            self.tail.drain(..excess);
            self.tail.extend_from_slice(bytes);
        }
    }
}

/// A dump's output as it is read, its start and end kept in a [`Scan`].
struct Scanned<R> {
    inner: R,
    scan: Arc<Mutex<Scan>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Scanned<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && let Ok(mut scan) = self.scan.lock()
        {
            scan.saw(&buf.filled()[before..]);
        }
        polled
    }
}

/// Remove the work directories an earlier agent process left (its pid is in their names).
fn clear_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let me = std::process::id().to_string();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').nth(1);
        if pid != Some(me.as_str()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_give_to_lsn() {
        let text = "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 44848\nlast_lsn = 48137\nrecover_binlog_info = 0\n";
        assert_eq!(checkpoint_lsn(text).expect("lsn"), "44848");
        assert!(checkpoint_lsn("from_lsn = 0\n").is_err());
        assert!(checkpoint_lsn("to_lsn = 12a\n").is_err());
    }

    #[test]
    fn info_gives_the_gtid_position() {
        let info = "tool_name = mariadb-backup\ntool_version = 10.11.19-MariaDB\nbinlog_pos = filename 'bin.000001', position '1330', GTID of the last change '0-5-6'\ninnodb_to_lsn = 1\n";
        assert_eq!(
            info_position(info).expect("parsed").as_deref(),
            Some("0-5-6")
        );
        assert_eq!(info_value(info, "tool_version"), Some("10.11.19-MariaDB"));
        let multi =
            "binlog_pos = filename 'b.1', position '4', GTID of the last change '0-1-9,1-2-3'\n";
        assert_eq!(
            info_position(multi).expect("parsed").as_deref(),
            Some("0-1-9,1-2-3")
        );
        let none = "binlog_pos = filename 'b.1', position '4', GTID of the last change ''\n";
        assert_eq!(info_position(none).expect("parsed"), None);
        assert_eq!(info_position("tool_name = x\n").expect("no binlog"), None);
        assert!(info_position("binlog_pos = GTID of the last change 'zz'\n").is_err());
        assert!(info_position("binlog_pos = GTID of the last change '0-1").is_err());
    }

    #[test]
    fn a_dump_names_its_position_and_version() {
        let dump = b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)\n--\n";
        assert_eq!(
            dump_version(dump).as_deref(),
            Some("MariaDB dump 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)")
        );
        let tail = b"INSERT INTO t VALUES ('gtid_slave_pos=''x');\n-- SET GLOBAL gtid_slave_pos='0-5-5';\n/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n";
        assert_eq!(dump_position(tail).as_deref(), Some("0-5-5"));
        assert_eq!(dump_position(b"-- Dump completed\n"), None);
        assert_eq!(dump_position(b"gtid_slave_pos=''"), None);
    }

    #[test]
    fn the_scan_keeps_the_start_and_the_end() {
        let mut scan = Scan::default();
        for chunk in (0..100_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .chunks(777)
        {
            scan.saw(chunk);
        }
        assert_eq!(scan.head.len(), HEAD_KEEP);
        assert_eq!(scan.tail.len(), TAIL_KEEP);
        assert_eq!(*scan.tail.last().expect("byte"), (99_999u32 % 251) as u8);
        scan.saw(&vec![7; TAIL_KEEP * 2]);
        assert!(scan.tail.iter().all(|&b| b == 7));
    }

    #[test]
    fn stream_names_are_key_segments() {
        assert_eq!(stream_name("shop").expect("ok"), "db-shop");
        assert_eq!(stream_name("a.b_c-1").expect("ok"), "db-a.b_c-1");
        for bad in ["", "a/b", "a b", "-x", "ü", &"x".repeat(126)] {
            let err = stream_name(bad).expect_err(bad);
            assert!(err.contains("cannot be a backup stream name"), "{err}");
        }
    }

    #[test]
    fn a_logical_plan_is_each_database_then_the_users() {
        let found = vec!["a".to_owned(), "shop".to_owned()];
        let names = |p: Vec<StreamPlan>| p.into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(
            names(logical_plan(&[], &found).expect("all")),
            ["db-a", "db-shop", "users"]
        );
        assert_eq!(
            names(logical_plan(&["shop".to_owned()], &found).expect("one")),
            ["db-shop", "users"]
        );
        let err = logical_plan(&["gone".to_owned()], &found).expect_err("missing");
        assert!(err.to_string().contains("\"gone\" does not exist"), "{err}");
        let err = logical_plan(&[], &["a b".to_owned()]).expect_err("bad name");
        assert!(err.to_string().contains("\"a b\""), "{err}");
    }

    #[test]
    fn incremental_is_physical_only_and_needs_an_lsn() {
        let spec = |method, lsn: Option<&str>| BackupSpec {
            method,
            backup_type: BackupType::Incremental,
            incremental_lsn: lsn.map(str::to_owned),
            ..BackupSpec::default()
        };
        let err = check_spec(&spec(BackupMethod::Logical, Some("5"))).expect_err("logical");
        assert!(err.to_string().contains("physical only"), "{err}");
        let err = check_spec(&spec(BackupMethod::Physical, None)).expect_err("no lsn");
        assert!(err.to_string().contains("incremental_lsn"), "{err}");
        assert!(check_spec(&spec(BackupMethod::Physical, Some("1; rm"))).is_err());
        check_spec(&spec(BackupMethod::Physical, Some("44848"))).expect("ok");
    }

    #[test]
    fn dump_command_lines_hold_no_password() {
        let s = super::super::settings::tests::settings();
        let argv = dump_argv(&s, DUMP, Path::new("/run/x/client.cnf"), Some("shop"));
        assert_eq!(argv[1], "--defaults-extra-file=/run/x/client.cnf");
        assert!(argv.ends_with(&["--databases".to_owned(), "shop".to_owned()]));
        assert!(argv.contains(&"--single-transaction".to_owned()));
        let users = dump_argv(&s, DUMP, Path::new("/c"), None);
        assert!(users.contains(&"--system=users".to_owned()));
        assert!(!format!("{argv:?}{users:?}").contains("marker-secret"));
    }
}
