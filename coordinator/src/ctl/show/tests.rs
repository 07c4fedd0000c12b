//! Snapshots of what `list`, `show`, `history` and `events` print, from the JSON the API
//! answers (members computed by `crate::members`, as the coordinator does).

use cluster::wire::{Timestamp, WaitKind, Waiting};
use serde_json::{Value, json};

use super::*;
use crate::members::{self, tests::postgres};

const NOW: &str = "2026-11-24T16:00:00.000Z";

fn pg_cluster() -> Value {
    let (p, mut nodes, docs) = postgres();
    let db2 = nodes.iter_mut().find(|n| n.id == "db-2").expect("db-2");
    db2.waiting = Some(Waiting {
        kind: WaitKind::Cooldown,
        since: Timestamp::from_unix_millis(1_763_999_940_000),
        until: Some(Timestamp::from_unix_millis(1_764_000_000_000)),
        detail: "the last failover was at 2025-11-24T15:59:00.000Z, failover_cooldown 60s".into(),
    });
    let rows = members::members(Some("postgres"), Some(&p), &nodes, &docs);
    json!({
        "namespace": "demo", "project": "postgres", "cluster": "main", "revision": 1234,
        "engine": "postgres",
        "primary": p, "nodes": nodes, "members": rows,
        "maintenance": {"schema": 1, "enabled": true, "reason": "kernel upgrade", "by": "alice",
            "time": "2026-11-24T15:00:00.000Z"},
        "switchover": {"schema": 1, "candidate": "db-2", "failover": true,
            "requested_by": "bob", "time": "2026-11-24T15:58:00.000Z"},
        "requests": [{"node": "db-5", "action": "reinit", "requested_by": "carol",
            "time": "2026-11-24T15:59:00.000Z"}],
        "unreadable": [], "initialized": null, "state": null,
    })
}

#[test]
fn show_a_postgres_cluster() {
    insta::assert_snapshot!(cluster(&pg_cluster()));
}

#[test]
fn show_a_mariadb_cluster_with_gtids() {
    let mut n1 = cluster::wire::sample::sample_node("db-1");
    n1.role = cluster::wire::Role::Primary;
    n1.replication.gtid = Some("0-1-2150".into());
    let mut n2 = cluster::wire::sample::sample_node("db-2");
    n2.replication.gtid = Some("0-1-2143".into());
    n2.replication.lag_transactions = Some(7);
    n2.replication.lag_seconds = Some(1.0);
    let p = cluster::wire::sample::sample_primary("db-1");
    let rows = members::members(Some("mariadb"), Some(&p), &[n1, n2], &[]);
    let v = json!({
        "namespace": "demo", "project": "mariadb", "cluster": "billing", "revision": 7,
        "engine": "mariadb", "primary": p, "members": rows, "nodes": [],
        "maintenance": null, "switchover": null, "requests": [], "unreadable": [],
    });
    insta::assert_snapshot!(cluster(&v));
}

#[test]
fn show_without_a_primary_or_members() {
    let v = json!({
        "namespace": "a", "project": "p", "cluster": "c", "revision": 1, "engine": null,
        "primary": null, "members": [], "nodes": [], "maintenance": null,
        "switchover": null, "requests": [], "unreadable": ["nodes/x"],
    });
    let out = cluster(&v);
    assert!(out.contains("primary:     NONE\n"), "{out}");
    assert!(out.contains("unreadable:  nodes/x\n"), "{out}");
    assert!(out.ends_with("no member\n"), "{out}");
}

#[test]
fn list_names_the_primary_and_counts_healthy_replicas() {
    let v = json!({"clusters": [
        {"namespace": "demo", "project": "postgres", "cluster": "main", "has_primary": true,
         "nodes": 3, "primary": "pg-1", "replicas": 2, "healthy_replicas": 2, "stopped": 0,
         "maintenance": false},
        {"namespace": "demo", "project": "mariadb", "cluster": "billing", "has_primary": false,
         "nodes": 1, "primary": null, "replicas": 3, "healthy_replicas": 0, "stopped": 2,
         "maintenance": true},
    ]});
    insta::assert_snapshot!(clusters(&v));
}

