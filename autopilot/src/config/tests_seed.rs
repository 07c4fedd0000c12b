//! Seeding nodes from backups: `engine.seed`, `cluster.bootstrap.from_backup` and
//! `backup.identity`, the key both need. Good configurations parse into the right values,
//! render and read back; each bad one names its field, line and column and the fix.

use super::tests::{ok, problems};
use super::{BackupChoice, Config, FromBackup, SeedSource};

/// A public age recipient (the age specification's example key).
const R: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

const MARIADB: &str = "engine:\n  kind: mariadb\n  port: 3306\n  mariadb:\n    datadir: ./data\n    credentials:\n      admin: { user: autopilot, password_env: SET_VAR }\n      replication: { user: repl, password_env: SET_VAR }\n";

const POSTGRES: &str = "engine:\n  kind: postgres\n  port: 5432\n  postgres:\n    data_dir: ./data\n    superuser: { user: postgres, password_env: SET_VAR }\n    replication: { user: replicator, password_env: SET_VAR }\n";

/// The cluster section, with `bootstrap` (indented under `cluster:`) when given.
fn cluster(bootstrap: &str) -> String {
    format!("cluster:\n  namespace: prod\n  project: shop\n  name: orders\n{bootstrap}")
}

/// A backup section with two repositories, `extra` appended (e.g. `  identity: …`).
fn backup(extra: &str) -> String {
    format!(
        "backup:\n  repositories:\n    - {{ name: local, path: ./backups }}\n    - {{ name: offsite, path: ./offsite }}\n  encryption: {{ recipients: [{R}] }}\n{extra}"
    )
}

const IDENTITY: &str = "  identity: { env: SET_VAR }\n";

/// `engine` with `seed: <seed>` added when given.
fn engine(engine: &str, seed: Option<&str>) -> String {
    match seed {
        Some(s) => format!("{engine}  seed: {s}\n"),
        None => engine.to_owned(),
    }
}

fn doc(parts: &[&str]) -> String {
    format!("{}process: {{ user: root }}\n", parts.concat())
}

/// The 1-based line and column of the first `needle` in `text`, plus `skip` characters.
fn pos(text: &str, needle: &str, skip: usize) -> (Option<usize>, Option<usize>) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} in {text}"));
    let line = text[..at].matches('\n').count() + 1;
    let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1 + skip;
    (Some(line), Some(column))
}

/// The one problem at `field`, which must be at `at` and say `says`.
/// Where the top-level key `key` (e.g. `backup:`) is: its line, column 1.
fn top(text: &str, key: &str) -> (Option<usize>, Option<usize>) {
    let line = text
        .lines()
        .position(|l| l == key)
        .unwrap_or_else(|| panic!("{key:?} in {text}"));
    (Some(line + 1), Some(1))
}

fn expect(name: &str, text: &str, field: &str, at: (Option<usize>, Option<usize>), says: &str) {
    let found = problems(text);
    let Some(p) = found.iter().find(|p| p.field == field) else {
        panic!("{name}: no problem at {field}: {found:#?}\n---\n{text}");
    };
    assert_eq!((p.line, p.column), at, "{name}: {p:?}\n---\n{text}");
    assert!(
        p.message.contains(says),
        "{name}: {p:?} does not say {says:?}"
    );
}

fn from_backup(c: &Config) -> Option<&FromBackup> {
    c.cluster.as_ref().and_then(|c| c.from_backup.as_ref())
}

#[test]
fn defaults_are_seed_primary_and_the_latest_backup_of_this_cluster() {
    // No seed, no bootstrap, no identity.
    let c = ok(&doc(&[&cluster(""), MARIADB, &backup("")]));
    assert_eq!(c.engine.seed(), SeedSource::Primary);
    assert_eq!(from_backup(&c), None);
    assert!(c.backup.as_ref().expect("backup").identity.is_none());

    // from_backup with only its repository.
    let text = doc(&[
        &cluster("  bootstrap:\n    from_backup:\n      repository: offsite\n"),
        MARIADB,
        &backup(IDENTITY),
    ]);
    let c = ok(&text);
    assert_eq!(
        from_backup(&c),
        Some(&FromBackup {
            repository: "offsite".into(),
            cluster: None,
            backup: BackupChoice::Latest,
            time: None,
        })
    );
    assert_eq!(c.engine.seed(), SeedSource::Primary);
    let identity = c.backup.as_ref().and_then(|b| b.identity.as_ref());
    assert_eq!(identity.map(|s| s.expose()), Some("from-env"));

    // An empty bootstrap section is no from_backup.
    let c = ok(&doc(&[&cluster("  bootstrap: {}\n"), MARIADB, &backup("")]));
    assert_eq!(from_backup(&c), None);

    // The process engine takes seed: primary (and has nothing else).
    let c = ok("engine: { seed: primary }\nprocess: { exec: [a] }\n");
    assert_eq!(c.engine.seed(), SeedSource::Primary);
}

