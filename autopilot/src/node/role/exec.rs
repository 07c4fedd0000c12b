//! Carrying out the machine's actions. Each one is a single store or engine operation, a
//! handler run or a timer; answers come back to the actor as `RoleMsg::Feed` events.

use std::time::{Duration, Instant};

use engines::{Engine, EngineError, Member, Peer, RemoteFence};
use handlers::HandlerMsg;
use metrics::{counter, gauge};
use ractor::ActorRef;
use ractor::rpc::CallResult;
use tracing::{info, warn};

use super::{ProbeFailure, RoleActorState, RoleMsg, documents, now_millis};
use crate::node::process::ProcessMsg;
use crate::node::seed::Purpose;
use crate::node::session::PrimaryClaim;
use crate::role::{Action, ClaimReason, EngineResult, Event, Position, PrimaryKey, Role};
use cluster::wire::{self, ClusterKey, ClusterKeys};

/// How long `CatchUpTo` waits for the local position to reach the target.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);
/// How long a store operation of the executor may take before it counts as failed.
const STORE_LIMIT: Duration = Duration::from_secs(5);

fn feed_later(myself: &ActorRef<RoleMsg>, make: impl FnOnce(u64) -> Event) {
    let _ = myself.cast(RoleMsg::Feed(make(now_millis())));
}

