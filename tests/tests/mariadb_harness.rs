//! The MariaDB harness: two real servers, GTID replication from one to the other, and the
//! GTID positions compared with `engines::mariadb::gtid::GtidSet`.

use std::cmp::Ordering;
use std::time::Duration;

use e2e::harness::util::eventually;
use e2e::mariadb::server::MariaDb;
use engines::Position;
use engines::mariadb::gtid::GtidSet;

fn gtid_current_pos(db: &MariaDb) -> GtidSet {
    let text = db
        .sql("SELECT @@gtid_current_pos")
        .expect("read gtid_current_pos");
    GtidSet::parse(&text).expect("MariaDB prints a valid GTID set")
}

#[test]
fn gtid_replication_between_two_servers() {
    let primary = MariaDb::start("primary").expect("start primary");
    let replica = MariaDb::start("replica").expect("start replica");
    assert_ne!(primary.port(), replica.port());
    assert_ne!(primary.server_id(), replica.server_id());
    // Fresh servers: install writes no binlog events (recipes.md gotcha 10).
    assert!(gtid_current_pos(&primary).is_empty());
    assert!(gtid_current_pos(&replica).is_empty());

    primary
        .sql(
            "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'replpass'; \
             GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, BINLOG MONITOR ON *.* \
             TO 'repl'@'127.0.0.1';",
        )
        .expect("create the replication user");
    replica
        .sql(&format!(
            "SET GLOBAL read_only=1; SET GLOBAL gtid_slave_pos=''; \
             CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
             MASTER_PASSWORD='replpass', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; \
             START SLAVE;",
            primary.port()
        ))
        .expect("start replication");

    primary
        .sql(
            "CREATE DATABASE bench; \
             CREATE TABLE bench.t(id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO bench.t(v) VALUES ('hello'),('world');",
        )
        .expect("write on the primary");
    let primary_pos = gtid_current_pos(&primary);
    // The user, the grant, the database, the table and the insert: one domain, our server.
    let main = primary_pos.get(0).copied().expect("domain 0 written");
    assert_eq!(main.server, primary.server_id());
    assert_eq!(primary_pos.iter().count(), 1, "{primary_pos}");

    let rows = eventually(Duration::from_secs(20), Duration::from_millis(50), || {
        replica
            .sql("SELECT v FROM bench.t ORDER BY id")
            .ok()
            .filter(|rows| rows == "hello\nworld")
    });
    assert!(
        rows.is_some(),
        "rows not replicated within 20 s; replica status:\n{}",
        replica.sql("SHOW SLAVE STATUS\\G").unwrap_or_default()
    );

    // The replica applied everything (its current pos includes gtid_slave_pos).
    let replica_pos = eventually(Duration::from_secs(10), Duration::from_millis(50), || {
        let pos = gtid_current_pos(&replica);
        (pos == primary_pos).then_some(pos)
    })
    .unwrap_or_else(|| panic!("replica never reached {primary_pos}"));
    assert_eq!(replica_pos.compare(&primary_pos), Some(Ordering::Equal));
    assert!(replica_pos.missing_from(&primary_pos).is_empty());
    assert_eq!(
        replica_pos.single_domain_position(0),
        Some(Position {
            epoch: 0,
            offset: main.seq
        })
    );

    // Stop replication and write once more on the primary: it is now strictly ahead.
    replica.sql("STOP SLAVE").expect("stop replication");
    primary
        .sql("INSERT INTO bench.t(v) VALUES ('again')")
        .expect("write again");
    let ahead = gtid_current_pos(&primary);
    assert_eq!(replica_pos.compare(&ahead), Some(Ordering::Less));
    assert!(ahead.contains(&replica_pos));
    assert_eq!(
        replica_pos
            .missing_from(&ahead)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [format!("0-{}-{}", primary.server_id(), main.seq + 1)]
    );
    assert!(replica_pos.position(0) < ahead.position(0));

    // An errant transaction on the replica: the two histories diverge.
    replica
        .sql("SET GLOBAL read_only=0; INSERT INTO bench.t(v) VALUES ('errant')")
        .expect("errant write on the replica");
    let errant = gtid_current_pos(&replica);
    assert_eq!(
        errant.get(0).map(|g| (g.server, g.seq)),
        Some((replica.server_id(), main.seq + 1))
    );
    assert_eq!(errant.compare(&ahead), None, "{errant} vs {ahead}");
    assert!(!errant.contains(&ahead) && !ahead.contains(&errant));
}

#[test]
fn stop_kill_and_drop_clean_up() {
    let mut db = MariaDb::start("lifecycle").expect("start");
    assert_eq!(
        db.sql("SELECT @@port, @@server_id").expect("identity"),
        format!("{}\t{}", db.port(), db.server_id())
    );
    assert!(db.pid().is_some() && db.is_running());
    db.stop();
    assert!(!db.is_running());
    assert!(
        db.sql("SELECT 1").is_err(),
        "a stopped server must not answer"
    );
    let dir = db.dir().to_owned();
    assert!(dir.join("data").exists());
    drop(db);
    assert!(!dir.exists(), "temp dir removed on drop");

    let mut db = MariaDb::start("kill").expect("start");
    db.kill();
    assert!(!db.is_running());
}
