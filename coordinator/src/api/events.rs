//! `GET …/events`: the cluster's changes as server-sent events, fed by an etcd watch on the
//! cluster prefix. Each event's SSE `id` is its etcd revision: reconnect with
//! `Last-Event-ID` (or `?since=<revision>`) to continue after it. Event types (`event:`):
//! `event` (an agent's `events/<id>` document: promoted, fenced, handover, …), `primary`
//! (`doc: null` when the primary key vanished), `node` (only when role, status, health,
//! fencing or eligibility changed; `doc: null` when the node left), `maintenance`,
//! `switchover` (`null` when the request was consumed), `history` (the newest entry),
//! `request` (a node request written, `null` once its agent carried it out), `member` (a
//! node's member document written at its agent's start, `null` once removed), and `error`
//! (a problem document; the stream then ends: reconnect).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cluster::store::{EtcdStore, Store, Watch, WatchBroken, WatchEvent, WatchMessage};
use cluster::wire::{self, ClusterKey, ClusterKeys, HistoryDoc, NodeDoc, TokenRole};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiPath, ApiQuery};
use super::gate::{Need, admit};
use crate::problem::Problem;
use crate::state::AppState;
use crate::view::ClusterPath;

/// Where to start.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay changes after this etcd revision (e.g. a cluster read's `revision`, or the last
    /// event id seen). Without it (and without `Last-Event-ID`) the stream starts now.
    pub since: Option<i64>,
}

/// The `data` of every event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClusterEvent {
    /// etcd revision of the change (also the SSE `id`).
    pub revision: i64,
    /// `event`, `primary`, `node`, `maintenance`, `switchover`, `history`, `request`,
    /// `member` or `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The key relative to the cluster, e.g. `nodes/db-2`.
    pub key: String,
    /// The document after the change (`null` when deleted or unreadable).
    pub doc: Option<serde_json::Value>,
}

/// The `data` of an event as the OpenAPI document declares it: a [`ClusterEvent`], or a
/// problem document on the final `event: error`. Documentation only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum StreamData {
    /// Every event but `error`.
    Event(ClusterEvent),
    /// `event: error`: why the stream ends (reconnect).
    Error(Problem),
}

/// What a node looked like for the purpose of "did it change".
type NodeShape = (wire::Role, wire::NodeStatus, wire::Health, bool, bool);

fn shape(d: &NodeDoc) -> NodeShape {
    (d.role, d.status, d.health, d.fenced, d.eligible)
}

/// Turns watch events into cluster events, remembering node shapes.
struct Translator {
    keys: ClusterKeys,
    nodes: HashMap<String, NodeShape>,
}

impl Translator {
    fn translate(&mut self, ev: &WatchEvent) -> Option<ClusterEvent> {
        let k = self.keys.parse(ev.key())?;
        let rel = ev.key()[self.keys.cluster_prefix().len()..].to_owned();
        let value = match ev {
            WatchEvent::Put { value, .. } => Some(value.as_slice()),
            WatchEvent::Delete { .. } => None,
        };
        let as_json = |v: Option<&[u8]>| v.and_then(|b| serde_json::from_slice(b).ok());
        let kind = match &k {
            ClusterKey::Event(_) => {
                value?; // an event aging out is not news
                "event"
            }
            ClusterKey::Primary => "primary",
            ClusterKey::Maintenance => "maintenance",
            ClusterKey::Switchover => "switchover",
            ClusterKey::Request(_) => "request",
            ClusterKey::Member(_) => "member",
            ClusterKey::Node(id) => {
                match value.map(wire::decode::<NodeDoc>) {
                    Some(Ok(d)) => {
                        let s = shape(&d);
                        if self.nodes.insert(id.clone(), s) == Some(s) {
                            return None;
                        }
                    }
                    Some(Err(_)) => {}
                    None => {
                        self.nodes.remove(id);
                    }
                }
                "node"
            }
            ClusterKey::History => {
                let last = value
                    .and_then(|b| wire::decode::<HistoryDoc>(b).ok())
                    .and_then(|h| h.entries.last().cloned())
                    .and_then(|e| serde_json::to_value(e).ok());
                return Some(ClusterEvent {
                    revision: ev.mod_revision(),
                    kind: "history".into(),
                    key: rel,
                    doc: last,
                });
            }
            _ => return None,
        };
        Some(ClusterEvent {
            revision: ev.mod_revision(),
            kind: kind.into(),
            key: rel,
            doc: as_json(value),
        })
    }
}

fn sse(e: &ClusterEvent) -> Event {
    Event::default()
        .id(e.revision.to_string())
        .event(e.kind.clone())
        .json_data(e)
        .unwrap_or_else(|_| Event::default().comment("unserialisable event"))
}

fn error_event(p: &Problem) -> Event {
    Event::default()
        .event("error")
        .json_data(p)
        .unwrap_or_else(|_| Event::default().comment("error"))
}

fn broken_problem(b: WatchBroken) -> Problem {
    match b {
        WatchBroken::Compacted { compact_revision } => Problem::new(
            StatusCode::GONE,
            "revision_compacted",
            format!(
                "etcd no longer has the changes asked for (compacted up to revision \
                 {compact_revision}); read the cluster again and follow from its revision"
            ),
        ),
        _ => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the etcd watch ended; reconnect with Last-Event-ID to continue",
        ),
    }
}

/// Attempts to re-establish a watch that ended for another reason than compaction, before
/// the stream reports an error to the client.
const REWATCH_ATTEMPTS: u32 = 5;

