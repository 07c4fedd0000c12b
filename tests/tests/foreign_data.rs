//! A node whose data belongs to another database than the cluster's (its identity differs
//! from `initialized.database.system_id`) refuses to join: an error in its log, a
//! `foreign_data` event, the `autopilot_foreign_data` metric, `status: refused` in its node
//! document, and its data untouched. Once an operator moves the data aside and restarts the
//! agent, the node clones the cluster's data and replicates: the cluster is whole again.

use std::time::Duration;

use e2e::harness::cluster::Agents;
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::MariaOpts;
use e2e::mariadb::scenario::{ATTACH, same_rows_everywhere as maria_same_rows, settled};
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::scenario::{
    same_rows_everywhere as pg_same_rows, settled as pg_settled, start as pg_start,
};

/// Stops node `i`'s agent gracefully (its database with it), as a service manager would.
fn stop_gracefully(c: &mut Agents, i: usize) {
    c.sigterm_agent(i);
    assert!(
        c.wait_agent_exit(i, Duration::from_secs(30)),
        "{}'s agent did not stop\n{}",
        c.name(i),
        c.logs()
    );
}

/// What the refusing node shows: event, metric, document, log line.
fn assert_refused(c: &Agents, i: usize, ours: &str, cluster: &str) {
    let e = c.wait_event("foreign_data", i, Duration::from_secs(60));
    let detail = e["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(ours) && detail.contains(cluster),
        "the event names neither identity: {e:#}"
    );
    let doc = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        c.doc(&format!("nodes/{}", c.name(i)))
            .filter(|d| d["status"] == "refused")
    })
    .unwrap_or_else(|| {
        panic!(
            "{} not refused in its node document\n{}",
            c.name(i),
            c.logs()
        )
    });
    assert_eq!(doc["eligible"], false, "{doc:#}");
    assert!(
        doc["refused"].as_str().is_some_and(|r| r.contains(ours)),
        "{doc:#}"
    );
    assert!(
        c.metrics(i).contains("autopilot_foreign_data 1"),
        "no autopilot_foreign_data 1 on {}",
        c.name(i)
    );
    assert!(
        c.agent_log(i)
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("foreign_data")),
        "no error line about foreign data in {}'s log",
        c.name(i)
    );
    assert!(c.agent_alive(i), "{}'s agent exited", c.name(i));
}

#[test]
fn mariadb_node_with_another_clusters_data_refuses_to_join() {
    let (mut c, p) = settled(MariaOpts::default());
    let cluster_id = c
        .admin(p)
        .value("SELECT id FROM autopilot.identity")
        .expect("the identity the bootstrap recorded");
    let init = c.doc("initialized").expect("initialized");
    assert_eq!(
        init["database"]["system_id"], cluster_id,
        "initialized does not record the data's identity: {init:#}"
    );
    // Node `x`'s data becomes another database's: another identity, and a row no other
    // node has (written outside the binary log, as a restore of the wrong backup would).
    let x = (0..3).find(|&i| i != p).expect("a replica");
    c.sql(
        x,
        &[
            "SET SESSION sql_log_bin = 0",
            "UPDATE autopilot.identity SET id = 'foreign-0000'",
            "CREATE TABLE IF NOT EXISTS e2e.mine (n INT PRIMARY KEY)",
            "INSERT INTO e2e.mine VALUES (7)",
        ],
    )
    .expect("make the data foreign");
    stop_gracefully(&mut c, x);
    c.start_agent(x);
    assert_refused(&c, x, "foreign-0000", &cluster_id);
    // Its data is left alone: it does not replicate, and its own row and identity stay.
    std::thread::sleep(Duration::from_secs(3));
    c.sql(p, &["INSERT INTO e2e.seq VALUES (31337)"])
        .expect("write on the primary");
    std::thread::sleep(Duration::from_secs(2));
    let sql = c.admin(x);
    assert_eq!(
        sql.value("SELECT id FROM autopilot.identity")
            .expect("identity"),
        "foreign-0000"
    );
    assert_eq!(sql.value("SELECT n FROM e2e.mine").expect("own row"), "7");
    assert_eq!(
        sql.value("SELECT COUNT(*) FROM e2e.seq WHERE n = 31337")
            .expect("count"),
        "0",
        "the refusing node replicated"
    );
    assert_eq!(c.primary(), Some(p), "the primary changed\n{}", c.logs());

    // The operator moves the data aside and restarts: the node clones and replicates.
    stop_gracefully(&mut c, x);
    c.wipe_node(x);
    c.start_agent(x);
    c.wait_replicating(x, p, ATTACH);
    c.wait_event("joined", x, Duration::from_secs(30));
    maria_same_rows(&c, p);
    assert_eq!(
        c.admin(x)
            .value("SELECT id FROM autopilot.identity")
            .expect("identity"),
        cluster_id
    );
}

#[test]
fn postgres_node_with_another_clusters_data_refuses_to_join() {
    // Another cluster's data, copied aside once its server stopped cleanly.
    let other = pg_start(1, PgOpts::default());
    pg_settled(&other);
    let other_id = other
        .scalar(0, "SELECT system_identifier::text FROM pg_control_system()")
        .expect("the other cluster's system identifier");
    let aside = tempfile::tempdir().expect("tempdir");
    let copy = aside.path().join("data");
    {
        let mut other = other;
        other.sigterm_agent(0);
        assert!(other.wait_agent_exit(0, Duration::from_secs(30)));
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(other.data_dir(0))
            .arg(&copy)
            .output()
            .expect("cp");
        assert!(out.status.success(), "cp -a: {out:?}");
    }

    let mut c = pg_start(3, PgOpts::default());
    let p = pg_settled(&c);
    let cluster_id = c
        .scalar(p, "SELECT system_identifier::text FROM pg_control_system()")
        .expect("system identifier");
    let init = c.doc("initialized").expect("initialized");
    assert_eq!(
        init["database"]["system_id"], cluster_id,
        "initialized does not record the system identifier: {init:#}"
    );
    assert_ne!(cluster_id, other_id);
    let x = (0..3).find(|&i| i != p).expect("a replica");
    let data = c.data_dir(x).to_path_buf();
    stop_gracefully(&mut c, x);
    std::fs::remove_dir_all(&data).expect("remove the data dir");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(&copy)
        .arg(&data)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a: {out:?}");
    c.start_agent(x);
    assert_refused(&c, x, &other_id, &cluster_id);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.scalar(x, "SELECT system_identifier::text FROM pg_control_system()")
            .expect("its identity"),
        other_id,
        "the refusing node's data was replaced"
    );
    assert!(!c.streams_from(x, p), "the refusing node streams");
    assert_eq!(c.primary(), Some(p), "the primary changed\n{}", c.logs());

    // The operator moves the data aside and restarts: the node clones and streams.
    stop_gracefully(&mut c, x);
    c.wipe_node(x);
    c.start_agent(x);
    c.wait_streaming(x, p, Duration::from_secs(60));
    pg_same_rows(&c, p);
}
