//! Sample documents with every field set, for tests and examples of the contract.

use super::*;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_unix_millis(ms)
}

pub fn sample_node(id: &str) -> NodeDoc {
    NodeDoc {
        schema: SCHEMA_VERSION,
        id: id.into(),
        name: id.into(),
        hostname: "host-1".into(),
        ip_address: "127.0.0.1".into(),
        port: 3306,
        role: Role::Replica,
        status: NodeStatus::Online,
        health: Health::Healthy,
        replication: NodeReplication {
            position: Position {
                epoch: 2,
                offset: 1234,
            },
            lag_seconds: Some(0.5),
            lag_bytes: None,
            lag_transactions: Some(3),
            source: Some("db-1".into()),
            source_address: Some("10.0.0.1:3306".into()),
            state: Some(ReplicaState::Streaming),
            last_error: None,
            gtid: None,
            caught_up_term: Some(41),
            receiving: Some(true),
            replicas_streaming: None,
            replicas_synchronous: None,
        },
        priority: 100,
        tags: NodeTags { nofailover: true },
        fenced: false,
        needs_rebuild: false,
        term: Some(1),
        database_killed: false,
        database_exit: None,
        refused: None,
        eligible: true,
        ineligible: None,
        waiting: None,
        agent_url: Some("http://127.0.0.1:9187".into()),
        version: "10.11.19-MariaDB".into(),
        agent_version: Some("0.1.0".into()),
        uptime_seconds: Some(3600),
        connections: Connections {
            current: 3,
            max: 151,
        },
        storage: Storage {
            total_bytes: 40,
            used_bytes: 10,
            free_bytes: 20,
        },
        packages: Some(Packages {
            checked: t(1_763_935_000_000),
            error: None,
            list: vec![PackageStatus {
                name: "mariadb-server".into(),
                installed: Some("1:10.11.6-0+deb12u1".into()),
                candidate: Some("1:10.11.11-0+deb12u1".into()),
                update_available: true,
                security: true,
                since: Some(t(1_763_900_000_000)),
            }],
        }),
        last_updated: t(1_763_939_100_123),
        ttlseconds: 10,
    }
}

pub fn sample_primary(id: &str) -> PrimaryDoc {
    PrimaryDoc {
        schema: SCHEMA_VERSION,
        id: id.into(),
        name: id.into(),
        hostname: "host-1".into(),
        ip_address: "127.0.0.1".into(),
        port: 3306,
        status: NodeStatus::Online,
        version: "10.11.19-MariaDB".into(),
        uptime_seconds: Some(7200),
        replication: PrimaryReplication {
            position: Position {
                epoch: 2,
                offset: 99,
            },
            replicas: 2,
            max_lag_seconds: Some(0.0),
            synchronous: true,
            replicas_synchronous: Some(1),
            streaming: vec![
                StreamingReplica {
                    name: "db-2".into(),
                    synchronous: Some(true),
                    lag_seconds: Some(0.0),
                    lag_bytes: Some(0),
                },
                StreamingReplica {
                    name: "db-3".into(),
                    synchronous: Some(false),
                    lag_seconds: None,
                    lag_bytes: Some(4096),
                },
            ],
        },
        connections: Connections::default(),
        storage: Storage::default(),
        last_updated: t(1_763_939_100_000),
        ttlseconds: 10,
        lease: lease_hex(0x694d_7b2c_11aa_0001),
    }
}
