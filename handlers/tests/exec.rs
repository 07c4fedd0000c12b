//! `exec`: real processes for exit codes, signals, env/cwd, spawn errors, timeouts and stops.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, is_gone, read_pid, sh};
use handlers::{ExecError, ExecSpec, ExitStatus, ManagedChild, RunOutcome, error_chain, run};
use nix::sys::signal::Signal;

#[tokio::test]
async fn run_success() {
    let outcome = run("ok", &sh("exit 0"), &[]).await.expect("spawn sh");
    assert_eq!(outcome, RunOutcome::Exited(ExitStatus::Exited(0)));
    let RunOutcome::Exited(status) = outcome else {
        unreachable!()
    };
    assert!(status.success());
}

#[tokio::test]
async fn run_nonzero_exit_code() {
    let outcome = run("fail", &sh("exit 3"), &[]).await.expect("spawn sh");
    let RunOutcome::Exited(status) = outcome else {
        panic!("unexpected {outcome:?}")
    };
    assert_eq!(status, ExitStatus::Exited(3));
    assert!(!status.success());
    assert_eq!(status.exit_code(), 3);
    assert_eq!(status.to_string(), "exit code 3");
}

#[tokio::test]
async fn run_killed_by_signal() {
    let outcome = run("sig", &sh("kill -KILL $$"), &[])
        .await
        .expect("spawn sh");
    let RunOutcome::Exited(status) = outcome else {
        panic!("unexpected {outcome:?}")
    };
    assert_eq!(status, ExitStatus::Signaled(9));
    assert_eq!(status.exit_code(), 137);
    assert_eq!(status.to_string(), "killed by SIGKILL");
}

#[tokio::test]
async fn env_and_cwd_reach_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(r#"printf '%s %s\n' "$A" "$B" > out; pwd -P >> out"#);
    spec.env = vec![
        ("A".into(), "from-spec".into()),
        ("B".into(), "spec".into()),
    ];
    spec.cwd = Some(dir.path().to_path_buf());
    let extra = [("B".to_string(), "from-extra".to_string())];
    let outcome = run("env", &spec, &extra).await.expect("spawn sh");
    assert_eq!(outcome, RunOutcome::Exited(ExitStatus::Exited(0)));
    let out = std::fs::read_to_string(dir.path().join("out")).expect("child wrote out");
    let cwd = dir.path().canonicalize().expect("canonical tempdir");
    assert_eq!(out, format!("from-spec from-extra\n{}\n", cwd.display()));
}

#[tokio::test]
async fn missing_program_is_a_clear_spawn_error() {
    let spec = ExecSpec::new(["/nonexistent/autopilot-no-such-program", "x"]);
    let err = run("missing", &spec, &[])
        .await
        .expect_err("must not start");
    let ExecError::Spawn {
        program, source, ..
    } = &err
    else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(program, "/nonexistent/autopilot-no-such-program");
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "start `/nonexistent/autopilot-no-such-program`"
    );
    let chain = error_chain(&err);
    assert!(
        chain.starts_with("start `/nonexistent/autopilot-no-such-program`: No such file"),
        "{chain}"
    );
}

#[tokio::test]
async fn missing_cwd_names_the_cwd() {
    let mut spec = sh("true");
    spec.cwd = Some("/nonexistent/autopilot-no-such-dir".into());
    let err = run("nocwd", &spec, &[]).await.expect_err("must not start");
    assert!(matches!(err, ExecError::Spawn { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "start `sh` in `/nonexistent/autopilot-no-such-dir`"
    );
}

#[tokio::test]
async fn empty_argv_is_rejected() {
    let spec = ExecSpec::new(Vec::<String>::new());
    let err = run("empty", &spec, &[]).await.expect_err("must not start");
    assert!(matches!(err, ExecError::EmptyArgv), "{err:?}");
}

#[test]
fn spawn_outside_a_runtime_is_an_error_not_a_panic() {
    let err = ManagedChild::spawn("nort", &sh("true"), &[]).expect_err("no runtime");
    assert!(matches!(err, ExecError::NoRuntime { .. }), "{err:?}");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    // Grandchildren whose parent dies are re-parented to us, so our reaper reaps them and
    // "gone" means gone, whatever PID 1 does.
    handlers::set_child_subreaper().expect("become a child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("sleep 60 & echo $! > child.pid; echo $$ > leader.pid; sleep 60");
    spec.cwd = Some(dir.path().to_path_buf());
    spec.timeout = Some(Duration::from_millis(300));
    let started = Instant::now();
    let outcome = run("slow", &spec, &[]).await.expect("spawn sh");
    assert_eq!(outcome, RunOutcome::TimedOut);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let leader = read_pid(&dir.path().join("leader.pid")).await;
    let child = read_pid(&dir.path().join("child.pid")).await;
    assert!(
        eventually(Duration::from_secs(5), || is_gone(leader) && is_gone(child)).await,
        "leader {leader} or grandchild {child} still exists"
    );
}

#[tokio::test]
async fn stop_escalates_to_sigkill_when_term_is_ignored() {
    handlers::set_child_subreaper().expect("become a child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(r#"trap "" TERM; sleep 30 & echo $! > child.pid; touch ready; wait"#);
    spec.cwd = Some(dir.path().to_path_buf());
    let mut child = ManagedChild::spawn("stubborn", &spec, &[]).expect("spawn sh");
    let grandchild = read_pid(&dir.path().join("child.pid")).await;
    let ready = dir.path().join("ready");
    assert!(eventually(Duration::from_secs(5), || ready.exists()).await);

    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let status = child.stop(Signal::SIGTERM, grace).await;
    let took = started.elapsed();
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL as i32));
    assert!(took >= grace, "returned before the grace period: {took:?}");
    assert!(took < grace + Duration::from_secs(2), "took {took:?}");
    assert!(
        eventually(Duration::from_secs(5), || is_gone(grandchild)).await,
        "grandchild {grandchild} survived"
    );
    assert_eq!(child.try_status(), Some(status));
}

#[tokio::test]
async fn stop_returns_early_when_the_process_obeys() {
    let mut child = ManagedChild::spawn("obedient", &sh("exec sleep 30"), &[]).expect("spawn");
    let started = Instant::now();
    let status = child.stop(Signal::SIGTERM, Duration::from_secs(10)).await;
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGTERM as i32));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wait_is_cancel_safe_and_cached() {
    let mut child = ManagedChild::spawn("short", &sh("sleep 0.3; exit 7"), &[]).expect("spawn");
    assert_eq!(child.try_status(), None);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), child.wait())
            .await
            .is_err()
    );
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s");
    assert_eq!(status, ExitStatus::Exited(7));
    assert_eq!(child.wait().await, ExitStatus::Exited(7));
    assert_eq!(child.try_status(), Some(ExitStatus::Exited(7)));
}