#[test]
fn history_in_the_engines_notation() {
    let v = json!({"engine": "postgres", "entries": [
        {"time": "2026-11-24T15:00:00.000Z", "from": null, "to": "db-1", "reason": "bootstrap",
         "position": {"epoch": 1, "offset": 0}},
        {"time": "2026-11-24T15:30:00.000Z", "from": "db-1", "to": "db-2",
         "reason": "manual_failover", "position": {"epoch": 2, "offset": 298_355_640}},
    ]});
    insta::assert_snapshot!(history(&v));
}

#[test]
fn events_start_with_their_time_then_kind_node_detail() {
    let lines = [
        event_at(
            "101",
            "event",
            r#"{"revision":101,"type":"event","key":"events/1-db-2","doc":{"schema":1,
               "time":"2026-11-24T15:30:00.123Z","kind":"failover","node":"db-2",
               "detail":"promoted after db-1 was lost","from":"db-1","to":"db-2"}}"#,
            NOW,
        ),
        event_at(
            "102",
            "primary",
            r#"{"revision":102,"type":"primary","key":"primary","doc":null}"#,
            NOW,
        ),
        event_at(
            "103",
            "maintenance",
            r#"{"revision":103,"type":"maintenance","key":"maintenance","doc":{"enabled":true,
               "reason":"upgrade","by":"alice","time":"2026-11-24T15:31:00.000Z"}}"#,
            NOW,
        ),
        event_at(
            "104",
            "switchover",
            r#"{"revision":104,"type":"switchover","key":"switchover","doc":{"candidate":"db-3",
               "failover":true,"requested_by":"bob","time":"2026-11-24T15:32:00.000Z"}}"#,
            NOW,
        ),
        event_at(
            "105",
            "history",
            r#"{"revision":105,"type":"history","key":"history","doc":{"time":
               "2026-11-24T15:33:00.000Z","from":"db-2","to":"db-3","reason":"manual_failover",
               "position":{"epoch":3,"offset":5}}}"#,
            NOW,
        ),
        event_at(
            "106",
            "node",
            r#"{"revision":106,"type":"node","key":"nodes/db-1","doc":null}"#,
            NOW,
        ),
        event_at(
            "107",
            "request",
            r#"{"revision":107,"type":"request","key":"requests/db-3","doc":{"schema":1,
               "action":"reinit","requested_by":"alice","time":"2026-11-24T15:34:00.000Z"}}"#,
            NOW,
        ),
        event_at(
            "108",
            "request",
            r#"{"revision":108,"type":"request","key":"requests/db-3","doc":null}"#,
            NOW,
        ),
        event_at(
            "109",
            "member",
            r#"{"revision":109,"type":"member","key":"members/db-4","doc":null}"#,
            NOW,
        ),
        event_at(
            "",
            "error",
            r#"{"code":"store_unavailable","detail":"the etcd watch ended"}"#,
            NOW,
        ),
    ];
    insta::assert_snapshot!(lines.concat());
}

#[test]
fn sizes_for_people() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(4096), "4.0 KiB");
    assert_eq!(human_bytes(12 * 1024 * 1024 + 300 * 1024), "12.3 MiB");
    assert_eq!(human_bytes(3 << 30), "3.0 GiB");
}

#[test]
fn a_pending_restore_names_its_point() {
    let mut v = pg_cluster();
    v["requests"] = json!([
        {"node": "db-1", "action": "restore", "requested_by": "ops",
            "time": "2026-11-24T15:59:00.000Z", "restore_to": {"time": "2026-11-24T15:00:00.000Z"}},
        {"node": "db-3", "action": "restore", "requested_by": "ops",
            "time": "2026-11-24T15:59:00.000Z", "restore_to": "latest"},
    ]);
    let out = cluster(&v);
    assert!(
        out.contains(
            "request:     restore db-1 pending to 2026-11-24T15:00:00.000Z (by ops at \
             2026-11-24T15:59:00.000Z)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("request:     restore db-3 pending to the end of the archive (by ops"),
        "{out}"
    );
}
