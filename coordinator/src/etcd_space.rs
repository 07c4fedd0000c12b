//! Whether etcd can take writes: a task reads etcd's alarms and database size every few
//! seconds ([`spawn_sampler`]) and publishes [`EtcdSpace`] for `/healthz` and as gauges
//! (`autopilot_coordinator_etcd_nospace_alarm`, `…_etcd_db_size_bytes`,
//! `…_etcd_quota_bytes`) for the alert rules in `examples/prometheus/alerts.yml`.

use std::time::Duration;

use cluster::store::EtcdStore;
use tokio::sync::watch;

use crate::audit::CancelOnDrop;

/// `/healthz` reports "degraded" from this fraction of the quota on.
pub const NEAR_FULL: f64 = 0.9;

/// One reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtcdSpace {
    /// A `NOSPACE` alarm is raised: etcd refuses every write (agents cannot renew their node
    /// keys or grant leases; the coordinator cannot write requests or audit records).
    pub nospace_alarm: bool,
    /// Backend database size, bytes.
    pub db_size: u64,
    /// The quota, bytes (etcd's own when it reports one, else `--etcd-quota-bytes`).
    pub quota: u64,
}

impl EtcdSpace {
    /// The database holds at least [`NEAR_FULL`] of the quota.
    pub fn near_full(&self) -> bool {
        self.quota > 0 && self.db_size as f64 >= self.quota as f64 * NEAR_FULL
    }
}

/// Reads etcd's alarms and size every `every` into the returned channel until the guard is
/// dropped; `quota` is used when etcd does not report its own.
pub fn spawn_sampler(
    store: EtcdStore,
    quota: u64,
    every: Duration,
) -> (watch::Receiver<Option<EtcdSpace>>, CancelOnDrop) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match store.space().await {
                Ok(s) => {
                    let reading = EtcdSpace {
                        nospace_alarm: s.nospace_alarm,
                        db_size: s.db_size,
                        quota: if s.quota > 0 { s.quota } else { quota },
                    };
                    metrics::gauge!("autopilot_coordinator_etcd_nospace_alarm")
                        .set(if reading.nospace_alarm { 1.0 } else { 0.0 });
                    metrics::gauge!("autopilot_coordinator_etcd_db_size_bytes")
                        .set(reading.db_size as f64);
                    metrics::gauge!("autopilot_coordinator_etcd_quota_bytes")
                        .set(reading.quota as f64);
                    let was: Option<EtcdSpace> = *tx.borrow();
                    if reading.nospace_alarm && !was.is_some_and(|w| w.nospace_alarm) {
                        tracing::error!(
                            db_size = reading.db_size,
                            quota = reading.quota,
                            "etcd raised a NOSPACE alarm and refuses writes: compact, defragment \
                             and `etcdctl alarm disarm` (docs/operations.md)"
                        );
                    }
                    tx.send_replace(Some(reading));
                }
                Err(e) => {
                    tracing::debug!(cause = %crate::problem::store_cause(&e), "cannot read etcd's alarms and size");
                }
            }
        }
    });
    (rx, CancelOnDrop(task))
}
