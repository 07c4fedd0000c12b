//! The etcd contract tells the truth: every field of the node and primary documents is
//! checked against the database's own answer on real MariaDB and PostgreSQL clusters
//! (version, uptime, connections as clients come, storage, the source a replica follows,
//! its receiver state and lag — growing while a replica is held back, back to nothing after
//! — the primary's replicas and which of them are synchronous), a plain `etcdctl watch
//! --prefix` sees the changes, the primary's `state` document sums the cluster up, and
//! documents written by hand into the keys crash nothing.

use std::time::{Duration, Instant};

use e2e::harness::cluster::Agents;
use e2e::mariadb::cluster::MariaOpts;
use e2e::mariadb::scenario::settled as maria_settled;
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::scenario::{settled as pg_settled, start as pg_start};
use serde_json::Value;

/// Long enough for the slow refresh (30 s) of figures that do not force a rewrite.
const REFRESHED: Duration = Duration::from_secs(45);

/// Polls `check` until it passes; panics with its last complaint after `within`.
fn until<T>(within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("after {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn node_doc(c: &Agents, i: usize) -> Result<Value, String> {
    c.doc(&format!("nodes/{}", c.name(i)))
        .ok_or_else(|| format!("no node document for {}", c.name(i)))
}

/// `connections.current` of node `i`'s document.
fn connections(c: &Agents, i: usize) -> u64 {
    node_doc(c, i).expect("node document")["connections"]["current"]
        .as_u64()
        .expect("connections.current")
}

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// What every node document must say of its server, whatever its role.
fn check_server(doc: &Value, version: &str, max_connections: u64) -> Result<(), String> {
    let id = &doc["id"];
    expect(doc["version"] == version, || {
        format!(
            "{id}: version {} is not the server's {version:?}",
            doc["version"]
        )
    })?;
    expect(doc["agent_version"].is_string(), || {
        format!("{id}: no agent_version: {doc}")
    })?;
    expect(
        doc["uptime_seconds"].as_u64().is_some_and(|u| u >= 1),
        || format!("{id}: uptime {}", doc["uptime_seconds"]),
    )?;
    let conn = &doc["connections"];
    expect(
        conn["max"].as_u64() == Some(max_connections) && conn["current"].as_u64() >= Some(1),
        || format!("{id}: connections {conn}, the server allows {max_connections}"),
    )?;
    let st = &doc["storage"];
    let (total, used, free) = (
        st["total_bytes"].as_u64().unwrap_or(0),
        st["used_bytes"].as_u64().unwrap_or(0),
        st["free_bytes"].as_u64().unwrap_or(0),
    );
    expect(
        total > 0 && used > 0 && free > 0 && used + free <= total,
        || format!("{id}: storage {st}"),
    )
}

/// A replica's replication block: following `primary` at `address`, streaming, no error.
fn check_replica(doc: &Value, primary: &str, address: &str, lag_field: &str) -> Result<(), String> {
    let id = &doc["id"];
    let r = &doc["replication"];
    expect(doc["role"] == "replica", || {
        format!("{id}: role {}", doc["role"])
    })?;
    expect(r["source"] == primary, || {
        format!("{id}: source {} is not {primary}", r["source"])
    })?;
    expect(r["source_address"] == address, || {
        format!(
            "{id}: source_address {} is not {address}",
            r["source_address"]
        )
    })?;
    expect(r["state"] == "streaming" && r["receiving"] == true, || {
        format!("{id}: state {} receiving {}", r["state"], r["receiving"])
    })?;
    expect(r["last_error"].is_null(), || {
        format!("{id}: last_error {}", r["last_error"])
    })?;
    expect(
        r["lag_seconds"].is_number() && r[lag_field].is_number(),
        || {
            format!(
                "{id}: lag_seconds {} {lag_field} {}",
                r["lag_seconds"], r[lag_field]
            )
        },
    )
}

/// The `primary` document: `replicas` by name, each `synchronous` as the database says.
fn check_primary_doc(
    c: &Agents,
    p: usize,
    version: &str,
    synchronous: bool,
    sync_by_name: &[(String, bool)],
) -> Result<(), String> {
    let doc = c.doc("primary").ok_or("no primary document")?;
    let r = &doc["replication"];
    expect(doc["id"] == c.name(p) && doc["status"] == "online", || {
        format!("primary document {doc}")
    })?;
    expect(doc["version"] == version, || {
        format!("primary version {}", doc["version"])
    })?;
    expect(r["replicas"] == sync_by_name.len(), || {
        format!("replicas {}", r["replicas"])
    })?;
    expect(r["synchronous"] == synchronous, || {
        format!("synchronous {}", r["synchronous"])
    })?;
    let want_sync = sync_by_name.iter().filter(|(_, s)| *s).count();
    expect(r["replicas_synchronous"] == want_sync, || {
        format!(
            "replicas_synchronous {} (database: {want_sync})",
            r["replicas_synchronous"]
        )
    })?;
    let mut listed: Vec<(String, Value)> = r["streaming"]
        .as_array()
        .ok_or_else(|| format!("no streaming list: {r}"))?
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_owned(),
                s["synchronous"].clone(),
            )
        })
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want: Vec<(String, Value)> = sync_by_name
        .iter()
        .map(|(n, s)| (n.clone(), Value::Bool(*s)))
        .collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    expect(listed == want, || {
        format!("streaming {listed:?}, the database says {want:?}")
    })
}

