//! Nodes and clusters that start from the repository instead of from the primary (issue 18),
//! on real MariaDB and PostgreSQL clusters with a local repository and a real S3 server:
//! - `engine.seed: auto`: the first replicas find no backup and clone the primary; a replica
//!   whose data is lost later restores the newest backup and follows the primary from there,
//!   without a clone from the primary;
//! - every node's data lost, etcd intact: the nodes restore the newest backup, elect a primary
//!   and are back to full redundancy with the backup's rows and users;
//! - a new cluster (a fresh etcd) with `cluster.bootstrap.from_backup`: the node that
//!   bootstraps restores the backup, the others clone it; the rows and users are back.

use std::path::Path;
use std::time::{Duration, SystemTime};

use backup::pipeline::Identity;
use e2e::harness::backup::records;
use e2e::harness::cluster::Agents;
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;

/// A backup on request: well within this.
const RUN: Duration = Duration::from_secs(120);

/// A fresh age identity written to `<dir>/key.txt`; its recipient.
fn key_pair(dir: &Path) -> String {
    use age::secrecy::ExposeSecret as _;
    let identity = Identity::generate();
    std::fs::write(
        dir.join("key.txt"),
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .expect("write the key");
    identity.to_public().to_string()
}

/// The `backup:` section: a local and an S3 repository, the identity that opens them, and
/// one physical job that runs only on request.
fn backup_yaml(dir: &Path, s3: &S3Server, recipient: &str) -> String {
    std::fs::write(dir.join("s3.key"), s3.access_key_id()).expect("write the S3 key id");
    std::fs::write(dir.join("s3.secret"), s3.secret_access_key()).expect("write the S3 secret");
    format!(
        r#"backup:
  repositories:
    - {{ name: local, path: {repo} }}
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
  jobs:
    - name: base
      schedule: "0 0 1 1 *"
      retention: {{ keep_last: 5 }}
"#,
        repo = dir.join("repo").display(),
        bucket = s3.bucket(),
        endpoint = s3.endpoint(),
        region = s3.region(),
        dir = dir.display(),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn started_ms(r: &serde_json::Value) -> u64 {
    let s = r["started"].as_str().unwrap_or_default();
    humantime::parse_rfc3339(s)
        .map(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64
        })
        .unwrap_or_default()
}

/// Requests a backup of job `base` now and waits until it is done; its record.
fn backup_now(c: &Agents, request: &str) -> serde_json::Value {
    let asked = now_ms();
    c.put_key(
        &format!("backup/requests/{request}"),
        r#"{"schema":1,"action":"backup","job":"base","requested_by":"e2e"}"#,
    );
    eventually(RUN, Duration::from_millis(500), || {
        records(c)
            .into_iter()
            .find(|r| r["job"] == "base" && r["status"] == "done" && started_ms(r) >= asked)
    })
    .unwrap_or_else(|| {
        panic!(
            "no done backup within {RUN:?}; records {:#?}\n{}",
            records(c),
            c.logs()
        )
    })
}

/// How many clones the agent of node `i` served (its log says so for each).
fn clones_served(c: &Agents, i: usize) -> usize {
    c.agent_log(i).matches("clone stream complete").count()
}

mod mariadb {
    use super::*;
    use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
    use e2e::mariadb::scenario::settle;

    fn count(c: &MariaCluster, i: usize) -> Option<u64> {
        c.sql(i, &["SELECT COUNT(*) FROM e2e.seq"])
            .ok()
            .and_then(|r| r.first().and_then(|row| row.first()).cloned())
            .and_then(|n| n.parse().ok())
    }

    fn insert(c: &MariaCluster, p: usize, from: u64, to: u64) {
        let values: Vec<String> = (from..to).map(|n| format!("({n})")).collect();
        c.sql(
            p,
            &[&format!("INSERT INTO e2e.seq VALUES {}", values.join(","))],
        )
        .expect("insert rows");
    }

    fn app_user(c: &MariaCluster, i: usize) -> bool {
        c.sql(i, &["SELECT COUNT(*) FROM mysql.user WHERE User = 'app'"])
            .ok()
            .is_some_and(|r| r[0][0] == "1")
    }

    /// Every node replicating from `p` with `rows` rows; the rows and the application user
    /// on each.
    fn full_redundancy(c: &MariaCluster, p: usize, rows: u64) {
        for i in (0..c.len()).filter(|&i| i != p) {
            c.wait_replicating(i, p, Duration::from_secs(90));
        }
        for i in 0..c.len() {
            let got = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
                (count(c, i) == Some(rows)).then_some(())
            });
            assert!(
                got.is_some(),
                "node {i} has {:?} rows, expected {rows}\n{}",
                count(c, i),
                c.logs()
            );
            assert!(app_user(c, i), "node {i} lacks the application user");
        }
    }

    #[test]
    fn nodes_and_clusters_start_from_the_repository() {
        let s3 = S3Server::start().expect("start the S3 server");
        let keys = tempfile::tempdir().expect("temp dir");
        let recipient = key_pair(keys.path());
        let yaml = backup_yaml(keys.path(), &s3, &recipient);
        let yaml_for_bad = yaml.clone();
        let opts = MariaOpts {
            seed: "auto",
            auto_rebuild: true,
            extra_yaml: yaml.clone(),
            ..MariaOpts::default()
        };
        // No backup yet: the replicas fall back to cloning the primary.
        let mut c = MariaCluster::start(3, opts).expect("start the MariaDB cluster");
        let p = settle(&c);
        c.create_schema(p);
        insert(&c, p, 0, 100);
        let taken = backup_now(&c, "r1");
        insert(&c, p, 100, 150);
        eprintln!("backup {} at {}", taken["id"], taken["position"]);

        // 1. A replica loses its data: it restores the newest backup and follows the
        //    primary from there; the primary serves no clone.
        let r = (0..3).find(|&i| i != p).expect("a replica");
        let served = clones_served(&c, p);
        c.kill_node(r);
        c.wipe_node(r);
        c.start_agent(r);
        full_redundancy(&c, p, 150);
        let seeded = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
            c.agent_log(r)
                .contains("seeded from the repository")
                .then_some(())
        });
        assert!(
            seeded.is_some(),
            "node {r} did not seed from the repository:\n{}",
            c.agent_log(r)
        );
        assert_eq!(
            clones_served(&c, p),
            served,
            "the primary served a clone to the seeded node"
        );

        // 2. Every node's data lost, etcd intact: with `from_backup` configured (the
        //    operator's statement that this cluster restores) the backup comes back on every
        //    node (the rows written after it are lost, and counted).
        for i in 0..3 {
            c.kill_node(i);
        }
        c.opts_mut().from_backup = Some("{ repository: local }".to_owned());
        for i in 0..3 {
            c.wipe_node(i);
            c.write_config(i).expect("rewrite the config");
        }
        for i in 0..3 {
            c.start_agent(i);
        }
        let p2 = c.wait_primary(Duration::from_secs(120));
        full_redundancy(&c, p2, 100);
        eprintln!("every node lost: 50 acknowledged rows lost (written after the backup)");
        insert(&c, p2, 1000, 1010);
        full_redundancy(&c, p2, 110);

        // 3. A new cluster (a fresh etcd) bootstrapped from the repository.
        c.stop_all();
        let fresh = MariaOpts {
            from_backup: Some("{ repository: s3 }".to_owned()),
            extra_yaml: yaml.clone(),
            ..MariaOpts::default()
        };
        let c2 = MariaCluster::start(3, fresh).expect("start the second cluster");
        let p3 = c2.wait_primary(Duration::from_secs(120));
        full_redundancy(&c2, p3, 100);
        insert(&c2, p3, 2000, 2010);
        full_redundancy(&c2, p3, 110);
        assert!(
            c2.agent_log(p3).contains("started from a backup"),
            "the bootstrapping node did not restore:\n{}",
            c2.agent_log(p3)
        );
        drop(c2);

        // 4. Bad input: a backup that is not there, a cluster the repository holds nothing
        //    of, a key that opens nothing. Each node says why, bootstraps nothing and creates
        //    no data directory.
        let wrong = Identity::generate();
        {
            use age::secrecy::ExposeSecret as _;
            std::fs::write(
                keys.path().join("wrong.txt"),
                format!("{}\n", wrong.to_string().expose_secret()),
            )
            .expect("write the wrong key");
        }
        let wrong_key = yaml.replace("key.txt", "wrong.txt");
        for (from, yaml, says) in [
            (
                "{ repository: local, backup: 20200101T000000Z-00000000 }",
                &yaml_for_bad,
                "20200101T000000Z-00000000",
            ),
            (
                "{ repository: local, cluster: other/place/orders }",
                &yaml_for_bad,
                "no complete physical mariadb backup of cluster other/place/orders in local",
            ),
            (
                "{ repository: local }",
                &wrong_key,
                "wrong key: none of the given identities opens",
            ),
        ] {
            let bad = MariaCluster::start(
                1,
                MariaOpts {
                    from_backup: Some(from.to_owned()),
                    extra_yaml: yaml.clone(),
                    ..MariaOpts::default()
                },
            )
            .expect("start a one-node cluster");
            let said = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
                let log = bad.agent_log(0);
                (log.contains("could not start from a backup") && log.contains(says)).then_some(())
            });
            assert!(
                said.is_some(),
                "{from}: no error naming {says:?}:\n{}",
                bad.agent_log(0)
            );
            assert!(
                bad.key("initialized").is_none(),
                "{from}: the cluster was initialised anyway"
            );
            let data = bad.dir().join("data-1");
            assert!(
                std::fs::read_dir(&data).map_or(true, |mut d| d.next().is_none()),
                "{from}: {} holds data",
                data.display()
            );
        }
    }
}

