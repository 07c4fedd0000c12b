//! The caps and timeouts against real sockets on loopback.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use std::net::SocketAddr;

use super::*;

fn small() -> Limits {
    Limits {
        max_connections: 4,
        max_per_client: 2,
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
    }
}

async fn start(limits: Limits) -> (SocketAddr, axum_server::Handle<Peer>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handle = axum_server::Handle::new();
    let app = Router::new().route("/health", get(|| async { "ok" }));
    let srv = server(listener, limits, "test")
        .expect("server")
        .handle(handle.clone());
    tokio::spawn(srv.serve(app.into_make_service()));
    (addr, handle)
}

/// Sends half a request head and waits for the server to close (`Some(elapsed)`) or not.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn half_open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send half a head");
    s
}

async fn get_health(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
    out
}

#[tokio::test]
async fn a_client_over_its_cap_is_closed_at_once_and_half_sent_heads_time_out() {
    let (addr, handle) = start(small()).await;
    let mut held = vec![half_open(addr).await, half_open(addr).await];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = half_open(addr).await;
    assert!(
        closed_within(&mut third, Duration::from_millis(200)).await,
        "a third connection from one client was not closed at once"
    );
    for s in &mut held {
        assert!(
            closed_within(s, Duration::from_secs(2)).await,
            "a half-sent request head was held past the header-read timeout"
        );
    }
    // Places are given back: the client is served again.
    assert!(get_health(addr).await.ends_with("ok"));
    handle.shutdown();
}

#[tokio::test]
async fn a_silent_connection_is_closed_and_a_good_request_is_served() {
    let (addr, handle) = start(small()).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "a connection that sent nothing was held"
    );
    let answer = get_health(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    handle.shutdown();
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let (addr, handle) = start(small()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let long = "a".repeat(MAX_HEAD_BYTES * 2);
    let _ = s
        .write_all(format!("GET /{long} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out)).await;
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 431") || out.starts_with("HTTP/1.1 414"),
        "{out}"
    );
    handle.shutdown();
}