/// Probe the engine's position; the answer comes back as `Probed` (health is read then).
pub fn probe(myself: &ActorRef<RoleMsg>, st: &mut RoleActorState) {
    if st.probing {
        return;
    }
    st.probing = true;
    let engine = st.args.engine.clone();
    let me = myself.clone();
    tokio::spawn(async move {
        let limit = crate::node::health::PROBE_LIMIT;
        let probed = loop {
            match tokio::time::timeout(limit, engine.position()).await {
                Ok(Ok(p)) => break Ok(p),
                // The agent out of descriptors knows nothing new about its database: try
                // again rather than report a failed probe (a primary would hand over).
                Ok(Err(e)) if e.is_agent_trouble() => {
                    if let Some(held) = POSITION_SKIPS.pass() {
                        warn!(cause = %e, skipped_since_last_line = held, "position probe could not run; retrying every second");
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(Err(_)) => break Err(ProbeFailure::Error),
                Err(_) => break Err(ProbeFailure::NoAnswer),
            }
        };
        let _ = me.cast(RoleMsg::Probed(probed));
    });
}

/// Position probes that could not run (the agent out of descriptors) are logged at most
/// every 10 s.
static POSITION_SKIPS: std::sync::LazyLock<listen::Throttle> =
    std::sync::LazyLock::new(|| listen::Throttle::new(Duration::from_secs(10)));

/// Carry out one action.
pub fn execute(myself: &ActorRef<RoleMsg>, st: &mut RoleActorState, action: Action) {
    let me = myself.clone();
    match action {
        // The session holds the lease: answer once the node key is written under a live one
        // (at once when it is now).
        Action::GrantLease => {
            let session = st.session.clone();
            tokio::spawn(async move {
                if session.synced().await {
                    feed_later(&me, |now| Event::LeaseGranted { now });
                }
            });
        }
        Action::ReadCluster => st.session.read_cluster(),
        Action::PublishNode {
            role,
            position,
            eligible,
            ineligible,
            waiting,
            needs_rebuild,
            caught_up_term,
            database_killed,
            database_exit,
            source,
            refused,
        } => {
            gauge!("autopilot_needs_rebuild").set(if needs_rebuild { 1.0 } else { 0.0 });
            gauge!("autopilot_eligible").set(if eligible { 1.0 } else { 0.0 });
            gauge!("autopilot_foreign_data").set(if refused.is_some() { 1.0 } else { 0.0 });
            let flags = documents::NodeFlags {
                eligible,
                healthy: false, // read at publish time
                needs_rebuild,
                caught_up_term,
                database_killed,
                replication: engines::Replication::Unknown, // read at publish time
                source,
                refused,
                ineligible: ineligible.map(documents::ineligible),
                waiting: waiting.map(|(w, since)| documents::waiting(&w, since)),
            };
            st.published = Some((role, position, flags));
            st.database_exit = database_exit;
            publish_node(st, true);
            mark_primary_online(st, role, position);
        }
        Action::ClearRequest => {
            let (session, id) = (st.session.clone(), st.args.identity.id.clone());
            tokio::spawn(async move {
                if let Err(e) = session.clear_request(&id).await {
                    warn!(cause = %handlers::error_chain(&e), "failed to delete the operator's request");
                }
            });
        }
        Action::RestartDatabase => {
            info!("restarting the database at an operator's request");
            restart(st, me, engines::nothing_between(), EngineResult::Restarted);
        }
        Action::UpgradeDatabase { version } => {
            info!(
                version = version.as_deref().unwrap_or("(the hook's choice)"),
                "upgrading the database at an operator's request"
            );
            let mut env = st.args.env.with_event("upgrade").vars();
            env.extend(version.map(|v| ("AUTOPILOT_UPGRADE_VERSION".to_owned(), v)));
            let hook = hook_step("upgrade", st.args.upgrade.clone(), env);
            restart(st, me, hook, EngineResult::Upgraded);
        }
        Action::RollbackDatabase => {
            warn!("the upgrade failed: rolling the database back");
            let env = st.args.env.with_event("rollback").vars();
            let hook = hook_step("rollback", st.args.rollback.clone(), env);
            restart(st, me, hook, EngineResult::RolledBack);
        }
        Action::RestoreInPlace { point } => {
            let seeder = st.args.seeder.clone();
            seed(st, me, move |engine| async move {
                let result = match seeder {
                    None => Err(crate::role::RestoreFailure {
                        reason: "this node cannot restore backups: its configuration needs a \
                                 backup section with repositories and backup.identity (the \
                                 private key)"
                            .to_owned(),
                        swapped: false,
                    }),
                    Some(seeder) => seeder.restore_in_place(engine.as_ref(), &point).await,
                };
                Ok(EngineResult::RestoredInPlace(result))
            });
        }
        Action::BeginTerm { term, reason } => {
            let session = st.session.clone();
            tokio::spawn(async move {
                let result = match session.begin_term(term, &reason).await {
                    Ok(true) => {
                        info!(term, "the cluster's identity is in a new term");
                        Ok(())
                    }
                    Ok(false) => Err("the primary key is no longer ours".to_owned()),
                    Err(e) => Err(handlers::error_chain(&e).to_string()),
                };
                if let Err(e) = &result {
                    warn!(term, cause = %e, "the new term was not recorded");
                }
                feed_later(&me, |now| Event::Engine {
                    now,
                    result: EngineResult::TermBegun { term, result },
                });
            });
        }
        Action::ReloadDatabase => {
            let engine = st.args.engine.clone();
            tokio::spawn(async move {
                let r = engine
                    .reload()
                    .await
                    .map_err(|e| handlers::error_chain(&e).to_string());
                feed_later(&me, |now| Event::Engine {
                    now,
                    result: EngineResult::Reloaded(r),
                });
            });
        }
        Action::Waiting { started, ended } => {
            if let Some((w, took)) = ended {
                info!("wait over after {:.1} s: {w}", took as f64 / 1000.0);
            }
            if let Some(w) = started {
                info!("{w}");
            }
        }
        Action::AcquireLock => {
            let doc = documents::lock(&st.args.identity);
            let session = st.session.clone();
            tokio::spawn(async move {
                let acquired = match session.claim_lock(&doc).await {
                    Ok(acquired) => acquired,
                    Err(e) => {
                        warn!(cause = %handlers::error_chain(&e), "failed to take the bootstrap lock");
                        false
                    }
                };
                feed_later(&me, |now| Event::LockResult { now, acquired });
            });
        }
        Action::ReleaseLock => release(st, ClusterKey::Lock),
        Action::ReleasePrimary => release(st, ClusterKey::Primary),
        Action::ClaimPrimary {
            reason,
            previous,
            position,
            at,
            history_rev,
            write_initialized,
        } => claim(
            myself,
            st,
            reason,
            previous,
            position,
            at,
            history_rev,
            write_initialized,
        ),
        Action::RevokeLease => {
            st.revoking = true;
            // Only a primary (or one that fenced itself, still holding the key) hands
            // anything over with its lease.
            let was_primary = st
                .machine
                .as_ref()
                .is_some_and(|m| matches!(m.role, Role::Primary | Role::Fenced));
            let session = st.session.clone();
            tokio::spawn(async move {
                match session.resign(STORE_LIMIT).await {
                    Ok(()) if was_primary => {
                        info!(
                            "lease revoked: leadership handed over; the replicas elect a new primary now"
                        )
                    }
                    Ok(()) => info!("lease revoked"),
                    Err(e) => warn!(
                        cause = %handlers::error_chain(&e),
                        "failed to revoke the lease; peers take over when it expires"
                    ),
                }
                let _ = me.cast(RoleMsg::Revoked);
            });
        }
        Action::ClearSwitchover => {
            let session = st.session.clone();
            tokio::spawn(async move {
                if let Err(e) = session.clear_switchover().await {
                    warn!(cause = %handlers::error_chain(&e), "failed to clear the switchover request");
                }
            });
        }
        Action::PublishEvent {
            kind,
            detail,
            facts,
        } => {
            let mut doc = documents::event(&st.args.identity, kind, &detail, facts);
            // Event ids are the time in milliseconds and the node: two events of one decision
            // (a hand-over and its reason) must not share one and overwrite each other.
            let ms = doc.time.unix_millis().max(st.last_event_ms + 1);
            st.last_event_ms = ms;
            doc.time = wire::Timestamp::from_unix_millis(ms);
            let key = st
                .args
                .keys
                .event(&ClusterKeys::event_id(doc.time, &st.args.identity.id));
            if kind == crate::role::Notice::ForeignData {
                tracing::error!(event = kind.label(), %detail, "cluster event");
            } else {
                info!(event = kind.label(), %detail, "cluster event");
            }
            st.events.publish(key, wire::encode(&doc));
        }
        // Initialising the `process` engine's database means reading where it stands; the
        // engines with a data directory do their work in `prepare`, before the process starts.
        // A cluster bootstrapped from a backup: restore it now, under the bootstrap lock.
        // A cluster that starts as a replica of an external database: copy it now, under the
        // bootstrap lock.
        Action::Initialize if st.args.migrate_from.is_some() => {
            let source = st.args.migrate_from.clone();
            seed(st, me, move |engine| async move {
                let Some(source) = source else {
                    return Err("no migration source".to_owned());
                };
                info!(source = %source.peer, "copying the migration source");
                let position = engine
                    .copy_source(&source)
                    .await
                    .map_err(|e| handlers::error_chain(&e).to_string())?;
                Ok(EngineResult::Initialized { position })
            });
        }
        Action::Initialize if st.args.seeder.as_ref().is_some_and(|s| s.bootstraps()) => {
            let seeder = st.args.seeder.clone();
            seed(st, me, move |engine| async move {
                let Some(seeder) = seeder else {
                    return Err("no seeder".to_owned());
                };
                let position = seeder.restore(engine.as_ref(), Purpose::Bootstrap).await?;
                Ok(EngineResult::Initialized { position })
            });
        }
        Action::Initialize => engine_op(st, me, |e| async move {
            let position = e.position().await?;
            Ok(EngineResult::Initialized { position })
        }),
        Action::CatchUp { term } => engine_op(st, me, move |e| async move {
            let position = e.catch_up().await?;
            Ok(EngineResult::ElectionCaughtUp { term, position })
        }),
        Action::CloneFrom { primary } => follow(st, me, primary, true),
        Action::Follow { primary } => follow(st, me, primary, false),
        // The cluster is initialised but no node has data: start from a backup.
        Action::RestoreFromBackup => {
            let seeder = st.args.seeder.clone();
            seed(st, me, move |engine| async move {
                let Some(seeder) = seeder else {
                    return Err("this node restores no backups: configure engine.seed or cluster.bootstrap.from_backup".to_owned());
                };
                let position = seeder.restore(engine.as_ref(), Purpose::Lost).await?;
                Ok(EngineResult::Cloned { position })
            });
        }
        Action::FenceRemote { node, address } => {
            let engine = st.args.engine.clone();
            tokio::spawn(async move {
                let result = match Peer::parse(&address) {
                    None => EngineResult::RemoteFenced {
                        final_position: None,
                    },
                    Some(peer) => match engine.fence_remote(&peer).await {
                        Ok(RemoteFence::Fenced(p)) => {
                            info!(%node, %address, position = %p.notation(engine.kind()), "former primary fenced");
                            EngineResult::RemoteFenced {
                                final_position: Some(p),
                            }
                        }
                        Ok(RemoteFence::Unreachable) => {
                            info!(%node, %address, "former primary unreachable; nothing to fence");
                            EngineResult::RemoteFenced {
                                final_position: None,
                            }
                        }
                        Err(e) => failed("fence the former primary", &e),
                    },
                };
                feed_later(&me, |now| Event::Engine { now, result });
            });
        }
        Action::CatchUpTo { target, from } => {
            let engine = st.args.engine.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + CATCH_UP_LIMIT;
                let result = loop {
                    match engine.position().await {
                        Ok(p) if p >= target => {
                            break EngineResult::CaughtUp { position: p };
                        }
                        Ok(_) if tokio::time::Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(p) => {
                            warn!(%from, target = %target.notation(engine.kind()), reached = %p.notation(engine.kind()), "did not catch up in time");
                            break EngineResult::Failed;
                        }
                        Err(e) => break failed("catch up", &e),
                    }
                };
                feed_later(&me, |now| Event::Engine { now, result });
            });
        }
        Action::LeadStandby => {
            let source = st.args.migrate_from.clone();
            engine_op(st, me, |e| async move {
                let Some(source) = source else {
                    return Err(EngineError::Failed {
                        operation: "lead the migrating cluster",
                        reason: "this node's configuration names no migration source \
                                 (cluster.bootstrap.migrate_from)"
                            .into(),
                    });
                };
                let position = e.lead_standby(&source).await?;
                info!(source = %source.peer, "leading the cluster as a standby of the migration source");
                Ok(EngineResult::Promoted { position })
            })
        }
        Action::StopSource => {
            let (engine, source) = (st.args.engine.clone(), st.args.migrate_from.clone());
            tokio::spawn(async move {
                let result = match source {
                    None => Err("this node's configuration names no migration source \
                                 (cluster.bootstrap.migrate_from)"
                        .to_owned()),
                    Some(source) => engine
                        .stop_source(&source)
                        .await
                        .map_err(|e| handlers::error_chain(&e).to_string()),
                };
                match &result {
                    Ok(p) => {
                        info!(position = %p.notation(engine.kind()), "the migration source refuses writes and this node has everything it committed")
                    }
                    Err(e) => warn!(cause = %e, "the cutover could not stop the migration source"),
                }
                feed_later(&me, |now| Event::Engine {
                    now,
                    result: EngineResult::SourceStopped(result),
                });
            });
        }
        Action::EndMigration => {
            let session = st.session.clone();
            tokio::spawn(async move {
                let result = match session.end_migration().await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("the primary key is no longer ours".to_owned()),
                    Err(e) => Err(handlers::error_chain(&e).to_string()),
                };
                if let Err(e) = &result {
                    warn!(cause = %e, "the migration was not ended in `initialized`");
                }
                feed_later(&me, |now| Event::Engine {
                    now,
                    result: EngineResult::MigrationEnded(result),
                });
            });
        }
        Action::Promote => engine_op(st, me, |e| async move {
            e.promote()
                .await
                .map(|p| EngineResult::Promoted { position: p })
        }),
        Action::Fence => engine_op(st, me, |e| async move {
            e.fence()
                .await
                .map(|p| EngineResult::Fenced { position: p })
        }),
        Action::FenceToHandOver => engine_op(st, me, |e| async move {
            e.fence_to_hand_over()
                .await
                .map(|p| EngineResult::Fenced { position: p })
        }),
        Action::KillDatabase => {
            let process = st.args.process.clone();
            tokio::spawn(async move {
                let killed = process
                    .call(ProcessMsg::Kill, Some(Duration::from_secs(5)))
                    .await;
                if !matches!(killed, Ok(CallResult::Success(_))) {
                    warn!("the process actor did not answer the kill; the agent is stopping");
                }
                feed_later(&me, |now| Event::Engine {
                    now,
                    result: EngineResult::Killed,
                });
            });
        }
        Action::Unfence => engine_op(st, me, |e| async move {
            e.unfence().await.map(|()| EngineResult::Unfenced)
        }),
        Action::ClearMarker => {
            st.data_term = 0;
            let marker = &st.args.marker;
            match std::fs::remove_file(marker) {
                Ok(()) => {
                    info!(path = %marker.display(), "bootstrap marker removed before rebuilding")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %marker.display(), cause = %e, "failed to remove the bootstrap marker")
                }
            }
        }
        Action::SetReplicas { members } => {
            let members: Vec<Member> = members
                .into_iter()
                .filter_map(|(id, address)| match Peer::parse(&address) {
                    Some(peer) => Some(Member { id, peer }),
                    None => {
                        warn!(node = %id, %address, "a member's address cannot be parsed; leaving it out");
                        None
                    }
                })
                .collect();
            let engine = st.args.engine.clone();
            tokio::spawn(async move {
                if let Err(e) = engine.set_replicas(&members).await {
                    warn!(cause = %handlers::error_chain(&e), "failed to configure replication for the members");
                }
            });
        }
        Action::WriteMarker { term } => {
            let marker = st.args.marker.clone();
            st.data_term = term;
            if let Err(e) = marker
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&marker, documents::marker(term)))
            {
                warn!(path = %marker.display(), cause = %e, "failed to write the bootstrap marker");
            }
        }
        Action::RunPrePromote => match st.args.pre_promote.clone() {
            None => feed_later(&me, |now| Event::PrePromoteDone { now, ok: true }),
            Some(handler) => {
                let env = st.args.env.with_event("prePromote").vars();
                tokio::spawn(async move {
                    let call = handler
                        .call(
                            |reply| HandlerMsg::Run {
                                env,
                                reply: Some(reply),
                            },
                            Some(Duration::from_secs(600)),
                        )
                        .await;
                    let ok = matches!(call, Ok(CallResult::Success(r)) if r.outcome.is_success());
                    feed_later(&me, |now| Event::PrePromoteDone { now, ok });
                });
            }
        },
        Action::OnChange {
            role,
            previous,
            primary_address,
        } => {
            let primary = primary_address.as_deref().unwrap_or("none");
            if role == previous {
                info!(role = role.label(), %primary, "following new primary {primary}");
            } else {
                info!(role = role.label(), previous = previous.label(), %primary, "role changed");
            }
            st.args.env.role = role.label().into();
            st.args.env.previous_role = previous.label().into();
            st.args.env.primary_address = primary_address.unwrap_or_default();
            if let Some(handler) = &st.args.on_change {
                let _ = handler.cast(HandlerMsg::Run {
                    env: st.args.env.with_event("onChange").vars(),
                    reply: None,
                });
            }
        }
        Action::WakeAt { at } => {
            let delay = Duration::from_millis(at.saturating_sub(now_millis()));
            myself.send_after(delay, || RoleMsg::Tick);
        }
        // The database may be stopped once the lease is revoked (never before: I6 order).
        Action::Exit => {
            st.exit_requested = true;
            st.answer_stop();
        }
    }
}

