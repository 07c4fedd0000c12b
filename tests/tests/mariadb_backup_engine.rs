//! The MariaDB engine's backups and restores (issue 17) against a real server driven by the
//! engine alone (no agent): a full physical backup and an incremental restored as a chain,
//! a logical backup restored with its accounts, each checked with `check_restored` and then
//! served by a server started on the restored directory; a restore into a non-empty
//! directory is refused and leaves it untouched.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::harness::util::free_port;
use e2e::mariadb::server::MARIADBD;
use engines::backups::{BackupMethod, BackupSpec, BackupType, RestoreSpec, StreamDone, StreamPlan};
use engines::mariadb::{Account, Durability, Flavour, MariadbEngine, MariadbSettings};
use engines::{Engine, MainControl, MainRequest};
use handlers::{ExecSpec, ManagedChild};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt as _;

/// How long a server may take to answer after its start.
const READY: Duration = Duration::from_secs(60);
/// The admin account the engine creates.
const ADMIN: (&str, &str) = ("autopilot", "admin-secret-e2e");

fn account((user, password): (&str, &str)) -> Account {
    Account {
        user: user.to_owned(),
        password: password.to_owned(),
    }
}

/// Engine settings for a server in `dir` with its data in `datadir`.
fn settings(dir: &Path, datadir: PathBuf, run: &str) -> MariadbSettings {
    MariadbSettings {
        flavour: Flavour::MariaDb,
        program: vec![
            MARIADBD.to_owned(),
            "--no-defaults".to_owned(),
            "--innodb-buffer-pool-size=64M".to_owned(),
        ],
        env: vec![],
        datadir,
        run_dir: dir.join(run),
        bind_address: "127.0.0.1".to_owned(),
        port: free_port(),
        server_id: 17,
        gtid_domain_id: 0,
        os_user: Some("mysql".to_owned()),
        durability: Durability::Async,
        admin: account(ADMIN),
        replication: account(("repl", "repl-secret-e2e")),
        backup: Some(account(("backup", "backup-secret-e2e"))),
        stop_timeout: Duration::from_secs(30),
        cluster: "e2e/backup/maria".to_owned(),
        node_id: "n1".to_owned(),
        statement_stats: false,
        peer_ca: None,
    }
}

/// A server run by the test, driven by the engine.
struct Node {
    engine: MariadbEngine,
    /// The server, killed on drop.
    server: ManagedChild,
    /// Served by nobody: these tests never clone.
    _requests: tokio::sync::mpsc::Receiver<MainRequest>,
}

impl Node {
    /// Prepare (install when empty) and start the server on `settings`; returns once the
    /// admin account answers. `writable`: promoted (read_only off).
    async fn start(settings: MariadbSettings, writable: bool) -> Node {
        let (control, requests) = MainControl::channel();
        let engine = MariadbEngine::new(settings, control);
        engine.prepare().await.expect("prepare the data directory");
        let spec: ExecSpec = engine.main_command().clone();
        let server = ManagedChild::spawn("mariadbd", &spec, &[]).expect("start mariadbd");
        let node = Node {
            engine,
            server,
            _requests: requests,
        };
        let deadline = Instant::now() + READY;
        loop {
            match node.engine.position().await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the server did not answer within {READY:?}: {e}"),
            }
        }
        if writable {
            node.engine.promote().await.expect("accept writes");
        }
        node
    }

    fn socket(&self) -> PathBuf {
        self.engine.settings().socket()
    }

    /// Run `statements` as the admin over the socket; the last one's rows as text.
    async fn sql(&self, statements: &[&str]) -> Vec<Vec<String>> {
        sql(&self.socket(), &account(ADMIN), statements)
            .await
            .unwrap_or_else(|e| panic!("{statements:?}: {e}"))
    }

    async fn stop(mut self) {
        self.server
            .stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))
            .await;
    }
}

/// Run `statements` as `who` over `socket`; the last one's rows as text.
async fn sql(
    socket: &Path,
    who: &Account,
    statements: &[&str],
) -> Result<Vec<Vec<String>>, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(socket.display().to_string()))
        .user(Some(who.user.clone()))
        .pass(Some(who.password.clone()));
    let mut c = mysql_async::Conn::new(opts).await?;
    let mut last = Vec::new();
    for s in statements {
        let rows: Vec<mysql_async::Row> = c.query(*s).await?;
        last = rows
            .into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                        mysql_async::Value::NULL => "NULL".to_owned(),
                        other => other.as_sql(true),
                    })
                    .collect()
            })
            .collect();
    }
    c.disconnect().await?;
    Ok(last)
}

/// Inserts ids `from..=to` into `shop.t`.
async fn insert(node: &Node, from: u32, to: u32) {
    let values: Vec<String> = (from..=to).map(|n| format!("({n}, 'row {n}')")).collect();
    let sql = format!("INSERT INTO shop.t VALUES {}", values.join(","));
    node.sql(&[&sql]).await;
}

