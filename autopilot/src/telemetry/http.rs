//! The HTTP listener: `/metrics` for Prometheus, `/health` for load balancers and humans,
//! and on a MariaDB primary `GET /v1/clone/stream`, the backup stream a cloning replica
//! reads (see `docs/engines/mariadb.md`, "Cloning").

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use engines::mysql::{BackupStream, CLONE_STREAM_PATH, MysqlSettings, clone_auth, start_backup};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{info, warn};

use super::status::NodeStatus;
use crate::node::role_label;
use crate::role::Role;
use listen::Throttle;

/// Refused clone requests are logged at most every 10 s (with the count held back), so a
/// client cannot turn each bad request into a log line.
static REFUSED_CLONES: LazyLock<Throttle> =
    LazyLock::new(|| Throttle::new(Duration::from_secs(10)));

/// What the routes read: the recorder's handle and the latest node status.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the Prometheus text format.
    pub metrics: PrometheusHandle,
    /// The latest status published by the health actor.
    pub status: watch::Receiver<NodeStatus>,
    /// The node's role, published by the role actor; `None` for a standalone agent.
    pub role: Option<watch::Receiver<super::PublishedRole>>,
    /// Serves clones of the local database; `None` when the engine cannot.
    pub clone: Option<CloneSource>,
}

/// What the clone endpoint needs: the engine's settings (accounts, paths, cluster), the
/// proof checker and the one-clone-at-a-time permit.
#[derive(Clone)]
pub struct CloneSource {
    /// The MariaDB engine's settings.
    pub settings: Arc<MysqlSettings>,
    /// Remembers accepted nonces.
    pub verifier: Arc<clone_auth::Verifier>,
    /// One permit: at most one clone streams at a time.
    pub busy: Arc<Semaphore>,
}

impl CloneSource {
    /// A source for this engine's server.
    pub fn new(settings: MysqlSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            verifier: Arc::default(),
            busy: Arc::new(Semaphore::new(1)),
        }
    }
}

impl HttpState {
    fn role(&self) -> Option<Role> {
        let now = std::time::Instant::now();
        self.role.as_ref().map(|r| r.borrow().at(now))
    }

    /// The status with the role, as `/health`, `/primary` and `/replica` report it.
    fn body(&self) -> serde_json::Value {
        let mut body = serde_json::to_value(&*self.status.borrow()).unwrap_or_default();
        body["role"] = self.role().map_or("standalone", role_label).into();
        body
    }
}

/// The routes, ready to serve.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/primary", get(primary))
        .route("/replica", get(replica))
        .route(CLONE_STREAM_PATH, get(clone_stream))
        .with_state(state)
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

fn answer(ok: bool, state: &HttpState) -> (StatusCode, Json<serde_json::Value>) {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(state.body()))
}

/// 200 with the status when healthy, 503 with the same body when not.
async fn health(State(state): State<HttpState>) -> impl IntoResponse {
    answer(state.status.borrow().healthy, &state)
}

/// 200 only on the node that holds the primary key and is not fenced (for load balancers
/// routing writes).
async fn primary(State(state): State<HttpState>) -> impl IntoResponse {
    answer(state.role() == Some(Role::Primary), &state)
}

/// 200 on healthy replicas (for load balancers routing reads).
async fn replica(State(state): State<HttpState>) -> impl IntoResponse {
    let ok = state.role() == Some(Role::Replica) && state.status.borrow().healthy;
    answer(ok, &state)
}

fn problem(code: StatusCode, text: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

/// `GET /v1/clone/stream`: a `mariadb-backup --stream=xbstream` of this primary, for a node
/// of the cluster that proves it knows the replication password (`clone_auth`). 401 without a
/// valid proof (no detail), 409 when this node is not the primary, 429 while another clone
/// runs. The backup is killed when the client goes away.
async fn clone_stream(
    State(state): State<HttpState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(src) = state.clone.clone() else {
        return problem(
            StatusCode::NOT_FOUND,
            "this agent does not serve clones (only the mariadb engine does)",
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let s = &src.settings;
    let node = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            src.verifier
                .verify(v, &s.replication.password, &s.cluster, now)
        });
    let Some(node) = node else {
        metrics::counter!("autopilot_clone_requests_refused_total").increment(1);
        if let Some(held) = REFUSED_CLONES.pass() {
            warn!(client = %client.ip(), refused_since_last_line = held, "refused a clone request without a valid proof");
        }
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, clone_auth::SCHEME)],
            "unauthorized\n",
        )
            .into_response();
    };
    if state.role() != Some(Role::Primary) {
        return problem(
            StatusCode::CONFLICT,
            "this node is not the primary; clones are served by the node that holds the primary key",
        );
    }
    let Ok(permit) = src.busy.clone().try_acquire_owned() else {
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            "a clone is already running on this node; retry when it is done",
        );
    };
    let backup = match start_backup(s) {
        Ok(b) => b,
        Err(e) => {
            warn!(cause = %handlers::error_chain(&e), "cannot start a backup for a clone");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot start the backup: {e}"),
            );
        }
    };
    info!(%node, "streaming a backup to a cloning node");
    let body = futures::stream::unfold(
        Some(Streaming {
            backup,
            _permit: permit,
            node,
            bytes: 0,
        }),
        next_chunk,
    );
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// One clone in progress; dropping it (the client went away) kills the backup.
struct Streaming {
    backup: BackupStream,
    _permit: OwnedSemaphorePermit,
    node: String,
    bytes: u64,
}

/// The next piece of the stream; after the end, an error unless `mariadb-backup` succeeded,
/// so a failed backup never looks like a complete one to the client.
async fn next_chunk(
    state: Option<Streaming>,
) -> Option<(Result<Bytes, std::io::Error>, Option<Streaming>)> {
    let mut st = state?;
    let mut buf = vec![0u8; 256 * 1024];
    match st.backup.stdout.read(&mut buf).await {
        Ok(0) => {
            let status = st.backup.child.wait().await;
            if status.success() {
                info!(node = %st.node, bytes = st.bytes, "clone stream complete");
                None
            } else {
                warn!(node = %st.node, bytes = st.bytes, ?status, "mariadb-backup failed during a clone; see its output above");
                Some((Err(std::io::Error::other("mariadb-backup failed")), None))
            }
        }
        Ok(n) => {
            buf.truncate(n);
            st.bytes += n as u64;
            Some((Ok(Bytes::from(buf)), Some(st)))
        }
        Err(e) => {
            warn!(node = %st.node, cause = %e, "reading the backup stream failed");
            Some((Err(e), None))
        }
    }
}
