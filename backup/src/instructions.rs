//! Manual restore instructions: the exact shell commands a person runs to restore a backup
//! without Autopilot — fetch its objects (`aws s3 cp` or `cp`), check every chunk against the
//! manifest (`sha256sum`), decrypt and decompress each stream (`age`, `zstd`) into the
//! engine's own tools (`mbstream`, `tar`, `mariadb`, `psql`, `pg_restore`), then prepare and
//! start the server. Printed by the agent's `autopilot backup show` (from manifests) and by
//! the coordinator's `GET …/backups/{id}` (from the `backup/records/*` documents).
//!
//! [`manual`] is a pure function of an [`Input`]: no I/O, the same text for the same input,
//! every value that reaches a command either checked to be a safe path segment or quoted.

use std::collections::HashSet;

use cluster::wire::{BackupRecordDoc, BackupStatus};

use crate::manifest::{BackupType, EngineKind, Manifest, Method, Status};
use crate::repo::{self, BackupId};

mod engines;

/// What the instructions are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// `mariadb` or `postgres`; any other word gets the generic steps (each stream decrypted
    /// into a file).
    pub engine: String,
    /// The server version that wrote the data (the restore needs the same major version).
    pub engine_version: Option<String>,
    /// Physical (data files) or logical (dumps).
    pub method: Method,
    /// Full or incremental: the type of the backup asked about (the last of the chain).
    pub backup_type: BackupType,
    /// The backups to restore in order: the full first, then each incremental up to the
    /// backup asked about.
    pub chain: Vec<Link>,
    /// Where the objects are: a local directory (`/srv/backups`), `s3://bucket/prefix`, or
    /// any other words naming the repository (`repository "offsite"`: the reader fills in
    /// its location).
    pub repository: String,
    /// The cluster's place in the repository: `<namespace>/<project>/<cluster>`.
    pub cluster: String,
    /// The engine position the data is consistent at, for the reader's record.
    pub position: Option<String>,
    /// What the reader must know before starting (a backup that is not complete, a chain
    /// with a missing link), printed first.
    pub warnings: Vec<String>,
}

/// One backup of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its id (its directory in the repository).
    pub backup_id: String,
    /// Full or incremental.
    pub backup_type: BackupType,
    /// Its streams' names in restore order (`base`; `globals`, `db-<name>`).
    pub streams: Vec<String>,
}

/// The chain ending at `target`, full first: its ancestors by parent id among `all`. Stops
/// at a parent that is not there, not a backup id, or already seen (a loop), with a warning.
fn walk<'a, T>(
    target: &'a T,
    all: &'a [T],
    id: fn(&T) -> &str,
    parent: fn(&T) -> Option<&str>,
    source: &str,
    warnings: &mut Vec<String>,
) -> Vec<&'a T> {
    let mut chain = vec![target];
    let mut seen = HashSet::from([id(target)]);
    let mut at = target;
    while let Some(p) = parent(at) {
        if BackupId::parse(p).is_err() {
            warnings.push(format!(
                "{} names its parent {p:?}, which is not a backup id: the chain cannot be \
                 followed; restore a full backup instead",
                id(at)
            ));
            break;
        }
        if !seen.insert(p) {
            warnings.push(format!(
                "the chain of {} loops back to {p}: the records are inconsistent; restore a \
                 full backup instead",
                id(target)
            ));
            break;
        }
        let Some(next) = all.iter().find(|x| id(x) == p) else {
            warnings.push(format!(
                "the chain is incomplete: {} builds on {p}, which {source} does not hold; \
                 fetch {p} (and its own parents) too and apply them first, or restore a full \
                 backup instead",
                id(at)
            ));
            break;
        };
        chain.push(next);
        at = next;
    }
    chain.reverse();
    chain
}

fn manifest_id(m: &Manifest) -> &str {
    m.backup_id.as_str()
}

fn manifest_parent(m: &Manifest) -> Option<&str> {
    m.parent_id.as_ref().map(BackupId::as_str)
}

fn record_id(r: &BackupRecordDoc) -> &str {
    &r.id
}

fn record_parent(r: &BackupRecordDoc) -> Option<&str> {
    r.parent_id.as_deref()
}

