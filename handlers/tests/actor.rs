//! `HandlerActor`: no overlapping runs, periodic runs and reports, group kill on stop.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, is_gone, q, read_pid, sh};
use handlers::{
    ExecSpec, ExitStatus, HandlerActor, HandlerArgs, HandlerMsg, HandlerOutcome, RunReport,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort, call_t};
use tokio::sync::mpsc;

fn args(name: &str, spec: ExecSpec) -> HandlerArgs {
    HandlerArgs {
        name: name.into(),
        spec,
        interval: None,
        reports: None,
    }
}

async fn run_once(actor: &ActorRef<HandlerMsg>, env: Vec<(String, String)>) -> RunReport {
    call_t!(
        actor,
        |reply| HandlerMsg::Run {
            env,
            reply: Some(reply)
        },
        10_000
    )
    .expect("run reply within 10 s")
}

/// Parse "start <ns>"/"end <ns>" lines and check that runs never overlap.
fn assert_no_overlap(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).expect("log written");
    let mut runs = 0;
    let mut open: Option<u128> = None;
    let mut last_end = 0u128;
    for line in text.lines() {
        let (kind, ns) = line.split_once(' ').expect("`kind ns` line");
        let ns: u128 = ns.parse().expect("nanoseconds");
        match (kind, open) {
            ("start", None) => {
                assert!(
                    ns >= last_end,
                    "run started before the previous ended:\n{text}"
                );
                open = Some(ns);
            }
            ("end", Some(start)) => {
                assert!(ns >= start);
                last_end = ns;
                open = None;
                runs += 1;
            }
            _ => panic!("overlapping or malformed runs:\n{text}"),
        }
    }
    assert!(open.is_none(), "unfinished run:\n{text}");
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overlap_and_all_get_replies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let script = format!(
        "echo \"start $(date +%s%N)\" >> {log}; sleep 0.2; echo \"end $(date +%s%N)\" >> {log}",
        log = q(&log)
    );
    let (actor, handle) = Actor::spawn(None, HandlerActor, args("serial", sh(&script)))
        .await
        .expect("spawn actor");
    let mut calls = Vec::new();
    for i in 0..3 {
        let actor = actor.clone();
        calls.push(tokio::spawn(async move {
            run_once(&actor, vec![("N".into(), i.to_string())]).await
        }));
    }
    for call in calls {
        let report = call.await.expect("task");
        assert_eq!(report.handler, "serial");
        assert_eq!(report.outcome, HandlerOutcome::Success);
        assert!(report.duration >= Duration::from_millis(200));
    }
    // The first request runs alone; the other two may be coalesced into one run.
    let runs = assert_no_overlap(&log);
    assert!((2..=3).contains(&runs), "{runs} runs");
    actor.stop(None);
    handle.await.expect("actor ends");
}

#[tokio::test]
async fn outcomes_of_failure_timeout_and_spawn_error() {
    let (failing, h1) = Actor::spawn(None, HandlerActor, args("failing", sh("exit 4")))
        .await
        .expect("spawn actor");
    let report = run_once(&failing, Vec::new()).await;
    assert_eq!(
        report.outcome,
        HandlerOutcome::Failed(ExitStatus::Exited(4))
    );
    assert_eq!(report.outcome.label(), "failure");

    let mut slow = sh("sleep 30");
    slow.timeout = Some(Duration::from_millis(200));
    let (slow, h2) = Actor::spawn(None, HandlerActor, args("slow", slow))
        .await
        .expect("spawn actor");
    let report = run_once(&slow, Vec::new()).await;
    assert_eq!(report.outcome, HandlerOutcome::TimedOut);
    assert_eq!(report.outcome.label(), "timeout");

    let missing = ExecSpec::new(["/nonexistent/autopilot-hook"]);
    let (missing, h3) = Actor::spawn(None, HandlerActor, args("missing", missing))
        .await
        .expect("spawn actor");
    let report = run_once(&missing, Vec::new()).await;
    let HandlerOutcome::SpawnFailed(msg) = &report.outcome else {
        panic!("unexpected {:?}", report.outcome)
    };
    assert!(
        msg.starts_with("start `/nonexistent/autopilot-hook`: No such file"),
        "{msg}"
    );
    assert_eq!(report.outcome.label(), "spawn_error");
    // The actor keeps serving after a spawn failure.
    assert!(!run_once(&missing, Vec::new()).await.outcome.is_success());

    for (actor, handle) in [(failing, h1), (slow, h2), (missing, h3)] {
        actor.stop(None);
        handle.await.expect("actor ends");
    }
}

/// Forwards every report it receives to a channel the test reads.
struct Collector;

