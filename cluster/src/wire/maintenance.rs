//! The `maintenance` document: while enabled, agents make no automatic role change (I4).

use serde::{Deserialize, Serialize};

use super::common::Timestamp;
use super::{Document, schema_v1};

/// Value of `<cluster>/maintenance`. Operators may write it by hand with only `enabled`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceDoc {
    /// Always 1 for this layout.
    #[serde(default = "schema_v1")]
    pub schema: u32,
    /// Maintenance mode on or off. Deleting the key means off.
    pub enabled: bool,
    /// Why, for humans.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who turned it on (user or token name).
    #[serde(default)]
    pub by: Option<String>,
    /// When.
    #[serde(default)]
    pub time: Option<Timestamp>,
}

impl Document for MaintenanceDoc {
    const KIND: &'static str = "maintenance";
}
