//! Backups under faults and bad input, through the agent and `autopilot backup`, on real
//! MariaDB clusters with a local repository and a real S3 server (SeaweedFS). Each fault
//! gives an error naming the object and what was expected, and overwrites nothing:
//!
//! - one node, [`repository_faults_and_bad_inputs_are_named_and_leave_nothing_behind`]:
//!   a flipped byte in a stored chunk (`verify` exits 65 naming the chunk and both SHA-256,
//!   `restore` refuses and writes nothing); a wrong age key (`restore`, `get`: "wrong key",
//!   65, nothing written); wrong S3 credentials (the record ends failed naming the object and
//!   the 403, nothing in the bucket); a full local disk (tmpfs: "No space left", no partial
//!   objects, agent and database healthy); the S3 server killed mid-upload and restarted (the
//!   record names the cause, the next backup succeeds, and then no object and no open
//!   multipart upload of the failed one is left); a corrupt and a truncated manifest (`list`
//!   reports the rows and goes on, `show` and `restore` refuse naming `manifest.json`);
//! - three nodes, [`a_runner_killed_mid_backup_ends_its_slot_once_and_rejoins`]: the node
//!   running a requested backup is killed (agent and mariadbd); another replica runs the slot
//!   once its lease is gone, exactly one done backup answers the request, the killed node
//!   comes back as a replica with its leftover record failed, and the next request succeeds.
//!
//! Jobs never fire on schedule here ("0 0 1 1 *"): every backup is asked for through
//! `backup/requests/<id>`, which runs at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use backup::pipeline::Identity;
use e2e::harness::backup::{cli, records};
use e2e::harness::s3::S3Server;
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{ADMIN_PASSWORD, MariaCluster, MariaOpts};
use e2e::mariadb::scenario::{BOOTSTRAP, settled};
use sha2::{Digest, Sha256};

/// How long one requested backup may take (a few seconds; generous for a loaded CI box).
const RUN: Duration = Duration::from_secs(60);
/// A schedule that never fires during a test.
const NEVER: &str = "0 0 1 1 *";
/// The wrong S3 secret (also checked absent from the logs).
const WRONG_SECRET: &str = "wrong-secret-MARKER-5e1f";

/// Writes `identity` to `path` as an age identity file.
fn write_identity(path: &Path, identity: &Identity) {
    use age::secrecy::ExposeSecret as _;
    std::fs::write(path, format!("{}\n", identity.to_string().expose_secret()))
        .expect("write an identity file");
}

/// An S3 repository entry named `name`, its credentials in files under `dir`.
fn s3_repo_yaml(dir: &Path, s3: &S3Server, name: &str, secret: &str) -> String {
    std::fs::write(dir.join(format!("{name}.key")), s3.access_key_id()).expect("key id");
    std::fs::write(dir.join(format!("{name}.secret")), secret).expect("secret");
    format!(
        r#"    - name: {name}
      s3:
        bucket: {bucket}
        prefix: autopilot
        endpoint: {endpoint}
        region: {region}
        path_style: true
        access_key_id: {{ file: {dir}/{name}.key }}
        secret_access_key: {{ file: {dir}/{name}.secret }}
"#,
        bucket = s3.bucket(),
        endpoint = s3.endpoint(),
        region = s3.region(),
        dir = dir.display(),
    )
}