impl Actor for Collector {
    type Msg = RunReport;
    type State = mpsc::UnboundedSender<RunReport>;
    type Arguments = mpsc::UnboundedSender<RunReport>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        report: RunReport,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(report);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_runs_reach_the_subscriber_with_the_set_env() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (collector, collector_handle) = Actor::spawn(None, Collector, tx)
        .await
        .expect("spawn collector");
    let port = Arc::new(OutputPort::<RunReport>::default());
    port.subscribe(collector.clone(), Some);

    let dir = tempfile::tempdir().expect("tempdir");
    let roles = dir.path().join("roles");
    let script = format!("echo \"${{ROLE:-none}}\" >> {}", q(&roles));
    let (actor, handle) = Actor::spawn(
        None,
        HandlerActor,
        HandlerArgs {
            name: "health".into(),
            spec: sh(&script),
            interval: Some(Duration::from_millis(100)),
            reports: Some(Arc::clone(&port)),
        },
    )
    .await
    .expect("spawn actor");

    for n in 0..3 {
        let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("report {n} within 5 s"))
            .expect("collector alive");
        assert_eq!(report.handler, "health");
        assert_eq!(report.outcome, HandlerOutcome::Success);
    }
    actor
        .cast(HandlerMsg::SetEnv(vec![("ROLE".into(), "primary".into())]))
        .expect("cast");
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&roles).is_ok_and(|s| s.lines().any(|l| l == "primary"))
        })
        .await,
        "periodic runs did not pick up the new env"
    );
    let text = std::fs::read_to_string(&roles).expect("roles written");
    assert_eq!(text.lines().next(), Some("none"), "{text}");

    actor.stop(None);
    handle.await.expect("actor ends");
    collector.stop(None);
    collector_handle.await.expect("collector ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_ticks_never_overlap_a_slow_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let script = format!(
        "echo \"start $(date +%s%N)\" >> {log}; sleep 0.3; echo \"end $(date +%s%N)\" >> {log}",
        log = q(&log)
    );
    let (actor, handle) = Actor::spawn(
        None,
        HandlerActor,
        HandlerArgs {
            name: "job:busy".into(),
            spec: sh(&script),
            interval: Some(Duration::from_millis(50)),
            reports: None,
        },
    )
    .await
    .expect("spawn actor");
    // Wait until at least 2 runs completed, then stop.
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|s| s.matches("end ").count() >= 2)
        })
        .await
    );
    actor.stop(None);
    handle.await.expect("actor ends");
    // A graceful stop kills an in-flight run, which may leave an unmatched last "start".
    let text = std::fs::read_to_string(&log).expect("log");
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.last().is_some_and(|l| l.starts_with("start")) {
        lines.pop();
    }
    let only = dir.path().join("complete");
    std::fs::write(&only, lines.join("\n")).expect("write");
    assert!(assert_no_overlap(&only) >= 2);
}

/// Start a handler that leaves a grandchild, wait until both pids are known.
async fn start_long_run(
    name: &str,
) -> (
    ActorRef<HandlerMsg>,
    ractor::concurrency::JoinHandle<()>,
    i32,
    i32,
    tempfile::TempDir,
) {
    handlers::set_child_subreaper().expect("become a child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("sleep 60 & echo $! > child.pid; echo $$ > leader.pid; wait");
    spec.cwd = Some(dir.path().to_path_buf());
    let (actor, handle) = Actor::spawn(None, HandlerActor, args(name, spec))
        .await
        .expect("spawn actor");
    actor
        .cast(HandlerMsg::Run {
            env: Vec::new(),
            reply: None,
        })
        .expect("cast");
    let leader = read_pid(&dir.path().join("leader.pid")).await;
    let child = read_pid(&dir.path().join("child.pid")).await;
    assert!(!is_gone(leader) && !is_gone(child));
    (actor, handle, leader, child, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_actor_kills_the_running_group() {
    let (actor, handle, leader, child, _dir) = start_long_run("preStop").await;
    actor.stop(None);
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("actor stops within 10 s")
        .expect("actor ends");
    assert!(
        eventually(Duration::from_secs(5), || is_gone(leader) && is_gone(child)).await,
        "leader {leader} or grandchild {child} survived the actor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_actor_kills_the_running_group() {
    let (actor, handle, leader, child, _dir) = start_long_run("postStop").await;
    actor.kill();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("actor dies within 10 s")
        .expect("actor ends");
    assert!(
        eventually(Duration::from_secs(5), || is_gone(leader) && is_gone(child)).await,
        "leader {leader} or grandchild {child} survived the killed actor"
    );
}
