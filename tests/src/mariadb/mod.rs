//! MariaDB: a server on its own ([`server`]), a cluster under agents ([`cluster`]), the
//! application's SQL client and the writer's workload ([`workload`]), and the steps of the
//! MariaDB scenarios ([`scenario`]).

pub mod cluster;
pub mod migration;
pub mod pitr;
pub mod restored;
pub mod scenario;
pub mod server;
pub mod workload;
