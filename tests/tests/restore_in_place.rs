//! Rewinding a whole cluster in place after a bad deploy (issue 18), on real three-node
//! MariaDB and PostgreSQL clusters with a real S3 server, the coordinator and `autopilotctl`:
//! - `autopilotctl restore CLUSTER --time T --confirm --wait` puts the cluster in maintenance
//!   and asks its primary, which restores the base backup and the archive to T beside its
//!   data while it still serves, swaps it in (the old data directory kept aside), becomes
//!   the primary of term 2 of the cluster's identity and ends the maintenance;
//! - the other nodes, whose data is of term 1, rebuild from it and follow it: every node has
//!   exactly the rows committed before T, and takes new writes;
//! - the archive goes on from the restored position: what the old branch archived past it is
//!   superseded, and a restore to the end of the archive from the repository alone has the
//!   restored rows and the new ones, none of the rewound ones;
//! - without `--confirm` nothing is asked, and the cluster then fails over as before (a node
//!   killed, the agent restarted: full redundancy).
//!
//! PostgreSQL ends the restore on a new timeline; its archive goes on there.

use std::time::{Duration, SystemTime};

use e2e::harness::backup::cli;
use e2e::harness::backup::key_pair;
use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, ctl};
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::mariadb::pitr::{
    Ack, INTERVAL, archived, backup_now, backup_yaml, full_redundancy, wait_archived, write_rows,
};
use e2e::mariadb::restored::Restored;
use e2e::mariadb::scenario::{same_rows_everywhere, settle};

/// The rows of node `i`, in order.
fn rows(c: &MariaCluster, i: usize) -> Option<Vec<u64>> {
    c.sql(i, &["SELECT n FROM e2e.seq ORDER BY n"])
        .ok()
        .map(|r| r.iter().filter_map(|l| l[0].parse().ok()).collect())
}

/// Waits a whole second boundary and a half past it (the binary log stamps whole seconds),
/// with nothing written meanwhile; that time.
fn quiet_point() -> SystemTime {
    let now = SystemTime::now() + Duration::from_millis(1100);
    let ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_millis();
    let at = now - Duration::from_millis(u64::from(ms)) + Duration::from_millis(500);
    while SystemTime::now() < at + Duration::from_millis(600) {
        std::thread::sleep(Duration::from_millis(100));
    }
    at
}