#[tokio::test]
async fn group_handle_signals_from_another_task() {
    let mut child = ManagedChild::spawn("target", &sh("exec sleep 30"), &[]).expect("spawn");
    let group = child.group();
    assert_eq!(group.pid(), child.pid());
    tokio::spawn(async move { group.signal_group(Signal::SIGUSR1) })
        .await
        .expect("task")
        .expect("signal");
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s");
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGUSR1 as i32));
    // Signalling after it is gone is fine.
    child
        .group()
        .signal_leader(Signal::SIGTERM)
        .expect("ESRCH is ok");
    child
        .group()
        .signal_group(Signal::SIGTERM)
        .expect("ESRCH is ok");
}

#[tokio::test]
async fn dropping_a_running_child_kills_its_group() {
    handlers::set_child_subreaper().expect("become a child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("sleep 60 & echo $! > child.pid; sleep 60");
    spec.cwd = Some(dir.path().to_path_buf());
    let child = ManagedChild::spawn("dropped", &spec, &[]).expect("spawn");
    let leader = child.pid() as i32;
    let grandchild = read_pid(&dir.path().join("child.pid")).await;
    drop(child);
    assert!(
        eventually(Duration::from_secs(5), || is_gone(leader)
            && is_gone(grandchild))
        .await,
        "leader {leader} or grandchild {grandchild} survived the drop"
    );
}

/// A `MakeWriter` collecting everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

// current_thread runtime: the output forwarding tasks run on this thread, where the
// subscriber is the default.
#[tokio::test(flavor = "current_thread")]
async fn output_goes_to_tracing_and_env_values_do_not() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut spec = sh("echo hello-out; echo hello-err >&2");
    spec.env = vec![("TOKEN".into(), "s3cr3t-value".into())];
    let mut child = ManagedChild::spawn("chatty", &spec, &[]).expect("spawn");
    assert_eq!(child.wait().await, ExitStatus::Exited(0));
    assert!(
        eventually(Duration::from_secs(5), || {
            let text = captured.text();
            text.contains("hello-out") && text.contains("hello-err")
        })
        .await,
        "output not forwarded: {}",
        captured.text()
    );
    let text = captured.text();
    let out = text
        .lines()
        .find(|l| l.contains("hello-out"))
        .expect("line");
    let err = text
        .lines()
        .find(|l| l.contains("hello-err"))
        .expect("line");
    assert!(
        out.contains("INFO") && out.contains("process=chatty") && out.contains("stream=\"stdout\""),
        "{out}"
    );
    assert!(
        err.contains("WARN") && err.contains("stream=\"stderr\""),
        "{err}"
    );
    assert!(
        text.contains("TOKEN"),
        "env keys are logged at debug: {text}"
    );
    assert!(!text.contains("s3cr3t-value"), "env value leaked: {text}");
    assert!(!format!("{spec:?}").contains("s3cr3t-value"));
}

