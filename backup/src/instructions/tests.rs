//! The instructions for each engine × method × full/incremental (snapshots), chains with
//! missing or failed links, and values that must never reach a command.

use super::*;
use cluster::wire::Timestamp;

const FULL: &str = "20261201T020000Z-0000000a";
const INC1: &str = "20261202T020000Z-0000000b";
const INC2: &str = "20261203T153000Z-1a2b3c4d";

fn record(
    id: &str,
    parent: Option<&str>,
    engine: &str,
    method: Method,
    streams: &[&str],
) -> BackupRecordDoc {
    BackupRecordDoc {
        schema: 1,
        id: id.into(),
        set_id: FULL.into(),
        parent_id: parent.map(str::to_owned),
        job: "nightly".into(),
        node: "node-1".into(),
        engine: engine.into(),
        engine_version: Some(
            if engine == "mariadb" {
                "10.11.19"
            } else {
                "15.18"
            }
            .into(),
        ),
        method,
        backup_type: if parent.is_some() {
            BackupType::Incremental
        } else {
            BackupType::Full
        },
        status: BackupStatus::Done,
        started: Timestamp::from_unix_millis(1_796_170_000_000),
        finished: None,
        position: Some(
            if engine == "mariadb" {
                "0-1-2143"
            } else {
                "0/5000100 on timeline 2"
            }
            .into(),
        ),
        size_plain: 1,
        size_stored: 1,
        repositories: vec!["offsite".into()],
        databases: vec![],
        streams: streams.iter().map(|s| (*s).to_owned()).collect(),
        error: None,
        verified: None,
        restore_tested: None,
        restore_seconds: None,
    }
}

fn streams(engine: &str, method: Method) -> &'static [&'static str] {
    match (engine, method) {
        ("postgres", Method::Logical) => &["db-postgres", "globals", "db-shop"],
        (_, Method::Logical) => &["db-shop", "db-audit_log", "users"],
        ("postgres", _) => &["base"],
        _ => &["base"],
    }
}

/// The chain FULL ← INC1 ← INC2 (incremental) or FULL alone, as records.
fn input(engine: &str, method: Method, incremental: bool, repo: &str) -> Input {
    let s = streams(engine, method);
    let records = vec![
        record(INC1, Some(FULL), engine, method, s),
        record(FULL, None, engine, method, s),
        record(INC2, Some(INC1), engine, method, s),
    ];
    let target = if incremental {
        &records[2]
    } else {
        &records[1]
    };
    Input::from_record(target, &records, "prod/shop/main", repo)
}

#[test]
fn mariadb_physical_full() {
    insta::assert_snapshot!(manual(&input(
        "mariadb",
        Method::Physical,
        false,
        "s3://backups/autopilot/"
    )));
}

#[test]
fn mariadb_physical_incremental() {
    let i = input("mariadb", Method::Physical, true, "repository \"offsite\"");
    let ids: Vec<&str> = i.chain.iter().map(|l| l.backup_id.as_str()).collect();
    assert_eq!(ids, [FULL, INC1, INC2], "the full first");
    assert!(i.warnings.is_empty(), "{:?}", i.warnings);
    insta::assert_snapshot!(manual(&i));
}

#[test]
fn mariadb_logical_full() {
    insta::assert_snapshot!(manual(&input(
        "mariadb",
        Method::Logical,
        false,
        "/srv/backups"
    )));
}

#[test]
fn mariadb_logical_incremental() {
    insta::assert_snapshot!(manual(&input(
        "mariadb",
        Method::Logical,
        true,
        "/srv/backups"
    )));
}

#[test]
fn postgres_physical_full() {
    insta::assert_snapshot!(manual(&input(
        "postgres",
        Method::Physical,
        false,
        "s3://backups"
    )));
}

#[test]
fn postgres_physical_incremental() {
    insta::assert_snapshot!(manual(&input(
        "postgres",
        Method::Physical,
        true,
        "s3://backups"
    )));
}

#[test]
fn postgres_logical_full() {
    insta::assert_snapshot!(manual(&input(
        "postgres",
        Method::Logical,
        false,
        "repository \"local\""
    )));
}

#[test]
fn postgres_logical_incremental() {
    insta::assert_snapshot!(manual(&input(
        "postgres",
        Method::Logical,
        true,
        "repository \"local\""
    )));
}

