//! Test harness: starts real servers on loopback with random free ports in temp dirs,
//! and agents as separate processes, and injects faults.

pub mod agent;
pub mod bench;
pub mod cluster;
pub mod coordinator;
pub mod etcd;
pub mod mariadb;
pub mod mariadb_cluster;
pub mod mariadb_scenario;
pub mod mariadb_workload;
pub mod netns;
pub mod partition;
pub mod postgres;
pub mod postgres_cluster;
pub mod postgres_scenario;
pub mod redis;
pub mod resp;
pub mod scenario;
pub mod tls;
pub mod util;
pub mod workload;