fn failed(operation: &str, e: &EngineError) -> EngineResult {
    warn!(operation, cause = %handlers::error_chain(e), "engine operation failed");
    EngineResult::Failed
}

/// Run one engine operation in a task and feed its result (or `Failed`).
fn engine_op<F, Fut>(st: &RoleActorState, me: ActorRef<RoleMsg>, op: F)
where
    F: FnOnce(std::sync::Arc<engines::AnyEngine>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<EngineResult, EngineError>> + Send,
{
    let engine = st.args.engine.clone();
    tokio::spawn(async move {
        let result = match op(engine).await {
            Ok(r) => r,
            Err(e) => failed("engine operation", &e),
        };
        feed_later(&me, |now| Event::Engine { now, result });
    });
}

/// How long a failed restore waits before the role logic may ask again (each attempt reads
/// the repository; a broken one must not be hammered).
const SEED_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Runs a restore from a backup; its failure is logged and answered as `Failed` after
/// [`SEED_RETRY_AFTER`].
fn seed<F, Fut>(st: &RoleActorState, me: ActorRef<RoleMsg>, op: F)
where
    F: FnOnce(std::sync::Arc<engines::AnyEngine>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<EngineResult, String>> + Send,
{
    let engine = st.args.engine.clone();
    tokio::spawn(async move {
        let result = match op(engine).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(cause = %e, "could not start from a backup; trying again");
                tokio::time::sleep(SEED_RETRY_AFTER).await;
                EngineResult::Failed
            }
        };
        feed_later(&me, |now| Event::Engine { now, result });
    });
}

