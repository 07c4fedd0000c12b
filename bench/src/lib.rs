//! The benchmarks behind the `bench` binary: one module per subcommand, measured with the
//! `e2e` harness (real etcd, databases and agents on loopback), and the BENCHMARKS.md
//! writer. Benchmarks report; they never assert.
//!
//! [`backup`] measures the backup pipeline beside the raw tools and pgBackRest; [`pitr`]
//! continuous archiving, point-in-time restores and replicas seeded from the repository
//! under the agents; [`cli`] is the command line; [`report`] writes a named section of
//! BENCHMARKS.md; [`proc`] reads a process's resource use; [`patroni`] runs Patroni beside
//! the agents for [`postgres`].

pub mod backup;
pub mod cli;
pub mod etcd_load;
pub mod failover;
pub mod hostile;
pub mod idle;
pub mod mariadb;
pub mod migrate;
pub mod patroni;
pub mod pitr;
pub mod postgres;
pub mod proc;
pub mod recovery;
pub mod report;
pub mod upgrade;
