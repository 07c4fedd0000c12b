//! The writer's and the checker's view of PostgreSQL ([`PgWorkload`]): numbered rows
//! inserted into [`TABLE`] on kept connections, writability probed with an insert into
//! `e2e_probe`; used for the agents' clusters and for Patroni's.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::util::eventually;
use crate::harness::workload::Workload;
use crate::postgres::server::{Kept, Sql};

/// The writer's table.
pub const TABLE: &str = "e2e_writes";

/// Creates the writer's and the probe's tables on the server at `port` (idempotent),
/// retrying for up to 20 s; whether it worked.
pub fn create_tables(sql: &Sql, port: u16) -> bool {
    eventually(Duration::from_secs(20), Duration::from_millis(200), || {
        sql.query(
            port,
            &format!(
                "CREATE TABLE IF NOT EXISTS {TABLE}(seq bigint PRIMARY KEY); \
                 CREATE TABLE IF NOT EXISTS e2e_probe(at timestamptz)"
            ),
            Duration::from_secs(3),
        )
        .ok()
    })
    .is_some()
}

/// The writer/checker's access to the cluster's PostgreSQL servers (as the superuser).
pub struct PgWorkload {
    /// Each node's port.
    ports: Vec<u16>,
    /// Shared client.
    sql: Arc<Sql>,
    /// The writer's kept connection per node.
    writers: Vec<Arc<Kept>>,
    /// The checker's kept connection per node.
    probes: Vec<Arc<Kept>>,
}

impl PgWorkload {
    /// The writer/checker's access to the servers on `ports` (node `i` on `ports[i]`), as
    /// the test superuser; used for the agents' clusters and for Patroni's.
    pub fn shared(ports: Vec<u16>, sql: Arc<Sql>) -> Arc<dyn Workload> {
        let kept = || ports.iter().map(|_| Arc::new(Kept::default())).collect();
        Arc::new(PgWorkload {
            writers: kept(),
            probes: kept(),
            ports,
            sql,
        })
    }
}

impl Workload for PgWorkload {
    fn nodes(&self) -> usize {
        self.ports.len()
    }

    /// One INSERT (autocommit) on a kept connection; acknowledged only when COMMIT returned
    /// within 1 s (a commit waiting for a synchronous standby is never cancelled: the
    /// connection is abandoned and a new one opened for the next write).
    fn write(&self, node: usize, seq: u64) -> bool {
        self.sql
            .query_kept(
                &self.writers[node],
                self.ports[node],
                &format!("INSERT INTO {TABLE}(seq) VALUES ({seq})"),
                Duration::from_secs(1),
            )
            .is_ok()
    }

    fn writable(&self, node: usize) -> bool {
        self.sql
            .query_kept(
                &self.probes[node],
                self.ports[node],
                "INSERT INTO e2e_probe(at) VALUES (now())",
                Duration::from_millis(300),
            )
            .is_ok()
    }

    fn written(&self, node: usize) -> Vec<u64> {
        let rows = self
            .sql
            .query(
                self.ports[node],
                &format!("SELECT seq FROM {TABLE}"),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("read the writer's table on node {node}: {e:#}"));
        rows.into_iter()
            .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
            .collect()
    }
}
