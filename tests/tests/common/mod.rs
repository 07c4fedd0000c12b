//! Shared setup of the coordinator API tests: etcd, a coordinator and two fake clusters.

#![allow(dead_code)]

use e2e::harness::coordinator::{ADMIN_TOKEN, Api, Coordinator, seed_node};
use e2e::harness::etcd::EtcdServer;
use serde_json::Value;

pub const C1: &str = "/v1/clusters/a/p/c1";

/// etcd, a coordinator, and two fake clusters: `a/p/c1` (n1 primary at offset 10, n2 at 10,
/// n3 behind at 5) and `b/p/c2` (m1 primary).
pub struct World {
    pub etcd: EtcdServer,
    pub coord: Coordinator,
    pub root: Api,
}

pub fn world(extra: &[&str]) -> World {
    let etcd = EtcdServer::start().expect("start etcd");
    seed_node(&etcd, "a/p/c1", "n1", true, 10);
    seed_node(&etcd, "a/p/c1", "n2", false, 10);
    seed_node(&etcd, "a/p/c1", "n3", false, 5);
    seed_node(&etcd, "b/p/c2", "m1", true, 3);
    let coord = Coordinator::start(&etcd.endpoint(), extra).expect("start the coordinator");
    let root = coord.api(Some(ADMIN_TOKEN));
    World { etcd, coord, root }
}

/// The newest audit record (read with the root admin token, which is not audited).
pub fn newest_audit(root: &Api) -> Value {
    let (s, v) = root.get("/v1/audit?limit=1");
    assert_eq!(s, 200, "{v}");
    v["records"][0].clone()
}

pub fn assert_problem(status: u16, v: &Value, code: &str, ctx: &str) {
    assert_eq!(v["code"], code, "{ctx}: {status} {v}");
    assert!(
        v["detail"].as_str().is_some_and(|d| d.len() > 10),
        "{ctx}: a problem needs a detail that says what to do: {v}"
    );
    assert_eq!(v["status"], status, "{ctx}: {v}");
}