/// The event stream of one watch. A watch that breaks (the connection to etcd, an idle gRPC
/// stream) is re-established from the revision after the last change seen, so the client
/// misses nothing; only a compaction or a lasting etcd outage ends the stream.
fn stream(
    store: EtcdStore,
    prefix: String,
    watch: Watch,
    start: i64,
    tr: Translator,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct St {
        store: EtcdStore,
        prefix: String,
        watch: Watch,
        next: i64,
        tr: Translator,
        queue: VecDeque<Event>,
        done: bool,
    }
    let st = St {
        store,
        prefix,
        watch,
        next: start,
        tr,
        queue: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.queue.pop_front() {
                return Some((Ok(e), st));
            }
            if st.done {
                return None;
            }
            match st.watch.next().await {
                WatchMessage::Events(evs) => {
                    for ev in &evs {
                        st.next = st.next.max(ev.mod_revision() + 1);
                        if let Some(ce) = st.tr.translate(ev) {
                            st.queue.push_back(sse(&ce));
                        }
                    }
                }
                WatchMessage::Broken(b @ WatchBroken::Compacted { .. }) => {
                    st.queue.push_back(error_event(&broken_problem(b)));
                    st.done = true;
                }
                WatchMessage::Broken(b) => {
                    tracing::debug!(reason = ?b, from = st.next, "event watch ended; watching again");
                    let mut again = None;
                    for attempt in 0..REWATCH_ATTEMPTS {
                        if attempt > 0 {
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                        if let Ok(w) = st.store.watch_prefix(&st.prefix, st.next).await {
                            again = Some(w);
                            break;
                        }
                    }
                    match again {
                        Some(w) => st.watch = w,
                        None => {
                            st.queue.push_back(error_event(&broken_problem(b)));
                            st.done = true;
                        }
                    }
                }
            }
        }
    })
}

/// Follow the cluster's changes as server-sent events.
#[utoipa::path(get, path = "/v1/clusters/{namespace}/{project}/{cluster}/events", tag = "clusters",
    params(ClusterPath, EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (a revision)")),
    responses((status = 200, description = "text/event-stream: each `data` a ClusterEvent, or a problem document on the final `event: error`",
            body = StreamData, content_type = "text/event-stream"),
        (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn events(
    State(st): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiPath(p): ApiPath<ClusterPath>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, Problem> {
    let gate = admit(
        &st,
        &headers,
        client,
        Need {
            action: "cluster.events",
            target: p.target(),
            role: TokenRole::Agent,
            cluster: Some(p.triple()),
        },
    )
    .await?;
    // Held by the stream until it ends, so one token cannot hold thousands.
    let slot = st.streams().take(&gate.caller.id)?;
    let keys = p.keys(&st)?;
    let last_id = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_header",
                        "Last-Event-ID must be an event id (an etcd revision) from this stream",
                    )
                })?,
        ),
        None => None,
    };
    let since = q.since.or(last_id);
    if since.is_some_and(|s| s < 0) {
        return Err(Problem::bad_request("invalid_query", "since must be >= 0"));
    }
    let (existing, revision) = st
        .store()
        .list_keys(&keys.cluster_prefix())
        .await
        .map_err(|e| Problem::store(&e))?;
    if existing.is_empty() {
        return Err(p.not_found());
    }
    let start = match since {
        None => revision + 1,
        Some(s) => s.checked_add(1).ok_or_else(|| {
            Problem::bad_request(
                "invalid_query",
                "since must be an etcd revision from this cluster (a cluster read's `revision` \
                 or an event id)",
            )
        })?,
    };
    let watch = st
        .store()
        .watch_prefix(&keys.cluster_prefix(), start)
        .await
        .map_err(|e| Problem::store(&e))?;
    let tr = Translator {
        keys: keys.clone(),
        nodes: HashMap::new(),
    };
    let events = stream(st.store().clone(), keys.cluster_prefix(), watch, start, tr);
    let sse = Sse::new(futures::StreamExt::map(events, move |e| {
        let _held = &slot;
        e
    }))
    .keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("keep-alive"),
    );
    Ok(sse.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_events_only_when_the_shape_changes() {
        let keys = ClusterKeys::new("/autopilot", "a", "b", "c").expect("keys");
        let mut tr = Translator {
            keys: keys.clone(),
            nodes: HashMap::new(),
        };
        let node = serde_json::json!({"schema":1,"id":"n1","name":"n1","hostname":"h",
            "ip_address":"127.0.0.1","port":1,"role":"replica","status":"online","health":"healthy",
            "replication":{"position":{"epoch":1,"offset":1}},"priority":1,"version":"x",
            "last_updated":"2026-01-01T00:00:00Z","ttlseconds":2});
        let put = |v: &serde_json::Value, rev| WatchEvent::Put {
            key: keys.node("n1"),
            value: serde_json::to_vec(v).expect("json"),
            mod_revision: rev,
        };
        assert!(tr.translate(&put(&node, 2)).is_some());
        let mut moved = node.clone();
        moved["replication"]["position"]["offset"] = 5.into();
        assert!(tr.translate(&put(&moved, 3)).is_none(), "position only");
        moved["role"] = "primary".into();
        let e = tr.translate(&put(&moved, 4)).expect("role change");
        assert_eq!((e.kind.as_str(), e.revision), ("node", 4));
        let del = WatchEvent::Delete {
            key: keys.primary(),
            mod_revision: 5,
        };
        let e = tr.translate(&del).expect("primary gone");
        assert_eq!(e.kind, "primary");
        assert!(e.doc.is_none());
    }
}
