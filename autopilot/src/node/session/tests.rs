//! Session actor tests against a real etcd. Bounded waits only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use cluster::store::{EtcdOptions, EtcdStore, Store};
use cluster::wire::{self, ClusterKeys, MaintenanceDoc, NodeDoc};
use e2e::harness::etcd::EtcdServer;

fn start_etcd() -> EtcdServer {
    EtcdServer::start().expect("start etcd (apt-get install -y etcd-server)")
}

async fn connect(etcd: &EtcdServer) -> EtcdStore {
    let mut o = EtcdOptions::new(vec![etcd.endpoint()]);
    o.request_timeout = Duration::from_millis(500);
    o.connect_timeout = Duration::from_millis(250);
    EtcdStore::connect(&o).await.expect("connect to test etcd")
}

fn keys() -> ClusterKeys {
    ClusterKeys::new("/autopilot", "ns", "proj", "c1").expect("valid keys")
}

fn node(id: &str) -> NodeDoc {
    cluster::wire::sample::sample_node(id)
}

async fn spawn_session(
    store: EtcdStore,
    id: &str,
    ttl: Duration,
) -> (SessionHandle<EtcdStore>, UnboundedReceiver<ClusterEvent>) {
    spawn_session_inheriting(store, id, ttl, None).await
}

async fn spawn_session_inheriting(
    store: EtcdStore,
    id: &str,
    ttl: Duration,
    inherit: Option<(LeaseId, std::time::Instant)>,
) -> (SessionHandle<EtcdStore>, UnboundedReceiver<ClusterEvent>) {
    let (sink, rx) = EventSink::channel();
    let args = SessionArgs {
        store: Arc::new(store),
        keys: keys(),
        node_id: id.into(),
        ttl,
        node: node(id),
        sink,
        inherit,
    };
    // The tests' supervisor: an actor that does nothing, alive for the test.
    let (sup, _) = ractor::Actor::spawn(None, Idle, ())
        .await
        .expect("supervisor");
    let handle = SessionHandle::spawn(args, sup.get_cell())
        .await
        .expect("spawn session");
    (handle, rx)
}

struct Idle;

impl ractor::Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ractor::ActorRef<()>,
        _: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

/// Waits for the first event matching `pred`, skipping others; panics after `within`.
async fn expect_event(
    rx: &mut UnboundedReceiver<ClusterEvent>,
    within: Duration,
    what: &str,
    pred: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event stream ended while waiting for {what}"),
            Err(_) => panic!("no {what} within {within:?}"),
        }
    }
}

