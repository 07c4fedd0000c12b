//! Before the first start: check the port, the programs and the data directory's owner,
//! and initialise an empty data directory with `mariadb-install-db`.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use handlers::ExecSpec;
use handlers::exec::{Captured, RunOutcome, run_capture};
use nix::unistd::{Uid, User, chown};

use super::settings::MariadbSettings;
use crate::engine::{EngineError, MainStart};

/// Debian's data directory initialiser (package `mariadb-server`).
pub const INSTALL_DB: &str = "mariadb-install-db";
/// How long `mariadb-install-db` may take (~3 s here).
const INSTALL_LIMIT: Duration = Duration::from_secs(120);

fn failed(operation: &'static str, reason: String) -> EngineError {
    EngineError::Failed { operation, reason }
}

/// Run every check and, with `create`, initialise the data directory if it is empty:
/// [`MainStart::Now`]. Without `create` an empty data directory is left as it is (a clone
/// fills it): [`MainStart::AfterClone`].
pub async fn prepare(s: &MariadbSettings, create: bool) -> Result<MainStart, EngineError> {
    check_port(s)?;
    let owner = os_user(s)?;
    for dir in [s.run_dir.clone(), s.tmpdir()] {
        std::fs::create_dir_all(&dir).map_err(|e| {
            failed(
                "create the run directory",
                format!("{}: {e}", dir.display()),
            )
        })?;
        give(&dir, owner)?;
    }
    let partial = s.datadir.join(super::clone::INCOMPLETE);
    if partial.exists() {
        // Only a clone creates this marker, in a data dir it filled itself: a partial copy.
        tracing::warn!(datadir = %s.datadir.display(), "removing the partial copy a failed clone left; the node starts empty and clones again");
        std::fs::remove_dir_all(&s.datadir).map_err(|e| {
            failed(
                "remove a failed clone's partial copy",
                format!("{}: {e}", s.datadir.display()),
            )
        })?;
    }
    if !is_empty_dir(&s.datadir)? {
        check_datadir(s, owner)?;
        return Ok(MainStart::Now);
    }
    if !create {
        tracing::info!(datadir = %s.datadir.display(), "no data in the data directory: the server starts once a copy of the cluster's data (a clone of the primary, or a restored backup) is in place");
        return Ok(MainStart::AfterClone);
    }
    std::fs::create_dir_all(&s.datadir).map_err(|e| {
        failed(
            "create the data directory",
            format!("{}: {e}", s.datadir.display()),
        )
    })?;
    give(&s.datadir, owner)?;
    install(s).await?;
    Ok(MainStart::Now)
}

/// The port must be free: a server that cannot bind exits, and an agent that restarted it
/// in a loop would hide the cause.
fn check_port(s: &MariadbSettings) -> Result<(), EngineError> {
    match TcpListener::bind((s.bind_address.as_str(), s.port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(failed(
            "check the database port",
            format!(
                "{}:{} is not free ({e}); stop the program that listens there or set engine.port",
                s.bind_address, s.port
            ),
        )),
    }
}

/// The uid/gid the server runs as (the `--user` account, else the agent's own).
pub(super) fn os_user(s: &MariadbSettings) -> Result<Option<(Uid, nix::unistd::Gid)>, EngineError> {
    let Some(name) = &s.os_user else {
        return Ok(None);
    };
    match User::from_name(name) {
        Ok(Some(u)) => Ok(Some((u.uid, u.gid))),
        Ok(None) => Err(failed(
            "look up the server's OS user",
            format!(
                "there is no user {name:?}; create it (Debian's mariadb-server does) or set engine.os_user"
            ),
        )),
        Err(e) => Err(failed(
            "look up the server's OS user",
            format!("{name}: {e}"),
        )),
    }
}

fn give(dir: &Path, owner: Option<(Uid, nix::unistd::Gid)>) -> Result<(), EngineError> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    chown(dir, Some(uid), Some(gid)).map_err(|e| {
        failed(
            "hand the directory to the server's OS user",
            format!("chown {}: {e}", dir.display()),
        )
    })
}

pub(super) fn is_empty_dir(dir: &Path) -> Result<bool, EngineError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(failed(
            "read the data directory",
            format!("{}: {e}", dir.display()),
        )),
    }
}

