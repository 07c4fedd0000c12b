//! Physical clones (`mariadb-backup --stream` from the primary's agent): a node that joins
//! after the primary purged its binary logs, the clone endpoint's authentication, and a
//! clone whose source dies mid-stream.

use std::io::Read as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts, REPL_PASSWORD};
use e2e::mariadb::scenario::{ATTACH, BOOTSTRAP, FAILOVER};
use e2e::mariadb::workload::written;
use engines::mariadb::clone_auth;

/// How long a new node may take to clone the primary and attach.
const CLONE: Duration = Duration::from_secs(120);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Starts nodes 0 and 1 of a three-node cluster (node 2 joins later); the primary, with the
/// schema created and `rows` rows written.
fn two_of_three(rows: u64) -> (MariaCluster, usize) {
    two_of_three_with(rows, MariaOpts::default())
}

fn two_of_three_with(rows: u64, opts: MariaOpts) -> (MariaCluster, usize) {
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
    (c, p)
}

/// Rotates the primary's binary log and purges every older one, until only the current
/// file is left; the GTIDs written so far are then in no binary log.
fn purge_binlogs(c: &MariaCluster, p: usize) {
    let purged = eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        c.sql(p, &["FLUSH BINARY LOGS"]).ok()?;
        let logs = c.sql(p, &["SHOW BINARY LOGS"]).ok()?;
        let last = logs.last()?.first()?.clone();
        c.sql(p, &[&format!("PURGE BINARY LOGS TO '{last}'")])
            .ok()?;
        let left = c.sql(p, &["SHOW BINARY LOGS"]).ok()?;
        (left.len() == 1).then_some(())
    });
    assert!(
        purged.is_some(),
        "the primary kept older binary logs: {:?}",
        c.sql(p, &["SHOW BINARY LOGS"])
    );
}

/// Waits until node `i` (cloning) replicates from `p` and has applied everything `p` has.
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

/// A node that joins after the primary purged its binary logs cannot replay them from the
/// start (the primary answers error 1236); it clones and ends with every row.
#[test]
fn a_new_node_clones_a_primary_whose_binlogs_are_purged() {
    let (mut c, p) = two_of_three(100);
    purge_binlogs(&c, p);
    c.sql(p, &["INSERT INTO e2e.seq VALUES (101)"])
        .expect("write after the purge");
    c.start_agent(2);
    caught_up(&c, 2, p);
    let rows = written(c.port(2)).expect("rows on the new node");
    assert_eq!(
        rows,
        (1..=101).collect::<Vec<u64>>(),
        "rows on the new node"
    );
    assert!(!c.writable(2), "the new replica accepts writes");
    assert!(
        c.agent_log(2).contains("received the backup stream"),
        "the new node did not clone\n{}",
        c.logs()
    );
}

fn get(url: &str, auth: Option<&str>) -> reqwest::blocking::Response {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let mut req = client.get(url);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().expect("the agent answers")
}

/// The admin password reaches `mariadb-backup` through an option file: a password with `#`,
/// a backslash, quotes and surrounding spaces must clone like any other (it was cut at `#`).
#[test]
fn a_password_with_hash_backslash_quotes_and_spaces_clones() {
    let opts = MariaOpts {
        admin_password: " adm#MARKER \\ \"q\" 'x' ",
        ..MariaOpts::default()
    };
    let (mut c, p) = two_of_three_with(20, opts);
    purge_binlogs(&c, p);
    c.start_agent(2);
    caught_up(&c, 2, p);
    let rows = written(c.port(2)).expect("rows on the new node");
    assert_eq!(rows, (1..=20).collect::<Vec<u64>>(), "rows on the new node");
    assert!(
        c.agent_log(2).contains("received the backup stream"),
        "the new node did not clone\n{}",
        c.logs()
    );
}

