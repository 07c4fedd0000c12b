//! Shared steps of the MariaDB archive and point-in-time recovery scenarios (issue 18): the
//! `backup:` section with an S3 repository and the archive, an on-demand base backup, a
//! writer of numbered acknowledged rows, and the archive's contents in the repository.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::harness::backup::{now_ms, records, started_ms};
use crate::harness::s3::S3Server;
use crate::harness::util::eventually;
use crate::mariadb::cluster::MariaCluster;

/// `backup.archive.interval`.
pub const INTERVAL: Duration = Duration::from_secs(2);

pub fn backup_yaml(dir: &Path, s3: &S3Server, recipient: &str, archive: bool) -> String {
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
{archive}  jobs:
    - name: base
      schedule: "0 0 1 1 *"
      retention: {{ keep_last: 5 }}
"#,
        bucket = s3.bucket(),
        endpoint = s3.endpoint(),
        region = s3.region(),
        dir = dir.display(),
        archive = if archive {
            format!("  archive: {{ interval: {}s }}\n", INTERVAL.as_secs())
        } else {
            String::new()
        },
    )
}

pub fn backup_now(c: &MariaCluster, request: &str) -> serde_json::Value {
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

/// Writes `count` acknowledged rows on the current primary, 50 ms apart. Each attempt takes
/// a fresh number: an attempt that failed may still have committed, and is not counted.
pub fn write_rows(c: &MariaCluster, next: &mut u64, count: u64, acks: &mut Vec<Ack>) {
    for _ in 0..count {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let n = *next;
            *next += 1;
            let sent = SystemTime::now();
            if let Some(p) = c.primary()
                && c.sql(p, &[&format!("INSERT INTO e2e.seq VALUES ({n})")])
                    .is_ok()
            {
                acks.push(Ack {
                    n,
                    sent,
                    acked: SystemTime::now(),
                });
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

/// The S3 repository and the cluster's id, opened as the agents do.
pub fn open_repo(
    s3: &S3Server,
    c: &MariaCluster,
) -> (backup::repo::Repository, backup::repo::ClusterId) {
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
    let id = c.cluster_id();
    let mut parts = id.split('/');
    let cluster = backup::repo::ClusterId {
        namespace: parts.next().unwrap_or_default().to_owned(),
        project: parts.next().unwrap_or_default().to_owned(),
        name: parts.next().unwrap_or_default().to_owned(),
    };
    (repo, cluster)
}

/// The archived binary logs.
pub fn archived(s3: &S3Server, c: &MariaCluster) -> Vec<backup::archive::binlog::Binlog> {
    let (repo, cluster) = open_repo(s3, c);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(backup::archive::list(
        &repo,
        &cluster,
        backup::archive::Kind::Binlog,
    ))
    .expect("list the archive")
    .iter()
    .filter_map(|f| backup::archive::binlog::Binlog::parse(&f.name))
    .collect()
}

/// Waits (bounded) until the archive reaches the primary's GTID position.
pub fn wait_archived(c: &MariaCluster, s3: &S3Server) {
    let p = c.primary().expect("a primary");
    let seq: u64 = c.sql(p, &["SELECT @@gtid_binlog_pos"]).expect("position")[0][0]
        .rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("a GTID");
    let there = eventually(Duration::from_secs(180), Duration::from_millis(500), || {
        archived(s3, c)
            .iter()
            .any(|f| !f.superseded && f.last >= seq)
            .then_some(())
    });
    assert!(
        there.is_some(),
        "the archive did not reach sequence {seq} within 180 s\n{}",
        c.logs()
    );
}

/// Every other node replicating from the primary; its index.
pub fn full_redundancy(c: &MariaCluster) -> usize {
    let q = c.wait_primary(Duration::from_secs(60));
    for i in (0..3).filter(|&i| i != q) {
        c.wait_replicating(i, q, Duration::from_secs(120));
    }
    q
}
