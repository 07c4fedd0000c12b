//! Replacing a node's data with a physical copy of the primary's: ask the primary's agent
//! for a `mariadb-backup --backup --stream=xbstream` (`GET /v1/clone/stream`, authenticated
//! by [`super::clone_auth`]; over HTTPS when the primary's `agent_url` is `https://`, its
//! certificate verified against the configured CA only, [`MariadbSettings::peer_ca`]), stop the local server, move the old data dir aside (kept, never
//! deleted; but a data dir installed at this agent's start that never held the cluster's
//! data is removed, and a node without data starts its server only after the clone), extract the stream with `mbstream -x` into a new data dir, `mariadb-backup
//! --prepare` it, start the server and set `gtid_slave_pos` to the backup's GTID position;
//! the caller then follows the primary (`MASTER_USE_GTID=slave_pos`).
//!
//! A data dir being filled carries [`INCOMPLETE`]: a failed clone leaves it behind, and the
//! next attempt (or the next agent start, in `prepare`) removes it — it only ever holds a
//! partial copy, never data of this node's own.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handlers::{ExecSpec, ManagedChild, Pipe, Piped, RunAs};
use mysql_async::prelude::Queryable;
use tokio::io::AsyncWriteExt;

use super::backup;
use super::clone_auth;
use super::conn::{self, bounded, quote};
use super::gtid::GtidSet;
use super::prepare;
use super::settings::MariadbSettings;
use super::tools::{self, MBSTREAM};
use crate::control::MainControl;
use crate::engine::{EngineError, StopMode};
use crate::role_ops::Peer;

/// How long the whole transfer may take.
const CLONE_LIMIT: Duration = Duration::from_secs(3600);
/// How long the stream may deliver nothing before the clone gives up.
const STALL_LIMIT: Duration = Duration::from_secs(60);
/// How long the primary's agent may take to answer the request.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// How long the fresh server may take to answer.
const START_LIMIT: Duration = Duration::from_secs(60);
/// The path the primary's agent serves the stream on.
pub const STREAM_PATH: &str = "/v1/clone/stream";
/// Marks a data dir that is being filled by a clone (removed once it is complete).
pub const INCOMPLETE: &str = "autopilot-clone-incomplete";

fn failed(operation: &'static str, reason: String) -> EngineError {
    EngineError::Failed { operation, reason }
}

/// Replace the local data with a copy of `primary`'s; replication is not started yet.
/// `fresh`: the data directory holds only what `mariadb-install-db` wrote at this agent's
/// start, never the cluster's data, and is removed rather than kept aside. On failure after
/// the old data was moved aside (and kept), the partial copy is removed and the server
/// stays down: the node is what a new node is, no data, and retries.
pub async fn clone_data(
    s: &MariadbSettings,
    control: &MainControl,
    primary: &Peer,
    fresh: bool,
) -> Result<(), EngineError> {
    let response = request(s, primary).await?;
    control.stop(StopMode::Fast).await?;
    let aside = match move_aside(&s.datadir, fresh) {
        Ok(a) => a,
        Err(e) => {
            let _ = control.start().await;
            return Err(e);
        }
    };
    if let Some(aside) = &aside {
        tracing::info!(kept = %aside.display(), datadir = %s.datadir.display(), "moved the local data directory aside and kept it; cloning the primary (delete it with `rm -rf {}` once it is not needed)", aside.display());
    }
    match fill(s, response).await {
        Ok(pos) => {
            control.start().await?;
            wait_ready(s).await?;
            // The clone's binary log continues the primary's GTID state, as a restored
            // backup's does: promoted before it applied anything (a failover right after it
            // joined), its peers' positions are still in its binary log state, not errant.
            start_history(s, &pos).await?;
            tracing::info!(gtid = %pos, source = %primary, "cloned the primary");
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&s.datadir);
            tracing::info!(datadir = %s.datadir.display(), "removed the partial copy; the server stays down until a clone succeeds");
            Err(e)
        }
    }
}

/// Where a restore to adopt is made: `<datadir>.autopilot-restore`, beside the data
/// directory (adopting it is a rename).
pub fn staging(datadir: &Path) -> PathBuf {
    let name = datadir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    datadir.with_file_name(format!("{name}.autopilot-restore"))
}

