//! `autopilot backup list | show`: what this node's catalog records, or what a repository
//! holds (`--repo NAME`, read from its manifests: a repository describes itself, so this
//! works on a machine that never took a backup). Table output by default, `-o json` for
//! scripts. Secrets (S3 keys) come from the configuration, as the agent reads them.

use std::path::Path;

use backup::catalog::{BackupRecord, Catalog};
use backup::manifest::Manifest;
use backup::repo::{BackupId, ClusterId, Repository, StreamLocation};
use serde_json::json;

use super::Output;
use crate::config::{self, BackupConfig, Config};
use crate::node::exit_code;

/// What to show.
pub enum What<'a> {
    /// Every backup, newest first.
    List,
    /// One backup.
    Show(&'a str),
}

/// Runs `backup list|show`; the process exit code.
pub fn run(config: &Path, repo: Option<&str>, what: What<'_>, output: Output) -> i32 {
    let cfg = match config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("autopilot: {}", handlers::error_chain(&e));
            return exit_code::USAGE;
        }
    };
    let Some(b) = &cfg.backup else {
        eprintln!(
            "autopilot: {} has no backup section; expected backup: {{repositories: …}} (docs/configuration.md)",
            config.display()
        );
        return exit_code::USAGE;
    };
    let result = match repo {
        None => from_catalog(&cfg, b, &what),
        Some(name) => from_repository(&cfg, b, name, &what),
    };
    match result {
        Ok(value) => {
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
                ),
                Output::Text => print!("{}", render(&value, &what)),
            }
            0
        }
        Err((code, message)) => {
            eprintln!("autopilot: {message}");
            code
        }
    }
}

type Failure = (i32, String);

fn cluster_id(cfg: &Config) -> Result<ClusterId, Failure> {
    let c = cfg.cluster.as_ref().ok_or((
        exit_code::USAGE,
        "the configuration names no cluster; expected cluster: {namespace, project, name}"
            .to_owned(),
    ))?;
    Ok(ClusterId {
        namespace: c.namespace.clone(),
        project: c.project.clone(),
        name: c.name.clone(),
    })
}

fn from_catalog(
    cfg: &Config,
    b: &BackupConfig,
    what: &What<'_>,
) -> Result<serde_json::Value, Failure> {
    if !b.catalog.exists() {
        return Err((
            exit_code::UNAVAILABLE,
            format!(
                "no catalog at {} yet (this node has taken no backup); list a repository with --repo NAME",
                b.catalog.display()
            ),
        ));
    }
    let catalog = Catalog::open(&b.catalog).map_err(|e| (exit_code::UNAVAILABLE, e.to_string()))?;
    let cluster = cluster_id(cfg)?.to_string();
    match what {
        What::List => {
            let list = catalog
                .list(Some(&cluster))
                .map_err(|e| (exit_code::UNAVAILABLE, e.to_string()))?;
            let gaps = catalog
                .gaps(&cluster)
                .map_err(|e| (exit_code::UNAVAILABLE, e.to_string()))?;
            Ok(json!({
                "source": "catalog",
                "backups": list.iter().map(record).collect::<Vec<_>>(),
                "archive_gaps": gaps,
            }))
        }
        What::Show(id) => {
            let r = catalog.get(id).map_err(|e| (NOT_FOUND, e.to_string()))?;
            Ok(record(&r))
        }
    }
}

/// Exit code for a backup that does not exist (as `autopilotctl`'s "not found").
const NOT_FOUND: i32 = 4;

fn record(r: &BackupRecord) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

fn repository(b: &BackupConfig, name: &str) -> Result<Repository, Failure> {
    let Some(r) = b.repositories.iter().find(|r| r.name == name) else {
        let names: Vec<&str> = b.repositories.iter().map(|r| r.name.as_str()).collect();
        return Err((
            exit_code::USAGE,
            format!("no repository {name:?} in the configuration; expected one of {names:?}"),
        ));
    };
    let repo = r.open();
    repo.map_err(|e| (exit_code::UNAVAILABLE, e.to_string()))
}

