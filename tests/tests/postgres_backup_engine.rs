//! PostgreSQL backups and restores through the engine alone (issue 17), against a real
//! PostgreSQL 15 primary and a standby cloned from it (backups normally run on a standby):
//! a physical backup (`pg_basebackup` tar) and a logical one (`pg_dumpall --globals-only` +
//! `pg_dump -Fc` per database) taken on the standby as the least-privilege backup role,
//! piped to files, restored into new directories, checked with `pg_amcheck` on a scratch
//! server, then started: exactly the rows present at backup time, and (logical) a role
//! logging in with its password. Also: incremental refused with its reason; a restore into
//! a non-empty directory refused with the directory untouched.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use e2e::harness::util::{eventually, signal_and_wait};
use e2e::postgres::server::{
    EngineNode, SUPERUSER, SUPERUSER_PASSWORD, Sql, settings, spawn_server, temp_dir,
};
use engines::backups::{BackupMethod, BackupSpec, BackupType, RestoreSpec, StreamPlan};
use engines::postgres::{Credentials, Durability, PostgresEngine, PostgresSettings};
use engines::{Engine, Member, Peer};
use nix::sys::signal::Signal;
use tokio::io::AsyncWriteExt as _;

const BACKUP_USER: &str = "backup";
const BACKUP_PASSWORD: &str = "backup-secret-e2e";
const APP_PASSWORD: &str = "app-secret-e2e";

fn peer(port: u16) -> Peer {
    Peer {
        host: "127.0.0.1".to_owned(),
        port,
        agent: None,
        standby: false,
    }
}

/// Test settings with the backup role configured.
fn with_backup(name: &str, dir: &Path, port: u16) -> PostgresSettings {
    let mut s = settings(name, dir, port, Durability::Async);
    s.backup = Some(Credentials {
        user: BACKUP_USER.to_owned(),
        password: BACKUP_PASSWORD.to_owned(),
    });
    s
}

/// Rows of `query` in database `db` on 127.0.0.1:`port` as `user`.
fn rows_in(
    sql: &Sql,
    port: u16,
    db: &str,
    user: &str,
    password: &str,
    query: &str,
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let (db, user, password, query) = (
        db.to_owned(),
        user.to_owned(),
        password.to_owned(),
        query.to_owned(),
    );
    sql.block_on(async move {
        let work = async {
            let mut c = tokio_postgres::Config::new();
            c.host("127.0.0.1")
                .port(port)
                .user(&user)
                .password(&password)
                .dbname(&db)
                .connect_timeout(Duration::from_secs(5));
            let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let msgs = client.simple_query(&query).await?;
            Ok::<_, tokio_postgres::Error>(
                msgs.into_iter()
                    .filter_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => {
                            Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                        }
                        _ => None,
                    })
                    .collect(),
            )
        };
        match tokio::time::timeout(Duration::from_secs(10), work).await {
            Err(_) => anyhow::bail!("no answer from port {port} within 10s"),
            Ok(r) => r.map_err(|e| anyhow::anyhow!("port {port} db {db} as {user}: {e:?}")),
        }
    })
}

fn scalar_in(sql: &Sql, port: u16, db: &str, query: &str) -> Option<String> {
    rows_in(sql, port, db, SUPERUSER, SUPERUSER_PASSWORD, query)
        .ok()?
        .first()?
        .first()?
        .clone()
}

/// The rows of `t` (in `postgres`) and of `shop.orders`, as one comparable text.
fn contents(sql: &Sql, port: u16) -> String {
    let t = scalar_in(
        sql,
        port,
        "postgres",
        "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM t",
    )
    .unwrap_or_default();
    let o = scalar_in(
        sql,
        port,
        "shop",
        "SELECT string_agg(id::text || ':' || item, ',' ORDER BY id) FROM orders",
    )
    .unwrap_or_default();
    format!("t=[{t}] orders=[{o}]")
}

/// Take every stream of `spec` on `engine` into files under `dir`; the streams and their
/// positions.
fn take_backup(
    sql: &Sql,
    engine: &PostgresEngine,
    spec: &BackupSpec,
    dir: &Path,
) -> Vec<(StreamPlan, PathBuf, Option<String>)> {
    sql.block_on(async {
        let plan = engine.backup_streams(spec).await.expect("plan the backup");
        let mut out = Vec::new();
        for p in plan {
            let mut stream = engine
                .start_backup_stream(spec, &p)
                .await
                .unwrap_or_else(|e| panic!("start {}: {e}", p.name));
            let file = dir.join(format!("{}.stream", p.name));
            let mut f = tokio::fs::File::create(&file)
                .await
                .expect("create the stream file");
            let copy = tokio::time::timeout(
                Duration::from_secs(300),
                tokio::io::copy(&mut stream.output, &mut f),
            )
            .await
            .expect("the stream ends within 5 minutes")
            .expect("read the stream");
            f.shutdown().await.expect("close the stream file");
            assert!(copy > 0, "stream {} is empty", p.name);
            let done = stream
                .finish()
                .await
                .unwrap_or_else(|e| panic!("finish {}: {e}", p.name));
            assert!(
                done.tool_version
                    .as_deref()
                    .is_some_and(|v| v.contains("PostgreSQL) 15")),
                "{done:?}"
            );
            out.push((p, file, done.position));
        }
        out
    })
}