fn follow(st: &RoleActorState, me: ActorRef<RoleMsg>, primary: PrimaryKey, clone: bool) {
    let engine = st.args.engine.clone();
    // While the cluster migrates, its primary is a standby of the source.
    let standby = st
        .machine
        .as_ref()
        .and_then(|m| m.view.as_ref())
        .is_some_and(|v| v.standby_of.is_some());
    let session = st.session.clone();
    let seeder = st
        .args
        .seeder
        .clone()
        .filter(|s| clone && s.seeds_replicas());
    tokio::spawn(async move {
        if let Some(seeder) = seeder {
            let result = seed_replica(&engine, &session, &seeder, &primary).await;
            if let Some(result) = result {
                feed_later(&me, |now| Event::Engine { now, result });
                return;
            }
        }
        let mut peer = Peer::parse(&primary.address);
        if let Some(p) = peer.as_mut() {
            p.standby = standby;
        }
        if clone && let Some(p) = peer.as_mut() {
            // Where the primary's agent serves its data (engines that clone over it).
            p.agent = match session.node(&primary.node).await {
                Ok(doc) => doc.and_then(|d| d.agent_url),
                Err(e) => {
                    warn!(cause = %handlers::error_chain(&e), "failed to read the primary's node document");
                    None
                }
            };
        }
        let result = match peer {
            None => {
                warn!(address = %primary.address, "the primary's address cannot be parsed");
                EngineResult::Failed
            }
            Some(peer) => match if clone {
                engine.clone_from_primary(&peer).await
            } else {
                engine.follow(&peer).await
            } {
                Ok(p) if clone => EngineResult::Cloned { position: p },
                Ok(p) => EngineResult::Following { position: p },
                Err(EngineError::NeedsRebuild { reason }) => {
                    warn!(%reason, "local data diverged from the primary; needs rebuild");
                    EngineResult::NeedsRebuild
                }
                // Expected: the primary's agent serves one clone at a time.
                Err(e @ EngineError::Busy { .. }) => {
                    info!(cause = %handlers::error_chain(&e), "the primary is busy with another clone; trying again shortly");
                    EngineResult::Failed
                }
                Err(e) => failed("follow the primary", &e),
            },
        };
        feed_later(&me, |now| Event::Engine { now, result });
    });
}

