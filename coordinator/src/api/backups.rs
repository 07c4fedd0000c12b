//! Backup routes (issue 17): a cluster's backups as its agents record them
//! (`backup/records/<id>`, no lease) and the operator's requests to them
//! (`backup/requests/<request id>`):
//!
//! - `GET …/backups` (viewer): every record, newest first, and the requests not carried out
//!   yet.
//! - `GET …/backups/{id}` (viewer): one record, its chain (the full first) and the manual
//!   restore instructions (`backup::instructions`), which need nothing of Autopilot.
//! - `POST …/backups` (operator, `{"job": "nightly"}`): take a backup with that job now;
//!   `POST …/backups/{id}/verify` and `…/test-restore` (operator): re-read and re-hash a
//!   backup, or restore it into a scratch server and check it.
//!
//! The three requests write a `BackupRequestDoc` under a new id (the time and 32 random bits,
//! like a backup id, so requests sort by time); one node's backup agent carries it out,
//! records events (`backup_started`, `backup_done`, `backup_verified`, …) and deletes it.
//! The same request while one is pending is refused (409 `request_pending`). Like the node
//! verbs they pass the gate and record their outcome in the audit log (`Gate::finish`).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use backup::instructions::{self, Input};
use backup::repo::BackupId;
use cluster::store::{EtcdStore, RangeQuery, Store};
use cluster::wire::{
    self, BackupAction, BackupRecordDoc, BackupRequestDoc, BackupStatus, ClusterKey, ClusterKeys,
    Timestamp, TokenRole,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, Body, json};
use super::gate::{self, Gate};
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::ClusterPath;

/// A backup id in a URL.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BackupPath {
    /// Namespace (tenant).
    pub namespace: String,
    /// Project.
    pub project: String,
    /// Cluster name.
    pub cluster: String,
    /// Backup id, e.g. `20261203T153000Z-1a2b3c4d`.
    pub id: String,
}

/// A request to the backup agents not carried out yet (`backup/requests/<id>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PendingBackupRequest {
    /// The request id (its key's last segment).
    pub id: String,
    /// What it asks.
    pub action: BackupAction,
    /// `backup`: the job to run.
    #[serde(default)]
    pub job: Option<String>,
    /// `verify`, `test_restore`: the backup.
    #[serde(default)]
    pub backup_id: Option<String>,
    /// Who asked.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// When.
    #[serde(default)]
    pub time: Option<Timestamp>,
}

/// Answer of `GET …/backups`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    /// Every backup record of the cluster, newest first.
    pub backups: Vec<BackupRecordDoc>,
    /// Requests the agents have not carried out yet, oldest first.
    pub requests: Vec<PendingBackupRequest>,
    /// Keys whose documents could not be read (written by a newer version, or by hand).
    pub unreadable: Vec<String>,
    /// etcd revision of the read; `GET …/events?since=<revision>` continues from here.
    pub revision: i64,
}

/// Answer of `GET …/backups/{id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupDetail {
    /// The backup's record.
    pub backup: BackupRecordDoc,
    /// The backups a restore applies, the full first and this one last (one id for a
    /// full backup).
    pub chain: Vec<String>,
    /// How to restore it by hand, without Autopilot: shell commands with comments.
    pub instructions: String,
}

/// Body of `POST …/backups`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBackupRequest {
    /// The backup job to run now (a name from the agents' `backup.jobs`): its method, type,
    /// destinations and placement.
    pub job: String,
}

/// Answer to an accepted backup request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupRequestAccepted {
    /// The request id.
    pub id: String,
    /// The etcd key written (`<prefix>/<ns>/<project>/<cluster>/backup/requests/<id>`).
    pub key: String,
    /// `backup`, `verify` or `test_restore`.
    pub action: BackupAction,
    /// `backup`: the job.
    pub job: Option<String>,
    /// `verify`, `test_restore`: the backup.
    pub backup_id: Option<String>,
    /// etcd revision of the read before writing; follow the outcome with
    /// `GET …/events?since=<revision>`.
    pub revision: i64,
}

/// A cluster's backup documents, decoded.
struct Backups {
    /// Records, newest first.
    records: Vec<BackupRecordDoc>,
    /// Pending requests, oldest first.
    requests: Vec<PendingBackupRequest>,
    /// Keys (relative to the cluster) that did not decode.
    unreadable: Vec<String>,
    /// The read's revision.
    revision: i64,
}

