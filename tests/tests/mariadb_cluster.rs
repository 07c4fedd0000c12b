//! MariaDB cluster scenarios with real etcd, three real `mariadbd` and agents as processes:
//! bootstrap, planned switchover, graceful stop, and that no password reaches the logs.

use std::time::Duration;

use e2e::mariadb_cluster::{ADMIN_PASSWORD, MariaCluster, MariaOpts, REPL_PASSWORD};

const BOOTSTRAP: Duration = Duration::from_secs(60);
const ATTACH: Duration = Duration::from_secs(30);

/// Starts a cluster, waits for a primary and two replicas, creates the schema; the primary.
fn settled(opts: MariaOpts) -> (MariaCluster, usize) {
    let c = MariaCluster::start(3, opts).expect("start the MariaDB cluster");
    let p = c.wait_primary(BOOTSTRAP);
    for i in (0..3).filter(|&i| i != p) {
        c.wait_replicating(i, p, ATTACH);
    }
    c.create_schema(p);
    (c, p)
}

#[test]
fn fresh_cluster_replicates_a_row_to_both_replicas() {
    let (c, p) = settled(MariaOpts::default());
    c.sql(p, &["INSERT INTO e2e.seq VALUES (42)"])
        .expect("insert on the primary");
    let pos = c
        .admin(p)
        .value("SELECT @@gtid_current_pos")
        .expect("read the primary's GTID");
    for i in (0..3).filter(|&i| i != p) {
        if let Err(e) = c.wait_gtid(i, &pos, Duration::from_secs(10)) {
            panic!(
                "{} did not apply {pos}: {e}; {:?} {:?}",
                c.name(i),
                c.sql(i, &["SHOW SLAVE STATUS"]),
                c.sql(
                    i,
                    &["SELECT @@gtid_slave_pos, @@gtid_current_pos, @@gtid_binlog_pos"]
                )
            );
        }
        let n = c
            .admin(i)
            .value("SELECT COUNT(*) FROM e2e.seq WHERE n = 42")
            .expect("count");
        assert_eq!(n, "1", "row missing on {}", c.name(i));
        assert!(!c.writable(i), "replica {} accepts writes", c.name(i));
    }
    assert!(c.writable(p), "the primary does not accept writes");
    let metrics = c.metrics(p);
    assert!(
        metrics.contains("autopilot_mysql_up"),
        "no MariaDB metrics:\n{metrics}"
    );
    for i in 0..3 {
        let log = c.agent_log(i);
        assert!(
            !log.contains(ADMIN_PASSWORD) && !log.contains(REPL_PASSWORD),
            "a password is in {}'s log",
            c.name(i)
        );
        assert!(
            !c.metrics(i).contains("MARKER"),
            "a password is in {}'s metrics",
            c.name(i)
        );
    }
}
