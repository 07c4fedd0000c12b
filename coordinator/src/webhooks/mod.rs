//! Webhook notifications: every new `events/*` document of every cluster, POSTed as a
//! CloudEvents 1.0 JSON body (structured mode) to the endpoints of `--webhooks-file`, signed
//! with HMAC-SHA256 (`Autopilot-Signature`), retried with capped exponential backoff.
//!
//! - [`config`]: the YAML file → [`Webhook`]s (URL, secret, filter, timeout, retries, queue).
//! - [`watch`]: one etcd watch on the prefix, resumed from the last revision seen; maps each
//!   event once ([`cloudevent`]) and offers it to each webhook whose [`filter`] takes it.
//! - [`deliver`]: per webhook, a task with its own bounded queue ([`queue::DropOldest`]) and
//!   HTTP client; [`backoff`] and [`signature`] are pure and unit-tested.
//!
//! Nothing here waits for an endpoint on behalf of anything else: the dispatcher only pushes
//! onto queues that drop their oldest entry when full, so a dead endpoint costs its own queue
//! and never delays another endpoint, the watch, or the API. The secret appears in no log,
//! metric, error or etcd key. Delivery is at least once per coordinator: run webhooks on one
//! coordinator (each configured coordinator delivers every event), and let receivers drop
//! repeats by the CloudEvent `source` and `id`.

pub mod backoff;
pub mod cloudevent;
pub mod config;
pub mod deliver;
pub mod filter;
pub mod queue;
pub use cluster::signature;
pub mod watch;

pub use config::Webhook;

use cluster::store::EtcdStore;

use crate::audit::CancelOnDrop;

/// The running webhook tasks; dropping it stops them.
pub struct Running {
    /// The dispatcher and one delivery task per webhook.
    _tasks: Vec<CancelOnDrop>,
}

/// Starts the delivery tasks and the dispatcher for `hooks` (nothing when empty).
pub fn spawn(
    store: EtcdStore,
    prefix: String,
    hooks: Vec<Webhook>,
) -> Result<Running, reqwest::Error> {
    let mut tasks = Vec::with_capacity(hooks.len() + 1);
    if hooks.is_empty() {
        return Ok(Running { _tasks: tasks });
    }
    let mut outboxes = Vec::with_capacity(hooks.len());
    for hook in hooks {
        tracing::info!(
            webhook = %hook.name,
            endpoint = %hook.origin(),
            filter = ?hook.filter,
            timeout = ?hook.timeout,
            max_attempts = hook.backoff.max_attempts,
            queue = hook.queue,
            "webhook configured"
        );
        let (outbox, task) = deliver::spawn(hook)?;
        outboxes.push(outbox);
        tasks.push(task);
    }
    tasks.push(CancelOnDrop(tokio::spawn(watch::run(
        store, prefix, outboxes,
    ))));
    Ok(Running { _tasks: tasks })
}
