//! The dispatcher: one etcd watch on the whole key prefix, from the revision current when the
//! coordinator started (events already in etcd then are not sent). Every new
//! `<ns>/<project>/<cluster>/events/<id>` document is mapped once to its CloudEvent and
//! offered to each webhook whose filter takes it; nothing here waits for a webhook.
//!
//! A broken watch is watched again from the revision after the last change seen, so no event
//! is skipped or sent twice. If etcd compacted that revision away meanwhile, the events still
//! stored whose revision is at or after it are read and sent, in revision order, before the
//! watch resumes from that read; only events that expired in between are lost (logged).

use std::sync::Arc;
use std::time::Duration;

use cluster::store::{EtcdStore, RangeQuery, Revision, Store, WatchBroken, WatchMessage};

use super::cloudevent::{self, Mapped, Origin};
use super::deliver::Outbox;

/// Waits between attempts to (re)start the watch: doubling from the first to the second.
const REWATCH: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));

/// Where a key is an event: `<ns>/<project>/<cluster>/events/<id>` under the prefix, with
/// the coordinator's own `_coordinator/` keys and deeper paths excluded.
pub fn event_origin(prefix_slash: &str, key: &str) -> Option<Origin> {
    let rest = key.strip_prefix(prefix_slash)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [ns, project, cluster, "events", id] = parts.as_slice() else {
        return None;
    };
    if [ns, project, cluster, id].iter().any(|s| s.is_empty()) || ns.starts_with('_') {
        return None;
    }
    Some(Origin {
        namespace: (*ns).to_owned(),
        project: (*project).to_owned(),
        cluster: (*cluster).to_owned(),
        id: (*id).to_owned(),
    })
}

/// Watches `prefix` (no trailing slash) and feeds `outboxes` until the task is dropped.
pub async fn run(store: EtcdStore, prefix: String, mut outboxes: Vec<Outbox>) {
    let prefix_slash = format!("{prefix}/");
    let mut wait = REWATCH.0;
    // The revision etcd is at now: events from after it are delivered.
    let mut next: Revision = loop {
        let probe = RangeQuery {
            limit: 1,
            ..RangeQuery::default()
        };
        match store.get_range(&prefix_slash, &probe).await {
            Ok((_, revision)) => break revision + 1,
            Err(e) => {
                tracing::warn!(cause = %crate::problem::store_cause(&e), "webhooks: cannot read etcd's revision; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(REWATCH.1);
            }
        }
    };
    tracing::info!(
        from_revision = next,
        webhooks = outboxes.len(),
        "webhooks: following events"
    );
    loop {
        let mut watch = match store.watch_prefix(&prefix_slash, next).await {
            Ok(w) => {
                wait = REWATCH.0;
                w
            }
            Err(e) => {
                tracing::warn!(cause = %crate::problem::store_cause(&e), from = next, "webhooks: cannot watch etcd; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(REWATCH.1);
                continue;
            }
        };
        loop {
            match watch.next().await {
                WatchMessage::Events(evs) => {
                    for ev in evs {
                        next = next.max(ev.mod_revision() + 1);
                        if let cluster::store::WatchEvent::Put { key, value, .. } = ev {
                            dispatch(&prefix_slash, &key, &value, &mut outboxes);
                        }
                    }
                }
                WatchMessage::Broken(WatchBroken::Compacted { compact_revision }) => {
                    tracing::warn!(
                        from = next,
                        compact_revision,
                        "webhooks: etcd compacted the revisions not yet seen; sending the events \
                         still stored from then on (events that expired meanwhile are lost)"
                    );
                    match catch_up(&store, &prefix_slash, next, &mut outboxes).await {
                        Ok(rev) => next = rev + 1,
                        Err(e) => {
                            tracing::warn!(cause = %crate::problem::store_cause(&e), "webhooks: cannot read the events missed; trying again");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(REWATCH.1);
                        }
                    }
                    break;
                }
                WatchMessage::Broken(b) => {
                    tracing::debug!(reason = ?b, from = next, "webhooks: the etcd watch ended; watching again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(REWATCH.1);
                    break;
                }
            }
        }
    }
}

/// Reads every stored event and dispatches those written at or after `from`, oldest first;
/// returns the read's revision.
async fn catch_up(
    store: &EtcdStore,
    prefix_slash: &str,
    from: Revision,
    outboxes: &mut [Outbox],
) -> Result<Revision, cluster::store::StoreError> {
    let (entries, revision) = store.get_prefix(prefix_slash).await?;
    let mut missed: Vec<_> = entries
        .into_iter()
        .filter(|e| e.mod_revision >= from && event_origin(prefix_slash, &e.key).is_some())
        .collect();
    missed.sort_by_key(|e| e.mod_revision);
    for e in missed {
        dispatch(prefix_slash, &e.key, &e.value, outboxes);
    }
    Ok(revision)
}

/// Maps one written key (if it is an event) and offers it to every webhook that takes it.
fn dispatch(prefix_slash: &str, key: &str, value: &[u8], outboxes: &mut [Outbox]) {
    let Some(origin) = event_origin(prefix_slash, key) else {
        return;
    };
    let mapped: Mapped = match cloudevent::map(&origin, value) {
        Ok(m) => m,
        Err(e) => {
            metrics::counter!("autopilot_coordinator_webhook_events_unreadable_total").increment(1);
            tracing::warn!(key, cause = %e, "webhooks: an event document is not readable; not sent");
            return;
        }
    };
    let ev = Arc::new(mapped);
    for o in outboxes.iter_mut() {
        if o.filter.accepts(
            &ev.kind,
            &origin.namespace,
            &origin.project,
            &origin.cluster,
        ) {
            o.offer(ev.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_event_keys_of_clusters() {
        let p = "/autopilot/";
        let o = event_origin(p, "/autopilot/prod/bb/billing/events/1764-db-1").expect("event");
        assert_eq!(
            (
                o.namespace.as_str(),
                o.project.as_str(),
                o.cluster.as_str(),
                o.id.as_str()
            ),
            ("prod", "bb", "billing", "1764-db-1")
        );
        for not in [
            "/autopilot/prod/bb/billing/nodes/db-1",
            "/autopilot/prod/bb/billing/events/",
            "/autopilot/prod/bb/billing/events/a/b",
            "/autopilot/_coordinator/x/y/events/z",
            "/autopilot/prod/bb/events/x",
            "/other/prod/bb/billing/events/x",
        ] {
            assert_eq!(event_origin(p, not), None, "{not}");
        }
    }
}