/// Takes one stream of `spec` into `file`; what the tool reported.
async fn take(node: &Node, spec: &BackupSpec, plan: &StreamPlan, file: &Path) -> StreamDone {
    let mut stream = node
        .engine
        .start_backup_stream(spec, plan)
        .await
        .unwrap_or_else(|e| panic!("start stream {}: {e}", plan.name));
    assert!(
        !format!("{:?}", stream.parameters).contains("secret"),
        "{:?}",
        stream.parameters
    );
    let mut out = tokio::fs::File::create(file)
        .await
        .expect("create the file");
    let n = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::io::copy(&mut stream.output, &mut out),
    )
    .await
    .expect("the stream ends in time")
    .expect("copy the stream");
    assert!(n > 0, "stream {} is empty", plan.name);
    out.flush().await.expect("flush");
    stream
        .finish()
        .await
        .unwrap_or_else(|e| panic!("finish stream {}: {e}", plan.name))
}

/// Feeds the files of each step into a restore of `spec`.
async fn restore(node: &Node, spec: &RestoreSpec, files: &[Vec<PathBuf>]) {
    let mut r = node
        .engine
        .begin_restore(spec)
        .await
        .unwrap_or_else(|e| panic!("begin the restore: {e}"));
    for (step, (plans, files)) in spec.chain.iter().zip(files).enumerate() {
        for (plan, file) in plans.iter().zip(files) {
            let mut sink = r
                .sink(step, &plan.name)
                .await
                .unwrap_or_else(|e| panic!("sink {step}/{}: {e}", plan.name));
            let mut f = tokio::fs::File::open(file).await.expect("open");
            tokio::io::copy(&mut f, &mut sink.input)
                .await
                .expect("feed the stream");
            sink.input.shutdown().await.expect("close the input");
            sink.finish()
                .await
                .unwrap_or_else(|e| panic!("restore {step}/{}: {e}", plan.name));
        }
    }
    r.finish()
        .await
        .unwrap_or_else(|e| panic!("finish the restore: {e}"));
}

/// A temp dir the `mysql` user can traverse.
fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("make the temp dir traversable");
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

const SCHEMA: [&str; 2] = [
    "CREATE DATABASE shop",
    "CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB",
];

/// Starts a server on restored data and returns `COUNT(*), MAX(id)` of `shop.t`.
async fn rows_served_from(dir: &Path, datadir: &Path, run: &str) -> (Node, Vec<String>) {
    let node = Node::start(settings(dir, datadir.to_owned(), run), false).await;
    let rows = node.sql(&["SELECT COUNT(*), MAX(id) FROM shop.t"]).await;
    (node, rows.into_iter().next().expect("one row"))
}

#[test]
fn a_physical_full_and_incremental_restore_to_the_incrementals_moment() {
    runtime().block_on(async {
        let dir = temp_dir("mariadb-backup-physical-");
        let node = Node::start(settings(dir.path(), dir.path().join("data"), "run"), true).await;
        node.sql(&SCHEMA).await;
        insert(&node, 1, 100).await;

        let full = BackupSpec {
            method: BackupMethod::Physical,
            ..BackupSpec::default()
        };
        let plan = node.engine.backup_streams(&full).await.expect("plan");
        assert_eq!(
            plan.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["base"]
        );
        let full_file = dir.path().join("full.xb");
        let full_done = take(&node, &full, &plan[0], &full_file).await;
        let lsn = full_done.incremental_lsn.clone().expect("to_lsn");
        assert!(lsn.parse::<u64>().is_ok(), "{lsn}");
        let gtid_full = full_done.position.clone().expect("a GTID position");
        assert!(
            full_done
                .tool_version
                .as_deref()
                .is_some_and(|v| v.starts_with("mariadb-backup 10.11")),
            "{full_done:?}"
        );

        insert(&node, 101, 200).await;
        let inc = BackupSpec {
            backup_type: BackupType::Incremental,
            incremental_lsn: Some(lsn),
            ..full.clone()
        };
        let inc_file = dir.path().join("inc.xb");
        let inc_done = take(&node, &inc, &plan[0], &inc_file).await;
        let gtid_inc = inc_done.position.clone().expect("a GTID position");
        assert_ne!(gtid_full, gtid_inc, "the incremental is later");
        let now = node.sql(&["SELECT @@gtid_current_pos"]).await;
        assert_eq!(
            now[0][0], gtid_inc,
            "the position of the incremental's moment"
        );
        // After the incremental: not in the restore.
        insert(&node, 201, 300).await;

        let target = dir.path().join("restored");
        let spec = RestoreSpec {
            method: BackupMethod::Physical,
            target_dir: target.clone(),
            chain: vec![plan.clone(), plan.clone()],
        };
        restore(&node, &spec, &[vec![full_file], vec![inc_file]]).await;
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(".restore"))
            .collect();
        assert!(leftovers.is_empty(), "temporary dirs left: {leftovers:?}");

        let report = node
            .engine
            .check_restored(&target)
            .await
            .unwrap_or_else(|e| panic!("check the restored data: {e}"));
        assert!(report.summary.contains("tables in"), "{report:?}");
        node.stop().await;

        let (restored, rows) = rows_served_from(dir.path(), &target, "run-restored").await;
        assert_eq!(
            rows,
            ["200", "200"],
            "exactly the rows of the incremental's moment"
        );
        restored.stop().await;
    });
}

