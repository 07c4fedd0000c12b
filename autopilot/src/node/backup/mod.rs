//! The backup agent (issue 17): runs the configured backup jobs and the scheduled
//! verification on the node the placement chooses, one slot at a time, with the slot's key in
//! etcd bound to this node's lease as the lock.
//!
//! ```text
//! every TICK:  requests (backup/requests/*) ─┐
//!              jobs' latest slots           ─┼─▶ placement (pure, backup::placement) ─▶ this node?
//!              verification's latest slot   ─┘        └─▶ backup/slots/<job>/<slot> created under
//!                                                          our lease ─▶ run (one at a time)
//! ```
//!
//! A run that loses the lease is cancelled (another node may retry the slot once the key is
//! gone: never two runners at once). What a run does is in [`run`] (backups), [`check`]
//! (verification and test restores) and [`expire`] (retention); what it records in
//! [`records`]. The catalog is the node's own and works while etcd is down; the slot lock
//! needs etcd, so while etcd is unreachable no slot starts (the age of the newest backup is
//! a metric with an alert).

mod archive;
mod binlogs;
mod check;
mod expire;
pub(crate) mod notify;
pub(crate) mod pitr;
pub(crate) mod records;
pub(crate) mod restore;
mod run;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backup::catalog::Catalog;
use backup::placement::{self, Candidate, Placement, RunOn};
use backup::repo::{ClusterId, Repository};
use backup::schedule::{Schedule, slot_name};
use cluster::snapshot::ClusterSnapshot;
use cluster::store::{EtcdStore, LeaseId, Store};
use cluster::wire::{
    self, BackupAction, BackupSlotDoc, BackupStatus, ClusterKeys, EventKind, Health, NodeStatus,
    Role, Timestamp,
};
use engines::AnyEngine;
use metrics::counter;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{BackupConfig, BackupJobConfig, Config, EngineConfig};
use crate::node::env::EventEnv;
use crate::node::status::AgentView;

/// How often due slots and requests are looked at.
const TICK: Duration = Duration::from_secs(2);
/// A slot scheduled this long before the agent started is still run when nobody ran it (an
/// agent restarted around a job's time does not skip it).
const MISSED_SLOT_GRACE: Duration = Duration::from_secs(3600);
/// The `<job>` segment of request slots and of the scheduled verification.
pub(crate) const REQUESTS_SEGMENT: &str = "_requests";
const VERIFY_SEGMENT: &str = "_verify";
/// Finished slot keys kept per job (older ones are deleted by the runner).
const SLOTS_KEPT: usize = 20;

/// What every run needs; shared by the actor and its run tasks.
pub(crate) struct Ctx {
    pub node: String,
    pub cluster: ClusterId,
    pub keys: ClusterKeys,
    pub store: Arc<EtcdStore>,
    pub engine: Arc<AnyEngine>,
    pub config: BackupConfig,
    pub repos: Vec<Repository>,
    pub recipients: Vec<backup::pipeline::Recipient>,
    pub catalog: Mutex<Catalog>,
    pub events: crate::node::role::EventWriter,
    pub env: EventEnv,
    pub data_dir: Option<String>,
    pub engine_kind: backup::manifest::EngineKind,
    pub view: watch::Receiver<AgentView>,
    pub http: reqwest::Client,
}

impl Ctx {
    /// The repositories named by `names`, in that order.
    pub fn repos_named(&self, names: &[String]) -> Vec<Repository> {
        names
            .iter()
            .filter_map(|n| self.repos.iter().find(|r| r.name() == n).cloned())
            .collect()
    }

    /// Runs `f` on the catalog (short SQLite work on the caller's thread).
    pub fn catalog<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        let guard = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// The database server's version, as this node's document last said.
    pub fn engine_version(&self) -> String {
        self.view
            .borrow()
            .node
            .as_ref()
            .map(|n| n.version.clone())
            .unwrap_or_default()
    }
}