/// Restore the streams into `target`.
fn restore(
    sql: &Sql,
    engine: &PostgresEngine,
    method: BackupMethod,
    streams: &[(StreamPlan, PathBuf, Option<String>)],
    target: &Path,
) {
    sql.block_on(async {
        let spec = RestoreSpec {
            method,
            target_dir: target.to_path_buf(),
            chain: vec![streams.iter().map(|(p, _, _)| p.clone()).collect()],
        };
        let mut r = engine
            .begin_restore(&spec)
            .await
            .expect("begin the restore");
        for (p, file, _) in streams {
            let mut sink = r.sink(0, &p.name).await.expect("a sink");
            let mut f = tokio::fs::File::open(file)
                .await
                .expect("open the stream file");
            tokio::io::copy(&mut f, &mut sink.input)
                .await
                .unwrap_or_else(|e| panic!("write {}: {e}", p.name));
            sink.input.shutdown().await.expect("close the sink");
            sink.finish()
                .await
                .unwrap_or_else(|e| panic!("restore {}: {e}", p.name));
        }
        r.finish().await.expect("finish the restore");
    });
}

/// A server on a restored directory; stopped when dropped.
struct Restored {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Restored {
    fn start(sql: &Sql, dir: &Path, data: &Path, name: &str) -> Restored {
        let port = e2e::postgres::server::port();
        let mut s = settings(name, dir, port, Durability::Async);
        s.data_dir = data.to_path_buf();
        let log = dir.join(format!("{name}.log"));
        let child = spawn_server(&s, &log).expect("start a server on the restored directory");
        let r = Restored {
            child: Some(child),
            port,
            log,
        };
        let up = eventually(Duration::from_secs(60), Duration::from_millis(100), || {
            sql.query(port, "SELECT 1", Duration::from_secs(1)).ok()
        });
        assert!(
            up.is_some(),
            "the restored server does not come up\n{}",
            std::fs::read_to_string(&r.log).unwrap_or_default()
        );
        r
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if !signal_and_wait(&mut self.child, Signal::SIGINT, Duration::from_secs(20)) {
            signal_and_wait(&mut self.child, Signal::SIGKILL, Duration::from_secs(5));
        }
    }
}

#[test]
fn physical_and_logical_backups_of_a_standby_restore_exactly_what_was_there() {
    let sql = Sql::new();
    let dir = temp_dir("pg-backup-").expect("temp dir");
    let (pa, pb) = (e2e::postgres::server::port(), e2e::postgres::server::port());
    let a = EngineNode::start(&sql, with_backup("a", dir.path(), pa), dir.path()).expect("start a");
    a.wait_ready(&sql);
    sql.block_on(a.engine.promote()).expect("promote a");
    sql.block_on(a.engine.set_replicas(&[Member {
        id: "b".to_owned(),
        peer: peer(pb),
    }]))
    .expect("set replicas (creates the replication and backup roles)");
    sql.query(
        pa,
        &format!(
            "CREATE TABLE t(seq bigint PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100); \
             CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'"
        ),
        Duration::from_secs(10),
    )
    .expect("write on a");
    sql.query(
        pa,
        "CREATE DATABASE shop OWNER app",
        Duration::from_secs(10),
    )
    .expect("create shop");
    rows_in(
        &sql,
        pa,
        "shop",
        "app",
        APP_PASSWORD,
        "CREATE TABLE orders(id int PRIMARY KEY, item text); \
         INSERT INTO orders SELECT g, 'item-' || g FROM generate_series(1, 20) g",
    )
    .expect("write shop as app");
    // The backup role: exactly the privileges the tools need.
    let role = scalar_in(
        &sql,
        pa,
        "postgres",
        "SELECT rolsuper::text || rolreplication::text || rolbypassrls::text || \
         pg_has_role('backup', 'pg_read_all_data', 'MEMBER')::text || \
         has_table_privilege('backup', 'pg_catalog.pg_authid', 'SELECT')::text \
         FROM pg_roles WHERE rolname = 'backup'",
    );
    assert_eq!(role.as_deref(), Some("falsetruetruetruetrue"));

    let b = EngineNode::start(&sql, with_backup("b", dir.path(), pb), dir.path()).expect("start b");
    b.wait_ready(&sql);
    sql.block_on(b.engine.clone_from_primary(&peer(pa)))
        .unwrap_or_else(|e| panic!("clone: {e}\n{}", b.log()));
    let want = contents(&sql, pa);
    let replicated = eventually(Duration::from_secs(30), Duration::from_millis(100), || {
        (contents(&sql, pb) == want).then_some(())
    });
    assert!(
        replicated.is_some(),
        "b does not have a's rows: {}",
        contents(&sql, pb)
    );
    assert!(
        want.contains("100]") && want.contains("20:item-20]"),
        "{want}"
    );

    // Incremental: refused with its reason.
    let incremental = BackupSpec {
        backup_type: BackupType::Incremental,
        ..BackupSpec::default()
    };
    let e = sql
        .block_on(b.engine.backup_streams(&incremental))
        .expect_err("incremental is refused")
        .to_string();
    assert!(
        e.contains("PostgreSQL 15 has no incremental base backups"),
        "{e}"
    );

    // Physical, on the standby, as the backup role.
    let files = dir.path().join("streams-physical");
    std::fs::create_dir(&files).expect("mkdir");
    let physical = BackupSpec::default();
    let taken = take_backup(&sql, &b.engine, &physical, &files);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].0.name, "base");
    let position = taken[0]
        .2
        .clone()
        .expect("a physical backup has a position");
    let (lsn, timeline) = position.split_once(" on timeline ").expect("notation");
    assert_eq!(timeline, "2", "{position}");
    assert!(
        engines::postgres::sql::parse_lsn(lsn).is_some(),
        "{position}"
    );

    // Logical, on the standby: every database (postgres and shop), after the globals.
    let logical_files = dir.path().join("streams-logical");
    std::fs::create_dir(&logical_files).expect("mkdir");
    let logical = BackupSpec {
        method: BackupMethod::Logical,
        ..BackupSpec::default()
    };
    let dumped = take_backup(&sql, &b.engine, &logical, &logical_files);
    let names: Vec<&str> = dumped.iter().map(|(p, _, _)| p.name.as_str()).collect();
    assert_eq!(names, ["globals", "db-postgres", "db-shop"]);

    // Rows written after the backups are not in them.
    sql.query(
        pa,
        "INSERT INTO t SELECT generate_series(101, 150)",
        Duration::from_secs(5),
    )
    .expect("write after the backups");

    // A non-empty target is refused, and left as it was.
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).expect("mkdir");
    std::fs::write(occupied.join("keep.txt"), b"mine").expect("write");
    let e = sql
        .block_on(b.engine.begin_restore(&RestoreSpec {
            method: BackupMethod::Physical,
            target_dir: occupied.clone(),
            chain: vec![vec![taken[0].0.clone()]],
        }))
        .expect_err("a non-empty target is refused")
        .to_string();
    assert!(
        e.contains(&occupied.display().to_string()) && e.contains("not empty"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&occupied).expect("dir").count(), 1);
    assert_eq!(
        std::fs::read(occupied.join("keep.txt")).expect("kept"),
        b"mine"
    );

    // Physical restore: checked, then started standalone with exactly the rows of then.
    let target = dir.path().join("restored-physical");
    restore(&sql, &b.engine, BackupMethod::Physical, &taken, &target);
    assert!(!target.join("standby.signal").exists());
    let auto = std::fs::read_to_string(target.join("postgresql.auto.conf")).unwrap_or_default();
    assert!(!auto.contains("primary_conninfo"), "{auto}");
    let report = sql
        .block_on(b.engine.check_restored(&target))
        .expect("the restored physical backup passes pg_amcheck");
    assert!(report.summary.contains("no corruption"), "{report:?}");
    {
        let r = Restored::start(&sql, dir.path(), &target, "restored-physical");
        assert_eq!(contents(&sql, r.port), want);
        assert_eq!(
            scalar_in(&sql, r.port, "postgres", "SELECT pg_is_in_recovery()").as_deref(),
            Some("f")
        );
    }

    // Logical restore: the same rows, and the roles with their passwords.
    let target = dir.path().join("restored-logical");
    restore(&sql, &b.engine, BackupMethod::Logical, &dumped, &target);
    let report = sql
        .block_on(b.engine.check_restored(&target))
        .expect("the restored logical backup passes pg_amcheck");
    assert!(report.summary.contains("no corruption"), "{report:?}");
    let r = Restored::start(&sql, dir.path(), &target, "restored-logical");
    assert_eq!(contents(&sql, r.port), want);
    let owner = rows_in(&sql, r.port, "shop", "app", APP_PASSWORD, "SELECT current_user, (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop')")
        .expect("app logs in to the restored shop with its password");
    assert_eq!(
        owner,
        vec![vec![Some("app".to_owned()), Some("app".to_owned())]]
    );
    assert!(
        rows_in(&sql, r.port, "shop", "app", "wrong", "SELECT 1").is_err(),
        "a wrong password is refused"
    );
}