/// Replace the local data with `restored` (a data directory a restore of a physical backup
/// made, prepared, owned by the server's user) and start the server on it. Its binary log
/// continues the backup's GTID state (`RESET MASTER`, then `gtid_binlog_state` and
/// `gtid_slave_pos` set to the backup's position): as a replica the caller follows the
/// primary from there (as after a clone); promoted (the first primary of a cluster, or the
/// winner among nodes that all restored), its new transactions are numbered after the
/// backup's and a replica restored from the same backup can follow it. The replaced data is
/// kept aside (or removed when `fresh`, as a clone does); on failure after that the server
/// stays down and the node is what a new node is.
pub async fn adopt(
    s: &MariadbSettings,
    control: &MainControl,
    restored: &Path,
    fresh: bool,
    as_primary: bool,
) -> Result<GtidSet, EngineError> {
    let op = "start from the restored backup";
    let pos = if restored.join("mariadb_backup_binlog_info").exists()
        || restored.join("xtrabackup_binlog_info").exists()
    {
        backup_position(restored)?
    } else if as_primary {
        // A logical backup: the data holds no position, and a new cluster needs none.
        GtidSet::default()
    } else {
        return Err(failed(
            op,
            format!(
                "{} holds no GTID position (a logical backup?); a replica starts only from a physical backup",
                restored.display()
            ),
        ));
    };
    control.stop(StopMode::Fast).await?;
    let aside = match move_aside(&s.datadir, fresh) {
        Ok(a) => a,
        Err(e) => {
            let _ = control.start().await;
            return Err(e);
        }
    };
    if let Some(aside) = &aside {
        tracing::info!(kept = %aside.display(), datadir = %s.datadir.display(), "moved the local data directory aside and kept it; starting from the restored backup (delete it with `rm -rf {}` once it is not needed)", aside.display());
    }
    // `move_aside` leaves no directory or an empty one; a rename needs it gone.
    if s.datadir.exists() {
        std::fs::remove_dir(&s.datadir)
            .map_err(|e| failed(op, format!("remove {}: {e}", s.datadir.display())))?;
    }
    std::fs::rename(restored, &s.datadir).map_err(|e| {
        failed(
            op,
            format!(
                "move {} to {}: {e}",
                restored.display(),
                s.datadir.display()
            ),
        )
    })?;
    control.start().await?;
    wait_ready(s).await?;
    start_history(s, &pos).await?;
    tracing::info!(gtid = %pos, as_primary, "started from the restored backup");
    Ok(pos)
}

/// A restored server's binary log continues from `pos`: no replication configuration, the
/// binary log emptied and its GTID state (and the replica position) set to `pos`.
pub(super) async fn start_history(s: &MariadbSettings, pos: &GtidSet) -> Result<(), EngineError> {
    let mut c = conn::local(s).await?;
    let op = "continue the restored GTID history";
    let r = async {
        bounded(op, false, c.query_drop("STOP SLAVE")).await?;
        bounded(op, false, c.query_drop("RESET SLAVE ALL")).await?;
        bounded(op, false, c.query_drop("RESET MASTER")).await?;
        if !pos.is_empty() {
            for var in ["gtid_binlog_state", "gtid_slave_pos"] {
                let sql = format!("SET GLOBAL {var} = {}", quote(&pos.to_string()));
                bounded(op, false, c.query_drop(sql)).await?;
            }
        }
        Ok(())
    }
    .await;
    let _ = c.disconnect().await;
    r
}

