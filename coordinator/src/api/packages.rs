//! `GET /v1/packages`: which nodes of which clusters lag behind their packages' candidate
//! versions (each agent's package watch, `packages:` in its configuration, publishes them in
//! its node document). One row per node and watched package, clusters the token can see
//! only; by default only the packages with an update.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use cluster::wire::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::ApiQuery;
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::{self, ClusterPath};

/// Query of `GET /v1/packages`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PackagesQuery {
    /// Only clusters of this namespace.
    pub namespace: Option<String>,
    /// Every watched package, not only those with an update.
    #[serde(default)]
    pub all: bool,
}

/// One watched package on one node.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PackageRow {
    /// `namespace/project/cluster`.
    pub cluster: String,
    /// The node id.
    pub node: String,
    /// The package.
    pub package: String,
    /// The installed version (`null`: not installed).
    pub installed: Option<String>,
    /// The candidate version (`null`: no source offers it).
    pub candidate: Option<String>,
    /// The candidate is another version than the installed one.
    pub update_available: bool,
    /// It comes from a security archive.
    pub security: bool,
    /// Since when the node has seen this update pending.
    pub since: Option<Timestamp>,
    /// When the node last read the versions.
    pub checked: Timestamp,
    /// Why the node's last check or index refresh failed, if it did.
    pub error: Option<String>,
}

/// Answer of `GET /v1/packages`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PackageList {
    /// Sorted by cluster, node, package.
    pub packages: Vec<PackageRow>,
}

/// The watched packages of every node the token can see (by default only pending updates).
#[utoipa::path(get, path = "/v1/packages", tag = "clusters", params(PackagesQuery),
    responses((status = 200, body = PackageList), (status = 400, body = Problem), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn list_packages(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PackagesQuery>,
) -> Result<Json<PackageList>, Problem> {
    let mut packages = Vec::new();
    let clusters = super::clusters::visible(
        &st,
        &headers,
        client,
        "packages.list",
        q.namespace.as_deref(),
    )
    .await?;
    for c in clusters {
        if c.nodes == 0 {
            continue;
        }
        let path = ClusterPath {
            namespace: c.namespace,
            project: c.project,
            cluster: c.cluster,
        };
        let Ok(read) = view::read(&st, &path).await else {
            continue; // deleted meanwhile
        };
        for n in &read.doc.nodes {
            let Some(p) = &n.packages else { continue };
            for pkg in p.list.iter().filter(|pkg| q.all || pkg.update_available) {
                packages.push(PackageRow {
                    cluster: path.target(),
                    node: n.id.clone(),
                    package: pkg.name.clone(),
                    installed: pkg.installed.clone(),
                    candidate: pkg.candidate.clone(),
                    update_available: pkg.update_available,
                    security: pkg.security,
                    since: pkg.since,
                    checked: p.checked,
                    error: p.error.clone(),
                });
            }
        }
    }
    packages
        .sort_by(|a, b| (&a.cluster, &a.node, &a.package).cmp(&(&b.cluster, &b.node, &b.package)));
    Ok(Json(PackageList { packages }))
}
