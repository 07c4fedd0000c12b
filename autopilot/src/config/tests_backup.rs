//! `backup:` (issue 17): a valid section of each repository kind renders without secrets and
//! round-trips; every rule reports the field, its place and what was expected.

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
