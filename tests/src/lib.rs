//! Test harness: starts real servers on loopback with random free ports in temp dirs,
//! and agents as separate processes, and injects faults.
//!
//! Layout: [`harness`] holds what every engine shares (agents, etcd, the coordinator, test
//! LANs, TLS material, the writer and checker, waits); one folder per engine
//! ([`mariadb`], [`postgres`], [`redis`]) holds its server, its cluster under agents, its
//! workload and its scenario steps. The scenarios themselves are the files of `tests/tests/`;
//! the `bench` crate measures with the same pieces.

pub mod harness;
pub mod mariadb;
pub mod postgres;
pub mod redis;
