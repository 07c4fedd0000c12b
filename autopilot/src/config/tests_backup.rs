//! `backup:` (issue 17) and its WAL archive (issue 18): a valid section of each repository
//! kind renders without secrets and round-trips; every rule reports the field, its place and
//! what was expected.

use super::tests::{ok, problems};
use super::{BackupConfig, RepositoryLocation, RunOn};

/// A public age recipient (the age specification's example key).
const R: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn doc(engine: &str, backup: &str) -> String {
    let engine = match engine {
        "postgres" => {
            "engine:\n  kind: postgres\n  port: 5432\n  postgres:\n    data_dir: ./data\n    superuser: { user: postgres, password_env: SET_VAR }\n    replication: { user: replicator, password_env: SET_VAR }\nprocess: { user: root }\n"
        }
        _ => {
            "engine:\n  kind: mariadb\n  port: 3306\n  mariadb:\n    datadir: ./data\n    credentials:\n      admin: { user: autopilot, password_env: SET_VAR }\n      replication: { user: repl, password_env: SET_VAR }\nprocess: { user: root }\n"
        }
    };
    format!("{engine}backup:\n{backup}")
}

fn valid() -> String {
    format!(
        "  repositories:
    - {{ name: local, path: ./backups }}
    - name: offsite
      s3:
        bucket: acme-db-backups
        prefix: /prod/
        endpoint: https://s3.example.com
        path_style: true
        access_key_id: {{ env: SET_VAR }}
        secret_access_key: {{ env: SET_VAR }}
  encryption: {{ recipients: [{R}] }}
  compression: {{ level: 6, threads: 4 }}
  identity: {{ env: SET_VAR }}
  jobs:
    - name: nightly
      description: nightly full
      schedule: \"0 3 * * *\"
      time_zone: Europe/Berlin
      retention: {{ keep_last: 7, keep_within: 14d }}
      run_on: replica
      pre_backup: {{ exec: [/bin/true] }}
      notify:
        - {{ url: https://hooks.example.com/b, on: [failure], secret: {{ env: SET_VAR }} }}
    - name: hourly-incr
      schedule: \"0 * * * *\"
      type: incremental
      destinations: [local]
      retention: {{ keep_within: 2d }}
"
    )
}

fn backup(text: &str) -> BackupConfig {
    ok(text).backup.expect("a backup section")
}

#[test]
fn a_backup_section_validates_renders_without_secrets_and_round_trips() {
    let text = doc("mariadb", &valid());
    let b = backup(&text);
    assert_eq!(b.repositories.len(), 2);
    assert!(matches!(&b.repositories[0].location, RepositoryLocation::Path(p) if p.is_absolute()));
    let RepositoryLocation::S3(s3) = &b.repositories[1].location else {
        panic!("s3");
    };
    assert_eq!(
        (s3.prefix.as_str(), s3.region.as_str(), s3.path_style),
        ("prod", "us-east-1", true)
    );
    assert_eq!(s3.secret_access_key.expose(), "from-env");
    assert_eq!((b.compression_level, b.compression_threads), (6, 4));
    assert_eq!(b.identity.as_ref().map(|s| s.expose()), Some("from-env"));
    assert_eq!(b.jobs[0].destinations, vec!["local", "offsite"]);
    assert_eq!(b.jobs[0].run_on, RunOn::Replica);
    assert!(b.jobs[0].fallback_to_primary);
    assert_eq!(b.jobs[1].kind, backup::catalog::Kind::Incremental);
    assert!(b.catalog.ends_with("backup-catalog.db"));
    let n = &b.jobs[0].notify[0];
    assert_eq!((n.on_success, n.on_failure), (false, true));

    let shown = ok(&text).to_effective_yaml();
    assert!(!shown.contains("from-env"), "{shown}");
    assert!(
        shown.contains("secret_access_key:\n          env: SET_VAR"),
        "{shown}"
    );
    assert!(shown.contains("\n  identity:\n    env: SET_VAR"), "{shown}");
    // The section as shown reads back as itself.
    let section = |yaml: &str| {
        yaml.split_once("\nbackup:\n")
            .map(|(_, b)| b.to_owned())
            .expect("a backup section in the effective configuration")
    };
    let again = ok(&doc("mariadb", &section(&shown))).to_effective_yaml();
    assert_eq!(section(&shown), section(&again), "{shown}");
}

#[test]
fn every_backup_problem_names_its_field_and_what_was_expected() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "no repositories",
            "  repositories: []\n  encryption: {recipients: [R]}\n",
            "has no repositories",
        ),
        (
            "path and s3",
            "  repositories: [{name: a, path: /x, s3: {bucket: bbb}}]\n  encryption: {recipients: [R]}\n",
            "has both path and s3",
        ),
        (
            "duplicate name",
            "  repositories: [{name: a, path: /x}, {name: a, path: /y}]\n  encryption: {recipients: [R]}\n",
            "used twice",
        ),
        (
            "s3 without keys",
            "  repositories: [{name: a, s3: {bucket: bbb}}]\n  encryption: {recipients: [R]}\n",
            "has no access_key_id",
        ),
        (
            "two secret sources",
            "  repositories: [{name: a, s3: {bucket: bbb, access_key_id: {env: SET_VAR, file: /f}, secret_access_key: {env: SET_VAR}}}]\n  encryption: {recipients: [R]}\n",
            "exactly one of file, env or credential",
        ),
        (
            "credential without systemd",
            "  repositories: [{name: a, s3: {bucket: bbb, access_key_id: {credential: k}, secret_access_key: {env: SET_VAR}}}]\n  encryption: {recipients: [R]}\n",
            "CREDENTIALS_DIRECTORY",
        ),
        (
            "bad endpoint",
            "  repositories: [{name: a, s3: {bucket: bbb, endpoint: s3.example.com, access_key_id: {env: SET_VAR}, secret_access_key: {env: SET_VAR}}}]\n  encryption: {recipients: [R]}\n",
            "does not start with http",
        ),
        (
            "no recipients",
            "  repositories: [{name: a, path: /x}]\n",
            "no encryption recipients",
        ),
        (
            "secret key as recipient",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [AGE-SECRET-KEY-1QQQ]}\n",
            "expected a public recipient",
        ),
        (
            "bad recipient",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [age1nope]}\n",
            "not an age X25519 recipient",
        ),
        (
            "bad level",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  compression: {level: 40}\n",
            "zstd level from 1 to 19",
        ),
        (
            "bad cron",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"every night\", retention: {keep_last: 1}}]\n",
            "is not a cron schedule",
        ),
        (
            "bad zone",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\", time_zone: Mars/Olympus, retention: {keep_last: 1}}]\n",
            "not a time zone",
        ),
        (
            "no retention",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\"}]\n",
            "has no retention",
        ),
        (
            "keep nothing",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\", retention: {keep_last: 0}}]\n",
            "expected at least 1",
        ),
        (
            "unknown destination",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\", destinations: [b], retention: {keep_last: 1}}]\n",
            "\"b\" is no repository",
        ),
        (
            "logical incremental",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\", method: logical, type: incremental, retention: {keep_last: 1}}]\n",
            "incremental is for physical backups",
        ),
        (
            "bad placement",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\", run_on: leader, retention: {keep_last: 1}}]\n",
            "expected replica, primary or any",
        ),
        (
            "bad webhook",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedule: \"0 3 * * *\", retention: {keep_last: 1}, notify: [{url: ftp://x}]}]\n",
            "not an http(s) URL",
        ),
        (
            "typo",
            "  repositories: [{name: a, path: /x}]\n  encryption: {recipients: [R]}\n  jobs: [{name: j, schedul: \"0 3 * * *\"}]\n",
            "unknown field `schedul`",
        ),
    ];
    for (name, section, says) in cases {
        let text = doc("mariadb", &section.replace("[R]", &format!("[{R}]")));
        let found = problems(&text);
        assert!(
            found
                .iter()
                .any(|p| p.message.contains(says) && p.field.starts_with("backup")),
            "{name}: no problem saying {says:?} at backup.*: {found:#?}"
        );
        assert!(
            found.iter().all(|p| p.line.is_some()),
            "{name}: a problem without a place: {found:#?}"
        );
    }
    // PostgreSQL 15 has no incremental base backups.
    let text = doc(
        "postgres",
        &format!(
            "  repositories: [{{name: a, path: /x}}]\n  encryption: {{recipients: [{R}]}}\n  jobs: [{{name: j, schedule: \"0 3 * * *\", type: incremental, retention: {{keep_last: 1}}}}]\n"
        ),
    );
    let found = problems(&text);
    assert!(
        found.iter().any(|p| p
            .message
            .contains("PostgreSQL 15 has no incremental base backups")),
        "{found:#?}"
    );
}