/// The `state` document: the cluster's names, every node with its role, the primary's and
/// the replicas' endpoints (`addresses[i]` is node `i`'s `host:port`).
fn check_state(c: &Agents, p: usize, addresses: &[String]) -> Result<(), String> {
    let doc = c.doc("state").ok_or("no state document")?;
    let names: Vec<&str> = c
        .prefix()
        .trim_end_matches('/')
        .rsplit('/')
        .take(3)
        .collect();
    expect(
        doc["cluster_name"] == names[0]
            && doc["project"] == names[1]
            && doc["namespace"] == names[2],
        || format!("state names {doc} for prefix {}", c.prefix()),
    )?;
    let nodes = doc["nodes"].as_array().ok_or("no nodes")?;
    expect(nodes.len() == addresses.len(), || {
        format!("state nodes {nodes:?}")
    })?;
    for (i, address) in addresses.iter().enumerate() {
        let n = nodes
            .iter()
            .find(|n| n["id"] == c.name(i))
            .ok_or_else(|| format!("{} missing from state", c.name(i)))?;
        let role = if i == p { "primary" } else { "replica" };
        expect(
            n["role"] == role
                && n["status"] == "online"
                && n["health"] == "healthy"
                && format!("{}:{}", n["ip_address"].as_str().unwrap_or(""), n["port"]) == *address,
            || format!("state node {n}, expected a healthy {role} at {address}"),
        )?;
    }
    let services = doc["services"].as_array().ok_or("no services")?;
    let endpoints = |name: &str| -> Vec<String> {
        let mut e: Vec<String> = services
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["endpoints"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        e.sort();
        e
    };
    let mut replicas: Vec<String> = (0..addresses.len())
        .filter(|&i| i != p)
        .map(|i| addresses[i].clone())
        .collect();
    replicas.sort();
    expect(
        endpoints("primary") == [addresses[p].clone()] && endpoints("replicas") == replicas,
        || format!("services {services:?}"),
    )
}

/// The load balancers' endpoints answer `want` (HTTP status) on node `i`.
fn check_http(c: &Agents, i: usize, want: &[(&str, u16)]) {
    for (path, code) in want {
        until(Duration::from_secs(10), || {
            let got = c.http_status(i, path);
            expect(got == Some(*code), || {
                format!("{} {path}: {got:?}, expected {code}", c.name(i))
            })
        });
    }
}

/// `/statements` on node `i` lists a statement containing `marker` run at least `calls`
/// times; the rank gauges are exported; a bad limit gets 400.
fn check_top_statements(c: &Agents, i: usize, marker: &str, calls: u64) {
    until(Duration::from_secs(20), || {
        let doc = c
            .get_json(i, "/statements?limit=100")
            .ok_or("no /statements answer")?;
        let list = doc["statements"]
            .as_array()
            .ok_or_else(|| format!("no statements: {doc}"))?;
        let found = list
            .iter()
            .find(|s| s["query"].as_str().is_some_and(|q| q.contains(marker)));
        expect(
            doc["node"] == c.name(i)
                && found.is_some_and(|s| {
                    s["calls"].as_u64() >= Some(calls) && s["rank"].as_u64() >= Some(1)
                }),
            || {
                format!(
                    "{marker} not among {} statements with {calls} calls: {found:?}",
                    list.len()
                )
            },
        )
    });
    check_http(
        c,
        i,
        &[("/statements?limit=0", 400), ("/statements?limit=abc", 400)],
    );
    // No password, nor its hash, ever reaches the list (utility statements keep literals).
    let all = c
        .get_json(i, "/statements?limit=100")
        .map(|d| d.to_string())
        .unwrap_or_default();
    for secret in [
        "SCRAM-SHA-256",
        "PASSWORD '",
        "IDENTIFIED BY '",
        "secret",
        "MARKER",
    ] {
        assert!(!all.contains(secret), "{secret} in /statements: {all}");
    }
    until(Duration::from_secs(20), || {
        let m = c.metrics(i);
        expect(
            m.lines().any(|l| {
                l.starts_with("autopilot_top_statement_time_seconds{rank=\"1\"}")
                    && !l.ends_with(" 0")
            }),
            || "no autopilot_top_statement_time_seconds{rank=\"1\"} above 0".to_owned(),
        )
    });
}

/// The database's own log lines reach the agent's log at the level they name: none of its
/// informational lines (`tag`: PostgreSQL `LOG:`, MariaDB `[Note]`) is a warning or an error.
fn check_log_levels(c: &Agents, tag: &str) {
    for i in 0..c.len() {
        let log = c.agent_log(i);
        let wrong: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(tag) && (l.contains("WARN") || l.contains("ERROR")))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{}: {tag} lines logged as warnings: {wrong:#?}",
            c.name(i)
        );
        assert!(
            log.lines().any(|l| l.contains(tag) && l.contains("INFO")),
            "{}: no {tag} line at INFO",
            c.name(i)
        );
    }
}

