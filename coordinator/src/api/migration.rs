//! A live migration from an external database (`cluster.bootstrap.migrate_from`):
//!
//! - `GET …/migration`: whether the cluster still replicates from its source, which node
//!   leads it (the standby leader, the `primary` key's holder), whether that node receives
//!   and how far behind it applies, as its database reports it, and whether a cutover is
//!   pending.
//! - `POST …/migration/cutover` (admin; the body repeats the cluster's name): writes
//!   `requests/<leader>` with action `cutover`. The leader's agent makes the source refuse
//!   writes, waits until it has everything the source committed, ends the migration in
//!   `initialized` and promotes itself; its `request_done` event says how long writes were
//!   refused (the write outage), `request_failed` why it could not.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use cluster::wire::{NodeAction, Position, ReplicaState, TokenRole};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::clusters::read_gate;
use super::extract::{ApiPath, Body, json};
use super::gate;
use super::nodes::{pending, write_request};
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterPath};

/// The state of a cluster's live migration.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MigrationStatus {
    /// Whether the cluster replicates from an external source now (`false` before a
    /// bootstrap, for a cluster that never migrated, and after the cutover).
    pub migrating: bool,
    /// The source (`host:port`), while migrating.
    #[serde(default)]
    pub source: Option<String>,
    /// The node that leads the cluster: the standby leader while migrating, the primary
    /// after the cutover.
    #[serde(default)]
    pub leader: Option<String>,
    /// Whether the leader receives from the source now.
    #[serde(default)]
    pub receiving: Option<bool>,
    /// The leader's replication receiver, as its database reports it.
    #[serde(default)]
    pub state: Option<ReplicaState>,
    /// How far behind the source the leader applies, in seconds (MariaDB
    /// `Seconds_Behind_Master`; PostgreSQL the age of the last replayed transaction while
    /// received WAL waits).
    #[serde(default)]
    pub lag_seconds: Option<f64>,
    /// PostgreSQL: WAL received from the source but not replayed yet, in bytes.
    #[serde(default)]
    pub lag_bytes: Option<u64>,
    /// MariaDB: transactions received from the source but not applied yet.
    #[serde(default)]
    pub lag_transactions: Option<u64>,
    /// The leader's position.
    #[serde(default)]
    pub position: Option<Position>,
    /// MariaDB: the leader's GTID position.
    #[serde(default)]
    pub gtid: Option<String>,
    /// The last replication error the leader's database reported.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The other nodes: how many follow the leader now.
    pub replicas_following: usize,
    /// A cutover was asked for and not carried out yet.
    pub cutover_pending: bool,
}

/// Body of `POST …/migration/cutover`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CutoverRequest {
    /// The cluster's name (the last part of its path), repeated: the cutover makes the
    /// source refuse writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

/// Answer to an accepted cutover.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CutoverAccepted {
    /// Always `cutover`.
    pub action: NodeAction,
    /// The standby leader the request was written for.
    pub node: String,
    /// The source it stops.
    pub source: String,
    /// etcd revision of the cluster read before writing; follow the outcome with
    /// `GET …/events?since=<revision>`.
    pub revision: i64,
    /// How to follow the cutover.
    pub hint: String,
}

/// The migration status of a cluster as read.
pub fn status(r: &view::Read) -> MigrationStatus {
    let source = r
        .doc
        .initialized
        .as_ref()
        .and_then(|i| i.standby_of.clone());
    let leader = r.doc.primary.as_ref().map(|p| p.id.clone());
    let node = leader
        .as_ref()
        .and_then(|l| r.doc.nodes.iter().find(|n| &n.id == l));
    let rep = node.map(|n| &n.replication);
    MigrationStatus {
        migrating: source.is_some(),
        source,
        receiving: rep.and_then(|r| r.receiving),
        state: rep.and_then(|r| r.state),
        lag_seconds: rep.and_then(|r| r.lag_seconds),
        lag_bytes: rep.and_then(|r| r.lag_bytes),
        lag_transactions: rep.and_then(|r| r.lag_transactions),
        position: rep.map(|r| r.position),
        gtid: rep.and_then(|r| r.gtid.clone()),
        last_error: rep.and_then(|r| r.last_error.clone()),
        replicas_following: r
            .doc
            .nodes
            .iter()
            .filter(|n| {
                leader
                    .as_ref()
                    .is_some_and(|l| n.replication.source.as_ref() == Some(l))
            })
            .count(),
        cutover_pending: r
            .doc
            .requests
            .iter()
            .any(|q| q.action == NodeAction::Cutover),
        leader,
    }
}