/// The `backup` snippet of docs/configuration.md is valid, once its files and credentials
/// are environment variables this test sets.
#[test]
fn the_docs_backup_snippet_is_valid() {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("docs");
    let block = docs
        .split("```yaml\n")
        .filter_map(|b| b.split_once("```").map(|(y, _)| y))
        .find(|b| b.contains("backup:\n  repositories:"))
        .expect("a backup snippet");
    let text = block
        .replace(
            "password_file: /etc/autopilot/admin.pass",
            "password_env: SET_VAR",
        )
        .replace(
            "password_file: /etc/autopilot/repl.pass",
            "password_env: SET_VAR",
        )
        .replace("{ credential: s3-key-id }", "{ env: SET_VAR }")
        .replace("{ credential: s3-secret }", "{ env: SET_VAR }");
    let b = backup(&format!("{text}process: {{ user: root }}\n"));
    assert_eq!(b.jobs.len(), 2);
}

/// A PostgreSQL node with two repositories and `archive` (a line of YAML under `backup:`).
fn pg_archive(archive: &str) -> String {
    doc(
        "postgres",
        &format!(
            "  repositories:\n    - {{ name: local, path: ./backups }}\n    - {{ name: offsite, path: ./offsite }}\n  encryption: {{ recipients: [{R}] }}\n{archive}"
        ),
    )
}