/// The documents a plain watcher saw for node `id` (`etcdctl watch` prints the key, then
/// the value, per change).
fn watched(out: &std::path::Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|d| d["id"] == id && d.get("replication").is_some())
        .collect()
}

/// Hand-written garbage in the keys: no agent exits, the primary stays, writes go on.
fn garbage_crashes_nothing(c: &Agents, p: usize, write: impl Fn() -> Result<(), String>) {
    for (key, value) in [
        ("nodes/intruder", "{not json"),
        ("nodes/half", r#"{"schema":1,"id":"half"}"#),
        ("switchover", "[1,2,3]"),
        ("state", "\u{1}binary"),
        ("events/0000000000000-bogus", "null"),
    ] {
        c.put_key(key, value);
    }
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..c.len() {
        assert!(
            c.agent_alive(i),
            "{}'s agent exited\n{}",
            c.name(i),
            c.logs()
        );
    }
    assert_eq!(c.primary(), Some(p), "the primary changed\n{}", c.logs());
    until(Duration::from_secs(10), &write);
    for key in ["nodes/intruder", "nodes/half", "switchover", "state"] {
        c.del_key(key);
    }
    c.del_key("events/0000000000000-bogus");
}

#[test]
fn mariadb_documents_say_what_the_servers_say() {
    let (c, p) = maria_settled(MariaOpts::default());
    let replicas: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let value = |i: usize, sql: &str| c.admin(i).value(sql).expect(sql);
    let version = value(p, "SELECT @@version");
    let max_connections: u64 = value(p, "SELECT @@max_connections")
        .parse()
        .expect("number");
    let address = format!("{}:{}", c.host(p), c.port(p));
    until(REFRESHED, || {
        for i in 0..3 {
            let doc = node_doc(&c, i)?;
            check_server(&doc, &version, max_connections)?;
            if i != p {
                check_replica(&doc, c.name(p), &address, "lag_transactions")?;
            }
        }
        // Semi-sync: the primary counts its acknowledging replicas.
        let clients: usize = value(
            p,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'",
        )
        .parse()
        .unwrap_or(0);
        expect(clients == 2, || format!("{clients} semi-sync clients"))?;
        let names: Vec<(String, bool)> = replicas
            .iter()
            .map(|&i| (c.name(i).to_owned(), true))
            .collect();
        check_primary_doc(&c, p, &version, true, &names)?;
        let addresses: Vec<String> = (0..3)
            .map(|i| format!("{}:{}", c.host(i), c.port(i)))
            .collect();
        check_state(&c, p, &addresses)
    });

    check_log_levels(&c, "[Note]");

    // Load balancers: every node reads, the replicas are semi-synchronous, lag by time.
    check_http(
        &c,
        p,
        &[
            ("/read-only", 200),
            ("/sync", 503),
            ("/async", 503),
            ("/replica?lag=10s", 503),
        ],
    );
    for &i in &replicas {
        check_http(
            &c,
            i,
            &[
                ("/read-only", 200),
                ("/sync", 200),
                ("/async", 503),
                ("/replica?lag=10s", 200),
                ("/replica?lag=16MB", 400),
                ("/replica?lag=soon", 400),
            ],
        );
    }

    // The top statements: a recognisable one (by its alias: literals are normalised away),
    // run 30 times on the primary.
    let marker: Vec<&str> = std::iter::repeat_n("SELECT SLEEP(0.01) AS top_marker", 30).collect();
    c.sql(p, &marker).expect("run the marker");
    check_top_statements(&c, p, "top_marker", 30);

    // Connections rise as clients connect (on the slow refresh: nobody acts on them).
    let r = replicas[0];
    let before = connections(&c, r);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sql = c.admin(r);
    let held: Vec<mysql_async::Conn> = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..12 {
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname(sql.host.clone())
                .tcp_port(sql.port)
                .user(Some(sql.user.clone()))
                .pass(Some(sql.password.clone()));
            held.push(mysql_async::Conn::new(opts).await.expect("connect"));
        }
        held
    });
    until(REFRESHED, || {
        let doc = node_doc(&c, r)?;
        let now = doc["connections"]["current"].as_u64().unwrap_or(0);
        let server: u64 = value(r, "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'").parse().unwrap_or(0);
        expect(
            now >= before.max(1) + 10 && now.abs_diff(server) <= 3,
            || format!("connections {now} (before {before}, the server says {server})"),
        )
    });
    rt.block_on(async {
        for conn in held {
            let _ = conn.disconnect().await;
        }
    });

    // A replica that receives but does not apply: its lag in transactions grows, a plain
    // watcher sees it, and it goes back to nothing once it applies again.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("watch.out");
    let mut watcher = c.watch_prefix(&out);
    let held_back = replicas[1];
    c.sql(held_back, &["STOP SLAVE SQL_THREAD"])
        .expect("stop the applier");
    let inserts: Vec<String> = (1000..1025)
        .map(|n| format!("INSERT INTO e2e.seq VALUES ({n})"))
        .collect();
    let inserts: Vec<&str> = inserts.iter().map(String::as_str).collect();
    c.sql(p, &inserts).expect("insert on the primary");
    until(Duration::from_secs(15), || {
        let doc = node_doc(&c, held_back)?;
        let r = &doc["replication"];
        expect(
            r["lag_transactions"].as_u64() >= Some(25) && r["state"] == "streaming",
            || format!("held back: {r}"),
        )
    });
    // MariaDB does not know how far behind a stopped applier is: no longer within any lag.
    check_http(
        &c,
        held_back,
        &[("/replica?lag=1h", 503), ("/replica", 200)],
    );
    c.sql(held_back, &["START SLAVE SQL_THREAD"])
        .expect("start the applier");
    until(Duration::from_secs(15), || {
        let doc = node_doc(&c, held_back)?;
        expect(doc["replication"]["lag_transactions"] == 0, || {
            format!("caught up? {}", doc["replication"])
        })
    });
    // An apply error (a row the replica has that the primary then inserts): `state: error`
    // with the server's message; repaired, the replica streams again.
    c.sql(
        held_back,
        &[
            "SET SESSION sql_log_bin = 0",
            "INSERT INTO e2e.seq VALUES (4242)",
        ],
    )
    .expect("a conflicting row on the replica");
    c.sql(p, &["INSERT INTO e2e.seq VALUES (4242)"])
        .expect("insert on the primary");
    until(Duration::from_secs(15), || {
        let doc = node_doc(&c, held_back)?;
        let r = &doc["replication"];
        expect(
            r["state"] == "error"
                && r["last_error"].as_str().is_some_and(|e| e.contains("1062"))
                && doc["health"] == "unhealthy",
            || format!("apply error: health {} {r}", doc["health"]),
        )
    });
    c.sql(
        held_back,
        &[
            "SET SESSION sql_log_bin = 0",
            "DELETE FROM e2e.seq WHERE n = 4242",
            "START SLAVE SQL_THREAD",
        ],
    )
    .expect("repair the replica");
    until(Duration::from_secs(15), || {
        let doc = node_doc(&c, held_back)?;
        let r = &doc["replication"];
        expect(
            r["state"] == "streaming" && r["last_error"].is_null() && doc["health"] == "healthy",
            || format!("repaired? health {} {r}", doc["health"]),
        )
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    let seen = watched(&out, c.name(held_back));
    assert!(
        seen.iter()
            .any(|d| d["replication"]["lag_transactions"].as_u64() >= Some(25)),
        "etcdctl watch did not see the lag: {seen:?}"
    );

    garbage_crashes_nothing(&c, p, || {
        c.sql(p, &["INSERT INTO e2e.seq VALUES (2000)"])
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
}

#[test]
fn postgres_documents_say_what_the_servers_say() {
    let c = pg_start(
        3,
        PgOpts {
            durability: "sync",
            ..PgOpts::default()
        },
    );
    let p = pg_settled(&c);
    let replicas: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let scalar = |i: usize, sql: &str| c.scalar(i, sql).expect(sql);
    let version = scalar(p, "SELECT version()");
    let max_connections: u64 = scalar(p, "SHOW max_connections").parse().expect("number");
    let address = format!("127.0.0.1:{}", c.pg_port(p));
    until(REFRESHED, || {
        for i in 0..3 {
            let doc = node_doc(&c, i)?;
            check_server(&doc, &version, max_connections)?;
            if i != p {
                check_replica(&doc, c.name(p), &address, "lag_bytes")?;
            }
        }
        let names: Vec<(String, bool)> = replicas
            .iter()
            .map(|&i| {
                let app = engines::postgres::settings::slot_name(c.name(i));
                let state = c
                    .scalar(
                        p,
                        &format!(
                            "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{app}'"
                        ),
                    )
                    .unwrap_or_default();
                (c.name(i).to_owned(), matches!(state.as_str(), "sync" | "quorum"))
            })
            .collect();
        expect(names.iter().any(|(_, s)| *s), || {
            format!("no synchronous standby: {names:?}")
        })?;
        check_primary_doc(&c, p, &version, true, &names)?;
        let addresses: Vec<String> = (0..3)
            .map(|i| format!("127.0.0.1:{}", c.pg_port(i)))
            .collect();
        check_state(&c, p, &addresses)
    });

    check_log_levels(&c, " LOG:");

    // Load balancers: every node reads; `/sync` and `/async` as pg_stat_replication says.
    check_http(
        &c,
        p,
        &[
            ("/read-only", 200),
            ("/sync", 503),
            ("/async", 503),
            ("/replica?lag=16MB", 503),
        ],
    );
    for &i in &replicas {
        let app = engines::postgres::settings::slot_name(c.name(i));
        let state = scalar(
            p,
            &format!("SELECT sync_state FROM pg_stat_replication WHERE application_name = '{app}'"),
        );
        let sync = matches!(state.as_str(), "sync" | "quorum");
        check_http(
            &c,
            i,
            &[
                ("/read-only", 200),
                ("/sync", if sync { 200 } else { 503 }),
                ("/async", if sync { 503 } else { 200 }),
                ("/replica?lag=16MB", 200),
                ("/replica?lag=10s", 200),
                ("/replica?lag=1.5MB", 400),
            ],
        );
    }

    // The top statements: a recognisable one (by its alias: literals are normalised away),
    // run 30 times on the primary.
    for _ in 0..30 {
        scalar(p, "SELECT pg_sleep(0.01)::text AS top_marker");
    }
    check_top_statements(&c, p, "top_marker", 30);

    // Connections rise as clients connect.
    let r = replicas[0];
    let before = connections(&c, r);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let port = c.pg_port(r);
    let held: Vec<tokio_postgres::Client> = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..12 {
            let (client, conn) = tokio_postgres::Config::new()
                .host("127.0.0.1")
                .port(port)
                .user(e2e::postgres::server::SUPERUSER)
                .password(e2e::postgres::server::SUPERUSER_PASSWORD)
                .dbname("postgres")
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            held.push(client);
        }
        held
    });
    until(REFRESHED, || {
        let doc = node_doc(&c, r)?;
        let now = doc["connections"]["current"].as_u64().unwrap_or(0);
        let server: u64 = scalar(
            r,
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
        )
        .parse()
        .unwrap_or(0);
        expect(
            now >= before.max(1) + 10 && now.abs_diff(server) <= 3,
            || format!("connections {now} (before {before}, the server says {server})"),
        )
    });
    drop(held);

    // A standby that receives but does not replay: its lag in bytes and seconds grows, a
    // plain watcher sees it, and it goes back to nothing once it replays again.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("watch.out");
    let mut watcher = c.watch_prefix(&out);
    let held_back = replicas[1];
    scalar(held_back, "SELECT pg_wal_replay_pause()::text");
    let run = |i: usize, sql: &str| {
        c.sql()
            .query(c.pg_port(i), sql, Duration::from_secs(20))
            .map(|_| ())
            .map_err(|e| format!("{sql}: {e:#}"))
    };
    run(p, "CREATE TABLE IF NOT EXISTS doc_lag (n int, pad text)").expect("create");
    run(
        p,
        "INSERT INTO doc_lag SELECT g, repeat('x', 100) FROM generate_series(1, 30000) g",
    )
    .expect("insert");
    until(Duration::from_secs(20), || {
        let doc = node_doc(&c, held_back)?;
        let r = &doc["replication"];
        expect(
            r["lag_bytes"].as_u64() >= Some(1 << 20)
                && r["lag_seconds"].as_f64() >= Some(1.0)
                && r["state"] == "streaming",
            || format!("held back: {r}"),
        )
    });
    check_http(
        &c,
        held_back,
        &[
            ("/replica?lag=512kB", 503),
            ("/replica?lag=1GB", 200),
            ("/replica", 200),
        ],
    );
    scalar(held_back, "SELECT pg_wal_replay_resume()::text");
    until(Duration::from_secs(20), || {
        let doc = node_doc(&c, held_back)?;
        let r = &doc["replication"];
        expect(
            r["lag_bytes"].as_u64() < Some(1 << 20) && r["lag_seconds"].as_f64() < Some(1.0),
            || format!("caught up? {r}"),
        )
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    let seen = watched(&out, c.name(held_back));
    assert!(
        seen.iter()
            .any(|d| d["replication"]["lag_bytes"].as_u64() >= Some(1 << 20)),
        "etcdctl watch did not see the lag: {seen:?}"
    );

    garbage_crashes_nothing(&c, p, || run(p, "INSERT INTO doc_lag VALUES (0, 'after')"));
}
