//! What the engines' harnesses share: an agent as a process ([`agent`]), the agents of a
//! cluster ([`cluster`]), the backup tests' records and command line ([`backup`]) and the scenario steps every engine runs ([`scenario`]), etcd
//! ([`etcd`]), the coordinator ([`coordinator`]), test LANs and partitions ([`netns`],
//! [`partition`]), TLS material ([`tls`]), the live-migration writer ([`migration`]), the engine-neutral writer and checker
//! ([`workload`]), a webhook receiver ([`webhook`]), and bounded waits and paths ([`util`]).

pub mod agent;
pub mod backup;
pub mod cluster;
pub mod coordinator;
pub mod etcd;
pub mod in_place;
pub mod migration;
pub mod netns;
pub mod partition;
pub mod s3;
pub mod scenario;
pub mod tls;
pub mod upgrade;
pub mod util;
pub mod webhook;
pub mod workload;