#[test]
fn mariadb_cluster_rewinds_in_place_to_a_time_and_every_node_follows_the_new_term() {
    let s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let recipient = key_pair(keys.path());
    // A long archive interval: the binary log that holds the restore point most likely
    // also holds rewound transactions (no rotation in the quiet second), so the restored
    // primary's archiver keeps that file's shared part live (a copy named up to the
    // restored position) and the restore to the archive's end replays it only that far.
    let yaml = backup_yaml(keys.path(), &s3, &recipient, true).replace(
        &format!("interval: {}s", INTERVAL.as_secs()),
        "interval: 10s",
    );
    let mut c = MariaCluster::start(
        3,
        MariaOpts {
            durability: "sync",
            extra_yaml: yaml,
            ..MariaOpts::default()
        },
    )
    .expect("start the MariaDB cluster");
    let p = settle(&c);
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let cluster = c.cluster_id();

    let mut next = 0;
    let mut acks: Vec<Ack> = Vec::new();
    write_rows(&c, &mut next, 10, &mut acks);
    let base = backup_now(&c, "r1");
    eprintln!("base backup {} at {}", base["id"], base["position"]);
    write_rows(&c, &mut next, 20, &mut acks);
    // One transaction of 20 MiB: `mariadb-binlog` prints it as a statement over the default
    // 16 MiB packet, which the replay must take (the bench found it).
    c.sql(
        p,
        &[
            "CREATE TABLE e2e.big (b LONGBLOB)",
            "INSERT INTO e2e.big SELECT REPEAT('x', 1048576) FROM e2e.seq_1_to_20",
        ],
    )
    .expect("a large transaction");
    let kept = acks.len();
    let t = quiet_point();
    let when = humantime::format_rfc3339_millis(t).to_string();
    // The bad deploy: more rows, and a statement that destroys some.
    write_rows(&c, &mut next, 20, &mut acks);
    c.sql(p, &["DELETE FROM e2e.seq WHERE n < 5"])
        .expect("the bad deploy");
    wait_archived(&c, &s3);
    let want: Vec<u64> = acks[..kept].iter().map(|a| a.n).collect();
    assert!(acks[..kept].iter().all(|a| a.acked < t));
    assert!(acks[kept..].iter().all(|a| a.sent > t));

    // Without --confirm nothing is asked.
    let (code, _, err) = ctl(&["restore", &cluster, "--time", &when], &env, T);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("every node"), "{err}");
    assert!(c.key("maintenance").is_none() && c.key(&format!("requests/{}", c.name(p))).is_none());

    // The restore, waited for.
    let asked = std::time::Instant::now();
    let (code, out, err) = ctl(
        &[
            "restore",
            &cluster,
            "--time",
            &when,
            "--confirm",
            "--wait",
            "300",
        ],
        &env,
        Duration::from_secs(320),
    );
    assert_eq!(code, 0, "restore: {out}{err}\n{}", c.logs());
    eprintln!("restored in place in {:?}: {out}", asked.elapsed());

    // Term 2, recorded; the maintenance the restore began is over; the same primary.
    let init: serde_json::Value =
        serde_json::from_str(&c.key("initialized").expect("initialized")).expect("JSON");
    assert_eq!(init["term"], 2, "{init:#}");
    assert!(
        eventually(Duration::from_secs(10), Duration::from_millis(200), || c
            .key("maintenance")
            .is_none()
            .then_some(()))
        .is_some(),
        "maintenance still on: {:?}",
        c.key("maintenance")
    );
    let q = c.wait_primary(Duration::from_secs(30));
    assert_eq!(q, p, "the primary restored and stayed primary");
    assert_eq!(
        rows(&c, p),
        Some(want.clone()),
        "the primary's rows after the restore"
    );
    assert_eq!(
        c.sql(p, &["SELECT COUNT(*), SUM(LENGTH(b)) FROM e2e.big"])
            .expect("the large transaction")[0],
        vec!["20".to_owned(), (20u64 << 20).to_string()]
    );
    // The old data directory is kept aside.
    let data = format!("data-{}", p + 1);
    let aside: Vec<String> = std::fs::read_dir(c.dir())
        .expect("read the cluster's directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&data) && n.contains("aside"))
        .collect();
    assert!(
        !aside.is_empty(),
        "no {data} kept aside in {}",
        c.dir().display()
    );

    // The others rebuild for term 2 and follow: the same rows everywhere.
    for i in (0..3).filter(|&i| i != p) {
        let term = eventually(Duration::from_secs(120), Duration::from_millis(300), || {
            let doc: serde_json::Value =
                serde_json::from_str(&c.key(&format!("nodes/{}", c.name(i)))?).ok()?;
            (doc["term"] == 2 && doc["role"] == "replica").then_some(())
        });
        assert!(
            term.is_some(),
            "node {i} did not rebuild for term 2\n{}",
            c.logs()
        );
        c.wait_replicating(i, p, Duration::from_secs(60));
        assert_eq!(rows(&c, i), Some(want.clone()), "node {i}'s rows");
    }
    let events = c.events();
    assert!(
        events.iter().any(|e| e["kind"] == "new_term"),
        "no new_term event: {events:#?}"
    );

    // New writes go on and replicate.
    let mut after: Vec<Ack> = Vec::new();
    write_rows(&c, &mut next, 10, &mut after);
    same_rows_everywhere(&c, p);

    // The archive goes on from the restored position: the rewound branch is superseded, and
    // a restore to its end has the restored rows and the new ones only.
    wait_archived(&c, &s3);
    let files = archived(&s3, &c);
    assert!(
        files.iter().any(|f| f.superseded),
        "nothing of the rewound branch was marked superseded"
    );
    // Whether a file held both sides of the restore point (its shared part kept live).
    let spanned = files.iter().any(|k| {
        !k.superseded
            && files
                .iter()
                .any(|s| s.superseded && s.file == k.file && s.first == k.first && s.last > k.last)
    });
    eprintln!("a binary log spanned the restore point: {spanned}");
    let target = c.dir().join("latest");
    let key = keys.path().join("key.txt").display().to_string();
    let (code, out, err) = cli(
        &c,
        c.dir(),
        &[
            "restore",
            "--repo",
            "s3",
            "--identity",
            &key,
            "--target-dir",
            &target.display().to_string(),
            "--latest",
        ],
    );
    assert_eq!(code, 0, "restore --latest: {out}{err}");
    let server = Restored::start(&target, &c.dir().join("latest-run"));
    let got: Vec<u64> = server
        .sql("SELECT n FROM e2e.seq ORDER BY n")
        .expect("read the restored rows")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut expected = want.clone();
    expected.extend(after.iter().map(|a| a.n));
    assert_eq!(got, expected, "the archive's end after the restore\n{out}");
    drop(server);

    // The cluster fails over as before: the restored primary's node lost, then back.
    c.kill_node(p);
    let (q, _) = c.wait_new_primary(p, Duration::from_secs(60));
    write_rows(&c, &mut next, 5, &mut after);
    c.start_agent(p);
    let q2 = full_redundancy(&c);
    assert_eq!(q, q2);
    same_rows_everywhere(&c, q2);
}

const T: Duration = Duration::from_secs(30);

