//! `engine.postgres`: a valid section, the rendered secrets, and every problem it reports.

use super::tests::{ok, problems};
use super::{Config, EngineConfig, PgDurability, PostgresConfig};

/// A valid postgres engine; passwords from env variables the test environment sets.
const PG: &str = "engine:
  kind: postgres
  port: 5432
  postgres:
    data_dir: ./data
    durability: sync
    superuser: { user: postgres, password_env: SET_VAR }
    replication: { user: replicator, password_env: SET_VAR }
    parameters: { shared_buffers: 64MB, max_connections: 50, jit: false }
process: { user: postgres }
";

/// The `engine.postgres` section of a postgres engine on port 5432.
fn postgres(c: &Config) -> &PostgresConfig {
    let EngineConfig::Postgres {
        port: 5432,
        postgres,
        ..
    } = &c.engine
    else {
        panic!("a postgres engine on port 5432: {:?}", c.engine);
    };
    postgres
}

#[test]
fn a_postgres_engine_validates_and_renders_without_secrets() {
    let c = ok(PG);
    assert!(
        c.process.exec.is_empty(),
        "the engine builds the command line"
    );
    let pg = postgres(&c);
    assert_eq!(pg.durability, PgDurability::Sync);
    assert_eq!(
        pg.parameters,
        vec![
            ("jit".to_owned(), "off".to_owned()),
            ("max_connections".to_owned(), "50".to_owned()),
            ("shared_buffers".to_owned(), "64MB".to_owned())
        ]
    );
    let shown = c.to_effective_yaml();
    assert!(shown.contains("password_env"), "{shown}");
    assert!(!shown.contains("from-env"), "a secret leaked: {shown}");
}

#[test]
fn postgres_problems_name_the_field_and_the_fix() {
    let text = |p: &[super::Problem]| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let p = problems(&PG.replace("max_connections: 50", "wal_level: minimal"));
    assert!(
        text(&p).contains("engine.postgres.parameters.wal_level: wal_level is set by the engine"),
        "{}",
        text(&p)
    );
    let p = problems(&PG.replace(
        "password_env: SET_VAR }\n    parameters",
        "password: hunter2 }\n    parameters",
    ));
    let t = text(&p);
    assert!(
        t.contains("engine.postgres.replication.password: inline passwords are not allowed"),
        "{t}"
    );
    assert!(!t.contains("hunter2"), "{t}");
    let p = problems(&PG.replace(
        "process: { user: postgres }",
        "process: { exec: [postgres], user: postgres }",
    ));
    assert!(
        text(&p).contains("process.exec: the engine builds the server command line itself"),
        "{}",
        text(&p)
    );
    let p = problems(&PG.replace("durability: sync", "durability: quorum"));
    assert!(
        text(&p).contains("\"quorum\" is not a durability; expected async or sync"),
        "{}",
        text(&p)
    );
    let p = problems("engine: { kind: postgres, port: 5432 }\nprocess: { user: postgres }\n");
    assert!(
        text(&p).contains("engine.postgres: required with kind: postgres"),
        "{}",
        text(&p)
    );
    let p = problems(
        "engine: { kind: process, postgres: { data_dir: x } }\nprocess: {exec: [sleep, \"1\"]}\n",
    );
    assert!(
        text(&p).contains("engine.postgres: is only for kind: postgres"),
        "{}",
        text(&p)
    );
}

#[test]
fn database_accounts_name_the_field_and_the_fix() {
    let text = |p: &[super::Problem]| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let long = "r".repeat(64);
    let cases = [
        (
            "{ user: postgres, password_env: SET_VAR }".to_owned(),
            "{ password_env: SET_VAR }".to_owned(),
            "engine.postgres.superuser.user: required; expected a user name, e.g. user: postgres",
        ),
        (
            "{ user: replicator, password_env: SET_VAR }".to_owned(),
            format!("{{ user: {long}, password_env: SET_VAR }}"),
            "engine.postgres.replication.user: expected a user name of 1 to 63 characters",
        ),
        (
            "{ user: replicator, password_env: SET_VAR }".to_owned(),
            "{ user: replicator, password_env: SET_VAR, password_file: /x }".to_owned(),
            "engine.postgres.replication.password_env: is set together with password_file",
        ),
        (
            "{ user: replicator, password_env: SET_VAR }".to_owned(),
            "{ user: replicator }".to_owned(),
            "engine.postgres.replication: has no password; expected password_file: PATH or password_env: VAR",
        ),
    ];
    for (from, to, want) in cases {
        let t = text(&problems(&PG.replacen(&from, &to, 1)));
        assert!(t.contains(want), "{to}: {t}");
    }
}

