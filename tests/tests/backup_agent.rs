//! The backup agent on a real three-node MariaDB cluster, with a local repository and a real
//! S3 server (SeaweedFS) on loopback: scheduled physical backups (a full, then incrementals)
//! run on a replica, land in both repositories, and restore with `autopilot backup restore`
//! to a data directory whose server has exactly the rows written before the backup; a
//! scheduled logical job's retention removes exactly the expired backup from both
//! repositories; an operator's request runs a job at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use backup::pipeline::Identity;
use e2e::harness::backup::{cli, records};
use e2e::harness::cluster::Agents;
use e2e::harness::s3::S3Server;
use e2e::harness::util::{eventually, free_port};
use e2e::mariadb::cluster::{ADMIN_PASSWORD, MariaCluster, MariaOpts};
use e2e::mariadb::restored::Restored;
use e2e::mariadb::scenario::settled;

/// A scheduled run: every 20 s (physical at :00/:20/:40, logical at :10/:30/:50 (`10-59/20`)).
const RUN: Duration = Duration::from_secs(90);

/// The `backup:` section: a local and an S3 repository, the recipient, a verification
/// identity (its schedule never fires here: test restores are requested), and `jobs`.
fn backup_yaml(dir: &Path, s3: &S3Server, recipient: &str, jobs: &str) -> String {
    std::fs::write(dir.join("s3.key"), s3.access_key_id()).expect("write the S3 key id");
    std::fs::write(dir.join("s3.secret"), s3.secret_access_key()).expect("write the S3 secret");
    format!(
        r#"backup:
  repositories:
    - {{ name: local, path: {repo} }}
    - name: s3
      s3:
        bucket: {bucket}
        prefix: autopilot
        endpoint: {endpoint}
        region: {region}
        path_style: true
        access_key_id: {{ file: {dir}/s3.key }}
        secret_access_key: {{ file: {dir}/s3.secret }}
  encryption: {{ recipients: [{recipient}] }}
  compression: {{ level: 3, threads: 1 }}
  identity: {{ file: {dir}/key.txt }}
  verification:
    schedule: "0 0 1 1 *"
  jobs:
{jobs}"#,
        repo = dir.join("repo").display(),
        bucket = s3.bucket(),
        endpoint = s3.endpoint(),
        region = s3.region(),
        dir = dir.display(),
    )
}

const MARIADB_JOBS: &str = r#"    - name: physical
      description: full, then incrementals on the same replica
      schedule: "*/20 * * * * *"
      type: incremental
      retention: { keep_last: 10 }
    - name: logical
      method: logical
      schedule: "10-59/20 * * * * *"
      databases: [e2e]
      retention: { keep_last: 1 }
"#;

/// Waits for a done backup of `job` that started after `after` (Unix ms); its record.
fn wait_done(c: &Agents, job: &str, after: u64) -> serde_json::Value {
    eventually(RUN, Duration::from_millis(500), || {
        records(c)
            .into_iter()
            .find(|r| r["job"] == job && r["status"] == "done" && started_ms(r) > after)
    })
    .unwrap_or_else(|| {
        panic!(
            "no done {job} backup started after {after} within {RUN:?}; records {:#?}\n{}",
            records(c),
            c.logs()
        )
    })
}

fn started_ms(r: &serde_json::Value) -> u64 {
    let s = r["started"].as_str().unwrap_or_default();
    humantime::parse_rfc3339(s)
        .map(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64
        })
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn count(c: &MariaCluster, p: usize) -> u64 {
    c.sql(p, &["SELECT COUNT(*) FROM e2e.seq"])
        .unwrap_or_else(|e| panic!("count rows on node {p}: {e:#}\n{}", c.logs()))[0][0]
        .parse()
        .expect("a number")
}

fn insert(c: &MariaCluster, p: usize, from: u64, to: u64) {
    let values: Vec<String> = (from..to).map(|n| format!("({n})")).collect();
    c.sql(
        p,
        &[&format!("INSERT INTO e2e.seq VALUES {}", values.join(","))],
    )
    .expect("insert rows");
}

