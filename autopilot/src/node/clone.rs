//! `GET /v1/clone/stream` on a MariaDB primary: the backup stream a cloning replica reads
//! (see `docs/engines/mariadb.md`, "Cloning"). Served on the telemetry listener beside
//! `/health`; only agents whose engine can clone add these routes.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engines::mariadb::{
    BackupStream, CLONE_STREAM_PATH, MariadbSettings, clone_auth, start_backup,
};
use listen::Throttle;
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{info, warn};

use crate::role::Role;
use crate::telemetry::PublishedRole;

/// Refused clone requests are logged at most every 10 s (with the count held back), so a
/// client cannot turn each bad request into a log line.
static REFUSED_CLONES: LazyLock<Throttle> =
    LazyLock::new(|| Throttle::new(Duration::from_secs(10)));

/// What the clone endpoint needs: the engine's settings (accounts, paths, cluster), the
/// proof checker and the one-clone-at-a-time permit.
#[derive(Clone)]
pub struct CloneSource {
    /// The MariaDB engine's settings.
    pub settings: Arc<MariadbSettings>,
    /// Remembers accepted nonces.
    pub verifier: Arc<clone_auth::Verifier>,
    /// One permit: at most one clone streams at a time.
    pub busy: Arc<Semaphore>,
}

impl CloneSource {
    /// A source for this engine's server.
    pub fn new(settings: MariadbSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            verifier: Arc::default(),
            busy: Arc::new(Semaphore::new(1)),
        }
    }
}

/// What the clone route reads: the source and the node's published role (clones are served
/// by the primary only).
#[derive(Clone)]
struct CloneState {
    source: CloneSource,
    role: watch::Receiver<PublishedRole>,
}

/// The clone route, for the telemetry listener.
pub fn routes(source: CloneSource, role: watch::Receiver<PublishedRole>) -> Router {
    Router::new()
        .route(CLONE_STREAM_PATH, get(clone_stream))
        .with_state(CloneState { source, role })
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
    State(state): State<CloneState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let src = &state.source;
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
    if state.role.borrow().at(Instant::now()) != Role::Primary {
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
                warn!(node = %st.node, bytes = st.bytes, %status, "mariadb-backup failed during a clone; see its output above");
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
