//! The agent's side of the operator's first hour (issue 16), on a real three-node PostgreSQL
//! cluster: every member is recorded in `members/<id>`; the agent serves `/status`,
//! `/cluster` (a stopped member included), `/history` and `/config` (no secret); a node that
//! is not eligible says why in its node key; and the requests `autopilotctl reinit | restart
//! | reload` write (`requests/<node>`) are carried out once by the node they name — reload,
//! restart and rebuild of a replica, which streams again with the same rows — and refused by
//! the primary with the reason. On MariaDB, which has no configuration reload, a reload
//! fails saying so, and a restart and a rebuild of a replica work as on PostgreSQL. The
//! clusters end at full redundancy.

use std::time::Duration;

use e2e::harness::cluster::Agents;
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::MariaOpts;
use e2e::mariadb::scenario::{ATTACH, same_rows_everywhere as maria_same_rows};
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::scenario::{same_rows_everywhere, settled, start};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// The first event of `kind` from node `i` whose detail contains `text`.
fn wait_event_saying(c: &Agents, kind: &str, i: usize, text: &str) -> Value {
    eventually(T, Duration::from_millis(200), || {
        c.events().into_iter().find(|e| {
            e["kind"] == kind
                && e["node"] == c.name(i)
                && e["detail"].as_str().is_some_and(|d| d.contains(text))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no {kind} event from {} saying {text:?}: {:#?}\n{}",
            c.name(i),
            c.events(),
            c.logs()
        )
    })
}

/// Writes an operator's request for node `i` as the coordinator does.
fn request(c: &Agents, i: usize, action: &str) {
    c.put_key(
        &format!("requests/{}", c.name(i)),
        &format!(r#"{{"schema":1,"action":"{action}","requested_by":"e2e"}}"#),
    );
}

/// Waits until node `i` has joined its primary again after a clone: its `joined … cloned`
/// events outnumber `before` (the request's own event is written when the rebuild starts,
/// while the old server still answers).
fn wait_rebuilt(c: &Agents, i: usize, before: usize) {
    let done = eventually(T, Duration::from_millis(200), || {
        (cloned_joins(c, i) > before).then_some(())
    });
    assert!(
        done.is_some(),
        "{} was not rebuilt: {:#?}\n{}",
        c.name(i),
        c.events(),
        c.logs()
    );
}

fn cloned_joins(c: &Agents, i: usize) -> usize {
    c.events()
        .iter()
        .filter(|e| e["kind"] == "joined" && e["node"] == c.name(i) && e["detail"] == "cloned")
        .count()
}

fn request_gone(c: &Agents, i: usize) {
    let gone = eventually(T, Duration::from_millis(100), || {
        c.key(&format!("requests/{}", c.name(i)))
            .is_none()
            .then_some(())
    });
    assert!(gone.is_some(), "the request for {} stayed", c.name(i));
}

#[test]
fn postgres_status_documents_reasons_and_operator_requests() {
    let mut c = start(3, PgOpts::default());
    let p = settled(&c);
    let x = (0..3).find(|&i| i != p).expect("a replica");
    let y = (0..3).find(|&i| i != p && i != x).expect("another replica");

    // Members are recorded, bound to no lease.
    for i in 0..3 {
        let m = c
            .doc(&format!("members/{}", c.name(i)))
            .unwrap_or_else(|| panic!("no members/{}", c.name(i)));
        assert_eq!(m["port"], c.pg_port(i), "{m:#}");
    }

    // The status documents.
    let st = eventually(T, Duration::from_millis(200), || {
        c.get_json(x, "/status")
            .filter(|s| s["primary"] == c.name(p) && s["document"]["role"] == "replica")
    })
    .unwrap_or_else(|| panic!("{}'s /status never named the primary", c.name(x)));
    assert_eq!(st["node"], c.name(x), "{st:#}");
    assert!(st["cluster"]["name"].is_string(), "{st:#}");
    assert_eq!(st["document"]["replication"]["source"], c.name(p), "{st:#}");
    let cl = c.get_json(p, "/cluster").expect("/cluster");
    let members = cl["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{cl:#}");
    assert!(members.iter().all(|m| m["state"] == "running"), "{cl:#}");
    let hist = c.get_json(p, "/history").expect("/history");
    assert_eq!(hist["entries"][0]["reason"], "bootstrap", "{hist:#}");
    let cfg = c.get_json(x, "/config").expect("/config");
    assert_eq!(cfg["node"]["name"], c.name(x), "{cfg:#}");
    let data_dir = cfg["engine"]["postgres"]["data_dir"]
        .as_str()
        .unwrap_or_default();
    assert!(data_dir.starts_with('/'), "data_dir not absolute: {cfg:#}");
    let yaml = cfg.to_string();
    let password = std::fs::read_to_string(c.dir().join("su.pw"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(
        password.is_empty() || !yaml.contains(&password),
        "/config shows a password"
    );

    // A node that is not eligible says why: `nofailover`, after a restart with the tag.
    let config = c.config_path(y).to_path_buf();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replacen("node: { ", "node: { nofailover: true, ", 1),
    )
    .expect("write config");
    c.sigterm_agent(y);
    assert!(
        c.wait_agent_exit(y, T),
        "{}'s agent did not stop",
        c.name(y)
    );
    // While it is down, it is still a member, shown stopped.
    let stopped = eventually(T, Duration::from_millis(200), || {
        c.get_json(p, "/cluster").filter(|cl| {
            cl["members"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["id"] == c.name(y) && m["state"] == "stopped")
            })
        })
    });
    assert!(stopped.is_some(), "{} not shown stopped", c.name(y));
    c.start_agent(y);
    c.wait_streaming(y, p, T);
    let doc = eventually(T, Duration::from_millis(200), || {
        c.doc(&format!("nodes/{}", c.name(y)))
            .filter(|d| d["ineligible"]["code"] == "nofailover")
    })
    .unwrap_or_else(|| panic!("{} does not say why it is not eligible", c.name(y)));
    assert_eq!(doc["eligible"], false, "{doc:#}");
    assert!(
        doc["ineligible"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("nofailover")),
        "{doc:#}"
    );

    // reload on a replica.
    request(&c, x, "reload");
    wait_event_saying(&c, "request_done", x, "reload");
    request_gone(&c, x);

    // restart on the primary: refused, and it stays primary.
    request(&c, p, "restart");
    let e = wait_event_saying(&c, "request_failed", p, "switch over first");
    assert!(e["detail"].as_str().is_some_and(|d| d.contains("primary")));
    request_gone(&c, p);
    assert_eq!(c.primary(), Some(p), "{}", c.logs());

    // restart on a replica: its postmaster changes, and it streams again.
    let before = c.postmaster_pid(x);
    request(&c, x, "restart");
    wait_event_saying(&c, "request_done", x, "restart");
    request_gone(&c, x);
    c.wait_streaming(x, p, T);
    assert_ne!(c.postmaster_pid(x), before, "the database did not restart");

    // reinit on a replica: rebuilt from the primary, streaming again with the same rows.
    c.sql()
        .query(
            c.pg_port(p),
            "CREATE TABLE IF NOT EXISTS reinit_check (n int); \
             INSERT INTO reinit_check SELECT generate_series(1, 100)",
            Duration::from_secs(10),
        )
        .expect("write rows on the primary");
    let joins = cloned_joins(&c, x);
    request(&c, x, "reinit");
    wait_event_saying(&c, "request_done", x, "reinit");
    request_gone(&c, x);
    wait_rebuilt(&c, x, joins);
    c.wait_streaming(x, p, T);
    c.wait_streaming(y, p, T);
    same_rows_everywhere(&c, p);
    for i in [x, y] {
        let rows = eventually(T, Duration::from_millis(200), || {
            c.scalar(i, "SELECT count(*) FROM reinit_check")
                .ok()
                .filter(|n| n == "100")
        });
        assert!(rows.is_some(), "{} lacks the rows", c.name(i));
    }
    // Each request once: one reinit, one restart, one reload from x.
    let from_x = |text: &str| {
        c.events()
            .iter()
            .filter(|e| {
                e["node"] == c.name(x)
                    && e["kind"] == "request_done"
                    && e["detail"].as_str().is_some_and(|d| d.starts_with(text))
            })
            .count()
    };
    assert_eq!(
        (from_x("reinit"), from_x("restart"), from_x("reload")),
        (1, 1, 1)
    );
    assert_eq!(c.primary(), Some(p), "{}", c.logs());
}

#[test]
fn mariadb_operator_requests() {
    let (c, p) = e2e::mariadb::scenario::settled(MariaOpts::default());
    let x = (0..3).find(|&i| i != p).expect("a replica");
    let y = (0..3).find(|&i| i != p && i != x).expect("another replica");

    // No reload on MariaDB: refused with the reason, nothing else happens.
    request(&c, x, "reload");
    wait_event_saying(&c, "request_failed", x, "reload failed");
    request_gone(&c, x);

    // restart: a new mariadbd, replicating again.
    let before = c.mariadbd_pid(x);
    request(&c, x, "restart");
    wait_event_saying(&c, "request_done", x, "restart");
    c.wait_replicating(x, p, ATTACH);
    assert_ne!(c.mariadbd_pid(x), before, "the database did not restart");

    // reinit: rebuilt from the primary, with the same rows.
    c.sql(p, &["INSERT INTO e2e.seq VALUES (424242)"])
        .expect("write on the primary");
    let joins = cloned_joins(&c, x);
    request(&c, x, "reinit");
    wait_event_saying(&c, "request_done", x, "reinit");
    request_gone(&c, x);
    wait_rebuilt(&c, x, joins);
    c.wait_replicating(x, p, ATTACH);
    c.wait_replicating(y, p, ATTACH);
    maria_same_rows(&c, p);
    assert_eq!(
        c.admin(x)
            .value("SELECT COUNT(*) FROM e2e.seq WHERE n = 424242")
            .expect("count"),
        "1"
    );
    assert_eq!(c.primary(), Some(p), "{}", c.logs());
}
