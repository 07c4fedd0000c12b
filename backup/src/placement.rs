//! Which node runs a job's slot: a pure decision every node makes from the same cluster
//! read, so that (with the slot key in etcd as the lock) exactly one node runs it.
//!
//! - `run_on: replica`: the healthy replica with the least lag (ties: the node that ran the
//!   job's previous backup, so incrementals build on their own node's data, then the lowest
//!   id); the primary only when no replica is healthy and the job allows the fallback.
//! - `run_on: primary`: the healthy primary.
//! - `run_on: any`: like `replica` with the fallback always allowed.
//!
//! Replica lag comes from the node documents (bucketed, up to 30 s old): lags within
//! [`LAG_TIE`] of the least count as equal, so a previous runner keeps the job while it is
//! about as current as the others.

use std::time::Duration;

/// Where a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOn {
    /// The healthy replica with the least lag.
    Replica,
    /// The primary.
    Primary,
    /// A replica if one is healthy, else the primary.
    Any,
}

impl RunOn {
    /// The word in configuration and records.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOn::Replica => "replica",
            RunOn::Primary => "primary",
            RunOn::Any => "any",
        }
    }
}

/// Lags closer than this to the least lag count as equal.
pub const LAG_TIE: Duration = Duration::from_secs(10);

/// A node as the cluster read shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: String,
    /// Primary (online) or replica.
    pub primary: bool,
    /// Healthy and eligible to serve (a replica that replicates; the online primary).
    pub healthy: bool,
    /// A replica's replay lag, when known (unknown sorts last).
    pub lag: Option<Duration>,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// This node runs it.
    Node(String),
    /// No node may run it now, and why.
    Nobody(&'static str),
}

/// Chooses the node for a slot. `previous` is the node that ran the job's last backup.
pub fn choose(
    run_on: RunOn,
    fallback_to_primary: bool,
    candidates: &[Candidate],
    previous: Option<&str>,
) -> Placement {
    // (one primary in practice; the lowest id if a read ever showed two)
    let primary = candidates
        .iter()
        .filter(|c| c.primary && c.healthy)
        .min_by(|a, b| a.id.cmp(&b.id));
    if run_on == RunOn::Primary {
        return match primary {
            Some(p) => Placement::Node(p.id.clone()),
            None => Placement::Nobody("no healthy primary"),
        };
    }
    let mut replicas: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| !c.primary && c.healthy)
        .collect();
    replicas.sort_by(|a, b| (a.lag.is_none(), a.lag, &a.id).cmp(&(b.lag.is_none(), b.lag, &b.id)));
    if let Some(best) = replicas.first() {
        let tie = |c: &&&Candidate| match (c.lag, best.lag) {
            (Some(l), Some(b)) => l <= b + LAG_TIE,
            (None, None) => true,
            _ => false,
        };
        let sticky = previous.and_then(|p| replicas.iter().filter(tie).find(|c| c.id == p));
        return Placement::Node(sticky.unwrap_or(best).id.clone());
    }
    match primary {
        Some(p) if fallback_to_primary || run_on == RunOn::Any => Placement::Node(p.id.clone()),
        Some(_) => {
            Placement::Nobody("no healthy replica, and the job does not fall back to the primary")
        }
        None => Placement::Nobody("no healthy node"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(id: &str, primary: bool, healthy: bool, lag: Option<u64>) -> Candidate {
        Candidate {
            id: id.into(),
            primary,
            healthy,
            lag: lag.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_least_lagging_healthy_replica_runs_it() {
        let nodes = [
            c("a", true, true, None),
            c("b", false, true, Some(30)),
            c("c", false, true, Some(0)),
            c("d", false, false, Some(0)),
        ];
        assert_eq!(
            choose(RunOn::Replica, true, &nodes, None),
            Placement::Node("c".into())
        );
        // the previous runner keeps it while about as current
        assert_eq!(
            choose(RunOn::Replica, true, &nodes, Some("b")),
            Placement::Node("c".into())
        );
        let close = [
            c("a", true, true, None),
            c("b", false, true, Some(5)),
            c("c", false, true, Some(0)),
        ];
        assert_eq!(
            choose(RunOn::Replica, true, &close, Some("b")),
            Placement::Node("b".into())
        );
        assert_eq!(
            choose(RunOn::Primary, true, &nodes, None),
            Placement::Node("a".into())
        );
    }

    #[test]
    fn the_primary_only_as_a_permitted_fallback() {
        let nodes = [c("a", true, true, None), c("b", false, false, Some(0))];
        assert_eq!(
            choose(RunOn::Replica, true, &nodes, None),
            Placement::Node("a".into())
        );
        assert!(matches!(
            choose(RunOn::Replica, false, &nodes, None),
            Placement::Nobody(_)
        ));
        assert_eq!(
            choose(RunOn::Any, false, &nodes, None),
            Placement::Node("a".into())
        );
        assert!(matches!(
            choose(RunOn::Primary, true, &[c("a", true, false, None)], None),
            Placement::Nobody(_)
        ));
    }

    fn candidates() -> impl Strategy<Value = Vec<Candidate>> {
        proptest::collection::vec(
            (
                any::<bool>(),
                any::<bool>(),
                proptest::option::of(0u64..100),
            ),
            0..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (p, h, l))| c(&format!("n{i}"), p, h, l))
                .collect()
        })
    }

    proptest! {
        /// Every node decides alike whatever order it read the nodes in, never picks an
        /// unhealthy node, and picks a replica whenever one is healthy (unless `primary`).
        #[test]
        fn one_healthy_node_whatever_the_order(nodes in candidates(), run_on in prop_oneof![Just(RunOn::Replica), Just(RunOn::Primary), Just(RunOn::Any)], fallback: bool, prev in proptest::option::of(0usize..6), seed: u64) {
            let previous = prev.map(|i| format!("n{i}"));
            let a = choose(run_on, fallback, &nodes, previous.as_deref());
            let mut shuffled = nodes.clone();
            let n = shuffled.len();
            if n > 1 { shuffled.rotate_left((seed as usize) % n); }
            prop_assert_eq!(&a, &choose(run_on, fallback, &shuffled, previous.as_deref()));
            if let Placement::Node(id) = &a {
                let chosen = nodes.iter().find(|c| &c.id == id).expect("a candidate");
                prop_assert!(chosen.healthy);
                let healthy_replica = nodes.iter().any(|c| !c.primary && c.healthy);
                match run_on {
                    RunOn::Primary => prop_assert!(chosen.primary),
                    _ => prop_assert!(!healthy_replica || !chosen.primary),
                }
            }
        }
    }
}
