//! The agent's in-place upgrade (`autopilot upgrade-self`): the running agent re-executes
//! itself (`execve`, so it keeps its PID — PID 1 in a container — and its children) from a
//! new binary, which adopts the running database instead of starting one and keeps the
//! node's etcd lease, so a primary stays the primary: no failover, no write outage.
//!
//! What crosses the `execve`, written by the old image to `<state_dir>/handover.json` (mode
//! 0600, read and deleted by the new one, named by the hidden `run --handover FILE`):
//! - the database's PID (still the agent's child, since the PID does not change) and the
//!   descriptors of its stdout and stderr pipes, whose close-on-exec flag is cleared for the
//!   `execve` only — the new image reads on, nothing the database writes is lost;
//! - the lease id and until when it is known to live, and the role (primary or replica);
//! - where the old binary was copied (`<state_dir>/autopilot.previous`), for a rollback.
//!
//! When the new image cannot start (its configuration is refused), it re-executes the
//! previous binary with the same hand-over, so the database keeps running either way. When
//! it cannot adopt the database (it exited meanwhile), it starts it the usual way and
//! revokes the inherited lease, so the cluster fails over if this node was the primary.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::role::HandoverRole;

/// The format of `handover.json`; a new image refuses records of a newer one.
pub const SCHEMA: u32 = 1;

/// The hand-over file's name in the state directory.
pub const FILE: &str = "handover.json";

/// Where the old binary is kept for a rollback, in the state directory.
pub const PREVIOUS_BINARY: &str = "autopilot.previous";

/// What the old image hands to the new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The old image's version (`autopilot --version`).
    pub from_version: String,
    /// The old binary's copy, for a rollback.
    pub previous_binary: Option<PathBuf>,
    /// The old image's command line, without its binary and any `--handover`: what the
    /// previous binary runs with when the new one cannot start.
    pub args: Vec<String>,
    /// The previous binary took over again (the new one could not start): no second
    /// fall-back.
    #[serde(default)]
    pub fell_back: bool,
    /// The running database.
    pub main: MainRecord,
    /// The node's lease and role (clustered agents only).
    pub lease: Option<LeaseRecord>,
    /// When the old image wrote this (Unix ms).
    pub written_at_ms: u64,
}

/// The running database, as the new image adopts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MainRecord {
    /// Its PID.
    pub pid: u32,
    /// The descriptor of its stdout pipe's read end.
    pub stdout_fd: RawFd,
    /// The descriptor of its stderr pipe's read end.
    pub stderr_fd: RawFd,
}

/// The node's lease, as the new image's session takes it over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The etcd lease id.
    pub id: i64,
    /// Until when (Unix ms) it is known to live: the last successful keep-alive's send
    /// time plus the TTL.
    pub alive_until_ms: u64,
    /// The role the node had.
    pub role: RecordRole,
}

/// [`HandoverRole`] in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordRole {
    /// See [`HandoverRole::Primary`].
    Primary,
    /// See [`HandoverRole::Replica`].
    Replica,
}

impl From<HandoverRole> for RecordRole {
    fn from(r: HandoverRole) -> Self {
        match r {
            HandoverRole::Primary => RecordRole::Primary,
            HandoverRole::Replica => RecordRole::Replica,
        }
    }
}

/// What the new image took over at its start.
#[derive(Debug)]
pub struct Inherited {
    /// The record, as read.
    pub record: Record,
    /// The database's output pipes, owned now.
    pub outputs: handlers::Outputs,
}

impl Inherited {
    /// The lease, until when it lives (Unix ms) and the role; `None` when the agent is not
    /// clustered or the lease is known to have expired.
    pub fn lease(&self) -> Option<(cluster::store::LeaseId, u64, HandoverRole)> {
        let l = self.record.lease.as_ref()?;
        if l.alive_until_ms <= crate::node::role::now_millis() {
            return None;
        }
        let role = match l.role {
            RecordRole::Primary => HandoverRole::Primary,
            RecordRole::Replica => HandoverRole::Replica,
        };
        Some((cluster::store::LeaseId(l.id), l.alive_until_ms, role))
    }
}

