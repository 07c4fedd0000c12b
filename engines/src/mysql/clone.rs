//! Replacing a node's data with a copy of the primary's, over the network: stop the server,
//! move the old data dir aside (kept for inspection), initialise an empty one, start, load a
//! consistent logical dump of the primary (`mariadb-dump --single-transaction --gtid`, binary
//! logging off so no GTID is spent locally), set `gtid_slave_pos` to the dump's position,
//! and follow. A logical dump works from any host; `mariadb-backup` would have to run on the
//! primary's host.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use handlers::ExecSpec;
use handlers::exec::{RunOutcome, run};
use mysql_async::prelude::Queryable;

use super::conn::{self, bounded, quote};
use super::prepare;
use super::settings::MysqlSettings;
use crate::control::MainControl;
use crate::engine::{EngineError, StopMode};
use crate::gtid::GtidSet;
use crate::role_ops::Peer;

/// How long the dump and the load may take together.
const DUMP_LIMIT: Duration = Duration::from_secs(3600);
/// How long the fresh server may take to answer.
const START_LIMIT: Duration = Duration::from_secs(60);

fn failed(operation: &'static str, reason: String) -> EngineError {
    EngineError::Failed { operation, reason }
}

/// Replace the local data with a copy of `primary`'s; replication is not started yet.
pub async fn clone_data(
    s: &MysqlSettings,
    control: &MainControl,
    primary: &Peer,
) -> Result<(), EngineError> {
    control.stop(StopMode::Fast).await?;
    let aside = move_aside(&s.datadir)?;
    tracing::warn!(kept = %aside.display(), "moved the diverged data directory aside; cloning the primary");
    prepare::prepare(s).await?;
    control.start().await?;
    wait_ready(s).await?;
    let dump = s.run_dir.join("clone.sql");
    let cnf = s.run_dir.join("clone.cnf");
    write_private(
        &cnf,
        &format!(
            "[client]\nuser={}\npassword={}\n",
            s.admin.user, s.admin.password
        ),
    )?;
    let result = dump_and_load(s, primary, &cnf, &dump).await;
    let _ = std::fs::remove_file(&cnf);
    let _ = std::fs::remove_file(&dump);
    let pos = result?;
    let mut c = conn::local(s).await?;
    let op = "set the cloned position";
    bounded(op, false, c.query_drop("STOP SLAVE")).await?;
    let sql = format!("SET GLOBAL gtid_slave_pos = {}", quote(&pos.to_string()));
    bounded(op, false, c.query_drop(sql)).await?;
    let _ = c.disconnect().await;
    tracing::info!(position = %pos, "cloned the primary");
    Ok(())
}

fn move_aside(datadir: &Path) -> Result<PathBuf, EngineError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = datadir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let aside = datadir.with_file_name(format!("{name}.diverged-{secs}"));
    std::fs::rename(datadir, &aside).map_err(|e| {
        failed(
            "move the diverged data directory aside",
            format!("{} -> {}: {e}", datadir.display(), aside.display()),
        )
    })?;
    Ok(aside)
}

fn write_private(path: &Path, text: &str) -> Result<(), EngineError> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            failed(
                "write the client options file",
                format!("{}: {e}", path.display()),
            )
        })
}

async fn wait_ready(s: &MysqlSettings) -> Result<(), EngineError> {
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

/// Dump the primary into `dump`, load it locally without binary logging; the dump's GTID
/// position.
async fn dump_and_load(
    s: &MysqlSettings,
    primary: &Peer,
    cnf: &Path,
    dump: &Path,
) -> Result<GtidSet, EngineError> {
    let extra = format!("--defaults-extra-file={}", cnf.display());
    let dump_cmd = vec![
        "mariadb-dump".to_owned(),
        extra.clone(),
        format!("--host={}", primary.host),
        format!("--port={}", primary.port),
        "--protocol=TCP".to_owned(),
        "--all-databases".to_owned(),
        "--single-transaction".to_owned(),
        "--master-data=2".to_owned(),
        "--gtid".to_owned(),
        "--routines".to_owned(),
        "--events".to_owned(),
        "--triggers".to_owned(),
        "--flush-privileges".to_owned(),
        "--ignore-table=mysql.gtid_slave_pos".to_owned(),
        format!("--result-file={}", dump.display()),
    ];
    run_step("dump the primary", "mariadb-dump", dump_cmd, s).await?;
    let pos = dump_position(dump)?;
    let load = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "exec mariadb \"$1\" --protocol=SOCKET --socket=\"$2\" --init-command='SET SESSION sql_log_bin=0' < \"$3\"".to_owned(),
        "sh".to_owned(),
        extra,
        s.socket().display().to_string(),
        dump.display().to_string(),
    ];
    run_step("load the dump", "mariadb", load, s).await?;
    Ok(pos)
}

async fn run_step(
    operation: &'static str,
    name: &str,
    argv: Vec<String>,
    s: &MysqlSettings,
) -> Result<(), EngineError> {
    let spec = ExecSpec {
        env: s.env.clone(),
        timeout: Some(DUMP_LIMIT),
        ..ExecSpec::new(argv)
    };
    match run(name, &spec, &[]).await {
        Ok(RunOutcome::Exited(st)) if st.success() => Ok(()),
        Ok(RunOutcome::Exited(st)) => Err(failed(
            operation,
            format!("{name} exited with {st:?}; see its output above"),
        )),
        Ok(RunOutcome::TimedOut) => Err(failed(
            operation,
            format!("{name} did not finish within {DUMP_LIMIT:?}"),
        )),
        Err(e) => Err(failed(operation, handlers::error_chain(&e))),
    }
}

/// The `-- SET GLOBAL gtid_slave_pos='…';` comment `--master-data=2 --gtid` writes (at the
/// end of the dump, after the data). The last such line counts.
fn dump_position(dump: &Path) -> Result<GtidSet, EngineError> {
    use std::io::BufRead as _;
    let op = "read the dump's GTID position";
    let f =
        std::fs::File::open(dump).map_err(|e| failed(op, format!("{}: {e}", dump.display())))?;
    let mut found = None;
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line.map_err(|e| failed(op, e.to_string()))?;
        if !line.starts_with(b"-- SET GLOBAL gtid_slave_pos='") {
            continue;
        }
        let line = String::from_utf8_lossy(&line);
        if let Some(pos) = line.split('\'').nth(1) {
            found = Some(GtidSet::parse(pos).map_err(|e| failed(op, format!("{pos:?}: {e}")))?);
        }
    }
    found.ok_or_else(|| {
        failed(
            op,
            "the dump has no gtid_slave_pos line (mariadb-dump --gtid --master-data=2)".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dump_position_comes_from_the_gtid_comment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("d.sql");
        std::fs::write(
            &f,
            "-- MariaDB dump\n-- CHANGE MASTER TO MASTER_LOG_FILE='b.000001', MASTER_LOG_POS=42;\nCREATE TABLE t (x INT);\n-- Preferably use GTID to start replication from GTID position:\n\n-- SET GLOBAL gtid_slave_pos='0-7-12';\n",
        )
        .expect("write");
        assert_eq!(dump_position(&f).expect("found").to_string(), "0-7-12");
        std::fs::write(&f, "CREATE TABLE t (x INT);\n").expect("write");
        assert!(dump_position(&f).is_err());
    }
}
