//! Tests of `engine.kind: mariadb` and its `engine.mariadb` section.

use std::path::Path;

use super::load::parse_with;
use super::model::EngineConfig;
use super::validate_mariadb::MariadbDurability;
use super::{Config, ConfigError, Problem};

/// A valid mariadb engine section; passwords from the environment.
const ENGINE: &str = "engine:\n  kind: mariadb\n  port: 3306\n  mariadb:\n    datadir: /var/lib/mysql\n    credentials:\n      admin: {user: autopilot, password_env: ADMIN_PW}\n      replication: {user: repl, password_env: REPL_PW}\n";

fn env(name: &str) -> Option<String> {
    match name {
        "ADMIN_PW" => Some("adm-MARKER".into()),
        "REPL_PW" => Some("repl-MARKER".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(Path::new("/etc/autopilot/a.yaml"), text, &env, &|| {
        Ok("host".into())
    })
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_mariadb_engine_needs_no_process_section() {
    let c = parse(ENGINE).expect("valid");
    assert_eq!(c.process.exec, ["/usr/sbin/mariadbd", "--no-defaults"]);
    let EngineConfig::Mariadb {
        port: 3306,
        mariadb: m,
        ..
    } = &c.engine
    else {
        panic!("a mariadb engine on port 3306: {:?}", c.engine);
    };
    assert_eq!(
        m.durability,
        MariadbDurability::Sync {
            fallback_after: None
        }
    );
    assert_eq!(m.admin.password.expose(), "adm-MARKER");
    assert!(
        !format!("{c:?}").contains("MARKER"),
        "a password in Debug output"
    );
    assert!(
        !c.to_effective_yaml().contains("MARKER"),
        "a password in the effective config"
    );
}

#[test]
fn inline_passwords_missing_parts_and_unsupported_settings_are_named() {
    let text = "engine:\n  kind: mariadb\n  mariadb:\n    flavour: mysql\n    durability: maybe\n    credentials:\n      admin: {user: autopilot, password: hunter2}\n";
    let found = problems(text);
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    for want in [
        "engine.port",
        "engine.mariadb.flavour",
        "engine.mariadb.datadir",
        "engine.mariadb.durability",
        "engine.mariadb.credentials.admin.password",
        "engine.mariadb.credentials.replication",
    ] {
        assert!(fields.contains(&want), "{want} not reported: {found:#?}");
    }
    assert!(!format!("{found:?}").contains("hunter2"));
}

#[test]
fn a_mariadb_section_needs_kind_mariadb() {
    let text = "engine:\n  mariadb: {datadir: /d}\nprocess: {exec: [a]}\n";
    let found = problems(text);
    assert_eq!(found[0].field, "engine.mariadb", "{found:#?}");
}

#[test]
fn a_backup_account_is_optional_and_read_like_the_others() {
    let c = parse(ENGINE).expect("valid");
    let EngineConfig::Mariadb { mariadb: m, .. } = &c.engine else {
        panic!("a mariadb engine: {:?}", c.engine);
    };
    assert!(m.backup.is_none(), "no backup account unless configured");
    let text = format!("{ENGINE}      backup: {{user: backup, password_env: ADMIN_PW}}\n");
    let c = parse(&text).expect("valid");
    let EngineConfig::Mariadb { mariadb: m, .. } = &c.engine else {
        panic!("a mariadb engine: {:?}", c.engine);
    };
    let b = m.backup.as_ref().expect("a backup account");
    assert_eq!(b.user, "backup");
    assert_eq!(b.password.expose(), "adm-MARKER");
    assert!(!format!("{c:?}").contains("MARKER"));
    assert!(!c.to_effective_yaml().contains("MARKER"));
}

#[test]
fn a_backup_account_needs_a_user_of_its_own_and_no_inline_password() {
    let text = format!("{ENGINE}      backup: {{user: repl, password: hunter2}}\n");
    let found = problems(&text);
    let fields: Vec<&str> = found.iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.contains(&"engine.mariadb.credentials.backup.password"),
        "{found:#?}"
    );
    assert!(!format!("{found:?}").contains("hunter2"));
    let text = format!("{ENGINE}      backup: {{user: autopilot, password_env: REPL_PW}}\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "engine.mariadb.credentials.backup.user");
    assert!(
        found[0].message.contains("admin account's user"),
        "{found:#?}"
    );
    let text = format!("{ENGINE}      backup: {{user: backup}}\n");
    let found = problems(&text);
    assert_eq!(
        found[0].field, "engine.mariadb.credentials.backup",
        "{found:#?}"
    );
}
