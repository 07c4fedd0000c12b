//! Round trips, forward compatibility and key parsing of the wire contract.

use super::sample::{sample_node, sample_primary};
use super::*;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

fn round_trip<T: Document + PartialEq + std::fmt::Debug>(doc: T) {
    let bytes = encode(&doc);
    let back: T = decode(&bytes).expect("decode what we encoded");
    assert_eq!(back, doc);
    let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["schema"], 1, "{} carries schema 1", T::KIND);
}

#[test]
fn every_document_round_trips() {
    round_trip(sample_node("db-2"));
    round_trip(sample_primary("db-1"));
    round_trip(ClusterStateDoc {
        schema: 1,
        namespace: "production".into(),
        project: "bluebird".into(),
        cluster_name: "billing".into(),
        nodes: vec![ClusterNode {
            id: "db-1".into(),
            name: "db-1".into(),
            ip_address: "10.0.0.1".into(),
            port: 3306,
            role: Role::Primary,
            status: NodeStatus::Online,
            health: Health::Healthy,
        }],
        services: vec![Service {
            name: "primary".into(),
            endpoints: vec!["10.0.0.1:3306".into()],
        }],
        last_updated: t(5),
    });
    round_trip(InitializedDoc {
        schema: 1,
        database: DatabaseIdentity {
            engine: "postgres".into(),
            system_id: "7300000000000000001".into(),
        },
        time: t(6),
        node: "db-1".into(),
        term: 2,
        term_since: Some(t(7)),
        term_reason: Some("restored in place on db-1".into()),
        standby_of: Some("10.0.0.9:5432".into()),
    });
    // A document from before terms reads as term 1.
    let old: InitializedDoc = decode(
        br#"{"schema":1,"database":{"engine":"postgres","system_id":"1"},"time":"2026-01-01T00:00:00Z","node":"db-1"}"#,
    )
    .expect("an initialized document without a term reads");
    assert_eq!(old.term, 1);
    round_trip(LockDoc {
        schema: 1,
        holder: "db-1".into(),
        purpose: LockPurpose::Bootstrap,
        time: t(7),
    });
    round_trip(HistoryDoc {
        schema: 1,
        entries: vec![HistoryEntry {
            time: t(8),
            from: None,
            to: "db-1".into(),
            to_address: Some("10.0.0.1:3306".into()),
            reason: "bootstrap".into(),
            position: Position::default(),
        }],
    });
    round_trip(MaintenanceDoc {
        schema: 1,
        enabled: true,
        reason: Some("upgrade".into()),
        by: Some("alice".into()),
        time: Some(t(9)),
    });
    round_trip(SwitchoverDoc {
        schema: 1,
        candidate: Some("db-2".into()),
        failover: true,
        requested_by: Some("alice".into()),
        time: Some(t(10)),
    });
    round_trip(EventDoc {
        schema: 1,
        time: t(11),
        kind: EventKind::Failover,
        node: "db-2".into(),
        detail: "promoted".into(),
        from: Some("db-1".into()),
        to: Some("db-2".into()),
        position: Some(Position {
            epoch: 2,
            offset: 77,
        }),
    });
}

#[test]
fn times_are_rfc3339_utc_millis() {
    let json = serde_json::to_string(&t(1_763_939_100_123)).expect("json");
    assert_eq!(json, "\"2025-11-23T23:05:00.123Z\"");
    let back: Timestamp = serde_json::from_str("\"2025-11-23T23:05:00Z\"").expect("no fraction ok");
    assert_eq!(back.unix_millis(), 1_763_939_100_000);
    assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
}

#[test]
fn unknown_fields_and_enum_values_are_tolerated() {
    let mut v = serde_json::to_value(sample_node("db-3")).expect("json");
    v["added_in_a_later_version"] = serde_json::json!({"x": 1});
    v["role"] = "witness".into();
    v["status"] = "hibernating".into();
    v["replication"]["new_sub_field"] = 5.into();
    let doc: NodeDoc = decode(&serde_json::to_vec(&v).expect("bytes")).expect("tolerant read");
    assert_eq!(doc.role, Role::Unknown);
    assert_eq!(doc.status, NodeStatus::Unknown);
    assert_eq!(doc.id, "db-3");
}

