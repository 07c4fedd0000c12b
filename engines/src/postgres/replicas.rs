//! What the primary's agent keeps in step with the cluster's members: the replication role,
//! one physical replication slot per replica, and `synchronous_standby_names`.

use tokio_postgres::Client;

use super::settings::{PostgresSettings, ident, literal, slot_name};
use super::sql::{SqlError, execute, rows};

/// The roles the primary's agent keeps: the replication role ([`ensure_role`]) and the
/// backup role ([`ensure_backup_role`]). Catalog writes: only on a writable primary; they
/// replicate, so every standby has them too.
pub async fn ensure_roles(client: &Client, s: &PostgresSettings) -> Result<(), SqlError> {
    ensure_role(client, s).await?;
    ensure_backup_role(client, s).await
}

/// Create the backup role, or bring it back to what the configuration says (password and
/// privileges), when one is configured. Least privilege for what the backup tools read:
///
/// - `LOGIN REPLICATION`: `pg_basebackup` uses the replication protocol;
/// - member of `pg_read_all_data`: `pg_dump` reads every table, view and sequence (as if it
///   had `SELECT` on each and `USAGE` on every schema) without owning or writing anything;
/// - `BYPASSRLS`: `pg_dump` refuses to dump a table with row-level security policies
///   otherwise (it sets `row_security = off` so that nothing is silently left out);
/// - `SELECT` on `pg_catalog.pg_authid`: `pg_dumpall --globals-only` reads the roles'
///   password hashes there (`pg_roles` shows them as `********`); without it a restore
///   brings the roles back without passwords. It can read every role's SCRAM verifier,
///   which is inherent in a backup that restores logins.
///
/// Nothing else: no superuser, no `CREATEROLE`/`CREATEDB`, no write privilege. Only a
/// SCRAM verifier is sent. Run each time the primary's agent keeps the replicas (after a
/// promotion and when the members change): a changed password takes effect then.
pub async fn ensure_backup_role(client: &Client, s: &PostgresSettings) -> Result<(), SqlError> {
    let Some(backup) = &s.backup else {
        return Ok(());
    };
    if backup.user == s.superuser.user {
        return Ok(());
    }
    let found = rows(
        client,
        &format!(
            "SELECT 1 FROM pg_roles WHERE rolname = {}",
            literal(&backup.user)
        ),
    )
    .await?;
    let verb = if found.is_empty() {
        "CREATE ROLE"
    } else {
        "ALTER ROLE"
    };
    let verifier = postgres_protocol::password::scram_sha_256(backup.password.as_bytes());
    let role = ident(&backup.user);
    // The commit must not wait for a synchronous standby (see `ensure_role`).
    execute(
        client,
        &format!(
            "BEGIN READ WRITE; SET LOCAL synchronous_commit = local; \
             {verb} {role} WITH LOGIN REPLICATION BYPASSRLS NOSUPERUSER NOCREATEDB \
             NOCREATEROLE PASSWORD {}; \
             GRANT pg_read_all_data TO {role}; \
             GRANT SELECT ON pg_catalog.pg_authid TO {role}; COMMIT",
            literal(&verifier)
        ),
    )
    .await
}

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