#[test]
fn a_logical_backup_restores_the_rows_and_the_accounts() {
    runtime().block_on(async {
        let dir = temp_dir("mariadb-backup-logical-");
        let node = Node::start(settings(dir.path(), dir.path().join("data"), "run"), true).await;
        node.sql(&SCHEMA).await;
        insert(&node, 1, 150).await;
        node.sql(&[
            "CREATE DATABASE other",
            "CREATE TABLE other.kv (k INT PRIMARY KEY) ENGINE=InnoDB",
            "INSERT INTO other.kv VALUES (1),(2),(3)",
            "CREATE USER app@'%' IDENTIFIED BY 'app-pass'",
            // A table-level grant: loading it needs the table (users load last).
            "GRANT SELECT ON shop.t TO app@'%'",
            "CREATE VIEW shop.v AS SELECT id FROM shop.t WHERE id > 100",
        ])
        .await;

        let spec = BackupSpec {
            method: BackupMethod::Logical,
            ..BackupSpec::default()
        };
        let plan = node.engine.backup_streams(&spec).await.expect("plan");
        assert_eq!(
            plan.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["db-other", "db-shop", "users"]
        );
        let incremental = BackupSpec {
            backup_type: BackupType::Incremental,
            incremental_lsn: Some("1".into()),
            ..spec.clone()
        };
        let err = node
            .engine
            .backup_streams(&incremental)
            .await
            .expect_err("no logical incrementals");
        assert!(err.to_string().contains("physical only"), "{err}");

        let mut files = Vec::new();
        for p in &plan {
            let file = dir.path().join(format!("{}.sql", p.name));
            let done = take(&node, &spec, p, &file).await;
            if p.database.is_some() {
                assert!(done.position.is_some(), "{}: {done:?}", p.name);
            }
            assert!(
                done.tool_version
                    .as_deref()
                    .is_some_and(|v| v.contains("MariaDB dump")),
                "{done:?}"
            );
            files.push(file);
        }
        // After the backup: not in the restore.
        insert(&node, 151, 160).await;

        let target = dir.path().join("restored");
        let rspec = RestoreSpec {
            method: BackupMethod::Logical,
            target_dir: target.clone(),
            chain: vec![plan.clone()],
        };
        restore(&node, &rspec, &[files]).await;
        let report = node
            .engine
            .check_restored(&target)
            .await
            .unwrap_or_else(|e| panic!("check the restored data: {e}"));
        assert!(report.summary.contains("tables in"), "{report:?}");
        node.stop().await;

        let (restored, rows) = rows_served_from(dir.path(), &target, "run-restored").await;
        assert_eq!(rows, ["150", "150"], "exactly the rows of the backup");
        let kv = restored.sql(&["SELECT COUNT(*) FROM other.kv"]).await;
        assert_eq!(kv[0][0], "3");
        let view = restored.sql(&["SELECT COUNT(*) FROM shop.v"]).await;
        assert_eq!(view[0][0], "50");
        // The account came back, with its password and its table-level grant.
        let app = sql(
            &restored.socket(),
            &account(("app", "app-pass")),
            &["SELECT COUNT(*) FROM shop.t"],
        )
        .await
        .expect("app logs in on the restored server");
        assert_eq!(app[0][0], "150");
        let temp = restored
            .sql(&["SELECT COUNT(*) FROM mysql.user WHERE User = 'autopilot_restore'"])
            .await;
        assert_eq!(temp[0][0], "0", "the restore's temporary account is gone");
        restored.stop().await;
    });
}

#[test]
fn a_restore_into_a_non_empty_directory_is_refused_and_leaves_it_untouched() {
    runtime().block_on(async {
        let dir = temp_dir("mariadb-backup-refused-");
        let (control, _requests) = MainControl::channel();
        let engine = MariadbEngine::new(
            settings(dir.path(), dir.path().join("data"), "run"),
            control,
        );
        let target = dir.path().join("busy");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("precious"), b"keep me").expect("write");
        for method in [BackupMethod::Physical, BackupMethod::Logical] {
            let spec = RestoreSpec {
                method,
                target_dir: target.clone(),
                chain: vec![vec![StreamPlan {
                    name: if method == BackupMethod::Physical {
                        "base".into()
                    } else {
                        "users".into()
                    },
                    database: None,
                }]],
            };
            let err = engine.begin_restore(&spec).await.expect_err("refused");
            let text = err.to_string();
            assert!(
                text.contains(&target.display().to_string()) && text.contains("not empty"),
                "{text}"
            );
        }
        let names: Vec<String> = std::fs::read_dir(&target)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(names, ["precious"]);
        assert_eq!(
            std::fs::read(target.join("precious")).expect("read"),
            b"keep me"
        );
        let beside: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(beside, ["busy"], "nothing written beside it");
    });
}
