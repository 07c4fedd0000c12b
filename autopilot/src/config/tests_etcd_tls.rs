//! TLS to a real etcd (`EtcdServer::start_tls`: `https://` only, `--client-cert-auth`, a
//! throw-away CA). The options come from a parsed config file, so `store.etcd.tls` is tested
//! from the YAML to the handshake. Failures must be prompt (within the request timeout) and
//! name TLS in their cause.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::harness::etcd::{EtcdServer, TlsFiles};

use cluster::error_chain;
use cluster::store::{EtcdOptions, EtcdStore, Store};

/// The tests' short timeouts.
fn options(endpoint: String) -> EtcdOptions {
    let mut o = EtcdOptions::new(vec![endpoint]);
    o.request_timeout = Duration::from_millis(500);
    o.connect_timeout = Duration::from_millis(250);
    o
}

fn start_tls() -> (EtcdServer, TlsFiles) {
    EtcdServer::start_tls().expect("start etcd with TLS (apt-get install -y etcd-server openssl)")
}

/// Store options parsed from a config file in `dir` whose `store.etcd.tls` section is `tls`
/// (paths relative to `dir` work), with the tests' short timeouts.
fn options_from_yaml(dir: &Path, endpoint: &str, tls: &str) -> EtcdOptions {
    let yaml = format!(
        "node: {{address: 127.0.0.1}}\ncluster: {{namespace: a, project: b, name: c}}\n\
         store:\n  etcd:\n    endpoints: [\"{endpoint}\"]\n    tls: {tls}\n\
         engine:\n  port: 6379\n  hooks: {{position: {{exec: [p]}}, promote: {{exec: [p]}}, \
         follow: {{exec: [f]}}, fence: {{exec: [f]}}, unfence: {{exec: [u]}}}}\n\
         process: {{exec: [a]}}\n"
    );
    let cfg = super::parse(&dir.join("agent.yaml"), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let store = cfg.store.as_ref().expect("store section");
    let mut o = store.etcd_options();
    let short = options(endpoint.to_owned());
    o.request_timeout = short.request_timeout;
    o.connect_timeout = short.connect_timeout;
    o.keep_alive_interval = short.keep_alive_interval;
    o
}

/// The request fails within about the request timeout, retryably, and says why.
async fn fails_promptly(o: &EtcdOptions) -> String {
    let started = Instant::now();
    let res = match EtcdStore::connect(o).await {
        Ok(s) => s.put("/tls/k", b"v".to_vec(), None).await.map(|_| ()),
        Err(e) => Err(e),
    };
    let err = res.expect_err("the TLS handshake must fail");
    let elapsed = started.elapsed();
    assert!(
        elapsed < o.request_timeout + Duration::from_millis(500),
        "took {elapsed:?}: {err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
    error_chain(&err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_tls_with_a_client_certificate_puts_and_gets() {
    let (etcd, tls) = start_tls();
    let dir = tls.ca.parent().expect("tls dir");
    // Relative paths resolve against the config file's directory.
    let o = options_from_yaml(
        dir,
        &etcd.endpoint(),
        "{ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}",
    );
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    let s = EtcdStore::connect(&o).await.expect("connect over TLS");
    let rev = s
        .put("/tls/k", b"v".to_vec(), None)
        .await
        .expect("put over TLS");
    assert_eq!(
        s.get("/tls/k").await.expect("get over TLS"),
        Some((b"v".to_vec(), rev))
    );
    // etcdctl with the same client certificate sees what the store wrote.
    assert!(
        etcd.etcdctl(&["get", "/tls/k"])
            .expect("etcdctl get")
            .contains('v')
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_tls_without_the_client_certificate_fails_promptly() {
    let (etcd, tls) = start_tls();
    let dir = tls.ca.parent().expect("tls dir");
    let o = options_from_yaml(dir, &etcd.endpoint(), "{ca_file: ca.pem}");
    let chain = fails_promptly(&o).await;
    assert!(chain.contains("etcd unavailable"), "{chain}");
    assert!(
        chain.contains("no client certificate is configured"),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_tls_with_the_wrong_ca_fails_promptly() {
    let (etcd, _) = start_tls();
    let other = tempfile::tempdir().expect("temp dir");
    let wrong = TlsFiles::generate(other.path()).expect("a second CA");
    let o = options_from_yaml(
        other.path(),
        &etcd.endpoint(),
        "{ca_file: ca.pem, cert_file: client.pem, key_file: client-key.pem}",
    );
    assert_eq!(
        o.tls.as_ref().and_then(|t| t.ca.as_ref()).map(|c| &c.path),
        Some(&wrong.ca)
    );
    let chain = fails_promptly(&o).await;
    assert!(chain.contains("etcd unavailable"), "{chain}");
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("certificate"),
        "{chain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_https_without_a_tls_section_trusts_no_ca() {
    let (etcd, _) = start_tls();
    let chain = fails_promptly(&options(etcd.endpoint())).await;
    assert!(chain.contains("etcd unavailable"), "{chain}");
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "{chain}"
    );
}
