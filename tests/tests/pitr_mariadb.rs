//! Continuous binary log archiving and point-in-time recovery on a real three-node MariaDB
//! cluster with a real S3 server (issue 18):
//! - a writer commits numbered rows; a restore to a GTID has exactly the rows up to that
//!   transaction, and a restore to a time between two commits a second or more apart (the
//!   binary log stamps whole seconds) exactly the rows committed before it;
//! - the archive survives twenty faults (kill -9 of the primary's node, a switchover, a
//!   frozen primary agent; each ends at full redundancy): a restore to the end of the
//!   archive, from the repository alone, has every acknowledged row and no gap is reported;
//! - a replica wiped and seeded from the repository replays the archive after the base backup
//!   and follows the primary with every row, no clone served;
//! - a binary log deleted from the repository is reported as a gap and a restore across it
//!   refuses; bad input (an LSN, a malformed GTID, a time before the oldest backup or after
//!   the archive's end) gets clear errors and writes no directory;
//! - a new cluster bootstrapped from the repository at a point in time has exactly the rows
//!   up to it.

use std::path::Path;
use std::time::{Duration, SystemTime};

use e2e::harness::backup::key_pair;
use e2e::harness::backup::{cli, cli_as};
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::mariadb::pitr::{
    Ack, INTERVAL, archived, backup_now, backup_yaml, full_redundancy, open_repo, wait_archived,
    write_rows,
};
use e2e::mariadb::restored::Restored;
use e2e::mariadb::scenario::settle;