fn from_repository(
    cfg: &Config,
    b: &BackupConfig,
    name: &str,
    what: &What<'_>,
) -> Result<serde_json::Value, Failure> {
    let repo = repository(b, name)?;
    let cluster = cluster_id(cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (exit_code::SOFTWARE, format!("start the async runtime: {e}")))?;
    let unavailable = |e: backup::repo::RepoError| (exit_code::UNAVAILABLE, e.to_string());
    rt.block_on(async {
        match what {
            What::List => {
                let mut out = Vec::new();
                for id in repo.list_backups(&cluster).await.map_err(unavailable)? {
                    // One unreadable manifest is reported in its row, not fatal for the list.
                    out.push(match repo.read_manifest(&cluster, &id).await {
                        Ok(m) => manifest(&m),
                        Err(e) => json!({ "backup_id": id.as_str(), "error": e.to_string() }),
                    });
                }
                out.reverse(); // newest first, as the catalog lists
                Ok(json!({ "source": format!("repository {name}"), "backups": out }))
            }
            What::Show(id) => {
                let id = BackupId::parse(id).map_err(|e| (exit_code::USAGE, e.to_string()))?;
                let m = repo
                    .read_manifest(&cluster, &id)
                    .await
                    .map_err(|e| (NOT_FOUND, e.to_string()))?;
                Ok(manifest(&m))
            }
        }
    })
}

fn manifest(m: &Manifest) -> serde_json::Value {
    serde_json::to_value(m).unwrap_or_default()
}

/// The table (list) or the key/value view (show) of what `run` found.
fn render(v: &serde_json::Value, what: &What<'_>) -> String {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match what {
        What::Show(_) => {
            let mut out = String::new();
            if let Some(map) = v.as_object() {
                for (k, v) in map {
                    out += &format!("{k}: {}\n", s(v));
                }
            }
            out
        }
        What::List => {
            let rows: Vec<Vec<String>> = v["backups"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|b| {
                    vec![
                        s(if b["id"].is_null() {
                            &b["backup_id"]
                        } else {
                            &b["id"]
                        }),
                        s(&b["method"]),
                        s(&b["type"].as_str().map_or(b["kind"].clone(), |t| t.into())),
                        s(&b["status"]),
                        s(&b["node"]),
                        s(&b["position"]),
                        s(if b["error"].is_null() {
                            &b["job"]
                        } else {
                            &b["error"]
                        }),
                    ]
                })
                .collect();
            let head = [
                "ID",
                "METHOD",
                "TYPE",
                "STATUS",
                "NODE",
                "POSITION",
                "JOB/ERROR",
            ];
            let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let mut l = String::new();
                for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                    if i + 1 == cells.len() {
                        l += c;
                    } else {
                        l += &format!("{c:<w$}  ");
                    }
                }
                l.trim_end().to_owned() + "\n"
            };
            let mut out = format!("# {}\n", s(&v["source"]));
            out += &line(&head.map(str::to_owned));
            for r in &rows {
                out += &line(r);
            }
            if rows.is_empty() {
                out += "(no backups)\n";
            }
            for g in v["archive_gaps"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                out += &format!(
                    "archive gap {}..{}: {}\n",
                    s(&g["start"]),
                    s(&g["end"]),
                    s(&g["detail"])
                );
            }
            out
        }
    }
}

/// Exit code for a backup that is not intact (sysexits EX_DATAERR).
const DATA_ERROR: i32 = 65;

/// Loads the configuration, its backup section, the named repository and the cluster.
fn open(config: &Path, repo: Option<&str>) -> Result<(Repository, ClusterId), Failure> {
    let cfg = config::load(config)
        .map_err(|e| (exit_code::USAGE, handlers::error_chain(&e).to_string()))?;
    let b = cfg.backup.as_ref().ok_or((
        exit_code::USAGE,
        format!(
            "{} has no backup section; expected backup: {{repositories: …}}",
            config.display()
        ),
    ))?;
    let name = repo.ok_or((
        exit_code::USAGE,
        "this command reads a repository: pass --repo NAME".to_owned(),
    ))?;
    Ok((repository(b, name)?, cluster_id(&cfg)?))
}