/// The `backup:` section of an effective configuration.
fn backup_section(yaml: &str) -> String {
    yaml.split_once("\nbackup:\n")
        .map(|(_, b)| b.to_owned())
        .expect("a backup section in the effective configuration")
}

/// `backup.archive` (issue 18): every default filled in, shown in the effective configuration,
/// and what is shown reads back as the same archive.
#[test]
fn an_archive_section_takes_its_defaults_renders_and_reads_back() {
    use super::ArchiveConfig;
    use super::validate_backup::{DEFAULT_ARCHIVE_INTERVAL, DEFAULT_SPOOL_LIMIT_MB};
    use std::path::PathBuf;
    use std::time::Duration;

    // Without the section: no archive, nothing shown.
    let none = pg_archive("");
    assert!(backup(&none).archive.is_none());
    assert!(!ok(&none).to_effective_yaml().contains("archive:"));

    // `archive: {}`: every repository, 60s, the spool under node.state_dir, 1024 MiB.
    let text = pg_archive("  archive: {}\n");
    let a = backup(&text).archive.expect("an archive");
    assert_eq!(
        a,
        ArchiveConfig {
            destinations: vec!["local".into(), "offsite".into()],
            interval: DEFAULT_ARCHIVE_INTERVAL,
            spool: PathBuf::from("/var/lib/autopilot/archive-spool"),
            spool_limit_mb: DEFAULT_SPOOL_LIMIT_MB,
        }
    );
    assert_eq!(a.interval, Duration::from_secs(60));
    assert_eq!(a.spool_limit_mb, 1024);
    let shown = ok(&text).to_effective_yaml();
    assert!(
        shown.contains(
            "\n  archive:\n    destinations:\n      - local\n      - offsite\n    interval: 1m\n    spool: /var/lib/autopilot/archive-spool\n    spool_limit_mb: 1024\n"
        ),
        "{shown}"
    );
    let again = ok(&doc("postgres", &backup_section(&shown)));
    assert_eq!(again.backup.and_then(|b| b.archive), Some(a));
    assert_eq!(
        backup_section(&again_yaml(&shown)),
        backup_section(&shown),
        "{shown}"
    );

    // Every field given: a relative spool is resolved against the config file's directory.
    let text = pg_archive(
        "  archive: { destinations: [offsite], interval: 15s, spool: ./spool, spool_limit_mb: 256 }\n",
    );
    let a = backup(&text).archive.expect("an archive");
    assert_eq!(
        a,
        ArchiveConfig {
            destinations: vec!["offsite".into()],
            interval: Duration::from_secs(15),
            spool: PathBuf::from("/etc/autopilot/spool"),
            spool_limit_mb: 256,
        }
    );
    let shown = ok(&text).to_effective_yaml();
    assert!(
        shown.contains(
            "\n  archive:\n    destinations:\n      - offsite\n    interval: 15s\n    spool: /etc/autopilot/spool\n    spool_limit_mb: 256\n"
        ),
        "{shown}"
    );
    let again = ok(&doc("postgres", &backup_section(&shown)));
    assert_eq!(again.backup.and_then(|b| b.archive), Some(a));
}

