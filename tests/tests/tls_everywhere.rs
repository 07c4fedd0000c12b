//! TLS everywhere (issue 12), with real servers: agents whose listeners serve HTTPS
//! (`telemetry.tls`) clone MariaDB over HTTPS and verify the primary's certificate against
//! `telemetry.tls.ca` (a wrong CA fails the clone clearly and destroys nothing); and three-node
//! MariaDB and PostgreSQL clusters whose agents talk to an etcd with TLS (client
//! certificates) and authentication (a user whose role may only touch the cluster's prefix)
//! elect, replicate, fail over on kill -9 of the primary's database without losing a row, and
//! heal; no password reaches the agents' logs.

use std::time::Duration;

use e2e::harness::cluster::{ETCD_PASSWORD, Security};
use e2e::harness::etcd::ROOT_PASSWORD;
use e2e::harness::scenario::assert_no_split_brain_no_loss;
use e2e::harness::tls::TlsFiles;
use e2e::harness::util::eventually;
use e2e::harness::workload::{Checker, Writer};
use e2e::mariadb::cluster::{ADMIN_PASSWORD, MariaCluster, MariaOpts, REPL_PASSWORD};
use e2e::mariadb::scenario::{ATTACH, BOOTSTRAP, assert_safe, failover, settled};
use e2e::mariadb::workload::written;
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::scenario::{MAX_RUN, let_writer_run, start, wait_writable};
use e2e::postgres::server::{REPLICATOR_PASSWORD, SUPERUSER_PASSWORD};

/// How long a node may take to clone the primary and attach.
const CLONE: Duration = Duration::from_secs(120);

fn https_listeners() -> Security {
    Security {
        listener_tls: true,
        ..Security::default()
    }
}

fn everything() -> Security {
    Security {
        etcd_tls: true,
        etcd_auth: true,
        listener_tls: true,
    }
}

/// Nodes 0 and 1 of a three-node cluster with `security` (node 2 joins later); the primary,
/// with the schema created, `rows` rows written and the binary logs purged, so a joining
/// node must clone.
fn two_of_three(rows: u64, security: Security) -> (MariaCluster, usize) {
    let opts = MariaOpts {
        security,
        ..MariaOpts::default()
    };
    let mut c = MariaCluster::create(3, opts).expect("create the cluster");
    c.start_agent(0);
    c.start_agent(1);
    let p = c.wait_primary(BOOTSTRAP);
    c.wait_replicating(1 - p, p, ATTACH);
    c.create_schema(p);
    let values: Vec<String> = (1..=rows).map(|n| format!("({n})")).collect();
    c.sql(
        p,
        &[&format!("INSERT INTO e2e.seq VALUES {}", values.join(","))],
    )
    .expect("write rows on the primary");
    let purged = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        c.sql(p, &["FLUSH BINARY LOGS"]).ok()?;
        let logs = c.sql(p, &["SHOW BINARY LOGS"]).ok()?;
        let last = logs.last()?.first()?.clone();
        c.sql(p, &[&format!("PURGE BINARY LOGS TO '{last}'")])
            .ok()?;
        (c.sql(p, &["SHOW BINARY LOGS"]).ok()?.len() == 1).then_some(())
    });
    assert!(purged.is_some(), "the primary kept older binary logs");
    (c, p)
}

/// The `agent_url` node `i` published in etcd.
fn published_agent_url(c: &MariaCluster, i: usize) -> Option<String> {
    let doc: serde_json::Value =
        serde_json::from_str(&c.key(&format!("nodes/{}", c.name(i)))?).ok()?;
    doc["agent_url"].as_str().map(str::to_owned)
}

/// Waits until node `i` replicates from `p` and has applied everything `p` has.
fn caught_up(c: &MariaCluster, i: usize, p: usize) {
    c.wait_replicating(i, p, CLONE);
    let pos = c
        .admin(p)
        .value("SELECT @@gtid_current_pos")
        .expect("position");
    if let Err(e) = c.wait_gtid(i, &pos, Duration::from_secs(20)) {
        panic!("{} did not apply {pos}: {e}\n{}", c.name(i), c.logs());
    }
}

/// Listeners with certificates: the agents publish `https://` agent URLs, serve /health and
/// /metrics over HTTPS only, and a node that joins after the primary purged its binary logs
/// clones it over HTTPS and replicates with the same rows.
#[test]
fn a_new_node_clones_the_primary_over_https_and_replicates_the_same_rows() {
    let (mut c, p) = two_of_three(50, https_listeners());
    let url = published_agent_url(&c, p).expect("the primary's agent_url");
    assert_eq!(url, c.agent_url(p), "published agent_url");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(
        c.metrics(p).contains("autopilot_health"),
        "no metrics over HTTPS"
    );
    // Plain HTTP to the HTTPS listener gets no answer.
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client")
        .get(url.replace("https://", "http://") + "/health")
        .send();
    assert!(
        plain.is_err(),
        "the listener answered plain HTTP: {plain:?}"
    );

    c.sql(p, &["INSERT INTO e2e.seq VALUES (51)"])
        .expect("write after the purge");
    c.start_agent(2);
    caught_up(&c, 2, p);
    assert_eq!(
        written(c.port(2)).expect("rows on the new node"),
        (1..=51).collect::<Vec<u64>>()
    );
    assert!(!c.writable(2), "the new replica accepts writes");
    let log = c.agent_log(2);
    assert!(
        log.contains("received the backup stream") && log.contains("cloned the primary"),
        "the new node did not clone\n{}",
        c.logs()
    );
    c.assert_no_secret_in_logs(&[ADMIN_PASSWORD, REPL_PASSWORD]);
}