/// A live migration's state: the source, the standby leader, its lag.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/migration", tag = "clusters",
    params(ClusterPath),
    responses((status = 200, body = MigrationStatus), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn get_migration(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
) -> Result<Json<MigrationStatus>, Problem> {
    let r = read_gate(&st, &headers, client, "cluster.migration", &p).await?;
    Ok(Json(status(&r)))
}

/// End a live migration: the standby leader makes the source refuse writes, waits until it
/// has everything the source committed and is promoted (admin; `confirm` must repeat the
/// cluster's name).
#[utoipa::path(post, path = "/v1/clusters/{namespace}/{project}/{cluster}/migration/cutover", tag = "actions",
    params(ClusterPath), request_body = CutoverRequest,
    responses((status = 202, body = CutoverAccepted), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn cutover(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    Body(body): Body,
) -> Result<(StatusCode, Json<CutoverAccepted>), Problem> {
    let g = gate::cluster(
        &st,
        &headers,
        client,
        "cluster.cutover",
        TokenRole::Admin,
        &p,
    )
    .await?;
    let run = async {
        let req: CutoverRequest = json(&body)?;
        if req.confirm.as_deref() != Some(p.cluster.as_str()) {
            return Err(Problem::bad_request(
                "confirm_required",
                format!(
                    "cutover makes the source of cluster {c} refuse writes and promotes the \
                     cluster: pass confirm={c} (\"confirm\": \"{c}\")",
                    c = p.cluster
                ),
            ));
        }
        let r = view::read(&st, &p).await?;
        let s = status(&r);
        let Some(source) = s.source else {
            return Err(Problem::conflict(
                "not_migrating",
                format!(
                    "cluster {} does not replicate from an external source (its `initialized` \
                     names none): there is nothing to cut over",
                    p.target()
                ),
            ));
        };
        let Some(leader) = s.leader else {
            return Err(Problem::conflict(
                "no_primary",
                format!(
                    "cluster {} has no standby leader right now (an election?); wait for one \
                     (`autopilotctl migrate status {}`) and try again",
                    p.target(),
                    p.target()
                ),
            ));
        };
        if r.doc.requests.iter().any(|q| q.node == leader) {
            return Err(pending(&r, &p, &leader));
        }
        let keys = p.keys(&st)?;
        let doc = super::nodes::request(NodeAction::Cutover, &g.caller.name);
        if !write_request(&st, &keys, &leader, &doc).await? {
            return Err(pending(&r, &p, &leader));
        }
        Ok((
            StatusCode::ACCEPTED,
            Json(CutoverAccepted {
                action: NodeAction::Cutover,
                node: leader,
                source,
                revision: r.doc.revision,
                hint: format!("follow with autopilotctl events {} --follow", p.target()),
            }),
        ))
    };
    let res = run.await;
    let detail = res
        .as_ref()
        .ok()
        .map(|(_, a)| format!("node={} source={}", a.node, a.source));
    g.finish(res, detail).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routes_are_in_the_openapi_document() {
        let doc = serde_json::to_value(crate::api::openapi()).expect("json");
        let paths = &doc["paths"];
        let get = &paths["/v1/clusters/{namespace}/{project}/{cluster}/migration"]["get"];
        assert_eq!(get["tags"][0], "clusters", "{get}");
        let post = &paths["/v1/clusters/{namespace}/{project}/{cluster}/migration/cutover"]["post"];
        assert_eq!(post["tags"][0], "actions", "{post}");
        for code in ["202", "400", "401", "403", "404", "409"] {
            assert!(post["responses"][code].is_object(), "{code}: {post}");
        }
        let schemas = &doc["components"]["schemas"];
        for s in ["MigrationStatus", "CutoverRequest", "CutoverAccepted"] {
            assert!(schemas[s].is_object(), "{s} not in components");
        }
    }

    #[test]
    fn unknown_fields_are_invalid_bodies() {
        for raw in [r#"{"confirm": "main", "force": true}"#, r#"{"confirm": 5}"#] {
            let p = json::<CutoverRequest>(&axum::body::Bytes::from(raw)).expect_err(raw);
            assert_eq!(p.code, "invalid_body", "{raw}");
        }
    }
}
