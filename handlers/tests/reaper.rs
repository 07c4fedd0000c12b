//! The process-wide reaper: concurrent children get their own statuses, orphans are reaped.

mod common;

use std::os::unix::process::CommandExt;
use std::time::Duration;

use common::{eventually, proc_state, q, read_pid, sh};
use handlers::{ExecError, ExecSpec, ExitStatus, ManagedChild};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_children_get_their_own_exit_codes() {
    let mut tasks = Vec::new();
    for i in 0..64 {
        tasks.push(tokio::spawn(async move {
            let script = format!("sleep 0.0{}; exit {i}", i % 7);
            let mut child =
                ManagedChild::spawn(&format!("c{i}"), &sh(&script), &[]).expect("spawn sh");
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .expect("child exits within 10 s");
            (i, status)
        }));
    }
    for task in tasks {
        let (i, status) = task.await.expect("task");
        assert_eq!(status, ExitStatus::Exited(i), "child {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_spawns_do_not_disturb_the_reaper() {
    // std reaps a child whose exec failed itself; the reaper must not race it (which would
    // make std panic) and other children must still get their statuses.
    let mut tasks = Vec::new();
    for i in 0..32 {
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let spec = ExecSpec::new(["/nonexistent/autopilot-no-such-program"]);
                let err = ManagedChild::spawn("missing", &spec, &[]).expect_err("missing");
                assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
                None
            } else {
                let mut child =
                    ManagedChild::spawn("ok", &sh(&format!("exit {i}")), &[]).expect("spawn sh");
                let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                    .await
                    .expect("child exits within 10 s");
                Some((i, status))
            }
        }));
    }
    let mut checked = 0;
    for task in tasks {
        if let Some((i, status)) = task.await.expect("task") {
            assert_eq!(status, ExitStatus::Exited(i));
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}

#[tokio::test]
async fn orphans_are_reaped_when_we_are_a_subreaper() {
    handlers::set_child_subreaper().expect("become a child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("orphan.pid");
    let before = handlers::orphans_reaped();
    let script = format!("(sleep 0.2; exit 0) & echo $! > {}; exit 0", q(&pid_file));
    let mut child = ManagedChild::spawn("orphaner", &sh(&script), &[]).expect("spawn sh");
    assert_eq!(child.wait().await, ExitStatus::Exited(0));
    let orphan = read_pid(&pid_file).await;
    // The orphan is re-parented to us; after it exits, the reaper must reap it: no zombie.
    assert!(
        eventually(Duration::from_secs(5), || proc_state(orphan).is_none()).await,
        "orphan {orphan} still present, state {:?}",
        proc_state(orphan)
    );
    assert!(
        handlers::orphans_reaped() > before,
        "orphan {orphan} vanished but was not counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_child_is_adopted_and_its_status_delivered() {
    // What the agent's next image finds after an in-place `execve`: a running child nobody
    // registered, and the read ends of its output pipes.
    let mut std_child = std::process::Command::new("sh")
        .args(["-c", "echo adopted; sleep 30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let outputs = handlers::Outputs {
        stdout: std_child.stdout.take().expect("stdout").into(),
        stderr: std_child.stderr.take().expect("stderr").into(),
    };
    let pid = std_child.id();
    drop(std_child); // neither waits nor kills
    let (mut child, _failure) = ManagedChild::adopt("main", pid, outputs).expect("adopt");
    assert_eq!(child.pid(), pid);
    assert_eq!(child.try_status(), None, "still running");
    let status = child
        .stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(5))
        .await;
    assert_eq!(
        status,
        ExitStatus::Signaled(nix::sys::signal::Signal::SIGTERM as i32)
    );
}

#[tokio::test]
async fn a_process_that_is_not_our_child_cannot_be_adopted() {
    let (stdout, stderr) = (
        std::fs::File::open("/dev/null").expect("null").into(),
        std::fs::File::open("/dev/null").expect("null").into(),
    );
    let err = ManagedChild::adopt("main", 1, handlers::Outputs { stdout, stderr })
        .expect_err("PID 1 is nobody's child");
    assert!(
        handlers::error_chain(&err).contains("not a child of this process"),
        "{}",
        handlers::error_chain(&err)
    );
}