/// A node whose `telemetry.tls.ca` is not the CA that signed the primary's listener: the
/// clone fails before anything local changes (no data directory moved aside, none created:
/// a node without data starts its server only after a clone), with an error that names the certificate problem and `telemetry.tls.ca`; the
/// agent keeps running, and with the right CA the same node clones and replicates.
#[test]
fn a_clone_with_the_wrong_ca_fails_clearly_and_destroys_nothing() {
    let (mut c, p) = two_of_three(10, https_listeners());
    let right = c.listener_tls().expect("listener TLS").ca.clone();
    let other = TlsFiles::generate(&c.dir().join("other-ca")).expect("another CA");
    let config = c.config_path(2).to_owned();
    let good = std::fs::read_to_string(&config).expect("read node 3's config");
    let right_ca = format!("    ca: {}\n", right.display());
    assert!(good.contains(&right_ca), "{good}");
    let bad = good.replace(&right_ca, &format!("    ca: {}\n", other.ca.display()));
    std::fs::write(&config, bad).expect("give node 3 another CA");

    c.start_agent(2);
    let refused = eventually(CLONE, Duration::from_millis(100), || {
        c.agent_log(2)
            .lines()
            .find(|l| l.contains("request a backup stream") && l.contains("telemetry.tls.ca"))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no clear clone failure on node 3\n{}", c.logs()));
    println!("the clone with the wrong CA: {refused}");
    assert!(
        refused.contains("certificate") && refused.contains(&c.agent_url(p)),
        "the error does not say what is wrong: {refused}"
    );
    assert!(
        c.entries("data-3.aside-").is_empty(),
        "node 3 moved its data directory aside for a clone that could not start"
    );
    assert!(
        !c.dir().join("data-3/mysql").exists(),
        "node 3 created a database before its clone"
    );
    assert!(c.agent_alive(2), "node 3's agent exited\n{}", c.logs());
    assert!(!c.writable(2), "the node without a clone accepts writes");
    assert_eq!(c.primary(), Some(p), "the primary changed");

    // The right CA: the same node clones over HTTPS and replicates. (A graceful stop first,
    // so the agent stops its server before the next one starts on the same data.)
    c.sigterm_agent(2);
    assert!(
        c.wait_agent_exit(2, Duration::from_secs(40)),
        "node 3's agent did not stop\n{}",
        c.logs()
    );
    std::fs::write(&config, good).expect("give node 3 the right CA");
    c.start_agent(2);
    caught_up(&c, 2, p);
    assert_eq!(
        written(c.port(2)).expect("rows on node 3"),
        (1..=10).collect::<Vec<u64>>()
    );
    c.assert_no_secret_in_logs(&[ADMIN_PASSWORD, REPL_PASSWORD]);
}

/// etcd with TLS (client certificates) and authentication, listeners with certificates: the
/// cluster elects and replicates, a kill -9 of the primary's mariadbd fails over without
/// losing an acknowledged row, the node heals itself and every node ends with the same rows.
#[test]
fn mariadb_with_etcd_tls_and_auth_fails_over_and_the_node_rejoins() {
    let opts = MariaOpts {
        security: everything(),
        ..MariaOpts::default()
    };
    let (mut c, p) = settled(opts);
    let run = failover(&mut c, p, |c, p| {
        c.kill_mariadbd(p);
    });
    assert_safe(&c, &run);
    assert!(
        c.agent_alive(p),
        "{}'s agent exited\n{}",
        c.name(p),
        c.logs()
    );
    c.wait_replicating(p, run.new, ATTACH);
    e2e::mariadb::scenario::same_rows_everywhere(&c, run.new);
    c.assert_no_secret_in_logs(&[ETCD_PASSWORD, ROOT_PASSWORD, ADMIN_PASSWORD, REPL_PASSWORD]);
}

/// The same for PostgreSQL: etcd with TLS and authentication, kill -9 of the primary's
/// postmaster, no acknowledged row lost, the old primary streams again, same rows everywhere.
#[test]
fn postgres_with_etcd_tls_and_auth_fails_over_and_the_node_rejoins() {
    let opts = PgOpts {
        durability: "sync",
        security: everything(),
        ..PgOpts::default()
    };
    let c = start(3, opts);
    let p = e2e::postgres::scenario::settled(&c);
    let w = Writer::start(c.workload(), MAX_RUN);
    let k = Checker::start(c.workload(), MAX_RUN);
    let_writer_run(&c, p, 30);
    c.kill_postgres(p);
    let (np, took) = c.wait_new_primary(p, Duration::from_secs(30));
    println!("new primary {} after {took:?}", c.name(np));
    wait_writable(&c, np, Duration::from_secs(15));
    let_writer_run(&c, np, 30);
    let (w, k) = (w.stop(), k.stop());
    assert_no_split_brain_no_loss(&c, &c.workload().written(np), &w, &k);
    assert!(
        c.agent_alive(p),
        "{}'s agent exited\n{}",
        c.name(p),
        c.logs()
    );
    c.wait_streaming(p, np, Duration::from_secs(40));
    e2e::postgres::scenario::same_rows_everywhere(&c, np);
    c.assert_no_secret_in_logs(&[
        ETCD_PASSWORD,
        ROOT_PASSWORD,
        SUPERUSER_PASSWORD,
        REPLICATOR_PASSWORD,
    ]);
}