impl Backups {
    fn record(&self, id: &str) -> Option<&BackupRecordDoc> {
        self.records.iter().find(|r| r.id == id)
    }
}

fn split(b: BackupPath) -> (ClusterPath, String) {
    (
        ClusterPath {
            namespace: b.namespace,
            project: b.project,
            cluster: b.cluster,
        },
        b.id,
    )
}

/// Reads the cluster's `backup/records/` and `backup/requests/` in one range read; 404 when
/// etcd holds no key of the cluster at all.
async fn read(st: &AppState, p: &ClusterPath) -> Result<Backups, Problem> {
    let keys = p.keys(st)?;
    let base = keys.cluster_prefix();
    let q = RangeQuery {
        from: Some(keys.backup_records_prefix()),
        to: EtcdStore::prefix_end(&keys.backup_requests_prefix()),
        limit: 0,
        descending: false,
    };
    let (entries, revision) = st
        .store()
        .get_range(&base, &q)
        .await
        .map_err(|e| Problem::store(&e))?;
    if entries.is_empty() {
        let any = RangeQuery {
            limit: 1,
            ..RangeQuery::default()
        };
        let (some, _) = st
            .store()
            .get_range(&base, &any)
            .await
            .map_err(|e| Problem::store(&e))?;
        if some.is_empty() {
            return Err(p.not_found());
        }
    }
    let mut b = Backups {
        records: Vec::new(),
        requests: Vec::new(),
        unreadable: Vec::new(),
        revision,
    };
    for e in &entries {
        let rel = e.key[base.len()..].to_owned();
        match keys.parse(&e.key) {
            Some(ClusterKey::BackupRecord(id)) => match wire::decode::<BackupRecordDoc>(&e.value) {
                // A record is filed under its own id; another is not to be trusted.
                Ok(r) if r.id == id => b.records.push(r),
                _ => b.unreadable.push(rel),
            },
            Some(ClusterKey::BackupRequest(id)) => {
                match wire::decode::<BackupRequestDoc>(&e.value) {
                    Ok(r) => b.requests.push(PendingBackupRequest {
                        id,
                        action: r.action,
                        job: r.job,
                        backup_id: r.backup_id,
                        requested_by: r.requested_by,
                        time: r.time,
                    }),
                    Err(_) => b.unreadable.push(rel),
                }
            }
            _ => {}
        }
    }
    // Ids start with their UTC start time: newest first is the ids in reverse order.
    b.records.sort_by(|x, y| y.id.cmp(&x.id));
    b.requests
        .sort_by(|x, y| (x.time, &x.id).cmp(&(y.time, &y.id)));
    Ok(b)
}

/// The id checked for its form (400 naming the expected form otherwise).
fn backup_id(p: &ClusterPath, id: &str) -> Result<BackupId, Problem> {
    BackupId::parse(id).map_err(|_| {
        Problem::bad_request(
            "invalid_backup_id",
            format!(
                "{:?} is not a backup id: expected the form 20261203T153000Z-1a2b3c4d (the UTC \
                 start time, '-', 8 lowercase hex digits); list them with `autopilotctl backup \
                 list {}`",
                crate::audit::bounded(id, 100),
                p.target()
            ),
        )
    })
}

fn no_backup(p: &ClusterPath, id: &BackupId) -> Problem {
    Problem::not_found(
        "backup_not_found",
        format!(
            "cluster {} has no backup {id} (no record backup/records/{id}: never taken, or \
             removed by retention); list them with `autopilotctl backup list {}`",
            p.target(),
            p.target()
        ),
    )
}

/// Where the objects are, in words, for the instructions: the record names repositories only
/// (their locations are in the agents' configuration).
fn repository_words(r: &BackupRecordDoc) -> String {
    let quoted: Vec<String> = r.repositories.iter().map(|n| format!("{n:?}")).collect();
    match quoted.as_slice() {
        [] => "the repository".to_owned(),
        [one] => format!("repository {one}"),
        many => format!("one of the repositories {}", many.join(", ")),
    }
}

