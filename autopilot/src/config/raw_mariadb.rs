//! `engine.mariadb:` as written (see `validate_mariadb.rs`).

use serde::Deserialize;

use super::raw::RawDuration;

/// `engine.mariadb:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawMariadb {
    /// Data directory; required.
    pub datadir: Option<String>,
    /// `async` or `sync`; default `sync`.
    pub durability: Option<String>,
    /// With `sync`: fall back to async after a commit waited this long; default never.
    pub semi_sync_timeout: Option<RawDuration>,
    /// Explicit `server_id`; default derived from the node name.
    pub server_id: Option<u32>,
    /// OS user of the server when the agent is root; default `mysql`.
    pub os_user: Option<String>,
    /// `mariadb` (the only flavour tested) or `mysql` (refused until it is).
    pub flavour: Option<String>,
    /// The accounts the engine uses.
    pub credentials: Option<RawCredentials>,
}

/// `engine.mariadb.credentials:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCredentials {
    /// All privileges: probes, promotion, fencing.
    pub admin: Option<super::raw::RawAccount>,
    /// Replicas connect with it.
    pub replication: Option<super::raw::RawAccount>,
    /// The backup tools log in with it (least privilege); optional.
    pub backup: Option<super::raw::RawAccount>,
}
