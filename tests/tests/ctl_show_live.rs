//! `autopilotctl show` on a live three-node cluster of each engine under load (issue 16):
//! one replica receives but does not apply (PostgreSQL `pg_wal_replay_pause()`, MariaDB
//! `STOP SLAVE SQL_THREAD`) while the primary writes past the agents' publication buckets
//! (1 MiB of WAL, 10 transactions, 1 s). `show -o json` reports that replica's lag (bytes
//! and seconds for PostgreSQL, transactions for MariaDB); the table is compared with a
//! snapshot once what varies between runs is normalised (which node won the bootstrap,
//! addresses, positions, times, the lag figures themselves but not whether there is lag).
//! Replay then resumes and the test ends with the cluster back to full redundancy.

use std::time::Duration;

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, ctl};
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::MariaOpts;
use e2e::mariadb::scenario::settled as maria_settled;
use e2e::postgres::cluster::PgOpts;
use e2e::postgres::scenario::{settled as pg_settled, start as pg_start};
use serde_json::Value;

/// Bound on one `autopilotctl` call.
const CTL: Duration = Duration::from_secs(30);
/// Lag shows within this: a bucket crossing publishes at once, and every node document is
/// rewritten at least every 30 s anyway.
const PUBLISHED: Duration = Duration::from_secs(45);
/// A resumed replica catches up and says so within this.
const CAUGHT_UP: Duration = Duration::from_secs(60);

/// `autopilotctl <args>` as the admin against `url`: stdout, or a panic with stderr.
fn show(url: &str, args: &[&str]) -> String {
    let (code, out, err) = ctl(
        args,
        &[("AUTOPILOT_URL", url), ("AUTOPILOT_TOKEN", ADMIN_TOKEN)],
        CTL,
    );
    assert_eq!(code, 0, "autopilotctl {args:?}: {out}{err}");
    out
}

/// `autopilotctl -o json show <cluster>`.
fn show_json(url: &str, cluster: &str) -> Value {
    let out = show(url, &["-o", "json", "show", cluster]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("show -o json: {e}: {out}"))
}

/// The member `id` of a `show -o json` answer.
fn member<'a>(v: &'a Value, id: &str) -> Option<&'a Value> {
    v["members"].as_array()?.iter().find(|m| m["id"] == id)
}

/// Whether `m` is a replica streaming with nothing to apply.
fn caught_up(m: &Value) -> bool {
    m["state"] == "streaming"
        && m["lag_bytes"].as_u64().unwrap_or(0) == 0
        && m["lag_transactions"].as_u64().unwrap_or(0) == 0
        && m["lag_seconds"].as_f64().unwrap_or(0.0) == 0.0
}

