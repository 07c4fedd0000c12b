//! The MariaDB engine: runs `mariadbd` with the settings replication safety needs,
//! initialises its data directory, creates its accounts, and changes roles with GTID
//! replication (MariaDB 10.11; see `docs/engines/mariadb.md` for what is tested).
//!
//! Position mapping: with `gtid_strict_mode` and one domain, the domain's sequence number
//! only grows across failovers, so [`Position`] is `{epoch: 0, offset: seq}`. Divergence
//! (errant transactions) is judged in [`Engine::follow`] on full GTID sets and by the
//! primary's own refusal, never on the projection.

mod backup;
pub mod binlog;
mod clone;
pub mod clone_auth;
mod conn;
pub mod dump;
pub mod gtid;
mod migrate;
mod prepare;
mod probe;
mod replication;
mod restore;
mod scratch;
mod settings;
mod tools;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use handlers::ExecSpec;
use nix::sys::signal::Signal;

pub use backup::{BackupStream, start as start_backup};
pub use clone::STREAM_PATH as CLONE_STREAM_PATH;
pub use conn::BACKUP_PRIVILEGES;
pub use settings::{Account, Durability, Flavour, MariadbSettings, server_id_for};

use crate::backups::{BackupSpec, CheckReport, Restore, RestoreSpec, StreamPlan, ToolStream};
use crate::control::MainControl;
use crate::engine::{Engine, EngineError, MainStart, Probe, StopMode};
use crate::role_ops::{Member, Peer, Position, RemoteFence};

/// How long catching up may wait for the relay log to be applied.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// Runs and drives one MariaDB server.
#[derive(Debug)]
pub struct MariadbEngine {
    /// What the agent configured.
    settings: MariadbSettings,
    /// The server command line, built once from `settings`.
    command: ExecSpec,
    /// Stops and restarts the server (the agent's main process) for a clone.
    control: MainControl,
    /// The other members, as last given to `set_replicas` (primary only): names the
    /// replicas a probe sees.
    members: std::sync::Mutex<Vec<Member>>,
    /// The data directory holds what `prepare` installed in this run and nothing made it
    /// the cluster's yet (no bootstrap, promotion or unfence): a clone removes it instead
    /// of keeping it aside. Only in memory: after an agent restart the data counts as real
    /// and is kept.
    fresh: AtomicBool,
}

impl MariadbEngine {
    /// An engine for these settings; `control` stops and starts the server for a clone.
    pub fn new(settings: MariadbSettings, control: MainControl) -> Self {
        let command = ExecSpec {
            env: settings.env.clone(),
            timeout: None,
            kill_grace: settings.stop_timeout,
            ..ExecSpec::new(settings.server_argv())
        };
        Self {
            settings,
            command,
            control,
            members: std::sync::Mutex::new(Vec::new()),
            fresh: AtomicBool::new(false),
        }
    }

    /// What the engine was configured with.
    pub fn settings(&self) -> &MariadbSettings {
        &self.settings
    }
}