#[test]
fn a_missing_parent_or_a_failed_link_is_said_first() {
    let s = streams("mariadb", Method::Physical);
    let mut full = record(FULL, None, "mariadb", Method::Physical, s);
    full.status = BackupStatus::Failed;
    full.error = Some("mariadb-backup exited with 1".into());
    let inc2 = record(INC2, Some(INC1), "mariadb", Method::Physical, s);
    let i = Input::from_record(&inc2, &[full.clone(), inc2.clone()], "a/b/c", "/x");
    assert_eq!(i.chain.len(), 1);
    assert!(
        i.warnings[0].contains(&format!("{INC2} builds on {INC1}, which etcd")),
        "{:?}",
        i.warnings
    );
    let text = manual(&i);
    assert!(text.starts_with("# Restore backup "), "{text}");
    assert!(
        text.contains("# WARNING: the chain is incomplete"),
        "{text}"
    );

    let inc1 = record(INC1, Some(FULL), "mariadb", Method::Physical, s);
    let i = Input::from_record(&inc1, &[full, inc1.clone()], "a/b/c", "/x");
    assert_eq!(i.chain.len(), 2);
    assert!(
        i.warnings[0].contains("is failed, not a complete backup (mariadb-backup exited with 1)"),
        "{:?}",
        i.warnings
    );

    // A loop and a parent that is no id stop the walk.
    let a = record(FULL, Some(INC1), "mariadb", Method::Physical, s);
    let b = record(INC1, Some(FULL), "mariadb", Method::Physical, s);
    let i = Input::from_record(&b, &[a.clone(), b.clone()], "a/b/c", "/x");
    assert_eq!(i.chain.len(), 2);
    assert!(i.warnings[0].contains("loops back"), "{:?}", i.warnings);
    let c = record(INC1, Some("../../etc"), "mariadb", Method::Physical, s);
    let i = Input::from_record(&c, &[], "a/b/c", "/x");
    assert!(
        i.warnings[0].contains("not a backup id"),
        "{:?}",
        i.warnings
    );
}

#[test]
fn nothing_unsafe_reaches_a_command() {
    let mut i = input("mariadb", Method::Logical, false, "/srv/it's here");
    i.chain[0].streams.push("db-$(reboot)".into());
    i.chain[0].streams.push("../x".into());
    i.cluster = "a/b/c'; rm -rf /".into();
    i.position = Some("x\ny".into());
    let text = manual(&i);
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| !l.contains("reboot") && !l.contains("../x")),
        "{text}"
    );
    assert!(text.contains("stream \"db-$(reboot)\" of"), "{text}");
    assert!(text.contains("REPO='/srv/it'\\''s here'"), "{text}");
    assert!(text.contains("CLUSTER='a/b/c'\\''; rm -rf /'"), "{text}");
    assert!(text.contains("# Consistent at: x?y"), "{text}");
}

#[test]
fn from_manifest_follows_parents_among_manifests() {
    let id = |s: &str| BackupId::parse(s).expect("valid id");
    let mut full = crate::manifest::tests::sample(id(FULL));
    full.engine.kind = EngineKind::Mariadb;
    full.engine.version = "10.11.19".into();
    let mut inc = full.clone();
    inc.backup_id = id(INC1);
    inc.parent_id = Some(id(FULL));
    inc.backup_type = BackupType::Incremental;
    inc.status = Status::Running;
    let i = Input::from_manifest(&inc, &[inc.clone(), full.clone()], "s3://b/p");
    assert_eq!(i.engine, "mariadb");
    assert_eq!(i.cluster, "prod/shop/pg-main");
    let ids: Vec<&str> = i.chain.iter().map(|l| l.backup_id.as_str()).collect();
    assert_eq!(ids, [FULL, INC1]);
    assert_eq!(i.chain[0].streams, ["base"]);
    assert_eq!(i.warnings.len(), 1, "{:?}", i.warnings);
    assert!(i.warnings[0].contains("still running"), "{:?}", i.warnings);
    let text = manual(&i);
    assert!(text.contains("--incremental-dir=\"$WORK/inc-1\""), "{text}");
}

#[test]
fn major_versions() {
    assert_eq!(major("mariadb", "10.11.19"), "10.11");
    assert_eq!(major("mariadb", "11.4.2-MariaDB-log"), "11.4");
    assert_eq!(major("postgres", "15.18"), "15");
    assert_eq!(major("postgres", "9.6.24"), "9.6");
    assert_eq!(major("postgres", "17.2 (Debian 17.2-1)"), "17");
}
