//! Benchmarks behind the `bench` binary: measurements and the BENCHMARKS.md writer.

pub mod etcd_load;
pub mod failover;
pub mod hostile;
pub mod idle;
pub mod mariadb;
pub mod patroni;
pub mod postgres;
pub mod proc;
pub mod recovery;
pub mod report;