impl Engine for MariadbEngine {
    fn kind(&self) -> &'static str {
        "mariadb"
    }

    fn main_command(&self) -> &ExecSpec {
        &self.command
    }

    /// `mariadbd` shuts down cleanly on SIGTERM (it has no faster clean mode).
    fn stop_signal(&self, _mode: StopMode) -> Signal {
        Signal::SIGTERM
    }

    async fn prepare(&self) -> Result<(), EngineError> {
        if prepare::prepare(&self.settings, true).await? == MainStart::Now
            && self.settings.datadir.join(conn::ACCOUNTS_PENDING).exists()
        {
            // Installed and never logged in to (the first login creates the accounts):
            // nothing of the cluster's is in it, so a clone may discard it.
            self.fresh.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// The checks, the run directories, and no `mariadb-install-db`: the clone fills the
    /// empty data directory and starts the server.
    async fn prepare_to_clone(&self) -> Result<MainStart, EngineError> {
        prepare::prepare(&self.settings, false).await
    }

    async fn probe(&self) -> Result<Probe, EngineError> {
        let mut c = match conn::local(&self.settings).await {
            Ok(c) => c,
            Err(e) => {
                probe::down();
                return Err(e);
            }
        };
        let members = self
            .members
            .lock()
            .expect("the members lock is never poisoned")
            .clone();
        let r = probe::probe(&self.settings, &mut c, &members).await;
        let _ = c.disconnect().await;
        r
    }

    async fn position(&self) -> Result<Position, EngineError> {
        let mut c = conn::local(&self.settings).await?;
        let p = replication::position(&self.settings, &mut c).await;
        let _ = c.disconnect().await;
        p
    }

    async fn promote(&self) -> Result<Position, EngineError> {
        self.fresh.store(false, Ordering::SeqCst);
        let mut c = conn::local(&self.settings).await?;
        let p = replication::promote(&self.settings, &mut c).await;
        let _ = c.disconnect().await;
        p
    }

    async fn follow(&self, primary: &Peer) -> Result<Position, EngineError> {
        let mut c = conn::local(&self.settings).await?;
        let p = replication::follow(&self.settings, &mut c, primary).await;
        let _ = c.disconnect().await;
        p
    }

    async fn fence(&self) -> Result<Position, EngineError> {
        let mut c = conn::local(&self.settings).await?;
        let p = replication::fence(&self.settings, &mut c).await;
        let _ = c.disconnect().await;
        p
    }

    async fn copy_source(&self, source: &crate::Source) -> Result<Position, EngineError> {
        self.fresh.store(false, Ordering::SeqCst);
        migrate::copy(&self.settings, source).await
    }

    async fn lead_standby(&self, source: &crate::Source) -> Result<Position, EngineError> {
        migrate::lead(&self.settings, source).await
    }

    async fn stop_source(&self, source: &crate::Source) -> Result<Position, EngineError> {
        migrate::stop_source(&self.settings, source).await
    }

    /// The plain fence: a GTID replica needs no rewind, the former primary follows as is.
    async fn fence_to_hand_over(&self) -> Result<Position, EngineError> {
        self.fence().await
    }

    async fn fence_remote(&self, target: &Peer) -> Result<RemoteFence, EngineError> {
        let mut c = match conn::remote(&self.settings, target).await {
            Ok(c) => c,
            // The agent could not open a socket: that proves nothing about the target.
            Err(mysql_async::Error::Io(mysql_async::IoError::Io(e))) if crate::out_of_files(&e) => {
                return Err(EngineError::AgentOutOfFiles {
                    operation: "fence the former primary",
                });
            }
            // Not listening, or not answering within the limit: nothing there accepts writes.
            Err(mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)) => {
                return Ok(RemoteFence::Unreachable);
            }
            Err(e) => return Err(conn::failed("fence the former primary", &e, true)),
        };
        let p = replication::fence(&self.settings, &mut c).await;
        let _ = c.disconnect().await;
        p.map(RemoteFence::Fenced)
    }

    /// Apply everything already received (the relay log) and return the position;
    /// replication keeps running, so a fenced former primary can still be caught up with.
    async fn catch_up(&self) -> Result<Position, EngineError> {
        let mut c = conn::local(&self.settings).await?;
        replication::apply_received(&mut c, CATCH_UP_LIMIT).await?;
        let p = replication::position(&self.settings, &mut c).await;
        let _ = c.disconnect().await;
        p
    }

    /// Every node that needs the primary's data (a new node, or a rebuild) gets a physical
    /// copy of it first (`clone.rs`): replaying the primary's binary log from its start
    /// stops working once the primary purged old binary logs.
    async fn clone_from_primary(&self, primary: &Peer) -> Result<Position, EngineError> {
        let fresh = self.fresh.load(Ordering::SeqCst);
        clone::clone_data(&self.settings, &self.control, primary, fresh).await?;
        self.fresh.store(false, Ordering::SeqCst);
        self.follow(primary).await
    }

    async fn restart(&self, between: crate::Between) -> Result<(), EngineError> {
        self.control.stop(crate::StopMode::Fast).await?;
        let between = between.await;
        self.control.start().await?;
        between
    }

    // `reload` stays unsupported: MariaDB re-reads no option file at run time (dynamic
    // variables change with SET GLOBAL, the others need a restart).

    async fn top_statements(
        &self,
        limit: u32,
    ) -> Result<Vec<cluster::wire::StatementStats>, EngineError> {
        let mut c = conn::local(&self.settings).await?;
        let r = probe::top_statements(&mut c, limit).await;
        let _ = c.disconnect().await;
        r
    }

    async fn identity(&self) -> Result<Option<String>, EngineError> {
        let mut c = conn::local(&self.settings).await?;
        let r = replication::identity(&mut c).await;
        let _ = c.disconnect().await;
        r
    }

    /// At bootstrap the data becomes the cluster's: never discarded by a clone from now on.
    async fn create_identity(&self) -> Result<Option<String>, EngineError> {
        self.fresh.store(false, Ordering::SeqCst);
        let mut c = conn::local(&self.settings).await?;
        let r = replication::create_identity(&mut c).await;
        let _ = c.disconnect().await;
        r.map(Some)
    }

    /// Replication needs nothing per replica (semi-sync waits for any); the members only
    /// name the replicas a probe sees.
    async fn set_replicas(&self, members: &[Member]) -> Result<(), EngineError> {
        *self
            .members
            .lock()
            .expect("the members lock is never poisoned") = members.to_vec();
        Ok(())
    }

    async fn unfence(&self) -> Result<(), EngineError> {
        self.fresh.store(false, Ordering::SeqCst);
        let mut c = conn::local(&self.settings).await?;
        let r = conn::bounded(
            "accept writes again",
            false,
            mysql_async::prelude::Queryable::query_drop(&mut c, "SET GLOBAL read_only = 0"),
        )
        .await;
        let _ = c.disconnect().await;
        r
    }

    /// Physical: `base` (`mariadb-backup`); logical: `db-<name>` per database, then `users`
    /// (see `dump.rs`).
    async fn backup_streams(&self, spec: &BackupSpec) -> Result<Vec<StreamPlan>, EngineError> {
        dump::plan(&self.settings, spec).await
    }

    async fn start_backup_stream(
        &self,
        spec: &BackupSpec,
        plan: &StreamPlan,
    ) -> Result<ToolStream, EngineError> {
        dump::start(&self.settings, spec, plan).await
    }

    async fn begin_restore(&self, spec: &RestoreSpec) -> Result<Restore, EngineError> {
        restore::begin(&self.settings, spec).await
    }

    async fn check_restored(&self, dir: &std::path::Path) -> Result<CheckReport, EngineError> {
        scratch::check(&self.settings, dir).await
    }

    fn restore_staging(&self) -> Option<std::path::PathBuf> {
        Some(clone::staging(&self.settings.datadir))
    }

    async fn recover(
        &self,
        dir: &std::path::Path,
        archive_dir: &std::path::Path,
        target: &crate::backups::RecoveryTarget,
    ) -> Result<crate::backups::Recovered, EngineError> {
        binlog::recover(&self.settings, dir, archive_dir, target).await
    }

    async fn adopt_restored(
        &self,
        restored: &std::path::Path,
        as_primary: bool,
    ) -> Result<Position, EngineError> {
        let fresh = self.fresh.load(Ordering::SeqCst);
        if let Err(e) =
            clone::adopt(&self.settings, &self.control, restored, fresh, as_primary).await
        {
            if !restored.exists() {
                // Moved in, then failed: it never served as the cluster's data, so the next
                // attempt replaces it instead of keeping another copy aside.
                self.fresh.store(true, Ordering::SeqCst);
            }
            return Err(e);
        }
        self.fresh.store(false, Ordering::SeqCst);
        self.position().await
    }
}
