//! Store tests against a real etcd started by the `e2e` harness. Bounded waits only.

use std::time::{Duration, Instant};

use e2e::harness::etcd::EtcdServer;

use super::*;
use crate::secret::Secret;

pub(crate) fn start_etcd() -> EtcdServer {
    EtcdServer::start().expect("start etcd (apt-get install -y etcd-server)")
}

pub(crate) fn options(endpoint: String) -> EtcdOptions {
    let mut o = EtcdOptions::new(vec![endpoint]);
    o.request_timeout = Duration::from_millis(500);
    o.connect_timeout = Duration::from_millis(250);
    o
}

pub(crate) async fn connect(etcd: &EtcdServer) -> EtcdStore {
    EtcdStore::connect(&options(etcd.endpoint()))
        .await
        .expect("connect to test etcd")
}

/// Next events of a watch, or panic after `within`.
async fn next_events(w: &mut Watch, within: Duration) -> Vec<WatchEvent> {
    match tokio::time::timeout(within, w.next()).await {
        Ok(WatchMessage::Events(ev)) => ev,
        Ok(WatchMessage::Broken(b)) => panic!("watch broke: {b:?}"),
        Err(_) => panic!("no watch event within {within:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_lease_keepalive_and_expiry_deletes_bound_key() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let lease = s.grant_lease(Duration::from_secs(2)).await.expect("grant");
    let (_, rev) = s.get_prefix("/t/").await.expect("list");
    let mut w = s.watch_prefix("/t/", rev + 1).await.expect("watch");
    s.put("/t/node", b"n".to_vec(), Some(lease))
        .await
        .expect("put");
    assert!(
        matches!(&next_events(&mut w, Duration::from_secs(2)).await[..], [WatchEvent::Put { key, .. }] if key == "/t/node")
    );

    // Keep it alive past its TTL: the key stays.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let ttl = s.keep_alive_once(lease).await.expect("keep alive");
        assert!(
            ttl > Duration::from_secs(1) && ttl <= Duration::from_secs(2),
            "{ttl:?}"
        );
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(s.get("/t/node").await.expect("get").is_some());

    // Stop keeping it alive: the key vanishes about one TTL later and the watch sees it.
    let stopped = Instant::now();
    let ev = next_events(&mut w, Duration::from_secs(5)).await;
    let elapsed = stopped.elapsed();
    assert!(
        matches!(&ev[..], [WatchEvent::Delete { key, .. }] if key == "/t/node"),
        "{ev:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1000),
        "expired too early: {elapsed:?}"
    );
    assert!(s.get("/t/node").await.expect("get").is_none());
    let err = s.keep_alive_once(lease).await.expect_err("lease gone");
    assert!(matches!(err, StoreError::LeaseExpired { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().starts_with(&format!("renew lease {lease}")),
        "{err}"
    );
    s.revoke(lease)
        .await
        .expect("revoking a gone lease is fine");
    let err = s
        .put("/t/x", b"x".to_vec(), Some(lease))
        .await
        .expect_err("put on a gone lease");
    assert!(matches!(err, StoreError::LeaseExpired { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_revoke_deletes_bound_keys_at_once() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let lease = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    s.put("/r/a", b"a".to_vec(), Some(lease))
        .await
        .expect("put");
    s.revoke(lease).await.expect("revoke");
    assert!(s.get("/r/a").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_lease_keys_lists_what_a_lease_holds() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let lease = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    for k in ["/l/b", "/l/a"] {
        s.put(k, b"x".to_vec(), Some(lease)).await.expect("put");
    }
    s.put("/l/free", b"x".to_vec(), None).await.expect("put");
    let mut keys = s.lease_keys(lease).await.expect("keys");
    keys.sort();
    assert_eq!(keys, ["/l/a", "/l/b"]);
    s.revoke(lease).await.expect("revoke");
    let err = s.lease_keys(lease).await.expect_err("a revoked lease");
    assert!(matches!(err, StoreError::LeaseExpired { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_create_if_absent_race_has_exactly_one_winner() {
    let etcd = start_etcd();
    for round in 0..10 {
        let a = connect(&etcd).await;
        let b = connect(&etcd).await;
        let key = format!("/race/{round}/primary");
        let (ra, rb) = tokio::join!(
            a.create_if_absent(&key, b"a".to_vec(), None),
            b.create_if_absent(&key, b"b".to_vec(), None)
        );
        let (ra, rb) = (ra.expect("a"), rb.expect("b"));
        assert!(ra ^ rb, "round {round}: exactly one must win ({ra}, {rb})");
        let (v, _) = a.get(&key).await.expect("get").expect("exists");
        assert_eq!(v, if ra { b"a".to_vec() } else { b"b".to_vec() });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_watch_delivers_puts_and_deletes_in_order() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    s.put("/other/x", b"x".to_vec(), None)
        .await
        .expect("put outside");
    let (_, rev) = s.get_prefix("/w/").await.expect("list");
    let mut w = s.watch_prefix("/w/", rev + 1).await.expect("watch");
    s.put("/w/a", b"1".to_vec(), None).await.expect("put a");
    s.put("/w/b", b"2".to_vec(), None).await.expect("put b");
    s.put("/other/y", b"y".to_vec(), None)
        .await
        .expect("put outside");
    s.put("/w/a", b"3".to_vec(), None)
        .await
        .expect("put a again");
    assert!(s.delete("/w/a").await.expect("delete a"));
    assert!(!s.delete("/w/a").await.expect("delete a twice"));
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(next_events(&mut w, Duration::from_secs(2)).await);
    }
    let summary: Vec<(bool, &str)> = got
        .iter()
        .map(|e| (matches!(e, WatchEvent::Put { .. }), e.key()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (true, "/w/a"),
            (true, "/w/b"),
            (true, "/w/a"),
            (false, "/w/a")
        ]
    );
    assert!(
        got.windows(2)
            .all(|p| p[0].mod_revision() < p[1].mod_revision())
    );

    // A watch from an old revision replays history.
    let mut replay = s.watch_prefix("/w/", rev + 1).await.expect("watch again");
    let mut again = Vec::new();
    while again.len() < 4 {
        again.extend(next_events(&mut replay, Duration::from_secs(2)).await);
    }
    assert_eq!(again, got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_get_prefix_and_conditional_delete() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let r1 = s.put("/p/b", b"b".to_vec(), None).await.expect("put");
    s.put("/p/a", b"a".to_vec(), None).await.expect("put");
    s.put("/pz", b"z".to_vec(), None).await.expect("put");
    let (entries, rev) = s.get_prefix("/p/").await.expect("list");
    assert_eq!(
        entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["/p/a", "/p/b"]
    );
    assert!(rev >= r1);
    let (_, mod_rev) = s.get("/p/b").await.expect("get").expect("exists");
    assert_eq!(mod_rev, r1);
    assert!(
        !s.delete_if_revision("/p/b", mod_rev + 100)
            .await
            .expect("stale")
    );
    assert!(
        s.delete_if_revision("/p/b", mod_rev)
            .await
            .expect("current")
    );
    assert!(s.get("/p/b").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_dead_etcd_is_a_prompt_retryable_error_and_breaks_the_watch() {
    let mut etcd = start_etcd();
    let s = connect(&etcd).await;
    s.put("/d/a", b"a".to_vec(), None).await.expect("put");
    let mut w = s.watch_prefix("/d/", 1).await.expect("watch");
    let _ = next_events(&mut w, Duration::from_secs(2)).await;
    etcd.kill();
    let started = Instant::now();
    let err = s.get("/d/a").await.expect_err("etcd is down");
    assert!(err.is_retryable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(WatchMessage::Broken(_)) => {}
        other => panic!("watch should report it broke, got {other:?}"),
    }
    etcd.restart().expect("restart");
    // The same client reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.get("/d/a").await {
            Ok(v) => {
                assert!(v.is_some());
                break;
            }
            Err(e) if Instant::now() < deadline && e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no reconnect: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_password_never_appears_in_debug_or_errors() {
    let etcd = start_etcd();
    let mut o = options(etcd.endpoint());
    o.user = Some((
        "agent".into(),
        Secret::new("env ETCD_PASSWORD".into(), "hunter2-s3cr3t".into()),
    ));
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("env ETCD_PASSWORD"), "{dbg}");
    // Auth is off on the test etcd, so authenticating fails; the error must not leak either.
    match EtcdStore::connect(&o).await {
        Ok(s) => assert!(!format!("{s:?}").contains("hunter2")),
        Err(e) => {
            let all = format!("{e:?} {e:#} {}", crate::error_chain(&e));
            assert!(!all.contains("hunter2"), "{all}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_endpoint_list_survives_one_member_down() {
    let mut cluster = e2e::harness::etcd::EtcdCluster::start(3).expect("start 3-member etcd");
    let mut o = EtcdOptions::new(cluster.endpoints());
    o.request_timeout = Duration::from_millis(800);
    let s = EtcdStore::connect(&o).await.expect("connect");
    s.put("/c/a", b"1".to_vec(), None).await.expect("put");
    cluster.kill(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match s.put("/c/a", b"2".to_vec(), None).await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("with one member down the others must serve: {e:?}"),
        }
    }
}

/// A claim on cluster key prefix `cluster` for `lease`, with no history check and no `initialized`.
fn claim(cluster: &str, lease: LeaseId, who: &str) -> Claim {
    Claim {
        primary_key: format!("{cluster}/primary"),
        primary_value: who.as_bytes().to_vec(),
        lease,
        history_key: format!("{cluster}/history"),
        expected_history_revision: None,
        history_value: format!("history by {who}").into_bytes(),
        initialized: None,
    }
}

/// Value of `key`, `None` when absent.
async fn value(s: &EtcdStore, key: &str) -> Option<Vec<u8>> {
    s.get(key).await.expect("get").map(|(v, _)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claim_primary_succeeds_once_and_a_second_claim_writes_nothing() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let a = s
        .grant_lease(Duration::from_secs(30))
        .await
        .expect("grant a");
    let b = s
        .grant_lease(Duration::from_secs(30))
        .await
        .expect("grant b");
    let mut first = claim("/c1", a, "a");
    first.expected_history_revision = Some(0); // no history yet
    assert!(s.claim_primary(first).await.expect("first claim"));
    assert_eq!(value(&s, "/c1/primary").await.as_deref(), Some(&b"a"[..]));
    assert_eq!(
        value(&s, "/c1/history").await.as_deref(),
        Some(&b"history by a"[..])
    );
    assert!(value(&s, "/c1/initialized").await.is_none());

    let (_, before) = s.get_prefix("/c1/").await.expect("list");
    assert!(!s.claim_primary(claim("/c1", b, "b")).await.expect("second"));
    let (_, after) = s.get_prefix("/c1/").await.expect("list");
    assert_eq!(before, after, "a failed claim must write nothing");
    assert_eq!(value(&s, "/c1/primary").await.as_deref(), Some(&b"a"[..]));
    assert_eq!(
        value(&s, "/c1/history").await.as_deref(),
        Some(&b"history by a"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claim_primary_checks_the_history_revision() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let lease = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    let old = s
        .put("/c2/history", b"v1".to_vec(), None)
        .await
        .expect("put history");
    let current = s
        .put("/c2/history", b"v2".to_vec(), None)
        .await
        .expect("put history again");
    for stale in [0, old, current + 1] {
        let mut c = claim("/c2", lease, "a");
        c.expected_history_revision = Some(stale);
        assert!(
            !s.claim_primary(c).await.expect("stale claim"),
            "claim with history revision {stale} (current {current}) must fail"
        );
        assert!(value(&s, "/c2/primary").await.is_none());
        assert_eq!(value(&s, "/c2/history").await.as_deref(), Some(&b"v2"[..]));
    }
    let mut c = claim("/c2", lease, "a");
    c.expected_history_revision = Some(current);
    assert!(s.claim_primary(c).await.expect("current claim"));
    assert_eq!(value(&s, "/c2/primary").await.as_deref(), Some(&b"a"[..]));
    assert_eq!(
        value(&s, "/c2/history").await.as_deref(),
        Some(&b"history by a"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claim_primary_with_initialized_requires_it_absent() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let lease = s.grant_lease(Duration::from_secs(30)).await.expect("grant");

    // A fresh cluster: the bootstrap claim writes all three keys.
    let mut boot = claim("/c3", lease, "a");
    boot.initialized = Some(("/c3/initialized".into(), b"id-a".to_vec()));
    assert!(s.claim_primary(boot).await.expect("bootstrap claim"));
    assert_eq!(
        value(&s, "/c3/initialized").await.as_deref(),
        Some(&b"id-a"[..])
    );

    // An initialised cluster without a primary: a bootstrap claim fails and writes nothing.
    s.put("/c4/initialized", b"id-old".to_vec(), None)
        .await
        .expect("put initialized");
    let (_, before) = s.get_prefix("/c4/").await.expect("list");
    let mut boot = claim("/c4", lease, "b");
    boot.initialized = Some(("/c4/initialized".into(), b"id-b".to_vec()));
    assert!(!s.claim_primary(boot).await.expect("claim on initialised"));
    let (entries, after) = s.get_prefix("/c4/").await.expect("list");
    assert_eq!(before, after, "a failed claim must write nothing");
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_slice()))
            .collect::<Vec<_>>(),
        [("/c4/initialized", &b"id-old"[..])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claimed_primary_is_bound_to_the_lease_and_nothing_else_is() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let lease = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    let mut boot = claim("/c5", lease, "a");
    boot.initialized = Some(("/c5/initialized".into(), b"id".to_vec()));
    assert!(s.claim_primary(boot).await.expect("claim"));
    s.revoke(lease).await.expect("revoke");
    assert!(value(&s, "/c5/primary").await.is_none());
    assert!(value(&s, "/c5/history").await.is_some());
    assert!(value(&s, "/c5/initialized").await.is_some());

    // With the lease gone a claim is an error, not a lost race, and writes nothing.
    let (_, before) = s.get_prefix("/c5/").await.expect("list");
    let err = s
        .claim_primary(claim("/c5", lease, "a"))
        .await
        .expect_err("claim with a revoked lease");
    assert!(matches!(err, StoreError::LeaseExpired { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("claim primary key /c5/primary"),
        "{err}"
    );
    let (_, after) = s.get_prefix("/c5/").await.expect("list");
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_claim_primary_race_has_exactly_one_winner() {
    let etcd = start_etcd();
    for round in 0..10 {
        let a = connect(&etcd).await;
        let b = connect(&etcd).await;
        let la = a.grant_lease(Duration::from_secs(30)).await.expect("grant");
        let lb = b.grant_lease(Duration::from_secs(30)).await.expect("grant");
        let cluster = format!("/race-claim/{round}");
        let (ra, rb) = tokio::join!(
            a.claim_primary(claim(&cluster, la, "a")),
            b.claim_primary(claim(&cluster, lb, "b"))
        );
        let (ra, rb) = (ra.expect("a"), rb.expect("b"));
        assert!(ra ^ rb, "round {round}: exactly one must win ({ra}, {rb})");
        let winner: &[u8] = if ra { b"a" } else { b"b" };
        let primary = value(&a, &format!("{cluster}/primary")).await;
        assert_eq!(primary.as_deref(), Some(winner));
        let history = value(&a, &format!("{cluster}/history")).await;
        assert_eq!(history, Some([&b"history by "[..], winner].concat()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_put_if_holder_writes_only_while_the_guard_is_ours() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let ours = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    let theirs = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    s.put("/h/primary", b"p".to_vec(), Some(ours))
        .await
        .expect("put");
    assert!(
        !s.put_if_holder("/h/primary", "/h/state", b"x".to_vec(), theirs)
            .await
            .expect("theirs")
    );
    assert!(
        value(&s, "/h/state").await.is_none(),
        "written without the guard"
    );
    assert!(
        s.put_if_holder("/h/primary", "/h/state", b"s".to_vec(), ours)
            .await
            .expect("ours")
    );
    // Bound to no lease: it outlives the holder's lease.
    s.revoke(ours).await.expect("revoke");
    assert!(value(&s, "/h/primary").await.is_none());
    assert_eq!(value(&s, "/h/state").await.as_deref(), Some(&b"s"[..]));
    assert!(
        !s.put_if_holder("/h/primary", "/h/state", b"y".to_vec(), ours)
            .await
            .unwrap_or(false),
        "written after the guard went"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_put_if_lease_updates_only_a_key_bound_to_the_lease() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let ours = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    let theirs = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    s.put("/u/primary", b"starting".to_vec(), Some(ours))
        .await
        .expect("put");
    assert!(
        !s.put_if_lease("/u/primary", b"x".to_vec(), theirs)
            .await
            .expect("theirs")
    );
    assert!(
        !s.put_if_lease("/u/absent", b"x".to_vec(), ours)
            .await
            .expect("absent")
    );
    assert!(
        value(&s, "/u/absent").await.is_none(),
        "never creates the key"
    );
    assert!(
        s.put_if_lease("/u/primary", b"online".to_vec(), ours)
            .await
            .expect("ours")
    );
    assert_eq!(
        value(&s, "/u/primary").await.as_deref(),
        Some(&b"online"[..])
    );
    // Still bound to our lease: it goes with it.
    s.revoke(ours).await.expect("revoke");
    assert!(
        value(&s, "/u/primary").await.is_none(),
        "bound to the lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_delete_if_lease_deletes_only_with_the_right_lease() {
    let etcd = start_etcd();
    let s = connect(&etcd).await;
    let ours = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    let theirs = s.grant_lease(Duration::from_secs(30)).await.expect("grant");
    s.put("/l/lock", b"ours".to_vec(), Some(ours))
        .await
        .expect("put");
    s.put("/l/plain", b"x".to_vec(), None).await.expect("put");

    assert!(!s.delete_if_lease("/l/lock", theirs).await.expect("theirs"));
    assert_eq!(value(&s, "/l/lock").await.as_deref(), Some(&b"ours"[..]));
    assert!(!s.delete_if_lease("/l/plain", ours).await.expect("no lease"));
    assert!(value(&s, "/l/plain").await.is_some());
    assert!(!s.delete_if_lease("/l/absent", ours).await.expect("absent"));

    assert!(s.delete_if_lease("/l/lock", ours).await.expect("ours"));
    assert!(value(&s, "/l/lock").await.is_none());
    assert!(!s.delete_if_lease("/l/lock", ours).await.expect("twice"));
    // The lease itself lives on; only the key went.
    s.keep_alive_once(ours).await.expect("lease still alive");
}

/// etcd answers HTTP/2 pings more frequent than its `--grpc-keepalive-min-time` (5 s by
/// default) with GOAWAY `too_many_pings`, which breaks every stream on the connection. An
/// idle watch must survive well past that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_an_idle_watch_survives_the_servers_ping_policy() {
    let etcd = start_etcd();
    let s = EtcdStore::connect(&EtcdOptions::new(vec![etcd.endpoint()]))
        .await
        .expect("connect with the agent's defaults");
    let rev = s.put("/idle/a", b"1".to_vec(), None).await.expect("put");
    let mut w = s.watch_prefix("/idle/", rev + 1).await.expect("watch");
    tokio::time::sleep(Duration::from_secs(8)).await;
    s.put("/idle/b", b"2".to_vec(), None)
        .await
        .expect("put after idling");
    let ev = next_events(&mut w, Duration::from_secs(3)).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
}