#[test]
fn every_field_is_read_rendered_and_read_back() {
    for (seed, want) in [
        ("primary", SeedSource::Primary),
        ("backup", SeedSource::Backup),
        ("auto", SeedSource::Auto),
    ] {
        for base in [MARIADB, POSTGRES] {
            let c = ok(&doc(&[&engine(base, Some(seed)), &backup(IDENTITY)]));
            assert_eq!(c.engine.seed(), want, "{seed}");
        }
    }

    let text = doc(&[
        &cluster(
            "  bootstrap:\n    from_backup:\n      repository: local\n      cluster: prod/shop/orders-old\n      backup: 20261203T020000Z-1a2b3c4d\n",
        ),
        &engine(POSTGRES, Some("auto")),
        &backup(IDENTITY),
    ]);
    let c = ok(&text);
    let want = FromBackup {
        repository: "local".into(),
        cluster: Some(("prod".into(), "shop".into(), "orders-old".into())),
        backup: BackupChoice::Id("20261203T020000Z-1a2b3c4d".into()),
        time: None,
    };
    assert_eq!(from_backup(&c), Some(&want));
    assert_eq!(c.engine.seed(), SeedSource::Auto);

    let shown = c.to_effective_yaml();
    for part in [
        "  bootstrap:\n    from_backup:\n      repository: local\n      cluster: prod/shop/orders-old\n      backup: 20261203T020000Z-1a2b3c4d\n",
        "  seed: auto\n",
        "  identity:\n    env: SET_VAR  # <secret from env SET_VAR>\n",
    ] {
        assert!(shown.contains(part), "{part:?} not in\n{shown}");
    }
    assert!(!shown.contains("from-env"), "{shown}");
    // The effective configuration reads back as itself.
    let again = ok(&shown);
    assert_eq!(from_backup(&again), Some(&want));
    assert_eq!(again.engine.seed(), SeedSource::Auto);
    assert_eq!(again.to_effective_yaml(), shown);

    // `latest` written out is the default; no cluster is not rendered.
    let c = ok(&doc(&[
        &cluster("  bootstrap:\n    from_backup: { repository: local, backup: latest }\n"),
        MARIADB,
        &backup(IDENTITY),
    ]));
    assert_eq!(
        from_backup(&c).map(|f| &f.backup),
        Some(&BackupChoice::Latest)
    );
    let shown = c.to_effective_yaml();
    assert!(
        shown.contains("    from_backup:\n      repository: local\n      backup: latest\n"),
        "{shown}"
    );
}

#[test]
fn a_bad_seed_names_the_field_and_the_fix() {
    let text = doc(&[&engine(MARIADB, Some("clone")), &backup(IDENTITY)]);
    expect(
        "unknown seed word",
        &text,
        "engine.seed",
        pos(&text, "seed: clone", 6),
        "\"clone\" is not a seed source; expected primary, backup or auto",
    );

    let text = "engine:\n  seed: backup\nprocess: { exec: [a] }\n";
    expect(
        "seed backup with the process engine",
        text,
        "engine.seed",
        (Some(2), Some(9)),
        "the process engine has no backups; remove engine.seed or use primary",
    );
    let text = "engine: { kind: process, seed: auto }\nprocess: { exec: [a] }\n";
    expect(
        "seed auto with the process engine",
        text,
        "engine.seed",
        pos(text, "auto", 0),
        "the process engine has no backups",
    );

    for seed in ["backup", "auto"] {
        let text = doc(&[&engine(POSTGRES, Some(seed))]);
        expect(
            "seed without a backup section",
            &text,
            "engine.seed",
            pos(&text, &format!("seed: {seed}"), 6),
            "but there is no backup section; expected a backup section with repositories and identity, or seed: primary",
        );

        let text = doc(&[&engine(MARIADB, Some(seed)), &backup("")]);
        expect(
            "seed without an identity",
            &text,
            "backup.identity",
            top(&text, "backup:"),
            &format!(
                "required with engine.seed: {seed}: it is the key that opens the backups; expected identity:"
            ),
        );
    }

    // A backup section without repositories is reported there (seed needs one).
    let text = doc(&[
        &engine(MARIADB, Some("backup")),
        &format!("backup:\n  repositories: []\n  encryption: {{ recipients: [{R}] }}\n{IDENTITY}"),
    ]);
    expect(
        "seed with no repository",
        &text,
        "backup",
        top(&text, "backup:"),
        "has no repositories",
    );
}

