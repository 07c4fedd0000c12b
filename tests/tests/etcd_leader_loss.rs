//! The agents' etcd is a cluster of three and loses its raft leader (kill -9) under load
//! (issue 12), on PostgreSQL and MariaDB: the two remaining members elect a new leader, the
//! agents carry on through the other endpoints, the clients never see two writable nodes and
//! lose no acknowledged write, and once the member is back the cluster is at full
//! redundancy. Reports whether the primary changed and the longest write gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::harness::cluster::Agents;
use e2e::harness::etcd::EtcdCluster;
use e2e::harness::scenario::{assert_no_split_brain_no_loss, let_writer_run, same_rows_everywhere};
use e2e::harness::util::{eventually, throughout};
use e2e::harness::workload::{Checker, Workload, Writer};
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};
use e2e::postgres::cluster::{PgCluster, PgOpts};

const MAX_RUN: Duration = Duration::from_secs(150);

/// What the scenario needs of a cluster, whatever its engine.
trait OnEtcdCluster: std::ops::DerefMut<Target = Agents> {
    fn members(&mut self) -> &mut EtcdCluster;
    fn workload(&self) -> Arc<dyn Workload>;
    fn replicates(&self, i: usize, from: usize) -> bool;
}

impl OnEtcdCluster for PgCluster {
    fn members(&mut self) -> &mut EtcdCluster {
        self.etcd_cluster_mut()
    }
    fn workload(&self) -> Arc<dyn Workload> {
        PgCluster::workload(self)
    }
    fn replicates(&self, i: usize, from: usize) -> bool {
        self.streams_from(i, from)
    }
}

impl OnEtcdCluster for MariaCluster {
    fn members(&mut self) -> &mut EtcdCluster {
        self.etcd_cluster_mut()
    }
    fn workload(&self) -> Arc<dyn Workload> {
        e2e::mariadb::scenario::workload(self)
    }
    fn replicates(&self, i: usize, from: usize) -> bool {
        self.replica_of(i) == Some((self.port(from), true))
    }
}

fn leader_loss(c: &mut dyn OnEtcdCluster, p: usize, ttl: Duration) {
    let work = c.workload();
    let w = Writer::start(work.clone(), MAX_RUN);
    let k = Checker::start(work.clone(), MAX_RUN);
    let_writer_run(c, work.as_ref(), p, 50, Duration::from_secs(20));
    let leader = c.members().leader().expect("the etcd cluster has a leader");
    let t0 = Instant::now();
    c.members().kill(leader);
    // Longer than the TTL with the leader gone.
    let mut primaries = vec![p];
    throughout(t0 + ttl * 3, Duration::from_millis(50), || {
        if let Some(now) = c.primary()
            && primaries.last() != Some(&now)
        {
            primaries.push(now);
        }
    });
    let np = c.wait_primary(Duration::from_secs(30));
    let new_leader = c.members().leader();
    let_writer_run(c, work.as_ref(), np, 50, Duration::from_secs(20));
    c.members()
        .restart(leader)
        .expect("restart the killed member");
    let others: Vec<usize> = (0..c.len()).filter(|&i| i != np).collect();
    for &i in &others {
        let ok = eventually(Duration::from_secs(60), Duration::from_millis(100), || {
            c.replicates(i, np).then_some(())
        });
        assert!(
            ok.is_some(),
            "{} does not replicate\n{}",
            c.name(i),
            c.logs()
        );
    }
    let_writer_run(c, work.as_ref(), np, 20, Duration::from_secs(20));
    let (w, k) = (w.stop(), k.stop());
    let mut rows = work.written(np);
    rows.sort_unstable();
    assert_no_split_brain_no_loss(c, &rows, &w, &k);
    same_rows_everywhere(c, work.as_ref(), np);
    println!(
        "etcd member {leader} (leader) killed; new leader {new_leader:?}; primaries {:?}; longest write gap {:?}",
        primaries
            .iter()
            .map(|&i| c.name(i).to_owned())
            .collect::<Vec<_>>(),
        w.longest_gap_since(t0)
    );
    assert_eq!(
        primaries,
        vec![p],
        "losing the etcd leader changed the primary\n{}",
        c.logs()
    );
}

#[test]
fn postgres_keeps_its_primary_when_etcd_loses_its_leader() {
    let opts = PgOpts {
        durability: "sync",
        ..PgOpts::default()
    };
    let ttl = opts.ttl;
    let mut c = PgCluster::start_on_etcd_cluster(3, opts, 3).expect("start the cluster");
    let p = e2e::postgres::scenario::settled(&c);
    leader_loss(&mut c, p, ttl);
}

#[test]
fn mariadb_keeps_its_primary_when_etcd_loses_its_leader() {
    let opts = MariaOpts::default();
    let ttl = opts.ttl;
    let mut c = MariaCluster::start_on_etcd_cluster(3, opts, 3).expect("start the cluster");
    let p = e2e::mariadb::scenario::settle(&c);
    leader_loss(&mut c, p, ttl);
}