/// Read and delete the hand-over file, and take ownership of the descriptors it names.
/// Call once, at the start of `run`, before anything else opens a file.
pub fn take(path: &Path) -> Result<Inherited, String> {
    let text = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    // Once only: a later restart of the agent must not believe it inherited anything.
    if let Err(e) = std::fs::remove_file(path) {
        warn!(file = %path.display(), cause = %e, "could not delete the hand-over file");
    }
    let record: Record = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a hand-over record: {e}", path.display()))?;
    if record.schema > SCHEMA {
        return Err(format!(
            "{}: hand-over format {} is newer than this agent's ({SCHEMA}); run the newer binary",
            path.display(),
            record.schema
        ));
    }
    let stdout = claim_pipe(record.main.stdout_fd)?;
    let stderr = claim_pipe(record.main.stderr_fd)?;
    Ok(Inherited {
        record,
        outputs: handlers::Outputs { stdout, stderr },
    })
}

/// Own an inherited descriptor, after checking it is a pipe.
#[allow(unsafe_code)]
fn claim_pipe(fd: RawFd) -> Result<OwnedFd, String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("descriptor {fd} named in the hand-over is not open: {e}"))?;
    if !link.as_os_str().as_bytes().starts_with(b"pipe:") {
        return Err(format!(
            "descriptor {fd} named in the hand-over is not a pipe ({})",
            link.display()
        ));
    }
    // SAFETY: the descriptor is open (checked above) and was inherited across `execve`: no
    // object of this image owns it. `take` runs once, at the start, so it is claimed once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Close-on-exec again, like every other descriptor of the agent.
    set_cloexec(owned.as_fd(), true)
        .map_err(|e| format!("descriptor {fd}: set close-on-exec: {e}"))?;
    Ok(owned)
}

fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> nix::Result<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(|_| ())
}

/// Run the new binary with `args` (bounded by `limit`) before anything is handed over to
/// it: what it wrote to stdout when it succeeded; why not otherwise, naming it.
pub async fn try_new_binary(
    binary: &Path,
    args: &[&str],
    limit: Duration,
) -> Result<String, String> {
    let mut argv = vec![binary.display().to_string()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let spec = handlers::ExecSpec {
        timeout: Some(limit),
        ..handlers::ExecSpec::new(argv)
    };
    let out = handlers::run_capture("new binary", &spec, &[])
        .await
        .map_err(|e| {
            format!(
                "{}: the new binary does not run: {}",
                binary.display(),
                handlers::error_chain(&e)
            )
        })?;
    let what = args.join(" ");
    match out.outcome {
        handlers::RunOutcome::Exited(s) if s.success() => Ok(out.stdout),
        handlers::RunOutcome::Exited(s) => Err(format!(
            "{} {what} failed ({s}){}",
            binary.display(),
            out.failure.map(|f| format!(": {f}")).unwrap_or_default()
        )),
        handlers::RunOutcome::TimedOut => Err(format!(
            "{} {what} did not finish within {limit:?}",
            binary.display()
        )),
    }
}

/// Where the previous binary is copied to when it is the one to re-execute (a rollback).
pub const ROLLBACK_BINARY: &str = "autopilot.rollback";

/// The binary to re-execute for `binary`: itself, unless it is the kept previous binary (a
/// rollback), which the hand-over is about to overwrite with the running one: then a copy
/// of it, made now.
pub fn stage(binary: &Path, state_dir: &Path) -> Result<PathBuf, String> {
    let previous = state_dir.join(PREVIOUS_BINARY);
    let same = match (
        std::fs::canonicalize(binary),
        std::fs::canonicalize(&previous),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return Ok(binary.to_owned());
    }
    let to = state_dir.join(ROLLBACK_BINARY);
    let tmp = state_dir.join(format!("{ROLLBACK_BINARY}.tmp"));
    std::fs::copy(&previous, &tmp)
        .and_then(|_| std::fs::rename(&tmp, &to))
        .map_err(|e| format!("copy {} to {}: {e}", previous.display(), to.display()))?;
    Ok(to)
}

/// Keep a copy of the running binary for a rollback; its path.
pub fn keep_previous_binary(state_dir: &Path) -> Result<PathBuf, String> {
    let to = state_dir.join(PREVIOUS_BINARY);
    let tmp = state_dir.join(format!("{PREVIOUS_BINARY}.tmp"));
    // `/proc/self/exe` still reads the running image when its file was replaced or deleted.
    std::fs::copy("/proc/self/exe", &tmp)
        .and_then(|_| std::fs::rename(&tmp, &to))
        .map_err(|e| format!("keep the running binary as {}: {e}", to.display()))?;
    Ok(to)
}

/// This image's command line without its binary and any `--handover`.
pub fn own_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "--handover" {
            args.next();
        } else if !a.as_bytes().starts_with(b"--handover=") {
            out.push(a.to_string_lossy().into_owned());
        }
    }
    out
}

