//! Redis under the `process` engine: a cluster under agents and its workload ([`cluster`]),
//! a minimal RESP client ([`resp`]), and the steps of the Redis scenarios ([`scenario`]).

pub mod cluster;
pub mod resp;
pub mod scenario;