/// The cluster's backup records, newest first, and the requests not carried out yet.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/backups", tag = "backups",
    params(ClusterPath),
    responses((status = 200, body = BackupList), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list_backups(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<BackupList>, Problem> {
    gate::cluster(&st, &headers, client, "backup.list", TokenRole::Viewer, &p).await?;
    let b = read(&st, &p).await?;
    Ok(Json(BackupList {
        backups: b.records,
        requests: b.requests,
        unreadable: b.unreadable,
        revision: b.revision,
    }))
}

/// One backup: its record, its chain and how to restore it by hand.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/backups/{id}",
    tag = "backups", params(BackupPath),
    responses((status = 200, body = BackupDetail), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_backup(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(b): ApiPath<BackupPath>,
) -> Result<Json<BackupDetail>, Problem> {
    let (p, id) = split(b);
    gate::cluster(&st, &headers, client, "backup.get", TokenRole::Viewer, &p).await?;
    p.keys(&st)?;
    let id = backup_id(&p, &id)?;
    let b = read(&st, &p).await?;
    let Some(record) = b.record(id.as_str()) else {
        return Err(no_backup(&p, &id));
    };
    let input = Input::from_record(record, &b.records, &p.target(), &repository_words(record));
    Ok(Json(BackupDetail {
        backup: record.clone(),
        chain: input.chain.iter().map(|l| l.backup_id.clone()).collect(),
        instructions: instructions::manual(&input),
    }))
}

/// Writes `backup/requests/<new id>` after checking no such request is pending.
async fn write_request(
    st: &AppState,
    p: &ClusterPath,
    b: &Backups,
    doc: BackupRequestDoc,
) -> Result<(StatusCode, Json<BackupRequestAccepted>), Problem> {
    if let Some(q) = b
        .requests
        .iter()
        .find(|q| q.action == doc.action && q.job == doc.job && q.backup_id == doc.backup_id)
    {
        return Err(Problem::conflict(
            "request_pending",
            format!(
                "the same request is already pending ({} by {} at {}); wait until an agent \
                 has carried it out (`autopilotctl events {} --follow`) and try again",
                q.id,
                q.requested_by.as_deref().unwrap_or("?"),
                q.time.map(|t| t.to_string()).unwrap_or_else(|| "?".into()),
                p.target()
            ),
        ));
    }
    let keys: ClusterKeys = p.keys(st)?;
    // A fresh id collides only if the clock and 32 random bits repeat: retry then.
    for _ in 0..3 {
        let id = BackupId::generate(SystemTime::now())
            .map_err(|e| {
                tracing::error!(cause = %e, "failed to draw random bits for a request id");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the coordinator could not draw random bits for a request id; see its log",
                )
            })?
            .to_string();
        let key = keys.backup_request(&id);
        if st
            .store()
            .create_if_absent(&key, wire::encode(&doc), None)
            .await
            .map_err(|e| Problem::store(&e))?
        {
            return Ok((
                StatusCode::ACCEPTED,
                Json(BackupRequestAccepted {
                    id,
                    key,
                    action: doc.action,
                    job: doc.job,
                    backup_id: doc.backup_id,
                    revision: b.revision,
                }),
            ));
        }
    }
    Err(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_id_taken",
        "three fresh request ids were taken; retry",
    ))
}

fn request(g: &Gate, action: BackupAction) -> BackupRequestDoc {
    BackupRequestDoc {
        schema: wire::SCHEMA_VERSION,
        action,
        job: None,
        backup_id: None,
        requested_by: Some(g.caller.name.clone()),
        time: Some(Timestamp::now()),
    }
}

fn detail(res: &Result<(StatusCode, Json<BackupRequestAccepted>), Problem>) -> Option<String> {
    res.as_ref()
        .ok()
        .map(|(_, a)| match (&a.job, &a.backup_id) {
            (Some(j), _) => format!("request={} job={j}", a.id),
            (_, Some(b)) => format!("request={} backup={b}", a.id),
            _ => format!("request={}", a.id),
        })
}

/// `RunBackupRequest` as sent: the field read as any JSON value, so a missing or mistyped
/// `job` is answered naming it (serde's own message names only the type).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunBackup {
    #[serde(default)]
    job: Option<serde_json::Value>,
}

