//! The three-node PostgreSQL and MariaDB examples run as shipped, started the way the README
//! says: from a directory holding `examples/<name>/`, with
//! `autopilot run --config examples/<name>/agent-<n>.yaml` (a relative path, so every path in
//! the configs resolves relative to it). Each example directory is copied to
//! `<temp>/examples/<name>/` and its three agents are started with the configs unchanged
//! except for the ports: the example's fixed database, HTTP and etcd ports become free ones, so the
//! test never collides with a running example or another test. Then: one primary, two
//! replicas, and a row written on the primary reaches both.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use e2e::harness::cluster::{Agents, NodeSpec};
use e2e::harness::etcd::EtcdServer;
use e2e::harness::util::{eventually, free_port, workspace_root};

/// The first primary plus two clones.
const SETTLE: Duration = Duration::from_secs(120);

/// An example copied to a temp dir, its ports replaced, and its three agents.
struct Example {
    agents: Agents,
    /// Each node's database port.
    ports: Vec<u16>,
    _etcd: EtcdServer,
    _dir: tempfile::TempDir,
}

impl Drop for Example {
    /// Every agent stops its database before it exits (the examples' `stop_timeout` is 30 s).
    fn drop(&mut self) {
        self.agents.terminate_all(Duration::from_secs(40));
    }
}

/// Copies `examples/<name>` (files and one level of subdirectories) to a temp dir the
/// database's OS user can enter; in every `agent-<k>.yaml`, `db_ports[k-1]` and
/// `http_ports[k-1]` become free ports and the etcd endpoint becomes a fresh etcd's.
fn start_example(
    name: &str,
    db_ports: [u16; 3],
    http_ports: [u16; 3],
    cluster: [&str; 3],
) -> Example {
    let etcd = EtcdServer::start().expect("start etcd");
    let dir = tempfile::Builder::new()
        .prefix(&format!("example-{name}-"))
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = dir.path().join("examples").join(name);
    std::fs::create_dir_all(&root).expect("mkdir");
    for d in [dir.path().join("examples"), root.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    copy_dir(&workspace_root().join("examples").join(name), &root);
    let mut ports = Vec::new();
    let mut specs = Vec::new();
    for k in 0..3 {
        let config = root.join(format!("agent-{}.yaml", k + 1));
        let (db, http) = (free_port(), free_port());
        let text = std::fs::read_to_string(&config).expect("read an example config");
        let count = |s: &str, n: u16| s.matches(&n.to_string()).count();
        assert!(
            count(&text, db_ports[k]) >= 1 && count(&text, http_ports[k]) >= 1,
            "{} no longer uses ports {} and {}: update this test",
            config.display(),
            db_ports[k],
            http_ports[k]
        );
        let text = text
            .replace(&db_ports[k].to_string(), &db.to_string())
            .replace(&http_ports[k].to_string(), &http.to_string())
            .replace("http://127.0.0.1:2379", &etcd.endpoint());
        std::fs::write(&config, text).expect("write the config");
        ports.push(db);
        specs.push(NodeSpec {
            name: node_name(&config),
            config,
            telemetry_port: http,
            detail: format!("{name} {db}"),
        });
    }
    let mut agents = Agents::new(specs, &[etcd.endpoint()], cluster).expect("agents");
    agents.run_from(dir.path()); // the README's relative `--config examples/<name>/agent-<n>.yaml`
    for i in 0..3 {
        agents.start_agent(i);
    }
    Example {
        agents,
        ports,
        _etcd: etcd,
        _dir: dir,
    }
}

/// `node.name` of an agent config (`node: { name: pg-1, ... }`).
fn node_name(config: &Path) -> String {
    let text = std::fs::read_to_string(config).expect("read a config");
    let line = text
        .lines()
        .find(|l| l.starts_with("node:"))
        .expect("a node: line");
    let after = line.split("name:").nth(1).expect("node.name");
    after
        .split([',', '}'])
        .next()
        .expect("a name")
        .trim()
        .to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read the example") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("a name"));
        if path.is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// Waits for a primary and two replicas, then checks that `write` on the primary reaches
/// both replicas through `count`.
fn primary_replicates(
    ex: &Example,
    write: impl Fn(u16) -> anyhow::Result<()>,
    count: impl Fn(u16) -> Option<String>,
) {
    let p = ex.agents.wait_primary(SETTLE);
    let replicas: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    for &i in &replicas {
        let replica = eventually(SETTLE, Duration::from_millis(200), || {
            (ex.agents.role(i) == "replica").then_some(())
        });
        assert!(
            replica.is_some(),
            "{} does not become a replica; roles {:?}\n{}",
            ex.agents.name(i),
            ex.agents.roles(),
            ex.agents.logs()
        );
    }
    let wrote = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
        write(ex.ports[p]).ok()
    });
    assert!(
        wrote.is_some(),
        "no write on the primary\n{}",
        ex.agents.logs()
    );
    for &i in &replicas {
        let seen = eventually(Duration::from_secs(30), Duration::from_millis(200), || {
            count(ex.ports[i]).filter(|n| n == "1")
        });
        assert!(
            seen.is_some(),
            "the row does not reach {}; roles {:?}\n{}",
            ex.agents.name(i),
            ex.agents.roles(),
            ex.agents.logs()
        );
    }
}

#[test]
fn the_postgres_example_runs_as_shipped() {
    e2e::postgres::server::check_installed();
    let ex = start_example(
        "postgres",
        [5441, 5442, 5443],
        [9201, 9202, 9203],
        ["demo", "postgres", "main"],
    );
    let password =
        std::fs::read_to_string(workspace_root().join("examples/postgres/superuser.password"))
            .expect("the example's superuser password");
    let password = password.trim();
    let sql = e2e::postgres::server::Sql::new();
    let limit = Duration::from_secs(10);
    primary_replicates(
        &ex,
        |port| {
            sql.query_as(
                port,
                "postgres",
                password,
                "CREATE TABLE IF NOT EXISTS example_check(n int); INSERT INTO example_check VALUES (1)",
                limit,
            )
            .map(drop)
        },
        |port| {
            sql.query_as(
                port,
                "postgres",
                password,
                "SELECT count(*)::text FROM example_check",
                limit,
            )
            .ok()?
            .first()?
            .first()
            .cloned()
            .flatten()
        },
    );
}

#[test]
fn the_mariadb_example_runs_as_shipped() {
    e2e::harness::util::system_bin("/usr/sbin/mariadbd", "mariadb-server");
    let ex = start_example(
        "mariadb",
        [3311, 3312, 3313],
        [9111, 9112, 9113],
        ["demo", "mariadb", "billing"],
    );
    let password =
        std::fs::read_to_string(workspace_root().join("examples/mariadb/secrets/admin.pass"))
            .expect("the example's admin password");
    let admin = |port| e2e::mariadb::workload::Sql {
        host: "127.0.0.1".to_owned(),
        port,
        user: "autopilot".to_owned(),
        password: password.trim().to_owned(),
    };
    let limit = Duration::from_secs(10);
    primary_replicates(
        &ex,
        |port| {
            admin(port)
                .run(
                    &[
                        "CREATE DATABASE IF NOT EXISTS example_check",
                        "CREATE TABLE IF NOT EXISTS example_check.t(n int)",
                        "INSERT INTO example_check.t VALUES (1)",
                    ],
                    limit,
                )
                .map(drop)
        },
        |port| {
            admin(port)
                .run(&["SELECT count(*) FROM example_check.t"], limit)
                .ok()?
                .first()?
                .first()
                .cloned()
        },
    );
}
