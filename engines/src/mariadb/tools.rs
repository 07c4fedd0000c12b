//! Running MariaDB's helper programs (`mariadb-backup`, `mbstream`, `mariadb-dump`, the
//! `mariadb` client, `mariadb-install-db`) for clones, backups and restores: work
//! directories of the agent's own, a tool's stderr kept in a file so a failure can name its
//! last lines, bounded waits, and `mariadb-backup --prepare`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use handlers::exec::{Captured, RunOutcome, run_capture};
use handlers::{ExecSpec, ManagedChild, Pipe, Piped, RunAs};

use super::prepare;
use crate::engine::EngineError;

/// MariaDB's physical backup tool (package `mariadb-backup`).
pub const BACKUP: &str = "mariadb-backup";
/// MariaDB's xbstream extractor (package `mariadb-backup`).
pub const MBSTREAM: &str = "mbstream";
/// How many of a tool's last output lines an error quotes.
const TAIL_LINES: usize = 5;
/// The most of a tool's output an error quotes.
const TAIL_CHARS: usize = 1500;

pub(super) fn failed(operation: &'static str, reason: String) -> EngineError {
    EngineError::Failed { operation, reason }
}

/// A name no other work directory of this process has: `<prefix>-<pid>-<n>`.
pub(super) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Give `path` to the run-as user (a no-op without one).
pub(super) fn give(path: &Path, owner: Option<RunAs>) -> Result<(), EngineError> {
    let Some(u) = owner else { return Ok(()) };
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(u.uid)),
        Some(nix::unistd::Gid::from_raw(u.gid)),
    )
    .map_err(|e| {
        failed(
            "hand a directory to the server's OS user",
            format!("chown {}: {e}", path.display()),
        )
    })
}

/// `chown -R` of `dir` to the run-as user (a no-op without one).
pub(super) fn give_tree(dir: &Path, owner: Option<RunAs>) -> Result<(), EngineError> {
    if owner.is_none() {
        return Ok(());
    }
    give(dir, owner)?;
    let entries = std::fs::read_dir(dir).map_err(|e| {
        failed(
            "hand the restored data to the server's OS user",
            format!("{}: {e}", dir.display()),
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| {
            failed(
                "hand the restored data to the server's OS user",
                format!("{}: {e}", dir.display()),
            )
        })?;
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => give_tree(&path, owner)?,
            // Symbolic links are not followed: their targets are not the restore's.
            Ok(t) if t.is_symlink() => {}
            _ => give(&path, owner)?,
        }
    }
    Ok(())
}

/// A directory of the agent's own (work files, a scratch server's socket), created empty
/// with mode 0700 and owned by the run-as user; removed with everything in it on drop.
#[derive(Debug)]
pub(super) struct WorkDir(PathBuf);

impl WorkDir {
    /// Create `path` (removing what an earlier run left there).
    pub(super) fn create(
        operation: &'static str,
        path: PathBuf,
        owner: Option<RunAs>,
    ) -> Result<WorkDir, EngineError> {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::remove_dir_all(&path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed(operation, format!("{}: {e}", parent.display())))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| failed(operation, format!("{}: {e}", path.display())))?;
        let dir = WorkDir(path);
        give(&dir.0, owner)?;
        Ok(dir)
    }

    /// Where it is.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start `argv` as `owner` with one standard stream piped to the caller and its stderr
/// appended to `stderr` (read by [`stderr_tail`] when it fails: `spawn_piped` would only
/// log it). A shell wrapper redirects it and `exec`s the tool, so the child is the tool.
pub(super) fn spawn_logged(
    operation: &'static str,
    env: &[(String, String)],
    owner: Option<RunAs>,
    argv: Vec<String>,
    stderr: &Path,
    piped: Piped,
) -> Result<(ManagedChild, Pipe), EngineError> {
    let name = argv
        .first()
        .map(|p| program_name(p).to_owned())
        .unwrap_or_default();
    let mut wrapped = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "exec \"$@\" 2>>\"$0\"".to_owned(),
        stderr.display().to_string(),
    ];
    wrapped.extend(argv);
    let spec = ExecSpec {
        env: env.to_vec(),
        user: owner,
        ..ExecSpec::new(wrapped)
    };
    ManagedChild::spawn_piped(&name, &spec, &[], piped).map_err(|e| {
        failed(
            operation,
            format!("start {name}: {}", handlers::error_chain(&e)),
        )
    })
}

