//! etcd authentication against a real etcd (`EtcdServer::enable_auth`: a user whose role may
//! read and write one prefix): the store logs in and works under its prefix, is refused
//! elsewhere, fails at once on a wrong password (never showing it), and an etcd that is down
//! when the store connects does not fail the connect: the store logs in once etcd is back.

use e2e::harness::etcd::EtcdServer;

use super::tests::{options, start_etcd};
use super::*;
use crate::error_chain;
use crate::secret::Secret;

const USER: &str = "agents";
const PASSWORD: &str = "pw-MARKER-91f0";

/// Options with the test user; a generous request bound, as etcd hashes passwords with
/// bcrypt and a slow login on a busy machine must not read as "etcd unavailable" here.
fn with_user(etcd: &EtcdServer, password: &str) -> EtcdOptions {
    let mut o = options(etcd.endpoint());
    o.request_timeout = std::time::Duration::from_secs(5);
    o.user = Some((
        USER.to_owned(),
        Secret::new("test".into(), password.to_owned()),
    ));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_limited_to_a_prefix_works_there_and_is_refused_elsewhere() {
    let mut etcd = start_etcd();
    etcd.enable_auth("/auth/ns/", USER, PASSWORD)
        .expect("turn auth on");
    let s = EtcdStore::connect(&with_user(&etcd, PASSWORD))
        .await
        .expect("connect and log in");
    let rev = s
        .put("/auth/ns/k", b"v".to_vec(), None)
        .await
        .expect("put under the prefix");
    assert_eq!(
        s.get("/auth/ns/k").await.expect("get"),
        Some((b"v".to_vec(), rev))
    );
    let lease = s
        .grant_lease(std::time::Duration::from_secs(5))
        .await
        .expect("lease");
    s.put("/auth/ns/node", b"n".to_vec(), Some(lease))
        .await
        .expect("put with a lease");
    s.revoke(lease).await.expect("revoke the lease of our keys");
    let err = s
        .put("/elsewhere", b"v".to_vec(), None)
        .await
        .expect_err("a write outside the prefix");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(error_chain(&err).contains("permission denied"), "{err:?}");

    let err = EtcdStore::connect(&with_user(&etcd, "not-the-MARKER"))
        .await
        .expect_err("a wrong password fails the connect");
    let chain = error_chain(&err);
    assert!(!err.is_retryable(), "{chain}");
    assert!(chain.contains("log in to etcd as agents"), "{chain}");
    assert!(chain.contains("authentication failed"), "{chain}");
    assert!(!format!("{chain} {err:?}").contains("MARKER"), "{chain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_down_at_connect_is_logged_in_to_once_it_is_back() {
    let mut etcd = start_etcd();
    etcd.enable_auth("/auth/ns/", USER, PASSWORD)
        .expect("turn auth on");
    etcd.stop();
    let s = EtcdStore::connect(&with_user(&etcd, PASSWORD))
        .await
        .expect("an unreachable etcd does not fail the connect");
    let err = s
        .put("/auth/ns/k", b"v".to_vec(), None)
        .await
        .expect_err("etcd is down");
    assert!(err.is_retryable(), "{err:?}");
    etcd.restart().expect("restart etcd");
    let mut last = None;
    for _ in 0..50 {
        match s.put("/auth/ns/k", b"v".to_vec(), None).await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the store never logged in after etcd came back: {last:?}");
}