#[test]
fn max_slot_wal_keep_size_has_a_default_and_is_validated() {
    let c = ok(PG);
    let pg = postgres(&c);
    assert_eq!(pg.max_slot_wal_keep_size, "4GB");
    assert!(
        c.to_effective_yaml()
            .contains("max_slot_wal_keep_size: 4GB"),
        "{}",
        c.to_effective_yaml()
    );
    for good in ["-1", "512MB", "2048", "10GB", "1TB"] {
        let c = ok(&PG.replace(
            "    parameters:",
            &format!("    max_slot_wal_keep_size: {good}\n    parameters:"),
        ));
        let pg = postgres(&c);
        assert_eq!(pg.max_slot_wal_keep_size, good);
    }
    for (bad, why) in [
        (
            "4gb",
            "\"gb\" is not a size unit; expected kB, MB, GB or TB",
        ),
        ("lots", "\"lots\" is not a size"),
        ("0", "0 is below one WAL segment (16MB)"),
        ("1MB", "1MB is below one WAL segment (16MB)"),
        ("99999999999TB", "is too large"),
    ] {
        let p = problems(&PG.replace(
            "    parameters:",
            &format!("    max_slot_wal_keep_size: {bad}\n    parameters:"),
        ));
        let t = p
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            t.contains("engine.postgres.max_slot_wal_keep_size") && t.contains(why),
            "{bad}: {t}"
        );
    }
    let p = problems(&PG.replace("max_connections: 50", "max_slot_wal_keep_size: 1GB"));
    assert!(
        p.iter()
            .any(|p| p.to_string().contains("is set by the engine")),
        "as a parameter it is rejected"
    );
}

/// A config read through a relative path (the README's `--config examples/postgres/agent-2.yaml`)
/// resolves every path once, to an absolute one without `./`: PostgreSQL resolves a relative
/// `passfile` in `primary_conninfo` inside its data directory, where it does not exist.
#[test]
fn relative_paths_resolve_to_absolute_ones_at_load() {
    let text = PG.replace("password_env: SET_VAR", "password_file: su.pw");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("su.pw"), "x\n").expect("write");
    let cwd = std::env::current_dir().expect("cwd");
    let rel = pathdiff(dir.path(), &cwd);
    let c = super::load::parse(&rel.join("agent.yaml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let pg = postgres(&c);
    assert!(pg.data_dir.is_absolute(), "{}", pg.data_dir.display());
    assert_eq!(pg.data_dir.file_name(), Some("data".as_ref()));
    let parent = pg.data_dir.parent().expect("parent");
    assert_eq!(
        parent.canonicalize().expect("exists"),
        dir.path().canonicalize().expect("exists")
    );
    assert!(!pg.data_dir.to_string_lossy().contains("/./"));
    assert!(
        c.node.state_dir.is_absolute(),
        "{}",
        c.node.state_dir.display()
    );
}

/// `to` as seen from `from` (`../../tmp/x`), for a relative config path.
fn pathdiff(to: &std::path::Path, from: &std::path::Path) -> std::path::PathBuf {
    let ups = from.components().count().saturating_sub(1);
    let mut p = std::path::PathBuf::new();
    for _ in 0..ups {
        p.push("..");
    }
    p.join(to.strip_prefix("/").expect("absolute"))
}

#[test]
fn the_backup_role_is_optional_and_validated_like_the_others() {
    let c = ok(PG);
    assert!(
        postgres(&c).backup.is_none(),
        "no backup role unless configured"
    );
    let with = PG.replace(
        "    parameters:",
        "    backup: { user: backup, password_env: SET_VAR }\n    parameters:",
    );
    let c = ok(&with);
    let b = postgres(&c).backup.as_ref().expect("a backup role");
    assert_eq!(b.user, "backup");
    let text = |p: &[super::Problem]| {
        p.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (to, want) in [
        (
            "{ user: backup, password: hunter2 }",
            "engine.postgres.backup.password: inline passwords are not allowed",
        ),
        (
            "{ user: backup }",
            "engine.postgres.backup: has no password; expected password_file: PATH or password_env: VAR",
        ),
        (
            "{ user: replicator, password_env: SET_VAR }",
            "engine.postgres.backup.user: \"replicator\" is also the replication user; expected a role of its own",
        ),
        (
            "{ user: postgres, password_env: SET_VAR }",
            "engine.postgres.backup.user: \"postgres\" is also the superuser user; expected a role of its own",
        ),
    ] {
        let t = text(&problems(
            &with.replace("{ user: backup, password_env: SET_VAR }", to),
        ));
        assert!(t.contains(want), "{to}: {t}");
        assert!(!t.contains("hunter2"), "{t}");
    }
}
