//! The `process` engine drives roles through operator hooks: real `sh` hooks, real exits.

use engines::process::{FENCE_UNREACHABLE, ProcessEngine, ProcessHooks};
use engines::{Engine, EngineError, Peer, Position, RemoteFence};
use handlers::ExecSpec;

fn sh(script: &str) -> ExecSpec {
    ExecSpec::new(["sh", "-c", script])
}

fn engine(position: &str, fence: &str) -> ProcessEngine {
    ProcessEngine::new(
        sh("sleep 1"),
        Some(ProcessHooks {
            position: sh(position),
            promote: sh("test \"$AUTOPILOT_NODE\" = n1"),
            follow: sh("test \"$AUTOPILOT_PRIMARY_HOST:$AUTOPILOT_PRIMARY_PORT\" = 10.0.0.9:6379"),
            fence: sh(fence),
            unfence: sh("exit 1"),
            local: Peer {
                host: "127.0.0.1".into(),
                port: 6381,
                agent: None,
                standby: false,
            },
            env: vec![("AUTOPILOT_NODE".into(), "n1".into())],
        }),
    )
}

#[tokio::test]
async fn position_promote_and_follow_run_their_hooks() {
    let e = engine("echo 2 40", "exit 0");
    assert_eq!(
        e.position().await.expect("position"),
        Position {
            epoch: 2,
            offset: 40
        }
    );
    assert_eq!(
        e.promote().await.expect("promote"),
        Position {
            epoch: 2,
            offset: 40
        }
    );
    let primary = Peer::parse("10.0.0.9:6379").expect("peer");
    assert!(
        e.follow(&primary).await.is_ok(),
        "follow gets the primary's address"
    );
    let other = Peer::parse("10.0.0.8:6379").expect("peer");
    assert!(matches!(
        e.follow(&other).await,
        Err(EngineError::Failed { .. })
    ));
    assert!(matches!(e.unfence().await, Err(EngineError::Failed { .. })));
}

#[tokio::test]
async fn fence_targets_local_or_remote_and_reports_unreachable() {
    let e = engine(
        "echo 5",
        "case \"$AUTOPILOT_TARGET_PORT\" in 6381) echo 7;; 6390) exit 2;; *) echo 9;; esac",
    );
    assert_eq!(
        e.fence().await.expect("self fence"),
        Position {
            epoch: 0,
            offset: 7
        }
    );
    let remote = Peer::parse("127.0.0.1:6382").expect("peer");
    assert_eq!(
        e.fence_remote(&remote).await.expect("remote fence"),
        RemoteFence::Fenced(Position {
            epoch: 0,
            offset: 9
        })
    );
    let gone = Peer::parse("127.0.0.1:6390").expect("peer");
    assert_eq!(FENCE_UNREACHABLE, 2);
    assert_eq!(
        e.fence_remote(&gone).await.expect("unreachable"),
        RemoteFence::Unreachable
    );
}

#[tokio::test]
async fn a_bad_position_is_an_error_that_says_what_was_expected() {
    let e = engine("echo not-a-number", "exit 0");
    let err = e.position().await.expect_err("bad output");
    assert!(err.to_string().contains("EPOCH OFFSET"), "{err}");
}

#[tokio::test]
async fn without_hooks_role_operations_are_unsupported() {
    let e = ProcessEngine::new(sh("sleep 1"), None);
    assert!(matches!(
        e.promote().await,
        Err(EngineError::Unsupported { .. })
    ));
}
