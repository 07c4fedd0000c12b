//! Whether etcd can still take writes: its alarms (`NOSPACE` once the backend database hit
//! its quota; etcd then refuses every write until an operator compacts, defragments and
//! disarms) and how full the database is. Read by the coordinator's `/healthz`.

use etcd_client::{AlarmAction, AlarmType};

use super::EtcdStore;
use crate::store::StoreError;

/// How full the etcd member this client talks to is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    /// A `NOSPACE` alarm is raised on some member: the cluster refuses writes.
    pub nospace_alarm: bool,
    /// Another alarm (`CORRUPT`) is raised.
    pub other_alarm: bool,
    /// Size of the backend database, bytes (what counts against the quota).
    pub db_size: u64,
    /// The quota, bytes, when the member reports it (etcd 3.5+); 0 when unknown.
    pub quota: u64,
}

impl EtcdStore {
    /// The alarms and the database size of the member answering.
    pub async fn space(&self) -> Result<Space, StoreError> {
        let alarms = self
            .call(
                "get",
                || "list etcd alarms".to_owned(),
                None,
                || {
                    let mut c = self.client.clone();
                    async move { c.alarm(AlarmAction::Get, AlarmType::None, None).await }
                },
            )
            .await?;
        let status = self
            .call(
                "get",
                || "read etcd status".to_owned(),
                None,
                || {
                    let mut c = self.client.clone();
                    async move { c.status().await }
                },
            )
            .await?;
        let mut space = Space {
            db_size: u64::try_from(status.db_size()).unwrap_or(0),
            quota: u64::try_from(status.db_size_quota()).unwrap_or(0),
            ..Space::default()
        };
        for a in alarms.alarms() {
            match a.alarm() {
                AlarmType::Nospace => space.nospace_alarm = true,
                AlarmType::None => {}
                _ => space.other_alarm = true,
            }
        }
        Ok(space)
    }
}