/// Runs the printed manual instructions in bash up to putting the data in place (step 6,
/// which the test does itself), with the variables the reader edits set to `vars`; fails the
/// test with the script and its output when a command fails.
fn run_instructions(text: &str, vars: &[(&str, std::path::PathBuf)], dir: &Path) {
    let script: String = text
        .lines()
        .take_while(|l| !l.starts_with("# 6."))
        .map(|l| {
            vars.iter()
                .find(|(name, _)| l.starts_with(&format!("{name}=")))
                .map_or_else(
                    || l.to_owned(),
                    |(name, v)| format!("{name}={}", v.display()),
                )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let ran = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir)
        .output()
        .expect("run bash");
    assert!(
        ran.status.success(),
        "the instructions failed:\n{script}\n{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The names of the backups a repository lists (`autopilot backup list --repo`).
fn listed(c: &Agents, dir: &Path, repo: &str) -> Vec<String> {
    let (code, out, err) = cli(c, dir, &["list", "--repo", repo, "-o", "json"]);
    assert_eq!(code, 0, "backup list --repo {repo}: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    v["backups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| {
                    b["backup_id"]
                        .as_str()
                        .or(b["id"].as_str())
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn scheduled_backups_run_on_a_replica_reach_both_repositories_and_restore_exactly() {
    let s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let identity = Identity::generate();
    let recipient = identity.to_public().to_string();
    let key_file = keys.path().join("key.txt"); // the verification's identity too
    {
        use age::secrecy::ExposeSecret as _;
        std::fs::write(
            &key_file,
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .expect("write the key");
    }
    let opts = MariaOpts {
        extra_yaml: backup_yaml(keys.path(), &s3, &recipient, MARIADB_JOBS),
        ..MariaOpts::default()
    };
    let (c, p) = settled(opts);
    let primary = c.name(p).to_owned();

    // 1. A full, on a replica, in both repositories, after 200 rows: the first backup of the
    //    job started after them, or, when a slot fell while they were written (under load,
    //    once), the full its set began with (the chain restored below has every row).
    insert(&c, p, 0, 200);
    let after = now_ms();
    let first = wait_done(&c, "physical", after);
    let full = if first["type"] == "full" {
        first
    } else {
        records(&c)
            .into_iter()
            .find(|r| r["id"] == first["set_id"] && r["status"] == "done")
            .unwrap_or_else(|| panic!("the full of {first:#} is not done: {:#?}", records(&c)))
    };
    assert_eq!(full["type"], "full", "{full:#}");
    assert_ne!(
        full["node"],
        primary.as_str(),
        "ran on the primary: {full:#}"
    );
    assert_eq!(full["repositories"], serde_json::json!(["local", "s3"]));
    let full_id = full["id"].as_str().expect("id").to_owned();
    for repo in ["local", "s3"] {
        assert!(
            listed(&c, c.dir(), repo).contains(&full_id),
            "{full_id} not in {repo}"
        );
    }

    // 2. An incremental on the same replica, built on the full, after 100 more rows.
    insert(&c, p, 200, 300);
    let after = now_ms();
    let incr = eventually(RUN, Duration::from_millis(500), || {
        records(&c).into_iter().find(|r| {
            r["job"] == "physical"
                && r["status"] == "done"
                && started_ms(r) > after
                && r["type"] == "incremental"
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no incremental within {RUN:?}: {:#?}\n{}",
            records(&c),
            c.logs()
        )
    });
    assert_eq!(
        incr["node"], full["node"],
        "the chain stays on one node: {incr:#}"
    );
    assert_eq!(incr["set_id"], full_id.as_str());
    let incr_id = incr["id"].as_str().expect("id").to_owned();
    assert_eq!(count(&c, p), 300);

    // 3. Restore the chain from S3 into a new directory: exactly the 300 rows.
    let target = c.dir().join("restored");
    let (code, out, err) = cli(
        &c,
        c.dir(),
        &[
            "restore",
            &incr_id,
            "--repo",
            "s3",
            "--identity",
            &key_file.display().to_string(),
            "--target-dir",
            &target.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "restore: {out}{err}\n{}", c.logs());
    assert!(out.contains(&full_id) && out.contains(&incr_id), "{out}");
    {
        let server = Restored::start(&target, &c.dir().join("restored-run"));
        assert_eq!(
            server.sql("SELECT COUNT(*) FROM e2e.seq").expect("count"),
            "300"
        );
        assert_eq!(
            server
                .sql("SELECT MIN(n), MAX(n) FROM e2e.seq")
                .expect("range"),
            "0\t299"
        );
    }

    // 3b. The manual instructions of the chain, run as printed from the local repository up
    //     to putting the data in place (the test starts a server on the prepared directory
    //     itself), give the same 300 rows.
    let (code, text, err) = cli(&c, c.dir(), &["instructions", &incr_id, "--repo", "local"]);
    assert_eq!(code, 0, "instructions: {err}");
    let work = c.dir().join("work");
    run_instructions(
        &text,
        &[("KEY", key_file.clone()), ("WORK", work.clone())],
        c.dir(),
    );
    let _ = Command::new("chown")
        .args(["-R", "mysql:mysql"])
        .arg(work.join("full"))
        .status();
    {
        let server = Restored::start(&work.join("full"), &c.dir().join("by-hand-run"));
        assert_eq!(
            server.sql("SELECT COUNT(*) FROM e2e.seq").expect("count"),
            "300"
        );
    }

    // 4. A restore into a non-empty directory is refused and touches nothing.
    let (code, _, err) = cli(
        &c,
        c.dir(),
        &[
            "restore",
            &incr_id,
            "--repo",
            "local",
            "--identity",
            &key_file.display().to_string(),
            "--target-dir",
            &target.display().to_string(),
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");

    // 5. Retention: the logical job keeps one; the older one is gone from both repositories.
    let first = wait_done(&c, "logical", 0);
    let first_id = first["id"].as_str().expect("id").to_owned();
    let first_ms = started_ms(&first);
    let second = wait_done(&c, "logical", first_ms);
    let second_id = second["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(30), Duration::from_millis(500), || {
        (!records(&c).iter().any(|r| r["id"] == first_id.as_str())).then_some(())
    })
    .unwrap_or_else(|| panic!("{first_id} not expired: {:#?}", records(&c)));
    for repo in ["local", "s3"] {
        let l = listed(&c, c.dir(), repo);
        assert!(!l.contains(&first_id), "{first_id} still in {repo}: {l:?}");
        assert!(
            l.contains(&second_id),
            "{second_id} missing in {repo}: {l:?}"
        );
        // the physical chain is untouched by the logical job's retention
        assert!(
            l.contains(&full_id) && l.contains(&incr_id),
            "{repo}: {l:?}"
        );
    }

    // 6. Events and a request run at once.
    let kinds: Vec<String> = c
        .events()
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    for k in ["backup_started", "backup_done", "backup_expired"] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event: {kinds:?}");
    }
    let asked = now_ms();
    c.put_key(
        "backup/requests/r1",
        r#"{"schema":1,"action":"backup","job":"physical","requested_by":"e2e"}"#,
    );
    let requested = wait_done(&c, "physical", asked);
    assert!(
        eventually(Duration::from_secs(20), Duration::from_millis(300), || c
            .key("backup/requests/r1")
            .is_none()
            .then_some(()))
        .is_some(),
        "the request was not removed"
    );
    assert_ne!(requested["node"], primary.as_str());

    // 7. A test restore on request: the chain restored into a scratch server and checked,
    //    with the restore time recorded.
    c.put_key(
        "backup/requests/t1",
        &format!(r#"{{"schema":1,"action":"test_restore","backup_id":"{incr_id}"}}"#),
    );
    let tested = eventually(Duration::from_secs(120), Duration::from_millis(500), || {
        records(&c)
            .into_iter()
            .find(|r| r["id"] == incr_id.as_str() && r["restore_tested"].is_string())
    })
    .unwrap_or_else(|| panic!("no test restore recorded: {:#?}\n{}", records(&c), c.logs()));
    assert!(
        tested["restore_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{tested:#}"
    );
    assert!(tested["verified"].is_string());
    let verified = c
        .events()
        .into_iter()
        .find(|e| e["kind"] == "backup_verified")
        .expect("a backup_verified event");
    assert!(
        verified["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("checks passed"),
        "{verified:#}"
    );
    c.assert_no_secret_in_logs(&[ADMIN_PASSWORD, s3.secret_access_key()]);
    drop(s3);
}

/// The PostgreSQL job: base backups, each outcome POSTed (signed) to `hook`.
fn postgres_jobs(hook: &str, secret_file: &Path) -> String {
    format!(
        r#"    - name: base
      schedule: "*/15 * * * * *"
      retention: {{ keep_last: 2 }}
      notify:
        - {{ url: "{hook}/backups", secret: {{ file: {secret} }} }}
"#,
        secret = secret_file.display()
    )
}

/// The webhook key (a marker: it must never reach a log).
const HOOK_SECRET: &str = "hook-MARKER-3d9a";

/// A fresh age identity written to `<dir>/key.txt`; its recipient.
fn key_pair(dir: &Path) -> String {
    use age::secrecy::ExposeSecret as _;
    let identity = Identity::generate();
    std::fs::write(
        dir.join("key.txt"),
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .expect("write the key");
    identity.to_public().to_string()
}

#[test]
fn postgres_base_backups_run_on_a_standby_and_restore_exactly() {
    use e2e::postgres::cluster::PgOpts;
    use e2e::postgres::scenario::{settled, start};
    use e2e::postgres::server::{SUPERUSER_PASSWORD, settings, spawn_server};
    use e2e::postgres::workload::TABLE;

    let s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let recipient = key_pair(keys.path());
    // The receiver refuses the first delivery: the agent retries with backoff.
    let hook = e2e::harness::webhook::Receiver::start(Box::new(|n| if n == 0 { 503 } else { 200 }))
        .expect("start the webhook receiver");
    std::fs::write(keys.path().join("hook.secret"), HOOK_SECRET).expect("write the hook secret");
    let jobs = postgres_jobs(hook.url(), &keys.path().join("hook.secret"));
    let c = start(
        3,
        PgOpts {
            extra_yaml: backup_yaml(keys.path(), &s3, &recipient, &jobs),
            ..PgOpts::default()
        },
    );
    let p = settled(&c);
    let primary = c.name(p).to_owned();
    let insert = |from: u64, to: u64| {
        c.sql()
            .query(
                c.pg_port(p),
                &format!(
                    "INSERT INTO {TABLE} SELECT generate_series({from}, {}) ",
                    to - 1
                ),
                Duration::from_secs(10),
            )
            .expect("insert rows");
    };
    insert(0, 500);
    // Replicated before the backup starts: the standby's copy has them.
    std::thread::sleep(Duration::from_secs(1));
    let after = now_ms();
    let base = wait_done(&c, "base", after);
    assert_eq!(base["type"], "full");
    assert_eq!(base["method"], "physical");
    assert_ne!(
        base["node"],
        primary.as_str(),
        "ran on the primary: {base:#}"
    );
    assert!(
        base["position"]
            .as_str()
            .unwrap_or_default()
            .contains("on timeline"),
        "{base:#}"
    );
    let id = base["id"].as_str().expect("id").to_owned();
    insert(500, 600);

    // Restore from the local repository; a server on it has exactly the first 500 rows.
    let target = c.dir().join("restored");
    let (code, out, err) = cli(
        &c,
        c.dir(),
        &[
            "restore",
            &id,
            "--repo",
            "local",
            "--identity",
            &keys.path().join("key.txt").display().to_string(),
            "--target-dir",
            &target.display().to_string(),
        ],
    );
    assert_eq!(code, 0, "restore: {out}{err}\n{}", c.logs());
    let port = free_port();
    let mut s = settings(
        "restored",
        c.dir(),
        port,
        engines::postgres::Durability::Async,
    );
    s.data_dir = target.clone();
    let mut server = spawn_server(&s, &c.dir().join("restored.log")).expect("start postgres");
    let rows = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        c.sql()
            .scalar(
                port,
                &format!("SELECT count(*)::text || ' ' || max(seq)::text FROM {TABLE}"),
            )
            .ok()
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = server.wait();
    assert_eq!(
        rows.as_deref(),
        Some("500 499"),
        "{}",
        std::fs::read_to_string(c.dir().join("restored.log")).unwrap_or_default()
    );

    // The manual instructions, run as printed (the variables set, up to starting the
    // server, which the test does itself), give the same data: they are not just text.
    let (code, text, err) = cli(&c, c.dir(), &["instructions", &id, "--repo", "local"]);
    assert_eq!(code, 0, "instructions: {err}");
    let by_hand = c.dir().join("by-hand");
    run_instructions(
        &text,
        &[
            ("KEY", keys.path().join("key.txt")),
            ("WORK", c.dir().join("work")),
            ("PGDATA", by_hand.clone()),
        ],
        c.dir(),
    );
    let port = free_port();
    let mut s = settings(
        "by-hand",
        c.dir(),
        port,
        engines::postgres::Durability::Async,
    );
    s.data_dir = by_hand.clone();
    let mut server = spawn_server(&s, &c.dir().join("by-hand.log")).expect("start postgres");
    let rows = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        c.sql()
            .scalar(port, &format!("SELECT count(*)::text FROM {TABLE}"))
            .ok()
    });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = server.wait();
    assert_eq!(
        rows.as_deref(),
        Some("500"),
        "{}",
        std::fs::read_to_string(c.dir().join("by-hand.log")).unwrap_or_default()
    );

    // A test restore on request: restored into a scratch server, pg_amcheck passed.
    c.put_key(
        "backup/requests/t1",
        &format!(r#"{{"schema":1,"action":"test_restore","backup_id":"{id}"}}"#),
    );
    let tested = eventually(Duration::from_secs(120), Duration::from_millis(500), || {
        records(&c)
            .into_iter()
            .find(|r| r["id"] == id.as_str() && r["restore_tested"].is_string())
    })
    .unwrap_or_else(|| panic!("no test restore recorded: {:#?}\n{}", records(&c), c.logs()));
    assert!(tested["restore_seconds"].as_f64().is_some_and(|s| s > 0.0));
    // The job's webhook: retried after the 503, signed, and it names the backup.
    let delivered = eventually(Duration::from_secs(30), Duration::from_millis(300), || {
        let got = hook.received();
        (got.len() >= 2).then_some(got)
    })
    .unwrap_or_else(|| panic!("no retried delivery: {:?}", hook.received().len()));
    let last = &delivered[1];
    assert_eq!(last.target, "/backups");
    let body = last.json();
    assert_eq!(body["type"], "backup_done", "{body:#}");
    assert_eq!(body["job"], "base");
    let sig = last
        .header("autopilot-signature")
        .expect("a signature header");
    let now = now_ms() / 1000;
    cluster::signature::verify(HOOK_SECRET.as_bytes(), sig, &last.body, now, 300)
        .expect("the signature verifies with the job's secret");
    assert!(
        delivered
            .iter()
            .any(|r| r.json()["backup_id"] == id.as_str()),
        "no delivery names {id}"
    );
    c.assert_no_secret_in_logs(&[SUPERUSER_PASSWORD, s3.secret_access_key(), HOOK_SECRET]);
    drop(s3);
}