/// The body of `POST …/backups`; 400 naming the field when it does not fit.
fn run_body(body: &axum::body::Bytes) -> Result<RunBackupRequest, Problem> {
    let raw: RawRunBackup = json(body)?;
    match raw.job {
        Some(serde_json::Value::String(job)) => Ok(RunBackupRequest { job }),
        None | Some(serde_json::Value::Null) => Err(Problem::bad_request(
            "invalid_body",
            "job is required: send {\"job\": \"<name>\"} with a job from the agents' \
             backup.jobs, like \"nightly\"",
        )),
        Some(other) => Err(Problem::bad_request(
            "invalid_body",
            format!(
                "job must be a string, like \"nightly\" (got {})",
                crate::audit::bounded(&other.to_string(), 60)
            ),
        )),
    }
}

/// Take a backup now with one of the agents' backup jobs (placed as its schedule would be).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/backups",
    tag = "backups", params(ClusterPath), request_body = RunBackupRequest,
    responses((status = 202, body = BackupRequestAccepted), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn run_backup(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<BackupRequestAccepted>), Problem> {
    let g = gate::cluster(&st, &headers, client, "backup.run", TokenRole::Operator, &p).await?;
    let run = async {
        let req = run_body(&body)?;
        if let Some(why) = crate::names::job_problem(&req.job) {
            return Err(Problem::bad_request(
                "invalid_body",
                format!(
                    "job {:?} {why}; expected a job name from the agents' backup.jobs, like \
                     \"nightly\" (1 to 63 lowercase letters, digits, '_' or '-')",
                    crate::audit::bounded(&req.job, 100)
                ),
            ));
        }
        let b = read(&st, &p).await?;
        let mut doc = request(&g, BackupAction::Backup);
        doc.job = Some(req.job);
        write_request(&st, &p, &b, doc).await
    };
    let res = run.await;
    let d = detail(&res);
    g.finish(res, d).await
}

/// `verify` or `test-restore` of one recorded, complete backup.
async fn backup_verb(
    st: &AppState,
    headers: &HeaderMap,
    client: SocketAddr,
    b: BackupPath,
    audit: &'static str,
    action: BackupAction,
) -> Result<(StatusCode, Json<BackupRequestAccepted>), Problem> {
    let (p, id) = split(b);
    let g = gate::cluster(st, headers, client, audit, TokenRole::Operator, &p).await?;
    let run = async {
        p.keys(st)?;
        let id = backup_id(&p, &id)?;
        let b = read(st, &p).await?;
        let Some(record) = b.record(id.as_str()) else {
            return Err(no_backup(&p, &id));
        };
        if record.status != BackupStatus::Done {
            return Err(Problem::conflict(
                "backup_not_done",
                format!(
                    "backup {id} is {}, not done: there is nothing complete to {}; pick a done \
                     backup from `autopilotctl backup list {}`",
                    serde_json::to_value(record.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "unknown".into()),
                    if action == BackupAction::Verify {
                        "verify"
                    } else {
                        "restore"
                    },
                    p.target()
                ),
            ));
        }
        let mut doc = request(&g, action);
        doc.backup_id = Some(id.to_string());
        write_request(st, &p, &b, doc).await
    };
    let res = run.await;
    let d = detail(&res);
    g.finish(res, d).await
}

/// Re-read and re-hash every stored object of a backup (an agent with access to its
/// repositories does it and records `backup_verified` or `backup_verify_failed`).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/backups/{id}/verify",
    tag = "backups", params(BackupPath),
    responses((status = 202, body = BackupRequestAccepted), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn verify_backup(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(b): ApiPath<BackupPath>,
) -> Result<(StatusCode, Json<BackupRequestAccepted>), Problem> {
    backup_verb(
        &st,
        &headers,
        client,
        b,
        "backup.verify",
        BackupAction::Verify,
    )
    .await
}

/// Restore a backup into a scratch server and run the engine's checks (recorded as
/// `backup_verified` or `backup_verify_failed`).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/backups/{id}/test-restore",
    tag = "backups", params(BackupPath),
    responses((status = 202, body = BackupRequestAccepted), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn test_restore_backup(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(b): ApiPath<BackupPath>,
) -> Result<(StatusCode, Json<BackupRequestAccepted>), Problem> {
    backup_verb(
        &st,
        &headers,
        client,
        b,
        "backup.test_restore",
        BackupAction::TestRestore,
    )
    .await
}