/// Asks for a backup of `job` now (request `id`).
fn request(c: &MariaCluster, id: &str, job: &str) {
    c.put_key(
        &format!("backup/requests/{id}"),
        &format!(r#"{{"schema":1,"action":"backup","job":"{job}","requested_by":"e2e"}}"#),
    );
}

/// The record of a backup of `job` not in `known` that ended (`done` or `failed`).
fn wait_ended(c: &MariaCluster, job: &str, known: &[String]) -> serde_json::Value {
    eventually(RUN, Duration::from_millis(300), || {
        records(c).into_iter().find(|r| {
            r["job"] == job
                && (r["status"] == "done" || r["status"] == "failed")
                && !known.iter().any(|k| r["id"] == k.as_str())
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no {job} backup ended within {RUN:?}; records {:#?}\n{}",
            records(c),
            c.logs()
        )
    })
}

/// The ids of every record so far.
fn ids(c: &MariaCluster) -> Vec<String> {
    records(c)
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

/// Runs `job` by request and waits for its end; the record.
fn run_job(c: &MariaCluster, request_id: &str, job: &str) -> serde_json::Value {
    let known = ids(c);
    request(c, request_id, job);
    wait_ended(c, job, &known)
}

fn id_of(r: &serde_json::Value) -> String {
    r["id"].as_str().expect("a record has an id").to_owned()
}

/// Every file under `dir` (recursively).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Absent, or an empty directory.
fn absent_or_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

fn sha256_hex(bytes: &[u8]) -> String {
    backup::repo::hex(&Sha256::digest(bytes))
}

/// The directory of backup `id` in the local repository at `repo`.
fn backup_dir(repo: &Path, id: &str) -> PathBuf {
    let found = files_under(repo).into_iter().find_map(|f| {
        let s = f.display().to_string();
        let at = s.find(&format!("/backups/{id}/"))?;
        Some(PathBuf::from(&s[..at + "/backups/".len() + id.len()]))
    });
    found.unwrap_or_else(|| panic!("backup {id} not in {}", repo.display()))
}

/// Fills `bulk.blob` on node `p` with `mib` MiB of incompressible rows (1 KiB each).
fn insert_incompressible(c: &MariaCluster, p: usize, mib: usize) {
    c.sql(
        p,
        &[
            "CREATE DATABASE IF NOT EXISTS bulk",
            "CREATE TABLE IF NOT EXISTS bulk.blob (id INT PRIMARY KEY, b BLOB) ENGINE=InnoDB",
        ],
    )
    .expect("create bulk.blob");
    for step in 0..mib / 8 {
        let (from, to) = (step * 8192 + 1, (step + 1) * 8192);
        c.sql(
            p,
            &[&format!(
                "INSERT INTO bulk.blob SELECT seq, RANDOM_BYTES(1024) FROM bulk.seq_{from}_to_{to}"
            )],
        )
        .expect("insert incompressible rows");
    }
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).expect("tmpfs mount point");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount a tmpfs on {} (root needed)",
            dir.display()
        );
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn one_node_yaml(dir: &Path, s3: &S3Server, recipient: &str) -> String {
    format!(
        r#"backup:
  repositories:
    - {{ name: local, path: {local} }}
    - {{ name: tiny, path: {tiny} }}
{s3}{s3bad}  encryption: {{ recipients: [{recipient}] }}
  compression: {{ level: 1, threads: 1 }}
  jobs:
    - {{ name: logical, method: logical, schedule: "{NEVER}", databases: [e2e], destinations: [local], run_on: any, retention: {{ keep_last: 20 }} }}
    - {{ name: bad-creds, method: logical, schedule: "{NEVER}", databases: [e2e], destinations: [s3bad], run_on: any, retention: {{ keep_last: 20 }} }}
    - {{ name: big, schedule: "{NEVER}", destinations: [s3], run_on: any, retention: {{ keep_last: 20 }} }}
    - {{ name: full-disk, schedule: "{NEVER}", destinations: [tiny], run_on: any, retention: {{ keep_last: 20 }} }}
"#,
        local = dir.join("repo").display(),
        tiny = dir.join("tiny").display(),
        s3 = s3_repo_yaml(dir, s3, "s3", s3.secret_access_key()),
        s3bad = s3_repo_yaml(dir, s3, "s3bad", WRONG_SECRET),
    )
}

#[test]
fn repository_faults_and_bad_inputs_are_named_and_leave_nothing_behind() {
    let t0 = Instant::now();
    let mut s3 = S3Server::start().expect("start the S3 server");
    let keys = tempfile::tempdir().expect("temp dir");
    let identity = Identity::generate();
    let key_file = keys.path().join("key.txt");
    write_identity(&key_file, &identity);
    let other_key = keys.path().join("other.txt");
    write_identity(&other_key, &Identity::generate());
    let tiny = Tmpfs::mount(keys.path().join("tiny"), "8m");
    let local = keys.path().join("repo");
    let opts = MariaOpts {
        extra_yaml: one_node_yaml(keys.path(), &s3, &identity.to_public().to_string()),
        // One node: no replica to acknowledge a semi-synchronous commit.
        durability: "async",
        ..MariaOpts::default()
    };
    let c = MariaCluster::start(1, opts).expect("start a one-node MariaDB cluster");
    let p = c.wait_primary(BOOTSTRAP);
    c.create_schema(p);
    c.sql(p, &["INSERT INTO e2e.seq VALUES (1),(2),(3)"])
        .expect("insert rows");
    eprintln!("cluster up after {:?}", t0.elapsed());

    // 1. A flipped byte in a stored chunk.
    let good = run_job(&c, "r-logical-1", "logical");
    assert_eq!(good["status"], "done", "{good:#}\n{}", c.logs());
    let good_id = id_of(&good);
    let dir = backup_dir(&local, &good_id);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json")).expect("read the manifest"),
    )
    .expect("manifest JSON");
    let stream = &manifest["streams"][0];
    let chunk = stream["summary"]["chunks"][0].clone();
    let chunk_name = chunk["name"].as_str().expect("chunk name").to_owned();
    let chunk_file = dir.join(&chunk_name);
    let original = std::fs::read(&chunk_file).expect("read the chunk");
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&chunk_file, &flipped).expect("flip a byte");
    let (expected_sha, found_sha) = (
        chunk["sha256"].as_str().expect("sha256").to_owned(),
        sha256_hex(&flipped),
    );
    let (code, out, err) = cli(&c, c.dir(), &["verify", &good_id, "--repo", "local"]);
    eprintln!("verify of a flipped byte: {code} {out}{err}");
    assert_eq!(code, 65, "{out}{err}");
    for want in [&chunk_name, &expected_sha, &found_sha] {
        assert!(err.contains(want.as_str()), "verify names {want}: {err}");
    }
    let target = c.dir().join("restore-flipped");
    let (code, out, err) = cli(
        &c,
        c.dir(),
        &[
            "restore",
            &good_id,
            "--repo",
            "local",
            "--identity",
            &key_file.display().to_string(),
            "--target-dir",
            &target.display().to_string(),
        ],
    );
    eprintln!("restore of a flipped byte: {code} {out}{err}");
    assert_eq!(code, 65, "{out}{err}");
    assert!(
        err.contains(&chunk_name) && err.contains(&found_sha),
        "{err}"
    );
    assert!(
        absent_or_empty(&target),
        "the refused restore wrote into {}",
        target.display()
    );
    std::fs::write(&chunk_file, &original).expect("put the chunk back");
    let (code, out, err) = cli(&c, c.dir(), &["verify", &good_id, "--repo", "local"]);
    assert_eq!(code, 0, "intact again: {out}{err}");

    // 2. A wrong age key: restore and get refuse, nothing written.
    let target = c.dir().join("restore-wrong-key");
    let (code, out, err) = cli(
        &c,
        c.dir(),
        &[
            "restore",
            &good_id,
            "--repo",
            "local",
            "--identity",
            &other_key.display().to_string(),
            "--target-dir",
            &target.display().to_string(),
        ],
    );
    eprintln!("restore with a wrong key: {code} {out}{err}");
    assert_eq!(code, 65, "{out}{err}");
    assert!(err.contains("wrong key"), "{err}");
    assert!(absent_or_empty(&target), "wrote into {}", target.display());
    let file = c.dir().join("stream-wrong-key");
    let (code, out, err) = cli(
        &c,
        c.dir(),
        &[
            "get",
            &good_id,
            "--repo",
            "local",
            "--identity",
            &other_key.display().to_string(),
            "--to",
            &file.display().to_string(),
        ],
    );
    eprintln!("get with a wrong key: {code} {out}{err}");
    assert_eq!(code, 65, "{out}{err}");
    assert!(
        err.contains("wrong key") && err.contains(&chunk_name),
        "{err}"
    );
    assert!(!file.exists(), "get left {}", file.display());

    // 3. Wrong S3 credentials: failed, the object and the 403 named, nothing in the bucket.
    let bad = run_job(&c, "r-bad-creds", "bad-creds");
    let bad_id = id_of(&bad);
    let error = bad["error"].as_str().unwrap_or_default();
    eprintln!("wrong S3 secret: {error}");
    assert_eq!(bad["status"], "failed", "{bad:#}");
    assert!(
        error.contains("s3bad:autopilot/") && error.contains(&bad_id),
        "names the object: {error}"
    );
    assert!(error.contains("403"), "names the 403: {error}");
    assert!(!error.contains(WRONG_SECRET));
    assert!(
        c.events().iter().any(|e| e["kind"] == "backup_failed"
            && e["detail"].as_str().is_some_and(|d| d.contains(&bad_id))),
        "a backup_failed event for {bad_id}"
    );
    assert_eq!(s3.objects().expect("list the bucket"), Vec::<String>::new());
    assert_eq!(
        s3.open_uploads().expect("list uploads"),
        Vec::<String>::new()
    );

    // 4. A full local disk: "No space left", no partial object, all healthy.
    insert_incompressible(&c, p, 48);
    let full = run_job(&c, "r-full-disk", "full-disk");
    let error = full["error"].as_str().unwrap_or_default();
    eprintln!("full disk: {error}");
    assert_eq!(full["status"], "failed", "{full:#}");
    assert!(error.contains("No space left"), "{error}");
    assert!(error.contains("tiny:"), "names the object: {error}");
    assert_eq!(
        files_under(&tiny.0),
        Vec::<PathBuf>::new(),
        "partial objects left"
    );
    assert_eq!(
        c.sql(p, &["SELECT COUNT(*) FROM e2e.seq"])
            .expect("the database answers")[0][0],
        "3"
    );
    assert_eq!(c.role(p), "primary");

    // 5. The S3 server killed while the big backup uploads, then restarted.
    let known = ids(&c);
    request(&c, "r-big-1", "big");
    let open = eventually(RUN, Duration::from_millis(20), || {
        s3.open_uploads()
            .ok()
            .filter(|u| u.iter().any(|k| k.contains("/backups/")))
    })
    .unwrap_or_else(|| panic!("no multipart upload seen: {:#?}\n{}", records(&c), c.logs()));
    s3.kill();
    let killed = Instant::now();
    eprintln!("killed the S3 server during {open:?}");
    let dead = wait_ended(&c, "big", &known);
    let failed_after = killed.elapsed();
    let error = dead["error"].as_str().unwrap_or_default();
    eprintln!("S3 killed: failed {failed_after:?} after the kill: {error}");
    assert_eq!(dead["status"], "failed", "{dead:#}");
    let dead_id = id_of(&dead);
    assert!(
        error.contains("s3:autopilot/") && error.contains(&dead_id),
        "names the object: {error}"
    );
    assert!(
        error.contains("Connection refused") || error.contains("error sending request"),
        "names the cause: {error}"
    );
    assert!(failed_after < Duration::from_secs(45), "{failed_after:?}");
    s3.restart().expect("restart the S3 server");
    let next = run_job(&c, "r-big-2", "big");
    assert_eq!(next["status"], "done", "{next:#}\n{}", c.logs());
    let next_id = id_of(&next);
    // The sweep after the next backup removes the failed one's objects and open uploads.
    let left = eventually(Duration::from_secs(30), Duration::from_millis(300), || {
        let objects = s3.objects().ok()?;
        let uploads = s3.open_uploads().ok()?;
        (uploads.is_empty() && objects.iter().all(|o| !o.contains(&dead_id))).then_some(objects)
    })
    .unwrap_or_else(|| {
        panic!(
            "the failed backup {dead_id} left objects or uploads: {:?} {:?}\n{}",
            s3.objects(),
            s3.open_uploads(),
            c.logs()
        )
    });
    assert!(
        !left.is_empty() && left.iter().all(|o| o.contains(&next_id)),
        "{left:?}"
    );

    // 6. A corrupt and a truncated manifest.
    let second = run_job(&c, "r-logical-2", "logical");
    assert_eq!(second["status"], "done", "{second:#}");
    let second_id = id_of(&second);
    let corrupt = backup_dir(&local, &good_id).join("manifest.json");
    std::fs::write(&corrupt, b"{ this is not JSON").expect("corrupt a manifest");
    let truncated = backup_dir(&local, &second_id).join("manifest.json");
    let text = std::fs::read(&truncated).expect("read a manifest");
    std::fs::write(&truncated, &text[..text.len() / 2]).expect("truncate a manifest");
    let (code, out, err) = cli(&c, c.dir(), &["list", "--repo", "local", "-o", "json"]);
    assert_eq!(code, 0, "list goes on: {out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let rows = listed["backups"].as_array().expect("rows");
    for id in [&good_id, &second_id] {
        let row = rows
            .iter()
            .find(|r| r["backup_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not listed: {out}"));
        let e = row["error"].as_str().unwrap_or_default();
        assert!(
            e.contains(&format!("{id}/manifest.json")) && e.contains("corrupt manifest"),
            "{row}"
        );
    }
    for id in [&good_id, &second_id] {
        let (code, out, err) = cli(&c, c.dir(), &["show", id, "--repo", "local"]);
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains(&format!("{id}/manifest.json")) && err.contains("corrupt manifest"),
            "{err}"
        );
        let target = c.dir().join(format!("restore-{id}"));
        let (code, out, err) = cli(
            &c,
            c.dir(),
            &[
                "restore",
                id,
                "--repo",
                "local",
                "--identity",
                &key_file.display().to_string(),
                "--target-dir",
                &target.display().to_string(),
            ],
        );
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains("manifest.json") && err.contains("corrupt manifest"),
            "{err}"
        );
        assert!(absent_or_empty(&target));
    }

    // Still healthy; no secret in any log.
    assert_eq!(c.role(p), "primary");
    c.sql(p, &["SELECT 1"]).expect("the database answers");
    c.assert_no_secret_in_logs(&[ADMIN_PASSWORD, s3.secret_access_key(), WRONG_SECRET]);
    eprintln!("one-node faults done in {:?}", t0.elapsed());
    drop(c);
    drop(tiny);
}