/// The file name of a program path (`/usr/bin/mbstream` → `mbstream`).
pub(super) fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// The last lines of a tool's output (what it said before it failed), on one line.
pub(super) fn tail_of(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join(" | ");
    if tail.len() > TAIL_CHARS {
        let mut start = tail.len() - TAIL_CHARS;
        while !tail.is_char_boundary(start) {
            start += 1;
        }
        tail = format!("…{}", &tail[start..]);
    }
    tail
}

/// The last lines a tool wrote to its stderr file.
pub(super) fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    tail_of(&text)
}

/// Why a tool that exited with `status` failed, for an error: its last output lines, and a
/// hint when the shell could not find it.
pub(super) fn exit_reason(name: &str, status: handlers::ExitStatus, tail: &str) -> String {
    let hint = if status.exit_code() == 127 {
        " (not found: install the MariaDB client and backup tools, packages mariadb-client and mariadb-backup, or set the tool's path)"
    } else {
        ""
    };
    if tail.is_empty() {
        format!("{name} exited with {status}{hint}")
    } else {
        format!("{name} exited with {status}{hint}: {tail}")
    }
}

/// Wait (up to `limit`) for a tool whose input or output already ended; `Ok` when it
/// exited with 0, else an error with its last stderr lines. A tool that does not exit in
/// time is killed.
pub(super) async fn wait_tool(
    operation: &'static str,
    name: &str,
    child: &mut ManagedChild,
    limit: Duration,
    stderr: &Path,
) -> Result<(), EngineError> {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(st) if st.success() => Ok(()),
        Ok(st) => Err(failed(
            operation,
            exit_reason(name, st, &stderr_tail(stderr)),
        )),
        Err(_) => {
            child
                .stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(5))
                .await;
            Err(failed(
                operation,
                format!(
                    "{name} did not exit within {limit:?} after its stream ended; killed it. Its last output: {}",
                    stderr_tail(stderr)
                ),
            ))
        }
    }
}

/// Run `argv` to completion as `owner` (within `limit`), stdout and stderr captured
/// together; what it wrote. Routine output is logged at debug; on failure the error quotes
/// its last lines.
pub(super) async fn run_tool(
    operation: &'static str,
    env: &[(String, String)],
    owner: Option<RunAs>,
    argv: Vec<String>,
    limit: Duration,
) -> Result<String, EngineError> {
    let name = argv
        .first()
        .map(|p| program_name(p).to_owned())
        .unwrap_or_default();
    let mut wrapped = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "exec \"$0\" \"$@\" 2>&1".to_owned(),
    ];
    wrapped.extend(argv);
    let spec = ExecSpec {
        env: env.to_vec(),
        user: owner,
        timeout: Some(limit),
        ..ExecSpec::new(wrapped)
    };
    match run_capture(&name, &spec, &[]).await {
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            stdout,
            ..
        }) if st.success() => {
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                tracing::debug!(process = %name, stream = "output", "{line}");
            }
            Ok(stdout)
        }
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            stdout,
            ..
        }) => {
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                tracing::debug!(process = %name, stream = "output", "{line}");
            }
            // The line that says what failed, when it is not among the last ones.
            let why = stdout
                .lines()
                .rev()
                .find(|l| prepare::reads_like_failure(l))
                .map(str::trim)
                .unwrap_or("");
            let tail = tail_of(&stdout);
            let text = if why.is_empty() || tail.contains(why) {
                tail
            } else {
                format!("{why} … {tail}")
            };
            Err(failed(operation, exit_reason(&name, st, &text)))
        }
        Ok(Captured {
            outcome: RunOutcome::TimedOut,
            ..
        }) => Err(failed(
            operation,
            format!("{name} did not finish within {limit:?}"),
        )),
        Err(e) => Err(failed(
            operation,
            format!("start {name}: {}", handlers::error_chain(&e)),
        )),
    }
}

