//! pgBackRest (Debian's 2.45) beside our pipeline on the same PostgreSQL server: a local
//! repository with the same compression (zstd level 3), as many processes as our zstd
//! workers, and encryption on (`aes-256-cbc`).
//!
//! WAL archiving is not set up (our pipeline needs none: `pg_basebackup -X fetch` puts the
//! WAL into the tar). pgBackRest then needs `archive-check=n` (do not wait for the backup's
//! WAL in the archive) and `archive-mode-check=n` (do not require `archive_mode=on`); its
//! backup holds the data files only, so a restore of it is startable only with the WAL
//! archive that a real setup has. Both commands run as `postgres` and reach the server
//! through its Unix socket (peer authentication).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use super::Measured;
use super::servers::pg_socket_dir;

/// The stanza name.
const STANZA: &str = "bench";

/// A pgBackRest configuration and repository in a directory of its own.
pub struct PgBackRest {
    /// `pgbackrest.conf`.
    config: PathBuf,
    /// Logs of the commands.
    log: PathBuf,
}

impl PgBackRest {
    /// Writes the configuration under `dir` for the server with data in `data_dir` on
    /// `port`, and creates the stanza.
    pub fn setup(
        rt: &tokio::runtime::Runtime,
        dir: &Path,
        data_dir: &Path,
        port: u16,
        processes: u32,
    ) -> Result<PgBackRest> {
        let home = dir.join("pgbackrest");
        for d in ["", "repo", "lock", "log"] {
            let p = home.join(d);
            std::fs::create_dir_all(&p)?;
            super::give_to(&p, &super::postgres_user())?;
        }
        let config = home.join("pgbackrest.conf");
        let cipher = format!("bench-{:016x}", rand_u64());
        std::fs::write(
            &config,
            format!(
                "[global]\n\
                 repo1-path={repo}\n\
                 repo1-cipher-type=aes-256-cbc\n\
                 repo1-cipher-pass={cipher}\n\
                 repo1-retention-full=1\n\
                 compress-type=zst\n\
                 compress-level=3\n\
                 process-max={processes}\n\
                 start-fast=y\n\
                 archive-check=n\n\
                 archive-mode-check=n\n\
                 lock-path={lock}\n\
                 log-path={log}\n\
                 log-level-console=warn\n\
                 log-level-stderr=warn\n\
                 log-level-file=off\n\
                 \n[{STANZA}]\n\
                 pg1-path={data}\n\
                 pg1-port={port}\n\
                 pg1-socket-path={socket}\n\
                 pg1-user=postgres\n",
                repo = home.join("repo").display(),
                lock = home.join("lock").display(),
                log = home.join("log").display(),
                data = data_dir.display(),
                socket = pg_socket_dir(dir).display(),
            ),
        )?;
        super::give_to(&config, &super::postgres_user())?;
        let me = PgBackRest {
            config,
            log: home.join("commands.log"),
        };
        rt.block_on(me.command(&["stanza-create"]))
            .context("pgbackrest stanza-create")?;
        Ok(me)
    }

    /// `pgbackrest <args>` as postgres, timed, its process tree's RSS sampled.
    async fn command(&self, args: &[&str]) -> Result<Measured> {
        let mut argv = vec![
            "pgbackrest".to_owned(),
            format!("--config={}", self.config.display()),
            format!("--stanza={STANZA}"),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        super::measure(
            "pgbackrest",
            argv,
            &self.log,
            &self.log,
            Some(super::postgres_user()),
            &[],
        )
        .await
    }

    /// A full backup.
    pub async fn backup(&self) -> Result<Measured> {
        self.command(&["--type=full", "backup"]).await
    }

    /// Restores the newest backup into `target` (created here, empty).
    pub async fn restore(&self, target: &Path) -> Result<Measured> {
        std::fs::create_dir_all(target)?;
        std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        super::give_to(target, &super::postgres_user())?;
        let pg1 = format!("--pg1-path={}", target.display());
        self.command(&[&pg1, "restore"]).await
    }

    /// `(database size, repository size)` of the newest backup, as `pgbackrest info` reports.
    pub async fn sizes(&self) -> Result<(u64, u64)> {
        let spec = handlers::ExecSpec {
            user: Some(super::postgres_user()),
            ..handlers::ExecSpec::new([
                "pgbackrest".to_owned(),
                format!("--config={}", self.config.display()),
                format!("--stanza={STANZA}"),
                "--output=json".to_owned(),
                "info".to_owned(),
            ])
        };
        let out = handlers::exec::run_capture("pgbackrest", &spec, &[]).await?;
        let v: Value = serde_json::from_str(&out.stdout).context("parse pgbackrest info")?;
        let last = v
            .get(0)
            .and_then(|s| s.get("backup"))
            .and_then(Value::as_array)
            .and_then(|b| b.last())
            .context("pgbackrest info lists no backup")?;
        let info = last.get("info").context("info")?;
        let size = info.get("size").and_then(Value::as_u64).context("size")?;
        let stored = info
            .get("repository")
            .and_then(|r| r.get("size"))
            .and_then(Value::as_u64)
            .context("repository size")?;
        Ok((size, stored))
    }
}

/// A number that differs between runs (the cipher passphrase; not a secret worth more).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
