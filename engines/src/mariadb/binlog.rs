//! The binary log as the change archive (issue 18): the archiver on the primary closes the
//! active binary log every archive interval when it holds a new transaction ([`rotate`],
//! `FLUSH BINARY LOGS`, as PostgreSQL's `archive_timeout` switches WAL segments), and ships
//! the closed files ([`list`]; [`start_seq`] bounds each cheaply), each described by
//! `mariadb-binlog` ([`describe`]: the
//! first and last GTID, the last event's time).
//!
//! A point-in-time recovery ([`recover`]) replays archived files on a restored data
//! directory: a scratch server (socket only, binary logging on so it tells the position it
//! reached), and for each file, in order, `mariadb-binlog --start-position=<reached>` (the
//! overlap between two servers' files is skipped) with the target as `--stop-position` (a
//! GTID, inclusive) or `--stop-datetime` (the binary log stamps whole seconds: events stamped
//! in the target's second or later are not replayed), piped into the `mariadb` client.
//! Replay ends at the first file that stopped short of its end. The data directory's
//! position file then names the position reached, which a node adopting it starts from.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mysql_async::prelude::Queryable as _;
use tokio::io::AsyncBufReadExt as _;

use super::gtid::{Gtid, GtidSet};
use super::scratch::{self, Listen};
use super::settings::MariadbSettings;
use super::tools::{self, failed};
use super::{backup, conn};
use crate::backups::{BinlogFile, Recovered, RecoveryTarget};
use crate::engine::EngineError;

/// MariaDB's binary log reader (package `mariadb-client`).
const BINLOG: &str = "mariadb-binlog";
/// MariaDB's client.
const CLIENT: &str = "mariadb";
/// How long describing one file may take.
const DESCRIBE_LIMIT: Duration = Duration::from_secs(600);
/// How long replaying one file may take.
const REPLAY_LIMIT: Duration = Duration::from_secs(6 * 3600);
/// The scratch server's binary log (in the restored directory, removed after the replay).
const REPLAY_LOG: &str = "autopilot-replay-bin";
/// The replaying scratch server takes the largest packet MariaDB allows (see [`recover`]).
const MAX_PACKET_SERVER: &str = "--max-allowed-packet=1073741824";

/// Closes the active binary log (`FLUSH BINARY LOGS`) when the server's GTID position moved
/// since `since` (the position the last rotation returned; `None`: rotate). The position.
pub async fn rotate(s: &MariadbSettings, since: Option<&str>) -> Result<String, EngineError> {
    let op = "rotate the binary log";
    let mut c = conn::local(s).await?;
    let pos: Option<String> =
        conn::bounded(op, false, c.query_first("SELECT @@gtid_binlog_pos")).await?;
    let pos = pos.unwrap_or_default();
    if since != Some(pos.as_str()) {
        conn::bounded(op, false, c.query_drop("FLUSH BINARY LOGS")).await?;
    }
    let _ = c.disconnect().await;
    Ok(pos)
}

/// Every binary log, oldest first, with its size; the last one is the active one.
pub async fn list(s: &MariadbSettings) -> Result<Vec<(String, u64)>, EngineError> {
    let op = "list the binary logs";
    let mut c = conn::local(s).await?;
    let rows: Vec<(String, u64)> = conn::bounded(op, false, c.query("SHOW BINARY LOGS")).await?;
    let _ = c.disconnect().await;
    Ok(rows)
}

/// The sequence number in `domain` that binary log `name` starts after: its `Gtid_list`
/// event, the server's position when the file was opened (0 when the domain had none).
/// Cheap (the file's first events only): the next file's start bounds a closed file's last
/// transaction without reading it.
pub async fn start_seq(s: &MariadbSettings, name: &str, domain: u32) -> Result<u64, EngineError> {
    let op = "read where a binary log starts";
    let mut c = conn::local(s).await?;
    let rows: Vec<mysql_async::Row> = conn::bounded(
        op,
        false,
        c.query(format!(
            "SHOW BINLOG EVENTS IN {} LIMIT 3",
            conn::quote(name)
        )),
    )
    .await?;
    let _ = c.disconnect().await;
    let list = rows
        .iter()
        .find(|r| conn::text(r, "Event_type").as_deref() == Some("Gtid_list"))
        .and_then(|r| conn::text(r, "Info"))
        .ok_or_else(|| failed(op, format!("{name} has no Gtid_list event among its first")))?;
    gtid_list_seq(&list, domain).map_err(|e| failed(op, format!("{name}: Gtid_list {list:?}: {e}")))
}

