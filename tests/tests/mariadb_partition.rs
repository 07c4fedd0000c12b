//! Network partitions of a MariaDB cluster (issue 12), each node in a network namespace of
//! its own on a test LAN, etcd and the clients on its bridge: the scenarios of
//! `e2e::harness::partition`. With `sync` (semi-sync) an isolated primary loses no acknowledged
//! commit; with `async` it loses at most what it acknowledged before it fenced itself,
//! within the documented bound. Needs root (network namespaces); every run ends at full
//! redundancy.

use std::sync::Arc;
use std::time::Duration;

use e2e::harness::netns::Lan;
use e2e::harness::partition::{OnLan, primary_cut_off, replica_cut_off};
use e2e::harness::workload::Workload;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::mariadb::scenario::{settle, workload};

struct Maria(MariaCluster);

impl std::ops::Deref for Maria {
    type Target = e2e::harness::cluster::Agents;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Maria {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl OnLan for Maria {
    fn lan_mut(&mut self) -> &mut Lan {
        self.0.lan_mut()
    }
    fn workload(&self) -> Arc<dyn Workload> {
        workload(&self.0)
    }
    fn ttl(&self) -> Duration {
        self.0.opts().ttl
    }
    fn replicates(&self, i: usize, from: usize) -> bool {
        self.0.replica_of(i) == Some((self.0.port(from), true))
    }
}

/// `async` runs with `auto_rebuild`: the isolated primary's own commits (the ones the
/// cluster lost) are history no one else has, so it rejoins by a fresh clone.
fn start(durability: &'static str) -> (Maria, usize) {
    let c = MariaCluster::start_on_lan(
        3,
        MariaOpts {
            durability,
            auto_rebuild: durability == "async",
            ..MariaOpts::default()
        },
    )
    .expect("start a MariaDB cluster on a test LAN (needs root and iproute2)");
    let p = settle(&c);
    (Maria(c), p)
}

#[test]
fn sync_a_primary_cut_off_from_etcd_and_peers_loses_nothing_and_rejoins() {
    let (mut c, p) = start("sync");
    let run = primary_cut_off(&mut c, p);
    assert_eq!(run.lost, 0, "semi-sync lost acknowledged commits: {run:?}");
}

#[test]
fn async_a_primary_cut_off_loses_at_most_its_fencing_window_and_rejoins() {
    let (mut c, p) = start("async");
    primary_cut_off(&mut c, p);
}

#[test]
fn a_replica_cut_off_and_healed_replicates_again_with_the_same_rows() {
    let (mut c, p) = start("sync");
    let r = (0..c.len()).find(|&i| i != p).expect("a replica");
    replica_cut_off(&mut c, p, r);
}
