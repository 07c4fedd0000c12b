//! Configuration: YAML → raw serde structs → validated [`Config`].
//!
//! Every error names the file, line, column and field and says what was expected.
//!
//! - `raw.rs`: the file as written (serde, unknown fields denied);
//! - `validate.rs`: raw → [`Config`], collecting every problem; `checks.rs` and `secrets.rs`
//!   hold its value checks and secret reading, `validate_handlers.rs` the engine, hooks,
//!   handlers and jobs, `validate_tls.rs` the etcd and listener TLS files, `validate_log.rs` the log outputs;
//! - `locate.rs`: maps a field path to its line and column;
//! - `load.rs`: [`load`] and [`parse`];
//! - `render.rs`: [`Config::to_effective_yaml`];
//! - `error.rs`: [`ConfigError`] and [`Problem`].

mod error;
mod fields;
mod load;
mod locate;
mod model;
mod postgres;
mod raw;
mod raw_backup;
mod raw_mariadb;
mod render;
mod secrets;
mod validate;
mod validate_backup;
mod validate_handlers;
mod validate_log;
mod validate_mariadb;
mod validate_tls;
mod values;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_backup;
#[cfg(test)]
mod tests_etcd_tls;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_listener_tls;
#[cfg(test)]
mod tests_log;
#[cfg(test)]
mod tests_mariadb;
#[cfg(test)]
mod tests_packages;
#[cfg(test)]
mod tests_postgres;
#[cfg(test)]
mod tests_roles;
#[cfg(test)]
mod tests_seed;
#[cfg(test)]
mod tests_tls;

pub use error::{ConfigError, Problem};
pub use load::{load, parse};
pub use model::*;
pub use postgres::{PgDurability, PostgresConfig};
pub use validate_backup::{
    ArchiveConfig, BackupConfig, BackupJobConfig, NotifyConfig, RepositoryConfig,
    RepositoryLocation, RunOn, S3Config, VerificationConfig,
};
pub use validate_mariadb::{MariadbConfig, MariadbDurability};