/// The last sequence number of `domain` in a `Gtid_list` event's text (`[0-1-5,0-2-9]`):
/// the binary log *state* lists one GTID per domain and server, so a domain may appear more
/// than once after failovers; 0 when it does not appear.
fn gtid_list_seq(list: &str, domain: u32) -> Result<u64, String> {
    let inner = list.trim().trim_start_matches('[').trim_end_matches(']');
    let mut seq = 0;
    for element in inner.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let g: Gtid = element.parse().map_err(|e| format!("{element:?}: {e}"))?;
        if g.domain == domain {
            seq = seq.max(g.seq);
        }
    }
    Ok(seq)
}

/// Where binary log `name` is (the server writes them into its data directory).
pub fn path_of(s: &MariadbSettings, name: &str) -> PathBuf {
    s.datadir.join(name)
}

/// Reads binary log `path` with `mariadb-binlog`: its transactions' first and last GTID
/// (`None` when it holds none) and its last event's time.
pub async fn describe(s: &MariadbSettings, path: &Path) -> Result<BinlogFile, EngineError> {
    let op = "read a binary log (mariadb-binlog)";
    let stderr = std::env::temp_dir().join(tools::unique("autopilot-binlog-describe"));
    let argv = vec![
        BINLOG.to_owned(),
        "--no-defaults".to_owned(),
        path.display().to_string(),
    ];
    let mut env = s.env.clone();
    env.push(("TZ".to_owned(), "UTC".to_owned()));
    let result = async {
        let (mut child, pipe) =
            tools::spawn_logged(op, &env, None, argv, &stderr, handlers::Piped::Stdout)?;
        let handlers::Pipe::Stdout(out) = pipe else {
            return Err(failed(op, format!("{BINLOG}'s output pipe is missing")));
        };
        let read = async {
            let mut lines = tokio::io::BufReader::new(out).lines();
            let mut seen = Seen::default();
            while let Some(line) = lines.next_line().await? {
                seen.line(&line);
            }
            Ok::<_, std::io::Error>(seen)
        };
        let seen = match tokio::time::timeout(DESCRIBE_LIMIT, read).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(e)) => {
                child
                    .stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5))
                    .await;
                return Err(failed(op, format!("{}: {e}", path.display())));
            }
            Err(_) => {
                child
                    .stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5))
                    .await;
                return Err(failed(
                    op,
                    format!("{} took over {DESCRIBE_LIMIT:?}", path.display()),
                ));
            }
        };
        tools::wait_tool(op, BINLOG, &mut child, Duration::from_secs(30), &stderr).await?;
        Ok(seen)
    }
    .await;
    let _ = std::fs::remove_file(&stderr);
    let seen = result?;
    Ok(BinlogFile {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        first: seen.first.map(|g| (g.domain, g.server, g.seq)),
        last: seen.last.map(|g| (g.domain, g.server, g.seq)),
        domains: seen.domains,
        last_time: seen.last_time,
    })
}

/// What the lines of `mariadb-binlog`'s output said so far.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    first: Option<Gtid>,
    last: Option<Gtid>,
    domains: Vec<u32>,
    last_time: Option<u64>,
}

