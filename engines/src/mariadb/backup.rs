//! The serving side of a clone: `mariadb-backup --backup --stream=xbstream` of the local
//! server, its stdout handed to the caller (the agent's HTTP endpoint streams it to the
//! cloning replica). It must run on this host: it reads the data files.

use std::path::Path;

use handlers::{ExecSpec, ManagedChild, Pipe, Piped, RunAs};

use super::prepare;
use super::settings::{Account, MariadbSettings};
pub use super::tools::BACKUP;
use super::tools::{WorkDir, failed};
use crate::engine::EngineError;

/// A running backup stream. Dropping it kills `mariadb-backup` (if still running) and
/// removes its work directory and options file.
#[derive(Debug)]
pub struct BackupStream {
    /// The xbstream archive, as `mariadb-backup` writes it.
    pub stdout: tokio::net::unix::pipe::Receiver,
    /// The running tool; killed (its group) on drop.
    pub child: ManagedChild,
    /// Removed on drop (after the child is killed).
    _dir: WorkDir,
}

/// The uid/gid helper programs run as: the server's OS user when the agent is root.
pub(super) fn run_as(s: &MariadbSettings) -> Result<Option<RunAs>, EngineError> {
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

/// The options file for a helper program: `a` (the admin account, or the backup
/// account), never on its command line. Values are quoted, so `#`, backslashes, quotes and
/// surrounding spaces survive.
pub(super) fn client_options(a: &Account) -> String {
    let (user, password) = (option_value(&a.user), option_value(&a.password));
    format!(
        "[client]\nuser={user}\npassword={password}\n[mariadb-backup]\nuser={user}\npassword={password}\n"
    )
}

/// `v` as a MariaDB option-file value: in double quotes (so `#` starts no comment and
/// surrounding spaces are kept) with `\`, `"` and line breaks escaped the way the option-file
/// reader (`my_default.c`) unescapes them.
pub(super) fn option_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The command line of `mariadb-backup --backup --stream=xbstream` of the local server:
/// `program`, the options file `cnf` first (the only place the password is), its target
/// and temporary directories in `work`.
pub(super) fn backup_argv(
    s: &MariadbSettings,
    program: &str,
    cnf: &Path,
    work: &Path,
) -> Vec<String> {
    vec![
        program.to_owned(),
        // Must come first; the only place the password is.
        format!("--defaults-extra-file={}", cnf.display()),
        "--backup".to_owned(),
        "--stream=xbstream".to_owned(),
        format!("--target-dir={}", work.join("target").display()),
        format!("--datadir={}", s.datadir.display()),
        format!("--socket={}", s.socket().display()),
        format!("--tmpdir={}", work.display()),
    ]
}

/// The `target` directory [`backup_argv`] names, in the work directory `work`.
pub(super) fn make_target(work: &Path, owner: Option<RunAs>) -> Result<(), EngineError> {
    let target = work.join("target");
    std::fs::create_dir(&target).map_err(|e| {
        failed(
            "create the backup work directory",
            format!("{}: {e}", target.display()),
        )
    })?;
    super::tools::give(&target, owner)
}

/// Start streaming a backup of the running local server (a clone's source: the admin
/// account).
pub fn start(s: &MariadbSettings) -> Result<BackupStream, EngineError> {
    let owner = run_as(s)?;
    let dir = WorkDir::create(
        "create the backup work directory",
        s.run_dir.join("backup-stream"),
        owner,
    )?;
    make_target(dir.path(), owner)?;
    let cnf = dir.path().join("client.cnf");
    write_private(&cnf, &client_options(&s.admin), owner)?;
    let argv = backup_argv(s, BACKUP, &cnf, dir.path());
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
        _dir: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::option_value;

    /// MariaDB's own reader (`my_print_defaults`) gets back exactly the value written.
    #[test]
    fn option_values_survive_the_option_file_reader() {
        let tool = std::path::Path::new("/usr/bin/my_print_defaults");
        assert!(
            tool.exists(),
            "{} is missing: install it with `apt-get install -y mariadb-client` (or run scripts/install-deps)",
            tool.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for pw in [" a#b \\ c\"d ", "plain", "x'y;z", "tab\there", "#"] {
            let cnf = dir.path().join("t.cnf");
            std::fs::write(&cnf, format!("[client]\npassword={}\n", option_value(pw)))
                .expect("write");
            let out = std::process::Command::new(tool)
                .arg(format!("--defaults-file={}", cnf.display()))
                .arg("client")
                .output()
                .expect("run my_print_defaults");
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                text.trim_end_matches('\n'),
                format!("--password={pw}"),
                "{pw:?}"
            );
        }
    }
}
