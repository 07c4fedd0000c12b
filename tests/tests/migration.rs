//! Live migration from a database Autopilot does not manage (issue 18), on real servers: an
//! external PostgreSQL primary (or MariaDB server with GTIDs) that a writer keeps writing
//! to, and a three-node cluster bootstrapped with `cluster.bootstrap.migrate_from`:
//!
//! - the node that bootstraps copies the source and leads the cluster as its standby
//!   (read-only, replicating from the source); the other nodes clone and follow it, and
//!   `autopilotctl migrate status` and `show` say so;
//! - the standby leader killed (kill -9 of agent and database): another node leads, now
//!   replicating from the source, and the killed node rejoins when its agent is restarted;
//! - `autopilotctl migrate cutover --confirm --wait` makes the source refuse writes,
//!   promotes the cluster and reports the write outage; the writer moves over by itself
//!   when the source refuses it. Every row the source or the cluster acknowledged is on
//!   every node, the source takes no more writes, and the cluster no longer migrates.

use std::time::Duration;

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, ctl};
use e2e::harness::migration::{Writer, outage_said};
use e2e::harness::util::eventually;

/// Waits until `cond` holds (bounded), else fails with `logs`.
fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool, logs: impl Fn() -> String) {
    let ok = eventually(within, Duration::from_millis(100), || cond().then_some(()));
    assert!(ok.is_some(), "{what} within {within:?}\n{}", logs());
}

fn status_json(env: &[(&str, &str)], cluster: &str) -> serde_json::Value {
    let (code, out, err) = ctl(
        &["migrate", "status", cluster, "-o", "json"],
        env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "migrate status: {out}{err}");
    serde_json::from_str(&out).expect("migrate status JSON")
}

/// Cuts over with the CLI, waiting; then lets the writer write 50 rows to the cluster and
/// stops it: what it saw.
fn cut_over(
    env: &[(&str, &str)],
    cluster: &str,
    writer: Writer,
    logs: impl Fn() -> String,
) -> e2e::harness::migration::Log {
    let (code, out, err) = ctl(
        &["migrate", "cutover", cluster, "--confirm", "--wait", "120"],
        env,
        Duration::from_secs(140),
    );
    assert_eq!(code, 0, "cutover: {out}{err}\n{}", logs());
    until(
        "the writer writes to the cluster",
        Duration::from_secs(30),
        || writer.count().1 >= 50,
        &logs,
    );
    writer.finish()
}

/// Every acknowledged row (and the rows before the migration) is in `have`.
fn none_lost(before: u64, acked: &[u64], have: &[u64]) {
    let missing: Vec<u64> = (1..=before)
        .chain(acked.iter().copied())
        .filter(|n| have.binary_search(n).is_err())
        .collect();
    assert!(missing.is_empty(), "acknowledged rows lost: {missing:?}");
}

