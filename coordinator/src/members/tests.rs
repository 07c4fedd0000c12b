//! Member rows from documents: states, sync, lag, positions per engine, stopped members.

use cluster::wire::sample::{sample_node, sample_primary};
use cluster::wire::{
    Ineligible, IneligibleCode, MemberDoc, NodeStatus, Position, ReplicaState, Role, Timestamp,
    WaitKind, Waiting,
};

use super::*;

fn member(id: &str) -> MemberDoc {
    MemberDoc {
        schema: 1,
        id: id.into(),
        name: id.into(),
        hostname: "h".into(),
        ip_address: "10.0.0.9".into(),
        port: 5432,
        agent_url: None,
        started: Timestamp::from_unix_millis(1),
    }
}

/// A PostgreSQL cluster: db-1 primary, db-2 sync and current, db-3 async and behind, db-4
/// connecting, db-5 fenced, db-6 a member whose agent is down.
pub(crate) fn postgres() -> (PrimaryDoc, Vec<NodeDoc>, Vec<MemberDoc>) {
    let mut p = sample_primary("db-1");
    p.port = 5432;
    let mut n1 = sample_node("db-1");
    n1.role = Role::Primary;
    n1.replication.position = Position {
        epoch: 3,
        offset: 0x11C8_8BB8,
    };
    n1.replication.state = None;
    n1.replication.lag_seconds = None;
    n1.replication.lag_transactions = None;
    let replica = |id: &str| {
        let mut n = sample_node(id);
        n.replication.lag_transactions = None;
        n.replication.lag_bytes = Some(0);
        n.replication.lag_seconds = Some(0.0);
        n.replication.position = Position {
            epoch: 3,
            offset: 0x11C8_8BB8,
        };
        n
    };
    let n2 = replica("db-2");
    let mut n3 = replica("db-3");
    n3.replication.lag_bytes = Some(12 * 1024 * 1024 + 300 * 1024);
    n3.replication.lag_seconds = Some(3.25);
    n3.eligible = false;
    n3.ineligible = Some(Ineligible {
        code: IneligibleCode::Lagging,
        reason: "behind the primary by 12.3 MiB, more than max_lag_on_failover 1 MiB".into(),
    });
    let mut n4 = replica("db-4");
    n4.replication.state = Some(ReplicaState::Connecting);
    n4.waiting = Some(Waiting {
        kind: WaitKind::PrimaryOnline,
        since: Timestamp::from_unix_millis(1_763_939_100_000),
        until: None,
        detail: "db-1 holds the primary key but is not online yet".into(),
    });
    let mut n5 = replica("db-5");
    n5.fenced = true;
    n5.status = NodeStatus::Fenced;
    n5.eligible = false;
    (
        p,
        vec![n5, n3, n1, n2, n4],
        vec![member("db-1"), member("db-6"), member("db-2")],
    )
}

#[test]
fn every_member_with_its_state_and_the_primary_first() {
    let (p, nodes, docs) = postgres();
    let rows = members(Some("postgres"), Some(&p), &nodes, &docs);
    let got: Vec<(&str, MemberState, Option<SyncState>)> = rows
        .iter()
        .map(|m| (m.id.as_str(), m.state, m.sync))
        .collect();
    assert_eq!(
        got,
        [
            ("db-1", MemberState::Running, None),
            ("db-2", MemberState::Streaming, Some(SyncState::Sync)),
            ("db-3", MemberState::CatchingUp, Some(SyncState::Async)),
            ("db-4", MemberState::CatchingUp, None),
            ("db-5", MemberState::Fenced, None),
            ("db-6", MemberState::Stopped, None),
        ]
    );
    let stopped = &rows[5];
    assert!(!stopped.live && !stopped.eligible);
    assert_eq!(stopped.host, "10.0.0.9:5432");
    assert_eq!(stopped.role, Role::Unknown);
    assert_eq!(rows[0].lsn.as_deref(), Some("0/11C88BB8"));
    assert_eq!(rows[0].timeline, Some(3));
    assert_eq!(rows[0].lag_seconds, None, "no lag on the primary");
    assert_eq!(
        rows[2].ineligible.as_ref().map(|i| i.code),
        Some(IneligibleCode::Lagging)
    );
    assert_eq!(
        rows[4].ineligible.as_ref().map(|i| i.code),
        Some(IneligibleCode::Unknown),
        "an older agent's missing reason still says something"
    );
}

#[test]
fn mariadb_members_carry_the_gtid_and_lag_in_transactions() {
    let mut n = sample_node("db-2");
    n.replication.gtid = Some("0-1-2143".into());
    n.replication.lag_transactions = Some(7);
    let rows = members(Some("mariadb"), None, &[n], &[]);
    assert_eq!(rows[0].gtid.as_deref(), Some("0-1-2143"));
    assert_eq!(rows[0].lsn, None);
    assert_eq!(rows[0].lag_transactions, Some(7));
    assert_eq!(rows[0].state, MemberState::CatchingUp);
}

#[test]
fn the_engine_comes_from_initialized_else_the_versions() {
    let mut n = sample_node("a");
    assert_eq!(engine(Some("postgres"), &[]), Some("postgres".into()));
    assert_eq!(engine(None, &[n.clone()]), Some("mariadb".into()));
    n.version = "PostgreSQL 15.14 (Debian 15.14-0+deb12u1)".into();
    assert_eq!(engine(None, &[n]), Some("postgres".into()));
    assert_eq!(engine(None, &[]), None);
}