/// The effective configuration of the `backup:` section `shown` printed, parsed again.
fn again_yaml(shown: &str) -> String {
    ok(&doc("postgres", &backup_section(shown))).to_effective_yaml()
}

#[test]
fn every_archive_problem_names_its_field_and_what_was_expected() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "interval 0s",
            "  archive: { interval: 0s }\n",
            "backup.archive.interval",
            "is out of range; expected 1s to 1h",
        ),
        (
            "interval 2h",
            "  archive: { interval: 2h }\n",
            "backup.archive.interval",
            "is out of range; expected 1s to 1h",
        ),
        (
            "not a duration",
            "  archive: { interval: soon }\n",
            "backup.archive.interval",
            "is not a duration",
        ),
        (
            "spool too small",
            "  archive: { spool_limit_mb: 10 }\n",
            "backup.archive.spool_limit_mb",
            "10 is too small; expected at least 64",
        ),
        (
            "unknown destination",
            "  archive: { destinations: [local, tape] }\n",
            "backup.archive.destinations[1]",
            "\"tape\" is no repository",
        ),
        (
            "no destinations",
            "  archive: { destinations: [] }\n",
            "backup.archive.destinations",
            "is empty; expected repository names",
        ),
        (
            "empty spool",
            "  archive: { spool: \"\" }\n",
            "backup.archive.spool",
            "is empty; expected a directory",
        ),
        (
            "typo",
            "  archive: { intervall: 30s }\n",
            "backup.archive",
            "unknown field `intervall`",
        ),
    ];
    for (name, section, field, says) in cases {
        let found = problems(&pg_archive(section));
        assert!(
            found
                .iter()
                .any(|p| p.field.starts_with(field) && p.message.contains(says)),
            "{name}: no problem at {field} saying {says:?}: {found:#?}"
        );
        assert!(
            found.iter().all(|p| p.line.is_some()),
            "{name}: a problem without a place: {found:#?}"
        );
    }
    // MariaDB archives its binary logs.
    let text = doc(
        "mariadb",
        &format!(
            "  repositories: [{{name: local, path: /x}}]\n  encryption: {{recipients: [{R}]}}\n  archive: {{}}\n"
        ),
    );
    let c = ok(&text);
    assert!(c.backup.and_then(|b| b.archive).is_some());
}