/// Ask the primary's agent for the stream; nothing local changes until it answers 200.
async fn request(s: &MariadbSettings, primary: &Peer) -> Result<reqwest::Response, EngineError> {
    let op = "request a backup stream from the primary's agent";
    let base = primary.agent.as_deref().ok_or_else(|| {
        failed(
            op,
            format!(
                "the primary ({primary}) publishes no agent_url in its node document; upgrade its agent and give it a telemetry listener (telemetry.listen, telemetry.advertise)"
            ),
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let auth = clone_auth::header(&s.replication.password, &s.cluster, &s.node_id, now)
        .map_err(|e| failed(op, e))?;
    let url = format!("{}{STREAM_PATH}", base.trim_end_matches('/'));
    let client = client(s, &url).map_err(|reason| failed(op, reason))?;
    let sent = client
        .get(&url)
        .header(reqwest::header::AUTHORIZATION, auth)
        .send();
    let response = tokio::time::timeout(CONNECT_LIMIT, sent)
        .await
        .map_err(|_| failed(op, format!("{url} did not answer within {CONNECT_LIMIT:?}")))?
        .map_err(|e| {
            let chain = handlers::error_chain(&e);
            let hint = if url.starts_with("https://") && chain.contains("certificate") {
                " (the primary's listener certificate does not chain to telemetry.tls.ca, or does not name the address in its agent_url: give every agent the CA that signed the listeners' certificates)"
            } else {
                ""
            };
            failed(op, format!("{url}: {chain}{hint}"))
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = tokio::time::timeout(Duration::from_secs(5), response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // One line: the body ends with a newline, and may be several lines.
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text: String = text.chars().take(300).collect();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(EngineError::Busy {
            operation: op,
            reason: format!("{url} answered {status}: {text}"),
        });
    }
    let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
        " (the replication password or the cluster name differ between the nodes, or the clocks differ by more than a minute)"
    } else {
        ""
    };
    Err(failed(op, format!("{url} answered {status}: {text}{hint}")))
}

/// The HTTP client for `url`. An `https://` peer is verified against `telemetry.tls.ca`
/// only (no system roots; verification is never turned off), and without that CA the clone
/// is refused before anything is sent.
fn client(s: &MariadbSettings, url: &str) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder().connect_timeout(CONNECT_LIMIT);
    if url.starts_with("https://") {
        let Some(pem) = &s.peer_ca else {
            return Err(format!(
                "{url} is https but no CA is configured to verify it; set telemetry.tls.ca to the PEM bundle of the CA that signed the agents' listener certificates"
            ));
        };
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("read the CA bundle of telemetry.tls.ca: {e}"))?;
        if certs.is_empty() {
            return Err("telemetry.tls.ca holds no certificate; expected the PEM bundle of the CA that signed the agents' listener certificates".to_owned());
        }
        b = b.tls_certs_only(certs).https_only(true);
    }
    b.build()
        .map_err(|e| format!("build the HTTP client: {}", handlers::error_chain(&e)))
}

/// Move the data dir aside (`<name>.aside-<secs>`); a partial clone, and a `fresh` data dir
/// (installed at this agent's start, never the cluster's), are removed instead, and an
/// empty one is left as it is. `None` when there was nothing to keep.
fn move_aside(datadir: &Path, fresh: bool) -> Result<Option<PathBuf>, EngineError> {
    let partial = datadir.join(INCOMPLETE).exists();
    if partial || fresh {
        if partial {
            tracing::warn!(datadir = %datadir.display(), "removing the partial copy a failed clone left");
        } else {
            tracing::info!(datadir = %datadir.display(), "removing the data directory installed at start-up (it never held the cluster's data); cloning the primary");
        }
        std::fs::remove_dir_all(datadir).map_err(|e| {
            failed(
                "remove a data directory that holds none of the cluster's data",
                format!("{}: {e}", datadir.display()),
            )
        })?;
        return Ok(None);
    }
    if prepare::is_empty_dir(datadir)? {
        return Ok(None);
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = datadir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let aside = datadir.with_file_name(format!("{name}.aside-{secs}"));
    std::fs::rename(datadir, &aside).map_err(|e| {
        failed(
            "move the local data directory aside",
            format!("{} -> {}: {e}", datadir.display(), aside.display()),
        )
    })?;
    Ok(Some(aside))
}

/// Create the new data dir, extract the stream into it and prepare it; the backup's GTID
/// position.
async fn fill(s: &MariadbSettings, response: reqwest::Response) -> Result<GtidSet, EngineError> {
    let owner = backup::run_as(s)?;
    let d = &s.datadir;
    let op = "create the new data directory";
    std::fs::create_dir_all(d).map_err(|e| failed(op, format!("{}: {e}", d.display())))?;
    std::fs::write(d.join(INCOMPLETE), b"")
        .map_err(|e| failed(op, format!("{}: {e}", d.display())))?;
    if let Some(u) = owner {
        nix::unistd::chown(
            d,
            Some(nix::unistd::Uid::from_raw(u.uid)),
            Some(nix::unistd::Gid::from_raw(u.gid)),
        )
        .map_err(|e| failed(op, format!("chown {}: {e}", d.display())))?;
    }
    tokio::time::timeout(CLONE_LIMIT, extract(s, owner, response))
        .await
        .map_err(|_| {
            failed(
                "receive the backup stream",
                format!("the clone did not finish within {CLONE_LIMIT:?}"),
            )
        })??;
    prepare_backup(s, owner).await?;
    let pos = backup_position(d)?;
    std::fs::remove_file(d.join(INCOMPLETE)).map_err(|e| {
        failed(
            "finish the new data directory",
            format!("{}: {e}", d.display()),
        )
    })?;
    Ok(pos)
}

/// Stream the response body into `mbstream -x -C <datadir>`.
async fn extract(
    s: &MariadbSettings,
    owner: Option<RunAs>,
    mut response: reqwest::Response,
) -> Result<(), EngineError> {
    let op = "receive the backup stream";
    let argv = vec![
        MBSTREAM.to_owned(),
        "-x".to_owned(),
        "-C".to_owned(),
        s.datadir.display().to_string(),
    ];
    let spec = ExecSpec {
        env: s.env.clone(),
        user: owner,
        ..ExecSpec::new(argv)
    };
    let (mut child, pipe) =
        ManagedChild::spawn_piped(MBSTREAM, &spec, &[], Piped::Stdin).map_err(|e| {
            failed(
                op,
                format!(
                    "{} (install the mariadb-backup package)",
                    handlers::error_chain(&e)
                ),
            )
        })?;
    let Pipe::Stdin(mut stdin) = pipe else {
        return Err(failed(op, "mbstream's input pipe is missing".into()));
    };
    let mut bytes: u64 = 0;
    loop {
        let chunk = tokio::time::timeout(STALL_LIMIT, response.chunk())
            .await
            .map_err(|_| {
                failed(
                    op,
                    format!(
                        "the primary's agent sent nothing for {STALL_LIMIT:?} after {bytes} bytes"
                    ),
                )
            })?
            .map_err(|e| {
                failed(
                    op,
                    format!(
                        "the stream broke after {bytes} bytes ({}); the primary's mariadb-backup or agent stopped — see its log",
                        handlers::error_chain(&e)
                    ),
                )
            })?;
        let Some(chunk) = chunk else { break };
        bytes += chunk.len() as u64;
        stdin.write_all(&chunk).await.map_err(|e| {
            failed(
                op,
                format!("mbstream stopped reading ({e}); see its output above"),
            )
        })?;
    }
    drop(stdin);
    match tokio::time::timeout(STALL_LIMIT, child.wait()).await {
        Ok(st) if st.success() => {
            tracing::info!(bytes, "received the backup stream");
            Ok(())
        }
        Ok(st) => Err(failed(
            op,
            format!("mbstream exited with {st} after {bytes} bytes; see its output above"),
        )),
        Err(_) => Err(failed(
            op,
            format!("mbstream did not exit within {STALL_LIMIT:?} after its input ended"),
        )),
    }
}

/// `mariadb-backup --prepare`: apply the redo log copied with the data files.
async fn prepare_backup(s: &MariadbSettings, owner: Option<RunAs>) -> Result<(), EngineError> {
    tools::prepare_dir(&s.env, owner, &s.datadir, None, CLONE_LIMIT).await
}

/// The GTID position the backup is consistent with: the third column of
/// `mariadb_backup_binlog_info` (MariaDB 10.11), or of `xtrabackup_binlog_info` (older).
pub(super) fn backup_position(datadir: &Path) -> Result<GtidSet, EngineError> {
    let op = "read the backup's GTID position";
    for name in ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"] {
        let path = datadir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(op, format!("{}: {e}", path.display()))),
        };
        // `<binlog file> <offset> [<gtid position>]`; no GTID when the primary never wrote one.
        let mut columns = text.split_whitespace();
        if columns.next().zip(columns.next()).is_none() {
            return Err(failed(
                op,
                format!(
                    "{}: {text:?} is not `<file> <offset> <gtid>`",
                    path.display()
                ),
            ));
        }
        let gtid = columns.next().unwrap_or("");
        return GtidSet::parse(gtid)
            .map_err(|e| failed(op, format!("{}: {gtid:?}: {e}", path.display())));
    }
    Err(failed(
        op,
        format!(
            "{} has neither mariadb_backup_binlog_info nor xtrabackup_binlog_info; is binary logging on at the primary?",
            datadir.display()
        ),
    ))
}

