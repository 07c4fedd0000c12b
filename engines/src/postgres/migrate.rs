//! A live migration from a PostgreSQL server Autopilot does not manage (issue 18): the node
//! that bootstraps the cluster copies the source with `pg_basebackup` (its account, its
//! slot when one is named) and streams from it as a standby; the cluster's other nodes
//! clone and follow that *standby leader* (cascading replication). The cutover fences the
//! source as a former primary is fenced ([`fence::fence`]: commits wait for a standby that
//! never exists, new transactions are read-only, client sessions end), waits until this
//! node received and replayed everything the source flushed, and the role logic then
//! promotes it.

use std::time::Duration;

use tracing::info;

use super::settings::{Credentials, literal};
use super::sql::{self, SqlError};
use super::{PostgresEngine, datadir, fence};
use crate::engine::EngineError;
use crate::role_ops::{Position, Source};

/// How long the cutover waits for this node to receive what the source flushed.
const RECEIVE_LIMIT: Duration = Duration::from_secs(120);
/// How long the standby leader waits for its walreceiver to stream from the source.
const STREAM_LIMIT: Duration = Duration::from_secs(15);

impl PostgresEngine {
    /// Replace the local data with a copy of the source and stream from it.
    pub(super) async fn copy_from_source(&self, source: &Source) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        let s = &self.settings;
        let fresh = self.fresh.load(std::sync::atomic::Ordering::SeqCst);
        let st = self
            .offline("copy the migration source", || {
                datadir::copy_source(s, source, fresh)
            })
            .await?;
        self.not_fresh();
        info!(source = %source.peer, position = %st.position().notation("postgres"), "copied the migration source; streaming from it");
        Ok(st.position())
    }

    /// Stream from the source, read-only: point the standby at it (conninfo, slot, reload)
    /// and wait until its walreceiver streams.
    pub(super) async fn lead_from_source(&self, source: &Source) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        let op = "replicate from the migration source";
        let local = self.local_status(op).await?;
        if !local.in_recovery {
            return Err(EngineError::Failed {
                operation: op,
                reason: "the local server accepts writes, so it cannot become a standby of the \
                         source; rebuild this node (autopilotctl reinit) or cut the migration over"
                    .into(),
            });
        }
        datadir::write_source_passfile(&self.settings, source).map_err(|reason| {
            EngineError::Failed {
                operation: op,
                reason,
            }
        })?;
        let client = self.connect_local(op).await?;
        let slot = source
            .slot
            .as_deref()
            .map(|s| format!("ALTER SYSTEM SET primary_slot_name = {}", literal(s)))
            .unwrap_or_else(|| "ALTER SYSTEM RESET primary_slot_name".to_owned());
        for sql in [
            format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                literal(&datadir::source_conninfo(&self.settings, source))
            ),
            slot,
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            sql::execute(&client, &sql)
                .await
                .map_err(|e| e.into_engine(op))?;
        }
        let deadline = tokio::time::Instant::now() + STREAM_LIMIT;
        loop {
            let r = sql::rows(
                &client,
                "SELECT status, sender_host, sender_port::text FROM pg_stat_wal_receiver",
            )
            .await
            .map_err(|e| e.into_engine(op))?;
            let streaming = r.first().is_some_and(|row| {
                row.first().cloned().flatten().as_deref() == Some("streaming")
                    && row.get(2).cloned().flatten().as_deref()
                        == Some(source.peer.port.to_string().as_str())
            });
            if streaming {
                let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
                return Ok(st.position());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Failed {
                    operation: op,
                    reason: format!(
                        "not streaming from the source {} after {STREAM_LIMIT:?}; see the server's log (its account, pg_hba.conf, the slot)",
                        source.peer
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fence the source, then wait until this node received and replayed everything it
    /// flushed; the local position.
    pub(super) async fn stop_writes_on_source(
        &self,
        source: &Source,
    ) -> Result<Position, EngineError> {
        let op = "make the migration source refuse writes";
        let account = Credentials {
            user: source.user.clone(),
            password: source.password.clone(),
        };
        let remote = sql::connect(&source.peer.host, source.peer.port, &account)
            .await
            .map_err(|e| e.into_engine(op))?;
        let fenced = fence::fence(&remote).await.map_err(|e| match e {
            SqlError::Failed(reason) if reason.contains("permission denied") || reason.contains("must be superuser") => {
                EngineError::Failed {
                    operation: op,
                    reason: format!(
                        "the source account {} may not make the source read-only ({reason}); \
                         give the migration a superuser account (cluster.bootstrap.migrate_from.account), \
                         or GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only, \
                         synchronous_standby_names and pg_signal_backend to it",
                        source.user
                    ),
                }
            }
            e => e.into_engine(op),
        })?;
        if fenced.in_recovery {
            return Err(EngineError::Failed {
                operation: op,
                reason: format!("the source {} is itself a standby", source.peer),
            });
        }
        let target = fenced.lsn;
        info!(source = %source.peer, flushed = %Position { epoch: fenced.timeline, offset: target }.notation("postgres"), "the migration source refuses writes");
        let op = "receive everything the migration source committed";
        let local = self.connect_local(op).await?;
        let deadline = tokio::time::Instant::now() + RECEIVE_LIMIT;
        loop {
            let st = sql::status(&local).await.map_err(|e| e.into_engine(op))?;
            if st.furthest() >= target {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Failed {
                    operation: op,
                    reason: format!(
                        "received up to {} of the source's {} within {RECEIVE_LIMIT:?}",
                        sql::format_lsn(st.furthest()),
                        sql::format_lsn(target)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.replay_received().await
    }
}