/// `engine.seed: backup | auto`: restore the cluster's newest backup and follow `primary`
/// from it. `None` when the restore failed and the seed falls back to a clone (`auto`). Once
/// the restored data is in place it is the node's (a backup of this cluster): a failed
/// follow then does not discard it; the role logic follows again as after any clone.
async fn seed_replica(
    engine: &std::sync::Arc<engines::AnyEngine>,
    session: &crate::node::session::SessionHandle<cluster::store::EtcdStore>,
    seeder: &crate::node::seed::Seeder,
    primary: &PrimaryKey,
) -> Option<EngineResult> {
    let restored = match seeder.restore(engine.as_ref(), Purpose::Join).await {
        Ok(p) => p,
        Err(e) if seeder.falls_back() => {
            warn!(cause = %e, "could not seed from the repository; cloning the primary instead (engine.seed: auto)");
            return None;
        }
        Err(e) => {
            tracing::error!(cause = %e, "could not seed from the repository (engine.seed: backup); trying again");
            tokio::time::sleep(SEED_RETRY_AFTER).await;
            return Some(EngineResult::Failed);
        }
    };
    let Some(peer) = Peer::parse(&primary.address) else {
        warn!(address = %primary.address, "the primary's address cannot be parsed");
        return Some(EngineResult::Cloned { position: restored });
    };
    for attempt in 1..=FOLLOW_AFTER_SEED_ATTEMPTS {
        // The restore did not need the primary; following does, once it serves as one (a
        // primary that bootstraps from a backup itself sets its position only then).
        let serving = matches!(
            session.node(&primary.node).await,
            Ok(Some(d)) if d.role == wire::Role::Primary && !d.fenced
        );
        if !serving {
            info!(attempt, primary = %primary.node, "seeded from the repository; waiting for the primary to serve");
            tokio::time::sleep(Duration::from_secs(3)).await;
            continue;
        }
        match engine.follow(&peer).await {
            Ok(position) => {
                info!(primary = %primary.node, "seeded from the repository; following the primary");
                return Some(EngineResult::Cloned { position });
            }
            Err(EngineError::NeedsRebuild { reason }) => {
                warn!(%reason, "the restored backup does not match the primary's history");
                return Some(EngineResult::NeedsRebuild);
            }
            Err(e) => {
                warn!(attempt, cause = %handlers::error_chain(&e), primary = %primary.node, "seeded from the repository; following the primary failed, trying again");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
    }
    // The data is a backup of this cluster and stays; the role logic follows again when the
    // primary changes or the database restarts.
    Some(EngineResult::Cloned { position: restored })
}

/// How often following is tried after a seed before the node settles as a replica anyway.
const FOLLOW_AFTER_SEED_ATTEMPTS: u32 = 10;

/// Delete `key` iff it is bound to the session's lease.
fn release(st: &RoleActorState, key: ClusterKey) {
    let session = st.session.clone();
    tokio::spawn(async move {
        if let Err(e) = session.release(&key).await {
            warn!(cause = %handlers::error_chain(&e), ?key, "failed to release a key");
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn claim(
    myself: &ActorRef<RoleMsg>,
    st: &mut RoleActorState,
    reason: ClaimReason,
    previous: Option<String>,
    position: Position,
    at: u64,
    history_rev: Option<u64>,
    write_initialized: bool,
) {
    let me = myself.clone();
    let me_id = &st.args.identity;
    let claim = PrimaryClaim {
        primary: {
            let health = st.args.health.borrow();
            documents::primary(
                me_id,
                position,
                wire::NodeStatus::Starting,
                health.replication,
                &health.server,
            )
        },
        history: documents::history(st.history.clone(), me_id, reason, previous, position, at),
        history_revision: history_rev,
        initialized: None,
    };
    let session = st.session.clone();
    let (engine, identity) = (st.args.engine.clone(), me_id.clone());
    let standby_of = st.args.migrate_from.as_ref().map(|m| m.peer.to_string());
    tokio::spawn(async move {
        let mut claim = claim;
        if write_initialized {
            // The data's identity goes into `initialized`: a node whose data has another
            // one never joins (`Phase::Foreign`). A replica of a migration source writes
            // nothing: its identity is the source's, if the engine has one of its own.
            let id = match if standby_of.is_some() {
                engine.identity().await
            } else {
                engine.create_identity().await
            } {
                Ok(id) => id,
                Err(e) => {
                    warn!(cause = %handlers::error_chain(&e), "could not record the data's identity; the cluster is initialised without one (nodes are not checked against it)");
                    None
                }
            };
            claim.initialized = Some(documents::initialized(&identity, id, standby_of));
        }
        let won = match session.claim_primary(claim).await {
            Ok(won) => won,
            Err(e) => {
                warn!(cause = %handlers::error_chain(&e), "failed to claim the primary key");
                false
            }
        };
        if won {
            info!(reason = %cluster::wire::HistoryReason::from(reason), "won the primary key");
            if reason == ClaimReason::Failover {
                counter!("autopilot_failovers_total").increment(1);
            }
        }
        feed_later(&me, |now| Event::ClaimResult { now, won });
    });
}

/// Once per term, after promotion: rewrite the `primary` key (claimed as `starting`) as
/// `online` with the promoted position, iff it is still bound to our lease. Replicas follow
/// only an `online` primary, so a failed write is retried for up to a TTL (after that the
/// lease, and with it the key, is in doubt anyway).
fn mark_primary_online(st: &mut RoleActorState, role: Role, position: Position) {
    if role != Role::Primary {
        st.primary_online = false;
        return;
    }
    if st.primary_online || st.session.lease().current.is_none() {
        return;
    }
    st.primary_online = true;
    let doc = primary_doc(st, position);
    st.written_primary = Some((doc.clone(), Instant::now()));
    let session = st.session.clone();
    let give_up = tokio::time::Instant::now() + Duration::from_millis(st.args.params.ttl);
    tokio::spawn(async move {
        loop {
            match session.update_primary(doc.clone()).await {
                Ok(true) => return,
                Ok(false) => {
                    info!("the primary key is no longer ours; not marking it online");
                    return;
                }
                Err(e) if tokio::time::Instant::now() < give_up => {
                    warn!(cause = %handlers::error_chain(&e), "failed to mark the primary key online; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    warn!(cause = %handlers::error_chain(&e), "failed to mark the primary key online; giving up");
                    return;
                }
            }
        }
    });
}

/// On the online primary: rewrite the cluster's `state` document when this read changes it.
pub fn publish_state(st: &mut RoleActorState, snap: &cluster::snapshot::ClusterSnapshot) {
    let primary = st
        .published
        .as_ref()
        .is_some_and(|(r, _, _)| *r == Role::Primary);
    if !primary || !st.primary_online {
        st.written_state = None;
        return;
    }
    let doc = documents::state(&st.args.keys, &st.args.identity, snap);
    if st
        .written_state
        .as_ref()
        .is_some_and(|old| documents::state_same(old, &doc))
    {
        return;
    }
    st.written_state = Some(doc.clone());
    let session = st.session.clone();
    tokio::spawn(async move {
        match session.update_state(&doc).await {
            Ok(true) => {}
            Ok(false) => info!("the primary key is no longer ours; not writing the cluster state"),
            Err(e) => {
                warn!(cause = %handlers::error_chain(&e), "failed to write the cluster state")
            }
        }
    });
}

/// The `online` primary document with the server's current figures.
fn primary_doc(st: &RoleActorState, position: Position) -> wire::PrimaryDoc {
    let health = st.args.health.borrow();
    documents::primary(
        &st.args.identity,
        position,
        wire::NodeStatus::Online,
        health.replication,
        &health.server,
    )
}

/// Write the node document from what the machine last asked to publish and the node's
/// current health and server figures: always when the machine asked (`asked`), else only
/// when something a reader acts on changed or [`documents::REFRESH`] passed (write
/// economy). An online primary's `primary` document follows the same rule.
pub fn publish_node(st: &mut RoleActorState, asked: bool) {
    let Some((role, position, flags)) = &mut st.published else {
        return;
    };
    let (role, position) = (*role, *position);
    let health = st.args.health.borrow();
    flags.healthy = health.healthy;
    flags.replication = health.replication;
    let mut doc = documents::node(&st.args.identity, role, position, flags, &health.server);
    drop(health);
    doc.term = (st.data_term > 0).then_some(st.data_term);
    doc.database_exit.clone_from(&st.database_exit);
    doc.packages.clone_from(&st.args.packages.borrow());
    st.args.view.send_modify(|v| v.node = Some(doc.clone()));
    let due = |written: &Option<(wire::NodeDoc, Instant)>| match written {
        None => true,
        Some((old, at)) => documents::node_changed(old, &doc) || at.elapsed() >= documents::REFRESH,
    };
    if asked || due(&st.written_node) {
        st.written_node = Some((doc.clone(), Instant::now()));
        st.session.update_node(doc);
    }
    if role == Role::Primary && st.primary_online {
        refresh_primary(st, position);
    }
}

/// Rewrite the online primary's `primary` document when it changed in something a reader
/// acts on, or at the slow refresh; only while the key is still bound to our lease.
fn refresh_primary(st: &mut RoleActorState, position: Position) {
    let doc = primary_doc(st, position);
    let due = match &st.written_primary {
        None => true,
        Some((old, at)) => {
            documents::primary_changed(old, &doc) || at.elapsed() >= documents::REFRESH
        }
    };
    if !due {
        return;
    }
    st.written_primary = Some((doc.clone(), Instant::now()));
    let session = st.session.clone();
    tokio::spawn(async move {
        match session.update_primary(doc).await {
            Ok(_) => {}
            Err(e) => {
                warn!(cause = %handlers::error_chain(&e), "failed to refresh the primary key");
            }
        }
    });
}

/// Restart the database with `between` while it is stopped; the machine gets `result`.
fn restart(
    st: &RoleActorState,
    me: ActorRef<RoleMsg>,
    between: engines::Between,
    result: fn(Result<(), String>) -> EngineResult,
) {
    let engine = st.args.engine.clone();
    tokio::spawn(async move {
        let r = engine
            .restart(between)
            .await
            .map_err(|e| handlers::error_chain(&e).to_string());
        feed_later(&me, |now| Event::Engine {
            now,
            result: result(r),
        });
    });
}

/// Run the node's `name` hook (`handlers.upgrade`, `handlers.rollback`) as a restart's
/// step: a failure, a timeout or a missing hook fails the step.
fn hook_step(
    name: &'static str,
    spec: Option<handlers::ExecSpec>,
    env: Vec<(String, String)>,
) -> engines::Between {
    Box::pin(async move {
        let failed = |reason: String| engines::EngineError::Failed {
            operation: if name == "upgrade" {
                "run the upgrade hook"
            } else {
                "run the rollback hook"
            },
            reason,
        };
        let Some(spec) = spec else {
            return Err(failed(format!(
                "there is no handlers.{name} in this node's configuration"
            )));
        };
        match handlers::run(name, &spec, &env).await {
            Ok(handlers::RunOutcome::Exited(s)) if s.success() => Ok(()),
            Ok(handlers::RunOutcome::Exited(s)) => Err(failed(format!("it exited with {s}"))),
            Ok(handlers::RunOutcome::TimedOut) => Err(failed(format!(
                "it outlived its timeout {} and was killed",
                humantime::format_duration(spec.timeout.unwrap_or_default())
            ))),
            Err(e) => Err(failed(format!(
                "it could not start: {}",
                handlers::error_chain(&e)
            ))),
        }
    })
}
