//! PostgreSQL: the Debian binaries, a SQL client and a server driven by the engine alone
//! ([`server`]), a cluster under agents ([`cluster`]), the writer's and the checker's view
//! of it ([`workload`]), and the steps of the PostgreSQL scenarios ([`scenario`]).

pub mod cluster;
pub mod migration;
pub mod pitr;
pub mod scenario;
pub mod server;
pub mod workload;
