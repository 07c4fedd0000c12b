//! `autopilot backup list | show`: from the node's catalog, and from a repository's
//! manifests (`--repo`), with a backup really stored through the pipeline; clear errors for
//! a missing catalog, an unknown repository, an unknown backup and a corrupt manifest.

use std::path::Path;
use std::process::{Command, Output};

use backup::catalog::{BackupRecord, Catalog, Status};
use backup::manifest::{
    BackupType, Compression, Encryption, EngineInfo, EngineKind, FORMAT, Manifest, Method,
    StreamEntry, ToolInfo,
};
use backup::pipeline::{StoreOptions, parse_recipients, store};
use backup::repo::{BackupId, ClusterId, Repository, StreamLocation};

/// A public age recipient (the age specification's example key).
const R: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

fn autopilot(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autopilot"))
        .args(args)
        .env("SET_VAR", "x")
        .output()
        .expect("run autopilot")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn config(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("agent.yaml");
    std::fs::write(
        &file,
        format!(
            "node: {{ name: db-1, state_dir: ./state }}
cluster: {{ namespace: prod, project: shop, name: main }}
engine:
  kind: mariadb
  port: 3306
  mariadb:
    datadir: ./data
    credentials:
      admin: {{ user: autopilot, password_env: SET_VAR }}
      replication: {{ user: repl, password_env: SET_VAR }}
process: {{ user: root }}
backup:
  repositories: [{{ name: local, path: ./repo }}]
  encryption: {{ recipients: [{R}] }}
"
        ),
    )
    .expect("write config");
    file
}

#[test]
fn backup_list_and_show_read_the_catalog_and_a_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let cfg = cfg.to_str().expect("utf-8");

    // No catalog yet: said, with what to do.
    let out = autopilot(&["backup", "list", "--config", cfg]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--repo NAME"),
        "{}",
        text(&out.stderr)
    );

    // A backup stored through the pipeline, and its manifest.
    let cluster = ClusterId {
        namespace: "prod".into(),
        project: "shop".into(),
        name: "main".into(),
    };
    let id = BackupId::generate(std::time::SystemTime::now()).expect("id");
    let repo = Repository::local("local", &dir.path().join("repo")).expect("repo");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // A key pair: the backup is encrypted to its public half; verify and get use the secret.
    let key = age::x25519::Identity::generate();
    let public = key.to_public().to_string();
    let identity_file = dir.path().join("key.txt");
    {
        use age::secrecy::ExposeSecret as _;
        std::fs::write(
            &identity_file,
            format!("# test key\n{}\n", key.to_string().expose_secret()),
        )
        .expect("write key");
    }
    let identity_file = identity_file.to_str().expect("utf-8");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let summary = rt
        .block_on(store(
            &data[..],
            std::slice::from_ref(&repo),
            &StreamLocation {
                cluster: cluster.clone(),
                backup_id: id.clone(),
                stream: "base".into(),
            },
            &parse_recipients(&[public.as_str()]).expect("recipient"),
            &StoreOptions::default(),
        ))
        .expect("store");
    let manifest = Manifest {
        format: FORMAT,
        backup_id: id.clone(),
        set_id: id.clone(),
        parent_id: None,
        cluster: cluster.clone(),
        node: "db-1".into(),
        engine: EngineInfo {
            kind: EngineKind::Mariadb,
            version: "10.11.6".into(),
        },
        method: Method::Physical,
        backup_type: BackupType::Full,
        tool: ToolInfo {
            name: "mariadb-backup".into(),
            version: None,
            parameters: vec!["--backup".into(), "--stream=xbstream".into()],
        },
        started_at: "2026-12-03T03:00:00Z".into(),
        finished_at: Some("2026-12-03T03:01:00Z".into()),
        position: Some("0-1-2143".into()),
        incremental_lsn: None,
        databases: vec![],
        streams: vec![StreamEntry {
            name: "base".into(),
            summary,
        }],
        compression: Compression {
            algorithm: "zstd".into(),
            level: 3,
            threads: 0,
        },
        encryption: Encryption {
            scheme: "age".into(),
            recipients: vec![R.into()],
        },
        status: backup::manifest::Status::Complete,
        error: None,
    };
    rt.block_on(repo.write_manifest(&manifest))
        .expect("manifest");

    let out = autopilot(&[
        "backup", "list", "--config", cfg, "--repo", "local", "-o", "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["backups"][0]["backup_id"], id.as_str(), "{v:#}");
    let out = autopilot(&["backup", "list", "--config", cfg, "--repo", "local"]);
    let table = text(&out.stdout);
    assert!(
        table.contains(id.as_str()) && table.contains("0-1-2143"),
        "{table}"
    );
    let out = autopilot(&[
        "backup",
        "show",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
    ]);
    assert!(
        text(&out.stdout).contains("mariadb-backup"),
        "{}",
        text(&out.stdout)
    );

    // verify: intact without a key (sizes, hashes) and with it (end to end).
    let out = autopilot(&[
        "backup",
        "verify",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("intact"),
        "{}",
        text(&out.stdout)
    );
    let out = autopilot(&[
        "backup",
        "verify",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
        "--identity",
        identity_file,
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        (v["ok"].as_bool(), v["detail"]["plain_bytes"].as_u64()),
        (Some(true), Some(300_000)),
        "{v:#}"
    );
    // get: the plain stream into a new file, identical; never over an existing file.
    let to = dir.path().join("base.out");
    let to = to.to_str().expect("utf-8");
    let out = autopilot(&[
        "backup",
        "get",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
        "--identity",
        identity_file,
        "--to",
        to,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(to).expect("read"), data);
    let out = autopilot(&[
        "backup",
        "get",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
        "--identity",
        identity_file,
        "--to",
        to,
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("expected a new file"),
        "{}",
        text(&out.stderr)
    );
    // A wrong key: get refuses and leaves no file.
    let other = dir.path().join("other.txt");
    {
        use age::secrecy::ExposeSecret as _;
        std::fs::write(
            &other,
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret(),
        )
        .expect("write");
    }
    let to2 = dir.path().join("base2.out");
    let out = autopilot(&[
        "backup",
        "get",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
        "--identity",
        other.to_str().expect("utf-8"),
        "--to",
        to2.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("wrong key"),
        "{}",
        text(&out.stderr)
    );
    assert!(!to2.exists(), "a failed get left its file");
    // A flipped byte in a stored chunk: verify names the chunk.
    let chunk = dir
        .path()
        .join("repo/prod/shop/main/backups")
        .join(id.as_str())
        .join("data/base/00000000.age");
    let mut bytes = std::fs::read(&chunk).expect("chunk");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&chunk, &bytes).expect("flip");
    let out = autopilot(&[
        "backup",
        "verify",
        id.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
    ]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("00000000.age") && err.contains("SHA-256"),
        "{err}"
    );
    bytes[mid] ^= 0x01;
    std::fs::write(&chunk, &bytes).expect("unflip");

    // Unknown repository, unknown backup.
    let out = autopilot(&["backup", "list", "--config", cfg, "--repo", "offsite"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("[\"local\"]"),
        "{}",
        text(&out.stderr)
    );
    let other = BackupId::generate(std::time::SystemTime::now()).expect("id");
    let out = autopilot(&[
        "backup",
        "show",
        other.as_str(),
        "--config",
        cfg,
        "--repo",
        "local",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));

    // A corrupt manifest: named in its row, the list still works.
    let path = dir
        .path()
        .join("repo/prod/shop/main/backups")
        .join(id.as_str())
        .join("manifest.json");
    std::fs::write(&path, b"{ not json").expect("corrupt");
    let out = autopilot(&[
        "backup", "list", "--config", cfg, "--repo", "local", "-o", "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["backups"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("manifest.json")),
        "{v:#}"
    );

    // The catalog, as the agent will write it.
    std::fs::create_dir_all(dir.path().join("state")).expect("state dir");
    let catalog = Catalog::open(&dir.path().join("state/backup-catalog.db")).expect("catalog");
    catalog
        .put(&BackupRecord {
            id: id.as_str().into(),
            set_id: id.as_str().into(),
            parent_id: None,
            cluster: "prod/shop/main".into(),
            node: "db-1".into(),
            job: "nightly".into(),
            description: None,
            engine: "mariadb".into(),
            engine_version: None,
            method: Method::Physical,
            kind: BackupType::Full,
            tool: vec![],
            databases: vec![],
            data_dir: None,
            repositories: vec!["local".into()],
            credentials: vec![],
            manifest: None,
            started_ms: 1,
            ended_ms: None,
            size_plain: None,
            size_stored: None,
            checksums: vec![],
            position: None,
            status: Status::Running,
            error: None,
            retention: None,
            schedule: None,
            verified_ms: None,
            restore_tested_ms: None,
            restore_time_ms: None,
            expired_ms: None,
        })
        .expect("put");
    let out = autopilot(&["backup", "list", "--config", cfg]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("# catalog") && table.contains("running") && table.contains("nightly"),
        "{table}"
    );
}
