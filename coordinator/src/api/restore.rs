//! `POST …/restore`: rewind a whole cluster in place to a point in time (or to the end of its
//! archive). The coordinator only writes what the agents act on:
//!
//! 1. the `maintenance` key, on, with a reason starting with `restore` (no automatic role
//!    change while the primary restores; the primary's agent deletes a maintenance key whose
//!    reason starts with `restore` once the restored data serves). A cluster already in
//!    maintenance keeps its key as it is (and stays in maintenance afterwards unless that
//!    reason starts with `restore` too);
//! 2. `requests/<primary>` with action `restore` and `restore_to` (create-if-absent: 409
//!    `request_pending` when the primary has a request pending). When that write fails, the
//!    maintenance key this call wrote is deleted again.
//!
//! The primary's agent restores the newest base backup and the archive up to the point into a
//! staging directory, swaps it in (the old data kept aside), serves it as the primary of a new
//! term of the cluster's identity and writes `request_done` or `request_failed`; the replicas
//! of the older term rebuild from it. Admin only, and the body must repeat the cluster's name
//! (`confirm`).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use cluster::store::Store;
use cluster::wire::{
    self, ClusterKeys, MaintenanceDoc, NodeAction, RequestDoc, RestorePoint, Timestamp, TokenRole,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiPath, Body, json};
use super::gate;
use super::nodes::{pending, write_request};
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterPath};

/// Body of `POST …/restore`: exactly one of `time` and `latest`, and `confirm`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Rewind to the last change committed at or before this time (RFC 3339, not in the
    /// future).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-11-23T23:05:00Z")]
    pub time: Option<String>,
    /// `true`: rewind to the end of the archive (every archived change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<bool>,
    /// The cluster's name (the last part of its path), repeated: a restore rewinds every
    /// node of the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// Answer to an accepted restore.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RestoreAccepted {
    /// Always `restore`.
    pub action: NodeAction,
    /// The primary the request was written for: it restores, the others rebuild from it.
    pub node: String,
    /// The point the cluster is rewound to.
    pub restore_to: RestorePoint,
    /// The maintenance key in force.
    pub maintenance: MaintenanceDoc,
    /// Whether this call turned maintenance on (`false`: it was already on).
    pub maintenance_enabled: bool,
    /// etcd revision of the cluster read before writing; follow the outcome with
    /// `GET …/events?since=<revision>`.
    pub revision: i64,
    /// How to follow the restore.
    pub hint: String,
    /// Things the caller should know (maintenance that stays on afterwards).
    pub warnings: Vec<String>,
}

/// The point a restore body names, checked: exactly one of `time` and `latest`, a time not
/// after `now`, and `confirm` equal to `cluster`.
pub fn restore_point(
    req: &RestoreRequest,
    cluster: &str,
    now: Timestamp,
) -> Result<RestorePoint, Problem> {
    let latest = req.latest == Some(true);
    let point = match (&req.time, latest) {
        (Some(_), true) => {
            return Err(Problem::bad_request(
                "invalid_body",
                "give either \"time\" or \"latest\": true, not both",
            ));
        }
        (None, false) => {
            return Err(Problem::bad_request(
                "invalid_body",
                "say where to restore to: \"time\": \"<RFC 3339>\" (the last change committed \
                 at or before it) or \"latest\": true (the end of the archive)",
            ));
        }
        (None, true) => RestorePoint::Latest,
        (Some(t), false) => {
            let shown = crate::audit::bounded(t, 60);
            let at: Timestamp = serde_json::from_value(serde_json::Value::String(t.clone()))
                .map_err(|_| {
                    Problem::bad_request(
                        "invalid_body",
                        format!(
                            "\"time\" {shown:?} is not an RFC 3339 time; write e.g. \
                             2026-11-23T23:05:00Z"
                        ),
                    )
                })?;
            if at > now {
                return Err(Problem::bad_request(
                    "time_in_future",
                    format!(
                        "\"time\" {at} is in the future (the coordinator's clock says {now}): \
                         nothing was committed after now; pick a past time, or \"latest\": true"
                    ),
                ));
            }
            RestorePoint::Time(at)
        }
    };
    if req.confirm.as_deref() != Some(cluster) {
        return Err(Problem::bad_request(
            "confirm_required",
            format!(
                "restore rewinds every node of cluster {cluster}: pass confirm={cluster} \
                 (\"confirm\": \"{cluster}\")"
            ),
        ));
    }
    Ok(point)
}