#[test]
fn postgres_cluster_follows_an_external_primary_and_cuts_over_without_losing_a_row() {
    use e2e::postgres::cluster::{PgCluster, PgOpts};
    use e2e::postgres::migration::Source;
    use e2e::postgres::server::Sql;

    let src = Source::start(500).expect("start the source");
    let port = src.port;
    let writer = {
        let sql = Sql::new();
        Writer::start(port, 1_000_000, move |p, n| Source::insert(&sql, p, n))
    };
    let mut c = PgCluster::start(
        3,
        PgOpts {
            migrate_from: Some(src.migrate_from()),
            ..PgOpts::default()
        },
    )
    .expect("start the cluster");
    let logs = |c: &PgCluster| format!("{}\n--- source:\n{}", c.logs(), src.log());
    let p = c.wait_primary(Duration::from_secs(90));
    // The leader is the source's standby, through the slot; `initialized` says so.
    let init: serde_json::Value =
        serde_json::from_str(&c.key("initialized").expect("initialized")).expect("JSON");
    assert_eq!(init["standby_of"], format!("127.0.0.1:{port}"), "{init:#}");
    assert_eq!(
        c.scalar(p, "SELECT pg_is_in_recovery()").ok().as_deref(),
        Some("t")
    );
    let streams_from_source = |c: &PgCluster, i: usize| {
        let app = engines::postgres::settings::slot_name(c.name(i));
        src.sql
            .scalar(
                port,
                &format!(
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{app}' AND state = 'streaming'"
                ),
            )
            .is_ok_and(|n| n == "1")
    };
    until(
        "the standby leader streams from the source",
        Duration::from_secs(30),
        || streams_from_source(&c, p),
        || logs(&c),
    );
    assert_eq!(
        src.sql
            .scalar(
                port,
                "SELECT active::text FROM pg_replication_slots WHERE slot_name = 'autopilot_migration'"
            )
            .ok()
            .as_deref(),
        Some("true")
    );
    for i in (0..3).filter(|&i| i != p) {
        c.wait_streaming(i, p, Duration::from_secs(90));
    }
    // Writes on the leader are refused; reads are served.
    let t = Duration::from_secs(5);
    assert!(
        c.sql()
            .query(c.pg_port(p), "INSERT INTO mig VALUES (0)", t)
            .is_err()
    );
    assert!(Source::rows(c.sql(), c.pg_port(p)).is_some_and(|r| r.len() >= 500));
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let cluster = "e2e/pg/main";
    let st = status_json(&env, cluster);
    assert_eq!(st["migrating"], true, "{st:#}");
    assert_eq!(st["leader"], c.name(p), "{st:#}");
    let (code, out, _) = ctl(
        &["migrate", "status", cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("migrates from 127.0.0.1:{port}")),
        "{out}"
    );
    let (code, out, _) = ctl(&["show", cluster], &env, Duration::from_secs(20));
    assert_eq!(code, 0);
    assert!(out.contains("migrating:   from 127.0.0.1"), "{out}");
    // Without --confirm nothing is asked.
    let (code, _, err) = ctl(
        &["migrate", "cutover", cluster],
        &env,
        Duration::from_secs(20),
    );
    assert_eq!(code, 2, "{err}");
    assert!(c.key(&format!("requests/{}", c.name(p))).is_none());

    // The standby leader lost: another node leads, from the source.
    c.kill_node(p);
    let (q, _) = c.wait_new_primary(p, Duration::from_secs(60));
    until(
        "the new standby leader streams from the source",
        Duration::from_secs(60),
        || streams_from_source(&c, q),
        || logs(&c),
    );
    assert_eq!(
        c.scalar(q, "SELECT pg_is_in_recovery()").ok().as_deref(),
        Some("t")
    );
    c.start_agent(p);
    for i in (0..3).filter(|&i| i != q) {
        c.wait_streaming(i, q, Duration::from_secs(120));
    }
    until(
        "the writer goes on",
        Duration::from_secs(30),
        || writer.count().0 > 200,
        || logs(&c),
    );

    // The cutover, under the writer.
    writer.target(c.pg_port(q));
    let log = cut_over(&env, cluster, writer, || logs(&c));
    let said = outage_said(&c.events());
    eprintln!(
        "cutover: {} rows acknowledged, {} by the cluster; write outage seen by the writer {:?}, said by the agent {said:?}",
        log.acked.len(),
        log.on_target,
        log.outage()
    );
    assert!(said.is_some(), "no outage in the cutover's request_done");
    // The source refuses writes; the cluster no longer migrates and its primary writes.
    assert!(
        !Source::insert(&src.sql, port, 9_000_000),
        "the source still takes writes"
    );
    assert_eq!(status_json(&env, cluster)["migrating"], false);
    assert_eq!(c.primary(), Some(q));
    assert_eq!(
        c.scalar(q, "SELECT pg_is_in_recovery()").ok().as_deref(),
        Some("f")
    );
    // Every acknowledged row, on every node.
    let have = Source::rows(c.sql(), c.pg_port(q)).expect("the primary's rows");
    none_lost(500, &log.acked, &have);
    for i in (0..3).filter(|&i| i != q) {
        c.wait_streaming(i, q, Duration::from_secs(60));
        until(
            "the same rows on every node",
            Duration::from_secs(30),
            || Source::rows(c.sql(), c.pg_port(i)).as_ref() == Some(&have),
            || logs(&c),
        );
    }
}