impl Input {
    /// From a backup's manifest and the manifests its parents are found among (by
    /// `parent_id`; `chain` may hold the backup itself and unrelated ones too).
    /// `repo_description` is where the objects are (see [`Input::repository`]).
    pub fn from_manifest(m: &Manifest, chain: &[Manifest], repo_description: &str) -> Self {
        let mut warnings = Vec::new();
        let links = walk(
            m,
            chain,
            manifest_id,
            manifest_parent,
            "the repository",
            &mut warnings,
        );
        for l in &links {
            let status = match l.status {
                Status::Complete => continue,
                Status::Running => "still running",
                Status::Failed => "failed",
            };
            warnings.push(not_usable(l.backup_id.as_str(), status, l.error.as_deref()));
        }
        Input {
            engine: match m.engine.kind {
                EngineKind::Mariadb => "mariadb",
                EngineKind::Postgres => "postgres",
            }
            .to_owned(),
            engine_version: Some(m.engine.version.clone()).filter(|v| !v.is_empty()),
            method: m.method,
            backup_type: m.backup_type,
            chain: links
                .iter()
                .map(|l| Link {
                    backup_id: l.backup_id.to_string(),
                    backup_type: l.backup_type,
                    streams: l.streams.iter().map(|s| s.name.clone()).collect(),
                })
                .collect(),
            repository: repo_description.to_owned(),
            cluster: m.cluster.to_string(),
            position: m.position.clone(),
            warnings,
        }
    }

    /// From a backup's record (`backup/records/<id>`) and the cluster's other records, among
    /// which its parents are found by `parent_id`. `cluster` is `<ns>/<project>/<cluster>`;
    /// `repo_description` is where the objects are (see [`Input::repository`]).
    pub fn from_record(
        r: &BackupRecordDoc,
        records: &[BackupRecordDoc],
        cluster: &str,
        repo_description: &str,
    ) -> Self {
        let mut warnings = Vec::new();
        let links = walk(
            r,
            records,
            record_id,
            record_parent,
            "etcd (backup/records/)",
            &mut warnings,
        );
        for l in &links {
            let status = match l.status {
                BackupStatus::Done => continue,
                BackupStatus::Running => "still running",
                BackupStatus::Failed => "failed",
                BackupStatus::Unknown => "in a state this version does not know",
            };
            warnings.push(not_usable(&l.id, status, l.error.as_deref()));
        }
        Input {
            engine: r.engine.clone(),
            engine_version: r.engine_version.clone().filter(|v| !v.is_empty()),
            method: r.method,
            backup_type: r.backup_type,
            chain: links
                .iter()
                .map(|l| Link {
                    backup_id: l.id.clone(),
                    backup_type: l.backup_type,
                    streams: l.streams.clone(),
                })
                .collect(),
            repository: repo_description.to_owned(),
            cluster: cluster.to_owned(),
            position: r.position.clone(),
            warnings,
        }
    }
}

fn not_usable(id: &str, status: &str, error: Option<&str>) -> String {
    format!(
        "{id} is {status}, not a complete backup{}: the steps below fail on its missing or \
         partial objects; restore an older complete backup instead",
        error.map(|e| format!(" ({e})")).unwrap_or_default()
    )
}

/// Where the objects are, as the commands need it.
enum Repo {
    /// `s3://bucket/prefix`, without a trailing slash.
    S3(String),
    /// An absolute directory, without a trailing slash.
    Dir(String),
    /// Only a description: the reader sets `REPO`.
    Named(String),
}

impl Repo {
    fn parse(description: &str) -> Self {
        let d = description.trim();
        let single = !d.is_empty() && !d.contains(char::is_whitespace);
        if single && d.starts_with("s3://") && d.len() > "s3://".len() {
            Repo::S3(d.trim_end_matches('/').to_owned())
        } else if d.starts_with('/') && !d.contains(char::is_control) {
            let t = d.trim_end_matches('/');
            Repo::Dir(if t.is_empty() { "/" } else { t }.to_owned())
        } else {
            Repo::Named(comment_safe(d))
        }
    }
}