/// The command line of the next image: `binary`, `args`, `--handover FILE`.
fn next_argv(binary: &Path, args: &[String], file: &Path) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![binary.as_os_str().to_owned()];
    argv.extend(args.iter().map(OsString::from));
    argv.push("--handover".into());
    argv.push(file.as_os_str().to_owned());
    argv
}

/// Write the record and re-execute `binary` in place. Returns only when that failed, with
/// why; the agent then goes on as before (the file is removed, the descriptors are
/// close-on-exec again).
pub fn exec(
    binary: &Path,
    state_dir: &Path,
    record: &Record,
    outputs: (BorrowedFd<'_>, BorrowedFd<'_>),
) -> String {
    let file = state_dir.join(FILE);
    let why = (|| -> Result<(), String> {
        write_private(
            &file,
            &serde_json::to_vec_pretty(record).unwrap_or_default(),
        )?;
        let argv = next_argv(binary, &record.args, &file);
        let cstr = |s: &std::ffi::OsStr| {
            CString::new(s.as_bytes()).map_err(|_| format!("{:?} contains a NUL byte", s))
        };
        let path = cstr(binary.as_os_str())?;
        let argv = argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        for fd in [outputs.0, outputs.1] {
            set_cloexec(fd, false).map_err(|e| format!("keep a descriptor open: {e}"))?;
        }
        info!(binary = %binary.display(), "re-executing the agent in place");
        // Only returns on failure.
        let e = nix::unistd::execv(&path, &argv).err();
        Err(format!(
            "execute {}: {}",
            binary.display(),
            e.map_or_else(|| "unknown error".to_owned(), |e| e.desc().to_owned())
        ))
    })()
    .err()
    .unwrap_or_default();
    for fd in [outputs.0, outputs.1] {
        let _ = set_cloexec(fd, true);
    }
    let _ = std::fs::remove_file(&file);
    why
}

/// The new image could not start: go back to the previous binary with the same hand-over
/// (its descriptors still open). Returns only when that failed too.
pub fn fall_back(inherited: Inherited, state_dir: &Path) -> String {
    if inherited.record.fell_back {
        return "the previous binary could not start either".to_owned();
    }
    let Some(previous) = inherited.record.previous_binary.clone() else {
        return "the hand-over names no previous binary".to_owned();
    };
    warn!(binary = %previous.display(), "going back to the previous binary");
    let Inherited {
        mut record,
        outputs,
    } = inherited;
    record.fell_back = true;
    let why = exec(
        &previous,
        state_dir,
        &record,
        (outputs.stdout.as_fd(), outputs.stderr.as_fd()),
    );
    // The descriptors must outlive the attempt; after a failure nothing is left to do.
    drop(outputs);
    why
}