/// The endpoint streams only to a valid, fresh, unreplayed proof, only on the primary, and
/// one clone at a time.
#[test]
fn the_clone_endpoint_authenticates_and_serves_only_on_the_primary() {
    let (c, p) = two_of_three(3);
    let r = 1 - p;
    let cluster = c.cluster_id();
    let url = |i: usize| format!("{}/v1/clone/stream", c.agent_url(i));
    let valid = || clone_auth::header(REPL_PASSWORD, &cluster, "node-9", now()).expect("header");
    let refused = [
        ("no header", None),
        (
            "wrong key",
            Some(clone_auth::header("not-the-password", &cluster, "node-9", now()).expect("h")),
        ),
        (
            "other cluster",
            Some(clone_auth::header(REPL_PASSWORD, "e2e/maria/other", "node-9", now()).expect("h")),
        ),
        (
            "stale",
            Some(clone_auth::header(REPL_PASSWORD, &cluster, "node-9", now() - 600).expect("h")),
        ),
        ("garbage", Some("Autopilot-Clone node=x, mac=00".to_owned())),
    ];
    for (what, auth) in &refused {
        let resp = get(&url(p), auth.as_deref());
        assert_eq!(resp.status().as_u16(), 401, "{what}");
        let body = resp.text().unwrap_or_default();
        assert_eq!(
            body.trim(),
            "unauthorized",
            "{what}: the answer leaks detail"
        );
    }
    // Refusals are logged with the client's address, one line per 10 s at most.
    let log = c.agent_log(p);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a clone request"))
        .collect();
    assert_eq!(lines.len(), 1, "refusals are not rate-limited: {lines:#?}");
    assert!(lines[0].contains("client=127.0.0.1"), "{}", lines[0]);
    // The replica refuses a valid request.
    let resp = get(&url(r), Some(&valid()));
    assert_eq!(resp.status().as_u16(), 409, "a replica served a clone");
    // The primary streams an xbstream archive; a second clone meanwhile is refused.
    let auth = valid();
    let mut first = get(&url(p), Some(&auth));
    assert_eq!(first.status().as_u16(), 200, "{}", c.logs());
    let mut magic = [0u8; 8];
    first.read_exact(&mut magic).expect("the stream starts");
    assert_eq!(&magic, b"XBSTCK01", "not an xbstream archive");
    let second = get(&url(p), Some(&valid()));
    assert_eq!(second.status().as_u16(), 429, "two clones at once");
    drop(first);
    // The same proof again is a replay, even once the first clone is gone.
    let replay = get(&url(p), Some(&auth));
    assert_eq!(
        replay.status().as_u16(),
        401,
        "a replayed proof was accepted"
    );
    // Dropping the client ended the first clone: a new one may start.
    let again = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        let resp = get(&url(p), Some(&valid()));
        (resp.status().as_u16() == 200).then_some(())
    });
    assert!(again.is_some(), "the abandoned clone still blocks new ones");
    for i in 0..2 {
        let log = c.agent_log(i);
        assert!(
            !log.contains(REPL_PASSWORD) && !log.contains(e2e::mariadb::cluster::ADMIN_PASSWORD),
            "a password is in {}'s log",
            c.name(i)
        );
    }
}

/// The primary dies while a new node reads its stream: the clone fails cleanly (the partial
/// copy is removed; the node had no data of its own, so nothing is kept aside), the agent
/// keeps running, and once another primary is elected the node clones from it and ends with
/// every row.
#[test]
fn a_clone_whose_source_dies_mid_stream_recovers_from_the_next_primary() {
    let (mut c, p) = two_of_three(10);
    let r = 1 - p;
    // Enough data that the stream cannot be done before the primary is killed (the pipe
    // and socket buffers hold a few MB).
    c.sql(
        p,
        &[
            "CREATE TABLE e2e.bulk (n INT PRIMARY KEY, pad VARCHAR(2000))",
            "INSERT INTO e2e.bulk SELECT seq, REPEAT('x', 1900) FROM e2e.seq_1_to_20000",
        ],
    )
    .expect("fill the bulk table");
    c.wait_replicating(r, p, ATTACH);
    c.start_agent(2);
    // The clone marks the data directory it fills.
    let filling = c.dir().join("data-3").join("autopilot-clone-incomplete");
    let started = eventually(CLONE, Duration::from_millis(20), || {
        filling.exists().then_some(())
    });
    assert!(
        started.is_some(),
        "the new node never started a clone\n{}",
        c.logs()
    );
    c.kill_node(p);
    let failed = eventually(Duration::from_secs(90), Duration::from_millis(100), || {
        c.agent_log(2)
            .contains("receive the backup stream")
            .then_some(())
    });
    assert!(
        failed.is_some(),
        "the broken stream was not reported\n{}",
        c.logs()
    );
    assert!(
        c.entries("data-3.aside-").is_empty(),
        "the new node had no data, yet something was kept aside"
    );
    let (np, _) = c.wait_new_primary(p, FAILOVER);
    assert_eq!(np, r, "the surviving replica did not take over");
    caught_up(&c, 2, np);
    let rows = written(c.port(2)).expect("rows");
    assert_eq!(rows, (1..=10).collect::<Vec<u64>>());
    let bulk = c
        .admin(2)
        .value("SELECT COUNT(*) FROM e2e.bulk")
        .expect("bulk rows");
    assert_eq!(bulk, "20000");
    assert!(
        c.agent_mut(2)
            .is_some_and(|a| a.wait_exit(Duration::from_millis(10)).is_none()),
        "the new node's agent exited"
    );
}