#[test]
fn a_runner_killed_mid_backup_ends_its_slot_once_and_rejoins() {
    let t0 = Instant::now();
    let keys = tempfile::tempdir().expect("temp dir");
    let identity = Identity::generate();
    let opts = MariaOpts {
        extra_yaml: format!(
            r#"backup:
  repositories:
    - {{ name: local, path: {repo} }}
  encryption: {{ recipients: [{recipient}] }}
  compression: {{ level: 1, threads: 1 }}
  jobs:
    - {{ name: big, schedule: "{NEVER}", destinations: [local], run_on: replica, retention: {{ keep_last: 20 }} }}
"#,
            repo = keys.path().join("repo").display(),
            recipient = identity.to_public(),
        ),
        ..MariaOpts::default()
    };
    let (mut c, p) = settled(opts);
    insert_incompressible(&c, p, 48);
    for i in (0..3).filter(|&i| i != p) {
        c.wait_replicating(i, p, Duration::from_secs(60));
    }
    eprintln!("cluster up with 48 MiB after {:?}", t0.elapsed());

    // The runner of r1 is killed while it runs.
    request(&c, "r1", "big");
    let slot_key = "backup/slots/_requests/r1";
    let (holder, first_id) = eventually(RUN, Duration::from_millis(20), || {
        let slot: serde_json::Value = serde_json::from_str(&c.key(slot_key)?).ok()?;
        let id = slot["backup_id"].as_str()?.to_owned();
        Some((slot["holder"].as_str()?.to_owned(), id))
    })
    .unwrap_or_else(|| panic!("r1 never started: {:#?}\n{}", records(&c), c.logs()));
    let victim = (0..3)
        .find(|&i| c.name(i) == holder)
        .expect("the holder is a node");
    assert_ne!(victim, p, "run_on: replica");
    c.kill_node(victim);
    eprintln!(
        "killed {holder} running {first_id} after {:?}",
        t0.elapsed()
    );

    // Another replica runs the slot once the dead runner's lease is gone.
    let done = eventually(Duration::from_secs(90), Duration::from_millis(300), || {
        let slot: serde_json::Value = serde_json::from_str(&c.key(slot_key)?).ok()?;
        (slot["status"] == "done").then_some(slot)
    })
    .unwrap_or_else(|| {
        panic!(
            "r1 not done after the kill: {:?} {:#?}\n{}",
            c.key(slot_key),
            records(&c),
            c.logs()
        )
    });
    assert_ne!(done["holder"], holder.as_str(), "{done:#}");
    let done_id = done["backup_id"].as_str().expect("backup id").to_owned();
    assert_ne!(done_id, first_id);
    let all = records(&c);
    let dones: Vec<_> = all
        .iter()
        .filter(|r| r["job"] == "big" && r["status"] == "done")
        .collect();
    assert_eq!(dones.len(), 1, "one done backup for r1: {all:#?}");
    assert_eq!(dones[0]["id"], done_id.as_str());
    assert!(
        eventually(Duration::from_secs(20), Duration::from_millis(300), || c
            .key("backup/requests/r1")
            .is_none()
            .then_some(()))
        .is_some(),
        "r1 not removed"
    );

    // The killed node comes back as a replica; its leftover record ends failed.
    c.start_agent(victim);
    c.wait_replicating(victim, p, Duration::from_secs(90));
    // Full redundancy: the rejoined node holds the same rows as the primary.
    let digest = |i: usize| {
        c.sql(
            i,
            &["SELECT COUNT(*), COALESCE(SUM(CRC32(b)), 0) FROM bulk.blob"],
        )
        .map(|rows| rows[0].join(" "))
        .ok()
    };
    let want = digest(p).expect("read the primary's rows");
    eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        (digest(victim).as_ref() == Some(&want)).then_some(())
    })
    .unwrap_or_else(|| panic!("node {victim} rejoined without the primary's rows ({want})"));
    e2e::mariadb::scenario::same_rows_everywhere(&c, p);
    let leftover = eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        records(&c)
            .into_iter()
            .find(|r| r["id"] == first_id.as_str() && r["status"] == "failed")
    })
    .unwrap_or_else(|| {
        panic!(
            "{first_id} not marked failed: {:#?}\n{}",
            records(&c),
            c.logs()
        )
    });
    assert!(
        leftover["error"]
            .as_str()
            .is_some_and(|e| e.contains("agent stopped during the backup")),
        "{leftover:#}"
    );
    assert_eq!(c.role(p), "primary");

    // The next request runs on the new topology and succeeds.
    let next = run_job(&c, "r2", "big");
    assert_eq!(next["status"], "done", "{next:#}\n{}", c.logs());
    assert_ne!(next["node"], c.name(p), "{next:#}");
    let all = records(&c);
    assert_eq!(
        all.iter()
            .filter(|r| r["job"] == "big" && r["status"] == "done")
            .count(),
        2,
        "{all:#?}"
    );
    c.assert_no_secret_in_logs(&[ADMIN_PASSWORD]);
    eprintln!("runner kill done in {:?}", t0.elapsed());
}