/// The `backup.archive` snippet of docs/configuration.md is valid, once its files and
/// credentials are environment variables this test sets. (Like the `engine.postgres` snippet,
/// it is a plain code block: `tests_files.rs` parses the `yaml` ones as they are, and this
/// one's secret files and credentials do not exist here.)
#[test]
fn the_docs_archive_snippet_is_valid() {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("docs");
    let block = docs
        .split("```")
        .skip(1)
        .step_by(2)
        .find(|b| b.contains("\n  archive:\n    destinations:"))
        .map(|b| b.trim_start_matches("yaml").trim_start_matches('\n'))
        .expect("an archive snippet");
    let text: String = block
        .lines()
        .map(|l| {
            let l = match l.find("password_file: ") {
                Some(i) => {
                    let path = i + "password_file: ".len();
                    let end = l[path..].find([' ', '}']).map_or(l.len(), |e| path + e);
                    format!("{}password_env: SET_VAR{}", &l[..i], &l[end..])
                }
                None => l.to_owned(),
            };
            l.replace("{ credential: s3-key-id }", "{ env: SET_VAR }")
                .replace("{ credential: s3-secret }", "{ env: SET_VAR }")
                .replace("{ credential: backup-identity }", "{ env: SET_VAR }")
                + "\n"
        })
        .collect();
    let b = backup(&format!("{text}process: {{ user: root }}\n"));
    let a = b.archive.expect("an archive");
    assert_eq!(a.destinations, vec!["offsite"]);
    assert_eq!(a.interval, std::time::Duration::from_secs(60));
    assert_eq!(a.spool_limit_mb, 1024);
}

/// `cluster.bootstrap.from_backup.time` (with the archive): shown in the effective
/// configuration and read back on both engines; refused when it is not a time.
#[test]
fn a_from_backup_time_renders_reads_back_and_is_checked() {
    let with = |engine: &str, time: &str| {
        let cluster = format!(
            "cluster:\n  namespace: prod\n  project: shop\n  name: orders\n  bootstrap:\n    from_backup:\n      repository: local\n      time: {time}\n"
        );
        let backup = doc(
            engine,
            &format!(
                "  repositories: [{{name: local, path: ./backups}}]\n  encryption: {{recipients: [{R}]}}\n  identity: {{ env: SET_VAR }}\n"
            ),
        );
        format!("{cluster}{backup}")
    };
    let text = with("postgres", "\"2026-12-04T03:20:00.5Z\"");
    let c = ok(&text);
    let time = |c: &super::Config| {
        c.cluster
            .as_ref()
            .and_then(|c| c.from_backup.as_ref())
            .and_then(|f| f.time.clone())
    };
    assert_eq!(time(&c).as_deref(), Some("2026-12-04T03:20:00.5Z"));
    let shown = c.to_effective_yaml();
    assert!(
        shown.contains(
            "\n    from_backup:\n      repository: local\n      backup: latest\n      time: "
        ),
        "{shown}"
    );
    let again = ok(&shown);
    assert_eq!(time(&again), time(&c));
    assert_eq!(again.to_effective_yaml(), shown);

    let found = problems(&with("postgres", "yesterday"));
    assert!(
        found
            .iter()
            .any(|p| p.field == "cluster.bootstrap.from_backup.time"
                && p.message.contains("is not an RFC 3339 time")
                && p.line.is_some()),
        "{found:#?}"
    );
    // MariaDB replays its archived binary logs.
    let c = ok(&with("mariadb", "\"2026-12-04T03:20:00Z\""));
    assert_eq!(time(&c).as_deref(), Some("2026-12-04T03:20:00Z"));
}

