//! Redis under the `process` engine: a cluster under agents ([`cluster`]), a minimal RESP
//! client ([`resp`]), the writer's and the checker's view of Redis ([`workload`]), and the
//! steps of the Redis scenarios ([`scenario`]).

pub mod cluster;
pub mod resp;
pub mod scenario;
pub mod workload;
