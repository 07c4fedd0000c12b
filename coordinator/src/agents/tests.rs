//! [`AgentClient`] against a real HTTP server on 127.0.0.1 playing agents: one answer per
//! path prefix (`http://127.0.0.1:<port>/<case>` is the agent URL of case `<case>`).

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use cluster::wire::{NodeStatements, StatementStats, Timestamp};

use super::*;

fn doc(node: &str) -> NodeStatements {
    NodeStatements {
        node: node.into(),
        time: Timestamp::now(),
        statements: vec![StatementStats {
            rank: 1,
            id: "42".into(),
            query: "SELECT pg_sleep($1), $2".into(),
            database: Some("postgres".into()),
            calls: 50,
            total_seconds: 0.6,
            mean_seconds: 0.012,
            rows: 50,
        }],
    }
}

/// A fake agent listener; returns its base URL.
async fn stub() -> String {
    let app = Router::new()
        .route(
            "/ok/statements",
            get(|q: axum::extract::RawQuery| async move {
                let mut d = doc("n1");
                // Echo the limit as the first statement's calls, so the test sees it.
                if let Some(n) = q.0.and_then(|q| q.strip_prefix("limit=")?.parse().ok()) {
                    d.statements[0].calls = n;
                }
                axum::Json(d)
            }),
        )
        .route(
            "/off/statements",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({"error": "performance_schema is OFF"})),
                )
            }),
        )
        .route(
            "/bad/statements",
            get(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "limit must be 1..=100"})),
                )
            }),
        )
        .route(
            "/moved/statements",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://169.254.169.254/")],
                )
                    .into_response()
            }),
        )
        .route(
            "/slow/statements",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                axum::Json(doc("n1"))
            }),
        )
        .route(
            "/huge/statements",
            get(|| async { "x".repeat(MAX_ANSWER + 10) }),
        )
        .route(
            "/garbage/statements",
            get(|| async { "<html>hello</html>" }),
        )
        .route("/other/statements", get(|| async { axum::Json(doc("n2")) }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

fn client() -> AgentClient {
    AgentClient::new(None, Duration::from_millis(500)).expect("client")
}

async fn code(c: &AgentClient, url: &str) -> &'static str {
    c.statements("n1", url, Some(5))
        .await
        .expect_err("an error")
        .code
}

#[tokio::test]
async fn answers_and_failures_have_their_codes() {
    let base = stub().await;
    let c = client();
    let ok = c
        .statements("n1", &format!("{base}/ok/"), Some(7))
        .await
        .expect("statements");
    assert_eq!(ok.statements[0].calls, 7, "the limit is passed on");
    let ok = c
        .statements("n1", &format!("{base}/ok"), None)
        .await
        .expect("statements");
    assert_eq!(ok.statements[0].calls, 50, "no limit: the agent's default");

    let e = c
        .statements("n1", &format!("{base}/off"), None)
        .await
        .expect_err("503");
    assert_eq!(e.code, "no_statistics");
    assert!(e.message.contains("performance_schema is OFF"), "{e}");
    let e = c
        .statements("n1", &format!("{base}/bad"), None)
        .await
        .expect_err("400");
    assert_eq!(e.code, "agent_refused");
    assert!(e.message.contains("limit must be"), "{e}");
    assert_eq!(code(&c, &format!("{base}/moved")).await, "agent_redirect");
    assert_eq!(code(&c, &format!("{base}/huge")).await, "invalid_answer");
    assert_eq!(code(&c, &format!("{base}/garbage")).await, "invalid_answer");
    assert_eq!(code(&c, &format!("{base}/other")).await, "wrong_node");
    assert_eq!(
        code(&c, &format!("{base}/nothing")).await,
        "agent_unsupported"
    );

    let t0 = std::time::Instant::now();
    let e = c
        .statements("n1", &format!("{base}/slow"), None)
        .await
        .expect_err("timeout");
    assert_eq!(e.code, "agent_timeout", "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[tokio::test]
async fn unreachable_and_unusable_urls() {
    let c = client();
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    assert_eq!(
        code(&c, &format!("http://127.0.0.1:{port}")).await,
        "agent_unreachable"
    );
    let e = c
        .statements("n1", "https://127.0.0.1:1", None)
        .await
        .expect_err("no CA");
    assert_eq!(e.code, "agent_ca_missing");
    assert!(e.message.contains("--agent-ca-file"), "{e}");
    for bad in [
        "file:///etc/passwd",
        "127.0.0.1:9187",
        "http://u:pw@127.0.0.1:9187",
        "http://127.0.0.1:9187/?x=1",
        "",
    ] {
        let e = c.statements("n1", bad, None).await.expect_err(bad);
        assert_eq!(e.code, "invalid_agent_url", "{bad}: {e}");
        assert!(!e.message.contains("pw@"), "{e}");
    }
}

#[test]
fn statements_urls() {
    let u = statements_url("http://10.0.0.5:9187", Some(3)).expect("url");
    assert_eq!(u.as_str(), "http://10.0.0.5:9187/statements?limit=3");
    let u = statements_url("https://db-1.example:9187/", None).expect("url");
    assert_eq!(u.as_str(), "https://db-1.example:9187/statements");
    let u = statements_url("http://h:1/agent/", None).expect("url");
    assert_eq!(u.path(), "/agent/statements");
}
