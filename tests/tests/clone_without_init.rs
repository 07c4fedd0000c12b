//! A node without data that joins an initialised cluster clones the primary without
//! creating a database first (no initdb, no mariadb-install-db), starts its server only
//! once the copy is in place, and leaves no `.aside-…` directory behind: for each engine,
//! a three-node cluster whose first node bootstraps before the others start, and a replica
//! whose state and data were wiped that rejoins.

use std::time::Duration;

use e2e::harness::cluster::Agents;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::postgres::cluster::{PgCluster, PgOpts};

/// What the supervisor logs when it prepares to clone instead of initialising.
const PREPARED_TO_CLONE: &str = "without creating a database first";

/// SIGTERM node `i`'s agent and wait for it to exit.
fn stop_gracefully(c: &mut Agents, i: usize) {
    c.sigterm_agent(i);
    assert!(
        c.wait_agent_exit(i, Duration::from_secs(30)),
        "{}'s agent did not stop\n{}",
        c.name(i),
        c.logs()
    );
}

/// No `.aside-` directory in the cluster's temp dir (beside the data directories), and
/// node `i`'s log shows a clone prepared without any of `creating`.
fn assert_cloned_clean(c: &Agents, entries: &[String], i: usize, creating: &[&str]) {
    let aside: Vec<&String> = entries.iter().filter(|e| e.contains(".aside-")).collect();
    assert!(
        aside.is_empty(),
        "data directories were moved aside: {aside:?}\n{}",
        c.logs()
    );
    let log = c.agent_log(i);
    assert!(
        log.contains(PREPARED_TO_CLONE),
        "{} did not prepare to clone\n{}",
        c.name(i),
        c.logs()
    );
    for text in creating {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(text)).collect();
        assert!(
            lines.is_empty(),
            "{} created a database before cloning:\n{}",
            c.name(i),
            lines.join("\n")
        );
    }
}

/// What a PostgreSQL agent logs when it runs initdb.
const INITDB: &[&str] = &[
    "initialising an empty data directory",
    "process=initdb",
    "process=\"initdb\"",
];

/// What a MariaDB agent logs when it runs mariadb-install-db.
const INSTALL_DB: &[&str] = &["initialised the data directory", "mariadb-install-db"];

#[test]
fn postgres_replicas_clone_without_initdb_and_keep_nothing_aside() {
    let mut c = PgCluster::create(3, PgOpts::default()).expect("create the cluster");
    c.start_agent(0);
    let first = c.wait_primary(e2e::postgres::scenario::BOOTSTRAP);
    assert_eq!(first, 0, "only node 0 runs");
    c.start_agent(1);
    c.start_agent(2);
    let p = e2e::postgres::scenario::settled(&c);
    for i in (0..3).filter(|&i| i != p) {
        assert_cloned_clean(&c, &c.entries("data-"), i, INITDB);
    }

    // A replica whose state and data are gone rejoins the same way.
    let r = (p + 1) % 3;
    stop_gracefully(&mut c, r);
    c.wipe_node(r);
    c.start_agent(r);
    c.wait_streaming(r, p, e2e::postgres::scenario::ATTACH);
    c.wait_eligible(r, e2e::postgres::scenario::ATTACH);
    assert_cloned_clean(&c, &c.entries("data-"), r, INITDB);
    e2e::postgres::scenario::same_rows_everywhere(&c, p);
}

#[test]
fn mariadb_replicas_clone_without_install_db_and_keep_nothing_aside() {
    let mut c = MariaCluster::create(3, MariaOpts::default()).expect("create the cluster");
    c.start_agent(0);
    let first = c.wait_primary(e2e::mariadb::scenario::BOOTSTRAP);
    assert_eq!(first, 0, "only node 0 runs");
    c.start_agent(1);
    c.start_agent(2);
    let p = e2e::mariadb::scenario::settle(&c);
    for i in (0..3).filter(|&i| i != p) {
        assert_cloned_clean(&c, &c.entries("data-"), i, INSTALL_DB);
    }

    // A replica whose state and data are gone rejoins the same way.
    let r = (p + 1) % 3;
    stop_gracefully(&mut c, r);
    c.wipe_node(r);
    c.start_agent(r);
    c.wait_replicating(r, p, e2e::mariadb::scenario::ATTACH);
    c.wait_eligible(r, e2e::mariadb::scenario::ATTACH);
    assert_cloned_clean(&c, &c.entries("data-"), r, INSTALL_DB);
    e2e::mariadb::scenario::same_rows_everywhere(&c, p);
}
