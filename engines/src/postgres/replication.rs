//! The PostgreSQL engine's role operations: promotion, following the primary (repoint,
//! or demote and rewind), fencing (local, before a hand-over, remote), catching up,
//! cloning the primary, and the primary's replica slots and synchronous names.

use std::time::Duration;

use tokio_postgres::Client;
use tracing::{info, warn};

use super::sql::{self, SqlError, Status};
use super::{PostgresEngine, datadir, fence, replicas, settings};
use crate::engine::EngineError;
use crate::role_ops::{Member, Peer, Position, RemoteFence};

/// How long `catch_up` waits for the replay of received WAL.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// Polls (20 ms apart) without replay progress after which `catch_up` stops waiting.
const CATCH_UP_STILL_POLLS: u32 = 10;
/// How long `pg_promote()` may take.
const PROMOTE_LIMIT: Duration = Duration::from_secs(60);
/// How long `follow` waits for the new primary to finish its promotion.
const PRIMARY_WAIT: Duration = Duration::from_secs(15);
/// Rounds of check → repoint/demote → verify in `follow`.
const FOLLOW_ROUNDS: u32 = 3;
/// How long `follow` waits for the walreceiver to stream on the primary's timeline.
const STREAM_WAIT: Duration = Duration::from_secs(5);
/// How long the CHECKPOINT pg_rewind needs on a just-promoted primary may take.
const CHECKPOINT_LIMIT: Duration = Duration::from_secs(600);
/// Attempts of pg_basebackup while the new primary finishes promoting (role, slots).
const CLONE_ATTEMPTS: u32 = 10;

impl PostgresEngine {
    /// Make sure this node's slot exists on `primary` (the primary's agent also manages
    /// slots; this covers the moments before it has seen this node).
    async fn ensure_own_slot(&self, primary: &Peer) {
        let op = "create this node's replication slot";
        match self.connect_peer(primary, op).await {
            Ok(client) => {
                if let Err(e) = replicas::ensure_slot(&client, &self.settings.slot_name()).await {
                    warn!(cause = %e.into_engine(op), "failed to create the replication slot");
                }
            }
            Err(e) => warn!(cause = %e, "failed to create the replication slot"),
        }
    }