fn identities(file: &Path) -> Result<Vec<backup::pipeline::Identity>, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        (
            exit_code::USAGE,
            format!(
                "cannot read the identity file {} ({e}); expected a file of age secret keys",
                file.display()
            ),
        )
    })?;
    let lines: Vec<&str> = text.lines().collect();
    backup::pipeline::parse_identities(&lines)
        .map_err(|e| (exit_code::USAGE, format!("{}: {e}", file.display())))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (exit_code::SOFTWARE, format!("start the async runtime: {e}")))
}

fn read_manifest(
    rt: &tokio::runtime::Runtime,
    repo: &Repository,
    cluster: &ClusterId,
    id: &str,
) -> Result<Manifest, Failure> {
    let id = BackupId::parse(id).map_err(|e| (exit_code::USAGE, e.to_string()))?;
    rt.block_on(repo.read_manifest(cluster, &id))
        .map_err(|e| (NOT_FOUND, e.to_string()))
}

fn finish(r: Result<i32, Failure>) -> i32 {
    r.unwrap_or_else(|(code, message)| {
        eprintln!("autopilot: {message}");
        code
    })
}

/// `backup verify`.
pub fn verify(
    config: &Path,
    repo: Option<&str>,
    id: &str,
    identity: Option<&Path>,
    output: Output,
) -> i32 {
    finish((|| {
        let (repo, cluster) = open(config, repo)?;
        let ids = match identity {
            Some(f) => identities(f)?,
            None => Vec::new(),
        };
        let rt = runtime()?;
        let m = read_manifest(&rt, &repo, &cluster, id)?;
        let r = rt.block_on(backup::verify::verify(&repo, &m, &ids));
        let (ok, detail) = match &r {
            Ok(v) => (
                true,
                json!({ "chunks": v.chunks, "stored_bytes": v.stored_bytes, "plain_bytes": v.plain_bytes }),
            ),
            Err(e) => (
                false,
                json!({ "error": handlers::error_chain(e).to_string() }),
            ),
        };
        match output {
            Output::Json => println!(
                "{}",
                json!({ "backup_id": id, "repository": repo.name(), "ok": ok, "detail": detail })
            ),
            Output::Text if ok => println!(
                "{id} in {}: intact ({} chunks, {} bytes stored{})",
                repo.name(),
                detail["chunks"],
                detail["stored_bytes"],
                if ids.is_empty() {
                    "; pass --identity to also check the decrypted streams".to_owned()
                } else {
                    format!(", {} bytes restored and checked", detail["plain_bytes"])
                }
            ),
            Output::Text => eprintln!(
                "autopilot: {id} in {}: NOT intact: {}",
                repo.name(),
                detail["error"].as_str().unwrap_or_default()
            ),
        }
        Ok(if ok { 0 } else { DATA_ERROR })
    })())
}

/// `backup get`.
pub fn get(
    config: &Path,
    repo: Option<&str>,
    id: &str,
    identity: &Path,
    stream: Option<&str>,
    to: &Path,
) -> i32 {
    finish((|| {
        let (repo, cluster) = open(config, repo)?;
        let ids = identities(identity)?;
        let rt = runtime()?;
        let m = read_manifest(&rt, &repo, &cluster, id)?;
        let entry = match stream {
            Some(name) => m.streams.iter().find(|s| s.name == name),
            None => m.streams.first(),
        }
        .ok_or_else(|| {
            let names: Vec<&str> = m.streams.iter().map(|s| s.name.as_str()).collect();
            (
                exit_code::USAGE,
                format!("{id} has no stream {stream:?}; expected one of {names:?}"),
            )
        })?;
        // Never over an existing file; a failed download removes what it wrote.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(|e| {
                (
                    exit_code::USAGE,
                    format!("cannot create {} ({e}); expected a new file", to.display()),
                )
            })?;
        let location = StreamLocation {
            cluster: m.cluster.clone(),
            backup_id: m.backup_id.clone(),
            stream: entry.name.clone(),
        };
        let r = rt.block_on(async {
            let mut w = tokio::fs::File::from_std(file);
            let n = backup::pipeline::fetch(&repo, &location, &entry.summary, &ids, &mut w).await?;
            tokio::io::AsyncWriteExt::flush(&mut w)
                .await
                .map_err(backup::pipeline::PipelineError::Write)?;
            Ok::<u64, backup::pipeline::PipelineError>(n)
        });
        match r {
            Ok(n) => {
                println!(
                    "{}: stream {} of {id}, {n} bytes, checked",
                    to.display(),
                    entry.name
                );
                Ok(0)
            }
            Err(e) => {
                let _ = std::fs::remove_file(to);
                Err((DATA_ERROR, format!("{id}: {}", handlers::error_chain(&e))))
            }
        }
    })())
}