/// Every run of ASCII digits as `N`.
fn digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !in_run {
                out.push('N');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// Node names replaced by their labels (`<primary>`, `<paused>`, `<replica>`).
fn relabel(s: &str, labels: &[(String, &str)]) -> String {
    labels.iter().fold(s.to_owned(), |s, (name, label)| {
        s.replace(name.as_str(), label)
    })
}

/// One table cell as the snapshot shows it.
fn cell(header: &str, c: &str, labels: &[(String, &str)]) -> String {
    match header {
        "ROLE" | "STATE" | "SYNC" => c.to_owned(),
        "NODE" | "ELIGIBLE" => digits(&relabel(c, labels)),
        // Whether there is lag, not how much.
        "LAG" if c == "-" || c.starts_with("0 ") => c.to_owned(),
        "LAG_S" if c == "-" || c.parse::<f64>().is_ok_and(|x| x == 0.0) => c.to_owned(),
        "LAG" | "LAG_S" => "<lag>".into(),
        "LSN" | "GTID" if c != "-" => format!("<{}>", header.to_ascii_lowercase()),
        _ => digits(c),
    }
}

/// The output of `autopilotctl show` without what varies between runs: the header lines
/// (but the cluster's path and engine) with node names as labels and digits as `N`; the member table cell by cell (see [`cell`]),
/// its rows in the order of `labels`, realigned.
fn normalise(out: &str, labels: &[(String, &str)]) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("NODE "))
        .unwrap_or_else(|| panic!("no member table: {out}"));
    let mut text: String = lines[..at]
        .iter()
        .map(|l| {
            if l.starts_with("cluster:") || l.starts_with("engine:") {
                (*l).to_owned() + "\n"
            } else {
                digits(&relabel(l, labels)) + "\n"
            }
        })
        .collect();
    // Columns start where their header does (cells may hold single spaces).
    let header = lines[at];
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header.as_bytes()[i - 1] == b' '))
        .map(|(i, _)| i)
        .collect();
    let headers: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(starts.len(), headers.len(), "{header}");
    let mut rows: Vec<Vec<String>> = lines[at + 1..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            (0..starts.len())
                .map(|k| {
                    let end = starts.get(k + 1).copied().unwrap_or(l.len()).min(l.len());
                    let raw = l.get(starts[k].min(end)..end).unwrap_or("").trim();
                    cell(headers[k], raw, labels)
                })
                .collect()
        })
        .collect();
    let rank = |r: &Vec<String>| {
        labels
            .iter()
            .position(|(_, label)| r[0] == *label)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by_key(rank);
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for r in std::iter::once(&header_row).chain(&rows) {
        let mut line = String::new();
        for (k, (c, w)) in r.iter().zip(&widths).enumerate() {
            if k + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        text += line.trim_end();
        text.push('\n');
    }
    text
}

/// The table row of `label` in a normalised output, as cells.
fn row<'a>(normalised: &'a str, label: &str) -> Vec<&'a str> {
    let line = normalised
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label}: {normalised}"));
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn show_postgres_with_a_paused_replica() {
    let c = pg_start(3, PgOpts::default());
    let p = pg_settled(&c);
    let replicas: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let (paused, other) = (replicas[0], replicas[1]);
    let cluster = "e2e/pg/main";
    let coord = Coordinator::start(&c.etcd().endpoint(), &["--rate-limit", "0"])
        .expect("start the coordinator");
    let url = coord.url();
    let labels = [
        (c.name(p).to_owned(), "<primary>"),
        (c.name(paused).to_owned(), "<paused>"),
        (c.name(other).to_owned(), "<replica>"),
    ];
    let run = |i: usize, sql: &str| {
        c.sql()
            .query(c.pg_port(i), sql, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{sql} on {}: {e:#}\n{}", c.name(i), c.logs()))
    };

    // Pause replay, let the last replayed commit age past 1 s, write ~4 MiB of WAL.
    run(paused, "SELECT pg_wal_replay_pause()");
    std::thread::sleep(Duration::from_millis(1500));
    run(p, "CREATE TABLE show_lag (n int, pad text)");
    run(
        p,
        "INSERT INTO show_lag SELECT g, repeat('x', 100) FROM generate_series(1, 30000) g",
    );
    let mut last = Value::Null;
    let seen = eventually(PUBLISHED, Duration::from_millis(500), || {
        let v = show_json(url, cluster);
        last = v.clone();
        let m = member(&v, c.name(paused))?;
        let lagging = m["lag_bytes"].as_u64().is_some_and(|b| b > 0)
            && m["lag_seconds"].as_f64().is_some_and(|s| s > 0.0);
        (lagging && member(&v, c.name(other)).is_some_and(caught_up)).then_some(())
    });
    assert!(
        seen.is_some(),
        "{} never showed lag (or {} never caught up): {last:#}\n{}",
        c.name(paused),
        c.name(other),
        c.logs()
    );
    let out = show(url, &["show", cluster]);
    println!("{out}");
    let text = normalise(&out, &labels);
    let lag = row(&text, "<paused>");
    assert_eq!(lag[5..7], ["<lag>", "<lag>"], "{text}");
    insta::assert_snapshot!("postgres_show_with_a_paused_replica", text);

    // Replay again: the paused replica catches up, every replica streams with no lag.
    run(paused, "SELECT pg_wal_replay_resume()");
    let count = "SELECT count(*) FROM show_lag";
    let ok = eventually(CAUGHT_UP, Duration::from_millis(500), || {
        let v = show_json(url, cluster);
        last = v.clone();
        let all = replicas
            .iter()
            .all(|&i| member(&v, c.name(i)).is_some_and(caught_up));
        (all && c.scalar(paused, count).ok() == c.scalar(p, count).ok()).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} did not catch up: {last:#}\n{}",
        c.name(paused),
        c.logs()
    );
    assert_eq!(c.primary(), Some(p), "the primary changed\n{}", c.logs());
}

#[test]
fn show_mariadb_with_a_stopped_applier() {
    let (mut c, p) = maria_settled(MariaOpts::default());
    let replicas: Vec<usize> = (0..3).filter(|&i| i != p).collect();
    let (paused, other) = (replicas[0], replicas[1]);
    let cluster = "e2e/maria/billing";
    let etcd = c.etcd_mut().endpoint();
    let coord = Coordinator::start(&etcd, &["--rate-limit", "0"]).expect("start the coordinator");
    let url = coord.url();
    let labels = [
        (c.name(p).to_owned(), "<primary>"),
        (c.name(paused).to_owned(), "<paused>"),
        (c.name(other).to_owned(), "<replica>"),
    ];

    // The applier stops, the receiver goes on: 30 transactions on the primary.
    c.sql(paused, &["STOP SLAVE SQL_THREAD"])
        .expect("stop the applier");
    let inserts: Vec<String> = (5000..5030)
        .map(|n| format!("INSERT INTO e2e.seq VALUES ({n})"))
        .collect();
    let inserts: Vec<&str> = inserts.iter().map(String::as_str).collect();
    c.sql(p, &inserts).expect("insert on the primary");
    let mut last = Value::Null;
    let seen = eventually(PUBLISHED, Duration::from_millis(500), || {
        let v = show_json(url, cluster);
        last = v.clone();
        let m = member(&v, c.name(paused))?;
        let lagging = m["lag_transactions"].as_u64().is_some_and(|t| t > 0);
        (lagging && member(&v, c.name(other)).is_some_and(caught_up)).then_some(())
    });
    assert!(
        seen.is_some(),
        "{} never showed lag (or {} never caught up): {last:#}\n{}",
        c.name(paused),
        c.name(other),
        c.logs()
    );
    let out = show(url, &["show", cluster]);
    println!("{out}");
    let text = normalise(&out, &labels);
    let lag = row(&text, "<paused>");
    assert_eq!(lag[5], "<lag>", "{text}");
    insta::assert_snapshot!("mariadb_show_with_a_stopped_applier", text);

    // Apply again: the replica catches up, every replica streams with no lag.
    c.sql(paused, &["START SLAVE SQL_THREAD"])
        .expect("start the applier");
    let count = "SELECT COUNT(*) FROM e2e.seq";
    let ok = eventually(CAUGHT_UP, Duration::from_millis(500), || {
        let v = show_json(url, cluster);
        last = v.clone();
        let all = replicas
            .iter()
            .all(|&i| member(&v, c.name(i)).is_some_and(caught_up));
        let same = c.admin(paused).value(count).ok() == c.admin(p).value(count).ok();
        (all && same).then_some(())
    });
    assert!(
        ok.is_some(),
        "{} did not catch up: {last:#}\n{}",
        c.name(paused),
        c.logs()
    );
    assert_eq!(c.primary(), Some(p), "the primary changed\n{}", c.logs());
}