/// Fault rounds: `E2E_PITR_FAULTS` (default 20).
fn faults() -> usize {
    std::env::var("E2E_PITR_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Restores with `args` into `<dir>/<name>`, starts a server on it and returns the rows'
/// numbers; the CLI's exit code, output and the rows.
fn restore_rows(
    c: &MariaCluster,
    keys: &Path,
    name: &str,
    args: &[&str],
) -> (i32, String, Vec<u64>) {
    let target = c.dir().join(name);
    let key = keys.join("key.txt").display().to_string();
    let target_s = target.display().to_string();
    let mut all = vec![
        "restore",
        "--repo",
        "s3",
        "--identity",
        &key,
        "--target-dir",
        &target_s,
    ];
    all.extend_from_slice(args);
    let (code, out, err) = cli(c, c.dir(), &all);
    if code != 0 {
        return (code, format!("{out}{err}"), Vec::new());
    }
    let server = Restored::start(&target, &c.dir().join(format!("{name}-run")));
    let rows = server
        .sql("SELECT n FROM e2e.seq ORDER BY n")
        .expect("read the restored rows");
    let nums = rows.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (code, out, nums)
}

/// Deletes an archived binary log that no other file overlaps, with files after it, after
/// sequence `after` and up to `upto`; the range it held.
fn delete_lone_binlog(s3: &S3Server, c: &MariaCluster, after: u64, upto: u64) -> (u64, u64) {
    let files = archived(s3, c);
    let live: Vec<_> = files.iter().filter(|f| !f.superseded).collect();
    let newest = live.iter().map(|f| f.last).max().unwrap_or(0);
    let lone: Vec<_> = live
        .iter()
        .filter(|f| f.first > after + 5 && f.last <= upto && f.last < newest)
        .filter(|f| {
            !live
                .iter()
                .any(|o| o.name() != f.name() && o.first <= f.last && o.last >= f.first)
        })
        .collect();
    let f = lone
        .get(lone.len() / 2)
        .unwrap_or_else(|| panic!("no archived binary log stands alone: {live:#?}"));
    let (repo, cluster) = open_repo(s3, c);
    let path = repo
        .archive_root(&cluster)
        .expect("root")
        .join("binlog")
        .join(format!("{}.age", f.name()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    use object_store::ObjectStoreExt as _;
    rt.block_on(repo.store().delete(&path))
        .expect("delete a binary log");
    (f.first, f.last)
}

#[test]
fn mariadb_restores_to_a_point_in_time_across_failovers() {
    let s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let recipient = key_pair(keys.path());
    let mut c = MariaCluster::start(
        3,
        MariaOpts {
            durability: "sync",
            extra_yaml: backup_yaml(keys.path(), &s3, &recipient, true),
            ..MariaOpts::default()
        },
    )
    .expect("start the MariaDB cluster");
    let p = settle(&c);
    let mut next = 0;
    let mut acks = Vec::new();
    write_rows(&c, &mut next, 10, &mut acks);
    let base = backup_now(&c, "r1");
    eprintln!("base backup {} at {}", base["id"], base["position"]);

    // A row whose GTID is known (nothing else writes), then a pause of more than a second
    // around a time target: the binary log stamps whole seconds.
    write_rows(&c, &mut next, 20, &mut acks);
    let gtid_row = acks.len() - 1;
    let gtid = c.sql(p, &["SELECT @@gtid_binlog_pos"]).expect("position")[0][0].clone();
    write_rows(&c, &mut next, 10, &mut acks);
    let time_row = acks.len() - 1;
    let after = acks[time_row].acked + Duration::from_millis(1100);
    let at_time = after
        - Duration::from_millis(u64::from(
            after
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_millis(),
        ))
        + Duration::from_millis(500);
    while SystemTime::now() < at_time + Duration::from_millis(600) {
        std::thread::sleep(Duration::from_millis(100));
    }
    write_rows(&c, &mut next, 20, &mut acks);

    // Twenty faults, in turn: kill -9 of the primary's node (its agent restarted, as a
    // service manager would), a planned switchover, a frozen primary agent. Each ends at
    // full redundancy.
    for round in 0..faults() {
        let p = c.primary().expect("a primary");
        std::thread::sleep(INTERVAL);
        let what = match round % 3 {
            0 => {
                c.kill_node(p);
                write_rows(&c, &mut next, 10, &mut acks);
                c.start_agent(p);
                "kill -9"
            }
            1 => {
                let target = (0..3)
                    .filter(|&i| i != p)
                    .find(|&i| {
                        c.key(&format!("nodes/{}", c.name(i)))
                            .is_some_and(|d| d.contains("\"eligible\":true"))
                    })
                    .unwrap_or((p + 1) % 3);
                c.put_key(
                    "switchover",
                    &format!(r#"{{"schema":1,"candidate":"{}"}}"#, c.name(target)),
                );
                let moved = eventually(Duration::from_secs(30), Duration::from_millis(50), || {
                    c.primary().filter(|&q| q != p)
                });
                assert!(
                    moved.is_some(),
                    "switchover from {p} did not happen\n{}",
                    c.logs()
                );
                "switchover"
            }
            _ => {
                c.stop_agent(p);
                let _ = c.wait_new_primary(p, Duration::from_secs(60));
                write_rows(&c, &mut next, 10, &mut acks);
                c.cont_agent(p);
                "frozen agent"
            }
        };
        let q = full_redundancy(&c);
        eprintln!("fault {round} ({what}): primary {p} -> {q}, full redundancy");
        write_rows(&c, &mut next, 10, &mut acks);
    }
    // Everything acknowledged is archived (a few intervals; longer on a loaded machine).
    wait_archived(&c, &s3);

    // 1. To the end of the archive, from the repository alone: every acknowledged row.
    let (code, out, rows) = restore_rows(&c, keys.path(), "latest", &["--latest"]);
    assert_eq!(code, 0, "restore --latest: {out}\n{}", c.logs());
    let missing: Vec<u64> = acks
        .iter()
        .map(|a| a.n)
        .filter(|n| !rows.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "rows missing from the latest restore: {missing:?}\n{out}"
    );
    eprintln!("latest: {out}");

    // 1b. A replica seeded from the repository (`engine.seed: backup`) restores the base
    //     backup (taken before the faults), replays the archived binary logs after it and
    //     follows the primary with every row; the primary serves no clone.
    let q = c.primary().expect("a primary");
    let r = (0..3).find(|&i| i != q).expect("a replica");
    let clones =
        |c: &MariaCluster, i: usize| c.agent_log(i).matches("clone stream complete").count();
    let served: usize = (0..3).map(|i| clones(&c, i)).sum();
    c.kill_node(r);
    c.wipe_node(r);
    c.opts_mut().seed = "backup";
    c.write_config(r).expect("rewrite the config");
    c.start_agent(r);
    let q = full_redundancy(&c);
    let log = c.agent_log(r);
    let since = log.rfind("telemetry listening").unwrap_or(0);
    assert!(
        log[since..].contains("replayed the archived binary logs after it"),
        "the seeded replica did not replay the archive:\n{}",
        &log[since..]
    );
    assert_eq!(
        (0..3).map(|i| clones(&c, i)).sum::<usize>(),
        served,
        "a node served a clone to the seeded replica"
    );
    let all: Vec<u64> = acks.iter().map(|a| a.n).collect();
    let seeded = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        c.sql(r, &["SELECT n FROM e2e.seq"])
            .ok()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| row.first().and_then(|v| v.parse::<u64>().ok()))
                    .collect::<std::collections::HashSet<u64>>()
            })
            .filter(|have| all.iter().all(|n| have.contains(n)))
    });
    assert!(
        seeded.is_some(),
        "the seeded replica of {q} lacks acknowledged rows\n{}",
        c.logs()
    );

    // 2. To a GTID: exactly the rows up to that transaction.
    let want: Vec<u64> = acks[..=gtid_row].iter().map(|a| a.n).collect();
    assert_eq!(
        want,
        (0..=acks[gtid_row].n).collect::<Vec<u64>>(),
        "an attempt before the GTID row failed; the check needs an unbroken run"
    );
    let (code, out, rows) = restore_rows(&c, keys.path(), "at-gtid", &["--gtid", &gtid]);
    assert_eq!(code, 0, "restore --gtid {gtid}: {out}\n{}", c.logs());
    assert_eq!(rows, want, "restore --gtid {gtid}: {out}");

    // 3. To a time in the pause: exactly the rows committed before it.
    let at = humantime::format_rfc3339_millis(at_time).to_string();
    let want: Vec<u64> = acks[..=time_row].iter().map(|a| a.n).collect();
    assert!(acks[time_row + 1].sent > at_time, "the pause was too short");
    let (code, out, rows) = restore_rows(&c, keys.path(), "at-time", &["--time", &at]);
    assert_eq!(code, 0, "restore --time {at}: {out}\n{}", c.logs());
    assert_eq!(rows, want, "restore --time {at}: {out}");
    eprintln!("at {at}: {out}");

    // 4. No gap reported.
    let gaps: Vec<serde_json::Value> = c
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "archive_gap")
        .collect();
    assert!(gaps.is_empty(), "archive gaps reported: {gaps:#?}");

    // 5. Bad input: no directory written.
    for (name, args, code_is, says) in [
        (
            "too-early",
            vec!["--time", "2001-01-01T00:00:00Z"],
            65,
            "is before the consistent point",
        ),
        (
            "too-late",
            vec!["--time", "2100-01-01T00:00:00Z"],
            65,
            "is after the newest archived change",
        ),
        (
            "lsn",
            vec!["--lsn", "0/5000100"],
            65,
            "--lsn is a PostgreSQL position",
        ),
        ("not-a-gtid", vec!["--gtid", "0-1"], 64, "is not one GTID"),
        (
            "gtid-past-end",
            vec!["--gtid", "0-1-99999999"],
            65,
            "is after the end of the archive",
        ),
    ] {
        let (code, out, _) = restore_rows(&c, keys.path(), name, &args);
        assert_eq!(code, code_is, "{name}: {out}");
        assert!(out.contains(says), "{name}: {out}");
        assert!(
            std::fs::read_dir(c.dir().join(name)).map_or(true, |mut d| d.next().is_none()),
            "{name}: the refused restore left data"
        );
    }

    // 6. A binary log lost from the repository while the primary still has it: shipped
    //    again. Once no node holds it any more (binary logs purged everywhere), a loss is a
    //    gap: reported, and a restore to the end refuses, naming it.
    let base_seq: u64 = base["position"]
        .as_str()
        .and_then(|p| p.rsplit('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let small_files = |c: &MariaCluster, next: &mut u64, acks: &mut Vec<Ack>| {
        // A few rows per archive interval: a closed binary log each.
        for _ in 0..4 {
            write_rows(c, next, 3, acks);
            std::thread::sleep(INTERVAL + Duration::from_millis(500));
        }
        wait_archived(c, &s3);
    };
    small_files(&c, &mut next, &mut acks);
    let (first, last) = delete_lone_binlog(&s3, &c, base_seq, u64::MAX);
    let refilled = eventually(Duration::from_secs(90), Duration::from_millis(500), || {
        archived(&s3, &c)
            .iter()
            .any(|f| !f.superseded && f.first <= first && f.last >= last)
            .then_some(())
    });
    assert!(
        refilled.is_some(),
        "the archiver did not ship {first}–{last} again\n{}",
        c.logs()
    );
    let p = c.primary().expect("a primary");
    let purged: u64 = c.sql(p, &["SELECT @@gtid_binlog_pos"]).expect("position")[0][0]
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a GTID");
    for i in 0..3 {
        c.sql(i, &["FLUSH BINARY LOGS"]).expect("flush");
        let active = c.sql(i, &["SHOW MASTER STATUS"]).expect("status")[0][0].clone();
        c.sql(i, &[&format!("PURGE BINARY LOGS TO '{active}'")])
            .expect("purge the binary logs");
    }
    // Files after the purged ones, archived.
    small_files(&c, &mut next, &mut acks);
    let (first, last) = delete_lone_binlog(&s3, &c, base_seq, purged);
    let range = backup::archive::binlog::Gap {
        domain: 0,
        first,
        last,
    }
    .to_string();
    let reported = eventually(Duration::from_secs(90), Duration::from_millis(500), || {
        c.events().into_iter().find(|e| {
            e["kind"] == "archive_gap" && e["detail"].as_str().is_some_and(|d| d.contains(&range))
        })
    });
    assert!(
        reported.is_some(),
        "no archive_gap event names {range}\n{}",
        c.logs()
    );
    // Recorded in the catalog of the node that found it, which `backup list` shows.
    let finder = (0..3)
        .find(|&i| reported.as_ref().is_some_and(|e| e["node"] == c.name(i)))
        .expect("the reporting node");
    let (code, listed, err) = cli_as(&c, finder, c.dir(), &["list", "-o", "json"]);
    assert_eq!(code, 0, "backup list: {err}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    assert!(
        listed["archive_gaps"].as_array().is_some_and(|g| g
            .iter()
            .any(|g| g["detail"].as_str().is_some_and(|d| d.contains(&range)))),
        "the catalog does not record the gap: {listed:#}"
    );
    let (code, out, _) = restore_rows(&c, keys.path(), "over-a-gap", &["--latest"]);
    assert_ne!(code, 0, "a restore across a gap succeeded: {out}");
    assert!(
        out.contains(&range) && out.contains("cannot cross"),
        "{out}"
    );
    c.stop_all();

    // 7. A new cluster (a fresh etcd) bootstrapped from the repository at the GTID's time:
    //    exactly the rows up to the time target, on every node.
    let want: Vec<u64> = acks[..=time_row].iter().map(|a| a.n).collect();
    let c2 = MariaCluster::start(
        2,
        MariaOpts {
            from_backup: Some(format!("{{ repository: s3, time: \"{at}\" }}")),
            extra_yaml: backup_yaml(keys.path(), &s3, &recipient, false),
            ..MariaOpts::default()
        },
    )
    .expect("start the second cluster");
    let p2 = c2.wait_primary(Duration::from_secs(180));
    c2.wait_replicating(1 - p2, p2, Duration::from_secs(120));
    for i in 0..2 {
        let got = eventually(Duration::from_secs(30), Duration::from_millis(300), || {
            c2.sql(i, &["SELECT n FROM e2e.seq ORDER BY n"])
                .ok()
                .map(|rows| {
                    rows.iter()
                        .filter_map(|r| r.first().and_then(|v| v.parse::<u64>().ok()))
                        .collect::<Vec<u64>>()
                })
                .filter(|r| *r == want)
        });
        assert!(
            got.is_some(),
            "node {i} of the new cluster lacks exactly the rows up to {at}\n{}",
            c2.logs()
        );
    }
}