/// `backup restore`.
pub fn restore(
    config: &Path,
    repo: Option<&str>,
    id: &str,
    identity: &Path,
    target: &Path,
    output: Output,
) -> i32 {
    finish((|| {
        let cfg = config::load(config)
            .map_err(|e| (exit_code::USAGE, handlers::error_chain(&e).to_string()))?;
        let (repo, cluster) = open(config, repo)?;
        let ids = identities(identity)?;
        let bid = BackupId::parse(id).map_err(|e| (exit_code::USAGE, e.to_string()))?;
        let (control, _requests) = engines::MainControl::channel();
        let engine = crate::node::build_engine(&cfg, control);
        let rt = runtime()?;
        let bar = progress_bar(output);
        let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let r = rt.block_on(async {
            let ticker = bar.clone().map(|b| {
                let p = progress.clone();
                tokio::spawn(async move {
                    loop {
                        b.set_position(p.load(std::sync::atomic::Ordering::Relaxed));
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                })
            });
            let r = crate::node::backup::restore::restore(
                &engine,
                crate::node::backup::restore::Source {
                    repo: &repo,
                    cluster: &cluster,
                    id: &bid,
                    identities: &ids,
                },
                target,
                crate::node::backup::restore::Progress {
                    on_stream: |backup: &str, stream: &str, bytes: u64| {
                        if let Some(b) = &bar {
                            b.set_length(bytes);
                            b.set_position(0);
                            b.set_message(format!("{backup} {stream}"));
                        }
                    },
                    bytes: &progress,
                },
            )
            .await;
            if let Some(t) = ticker {
                t.abort();
            }
            r
        });
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        match r {
            Ok(done) => {
                match output {
                    Output::Json => println!(
                        "{}",
                        json!({
                            "backup_id": id,
                            "repository": repo.name(),
                            "target_dir": target.display().to_string(),
                            "chain": done.chain,
                            "plain_bytes": done.bytes,
                            "seconds": done.elapsed.as_secs_f64(),
                            "position": done.position,
                        })
                    ),
                    Output::Text => println!(
                        "{}: restored {} from {} ({} backup{}: {}), {} bytes in {:.1} s{}",
                        target.display(),
                        id,
                        repo.name(),
                        done.chain.len(),
                        if done.chain.len() == 1 { "" } else { "s" },
                        done.chain.join(" + "),
                        done.bytes,
                        done.elapsed.as_secs_f64(),
                        done.position
                            .map(|p| format!("; consistent at {p}"))
                            .unwrap_or_default()
                    ),
                }
                Ok(0)
            }
            Err(e) => Err((DATA_ERROR, format!("restore {id}: {e}"))),
        }
    })())
}

/// `autopilot backup restore --time T | --lsn L | --latest`: a point-in-time recovery.
pub fn restore_to(
    config: &Path,
    repo: Option<&str>,
    base: Option<&str>,
    identity: &Path,
    target_dir: &Path,
    target: engines::backups::RecoveryTarget,
    output: Output,
) -> i32 {
    finish((|| {
        let cfg = config::load(config)
            .map_err(|e| (exit_code::USAGE, handlers::error_chain(&e).to_string()))?;
        let (repo, cluster) = open(config, repo)?;
        let ids = identities(identity)?;
        if let engines::backups::RecoveryTarget::Time(t) = &target
            && humantime::parse_rfc3339_weak(t).is_err()
        {
            return Err((
                exit_code::USAGE,
                format!(
                    "--time {t:?} is not an RFC 3339 time; expected e.g. 2026-12-04T03:20:00.5Z"
                ),
            ));
        }
        if let engines::backups::RecoveryTarget::Lsn(l) = &target
            && backup::archive::wal::parse_lsn(l).is_none()
        {
            return Err((
                exit_code::USAGE,
                format!("--lsn {l:?} is not a WAL position; expected e.g. 0/5000100"),
            ));
        }
        if let engines::backups::RecoveryTarget::Gtid(g) = &target
            && (g.contains(',') || engines::mariadb::gtid::GtidSet::parse(g).is_err())
        {
            return Err((
                exit_code::USAGE,
                format!("--gtid {g:?} is not one GTID; expected DOMAIN-SERVER-SEQ, e.g. 0-1-2143"),
            ));
        }
        let base = base
            .map(BackupId::parse)
            .transpose()
            .map_err(|e| (exit_code::USAGE, e.to_string()))?;
        let (control, _requests) = engines::MainControl::channel();
        let engine = crate::node::build_engine(&cfg, control);
        let rt = runtime()?;
        let r = rt.block_on(crate::node::backup::pitr::restore_to(
            &engine,
            crate::node::backup::pitr::PitrSource {
                repo: &repo,
                cluster: &cluster,
                identities: &ids,
                target: target.clone(),
                base,
            },
            target_dir,
        ));
        match r {
            Ok(done) => {
                match output {
                    Output::Json => println!(
                        "{}",
                        json!({
                            "base_backup": done.base,
                            "base_position": done.base_position,
                            "repository": repo.name(),
                            "target": target.to_string(),
                            "target_dir": target_dir.display().to_string(),
                            "archive_files": done.archive_files,
                            "first_segment": done.first_file,
                            "last_segment": done.last_file,
                            "position": done.position,
                            "seconds": done.elapsed.as_secs_f64(),
                        })
                    ),
                    Output::Text => println!(
                        "{}: recovered to {target} from backup {} (consistent at {}) and {} archived files ({} to {}) in {}; now at {}",
                        target_dir.display(),
                        done.base,
                        done.base_position.as_deref().unwrap_or("?"),
                        done.archive_files,
                        done.first_file.as_deref().unwrap_or("-"),
                        done.last_file.as_deref().unwrap_or("-"),
                        repo.name(),
                        done.position
                    ),
                }
                Ok(0)
            }
            Err(e) => Err((DATA_ERROR, format!("restore to {target}: {e}"))),
        }
    })())
}

/// A progress bar on a terminal (stderr), none in a pipe or with `-o json`.
fn progress_bar(output: Output) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if output == Output::Json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// `backup instructions`.
pub fn instructions(config: &Path, repo: Option<&str>, id: &str, output: Output) -> i32 {
    finish((|| {
        let (repo, cluster) = open(config, repo)?;
        let rt = runtime()?;
        let bid = BackupId::parse(id).map_err(|e| (exit_code::USAGE, e.to_string()))?;
        let chain = rt
            .block_on(crate::node::backup::restore::chain(&repo, &cluster, &bid))
            .map_err(|e| (NOT_FOUND, e))?;
        let Some(last) = chain.last() else {
            return Err((NOT_FOUND, format!("{id}: no manifest")));
        };
        let text = backup::instructions::manual(&backup::instructions::Input::from_manifest(
            last,
            &chain,
            &repo.location_hint(),
        ));
        match output {
            Output::Json => println!("{}", json!({ "backup_id": id, "instructions": text })),
            Output::Text => print!("{text}"),
        }
        Ok(0)
    })())
}
