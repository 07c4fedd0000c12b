//! Test harness: starts real servers on loopback with random free ports in temp dirs,
//! and (later) agents, and injects faults.

pub mod etcd;
