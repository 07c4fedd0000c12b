//! Continuous WAL archiving and point-in-time recovery on a real three-node PostgreSQL
//! cluster with a real S3 server (issue 18):
//! - a writer commits numbered rows and notes when each was sent and acknowledged; a restore
//!   to a time between two commits has exactly the rows committed before it;
//! - the archive survives twenty failovers (kill -9, switchover, a frozen primary agent; each
//!   ends at full redundancy): a restore to the end of the archive, from the repository
//!   alone, has every acknowledged row, and the archive reports no gap;
//! - bad input: a target before the oldest backup, a malformed target: clear errors, no data
//!   directory written.

use std::time::Duration;

use e2e::harness::backup::cli_as;
use e2e::harness::backup::key_pair;
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::pitr::{
    INTERVAL, backup_now, backup_yaml, open_repo, restore_rows, wait_archived, write_rows,
};
use e2e::postgres::scenario::{settled, start};
use e2e::postgres::workload::TABLE;

/// Fault rounds: `E2E_PITR_FAULTS` (default 20).
fn faults() -> usize {
    std::env::var("E2E_PITR_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Deletes a WAL segment from the middle of the newest timeline in the S3 archive; its name.
fn delete_middle_segment(s3: &S3Server) -> String {
    let (repo, cluster) = open_repo(s3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use backup::archive::wal::{WalFile, parse};
        let files = backup::archive::list(&repo, &cluster, backup::archive::Kind::Wal)
            .await
            .expect("list the archive");
        let segments: Vec<(u32, String)> = files
            .iter()
            .filter_map(|f| match parse(&f.name) {
                Some(WalFile::Segment { timeline, .. }) => Some((timeline, f.name.clone())),
                _ => None,
            })
            .collect();
        // The timeline with the most segments (all came after the base backup): its middle
        // one, so that the timeline has segments on both sides of the hole.
        let mut by_tli: std::collections::BTreeMap<u32, Vec<&String>> = Default::default();
        for (t, n) in &segments {
            by_tli.entry(*t).or_default().push(n);
        }
        let (tli, on) = by_tli
            .iter()
            .filter(|(t, _)| **t > 2)
            .max_by_key(|(_, v)| v.len())
            .expect("timelines after the base");
        assert!(on.len() >= 3, "too few segments on timeline {tli}: {on:?}");
        let name = on[on.len() / 2].clone();
        let path = repo
            .archive_root(&cluster)
            .expect("root")
            .join("wal")
            .join(format!("{name}.age"));
        use object_store::ObjectStoreExt as _;
        repo.store().delete(&path).await.expect("delete a segment");
        name
    })
}

#[test]
fn postgres_restores_to_a_point_in_time_across_failovers() {
    let s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let recipient = key_pair(keys.path());
    let c = start(
        3,
        PgOpts {
            durability: "sync",
            extra_yaml: backup_yaml(keys.path(), &s3, &recipient),
            ..PgOpts::default()
        },
    );
    let mut c = c;
    let p = settled(&c);
    let _ = p;
    let mut next = 0;
    let mut acks = Vec::new();
    write_rows(&c, &mut next, 10, &mut acks);
    let base = backup_now(&c, "r1");
    eprintln!("base backup {} at {}", base["id"], base["position"]);

    // Numbered rows with their times; then faults, each followed by more rows.
    write_rows(&c, &mut next, 40, &mut acks);
    // Twenty faults, in turn: kill -9 of the primary's node (its agent restarted, as a
    // service manager would), a planned switchover, a frozen primary agent (node loss:
    // its lease expires; it thaws and rejoins). Each ends at full redundancy.
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
        let q = c.wait_primary(Duration::from_secs(60));
        for i in (0..3).filter(|&i| i != q) {
            c.wait_streaming(i, q, Duration::from_secs(120));
        }
        eprintln!("fault {round} ({what}): primary {p} -> {q}, full redundancy");
        write_rows(&c, &mut next, 10, &mut acks);
    }
    // Everything acknowledged is archived (a few intervals; longer on a loaded machine).
    wait_archived(&c, &s3);

    // 1. To the end of the archive, from the repository alone: every acknowledged row.
    let (code, out, rows) = restore_rows(&c, keys.path(), "latest", &["--latest"]);
    assert_eq!(code, 0, "restore --latest: {out}\n{}", c.logs());
    let want: Vec<u64> = acks.iter().map(|a| a.n).collect();
    let missing: Vec<u64> = want.iter().copied().filter(|n| !rows.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "rows missing from the latest restore: {missing:?}\n{out}"
    );
    eprintln!("latest: {out}");

    // 1b. A standby seeded from the repository replays the archive before it streams: it
    //     restores the base backup (taken before the twenty faults), adds the archived WAL
    //     since (many timelines), and follows the primary with every row; no clone.
    let q = c.primary().expect("a primary");
    let r = (0..3).find(|&i| i != q).expect("a standby");
    c.kill_node(r);
    c.wipe_node(r);
    c.reconfigure(
        r,
        &PgOpts {
            durability: "sync",
            seed: "backup",
            extra_yaml: backup_yaml(keys.path(), &s3, &recipient),
            ..PgOpts::default()
        },
    );
    c.start_agent(r);
    let q = c.wait_primary(Duration::from_secs(60));
    c.wait_streaming(r, q, Duration::from_secs(180));
    let log = c.agent_log(r);
    let since = log.rfind("telemetry listening").unwrap_or(0);
    assert!(
        log[since..].contains("added the archived WAL after the backup"),
        "the seeded standby did not replay the archive:\n{}",
        &log[since..]
    );
    assert!(
        !log[since..].contains("cloned the primary"),
        "the seeded standby cloned the primary:\n{}",
        &log[since..]
    );
    let all: Vec<u64> = acks.iter().map(|a| a.n).collect();
    let seeded = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        c.sql()
            .query(
                c.pg_port(r),
                &format!("SELECT seq FROM {TABLE}"),
                Duration::from_secs(5),
            )
            .ok()
            .map(|rows| {
                rows.iter()
                    .filter_map(|row| row.first().cloned().flatten())
                    .filter_map(|v| v.parse::<u64>().ok())
                    .collect::<std::collections::HashSet<u64>>()
            })
            .filter(|have| all.iter().all(|n| have.contains(n)))
    });
    assert!(
        seeded.is_some(),
        "the seeded standby lacks acknowledged rows\n{}",
        c.logs()
    );

    // 2. To a time between two commits (well after the base backup): exactly the rows before.
    let k = 30;
    let (a, b) = (&acks[k], &acks[k + 1]);
    let mid = a.acked + (b.sent.duration_since(a.acked).unwrap_or_default() / 2);
    let at = humantime::format_rfc3339_millis(mid).to_string();
    let (code, out, rows) = restore_rows(&c, keys.path(), "at-time", &["--time", &at]);
    assert_eq!(code, 0, "restore --time {at}: {out}\n{}", c.logs());
    let want: Vec<u64> = acks[..=k].iter().map(|a| a.n).collect();
    assert_eq!(
        want,
        (0..=acks[k].n).collect::<Vec<u64>>(),
        "an attempt before row {k} failed; the check needs an unbroken run"
    );
    assert_eq!(rows, want, "restore --time {at}: {out}");
    eprintln!("at {at}: {out}");

    // 3. No gap reported.
    let gaps: Vec<serde_json::Value> = c
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "archive_gap")
        .collect();
    assert!(gaps.is_empty(), "archive gaps reported: {gaps:#?}");

    // 4. Bad input: before the oldest backup; not a time. No directory written.
    let (code, out, _) = restore_rows(
        &c,
        keys.path(),
        "too-early",
        &["--time", "2001-01-01T00:00:00Z"],
    );
    assert_ne!(code, 0);
    assert!(out.contains("is before the consistent point"), "{out}");
    assert!(!c.dir().join("too-early").exists());
    let (code, out, _) = restore_rows(&c, keys.path(), "not-a-time", &["--time", "yesterday"]);
    assert_eq!(code, 64, "{out}");
    assert!(out.contains("is not an RFC 3339 time"), "{out}");
    assert!(!c.dir().join("not-a-time").exists());

    // 5. A segment lost from the repository in the middle of the archive: the archiver
    //    reports the gap (event), and a restore to the end refuses, naming it.
    let lost = delete_middle_segment(&s3);
    let reported = eventually(Duration::from_secs(90), Duration::from_millis(500), || {
        c.events().into_iter().find(|e| {
            e["kind"] == "archive_gap" && e["detail"].as_str().is_some_and(|d| d.contains(&lost))
        })
    });
    assert!(
        reported.is_some(),
        "no archive_gap event names {lost}\n{}",
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
            .any(|g| g["detail"].as_str().is_some_and(|d| d.contains(&lost)))),
        "the catalog does not record the gap: {listed:#}"
    );
    let (code, out, _) = restore_rows(&c, keys.path(), "over-a-gap", &["--latest"]);
    assert_ne!(code, 0, "a restore across a gap succeeded: {out}");
    assert!(out.contains(&lost) && out.contains("cannot cross"), "{out}");
    assert!(
        std::fs::read_dir(c.dir().join("over-a-gap")).map_or(true, |mut d| d.next().is_none()),
        "the refused restore left data"
    );
    drop(c);

    // 6. A new cluster (a fresh etcd) bootstrapped from the repository at that point in time
    //    (a staging copy as of then): exactly the same rows; it archives nothing of its own.
    let yaml = backup_yaml(keys.path(), &s3, &recipient).replace(
        &format!("  archive: {{ interval: {}s }}\n", INTERVAL.as_secs()),
        "",
    );
    let c2 = start(
        2,
        PgOpts {
            from_backup: Some(format!("{{ repository: s3, time: \"{at}\" }}")),
            extra_yaml: yaml,
            ..PgOpts::default()
        },
    );
    let p2 = c2.wait_primary(Duration::from_secs(180));
    c2.wait_streaming(1 - p2, p2, Duration::from_secs(120));
    let got = eventually(Duration::from_secs(30), Duration::from_millis(300), || {
        c2.sql()
            .query(
                c2.pg_port(1 - p2),
                &format!("SELECT seq FROM {TABLE} ORDER BY seq"),
                Duration::from_secs(5),
            )
            .ok()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.first().cloned().flatten())
                    .filter_map(|v| v.parse::<u64>().ok())
                    .collect::<Vec<u64>>()
            })
            .filter(|r| *r == want)
    });
    assert!(
        got.is_some(),
        "the new cluster's replica lacks exactly the rows up to {at}\n{}",
        c2.logs()
    );
}