mod postgres {
    use super::*;
    use e2e::postgres::cluster::{PgCluster, PgOpts};
    use e2e::postgres::scenario::{settled, start};
    use e2e::postgres::workload::TABLE;

    fn scalar(c: &PgCluster, i: usize, sql: &str) -> Option<String> {
        c.scalar(i, sql).ok()
    }

    fn insert(c: &PgCluster, p: usize, from: u64, to: u64) {
        c.sql()
            .query(
                c.pg_port(p),
                &format!(
                    "INSERT INTO {TABLE} SELECT generate_series({from}, {})",
                    to - 1
                ),
                Duration::from_secs(10),
            )
            .expect("insert rows");
    }

    /// Every other node streaming from `p`; `rows` rows and the application role on each.
    fn full_redundancy(c: &PgCluster, p: usize, rows: u64) {
        for i in (0..c.len()).filter(|&i| i != p) {
            c.wait_streaming(i, p, Duration::from_secs(90));
        }
        let want = rows.to_string();
        for i in 0..c.len() {
            let got = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
                (scalar(c, i, &format!("SELECT count(*) FROM {TABLE}")).as_deref()
                    == Some(want.as_str()))
                .then_some(())
            });
            assert!(
                got.is_some(),
                "node {i} has {:?} rows, expected {rows}\n{}",
                scalar(c, i, &format!("SELECT count(*) FROM {TABLE}")),
                c.logs()
            );
            assert_eq!(
                scalar(c, i, "SELECT count(*) FROM pg_roles WHERE rolname = 'app'").as_deref(),
                Some("1"),
                "node {i} lacks the application role"
            );
        }
    }

    #[test]
    fn nodes_and_clusters_start_from_the_repository() {
        let s3 = S3Server::start().expect("start the S3 server");
        let keys = tempfile::tempdir().expect("temp dir");
        let recipient = key_pair(keys.path());
        let yaml = backup_yaml(keys.path(), &s3, &recipient);
        let opts = PgOpts {
            seed: "auto",
            extra_yaml: yaml.clone(),
            ..PgOpts::default()
        };
        // No backup yet: the standbys fall back to cloning the primary.
        let mut c = start(3, opts);
        let p = settled(&c);
        c.sql()
            .query(
                c.pg_port(p),
                "CREATE ROLE app LOGIN PASSWORD 'app-pw'",
                Duration::from_secs(10),
            )
            .expect("create the application role");
        insert(&c, p, 0, 100);
        // Replicated before the backup starts (it runs on a standby).
        full_redundancy(&c, p, 100);
        let taken = backup_now(&c, "r1");
        insert(&c, p, 100, 150);
        eprintln!("backup {} at {}", taken["id"], taken["position"]);

        // 1. A standby loses its data: it restores the newest backup and streams from the
        //    primary from there, without a base backup from the primary.
        let r = (0..3).find(|&i| i != p).expect("a standby");
        c.kill_node(r);
        c.wipe_node(r);
        c.start_agent(r);
        full_redundancy(&c, p, 150);
        let seeded = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
            c.agent_log(r)
                .contains("seeded from the repository")
                .then_some(())
        });
        assert!(
            seeded.is_some(),
            "node {r} did not seed from the repository:\n{}",
            c.agent_log(r)
        );
        let log = c.agent_log(r);
        let since = log.rfind("started from a backup").unwrap_or(0);
        assert!(
            !log[since..].contains("cloned the primary"),
            "node {r} cloned the primary after all:\n{log}"
        );

        // 2. Every node's data lost, etcd intact: with `from_backup` configured the backup
        //    comes back on every node.
        for i in 0..3 {
            c.kill_node(i);
        }
        let lost = PgOpts {
            seed: "auto",
            from_backup: Some("{ repository: local }".to_owned()),
            extra_yaml: yaml.clone(),
            ..PgOpts::default()
        };
        for i in 0..3 {
            c.wipe_node(i);
            c.reconfigure(i, &lost);
        }
        for i in 0..3 {
            c.start_agent(i);
        }
        let p2 = c.wait_primary(Duration::from_secs(120));
        full_redundancy(&c, p2, 100);
        eprintln!("every node lost: 50 acknowledged rows lost (written after the backup)");
        insert(&c, p2, 1000, 1010);
        full_redundancy(&c, p2, 110);
        drop(c);

        // 3. A new cluster (a fresh etcd) bootstrapped from the repository.
        let c2 = start(
            3,
            PgOpts {
                from_backup: Some("{ repository: s3 }".to_owned()),
                extra_yaml: yaml,
                ..PgOpts::default()
            },
        );
        let p3 = c2.wait_primary(Duration::from_secs(120));
        full_redundancy(&c2, p3, 100);
        insert(&c2, p3, 2000, 2010);
        full_redundancy(&c2, p3, 110);
        assert!(
            c2.agent_log(p3).contains("started from a backup"),
            "the bootstrapping node did not restore:\n{}",
            c2.agent_log(p3)
        );
    }
}