/// `s` as one shell word: bare when it holds only safe characters, else single-quoted.
fn sh(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-/:=@,+%".contains(&c));
    if safe {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` fit for a `#` comment: one line, no control characters.
fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The major version (`10.11.19` → `10.11` for MariaDB, `15.18` → `15` for PostgreSQL).
fn major(engine: &str, version: &str) -> String {
    let parts: Vec<&str> = version
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("")
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    let n = if engine == "postgres" && parts.first().is_some_and(|p| *p >= "10" && p.len() >= 2) {
        1
    } else {
        2
    };
    parts.iter().take(n).copied().collect::<Vec<_>>().join(".")
}

/// How the chain's streams are restored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    MariadbPhysical,
    MariadbLogical,
    PostgresPhysical,
    PostgresLogical,
    /// Each stream decrypted into a file; the reader loads it.
    Generic,
}

/// The text being written, with the step counter.
struct Text {
    out: String,
    step: u32,
}

impl Text {
    fn line(&mut self, s: impl AsRef<str>) {
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }
    fn step(&mut self, title: impl AsRef<str>) {
        self.step += 1;
        let step = self.step;
        self.line("");
        self.line(format!("# {step}. {}", title.as_ref()));
    }
}

/// `cat <the stream's chunks> | age -d | zstd -d` — the plain stream on stdout.
fn plain(id: &str, stream: &str) -> String {
    format!("cat \"$WORK/{id}/data/{stream}/\"*.age | age -d -i \"$KEY\" | zstd -d")
}

/// The manual restore of `input` as shell commands with comments (see the module doc).
pub fn manual(input: &Input) -> String {
    let mut warnings = input.warnings.clone();
    // Only ids and stream names that are safe path segments reach a command.
    let chain: Vec<Link> = input
        .chain
        .iter()
        .filter_map(|l| {
            if repo::segment("backup id", &l.backup_id).is_err() {
                warnings.push(format!(
                    "{:?} is not a backup id: left out of the commands",
                    comment_safe(&l.backup_id)
                ));
                return None;
            }
            let streams = l
                .streams
                .iter()
                .filter(|s| {
                    let ok = repo::segment("stream name", s).is_ok();
                    if !ok {
                        warnings.push(format!(
                            "stream {:?} of {} is not a valid stream name: left out of the \
                             commands",
                            comment_safe(s),
                            l.backup_id
                        ));
                    }
                    ok
                })
                .cloned()
                .collect();
            Some(Link {
                backup_id: l.backup_id.clone(),
                backup_type: l.backup_type,
                streams,
            })
        })
        .collect();
    let engine = input.engine.as_str();
    let incremental = input.backup_type == BackupType::Incremental || chain.len() > 1;
    let kind = match (engine, input.method) {
        ("mariadb", Method::Physical) => Kind::MariadbPhysical,
        ("mariadb", Method::Logical) if !incremental => Kind::MariadbLogical,
        ("postgres", Method::Physical) if !incremental => Kind::PostgresPhysical,
        ("postgres", Method::Logical) if !incremental => Kind::PostgresLogical,
        _ => Kind::Generic,
    };
    if kind == Kind::Generic {
        let what = format!(
            "{} {} {}",
            comment_safe(engine),
            input.method.as_str(),
            input.backup_type.as_str()
        );
        warnings.push(if incremental && matches!(engine, "mariadb" | "postgres") {
            format!(
                "a {what} backup: Autopilot takes incremental backups of MariaDB physical \
                 backups only, and these instructions do not know how to combine these; the \
                 steps below decrypt every stream of the chain into a file"
            )
        } else {
            format!(
                "a {what} backup is not one these instructions know how to load: the steps \
                 below decrypt every stream into a file for you to load with the engine's tools"
            )
        });
    }
    let Some(target) = chain.last() else {
        return "# No backup to restore: the chain is empty.\n".to_owned();
    };
    let version = input.engine_version.as_deref().map(comment_safe);
    let major = version.as_deref().map(|v| major(engine, v));

    let mut t = Text {
        out: String::new(),
        step: 0,
    };
    header(&mut t, input, &chain, target, kind, version.as_deref());
    for w in &warnings {
        t.line(format!("# WARNING: {}", comment_safe(w)));
    }
    if !warnings.is_empty() {
        t.line("#");
    }
    needs(&mut t, engine, kind, major.as_deref());
    t.line("");
    t.line("set -euo pipefail");

    let repo = Repo::parse(&input.repository);
    settings(&mut t, &repo, &input.cluster, &target.backup_id);
    fetch(&mut t, &repo, &chain);
    check(&mut t, &chain);
    match kind {
        Kind::MariadbPhysical => engines::mariadb_physical(&mut t, &chain, major.as_deref()),
        Kind::MariadbLogical => engines::mariadb_logical(&mut t, target, major.as_deref()),
        Kind::PostgresPhysical => engines::postgres_physical(&mut t, target, &version, &major),
        Kind::PostgresLogical => engines::postgres_logical(&mut t, target, major.as_deref()),
        Kind::Generic => engines::generic(&mut t, &chain),
    }
    t.out
}

fn header(
    t: &mut Text,
    input: &Input,
    chain: &[Link],
    target: &Link,
    kind: Kind,
    version: Option<&str>,
) {
    t.line(format!(
        "# Restore backup {} of cluster {} by hand, without Autopilot.",
        target.backup_id,
        comment_safe(&input.cluster)
    ));
    let engine = match input.engine.as_str() {
        "mariadb" => "MariaDB".to_owned(),
        "postgres" => "PostgreSQL".to_owned(),
        other => comment_safe(other),
    };
    let tool = match kind {
        Kind::MariadbPhysical => " (mariadb-backup)",
        Kind::MariadbLogical => " (mariadb-dump)",
        Kind::PostgresPhysical => " (pg_basebackup)",
        Kind::PostgresLogical => " (pg_dumpall, pg_dump)",
        Kind::Generic => "",
    };
    t.line(format!(
        "# {engine}{}, {} backup{tool}, {}.",
        version.map(|v| format!(" {v}")).unwrap_or_default(),
        input.method.as_str(),
        input.backup_type.as_str(),
    ));
    if chain.len() > 1 {
        t.line(format!(
            "# It builds on others: {} backups to apply, the full first:",
            chain.len()
        ));
    } else {
        t.line("# The backup:");
    }
    for l in chain {
        t.line(format!(
            "#   {}  {:<11}  streams: {}",
            l.backup_id,
            l.backup_type.as_str(),
            if l.streams.is_empty() {
                "(none)".to_owned()
            } else {
                l.streams.join(", ")
            }
        ));
    }
    if let Some(p) = &input.position {
        t.line(format!("# Consistent at: {}", comment_safe(p)));
    }
    t.line("#");
}

fn needs(t: &mut Text, engine: &str, kind: Kind, major: Option<&str>) {
    let tools = match kind {
        Kind::MariadbPhysical => "mbstream and mariadb-backup",
        Kind::MariadbLogical => "the mariadb client",
        Kind::PostgresPhysical => "tar and the PostgreSQL server",
        Kind::PostgresLogical => "psql and pg_restore",
        Kind::Generic => "the engine's own tools",
    };
    t.line(
        "# You need: the age identity file (its AGE-SECRET-KEY-1… line) of one of the recipients",
    );
    t.line("# listed in manifest.json, and aws (for S3) or cp, jq, sha256sum, age, zstd,");
    let of = match (engine, major) {
        ("mariadb", Some(m)) => format!(" (MariaDB {m}: the major version that wrote it)"),
        ("postgres", Some(m)) => format!(" (PostgreSQL {m}: the major version that wrote it)"),
        _ => String::new(),
    };
    t.line(format!("# {tools}{of}."));
    t.line("# Run the commands in bash, in order; each must succeed before the next.");
}

fn settings(t: &mut Text, repo: &Repo, cluster: &str, target: &str) {
    t.step("Where things are (edit these lines).");
    match repo {
        Repo::S3(url) => t.line(format!(
            "REPO={}   # the repository (no trailing slash)",
            sh(url)
        )),
        Repo::Dir(dir) => t.line(format!(
            "REPO={}   # the repository's directory (no trailing slash)",
            sh(dir)
        )),
        Repo::Named(what) => {
            t.line(format!(
                "REPO=   # where {what} is: s3://bucket/prefix or a directory (no trailing slash)"
            ));
        }
    }
    t.line(format!("CLUSTER={}", sh(cluster)));
    t.line("KEY=key.txt   # the age identity file");
    t.line(format!(
        "WORK=/var/tmp/restore-{target}   # scratch space: twice the backup's stored size, and more"
    ));
}

fn fetch(t: &mut Text, repo: &Repo, chain: &[Link]) {
    let each = if chain.len() > 1 {
        "each backup of the chain"
    } else {
        "the backup"
    };
    t.step(format!("Fetch {each}: its manifest and its chunks."));
    t.line("mkdir -p \"$WORK\"");
    match repo {
        Repo::S3(_) => {
            for l in chain {
                let id = &l.backup_id;
                t.line(format!(
                    "aws s3 cp --recursive \"$REPO/$CLUSTER/backups/{id}/\" \"$WORK/{id}/\""
                ));
            }
            t.line(
                "# (an S3-compatible server other than AWS: add --endpoint-url URL after `aws`)",
            );
        }
        Repo::Dir(_) => {
            for l in chain {
                let id = &l.backup_id;
                t.line(format!("cp -R \"$REPO/$CLUSTER/backups/{id}\" \"$WORK/\""));
            }
        }
        Repo::Named(_) => {
            t.line("fetch() {   # fetch BACKUP_ID: from S3 (add --endpoint-url URL after `aws` for a server other than AWS) or a directory");
            t.line("  case \"$REPO\" in");
            t.line(
                "    s3://*) aws s3 cp --recursive \"$REPO/$CLUSTER/backups/$1/\" \"$WORK/$1/\" ;;",
            );
            t.line("    *) cp -R \"$REPO/$CLUSTER/backups/$1\" \"$WORK/\" ;;");
            t.line("  esac");
            t.line("}");
            for l in chain {
                t.line(format!("fetch {}", l.backup_id));
            }
        }
    }
}

fn check(t: &mut Text, chain: &[Link]) {
    t.step("Check every chunk against its manifest: each line must end in OK.");
    for l in chain {
        t.line(format!(
            "(cd \"$WORK/{}\" && jq -r '.streams[].summary.chunks[] | \"\\(.sha256)  \\(.name)\"' manifest.json | sha256sum -c -)",
            l.backup_id
        ));
    }
}

#[cfg(test)]
mod tests;