/// Write `bytes` to `path`, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            schema: SCHEMA,
            from_version: "0.1.0".into(),
            previous_binary: Some("/var/lib/autopilot/autopilot.previous".into()),
            args: vec![
                "run".into(),
                "--config".into(),
                "/etc/autopilot.yaml".into(),
            ],
            fell_back: false,
            main: MainRecord {
                pid: 42,
                stdout_fd: 7,
                stderr_fd: 8,
            },
            lease: Some(LeaseRecord {
                id: 0x1234,
                alive_until_ms: 1,
                role: RecordRole::Primary,
            }),
            written_at_ms: 1,
        }
    }

    #[test]
    fn a_record_round_trips_and_names_the_role_in_words() {
        let r = record();
        let text = serde_json::to_string(&r).expect("encode");
        assert!(text.contains(r#""role":"primary""#), "{text}");
        assert_eq!(serde_json::from_str::<Record>(&text).expect("decode"), r);
    }

    #[test]
    fn a_record_of_a_newer_format_or_garbage_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        let mut r = record();
        r.schema = SCHEMA + 1;
        std::fs::write(&path, serde_json::to_vec(&r).expect("encode")).expect("write");
        let err = take(&path).expect_err("newer");
        assert!(err.contains("newer than this agent's"), "{err}");
        assert!(!path.exists(), "read once");
        std::fs::write(&path, b"{").expect("write");
        let err = take(&path).expect_err("garbage");
        assert!(err.contains("not a hand-over record"), "{err}");
    }

    #[test]
    fn a_descriptor_that_is_no_pipe_is_not_claimed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        let f = std::fs::File::open("/dev/null").expect("open");
        use std::os::fd::AsRawFd;
        let mut r = record();
        r.main.stdout_fd = f.as_raw_fd();
        std::fs::write(&path, serde_json::to_vec(&r).expect("encode")).expect("write");
        let err = take(&path).expect_err("not a pipe");
        assert!(err.contains("is not a pipe"), "{err}");
        drop(f);
    }

    #[test]
    fn an_expired_lease_is_not_inherited() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let inherited = Inherited {
            record: record(),
            outputs: handlers::Outputs {
                stdout: r,
                stderr: w,
            },
        };
        assert!(inherited.lease().is_none(), "alive until 1 ms after 1970");
    }

    #[test]
    fn going_back_to_the_kept_binary_executes_a_copy_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let previous = dir.path().join(PREVIOUS_BINARY);
        std::fs::write(&previous, b"old").expect("write");
        let other = dir.path().join("autopilot-new");
        std::fs::write(&other, b"new").expect("write");
        assert_eq!(stage(&other, dir.path()).expect("stage"), other);
        let staged = stage(&previous, dir.path()).expect("stage");
        assert_eq!(staged, dir.path().join(ROLLBACK_BINARY));
        // The running binary may now be kept as `autopilot.previous`: the copy stays.
        std::fs::write(&previous, b"running").expect("write");
        assert_eq!(std::fs::read(&staged).expect("read"), b"old");
    }

    #[test]
    fn the_next_command_line_carries_one_handover() {
        let argv = next_argv(
            Path::new("/usr/bin/autopilot"),
            &record().args,
            Path::new("/s/handover.json"),
        );
        assert_eq!(
            argv.get(2).map(|a| a.as_os_str()),
            Some("--config".as_ref())
        );
        assert_eq!(
            argv.first().map(|a| a.as_os_str()),
            Some("/usr/bin/autopilot".as_ref())
        );
        let n = argv.iter().filter(|a| *a == "--handover").count();
        assert_eq!(n, 1, "{argv:?}");
        assert_eq!(
            argv.last().map(|a| a.as_os_str()),
            Some("/s/handover.json".as_ref())
        );
    }
}