/// Records `pos` as the position the data directory is consistent at (after a
/// point-in-time replay moved it past the backup's): the third column of its position file.
pub(super) fn record_position(datadir: &Path, pos: &GtidSet) -> Result<(), EngineError> {
    let op = "record the replayed GTID position";
    for name in ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"] {
        let path = datadir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(op, format!("{}: {e}", path.display()))),
        };
        let mut columns = text.split_whitespace();
        let (file, offset) = (columns.next().unwrap_or(""), columns.next().unwrap_or("0"));
        return std::fs::write(&path, format!("{file}\t{offset}\t{pos}\n"))
            .map_err(|e| failed(op, format!("{}: {e}", path.display())));
    }
    Err(failed(
        op,
        format!("{} has no position file", datadir.display()),
    ))
}

async fn wait_ready(s: &MariadbSettings) -> Result<(), EngineError> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        match conn::local(s).await {
            Ok(c) => {
                let _ = c.disconnect().await;
                return Ok(());
            }
            Err(EngineError::NotRunning) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_position_is_the_third_column() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(backup_position(dir.path()).is_err());
        let f = dir.path().join("xtrabackup_binlog_info");
        std::fs::write(&f, "bin.000003\t385\t0-7-12\n").expect("write");
        assert_eq!(
            backup_position(dir.path()).expect("found").to_string(),
            "0-7-12"
        );
        std::fs::write(
            dir.path().join("mariadb_backup_binlog_info"),
            "bin.000004 9 0-7-13,1-2-3\n",
        )
        .expect("write");
        assert_eq!(
            backup_position(dir.path()).expect("found").to_string(),
            "0-7-13,1-2-3"
        );
        std::fs::write(&f, "bin.000001 4\n").expect("write");
        std::fs::remove_file(dir.path().join("mariadb_backup_binlog_info")).expect("rm");
        assert!(backup_position(dir.path()).expect("no GTID yet").is_empty());
        std::fs::write(&f, "garbage").expect("write");
        assert!(backup_position(dir.path()).is_err());
    }

    /// An `https://` primary without `telemetry.tls.ca` is refused before anything is sent,
    /// with a message naming the setting; a bundle without a certificate likewise.
    #[tokio::test]
    async fn an_https_peer_needs_the_configured_ca() {
        let mut s = super::super::settings::tests::settings();
        let primary = Peer {
            host: "127.0.0.1".into(),
            port: 3306,
            // Nothing listens on port 1: an attempt to connect would fail differently.
            agent: Some("https://127.0.0.1:1".into()),
            standby: false,
        };
        let err = request(&s, &primary).await.expect_err("no CA").to_string();
        assert!(
            err.contains("https but no CA is configured") && err.contains("telemetry.tls.ca"),
            "{err}"
        );
        s.peer_ca = Some(b"not a pem bundle".to_vec());
        let err = request(&s, &primary)
            .await
            .expect_err("empty CA")
            .to_string();
        assert!(
            err.contains("telemetry.tls.ca holds no certificate"),
            "{err}"
        );
        assert!(!err.contains("marker-secret"), "{err}");
    }

    #[test]
    fn a_partial_clone_is_removed_and_real_data_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        assert_eq!(move_aside(&data, false).expect("nothing"), None);
        std::fs::create_dir_all(&data).expect("mkdir");
        assert_eq!(move_aside(&data, false).expect("empty"), None);
        assert!(data.is_dir(), "an empty data dir stays where it is");
        std::fs::create_dir_all(data.join("mysql")).expect("mkdir");
        let aside = move_aside(&data, false).expect("moved").expect("kept");
        assert!(aside.join("mysql").is_dir());
        assert!(!data.exists());
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(data.join(INCOMPLETE), b"").expect("marker");
        assert_eq!(move_aside(&data, false).expect("removed"), None);
        assert!(!data.exists());
        assert!(aside.join("mysql").is_dir());
        // Installed at start-up and never the cluster's: removed, nothing kept aside.
        std::fs::create_dir_all(data.join("mysql")).expect("mkdir");
        assert_eq!(move_aside(&data, true).expect("fresh"), None);
        assert!(!data.exists());
        let kept = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(kept, 1, "only the real data moved aside above");
    }
}