#[test]
fn a_bad_from_backup_names_the_field_and_the_fix() {
    let bootstrap = |fields: &str| cluster(&format!("  bootstrap:\n    from_backup:\n{fields}"));

    let text = doc(&[
        &bootstrap("      repository: s3\n"),
        MARIADB,
        &backup(IDENTITY),
    ]);
    expect(
        "an unknown repository",
        &text,
        "cluster.bootstrap.from_backup.repository",
        pos(&text, "repository: s3", 12),
        "no repository \"s3\" in backup.repositories (configured: local, offsite); expected one of them",
    );

    for bad in [
        "prod/shop",
        "prod/shop/orders/old",
        "Prod/shop/orders",
        "prod//orders",
    ] {
        let text = doc(&[
            &bootstrap(&format!("      repository: local\n      cluster: {bad}\n")),
            MARIADB,
            &backup(IDENTITY),
        ]);
        expect(
            bad,
            &text,
            "cluster.bootstrap.from_backup.cluster",
            pos(&text, "cluster: ", 9),
            "expected namespace/project/name like prod/shop/orders",
        );
    }

    for bad in [
        "yesterday",
        "20261203T020000Z-1A2B3C4D",
        "20261203-1a2b3c4d",
    ] {
        let text = doc(&[
            &bootstrap(&format!("      repository: local\n      backup: {bad}\n")),
            MARIADB,
            &backup(IDENTITY),
        ]);
        expect(
            bad,
            &text,
            "cluster.bootstrap.from_backup.backup",
            pos(&text, "backup: ", 8),
            &format!(
                "{bad:?} is not a backup id; expected latest or an id like 20261203T020000Z-1a2b3c4d"
            ),
        );
    }

    let text = doc(&[
        &bootstrap("      backup: latest\n"),
        MARIADB,
        &backup(IDENTITY),
    ]);
    expect(
        "no repository",
        &text,
        "cluster.bootstrap.from_backup.repository",
        pos(&text, "from_backup:", 0),
        "required; expected the name of a repository in backup.repositories",
    );

    let text = doc(&[
        &bootstrap("      repository: local\n"),
        MARIADB,
        &backup(""),
    ]);
    expect(
        "from_backup without an identity",
        &text,
        "backup.identity",
        top(&text, "backup:"),
        "required with cluster.bootstrap.from_backup: it is the key that opens the backups",
    );
    // Both needing it: one problem that says so.
    let text = doc(&[
        &bootstrap("      repository: local\n"),
        &engine(MARIADB, Some("auto")),
        &backup(""),
    ]);
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .message
            .contains("required with engine.seed: auto and cluster.bootstrap.from_backup"),
        "{found:#?}"
    );

    let text = doc(&[&bootstrap("      repository: local\n"), MARIADB]);
    expect(
        "from_backup without a backup section",
        &text,
        "cluster.bootstrap.from_backup",
        pos(&text, "from_backup:", 0),
        "restores from backup.repositories, but there is no backup section; expected a backup section with the repository \"local\" and identity",
    );

    let text = format!(
        "{}engine: {{ seed: primary }}\nprocess: {{ exec: [a] }}\n",
        bootstrap("      repository: local\n")
    );
    expect(
        "from_backup with the process engine",
        &text,
        "cluster.bootstrap.from_backup",
        pos(&text, "from_backup:", 0),
        "is only for engine.kind mariadb or postgres (the process engine has no backups)",
    );

    let text = doc(&[
        &bootstrap("      repository: local\n      repo: local\n"),
        MARIADB,
        &backup(IDENTITY),
    ]);
    expect(
        "a typo",
        &text,
        "cluster.bootstrap.from_backup.repo",
        pos(&text, "repo: local", 0),
        "unknown field `repo`, expected one of `repository`, `cluster`, `backup`",
    );
}

#[test]
fn the_identity_moved_from_verification_to_backup() {
    let text = doc(&[
        MARIADB,
        &backup("  verification:\n    schedule: \"0 6 * * *\"\n    identity: { env: SET_VAR }\n"),
    ]);
    expect(
        "the old place",
        &text,
        "backup.verification.identity",
        pos(&text, "identity:", 0),
        "has moved to backup.identity",
    );
    // The new place works with verification, which keeps its other fields.
    let text = doc(&[
        MARIADB,
        &backup(&format!(
            "{IDENTITY}  verification:\n    schedule: \"0 6 * * *\"\n    run_on: any\n"
        )),
    ]);
    let b = ok(&text).backup.expect("backup");
    assert!(b.identity.is_some());
    let v = b.verification.expect("verification");
    assert_eq!(
        (v.schedule.as_str(), v.run_on),
        ("0 6 * * *", super::RunOn::Any)
    );

    // A bad identity source is reported at its own field, once.
    let text = doc(&[
        &engine(MARIADB, Some("backup")),
        &backup("  identity: { env: NOT_SET_ANYWHERE }\n"),
    ]);
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].field, "backup.identity.env", "{found:#?}");
}

/// The `from_backup` example of docs/configuration.md is valid, once its files and
/// credentials are environment variables this test sets.
#[test]
fn the_docs_from_backup_example_is_valid() {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .expect("docs");
    let block = docs
        .split("```yaml\n")
        .filter_map(|b| b.split_once("```").map(|(y, _)| y))
        .find(|b| b.contains("from_backup:"))
        .expect("a from_backup example");
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
        .replace("{ credential: s3-secret }", "{ env: SET_VAR }")
        .replace("{ credential: backup-identity }", "{ env: SET_VAR }");
    let c = ok(&format!("{text}process: {{ user: root }}\n"));
    assert_eq!(c.engine.seed(), SeedSource::Auto);
    assert_eq!(
        from_backup(&c),
        Some(&FromBackup {
            repository: "offsite".into(),
            cluster: Some(("prod".into(), "shop".into(), "orders-old".into())),
            backup: BackupChoice::Latest,
            time: None,
        })
    );
}