/// `mariadb-backup --prepare` of `target` (apply the redo log copied with the data files);
/// with `incremental`, apply that incremental backup to the already prepared `target`
/// (MariaDB 10.2 and later: no `--apply-log-only`, each step is a plain `--prepare`).
pub(super) async fn prepare_dir(
    env: &[(String, String)],
    owner: Option<RunAs>,
    target: &Path,
    incremental: Option<&Path>,
    limit: Duration,
) -> Result<(), EngineError> {
    let mut argv = vec![
        BACKUP.to_owned(),
        "--prepare".to_owned(),
        format!("--target-dir={}", target.display()),
    ];
    let operation = match incremental {
        None => "prepare the copied data (mariadb-backup --prepare)",
        Some(inc) => {
            argv.push(format!("--incremental-dir={}", inc.display()));
            "apply an incremental backup (mariadb-backup --prepare --incremental-dir)"
        }
    };
    run_tool(operation, env, owner, argv, limit).await.map(drop)
}

/// `mbstream -x -C <dir>` reading the caller's pipe, stderr to `stderr`.
pub(super) fn spawn_mbstream(
    operation: &'static str,
    env: &[(String, String)],
    owner: Option<RunAs>,
    dir: &Path,
    stderr: &Path,
) -> Result<(ManagedChild, tokio::net::unix::pipe::Sender), EngineError> {
    let argv = vec![
        MBSTREAM.to_owned(),
        "-x".to_owned(),
        "-C".to_owned(),
        dir.display().to_string(),
    ];
    let (child, pipe) = spawn_logged(operation, env, owner, argv, stderr, Piped::Stdin)?;
    let Pipe::Stdin(stdin) = pipe else {
        return Err(failed(operation, "mbstream's input pipe is missing".into()));
    };
    Ok((child, stdin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_is_the_last_non_empty_lines_on_one_line() {
        let text = "a\n\nb\nc\nd\ne\nf\n\n";
        assert_eq!(tail_of(text), "b | c | d | e | f");
        assert_eq!(tail_of(""), "");
        let long = "x".repeat(5000);
        assert!(tail_of(&long).chars().count() <= TAIL_CHARS + 1);
        assert_eq!(program_name("/usr/bin/mbstream"), "mbstream");
        assert_eq!(program_name("mbstream"), "mbstream");
    }

    /// A tool's stderr lands in its file, and a missing program is named with a hint.
    #[tokio::test]
    async fn stderr_goes_to_the_file_and_a_missing_tool_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("err");
        let (mut child, pipe) = spawn_logged(
            "test",
            &[],
            None,
            vec!["sh".into(), "-c".into(), "echo oops >&2; exit 3".into()],
            &log,
            Piped::Stdout,
        )
        .expect("spawn");
        drop(pipe);
        let err = wait_tool(
            "run a tool",
            "sh",
            &mut child,
            Duration::from_secs(10),
            &log,
        )
        .await
        .expect_err("exit 3");
        assert!(err.to_string().contains("exit code 3: oops"), "{err}");
        let (mut child, pipe) = spawn_logged(
            "test",
            &[],
            None,
            vec!["/nonexistent/tool".into()],
            &log,
            Piped::Stdout,
        )
        .expect("spawn");
        drop(pipe);
        let err = wait_tool(
            "run a tool",
            "tool",
            &mut child,
            Duration::from_secs(10),
            &log,
        )
        .await
        .expect_err("not found");
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
