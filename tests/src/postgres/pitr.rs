//! Shared steps of the PostgreSQL archive and point-in-time recovery scenarios (issue 18):
//! the `backup:` section with an S3 repository and the archive, an on-demand base backup, a
//! writer of numbered acknowledged rows, a restore read back on a scratch server, and the
//! archive in the repository.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::backup::{cli, now_ms, records, started_ms};
use crate::harness::s3::S3Server;
use crate::harness::util::{eventually, free_port};
use crate::postgres::cluster::PgCluster;
use crate::postgres::server::{settings, spawn_server};
use crate::postgres::workload::TABLE;

/// `backup.archive.interval`: the archive's RPO under a quiet writer.
pub const INTERVAL: Duration = Duration::from_secs(2);

pub fn backup_yaml(dir: &Path, s3: &S3Server, recipient: &str) -> String {
    std::fs::write(dir.join("s3.key"), s3.access_key_id()).expect("write the S3 key id");
    std::fs::write(dir.join("s3.secret"), s3.secret_access_key()).expect("write the S3 secret");
    format!(
        r#"backup:
  repositories:
    - name: s3
      s3:
        bucket: {bucket}
        prefix: autopilot
        endpoint: {endpoint}
        region: {region}
        path_style: true
        access_key_id: {{ file: {dir}/s3.key }}
        secret_access_key: {{ file: {dir}/s3.secret }}
  encryption: {{ recipients: [{recipient}] }}
  compression: {{ level: 3, threads: 1 }}
  identity: {{ file: {dir}/key.txt }}
  archive: {{ interval: {interval}s }}
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
    )
}

pub fn backup_now(c: &PgCluster, request: &str) -> serde_json::Value {
    let asked = now_ms();
    c.put_key(
        &format!("backup/requests/{request}"),
        r#"{"schema":1,"action":"backup","job":"base","requested_by":"e2e"}"#,
    );
    eventually(Duration::from_secs(120), Duration::from_millis(500), || {
        records(c)
            .into_iter()
            .find(|r| r["job"] == "base" && r["status"] == "done" && started_ms(r) >= asked)
    })
    .unwrap_or_else(|| panic!("no done backup; records {:#?}\n{}", records(c), c.logs()))
}

/// One acknowledged row: its number, and when it was sent and acknowledged.
pub struct Ack {
    pub n: u64,
    pub sent: SystemTime,
    pub acked: SystemTime,
}

/// Inserts row `n` on the current primary; `None` when no primary took it.
pub fn write(c: &PgCluster, n: u64) -> Option<Ack> {
    let p = c.primary()?;
    let sent = SystemTime::now();
    c.sql()
        .query(
            c.pg_port(p),
            &format!("INSERT INTO {TABLE} VALUES ({n})"),
            Duration::from_secs(5),
        )
        .ok()?;
    Some(Ack {
        n,
        sent,
        acked: SystemTime::now(),
    })
}

/// Writes `count` acknowledged rows, 50 ms apart. Each attempt takes a fresh number: an
/// attempt that failed may still have committed (a commit whose synchronous wait was cut
/// short), and is not counted as acknowledged.
pub fn write_rows(c: &PgCluster, next: &mut u64, count: u64, acks: &mut Vec<Ack>) {
    for _ in 0..count {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = *next;
            *next += 1;
            if let Some(a) = write(c, n) {
                acks.push(a);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no primary took a row for 60 s (last {n})\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restores with `args` into `<dir>/<name>`, starts a server on it and returns the rows'
/// numbers; the CLI's exit code, output and the rows.
pub fn restore_rows(
    c: &PgCluster,
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
    let port = free_port();
    let mut s = settings(name, c.dir(), port, engines::postgres::Durability::Async);
    s.data_dir = target.clone();
    let log = c.dir().join(format!("{name}.log"));
    let mut server = spawn_server(&s, &log).expect("start postgres");
    let rows = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        c.sql()
            .query(
                port,
                &format!("SELECT seq FROM {TABLE} ORDER BY seq"),
                Duration::from_secs(5),
            )
            .ok()
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = server.wait();
    let rows = rows.unwrap_or_else(|| {
        panic!(
            "no rows from the restored server: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    let nums = rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|v| v.parse().ok())
        .collect();
    (code, out, nums)
}

/// Waits (bounded) until the repository holds every change the primary has: it closes the
/// current WAL segment (`pg_switch_wal`) and waits for that segment in the archive.
pub fn wait_archived(c: &PgCluster, s3: &S3Server) {
    let p = c.primary().expect("a primary");
    let rows = c
        .sql()
        .query(
            c.pg_port(p),
            "SELECT pg_walfile_name(pg_switch_wal())",
            Duration::from_secs(10),
        )
        .expect("switch the WAL segment");
    let name = rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .expect("a segment name");
    let (repo, cluster) = open_repo(s3);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let there = eventually(Duration::from_secs(180), Duration::from_millis(500), || {
        rt.block_on(backup::archive::list(
            &repo,
            &cluster,
            backup::archive::Kind::Wal,
        ))
        .ok()
        .filter(|files| files.iter().any(|f| f.name == name))
        .map(drop)
    });
    assert!(
        there.is_some(),
        "segment {name} was not archived within 180 s\n{}",
        c.logs()
    );
}

/// The S3 repository and the cluster, as the agents open them.
pub fn open_repo(s3: &S3Server) -> (backup::repo::Repository, backup::repo::ClusterId) {
    let repo = backup::repo::Repository::s3(
        "s3",
        &backup::repo::S3Config {
            bucket: s3.bucket().to_owned(),
            prefix: "autopilot".to_owned(),
            endpoint: Some(s3.endpoint()),
            region: s3.region().to_owned(),
            path_style: true,
            access_key_id: s3.access_key_id().to_owned(),
            secret_access_key: s3.secret_access_key().to_owned(),
        },
    )
    .expect("open the repository");
    let cluster = backup::repo::ClusterId {
        namespace: "e2e".into(),
        project: "pg".into(),
        name: "main".into(),
    };
    (repo, cluster)
}