fn is_resync(e: &ClusterEvent) -> bool {
    matches!(e, ClusterEvent::Resynced(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_publishes_node_resyncs_and_reports_changes() {
    let etcd = start_etcd();
    let other = connect(&etcd).await;
    let k = keys();
    other
        .put(&k.initialized(), b"{\"schema\":9}".to_vec(), None)
        .await
        .expect("put initialized from a future version");
    let (session, mut rx) =
        spawn_session(connect(&etcd).await, "db-1", Duration::from_secs(3)).await;

    let ClusterEvent::Resynced(snap) =
        expect_event(&mut rx, Duration::from_secs(3), "first snapshot", is_resync).await
    else {
        unreachable!()
    };
    assert_eq!(
        snap.nodes
            .get("db-1")
            .and_then(|o| o.doc())
            .map(|d| d.id.as_str()),
        Some("db-1")
    );
    assert_eq!(snap.primary, Observed::Absent);
    assert!(
        matches!(snap.initialized, Observed::Unreadable(_)),
        "an unreadable initialized key still exists: {:?}",
        snap.initialized
    );
    let (raw, _) = other
        .get(&k.node("db-1"))
        .await
        .expect("get")
        .expect("node key exists");
    let doc: NodeDoc = wire::decode(&raw).expect("node doc");
    assert_eq!(doc.ttlseconds, 3);

    // Our own updates come back through the watch.
    let mut updated = node("db-1");
    updated.priority = 7;
    session.update_node(updated);
    expect_event(&mut rx, Duration::from_secs(2), "own node update", |e| {
        matches!(e, ClusterEvent::NodeChanged { id, doc } if id == "db-1" && matches!(&**doc, Observed::Present(d) if d.priority == 7))
    })
    .await;

    // Changes by others, in order.
    other
        .put(
            &k.maintenance(),
            br#"{"schema":1,"enabled":true,"reason":"x"}"#.to_vec(),
            None,
        )
        .await
        .expect("maintenance on");
    other
        .delete(&k.maintenance())
        .await
        .expect("maintenance off");
    let on = expect_event(&mut rx, Duration::from_secs(2), "maintenance", |e| {
        matches!(e, ClusterEvent::Maintenance(_))
    })
    .await;
    assert!(matches!(
        on,
        ClusterEvent::Maintenance(Observed::Present(MaintenanceDoc { enabled: true, .. }))
    ));
    let off = expect_event(&mut rx, Duration::from_secs(2), "maintenance off", |e| {
        matches!(e, ClusterEvent::Maintenance(_))
    })
    .await;
    assert_eq!(off, ClusterEvent::Maintenance(Observed::Absent));

    // A node whose lease is revoked is reported removed.
    let lease = other
        .grant_lease(Duration::from_secs(30))
        .await
        .expect("grant");
    other
        .put(&k.node("db-2"), wire::encode(&node("db-2")), Some(lease))
        .await
        .expect("put db-2");
    expect_event(
        &mut rx,
        Duration::from_secs(2),
        "db-2 added",
        |e| matches!(e, ClusterEvent::NodeChanged { id, .. } if id == "db-2"),
    )
    .await;
    other.revoke(lease).await.expect("revoke");
    expect_event(
        &mut rx,
        Duration::from_secs(2),
        "db-2 removed",
        |e| matches!(e, ClusterEvent::NodeRemoved { id } if id == "db-2"),
    )
    .await;
    expect_event(
        &mut rx,
        Duration::from_secs(3),
        "a successful keep-alive",
        |e| {
            matches!(
                e,
                ClusterEvent::KeepAlive {
                    ok: true,
                    deadline: Some(_),
                    ..
                }
            )
        },
    )
    .await;
    session.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_claim_has_one_winner_and_resign_hands_over_at_once() {
    let etcd = start_etcd();
    let (a, mut rx_a) = spawn_session(connect(&etcd).await, "db-1", Duration::from_secs(10)).await;
    let (b, mut rx_b) = spawn_session(connect(&etcd).await, "db-2", Duration::from_secs(10)).await;
    expect_event(&mut rx_a, Duration::from_secs(3), "a live", is_resync).await;
    expect_event(&mut rx_b, Duration::from_secs(3), "b live", is_resync).await;
    let claim = |s: SessionHandle<EtcdStore>| async move {
        s.claim_primary(PrimaryClaim {
            primary: cluster::wire::sample::sample_primary("x"),
            history: cluster::wire::HistoryDoc {
                schema: 1,
                entries: Vec::new(),
            },
            history_revision: None,
            initialized: None,
        })
        .await
    };
    let (ra, rb) = tokio::join!(claim(a.clone()), claim(b.clone()));
    let ra = ra.expect("claim a");
    let rb = rb.expect("claim b");
    assert!(ra ^ rb, "exactly one claim wins ({ra}, {rb})");
    let (winner, mut loser_rx) = if ra {
        (a.clone(), rx_b)
    } else {
        (b.clone(), rx_a)
    };
    expect_event(
        &mut loser_rx,
        Duration::from_secs(2),
        "primary seen",
        |e| matches!(e, ClusterEvent::PrimaryChanged(p) if matches!(**p, Observed::Present(_))),
    )
    .await;
    let started = Instant::now();
    // The key is bound to the lease the winner's session holds, and says which.
    let (raw, _) = connect(&etcd)
        .await
        .get(&keys().primary())
        .await
        .expect("get primary")
        .expect("primary exists");
    let lease = winner.lease().live().expect("a live lease");
    assert_eq!(
        wire::decode::<cluster::wire::PrimaryDoc>(&raw)
            .expect("primary doc")
            .lease,
        wire::lease_hex(lease.0)
    );
    winner.resign(Duration::from_secs(3)).await.expect("resign");
    assert_eq!(winner.lease(), Lease::default());
    expect_event(
        &mut loser_rx,
        Duration::from_secs(1),
        "primary gone after resign",
        |e| matches!(e, ClusterEvent::PrimaryChanged(p) if matches!(**p, Observed::Absent)),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "hand-over must not wait for the TTL"
    );
    a.stop();
    b.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_survives_etcd_restart() {
    let mut etcd = start_etcd();
    let checker = connect(&etcd).await;
    let (session, mut rx) =
        spawn_session(connect(&etcd).await, "db-1", Duration::from_secs(3)).await;
    expect_event(&mut rx, Duration::from_secs(3), "first snapshot", is_resync).await;

    etcd.restart().expect("restart etcd");
    // The watch breaks (or a renewal fails); the session re-lists and watches again.
    expect_event(
        &mut rx,
        Duration::from_secs(5),
        "snapshot after restart",
        is_resync,
    )
    .await;
    let (raw, _) = checker
        .get(&keys().node("db-1"))
        .await
        .expect("get after restart")
        .expect("node key exists again");
    assert!(wire::decode::<NodeDoc>(&raw).is_ok());
    // ...and the new watch delivers.
    checker
        .put(&keys().switchover(), br#"{"schema":1}"#.to_vec(), None)
        .await
        .expect("request switchover");
    expect_event(
        &mut rx,
        Duration::from_secs(2),
        "switchover after restart",
        |e| matches!(e, ClusterEvent::SwitchoverRequested(Observed::Present(_))),
    )
    .await;
    session.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_reports_keepalive_failures_promptly_and_lease_lost_after_long_outage() {
    let ttl = Duration::from_secs(2);
    let mut etcd = start_etcd();
    let (session, mut rx) = spawn_session(connect(&etcd).await, "db-1", ttl).await;
    let ClusterEvent::Resynced(_) =
        expect_event(&mut rx, Duration::from_secs(3), "first snapshot", is_resync).await
    else {
        unreachable!()
    };
    let old_lease = etcd.etcdctl(&["lease", "list"]).expect("lease list");

    etcd.stop();
    let stopped = Instant::now();
    // TTL/3 tick + one request timeout (500 ms) + slack.
    expect_event(
        &mut rx,
        ttl / 3 + Duration::from_millis(1500),
        "failed keep-alive",
        |e| matches!(e, ClusterEvent::KeepAlive { ok: false, .. }),
    )
    .await;
    let e = expect_event(&mut rx, ttl + Duration::from_secs(2), "lease lost", |e| {
        matches!(e, ClusterEvent::LeaseLost { .. })
    })
    .await;
    let lost_after = stopped.elapsed();
    assert!(
        lost_after <= ttl + Duration::from_millis(1500),
        "{lost_after:?}"
    );
    assert!(matches!(e, ClusterEvent::LeaseLost { .. }));

    etcd.restart().expect("restart etcd");
    expect_event(
        &mut rx,
        Duration::from_secs(5),
        "snapshot after outage",
        is_resync,
    )
    .await;
    let checker = connect(&etcd).await;
    assert!(
        checker
            .get(&keys().node("db-1"))
            .await
            .expect("get")
            .is_some(),
        "node key re-put under a new lease"
    );
    let leases = etcd.etcdctl(&["lease", "list"]).expect("lease list");
    assert_ne!(
        leases, old_lease,
        "the old lease was revoked and a new one granted"
    );
    // `found N leases` then one hex id per line.
    assert_eq!(
        leases
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count(),
        1,
        "{leases}"
    );
    session.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_reads_on_request_coalesced_and_publishes_its_lease() {
    let etcd = start_etcd();
    let (session, mut rx) =
        spawn_session(connect(&etcd).await, "db-1", Duration::from_secs(3)).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(3), session.synced())
            .await
            .expect("synced within 3 s"),
        "the session stopped"
    );
    assert!(session.lease().live().is_some());
    expect_event(&mut rx, Duration::from_secs(1), "first snapshot", is_resync).await;
    // Ten requests at once: at least one read and at most two (one running, one after it).
    for _ in 0..10 {
        session.read_cluster();
    }
    let first = expect_event(&mut rx, Duration::from_secs(2), "a read", |e| {
        matches!(e, ClusterEvent::Read(_))
    })
    .await;
    let ClusterEvent::Read(snap) = first else {
        unreachable!()
    };
    assert!(snap.nodes.contains_key("db-1"), "{snap:?}");
    let mut reads = 1;
    let quiet = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(e)) = tokio::time::timeout_at(quiet, rx.recv()).await {
        reads += usize::from(matches!(e, ClusterEvent::Read(_)));
    }
    assert!(reads <= 2, "{reads} reads for ten requests made at once");
    session.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_takes_over_an_inherited_lease_and_releases_the_old_locks() {
    // The agent's previous image held the lease, its node key, the primary key and a lock;
    // it re-executed without revoking anything.
    let etcd = start_etcd();
    let other = connect(&etcd).await;
    let k = keys();
    let lease = other
        .grant_lease(Duration::from_secs(5))
        .await
        .expect("grant");
    let lock = format!("{}backups/slot", k.cluster_prefix());
    for key in [k.node("db-1"), k.primary(), lock.clone()] {
        other
            .put(&key, b"{}".to_vec(), Some(lease))
            .await
            .expect("put");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let (session, mut rx) = spawn_session_inheriting(
        connect(&etcd).await,
        "db-1",
        Duration::from_secs(5),
        Some((lease, deadline)),
    )
    .await;
    let ClusterEvent::Leased { lease: held } =
        expect_event(&mut rx, Duration::from_secs(3), "the lease", |e| {
            matches!(e, ClusterEvent::Leased { .. })
        })
        .await
    else {
        unreachable!()
    };
    assert_eq!(held, lease, "the same lease, not a new one");
    let mut kept = other.lease_keys(lease).await.expect("keys");
    kept.sort();
    let mut want = vec![k.node("db-1"), k.primary()];
    want.sort();
    assert_eq!(
        kept, want,
        "the lock is released, node and primary keys kept"
    );
    // Renewed past the previous image's deadline.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(other.get(&k.primary()).await.expect("get").is_some());
    drop(session);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_session_grants_a_new_lease_when_the_inherited_one_is_gone() {
    let etcd = start_etcd();
    let other = connect(&etcd).await;
    let lease = other
        .grant_lease(Duration::from_secs(5))
        .await
        .expect("grant");
    other.revoke(lease).await.expect("revoke");
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let (_session, mut rx) = spawn_session_inheriting(
        connect(&etcd).await,
        "db-1",
        Duration::from_secs(5),
        Some((lease, deadline)),
    )
    .await;
    expect_event(
        &mut rx,
        Duration::from_secs(3),
        "the loss",
        |e| matches!(e, ClusterEvent::LeaseLost { lease: l } if *l == lease),
    )
    .await;
    let ClusterEvent::Leased { lease: new } =
        expect_event(&mut rx, Duration::from_secs(3), "a new lease", |e| {
            matches!(e, ClusterEvent::Leased { .. })
        })
        .await
    else {
        unreachable!()
    };
    assert_ne!(new, lease);
}