/// What one slot runs.
#[derive(Clone, Debug)]
pub(crate) enum Work {
    /// A backup job (by index in `config.jobs`).
    Backup { job: usize },
    /// Verify a backup (the newest done one when `None`), with a test restore when the
    /// node has `backup.identity` and `test_restore`.
    Verify {
        backup_id: Option<String>,
        test_restore: bool,
    },
}

/// One slot: the key segments, the work, and the request it answers.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub job_segment: String,
    pub slot: String,
    pub work: Work,
    pub request: Option<String>,
    /// Who asked (requests) or the job's name (schedules).
    pub by: String,
}

impl Slot {
    fn key(&self, keys: &ClusterKeys) -> String {
        keys.backup_slot(&self.job_segment, &self.slot)
    }
}

/// The actor.
pub struct BackupActor;

/// Its arguments.
pub struct BackupArgs {
    ctx: Arc<Ctx>,
}

/// Builds the backup actor's arguments; `Ok(None)` when there is nothing to run (no
/// `backup` section, no jobs and no verification, or a standalone agent). `store` and `keys`
/// are the role actor's: one etcd client per agent.
pub async fn backup_args(
    config: &Config,
    engine: Arc<AnyEngine>,
    view: watch::Receiver<AgentView>,
    etcd: Arc<EtcdStore>,
    keys: ClusterKeys,
) -> Result<Option<BackupArgs>, String> {
    let (Some(b), Some(cluster)) = (&config.backup, &config.cluster) else {
        return Ok(None);
    };
    if b.jobs.is_empty() && b.verification.is_none() && b.archive.is_none() {
        return Ok(None);
    }
    let repos = b
        .repositories
        .iter()
        .map(|r| r.open().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let recipients =
        backup::pipeline::parse_recipients(&b.recipients).map_err(|e| e.to_string())?;
    let catalog = Catalog::open(&b.catalog).map_err(|e| e.to_string())?;
    let (engine_kind, data_dir) = match &config.engine {
        EngineConfig::Mariadb { mariadb, .. } => (
            backup::manifest::EngineKind::Mariadb,
            mariadb.datadir.display().to_string(),
        ),
        EngineConfig::Postgres { postgres, .. } => (
            backup::manifest::EngineKind::Postgres,
            postgres.data_dir.display().to_string(),
        ),
        EngineConfig::Process { .. } => {
            return Err("backups need engine.kind mariadb or postgres".into());
        }
    };
    Ok(Some(BackupArgs {
        ctx: Arc::new(Ctx {
            node: config.node.name.clone(),
            cluster: ClusterId {
                namespace: cluster.namespace.clone(),
                project: cluster.project.clone(),
                name: cluster.name.clone(),
            },
            keys,
            events: crate::node::role::EventWriter::spawn(etcd.clone()),
            store: etcd,
            engine,
            config: b.clone(),
            repos,
            recipients,
            catalog: Mutex::new(catalog),
            env: EventEnv::for_node(config),
            data_dir: Some(data_dir),
            engine_kind,
            view,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("build the webhook client: {e}"))?,
        }),
    }))
}

/// Messages.
pub enum BackupMsg {
    /// Look at due slots and requests.
    Tick,
    /// A run ended.
    Finished {
        /// `job_segment/slot`.
        slot: String,
    },
}

/// A run in progress.
struct Running {
    slot: String,
    lease: LeaseId,
    cancel: CancellationToken,
}

/// The actor's state.
pub struct BackupState {
    ctx: Arc<Ctx>,
    started: SystemTime,
    schedules: Vec<Option<Schedule>>,
    verify_schedule: Option<Schedule>,
    running: Option<Running>,
    /// Slots (`job/slot`) known finished (by us or another node): not looked at again.
    finished: HashSet<String>,
    /// Requests carried out or refused by this node, by id, with the revision seen.
    handled: HashMap<String, i64>,
    /// Slots reported as unplaceable (said once).
    unplaced: HashSet<String>,
    /// Stops the WAL archiver (`archive`).
    archiver: CancellationToken,
}