    /// The primary's status and timeline history, for the divergence check.
    async fn primary_view(&self, primary: &Peer) -> Result<(Status, Vec<(u64, u64)>), EngineError> {
        let op = "read the primary's timeline";
        let client = self.connect_peer(primary, op).await?;
        // The key is claimed before the promotion finishes: give it a moment.
        let deadline = tokio::time::Instant::now() + PRIMARY_WAIT;
        let st = loop {
            let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
            // A standby leader (a live migration) stays in recovery: follow it as it is.
            if !st.in_recovery || primary.standby {
                break st;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Failed {
                    operation: op,
                    reason: format!("{primary} is still a standby after {PRIMARY_WAIT:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let history = if st.timeline > 1 {
            let file = format!("pg_wal/{:08X}.history", st.timeline);
            let r = sql::row(
                &client,
                &format!("SELECT pg_read_file({})", settings::literal(&file)),
            )
            .await
            .map_err(|e| e.into_engine(op))?;
            sql::parse_history(r.first().cloned().flatten().as_deref().unwrap_or(""))
        } else {
            Vec::new()
        };
        Ok((st, history))
    }

    /// Repoint a standby whose history is on the primary's: conninfo and slot, reload.
    async fn repoint(&self, client: &Client, primary: &Peer) -> Result<(), EngineError> {
        let op = "point the standby at the primary";
        datadir::write_passfile(&self.settings).map_err(|reason| EngineError::Failed {
            operation: op,
            reason,
        })?;
        let conninfo = datadir::conninfo(&self.settings, primary);
        let current = sql::row(
            client,
            "SELECT current_setting('primary_conninfo'), current_setting('primary_slot_name')",
        )
        .await
        .map_err(|e| e.into_engine(op))?;
        let slot = self.settings.slot_name();
        if current.first().cloned().flatten().as_deref() == Some(conninfo.as_str())
            && current.get(1).cloned().flatten().as_deref() == Some(slot.as_str())
        {
            return Ok(());
        }
        for (name, value) in [
            ("primary_conninfo", &conninfo),
            ("primary_slot_name", &slot),
        ] {
            sql::execute(
                client,
                &format!("ALTER SYSTEM SET {name} = {}", settings::literal(value)),
            )
            .await
            .map_err(|e| e.into_engine(op))?;
        }
        sql::execute(client, "SELECT pg_reload_conf()")
            .await
            .map_err(|e| e.into_engine(op))
    }

    /// Finish applying everything already received (resuming a paused replay) and return
    /// the position; a primary returns its position at once. Keeps streaming.
    pub(super) async fn replay_received(&self) -> Result<Position, EngineError> {
        let op = "replay the received WAL";
        let client = self.reader(op).await?;
        let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
        let (mut last, mut still) = (0, 0);
        loop {
            let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
            // Done when replay reached what was received, or stopped moving (the received
            // WAL can end inside a record that will never be completed).
            still = if st.lsn == last { still + 1 } else { 0 };
            last = st.lsn;
            let done = !st.in_recovery
                || st.receive_lsn.is_none_or(|r| st.lsn >= r)
                || still >= CATCH_UP_STILL_POLLS;
            if done || tokio::time::Instant::now() >= deadline {
                if !done {
                    warn!(position = %st.position().notation("postgres"), "replay did not reach the received WAL in time");
                }
                return Ok(st.position());
            }
            let resumed = sql::execute(
                &client,
                "SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()",
            )
            .await;
            if resumed.is_err() {
                still = 0;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Replace the local data with a copy of `primary`'s and stream from it.
    pub(super) async fn clone_primary(&self, primary: &Peer) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        self.ensure_own_slot(primary).await;
        let s = &self.settings;
        let fresh = self.fresh.load(std::sync::atomic::Ordering::SeqCst);
        let st = self
            .offline("clone the primary", || async {
                let mut attempt = 1;
                loop {
                    match datadir::basebackup(s, primary, fresh).await {
                        Ok(()) => {
                            self.not_fresh();
                            return Ok(());
                        }
                        Err(e) if attempt < CLONE_ATTEMPTS => {
                            warn!(attempt, cause = %e, "clone failed; retrying");
                            attempt += 1;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            })
            .await?;
        info!(%primary, position = %st.position().notation("postgres"), "cloned the primary");
        self.ensure_own_slot(primary).await;
        Ok(st.position())
    }

    /// Keep the replication role, slots and `synchronous_standby_names` in step with the
    /// other members (on the primary; a no-op on a standby).
    pub(super) async fn keep_replicas(&self, members: &[Member]) -> Result<(), EngineError> {
        let _serial = self.ops.lock().await;
        let op = "update the replicas' slots and synchronous names";
        let client = self.connect_local(op).await?;
        let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
        if st.in_recovery {
            return Ok(());
        }
        replicas::ensure_roles(&client, &self.settings)
            .await
            .map_err(|e| e.into_engine(op))?;
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let names = replicas::sync_slots(&client, &ids)
            .await
            .map_err(|e| e.into_engine(op))?;
        let fenced = sql::row(
            &client,
            "SELECT current_setting('default_transaction_read_only')",
        )
        .await
        .map_err(|e| e.into_engine(op))?;
        *self
            .members
            .lock()
            .expect("the members lock is never poisoned") = Some(names);
        if fenced.first().cloned().flatten().as_deref() == Some("on") {
            return Ok(()); // fenced: leave the impossible standby name in place
        }
        let want = self.sync_names();
        let have = sql::row(
            &client,
            "SELECT current_setting('synchronous_standby_names')",
        )
        .await
        .map_err(|e| e.into_engine(op))?;
        if have.first().cloned().flatten().as_deref() != Some(want.as_str()) {
            info!(synchronous_standby_names = %want, "updating the synchronous standbys");
            fence::apply(&client, &[("synchronous_standby_names", Some(want))], false)
                .await
                .map_err(|e| e.into_engine(op))?;
        }
        Ok(())
    }

    pub(super) async fn promote_locked(&self) -> Result<Position, EngineError> {
        let op = "promote";
        self.not_fresh();
        let client = self.connect_local(op).await?;
        let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
        if st.in_recovery {
            let run = client.simple_query("SELECT pg_promote(true, 60)");
            match tokio::time::timeout(PROMOTE_LIMIT, run).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(EngineError::Failed {
                        operation: op,
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(EngineError::Failed {
                        operation: op,
                        reason: format!("pg_promote() did not finish within {PROMOTE_LIMIT:?}"),
                    });
                }
            }
        }
        fence::unfence(&client, self.sync_names())
            .await
            .map_err(|e| e.into_engine(op))?;
        // Every start stays a standby start, also for this primary.
        datadir::mark_standby(&self.settings).map_err(|reason| EngineError::Failed {
            operation: op,
            reason,
        })?;
        if let Err(e) = replicas::ensure_roles(&client, &self.settings).await {
            warn!(cause = %e.into_engine(op), "failed to create the replication and backup roles");
        }
        let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
        info!(position = %st.position().notation("postgres"), "promoted");
        Ok(st.position())
    }

    /// Follow `primary`. A check of the local history against the primary's is only final
    /// once nothing else can reach this server: a former primary writes a shutdown
    /// checkpoint when it is demoted (past the new timeline's switch point: see
    /// [`super::controldata`]), and a standby still streaming from a fenced former primary may
    /// receive a few more records before it is repointed. So a former primary, and a
    /// standby that diverged while running, are stopped first and judged on the stopped
    /// data directory: rewound when it diverged, then started as a standby of `primary`.
    /// A standby on the primary's history is only repointed. When it does not stream after
    /// that, check again.
    pub(super) async fn follow_locked(&self, primary: &Peer) -> Result<Position, EngineError> {
        let op = "follow the primary";
        for _ in 0..FOLLOW_ROUNDS {
            let local = self.local_status(op).await?;
            let (pst, history) = self.primary_view(primary).await?;
            // A standby leader and this node both hold a prefix of the migration source's
            // WAL on its timeline: one further than the other has not diverged (the
            // walreceiver waits until the leader has streamed as far).
            let diverged = !(primary.standby && local.timeline == pst.timeline)
                && sql::diverged(
                    local.timeline,
                    local.furthest(),
                    pst.timeline,
                    pst.lsn,
                    &history,
                );
            self.ensure_own_slot(primary).await;
            if diverged || !local.in_recovery {
                if !local.in_recovery {
                    // A former primary: no write may land between here and the stop.
                    let client = self.connect_local(op).await?;
                    fence::fence(&client).await.map_err(|e| e.into_engine(op))?;
                }
                self.forget_reader().await;
                if diverged {
                    info!(%primary, local = %local.position().notation("postgres"), primary_timeline = pst.timeline, "local history diverged; rewinding");
                }
                self.offline(op, || {
                    self.demote_offline(primary, &pst, &history, diverged)
                })
                .await?;
            } else {
                let client = self.connect_local(op).await?;
                self.repoint(&client, primary).await?;
            }
            if let Ok(p) = self.streaming_position(primary, pst.timeline).await {
                return Ok(p);
            }
        }
        Err(EngineError::Failed {
            operation: op,
            reason: format!("does not stream from {primary} after {FOLLOW_ROUNDS} attempts"),
        })
    }

    /// With the server stopped: rewind the data directory when it left `primary`'s history
    /// (`diverged` already known, or seen now in the control file), then make it a standby
    /// of `primary`. A failed rewind means the node needs a rebuild.
    async fn demote_offline(
        &self,
        primary: &Peer,
        pst: &Status,
        history: &[(u64, u64)],
        diverged: bool,
    ) -> Result<(), EngineError> {
        let s = &self.settings;
        let op = "make the server a standby of the primary";
        let rewind = diverged
            || {
                let cd = datadir::control_data(s).await?;
                let needed = cd.needs_rewind(pst.timeline, history);
                if needed {
                    info!(%primary, checkpoint = %sql::format_lsn(cd.checkpoint), timeline = cd.timeline(), clean = cd.clean, primary_timeline = pst.timeline, "the stopped data directory left the primary's history; rewinding");
                }
                needed
            };
        if !rewind {
            return datadir::standby_files(s, primary).map_err(|reason| EngineError::Failed {
                operation: op,
                reason,
            });
        }
        self.checkpoint_source(primary, pst.timeline).await?;
        datadir::rewind(s, primary)
            .await
            .map_err(|e| EngineError::NeedsRebuild {
                reason: format!("pg_rewind against {primary} failed: {e}"),
            })
    }

    /// Make sure `primary`'s control file records a checkpoint on its current `timeline`.
    /// A promotion only *requests* its first checkpoint, spread over minutes; until it is
    /// done pg_rewind reads the old timeline from the source's control file, answers
    /// "source and target cluster are on the same timeline … no rewind required", and
    /// leaves a target that cannot start. (Patroni issues the same CHECKPOINT.)
    async fn checkpoint_source(&self, primary: &Peer, timeline: u64) -> Result<(), EngineError> {
        let op = "checkpoint the primary before pg_rewind";
        let client = self.connect_peer(primary, op).await?;
        let r = sql::row(
            &client,
            "SELECT timeline_id::text FROM pg_control_checkpoint()",
        )
        .await
        .map_err(|e| e.into_engine(op))?;
        let recorded = r
            .first()
            .cloned()
            .flatten()
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if recorded >= timeline {
            return Ok(());
        }
        info!(%primary, recorded, timeline, "the primary's last checkpoint predates its promotion; asking it for one");
        // An immediate checkpoint writes every dirty buffer: more than a statement's time.
        match tokio::time::timeout(CHECKPOINT_LIMIT, client.batch_execute("CHECKPOINT")).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(EngineError::Failed {
                operation: op,
                reason: e.to_string(),
            }),
            Err(_) => Err(EngineError::Failed {
                operation: op,
                reason: format!("CHECKPOINT did not finish within {CHECKPOINT_LIMIT:?}"),
            }),
        }
    }

    /// Wait until the walreceiver streams on `timeline` (or later); the local position.
    async fn streaming_position(
        &self,
        primary: &Peer,
        timeline: u64,
    ) -> Result<Position, EngineError> {
        let op = "wait for streaming from the primary";
        let client = self.connect_local(op).await?;
        let deadline = tokio::time::Instant::now() + STREAM_WAIT;
        loop {
            let r = sql::rows(
                &client,
                "SELECT status, received_tli::text FROM pg_stat_wal_receiver",
            )
            .await
            .map_err(|e| e.into_engine(op))?;
            let streaming = r.first().is_some_and(|row| {
                row.first().cloned().flatten().as_deref() == Some("streaming")
                    && row
                        .get(1)
                        .cloned()
                        .flatten()
                        .and_then(|t| t.parse::<u64>().ok())
                        .is_some_and(|t| t >= timeline)
            });
            if streaming {
                let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
                return Ok(st.position());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Failed {
                    operation: op,
                    reason: format!(
                        "not streaming from {primary} on timeline {timeline} after {STREAM_WAIT:?}"
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(super) async fn fence_peer(&self, target: &Peer) -> Result<RemoteFence, EngineError> {
        let op = "fence the former primary";
        let client = match sql::connect(&target.host, target.port, &self.settings.superuser).await {
            Ok(c) => c,
            Err(SqlError::Unreachable(reason)) => {
                info!(%target, %reason, "former primary unreachable");
                return Ok(RemoteFence::Unreachable);
            }
            Err(e) => return Err(e.into_engine(op)),
        };
        let st = fence::fence(&client).await.map_err(|e| e.into_engine(op))?;
        Ok(RemoteFence::Fenced(st.position()))
    }

    pub(super) async fn fence_local(&self) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        let op = "fence";
        let client = self.connect_local(op).await?;
        let st = fence::fence(&client).await.map_err(|e| e.into_engine(op))?;
        info!(position = %st.position().notation("postgres"), "fenced");
        Ok(st.position())
    }

    /// Fence, then stop cleanly and start again as a standby with no source. A clean
    /// (fast) shutdown writes its checkpoint and waits until the connected standbys flushed
    /// it, so the successor promotes after that record and this server's history stays a
    /// prefix of the new timeline: it follows the successor without pg_rewind. The position
    /// returned is the end of that record (the standby's replay position after startup).
    pub(super) async fn fence_for_hand_over(&self) -> Result<Position, EngineError> {
        let _serial = self.ops.lock().await;
        let op = "fence and stop before the hand-over";
        let client = self.connect_local(op).await?;
        fence::fence(&client).await.map_err(|e| e.into_engine(op))?;
        drop(client);
        self.forget_reader().await;
        let s = &self.settings;
        let st = self
            .offline(op, || async {
                datadir::write_auto_conf(s, None)
                    .and_then(|()| datadir::mark_standby(s))
                    .map_err(|reason| EngineError::Failed {
                        operation: op,
                        reason,
                    })
            })
            .await?;
        info!(position = %st.position().notation("postgres"), "fenced: stopped cleanly, a standby with no source until the successor is known");
        Ok(st.position())
    }

    pub(super) async fn unfence_local(&self) -> Result<(), EngineError> {
        let _serial = self.ops.lock().await;
        let op = "unfence";
        self.not_fresh();
        let client = self.connect_local(op).await?;
        let st = sql::status(&client).await.map_err(|e| e.into_engine(op))?;
        if st.in_recovery {
            return self.promote_locked().await.map(|_| ());
        }
        fence::unfence(&client, self.sync_names())
            .await
            .map_err(|e| e.into_engine(op))
    }
}