/// The point as the audit log and maintenance reasons show it.
fn point_text(p: &RestorePoint) -> String {
    match p {
        RestorePoint::Latest => "latest".into(),
        RestorePoint::Time(t) => t.to_string(),
    }
}

/// How the maintenance key stood once [`enable_maintenance`] returned.
enum Maintenance {
    /// This call turned it on with this document.
    Enabled(MaintenanceDoc),
    /// It was on already.
    Already(MaintenanceDoc),
}

fn maintenance_raced(p: &ClusterPath) -> Problem {
    Problem::conflict(
        "maintenance_changed",
        format!(
            "the maintenance key of {} changed while the restore was being requested; look at \
             `autopilotctl show {}` and try again",
            p.target(),
            p.target()
        ),
    )
}

/// Turns maintenance on with `doc` unless it is on already: an absent key is created, a key
/// that says off is replaced only as it was read.
async fn enable_maintenance(
    st: &AppState,
    keys: &ClusterKeys,
    p: &ClusterPath,
    doc: MaintenanceDoc,
) -> Result<Maintenance, Problem> {
    let key = keys.maintenance();
    let store = st.store();
    if let Some((bytes, revision)) = store.get(&key).await.map_err(|e| Problem::store(&e))? {
        match wire::decode::<MaintenanceDoc>(&bytes) {
            Ok(m) if m.enabled => return Ok(Maintenance::Already(m)),
            Ok(_) => {
                if !store
                    .delete_if_revision(&key, revision)
                    .await
                    .map_err(|e| Problem::store(&e))?
                {
                    return Err(maintenance_raced(p));
                }
            }
            Err(_) => {
                return Err(Problem::conflict(
                    "maintenance_unreadable",
                    format!(
                        "the maintenance key of {} holds a document this coordinator cannot \
                         read (a newer version?); set it with `autopilotctl pause {}` first",
                        p.target(),
                        p.target()
                    ),
                ));
            }
        }
    }
    if !store
        .create_if_absent(&key, wire::encode(&doc), None)
        .await
        .map_err(|e| Problem::store(&e))?
    {
        return Err(maintenance_raced(p));
    }
    Ok(Maintenance::Enabled(doc))
}

/// Deletes the maintenance key iff it still holds `ours`; whether it is gone.
async fn undo_maintenance(st: &AppState, keys: &ClusterKeys, ours: &MaintenanceDoc) -> bool {
    let key = keys.maintenance();
    let run = async {
        let Some((bytes, revision)) = st.store().get(&key).await? else {
            return Ok(true);
        };
        if wire::decode::<MaintenanceDoc>(&bytes).ok().as_ref() != Some(ours) {
            return Ok(false); // someone else's now: leave it
        }
        st.store().delete_if_revision(&key, revision).await
    };
    match run.await {
        Ok(gone) => gone,
        Err(e) => {
            tracing::warn!(cause = %crate::problem::store_cause(&e),
                "could not turn off the maintenance a failed restore request turned on");
            false
        }
    }
}

