//! The listener over TLS against real sockets on loopback, with a throw-away CA made by
//! `openssl` ([`TlsFiles`]): HTTPS works for a client trusting the CA, a client with another
//! CA and plain HTTP get nothing, and the caps and a bounded handshake hold for connections
//! that never finish their handshake.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use e2e::harness::tls::TlsFiles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// Header-read (and so handshake) timeout 300 ms, idle timeout 5 s: a connection closed
/// within a second was closed by the handshake bound, not by the idle timer.
fn small() -> Limits {
    Limits {
        max_connections: 4,
        max_per_client: 2,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(5),
    }
}

fn files() -> (tempfile::TempDir, TlsFiles) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = TlsFiles::generate(dir.path()).expect("openssl certificates");
    (dir, files)
}

async fn start_tls(limits: Limits, files: &TlsFiles) -> (SocketAddr, axum_server::Handle<Peer>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let read = |p: &std::path::Path| std::fs::read(p).expect("read PEM");
    let config = tls::server_config(&read(&files.server_cert), &read(&files.server_key))
        .expect("server config");
    let handle = axum_server::Handle::new();
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let srv = server(listener, limits, "test")
        .expect("server")
        .acceptor(tls::acceptor(config, &limits))
        .handle(handle.clone());
    tokio::spawn(srv.serve(app.into_make_service()));
    (addr, handle)
}

/// A client trusting only the CA in `ca`.
fn client(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read CA");
    let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("CA bundle");
    reqwest::Client::builder()
        .tls_certs_only(certs)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// Whether the server closes `s` within `within` (reads EOF or an error).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            // A TLS alert before the close: keep reading.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn https_is_served_to_a_client_trusting_the_ca_and_nothing_else_gets_an_answer() {
    let (_dir, f) = files();
    let (addr, handle) = start_tls(small(), &f).await;
    let url = format!("https://127.0.0.1:{}/health", addr.port());
    let body = client(&f.ca)
        .get(&url)
        .send()
        .await
        .expect("HTTPS request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");

    // Another CA: the handshake fails on the client's side.
    let (_other_dir, other) = files();
    let err = client(&other.ca)
        .get(&url)
        .send()
        .await
        .expect_err("a client with another CA got in");
    let chain = handlers::error_chain(&err);
    assert!(chain.contains("certificate"), "{chain}");

    // Plain HTTP on the HTTPS port: no HTTP answer, the connection is closed.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1"),
        "plain HTTP got an HTTP answer: {out:?}"
    );
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", addr.port()))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was served: {plain:?}");

    // The server still serves after those failures.
    let body = client(&f.ca).get(&url).send().await.expect("again");
    assert_eq!(body.status().as_u16(), 200);
    handle.shutdown();
}

#[tokio::test]
async fn stalled_handshakes_are_capped_and_dropped_by_the_handshake_timeout() {
    let (_dir, f) = files();
    let limits = small();
    let (addr, handle) = start_tls(limits, &f).await;
    // Two connections that start a TLS record and never finish the ClientHello.
    let mut held = Vec::new();
    for _ in 0..limits.max_per_client {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .expect("half a record header");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The per-client cap counts connections still in their handshake.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_millis(200)).await,
        "a third connection from one client was not closed at once"
    );
    let t0 = Instant::now();
    for s in &mut held {
        assert!(
            closed_within(s, Duration::from_secs(2)).await,
            "a stalled handshake was held past the handshake timeout"
        );
    }
    let took = t0.elapsed();
    assert!(
        took < limits.idle_timeout,
        "closed after {took:?}: by the idle timer, not the handshake bound"
    );
    // Their places are given back: the client is served again.
    let url = format!("https://127.0.0.1:{}/health", addr.port());
    let ok = client(&f.ca).get(&url).send().await.expect("served again");
    assert_eq!(ok.status().as_u16(), 200);
    handle.shutdown();
}