impl Actor for BackupActor {
    type Msg = BackupMsg;
    type State = BackupState;
    type Arguments = BackupArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: BackupArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let ctx = args.ctx;
        let schedules = ctx
            .config
            .jobs
            .iter()
            .map(|j| Schedule::parse(&j.schedule, &j.time_zone).ok())
            .collect();
        let verify_schedule = ctx
            .config
            .verification
            .as_ref()
            .and_then(|v| Schedule::parse(&v.schedule, &v.time_zone).ok());
        let archiver = CancellationToken::new();
        archive::spawn(ctx.clone(), archiver.clone());
        records::fail_leftovers(&ctx).await;
        let c = ctx.clone();
        tokio::spawn(async move { records::init_metrics(&c).await });
        myself.send_interval(TICK, || BackupMsg::Tick);
        info!(
            jobs = ctx.config.jobs.len(),
            verification = ctx.config.verification.is_some(),
            "backup agent started"
        );
        Ok(BackupState {
            ctx,
            started: SystemTime::now(),
            schedules,
            verify_schedule,
            running: None,
            finished: HashSet::new(),
            handled: HashMap::new(),
            unplaced: HashSet::new(),
            archiver,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            BackupMsg::Tick => tick(&myself, st).await,
            BackupMsg::Finished { slot } => {
                if st.running.as_ref().is_some_and(|r| r.slot == slot) {
                    st.running = None;
                }
                st.finished.insert(slot);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(r) = st.running.take() {
            r.cancel.cancel();
        }
        st.archiver.cancel();
        Ok(())
    }
}

async fn tick(myself: &ActorRef<BackupMsg>, st: &mut BackupState) {
    let (snapshot, lease) = {
        let v = st.ctx.view.borrow();
        (v.snapshot.clone(), v.lease)
    };
    if let Some(r) = &st.running {
        if lease != Some(r.lease) {
            warn!(slot = %r.slot, "lost the lease during a backup run: cancelling it (another node may run the slot)");
            r.cancel.cancel();
        }
        return;
    }
    let (Some(snap), Some(lease)) = (snapshot, lease) else {
        return;
    };
    let now = SystemTime::now();
    for slot in due(st, &snap, now) {
        let id = format!("{}/{}", slot.job_segment, slot.slot);
        if st.finished.contains(&id) {
            continue;
        }
        let (run_on, fallback) = placement_of(&st.ctx.config, &slot.work);
        let previous = previous_runner(&st.ctx, &slot).await;
        match placement::choose(run_on, fallback, &candidates(&snap), previous.as_deref()) {
            Placement::Node(n) if n == st.ctx.node => {}
            Placement::Node(_) => continue,
            Placement::Nobody(why) => {
                // Said once per slot, by the primary (every node sees the same).
                let is_primary = snap.primary.doc().is_some_and(|p| p.id == st.ctx.node);
                if is_primary && st.unplaced.insert(id.clone()) {
                    warn!(slot = %id, "no node may run this backup slot now: {why}; it runs when one may, until the job's next time");
                    counter!("autopilot_backup_slots_unplaced_total").increment(1);
                    records::event(
                        &st.ctx,
                        EventKind::BackupFailed,
                        format!("slot {id}: no node may run it now ({why})"),
                    );
                }
                continue;
            }
        }
        let key = slot.key(&st.ctx.keys);
        match st.ctx.store.get(&key).await {
            Ok(Some((bytes, _))) => {
                if let Ok(doc) = wire::decode::<BackupSlotDoc>(&bytes)
                    && doc.status != BackupStatus::Running
                {
                    st.finished.insert(id);
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                warn!(%key, cause = %handlers::error_chain(&e), "cannot read a backup slot");
                return;
            }
        }
        let doc = BackupSlotDoc {
            schema: wire::SCHEMA_VERSION,
            holder: st.ctx.node.clone(),
            backup_id: None,
            status: BackupStatus::Running,
            started: Timestamp::now(),
            finished: None,
        };
        match st
            .ctx
            .store
            .create_if_absent(&key, wire::encode(&doc), Some(lease))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                warn!(%key, cause = %handlers::error_chain(&e), "cannot take a backup slot");
                return;
            }
        }
        if let Some(r) = &slot.request {
            st.handled.insert(r.clone(), 0);
        }
        let cancel = CancellationToken::new();
        st.running = Some(Running {
            slot: id.clone(),
            lease,
            cancel: cancel.clone(),
        });
        let ctx = st.ctx.clone();
        let me = myself.clone();
        let run = tokio::spawn(async move { carry_out(&ctx, &slot, lease, cancel).await });
        // The run in a task of its own: even if it panicked, the slot is released here and
        // the next one can start (its key expires with nothing written: another node
        // retries it, and the record is marked failed as an orphan's would be).
        tokio::spawn(async move {
            if let Err(e) = run.await {
                error!(slot = %id, cause = %e, "a backup run ended abnormally");
            }
            let _ = me.cast(BackupMsg::Finished { slot: id });
        });
        return;
    }
}

/// The slots due now, requests first.
fn due(st: &mut BackupState, snap: &ClusterSnapshot, now: SystemTime) -> Vec<Slot> {
    let mut out = Vec::new();
    let horizon = st
        .started
        .checked_sub(MISSED_SLOT_GRACE)
        .unwrap_or(st.started);
    let is_primary = snap.primary.doc().is_some_and(|p| p.id == st.ctx.node);
    for (id, (doc, rev)) in &snap.backup_requests {
        if st.handled.get(id).is_some_and(|r| *r == *rev || *r == 0) {
            continue;
        }
        let Some(doc) = doc.doc() else { continue };
        let by = doc
            .requested_by
            .clone()
            .unwrap_or_else(|| "operator".into());
        let work = match doc.action {
            BackupAction::Backup => {
                match doc
                    .job
                    .as_deref()
                    .and_then(|j| st.ctx.config.jobs.iter().position(|c| c.name == j))
                {
                    Some(job) => Work::Backup { job },
                    None => {
                        if is_primary {
                            st.handled.insert(id.clone(), *rev);
                            records::refuse_request(
                                &st.ctx,
                                id,
                                format!(
                                    "no backup job {:?} in this cluster's configuration; expected one of {:?}",
                                    doc.job.clone().unwrap_or_default(),
                                    st.ctx
                                        .config
                                        .jobs
                                        .iter()
                                        .map(|j| &j.name)
                                        .collect::<Vec<_>>()
                                ),
                            );
                        }
                        continue;
                    }
                }
            }
            BackupAction::Verify | BackupAction::TestRestore => Work::Verify {
                backup_id: doc.backup_id.clone(),
                test_restore: doc.action == BackupAction::TestRestore,
            },
            BackupAction::Unknown => {
                if is_primary {
                    st.handled.insert(id.clone(), *rev);
                    records::refuse_request(
                        &st.ctx,
                        id,
                        "its action is not one this agent knows (backup, verify, test_restore)"
                            .to_owned(),
                    );
                }
                continue;
            }
        };
        out.push(Slot {
            job_segment: REQUESTS_SEGMENT.into(),
            slot: id.clone(),
            work,
            request: Some(id.clone()),
            by,
        });
    }
    for (i, job) in st.ctx.config.jobs.iter().enumerate() {
        let Some(at) = st.schedules[i]
            .as_ref()
            .and_then(|s| s.latest_at_or_before(now))
        else {
            continue;
        };
        if at < horizon {
            continue;
        }
        out.push(Slot {
            job_segment: job.name.clone(),
            slot: slot_name(at),
            work: Work::Backup { job: i },
            request: None,
            by: format!("job {}", job.name),
        });
    }
    if let Some(at) = st
        .verify_schedule
        .as_ref()
        .and_then(|s| s.latest_at_or_before(now))
        .filter(|at| *at >= horizon)
    {
        out.push(Slot {
            job_segment: VERIFY_SEGMENT.into(),
            slot: slot_name(at),
            work: Work::Verify {
                backup_id: None,
                test_restore: true,
            },
            request: None,
            by: "scheduled verification".into(),
        });
    }
    out
}

fn placement_of(config: &BackupConfig, work: &Work) -> (RunOn, bool) {
    match work {
        Work::Backup { job } => {
            let j: &BackupJobConfig = &config.jobs[*job];
            (j.run_on, j.fallback_to_primary)
        }
        Work::Verify { .. } => (
            config
                .verification
                .as_ref()
                .map_or(RunOn::Replica, |v| v.run_on),
            true,
        ),
    }
}

/// The node that ran the job's newest backup (incremental jobs keep to it while it is about
/// as current as the others, so the chain builds on one node's data files).
async fn previous_runner(ctx: &Ctx, slot: &Slot) -> Option<String> {
    let Work::Backup { job } = slot.work else {
        return None;
    };
    let job = &ctx.config.jobs[job];
    if job.kind != backup::manifest::BackupType::Incremental {
        return None;
    }
    records::newest_done(ctx, &job.name).await.map(|r| r.node)
}

/// The cluster's nodes as the placement sees them.
fn candidates(snap: &ClusterSnapshot) -> Vec<Candidate> {
    let primary = snap.primary.doc().map(|p| p.id.clone());
    snap.nodes
        .iter()
        .filter_map(|(id, doc)| {
            let d = doc.doc()?;
            let is_primary = primary.as_deref() == Some(id.as_str()) && d.role == Role::Primary;
            let healthy = d.health == Health::Healthy
                && d.status == NodeStatus::Online
                && !d.needs_rebuild
                && d.refused.is_none()
                && (is_primary || d.role == Role::Replica);
            Some(Candidate {
                id: id.clone(),
                primary: is_primary,
                healthy,
                lag: d
                    .replication
                    .lag_seconds
                    .map(|s| Duration::from_secs_f64(s.max(0.0))),
            })
        })
        .collect()
}

/// Runs one slot to its end and records it (the slot key is ours).
async fn carry_out(ctx: &Arc<Ctx>, slot: &Slot, lease: LeaseId, cancel: CancellationToken) {
    let key = slot.key(&ctx.keys);
    let started = Timestamp::now();
    records::fail_orphans(ctx).await;
    let (status, backup_id) = match &slot.work {
        Work::Backup { job } => {
            let outcome = run::take(ctx, &ctx.config.jobs[*job], slot, lease, &cancel).await;
            let job = &ctx.config.jobs[*job];
            if outcome.status == BackupStatus::Done {
                expire::job(ctx, job).await;
            }
            (outcome.status, outcome.backup_id)
        }
        Work::Verify {
            backup_id,
            test_restore,
        } => {
            let ok = check::verify(ctx, backup_id.as_deref(), *test_restore, &cancel).await;
            (
                if ok {
                    BackupStatus::Done
                } else {
                    BackupStatus::Failed
                },
                backup_id.clone(),
            )
        }
    };
    let doc = BackupSlotDoc {
        schema: wire::SCHEMA_VERSION,
        holder: ctx.node.clone(),
        backup_id,
        status,
        started,
        finished: Some(Timestamp::now()),
    };
    // Rewritten without the lease only while it is still ours: a finished slot outlives us.
    match ctx
        .store
        .put_if_holder(&key, &key, wire::encode(&doc), lease)
        .await
    {
        Ok(true) => {}
        Ok(false) => warn!(%key, "the slot key was no longer ours when the run ended"),
        Err(e) => {
            warn!(%key, cause = %handlers::error_chain(&e), "cannot record the end of a backup slot")
        }
    }
    if let Some(r) = &slot.request {
        let _ = ctx.store.delete(&ctx.keys.backup_request(r)).await;
    }
    records::prune_slots(ctx, &slot.job_segment, SLOTS_KEPT).await;
}