/// Rewind the whole cluster in place to a point in time, or to the end of its archive: turns
/// maintenance on and asks the primary's agent to restore (admin; `confirm` must repeat the
/// cluster's name).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/restore", tag = "actions",
    params(ClusterPath), request_body = RestoreRequest,
    responses((status = 202, body = RestoreAccepted), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn restore(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<RestoreAccepted>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.restore",
        TokenRole::Admin,
        &p,
    )
    .await?;
    let run = async {
        let req: RestoreRequest = json(&body)?;
        let point = restore_point(&req, &p.cluster, Timestamp::now())?;
        let r = view::read(&st, &p).await?;
        let Some(primary) = r.doc.primary.as_ref().map(|x| x.id.clone()) else {
            return Err(Problem::conflict(
                "no_primary",
                format!(
                    "no primary to restore on: cluster {} has no primary (the primary restores \
                     and the other nodes rebuild from it); wait for one, or promote a node \
                     (`autopilotctl failover {} --candidate <node>`), then try again",
                    p.target(),
                    p.target()
                ),
            ));
        };
        if r.doc.switchover.is_some() {
            return Err(Problem::conflict(
                "switchover_pending",
                format!(
                    "a switchover request is pending: the primary may change under the restore; \
                     wait for it to finish (`autopilotctl events {} --follow`) and try again",
                    p.target()
                ),
            ));
        }
        if r.doc.requests.iter().any(|q| q.node == primary) {
            return Err(pending(&r, &p, &primary));
        }
        let keys = p.keys(&st)?;
        let by = &g.caller.name;
        let doc = MaintenanceDoc {
            schema: wire::SCHEMA_VERSION,
            enabled: true,
            reason: Some(format!("restore to {point} requested by {by}")),
            by: Some(by.clone()),
            // Whole milliseconds, as stored: [`undo_maintenance`] compares what it reads back.
            time: Some(Timestamp::from_unix_millis(Timestamp::now().unix_millis())),
        };
        let mut warnings = Vec::new();
        let (maintenance, enabled_here) = match enable_maintenance(&st, &keys, &p, doc).await? {
            Maintenance::Enabled(m) => (m, true),
            Maintenance::Already(m) => {
                let why = m.reason.as_deref().unwrap_or("");
                if !why.starts_with("restore") {
                    warnings.push(format!(
                        "the cluster was already in maintenance ({}): it stays in maintenance \
                         after the restore; turn it off with `autopilotctl resume {}`",
                        if why.is_empty() {
                            "no reason given"
                        } else {
                            why
                        },
                        p.target()
                    ));
                }
                (m, false)
            }
        };
        let doc = RequestDoc {
            restore_to: Some(point.clone()),
            ..super::nodes::request(NodeAction::Restore, by)
        };
        let written = write_request(&st, &keys, &primary, &doc).await;
        if !matches!(written, Ok(true)) {
            let mut problem = match written {
                Err(e) => e,
                _ => pending(&r, &p, &primary),
            };
            if enabled_here && !undo_maintenance(&st, &keys, &maintenance).await {
                problem.detail += &format!(
                    "; the maintenance this request turned on is still on: turn it off with \
                     `autopilotctl resume {}`",
                    p.target()
                );
            }
            return Err(problem);
        }
        Ok((
            StatusCode::ACCEPTED,
            Json(RestoreAccepted {
                action: NodeAction::Restore,
                node: primary,
                restore_to: point,
                maintenance,
                maintenance_enabled: enabled_here,
                revision: r.doc.revision,
                hint: format!("follow with autopilotctl events {} --follow", p.target()),
                warnings,
            }),
        ))
    };
    let res = run.await;
    let detail = res.as_ref().ok().map(|(_, a)| {
        format!(
            "node={} restore_to={} maintenance_enabled={}",
            a.node,
            point_text(&a.restore_to),
            a.maintenance_enabled
        )
    });
    g.finish(res, detail).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        // 2026-11-24T16:00:00Z
        Timestamp::from_unix_millis(1_795_536_000_000)
    }

    fn body(v: serde_json::Value) -> Result<RestoreRequest, Problem> {
        json(&axum::body::Bytes::from(v.to_string()))
    }

    fn check(v: serde_json::Value) -> Result<RestorePoint, Problem> {
        restore_point(&body(v)?, "main", now())
    }

    #[test]
    fn a_time_or_latest_and_the_cluster_name() {
        assert_eq!(
            check(serde_json::json!({"latest": true, "confirm": "main"})).expect("latest"),
            RestorePoint::Latest
        );
        assert_eq!(
            check(serde_json::json!({"time": "2026-11-24T15:00:00Z", "confirm": "main"}))
                .expect("time"),
            RestorePoint::Time(Timestamp::from_unix_millis(1_795_532_400_000))
        );
        // `latest: false` beside a time is no second point.
        assert!(
            check(
                serde_json::json!({"time": "2026-11-24T15:00:00Z", "latest": false,
                "confirm": "main"})
            )
            .is_ok()
        );
    }

    #[test]
    fn both_or_neither_point_is_refused_naming_the_fields() {
        let both = check(
            serde_json::json!({"time": "2026-11-24T15:00:00Z", "latest": true,
            "confirm": "main"}),
        )
        .expect_err("both");
        assert_eq!((both.status, both.code.as_str()), (400, "invalid_body"));
        assert!(
            both.detail.contains("\"time\"") && both.detail.contains("\"latest\""),
            "{}",
            both.detail
        );
        for v in [
            serde_json::json!({"confirm": "main"}),
            serde_json::json!({"latest": false, "confirm": "main"}),
        ] {
            let neither = check(v).expect_err("neither");
            assert_eq!(
                (neither.status, neither.code.as_str()),
                (400, "invalid_body")
            );
            assert!(
                neither.detail.contains("\"latest\": true"),
                "{}",
                neither.detail
            );
        }
    }

    #[test]
    fn a_bad_or_future_time_is_refused() {
        let bad =
            check(serde_json::json!({"time": "yesterday", "confirm": "main"})).expect_err("bad");
        assert_eq!((bad.status, bad.code.as_str()), (400, "invalid_body"));
        assert!(
            bad.detail.contains("\"yesterday\" is not an RFC 3339 time"),
            "{}",
            bad.detail
        );
        let future = check(serde_json::json!({"time": "2026-11-24T16:00:01Z", "confirm": "main"}))
            .expect_err("future");
        assert_eq!(
            (future.status, future.code.as_str()),
            (400, "time_in_future")
        );
        assert!(
            future.detail.contains("\"latest\": true"),
            "{}",
            future.detail
        );
        // Now itself is not the future.
        assert!(
            check(serde_json::json!({"time": "2026-11-24T16:00:00Z", "confirm": "main"})).is_ok()
        );
    }

    #[test]
    fn confirm_must_repeat_the_cluster_name() {
        for v in [
            serde_json::json!({"latest": true}),
            serde_json::json!({"latest": true, "confirm": "other"}),
            serde_json::json!({"latest": true, "confirm": "demo/pg/main"}),
        ] {
            let p = check(v).expect_err("no confirm");
            assert_eq!((p.status, p.code.as_str()), (400, "confirm_required"));
            assert_eq!(
                p.detail,
                "restore rewinds every node of cluster main: pass confirm=main (\"confirm\": \
                 \"main\")"
            );
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_invalid_bodies() {
        for raw in [
            r#"{"latest": true, "confirm": "main", "force": true}"#,
            r#"{"latest": "yes", "confirm": "main"}"#,
            r#"{"time": 5, "confirm": "main"}"#,
        ] {
            let p = json::<RestoreRequest>(&axum::body::Bytes::from(raw)).expect_err(raw);
            assert_eq!(p.code, "invalid_body", "{raw}");
        }
    }

    #[test]
    fn the_route_is_in_the_openapi_document() {
        let doc = serde_json::to_value(crate::api::openapi()).expect("json");
        let op = &doc["paths"]["/v1/clusters/{namespace}/{project}/{cluster}/restore"]["post"];
        assert_eq!(op["tags"][0], "actions", "{op}");
        for code in ["202", "400", "401", "403", "404", "409"] {
            assert!(op["responses"][code].is_object(), "{code}: {op}");
        }
        let schemas = &doc["components"]["schemas"];
        for s in ["RestoreRequest", "RestoreAccepted", "RestorePoint"] {
            assert!(schemas[s].is_object(), "{s} not in components");
        }
    }
}