#[test]
fn mariadb_cluster_follows_an_external_server_and_cuts_over_without_losing_a_row() {
    use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
    use e2e::mariadb::migration::Source;

    let src = Source::start(500).expect("start the source");
    let port = src.port;
    let writer = Writer::start(port, 1_000_000, Source::insert);
    let mut c = MariaCluster::start(
        3,
        MariaOpts {
            migrate_from: Some(src.migrate_from()),
            ..MariaOpts::default()
        },
    )
    .expect("start the cluster");
    let logs = |c: &MariaCluster| c.logs();
    let p = c.wait_primary(Duration::from_secs(90));
    let init: serde_json::Value =
        serde_json::from_str(&c.key("initialized").expect("initialized")).expect("JSON");
    assert_eq!(init["standby_of"], format!("127.0.0.1:{port}"), "{init:#}");
    until(
        "the standby leader replicates from the source",
        Duration::from_secs(30),
        || c.replica_of(p) == Some((port, true)),
        || logs(&c),
    );
    // The source's accounts were copied; the application's writes are refused here.
    assert!(
        !Source::insert(c.port(p), 9_000_002),
        "the standby leader takes writes"
    );
    for i in (0..3).filter(|&i| i != p) {
        c.wait_replicating(i, p, Duration::from_secs(90));
    }
    let rows = |c: &MariaCluster, i: usize| -> Option<Vec<u64>> {
        c.sql(i, &["SELECT n FROM mig.t ORDER BY n"])
            .ok()
            .map(|r| r.iter().filter_map(|l| l.first()?.parse().ok()).collect())
    };
    until(
        "the copy and its replicas hold the rows",
        Duration::from_secs(60),
        || (0..3).all(|i| rows(&c, i).is_some_and(|r| r.len() >= 500)),
        || logs(&c),
    );
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &[]).expect("start the coordinator");
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let cluster = c.cluster_id();
    let st = status_json(&env, &cluster);
    assert_eq!(st["migrating"], true, "{st:#}");
    assert_eq!(st["leader"], c.name(p), "{st:#}");

    // The standby leader lost: another node leads, from the source.
    c.kill_node(p);
    let (q, _) = c.wait_new_primary(p, Duration::from_secs(60));
    until(
        "the new standby leader replicates from the source",
        Duration::from_secs(60),
        || c.replica_of(q) == Some((port, true)),
        || logs(&c),
    );
    c.start_agent(p);
    for i in (0..3).filter(|&i| i != q) {
        c.wait_replicating(i, q, Duration::from_secs(120));
    }
    until(
        "the writer goes on",
        Duration::from_secs(30),
        || writer.count().0 > 200,
        || logs(&c),
    );

    writer.target(c.port(q));
    let log = cut_over(&env, &cluster, writer, || logs(&c));
    let said = outage_said(&c.events());
    eprintln!(
        "cutover: {} rows acknowledged, {} by the cluster; write outage seen by the writer {:?}, said by the agent {said:?}",
        log.acked.len(),
        log.on_target,
        log.outage()
    );
    assert!(said.is_some(), "no outage in the cutover's request_done");
    assert!(
        !Source::insert(port, 9_000_000),
        "the source still takes writes"
    );
    assert_eq!(status_json(&env, &cluster)["migrating"], false);
    assert!(
        Source::insert(c.port(q), 9_000_001),
        "the cluster takes no writes"
    );
    let have = rows(&c, q).expect("the primary's rows");
    none_lost(500, &log.acked, &have);
    assert!(have.binary_search(&9_000_001).is_ok());
    for i in (0..3).filter(|&i| i != q) {
        c.wait_replicating(i, q, Duration::from_secs(60));
        until(
            "the same rows on every node",
            Duration::from_secs(30),
            || rows(&c, i).as_ref() == Some(&have),
            || logs(&c),
        );
    }
}