#[test]
fn hand_written_operator_requests_parse() {
    let m: MaintenanceDoc =
        decode(br#"{"schema":1,"enabled":true,"reason":"kernel upgrade"}"#).expect("maintenance");
    assert!(m.enabled);
    assert_eq!(m.by, None);
    let m: MaintenanceDoc = decode(br#"{"enabled":false}"#).expect("schema defaults to 1");
    assert!(!m.enabled);
    let s: SwitchoverDoc = decode(br#"{"schema":1}"#).expect("switchover to the best replica");
    assert_eq!(s.candidate, None);
}

#[test]
fn a_newer_schema_is_rejected_and_garbage_is_a_parse_error() {
    let err = decode::<MaintenanceDoc>(br#"{"schema":2,"enabled":true}"#).expect_err("schema 2");
    assert!(
        matches!(err, WireError::UnknownSchema { found: 2, .. }),
        "{err}"
    );
    let err = decode::<PrimaryDoc>(b"not json").expect_err("garbage");
    assert!(matches!(
        err,
        WireError::Parse {
            what: "primary",
            ..
        }
    ));
    let err = decode::<PrimaryDoc>(br#"{"schema":1,"id":"x"}"#).expect_err("missing fields");
    assert!(matches!(err, WireError::Parse { .. }));
}

#[test]
fn lease_ids_are_hex_strings() {
    assert_eq!(lease_hex(0x694d_7b2c_11aa_0001), "694d7b2c11aa0001");
}

fn keys() -> ClusterKeys {
    ClusterKeys::new("/autopilot", "production", "bluebird", "billing").expect("valid")
}

#[test]
fn key_paths() {
    let k = keys();
    let base = "/autopilot/production/bluebird/billing/";
    assert_eq!(k.cluster_prefix(), base);
    assert_eq!(k.primary(), format!("{base}primary"));
    assert_eq!(k.node("db-1"), format!("{base}nodes/db-1"));
    assert_eq!(k.nodes_prefix(), format!("{base}nodes/"));
    assert_eq!(k.state(), format!("{base}state"));
    assert_eq!(k.initialized(), format!("{base}initialized"));
    assert_eq!(k.lock(), format!("{base}lock"));
    assert_eq!(k.history(), format!("{base}history"));
    assert_eq!(k.maintenance(), format!("{base}maintenance"));
    assert_eq!(k.switchover(), format!("{base}switchover"));
    assert_eq!(k.event("e1"), format!("{base}events/e1"));
    let trailing =
        ClusterKeys::new("/autopilot/", "production", "bluebird", "billing").expect("ok");
    assert_eq!(trailing, k);
    assert_eq!(
        ClusterKeys::event_id(t(1_763_939_100_123), "db-1"),
        "1763939100123-db-1"
    );
}

#[test]
fn keys_parse_back() {
    let k = keys();
    let all = [
        ClusterKey::Primary,
        ClusterKey::Node("db-1".into()),
        ClusterKey::State,
        ClusterKey::Initialized,
        ClusterKey::Lock,
        ClusterKey::History,
        ClusterKey::Maintenance,
        ClusterKey::Switchover,
        ClusterKey::Event("1-db-1".into()),
        ClusterKey::Member("db-1".into()),
        ClusterKey::Request("db-1".into()),
        ClusterKey::BackupRequest("b1".into()),
        ClusterKey::BackupRecord("20261203T020000Z-1a2b3c4d".into()),
        ClusterKey::BackupSlot("nightly".into(), "20261203T020000Z".into()),
        ClusterKey::RestoreRequest("r1".into()),
    ];
    for key in all {
        assert_eq!(k.parse(&k.key(&key)), Some(key));
    }
}

#[test]
fn unknown_and_foreign_keys() {
    let k = keys();
    assert_eq!(
        k.parse("/autopilot/production/bluebird/billing/config/v2"),
        Some(ClusterKey::Unknown("config/v2".into()))
    );
    assert_eq!(
        k.parse("/autopilot/production/bluebird/billing/nodes/"),
        Some(ClusterKey::Unknown("nodes/".into()))
    );
    assert_eq!(
        k.parse("/autopilot/production/bluebird/billing/nodes/a/b"),
        Some(ClusterKey::Unknown("nodes/a/b".into()))
    );
    assert_eq!(
        k.parse("/autopilot/production/bluebird/billing2/primary"),
        None
    );
    assert_eq!(k.parse("/other/primary"), None);
}

#[test]
fn invalid_segments_are_rejected() {
    assert!(ClusterKeys::new("/autopilot", "", "p", "c").is_err());
    assert!(ClusterKeys::new("/autopilot", "a/b", "p", "c").is_err());
    assert!(ClusterKeys::new("autopilot", "n", "p", "c").is_err());
    assert!(ClusterKeys::check_node_id("db/1").is_err());
    assert!(ClusterKeys::check_node_id("db-1").is_ok());
    let err = ClusterKeys::new("/autopilot", "n", "", "c").expect_err("empty project");
    assert!(err.to_string().contains("project"));
}

/// History reasons read and write as the plain strings of the contract; text this build does
/// not know survives a read-modify-write unchanged.
#[test]
fn history_reasons_are_plain_strings() {
    use super::HistoryReason;
    for (reason, json) in [
        (HistoryReason::Bootstrap, r#""bootstrap""#),
        (HistoryReason::Failover, r#""failover""#),
        (HistoryReason::Switchover, r#""switchover""#),
        (HistoryReason::ManualFailover, r#""manual_failover""#),
        (
            HistoryReason::Other("forced by alice".into()),
            r#""forced by alice""#,
        ),
    ] {
        assert_eq!(serde_json::to_string(&reason).expect("encode"), json);
        assert_eq!(
            serde_json::from_str::<HistoryReason>(json).expect("decode"),
            reason
        );
    }
}

/// Positions print in the engine's own notation.
#[test]
fn positions_in_the_engines_notation() {
    let p = Position {
        epoch: 3,
        offset: 0x1_1C88_BB80,
    };
    assert_eq!(p.lsn(), "1/1C88BB80");
    assert_eq!(
        Position {
            epoch: 3,
            offset: 0x11C8_8BB8
        }
        .notation("postgres"),
        "0/11C88BB8 on timeline 3"
    );
    assert_eq!(
        Position {
            epoch: 0,
            offset: 2143
        }
        .notation("mariadb"),
        "seq 2143"
    );
    assert_eq!(
        Position {
            epoch: 4,
            offset: 7
        }
        .notation("process"),
        "4/7"
    );
}

/// The operator's documents: members, node requests, reasons and waits.
#[test]
fn member_request_and_reason_documents() {
    round_trip(MemberDoc {
        schema: 1,
        id: "db-1".into(),
        name: "db-1".into(),
        hostname: "h1".into(),
        ip_address: "10.0.0.1".into(),
        port: 5432,
        agent_url: Some("http://10.0.0.1:9187".into()),
        started: t(1_763_939_100_123),
    });
    round_trip(RequestDoc {
        schema: 1,
        action: NodeAction::Reinit,
        requested_by: Some("alice".into()),
        time: Some(t(1_763_939_100_123)),
        restore_to: None,
        upgrade: None,
    });
    round_trip(RequestDoc {
        schema: 1,
        action: NodeAction::Upgrade,
        requested_by: Some("rollout".into()),
        time: Some(t(1_763_939_100_123)),
        restore_to: None,
        upgrade: Some(UpgradeOrder {
            version: Some("1:10.11.11-0+deb12u1".into()),
            deadline_seconds: 300,
        }),
    });
    round_trip(RequestDoc {
        schema: 1,
        action: NodeAction::Restore,
        requested_by: Some("alice".into()),
        time: Some(t(1_763_939_100_123)),
        restore_to: Some(RestorePoint::Time(t(1_763_939_000_000))),
        upgrade: None,
    });
    round_trip(RequestDoc {
        schema: 1,
        action: NodeAction::Restore,
        requested_by: None,
        time: None,
        restore_to: Some(RestorePoint::Latest),
        upgrade: None,
    });
    let r: RequestDoc =
        decode(br#"{"schema":1,"action":"defragment"}"#).expect("an unknown action reads");
    assert_eq!(r.action, NodeAction::Unknown);
    let mut n = sample_node("db-2");
    n.eligible = false;
    n.ineligible = Some(Ineligible {
        code: IneligibleCode::Lagging,
        reason: "behind the primary by 12 MiB".into(),
    });
    n.waiting = Some(Waiting {
        kind: WaitKind::Cooldown,
        since: t(1_763_939_100_123),
        until: Some(t(1_763_939_160_123)),
        detail: "failover held by the cooldown".into(),
    });
    round_trip(n);
}