impl Seen {
    /// An event header: `#261204 11:19:27 server id 3  end_log_pos 413 CRC32 0x…  GTID 0-3-4
    /// trans` (the hour space-padded below 10).
    fn line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix('#') else {
            return;
        };
        let Some((date, rest)) = rest.split_once(' ') else {
            return;
        };
        if date.len() != 6 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return;
        }
        let rest = rest.trim_start();
        let Some((time, rest)) = rest.split_once(' ') else {
            return;
        };
        if !rest.starts_with("server id") {
            return;
        }
        if let Some(t) = unix_time(date, time) {
            self.last_time = Some(self.last_time.map_or(t, |l| l.max(t)));
        }
        if let Some((_, gtid)) = rest.split_once("\tGTID ")
            && let Some(g) = gtid.split_whitespace().next()
            && let Ok(g) = g.parse::<Gtid>()
        {
            self.first.get_or_insert(g);
            self.last = Some(g);
            if !self.domains.contains(&g.domain) {
                self.domains.push(g.domain);
            }
        }
    }
}

/// `261204`, `11:19:27` (UTC) as unix seconds.
fn unix_time(date: &str, time: &str) -> Option<u64> {
    let mut hms = time.split(':');
    let (h, m, s) = (hms.next()?, hms.next()?, hms.next()?);
    let text = format!(
        "20{}-{}-{}T{:02}:{}:{}Z",
        &date[..2],
        &date[2..4],
        &date[4..],
        h.trim().parse::<u32>().ok()?,
        m,
        s
    );
    humantime::parse_rfc3339(&text)
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Replays the binary logs in `archive_dir` (in name order) on the restored data directory
/// `dir` up to `target` (see the module docs), then records the position reached in the
/// directory's position file.
pub async fn recover(
    s: &MariadbSettings,
    dir: &Path,
    archive_dir: &Path,
    target: &RecoveryTarget,
) -> Result<Recovered, EngineError> {
    let op = "replay the archived binary logs";
    let base = super::clone::backup_position(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(archive_dir)
        .map_err(|e| failed(op, format!("{}: {e}", archive_dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut stop_gtid: Option<Gtid> = None;
    let stop: Vec<String> = match target {
        RecoveryTarget::Latest => vec![],
        RecoveryTarget::Gtid(g) => {
            let set = GtidSet::parse(g)
                .map_err(|e| failed(op, format!("{g:?} is not a GTID (DOMAIN-SERVER-SEQ): {e}")))?;
            let mut one = set.iter();
            stop_gtid = match (one.next(), one.next()) {
                (Some(g), None) => Some(*g),
                _ => None,
            };
            vec![format!("--stop-position={set}")]
        }
        RecoveryTarget::Time(t) => {
            let at = humantime::parse_rfc3339_weak(t)
                .map_err(|e| failed(op, format!("{t:?} is not an RFC 3339 time: {e}")))?;
            let text = humantime::format_rfc3339_seconds(at).to_string();
            vec![format!(
                "--stop-datetime={}",
                text.trim_end_matches('Z').replace('T', " ")
            )]
        }
        RecoveryTarget::Lsn(_) => {
            return Err(failed(
                op,
                "MariaDB has no LSN target: name a GTID (--gtid) or a time (--time)".to_owned(),
            ));
        }
    };
    let owner = backup::run_as(s)?;
    tools::give_tree(archive_dir, owner)?;
    let extra = vec![
        format!("--log-bin={}", dir.join(REPLAY_LOG).display()),
        "--gtid-strict-mode=ON".to_owned(),
        format!("--gtid-domain-id={}", s.gtid_domain_id),
        // `mariadb-binlog` prints a large transaction's row events as `BINLOG` statements
        // far over the default 16 MiB packet (seen at 25,000 rows of 1 KiB per statement).
        MAX_PACKET_SERVER.to_owned(),
    ];
    let scratch = scratch::start_with(s, dir, Listen::SocketOnly, &s.admin, &extra).await?;
    let cnf = scratch.dir().join("replay.cnf");
    backup::write_private(&cnf, &backup::client_options(&s.admin), None)?;
    let replayed = async {
        let mut reached = base.clone();
        for file in &files {
            let described = describe(s, file).await?;
            // A file named to end before its content does (the shared part of a superseded
            // one) is replayed up to its named last transaction only.
            let cap = named_last(file).filter(|cap| {
                described
                    .last
                    .is_some_and(|(d, _, seq)| d == cap.domain && seq > cap.seq)
            });
            let script = "set -o pipefail; b=\"$1\"; c=\"$2\"; cnf=\"$3\"; sock=\"$4\"; shift 4; \
                          \"$b\" --no-defaults \"$@\" | \"$c\" --defaults-extra-file=\"$cnf\" --socket=\"$sock\" --binary-mode --max-allowed-packet=1G";
            let mut argv = vec![
                "bash".to_owned(),
                "-c".to_owned(),
                script.to_owned(),
                "replay".to_owned(),
                BINLOG.to_owned(),
                CLIENT.to_owned(),
                cnf.display().to_string(),
                scratch.socket().display().to_string(),
            ];
            if !reached.is_empty() {
                argv.push(format!("--start-position={reached}"));
            }
            match (cap, target) {
                // The earlier of the two GTIDs.
                (Some(cap), RecoveryTarget::Gtid(_)) => {
                    let earlier = stop_gtid.filter(|t| t.seq <= cap.seq).unwrap_or(cap);
                    argv.push(format!("--stop-position={earlier}"));
                }
                (Some(cap), _) => {
                    argv.extend(stop.iter().cloned());
                    argv.push(format!("--stop-position={cap}"));
                }
                (None, _) => argv.extend(stop.iter().cloned()),
            }
            argv.push(file.display().to_string());
            let mut env = s.env.clone();
            env.push(("TZ".to_owned(), "UTC".to_owned()));
            tools::run_tool(op, &env, None, argv, REPLAY_LIMIT).await?;
            let now = position(&scratch, &s.admin).await?;
            let before = reached.clone();
            reached = merge(&reached, &now);
            // A file that stopped short of its end: the target is reached.
            let short = described.last.is_some_and(|(d, _, seq)| {
                let end = cap.map_or(seq, |c| c.seq);
                reached.get(d).is_none_or(|g| g.seq < end)
            });
            tracing::debug!(file = %file.display(), from = %before, to = %reached, short, "replayed an archived binary log");
            if short {
                break;
            }
        }
        Ok::<_, EngineError>(reached)
    }
    .await;
    let log_tail = scratch.log_tail();
    let stopped = scratch.stop().await;
    let reached = replayed.map_err(|e| match e {
        EngineError::Failed { operation, reason } => EngineError::Failed {
            operation,
            reason: format!("{reason}; the scratch server's log: {log_tail}"),
        },
        e => e,
    })?;
    stopped?;
    // The replay's own binary log is not the cluster's.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(REPLAY_LOG) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    super::clone::record_position(dir, &reached)?;
    Ok(Recovered {
        position: reached.to_string(),
        last_commit: None,
    })
}

/// The last transaction the name of archived file `file` says it holds: the replay's
/// files are named `<index>.<archive name>`, the archive name
/// `<domain>-<first seq>-<last seq>-<time>.<server id>.<file>` (the backup crate's
/// `archive::binlog`). `None` for another name.
fn named_last(file: &Path) -> Option<Gtid> {
    let name = file.file_name()?.to_str()?;
    let (_index, rest) = name.split_once('.')?;
    let (range, rest) = rest.split_once('.')?;
    let (server, _) = rest.split_once('.')?;
    let mut parts = range.split('-');
    let (Some(domain), Some(_first), Some(last), Some(_time), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some(Gtid {
        domain: domain.parse().ok()?,
        server: server.parse().ok()?,
        seq: last.parse().ok()?,
    })
}

/// The scratch server's binary log position (what it replayed).
async fn position(
    scratch: &scratch::Scratch,
    account: &super::settings::Account,
) -> Result<GtidSet, EngineError> {
    let op = "read the replayed position";
    let mut c = conn::on_socket(&scratch.socket(), account)
        .await
        .map_err(|e| conn::failed(op, &e, true))?;
    let pos: Option<String> =
        conn::bounded(op, false, c.query_first("SELECT @@gtid_binlog_pos")).await?;
    let _ = c.disconnect().await;
    GtidSet::parse(pos.as_deref().unwrap_or("")).map_err(|e| failed(op, e.to_string()))
}

/// Domain by domain, the further of the two.
fn merge(a: &GtidSet, b: &GtidSet) -> GtidSet {
    GtidSet::from_gtids(
        a.iter()
            .chain(b.iter())
            .fold(
                std::collections::BTreeMap::<u32, Gtid>::new(),
                |mut m, g| {
                    let e = m.entry(g.domain).or_insert(*g);
                    if g.seq > e.seq {
                        *e = *g;
                    }
                    m
                },
            )
            .into_values(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_file_s_name_gives_its_last_transaction() {
        let named = |n: &str| named_last(Path::new("/x").join(n).as_path());
        assert_eq!(
            named(
                "000002.0-00000000000000000011-00000000000000000016-1796383167.3.mariadb-bin.000007"
            ),
            Some("0-3-16".parse().expect("gtid"))
        );
        for bad in [
            "",
            "000002",
            "000002.0-1-2.3.f",
            "000002.0-1-x-5.3.f",
            "000002.0-1-2-5.y.f",
        ] {
            assert_eq!(named(bad), None, "{bad}");
        }
    }

    #[test]
    fn event_headers_give_gtids_and_times() {
        let mut seen = Seen::default();
        for line in [
            "#261204 11:19:27 server id 3  end_log_pos 256 CRC32 0x5d0c16f2 \tStart: binlog v 4",
            "#261204 11:19:27 server id 3  end_log_pos 299 CRC32 0x48e4544c \tGtid list [0-3-3]",
            "#261204 11:19:27 server id 3  end_log_pos 413 CRC32 0x44975910 \tGTID 0-3-4 trans",
            "# at 413",
            "#261204  9:05:03 server id 3  end_log_pos 589 CRC32 0xe8cace99 \tXid = 5",
            "#261204 11:19:29 server id 2  end_log_pos 631 CRC32 0xd12f211c \tGTID 0-2-5 ddl",
            "BINLOG '",
        ] {
            seen.line(line);
        }
        assert_eq!(seen.first, Some("0-3-4".parse().expect("gtid")));
        assert_eq!(seen.last, Some("0-2-5".parse().expect("gtid")));
        assert_eq!(seen.domains, [0]);
        assert_eq!(
            seen.last_time,
            unix_time("261204", "11:19:29"),
            "the latest event's time"
        );
        assert_eq!(
            unix_time("261204", " 9:05:03").map(|t| t % 86_400),
            Some(9 * 3600 + 5 * 60 + 3)
        );
        let mut none = Seen::default();
        none.line("#261204 11:19:27 server id 3  end_log_pos 256 CRC32 0x5d0c16f2 \tStart");
        assert_eq!((none.first, none.last), (None, None));
    }

    #[test]
    fn a_gtid_list_gives_the_domain_s_last_sequence_across_servers() {
        assert_eq!(gtid_list_seq("[]", 0), Ok(0));
        assert_eq!(gtid_list_seq("[0-3-3]", 0), Ok(3));
        assert_eq!(
            gtid_list_seq("[0-1422144387-48,0-1438922006-98,1-2-500]", 0),
            Ok(98)
        );
        assert_eq!(gtid_list_seq("[1-2-500]", 0), Ok(0));
        assert!(gtid_list_seq("[0-x-1]", 0).is_err());
    }

    #[test]
    fn merging_positions_keeps_the_further_per_domain() {
        let a = GtidSet::parse("0-1-10,1-2-3").expect("a");
        let b = GtidSet::parse("0-3-12").expect("b");
        assert_eq!(merge(&a, &b).to_string(), "0-3-12,1-2-3");
        assert_eq!(merge(&b, &GtidSet::default()), b);
    }
}