/// `cluster.bootstrap.migrate_from`: read, shown in the effective configuration with the
/// password's origin only, read back; every mistake named by its field, with a line.
#[test]
fn migrate_from_reads_renders_and_names_its_mistakes() {
    let with = |engine: &str, body: &str| {
        let engine = match engine {
            "postgres" => {
                "engine:\n  kind: postgres\n  port: 5432\n  postgres:\n    data_dir: ./data\n    superuser: { user: postgres, password_env: SET_VAR }\n    replication: { user: replicator, password_env: SET_VAR }\nprocess: { user: root }\n"
            }
            _ => {
                "engine:\n  kind: mariadb\n  port: 3306\n  mariadb:\n    datadir: ./data\n    credentials:\n      admin: { user: autopilot, password_env: SET_VAR }\n      replication: { user: repl, password_env: SET_VAR }\nprocess: { user: root }\n"
            }
        };
        format!(
            "cluster:\n  namespace: prod\n  project: shop\n  name: orders\n  bootstrap:\n    migrate_from:\n{body}{engine}"
        )
    };
    let good = "      host: db-old.example.com\n      port: 5432\n      account: { user: migrator, password_env: SET_VAR }\n      slot: autopilot_migration\n";
    let c = ok(&with("postgres", good));
    let m = c
        .cluster
        .as_ref()
        .and_then(|c| c.migrate_from.clone())
        .expect("migrate_from");
    assert_eq!((m.host.as_str(), m.port), ("db-old.example.com", 5432));
    assert_eq!(m.account.user, "migrator");
    assert_eq!(m.account.password.expose(), "from-env");
    assert_eq!(m.slot.as_deref(), Some("autopilot_migration"));
    assert_eq!(m.address(), "db-old.example.com:5432");
    let shown = c.to_effective_yaml();
    assert!(
        shown.contains("    migrate_from:\n      host: db-old.example.com\n      port: 5432\n      account:\n        user: migrator\n        password_env: SET_VAR"),
        "{shown}"
    );
    assert!(!shown.contains("from-env"), "{shown}");
    assert!(ok(&shown).cluster.and_then(|c| c.migrate_from).is_some());

    let has = |text: &str, field: &str, words: &str| {
        let found = problems(text);
        assert!(
            found
                .iter()
                .any(|p| p.field == field && p.message.contains(words) && p.line.is_some()),
            "{field}: {words}: {found:#?}"
        );
    };
    has(
        &with(
            "postgres",
            "      port: 5432\n      account: { user: m, password_env: SET_VAR }\n",
        ),
        "cluster.bootstrap.migrate_from.host",
        "required",
    );
    has(
        &with(
            "postgres",
            "      host: h\n      port: 70000\n      account: { user: m, password_env: SET_VAR }\n",
        ),
        "cluster.bootstrap.migrate_from.port",
        "out of range",
    );
    has(
        &with("postgres", "      host: h\n      port: 5432\n"),
        "cluster.bootstrap.migrate_from.account",
        "required",
    );
    has(
        &with(
            "postgres",
            "      host: h\n      port: 5432\n      account: { user: m, password: x }\n",
        ),
        "cluster.bootstrap.migrate_from.account.password",
        "inline passwords are not allowed",
    );
    has(
        &with(
            "postgres",
            "      host: h\n      port: 5432\n      account: { user: m, password_env: SET_VAR }\n      slot: Bad-Slot\n",
        ),
        "cluster.bootstrap.migrate_from.slot",
        "not a replication slot name",
    );
    has(
        &with(
            "mariadb",
            "      host: h\n      port: 3306\n      account: { user: m, password_env: SET_VAR }\n      slot: s\n",
        ),
        "cluster.bootstrap.migrate_from.slot",
        "only for engine.kind postgres",
    );
    has(
        &with(
            "postgres",
            "      host: h\n      port: 5432\n      account: { user: m, password_env: SET_VAR }\n      tls: yes\n",
        ),
        "cluster.bootstrap.migrate_from.tls",
        "",
    );
    // MariaDB needs no slot.
    let c = ok(&with(
        "mariadb",
        "      host: 10.0.0.9\n      port: 3306\n      account: { user: migrator, password_env: SET_VAR }\n",
    ));
    assert!(
        c.cluster
            .and_then(|c| c.migrate_from)
            .is_some_and(|m| m.slot.is_none())
    );
}
