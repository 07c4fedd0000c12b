//! The serving side of a clone: `mariadb-backup --backup --stream=xbstream` of the local
//! server, its stdout handed to the caller (the agent's HTTP endpoint streams it to the
//! cloning replica). It must run on this host: it reads the data files.

use std::path::{Path, PathBuf};

use handlers::{ExecSpec, ManagedChild, Pipe, Piped, RunAs};

use super::prepare;
use super::settings::MysqlSettings;
use crate::engine::EngineError;

/// MariaDB's physical backup tool (package `mariadb-backup`).
pub const BACKUP: &str = "mariadb-backup";

fn failed(operation: &'static str, reason: String) -> EngineError {
    EngineError::Failed { operation, reason }
}

/// A running backup stream. Dropping it kills `mariadb-backup` (if still running) and
/// removes its work directory and options file.
#[derive(Debug)]
pub struct BackupStream {
    /// The xbstream archive, as `mariadb-backup` writes it.
    pub stdout: tokio::net::unix::pipe::Receiver,
    /// The running tool; killed (its group) on drop.
    pub child: ManagedChild,
    /// Removed on drop (after the child is killed).
    _dir: BackupDir,
}

/// The uid/gid helper programs run as: the server's OS user when the agent is root.
pub(super) fn run_as(s: &MysqlSettings) -> Result<Option<RunAs>, EngineError> {
    Ok(prepare::os_user(s)?.map(|(uid, gid)| RunAs {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
    }))
}

/// Write `text` to a new file only its owner (the run-as user, when set) can read.
pub(super) fn write_private(
    path: &Path,
    text: &str,
    owner: Option<RunAs>,
) -> Result<(), EngineError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let op = "write the client options file";
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| failed(op, format!("{}: {e}", path.display())))?;
    if let Some(u) = owner {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(u.uid)),
            Some(nix::unistd::Gid::from_raw(u.gid)),
        )
        .map_err(|e| failed(op, format!("chown {}: {e}", path.display())))?;
    }
    Ok(())
}

/// The options file for a helper program: the admin account, never on its command line.
pub(super) fn client_options(s: &MysqlSettings) -> String {
    let a = &s.admin;
    format!(
        "[client]\nuser={}\npassword={}\n[mariadb-backup]\nuser={}\npassword={}\n",
        a.user, a.password, a.user, a.password
    )
}

/// Start streaming a backup of the running local server.
pub fn start(s: &MysqlSettings) -> Result<BackupStream, EngineError> {
    let owner = run_as(s)?;
    let dir = s.run_dir.join("backup-stream");
    let _ = std::fs::remove_dir_all(&dir);
    let created = std::fs::create_dir_all(dir.join("target"));
    let guard = BackupDir(dir.clone());
    created.map_err(|e| {
        failed(
            "create the backup work directory",
            format!("{}: {e}", dir.display()),
        )
    })?;
    if let Some(u) = owner {
        for d in [dir.clone(), dir.join("target")] {
            nix::unistd::chown(
                &d,
                Some(nix::unistd::Uid::from_raw(u.uid)),
                Some(nix::unistd::Gid::from_raw(u.gid)),
            )
            .map_err(|e| {
                failed(
                    "create the backup work directory",
                    format!("chown {}: {e}", d.display()),
                )
            })?;
        }
    }
    let cnf = dir.join("client.cnf");
    write_private(&cnf, &client_options(s), owner)?;
    let argv = vec![
        BACKUP.to_owned(),
        // Must come first; the only place the password is.
        format!("--defaults-extra-file={}", cnf.display()),
        "--backup".to_owned(),
        "--stream=xbstream".to_owned(),
        format!("--target-dir={}", dir.join("target").display()),
        format!("--datadir={}", s.datadir.display()),
        format!("--socket={}", s.socket().display()),
        format!("--tmpdir={}", dir.display()),
    ];
    let spec = ExecSpec {
        env: s.env.clone(),
        user: owner,
        ..ExecSpec::new(argv)
    };
    let (child, pipe) =
        ManagedChild::spawn_piped(BACKUP, &spec, &[], Piped::Stdout).map_err(|e| {
            failed(
                "start mariadb-backup",
                format!(
                    "{} (install the mariadb-backup package)",
                    handlers::error_chain(&e)
                ),
            )
        })?;
    let Pipe::Stdout(stdout) = pipe else {
        return Err(failed(
            "start mariadb-backup",
            "its output pipe is missing".into(),
        ));
    };
    Ok(BackupStream {
        stdout,
        child,
        _dir: guard,
    })
}

/// Removes the backup work directory when dropped.
#[derive(Debug)]
struct BackupDir(PathBuf);

impl Drop for BackupDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