#[test]
fn postgres_cluster_rewinds_in_place_to_a_time_and_every_node_follows_the_new_term() {
    use e2e::postgres::cluster::{PgCluster, PgOpts};
    use e2e::postgres::pitr as pg;
    use e2e::postgres::workload::TABLE;
    let s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let recipient = key_pair(keys.path());
    let mut c = e2e::postgres::scenario::start(
        3,
        PgOpts {
            durability: "sync",
            extra_yaml: pg::backup_yaml(keys.path(), &s3, &recipient),
            ..PgOpts::default()
        },
    );
    let p = e2e::postgres::scenario::settled(&c);
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let cluster = "e2e/pg/main";
    let pg_rows = |c: &PgCluster, i: usize| -> Option<Vec<u64>> {
        c.sql()
            .query(
                c.pg_port(i),
                &format!("SELECT seq FROM {TABLE} ORDER BY seq"),
                Duration::from_secs(5),
            )
            .ok()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.first().cloned().flatten())
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
    };

    let mut next = 0;
    let mut acks: Vec<pg::Ack> = Vec::new();
    pg::write_rows(&c, &mut next, 10, &mut acks);
    let base = pg::backup_now(&c, "r1");
    eprintln!("base backup {} at {}", base["id"], base["position"]);
    pg::write_rows(&c, &mut next, 20, &mut acks);
    let kept = acks.len();
    let t = quiet_point();
    let when = humantime::format_rfc3339_millis(t).to_string();
    pg::write_rows(&c, &mut next, 20, &mut acks);
    c.sql()
        .query(
            c.pg_port(p),
            &format!("DELETE FROM {TABLE} WHERE seq < 5"),
            Duration::from_secs(5),
        )
        .expect("the bad deploy");
    pg::wait_archived(&c, &s3);
    let want: Vec<u64> = acks[..kept].iter().map(|a| a.n).collect();
    assert!(acks[..kept].iter().all(|a| a.acked < t));
    assert!(acks[kept..].iter().all(|a| a.sent > t));

    let asked = std::time::Instant::now();
    let (code, out, err) = ctl(
        &[
            "restore",
            cluster,
            "--time",
            &when,
            "--confirm",
            "--wait",
            "300",
        ],
        &env,
        Duration::from_secs(320),
    );
    assert_eq!(code, 0, "restore: {out}{err}\n{}", c.logs());
    eprintln!("restored in place in {:?}: {out}", asked.elapsed());
    let init: serde_json::Value =
        serde_json::from_str(&c.key("initialized").expect("initialized")).expect("JSON");
    assert_eq!(init["term"], 2, "{init:#}");
    assert!(
        eventually(Duration::from_secs(10), Duration::from_millis(200), || c
            .key("maintenance")
            .is_none()
            .then_some(()))
        .is_some(),
        "maintenance still on"
    );
    assert_eq!(c.wait_primary(Duration::from_secs(30)), p);
    assert_eq!(pg_rows(&c, p), Some(want.clone()), "the primary's rows");
    let data = c.data_dir(p).to_owned();
    let name = data
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    let aside = std::fs::read_dir(data.parent().expect("a parent"))
        .expect("read the data's parent")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{name}.aside-"))
        });
    assert!(aside, "no {name}.aside-* kept");
    for i in (0..3).filter(|&i| i != p) {
        let term = eventually(Duration::from_secs(120), Duration::from_millis(300), || {
            let doc: serde_json::Value =
                serde_json::from_str(&c.key(&format!("nodes/{}", c.name(i)))?).ok()?;
            (doc["term"] == 2 && doc["role"] == "replica").then_some(())
        });
        assert!(
            term.is_some(),
            "node {i} did not rebuild for term 2\n{}",
            c.logs()
        );
        c.wait_streaming(i, p, Duration::from_secs(60));
        let same = eventually(Duration::from_secs(30), Duration::from_millis(300), || {
            (pg_rows(&c, i) == Some(want.clone())).then_some(())
        });
        assert!(same.is_some(), "node {i}'s rows: {:?}", pg_rows(&c, i));
    }

    // New writes go on; the archive continues on the new timeline: its end has the restored
    // rows and the new ones only.
    let mut after: Vec<pg::Ack> = Vec::new();
    pg::write_rows(&c, &mut next, 10, &mut after);
    e2e::postgres::scenario::same_rows_everywhere(&c, p);
    pg::wait_archived(&c, &s3);
    let (code, out, got) = pg::restore_rows(&c, keys.path(), "latest", &["--latest"]);
    assert_eq!(code, 0, "restore --latest: {out}");
    let mut expected = want.clone();
    expected.extend(after.iter().map(|a| a.n));
    assert_eq!(got, expected, "the archive's end after the restore\n{out}");

    // A failover afterwards ends at full redundancy.
    c.kill_node(p);
    let (q, _) = c.wait_new_primary(p, Duration::from_secs(60));
    pg::write_rows(&c, &mut next, 5, &mut after);
    c.start_agent(p);
    for i in (0..3).filter(|&i| i != q) {
        c.wait_streaming(i, q, Duration::from_secs(120));
    }
    e2e::postgres::scenario::same_rows_everywhere(&c, q);
}