#[tokio::test]
async fn run_capture_returns_stdout_and_the_exit_status() {
    let c = handlers::run_capture("pos", &sh("echo 3 17; echo oops >&2; exit 0"), &[])
        .await
        .expect("spawn sh");
    assert_eq!(c.outcome, RunOutcome::Exited(ExitStatus::Exited(0)));
    assert_eq!(c.stdout, "3 17\n");
    assert_eq!(c.failure, None, "`oops` does not read like a failure");

    let c = handlers::run_capture("pos", &sh("printf partial; exit 2"), &[])
        .await
        .expect("spawn sh");
    assert_eq!(c.outcome, RunOutcome::Exited(ExitStatus::Exited(2)));
    assert_eq!(c.stdout, "partial");
}

#[tokio::test]
async fn run_capture_reports_the_last_stderr_line_that_reads_like_a_failure() {
    let c = handlers::run_capture(
        "tool",
        &sh("echo 'error: on stdout, not reported'; \
             echo 'tool: error: first' >&2; echo 'tool: fatal: could not open file x' >&2; \
             echo 'done' >&2; exit 1"),
        &[],
    )
    .await
    .expect("spawn sh");
    assert_eq!(c.outcome, RunOutcome::Exited(ExitStatus::Exited(1)));
    assert_eq!(
        c.failure.as_deref(),
        Some("tool: fatal: could not open file x")
    );
    let long = handlers::run_capture("tool", &sh("printf 'error: %0500d\\n' 0 >&2; exit 1"), &[])
        .await
        .expect("spawn sh");
    assert_eq!(
        long.failure.map(|l| l.len()),
        Some(handlers::exec::MAX_FAILURE_LINE)
    );
}

#[tokio::test]
async fn run_capture_bounds_what_it_keeps() {
    let c = handlers::run_capture("big", &sh("head -c 200000 /dev/zero | tr '\\0' x"), &[])
        .await
        .expect("spawn sh");
    assert_eq!(c.stdout.len() as u64, handlers::exec::MAX_CAPTURE);
}

#[tokio::test]
async fn a_command_runs_as_the_requested_user_without_root_groups() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the test suite runs as root (it starts databases as their own users)"
    );
    let mut spec = sh("echo $(id -u) $(id -g) $(id -G)");
    spec.user = Some(handlers::RunAs {
        uid: 65534,
        gid: 65534,
    });
    let c = handlers::run_capture("id", &spec, &[])
        .await
        .expect("spawn sh as nobody");
    let (outcome, stdout) = (c.outcome, c.stdout);
    assert_eq!(outcome, RunOutcome::Exited(ExitStatus::Exited(0)));
    assert_eq!(
        stdout.trim(),
        "65534 65534 65534",
        "no supplementary root group"
    );
}

#[tokio::test]
async fn a_piped_child_streams_through_the_callers_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Stdout to the caller: a stream larger than a pipe's buffer arrives whole.
    let (mut child, pipe) = ManagedChild::spawn_piped(
        "src",
        &sh("head -c 300000 /dev/zero | tr '\\0' x; echo done >&2"),
        &[],
        handlers::Piped::Stdout,
    )
    .expect("spawn sh");
    let handlers::Pipe::Stdout(mut out) = pipe else {
        panic!("asked for stdout")
    };
    let mut got = Vec::new();
    out.read_to_end(&mut got).await.expect("read");
    assert_eq!(got.len(), 300_000);
    assert!(child.wait().await.success());
    // Stdin from the caller: what is written arrives, and closing it ends the child.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("in");
    let (mut child, pipe) = ManagedChild::spawn_piped(
        "sink",
        &sh(&format!("cat > {}", file.display())),
        &[],
        handlers::Piped::Stdin,
    )
    .expect("spawn sh");
    let handlers::Pipe::Stdin(mut input) = pipe else {
        panic!("asked for stdin")
    };
    input.write_all(b"hello\n").await.expect("write");
    drop(input);
    assert!(child.wait().await.success());
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "hello\n");
}

/// A child that left the group (`setsid`, as every PostgreSQL backend does) and is stopped
/// is still killed by `kill_tree`; a plain group signal would miss it.
#[tokio::test]
async fn kill_tree_reaches_children_in_their_own_session() {
    handlers::set_child_subreaper().expect("become a child subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("setsid sleep 60 & echo $! > child.pid; echo $$ > leader.pid; wait");
    spec.cwd = Some(dir.path().to_path_buf());
    let mut child = ManagedChild::spawn("server", &spec, &[]).expect("spawn sh");
    let leader = read_pid(&dir.path().join("leader.pid")).await;
    let escaped = read_pid(&dir.path().join("child.pid")).await;
    assert!(
        eventually(Duration::from_secs(5), || {
            handlers::exec::descendants(leader as u32).contains(&(escaped as u32))
        })
        .await,
        "the setsid child {escaped} is not listed as a descendant of {leader}"
    );
    // A hung server: stopped, group and escaped child alike.
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(escaped), Signal::SIGSTOP);
    child.group().kill_tree().expect("kill the tree");
    let status = child.wait().await;
    assert_eq!(status, ExitStatus::Signaled(Signal::SIGKILL as i32));
    assert!(
        eventually(Duration::from_secs(5), || is_gone(escaped)).await,
        "the child in its own session {escaped} survived"
    );
}
