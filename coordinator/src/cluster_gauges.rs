//! Per-cluster gauges read from etcd, so an alert can see a cluster none of whose agents
//! answers: a task lists the clusters every few seconds ([`spawn_sampler`], key names only,
//! like `GET /v1/clusters`) and `/metrics` renders the last listing ([`render`]):
//!
//! - `autopilot_coordinator_cluster_primaries{cluster="ns/project/cluster"}`: 1 while the
//!   cluster's `primary` key exists, else 0. A cluster whose agents are all down still has its
//!   lease-less keys (`initialized`, `history`), so it is listed with 0.
//! - `autopilot_coordinator_cluster_nodes{cluster=…}`: live `nodes/<id>` keys.
//!
//! The series are rendered from the listing rather than kept in the metrics registry, so a
//! deleted cluster leaves no stale series behind; and when etcd cannot be read the gauges are
//! left out altogether (the alert rules then fall back on the agents' own metrics) instead of
//! repeating an old answer.

use std::fmt::Write as _;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::CancelOnDrop;
use crate::state::AppState;
use crate::view::{self, ClusterSummary};

/// How often the clusters are listed.
pub const EVERY: Duration = Duration::from_secs(5);

/// The latest listing; `None` before the first and after a failed read.
pub type Listing = Option<Vec<ClusterSummary>>;

/// A channel for the listing: the receiver goes into the app state, the sender to
/// [`spawn_sampler`].
pub fn channel() -> (watch::Sender<Listing>, watch::Receiver<Listing>) {
    watch::channel(None)
}

/// Lists the clusters every `every` into `tx` until the guard is dropped.
pub fn spawn_sampler(state: AppState, tx: watch::Sender<Listing>, every: Duration) -> CancelOnDrop {
    CancelOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match view::list(&state, None).await {
                Ok(clusters) => {
                    tx.send_replace(Some(clusters));
                }
                Err(p) => {
                    tracing::debug!(cause = %p, "cannot list the clusters for the cluster gauges");
                    tx.send_replace(None);
                }
            }
        }
    }))
}

/// The gauges in Prometheus text format (empty without a listing).
pub fn render(listing: &Listing) -> String {
    let Some(clusters) = listing else {
        return String::new();
    };
    let mut out = String::new();
    out.push_str(
        "# HELP autopilot_coordinator_cluster_primaries 1 while the cluster's primary key exists in etcd, else 0.\n\
         # TYPE autopilot_coordinator_cluster_primaries gauge\n",
    );
    for c in clusters {
        let _ = writeln!(
            out,
            "autopilot_coordinator_cluster_primaries{{cluster=\"{}\"}} {}",
            label(c),
            u8::from(c.has_primary)
        );
    }
    out.push_str(
        "# HELP autopilot_coordinator_cluster_nodes Live agents (nodes/<id> keys) of the cluster in etcd.\n\
         # TYPE autopilot_coordinator_cluster_nodes gauge\n",
    );
    for c in clusters {
        let _ = writeln!(
            out,
            "autopilot_coordinator_cluster_nodes{{cluster=\"{}\"}} {}",
            label(c),
            c.nodes
        );
    }
    out
}

/// `namespace/project/cluster`, escaped as a label value (the names come from etcd keys,
/// which anyone with write access could have spelled oddly).
fn label(c: &ClusterSummary) -> String {
    let raw = format!("{}/{}/{}", c.namespace, c.project, c.cluster);
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(cluster: &str, has_primary: bool, nodes: usize) -> ClusterSummary {
        ClusterSummary {
            namespace: "prod".into(),
            project: "billing".into(),
            cluster: cluster.into(),
            has_primary,
            nodes,
            primary: None,
            replicas: 0,
            healthy_replicas: 0,
            stopped: 0,
            maintenance: false,
        }
    }

    #[test]
    fn renders_one_series_per_cluster_and_gauge() {
        let text = render(&Some(vec![summary("a", true, 3), summary("b", false, 0)]));
        assert!(text.contains("# TYPE autopilot_coordinator_cluster_primaries gauge\n"));
        assert!(
            text.contains(
                "autopilot_coordinator_cluster_primaries{cluster=\"prod/billing/a\"} 1\n"
            )
        );
        assert!(
            text.contains(
                "autopilot_coordinator_cluster_primaries{cluster=\"prod/billing/b\"} 0\n"
            )
        );
        assert!(
            text.contains("autopilot_coordinator_cluster_nodes{cluster=\"prod/billing/a\"} 3\n")
        );
        assert!(
            text.contains("autopilot_coordinator_cluster_nodes{cluster=\"prod/billing/b\"} 0\n")
        );
    }

    #[test]
    fn nothing_without_a_listing() {
        assert_eq!(render(&None), "");
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&Some(vec![summary("x\"y\\z\nw", true, 1)]));
        assert!(
            text.contains("{cluster=\"prod/billing/x\\\"y\\\\z\\nw\"} 1\n"),
            "{text}"
        );
    }
}
