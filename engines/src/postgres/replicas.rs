//! What the primary's agent keeps in step with the cluster's members: the replication role,
//! one physical replication slot per replica, and `synchronous_standby_names`.

use tokio_postgres::Client;

use super::settings::{PostgresSettings, ident, literal, slot_name};
use super::sql::{SqlError, execute, rows};

/// Create the replication role from the configured credentials if it does not exist (a
/// catalog write: only on a writable primary).
pub async fn ensure_role(client: &Client, s: &PostgresSettings) -> Result<(), SqlError> {
    let user = &s.replication.user;
    if user == &s.superuser.user {
        return Ok(());
    }
    let found = rows(
        client,
        &format!("SELECT 1 FROM pg_roles WHERE rolname = {}", literal(user)),
    )
    .await?;
    if found.is_empty() {
        // Only a SCRAM verifier travels (and may be logged), never the password. The commit
        // must not wait for a synchronous standby: replicas need this role to exist first.
        let verifier =
            postgres_protocol::password::scram_sha_256(s.replication.password.as_bytes());
        execute(
            client,
            &format!(
                "BEGIN READ WRITE; SET LOCAL synchronous_commit = local; \
                 CREATE ROLE {} WITH REPLICATION LOGIN PASSWORD {}; COMMIT",
                ident(user),
                literal(&verifier)
            ),
        )
        .await?;
    }
    Ok(())
}

/// Make sure the slot `name` exists on the server `client` is connected to (a primary).
pub async fn ensure_slot(client: &Client, name: &str) -> Result<(), SqlError> {
    rows(
        client,
        &format!(
            "SELECT pg_create_physical_replication_slot({lit}, true) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {lit})",
            lit = literal(name)
        ),
    )
    .await
    .map(|_| ())
}

/// Keep one slot per member (named after it) and drop inactive autopilot slots of nodes
/// that left; returns the members' application names (their slot names), sorted.
pub async fn sync_slots(client: &Client, members: &[String]) -> Result<Vec<String>, SqlError> {
    let mut names: Vec<String> = members.iter().map(|m| slot_name(m)).collect();
    names.sort();
    names.dedup();
    for name in &names {
        ensure_slot(client, name).await?;
    }
    let existing = rows(
        client,
        "SELECT slot_name, active::text FROM pg_replication_slots \
         WHERE slot_type = 'physical' AND slot_name LIKE 'autopilot\\_%'",
    )
    .await?;
    for r in existing {
        let (Some(Some(name)), Some(Some(active))) = (r.first(), r.get(1)) else {
            continue;
        };
        if active == "f" && !names.contains(name) {
            execute(
                client,
                &format!("SELECT pg_drop_replication_slot({})", literal(name)),
            )
            .await?;
        }
    }
    Ok(names)
}
