//! Redis as the [`crate::harness::workload`] writer and checker see it ([`RedisWorkload`]):
//! RPUSH of each number to one list, a SET to a probe key for writability.

use std::sync::Arc;
use std::time::Duration;

use crate::harness::workload::Workload;
use crate::redis::resp::{self, Reply};

/// How long one writability probe may take; a paused Redis never answers a write.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// A SET within [`PROBE_TIMEOUT`] that answers OK.
pub fn probe_writable(port: u16) -> bool {
    matches!(
        resp::command(port, &["SET", "autopilot:e2e:probe", "1"], PROBE_TIMEOUT),
        Ok(Reply::Simple(ref s)) if s == "OK"
    )
}

/// Redis as the [`Writer`](crate::harness::workload::Writer) and
/// [`Checker`](crate::harness::workload::Checker) see it: RPUSH of each number to the list
/// [`RedisWorkload::KEY`], a SET to a probe key for writability.
pub struct RedisWorkload {
    ports: Vec<u16>,
}

impl RedisWorkload {
    /// The list the writer appends to.
    pub const KEY: &'static str = "autopilot:e2e:seq";

    /// The nodes on `ports` (by index).
    pub fn shared(ports: Vec<u16>) -> Arc<dyn Workload> {
        Arc::new(RedisWorkload { ports })
    }
}

impl Workload for RedisWorkload {
    fn nodes(&self) -> usize {
        self.ports.len()
    }

    fn write(&self, node: usize, seq: u64) -> bool {
        let n = seq.to_string();
        matches!(
            resp::command(
                self.ports[node],
                &["RPUSH", Self::KEY, &n],
                Duration::from_millis(300)
            ),
            Ok(Reply::Int(_))
        )
    }

    fn writable(&self, node: usize) -> bool {
        probe_writable(self.ports[node])
    }

    fn written(&self, node: usize) -> Vec<u64> {
        match resp::command(
            self.ports[node],
            &["LRANGE", Self::KEY, "0", "-1"],
            Duration::from_secs(5),
        ) {
            Ok(Reply::Array(Some(items))) => items
                .iter()
                .filter_map(|r| r.as_str().and_then(|s| s.parse().ok()))
                .collect(),
            other => panic!(
                "LRANGE {} on port {}: {other:?}",
                Self::KEY,
                self.ports[node]
            ),
        }
    }
}