/// An existing data directory must be a MariaDB one, owned by the server's user: the agent
/// never changes the owner of data it did not create.
fn check_datadir(
    s: &MariadbSettings,
    owner: Option<(Uid, nix::unistd::Gid)>,
) -> Result<(), EngineError> {
    let d = s.datadir.display();
    if !s.datadir.join("mysql").is_dir() {
        return Err(failed(
            "check the data directory",
            format!(
                "{d} is not empty but holds no MariaDB data (no mysql/ directory); point engine.datadir at a MariaDB data directory or an empty one"
            ),
        ));
    }
    if let Some((uid, _)) = owner {
        let meta = std::fs::metadata(&s.datadir)
            .map_err(|e| failed("check the data directory", format!("{d}: {e}")))?;
        if meta.uid() != uid.as_raw() {
            let user = s.os_user.as_deref().unwrap_or("mysql");
            return Err(failed(
                "check the data directory",
                format!(
                    "{d} is owned by uid {}, not by {user} (uid {uid}); the server could not use it: run chown -R {user}: {d}",
                    meta.uid()
                ),
            ));
        }
    }
    Ok(())
}

/// A line of `mariadb-install-db`'s or `mariadb-backup`'s output that says what failed (`FATAL ERROR: …`,
/// `Installation of system tables failed!`, …).
pub(super) fn reads_like_failure(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    ["error", "failed", "fatal", "cannot", "could not"]
        .iter()
        .any(|w| l.contains(w))
}

/// `mariadb-install-db` into the empty data directory.
async fn install(s: &MariadbSettings) -> Result<(), EngineError> {
    let mut argv = vec![
        INSTALL_DB.to_owned(),
        "--no-defaults".to_owned(),
        format!("--datadir={}", s.datadir.display()),
        format!("--tmpdir={}", s.tmpdir().display()),
        "--auth-root-authentication-method=normal".to_owned(),
        "--skip-test-db".to_owned(),
        // No accounts for this host's name: the server runs with --skip-name-resolve (it
        // would warn at every start that it ignores them) and replicas clone this data to
        // other hosts. It also skips the host name lookup, which fails in many containers,
        // and the banner ("PLEASE REMEMBER TO SET A PASSWORD", …): the engine sets them.
        "--cross-bootstrap".to_owned(),
    ];
    if let Some(user) = &s.os_user {
        argv.push(format!("--user={user}"));
    }
    let spec = ExecSpec {
        env: s.env.clone(),
        timeout: Some(INSTALL_LIMIT),
        ..ExecSpec::new(argv)
    };
    let op = "initialise the data directory";
    // Its stdout is a banner on success (where the service file goes, "PLEASE REMEMBER TO
    // SET A PASSWORD", links): logged at debug. On failure it says there what went wrong,
    // so it is logged as an error. Its stderr (the server's bootstrap log) is logged by
    // `run_capture` at the level each line names.
    match run_capture(INSTALL_DB, &spec, &[]).await {
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            stdout,
            ..
        }) if st.success() => {
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                tracing::debug!(process = INSTALL_DB, stream = "stdout", "{line}");
            }
            // The first login creates the accounts (see `conn::local`).
            let pending = s.datadir.join(super::conn::ACCOUNTS_PENDING);
            std::fs::write(&pending, b"")
                .map_err(|e| failed(op, format!("write {}: {e}", pending.display())))?;
            tracing::info!(datadir = %s.datadir.display(), "initialised the data directory");
            Ok(())
        }
        Ok(Captured {
            outcome: RunOutcome::Exited(st),
            stdout,
            failure,
        }) => {
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                tracing::error!(process = INSTALL_DB, stream = "stdout", "{line}");
            }
            let why = stdout
                .lines()
                .rev()
                .find(|l| reads_like_failure(l))
                .map(|l| l.trim().to_owned())
                .or(failure);
            Err(failed(
                op,
                match why {
                    Some(line) => format!("{INSTALL_DB} exited with {st}: {line}"),
                    None => format!("{INSTALL_DB} exited with {st}; see its output above"),
                },
            ))
        }
        Ok(Captured {
            outcome: RunOutcome::TimedOut,
            ..
        }) => Err(failed(
            op,
            format!("{INSTALL_DB} did not finish within {INSTALL_LIMIT:?}"),
        )),
        Err(e) => Err(failed(
            op,
            format!(
                "{} (install the mariadb-server package)",
                handlers::error_chain(&e)
            ),
        )),
    }
}
