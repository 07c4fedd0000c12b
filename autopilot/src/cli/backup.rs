//! `autopilot backup list | show`: what this node's catalog records, or what a repository
//! holds (`--repo NAME`, read from its manifests: a repository describes itself, so this
//! works on a machine that never took a backup). Table output by default, `-o json` for
//! scripts. Secrets (S3 keys) come from the configuration, as the agent reads them.

use std::path::Path;

use backup::catalog::{BackupRecord, Catalog};
use backup::manifest::Manifest;
use backup::repo::{BackupId, ClusterId, Repository};
use serde_json::json;

use super::Output;
use crate::config::{self, BackupConfig, Config, RepositoryLocation};
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
            Ok(
                json!({ "source": "catalog", "backups": list.iter().map(record).collect::<Vec<_>>() }),
            )
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
    let repo = match &r.location {
        RepositoryLocation::Path(p) => Repository::local(&r.name, p),
        RepositoryLocation::S3(s) => Repository::s3(
            &r.name,
            &backup::repo::S3Config {
                bucket: s.bucket.clone(),
                prefix: s.prefix.clone(),
                endpoint: s.endpoint.clone(),
                region: s.region.clone(),
                path_style: s.path_style,
                access_key_id: s.access_key_id.expose().to_owned(),
                secret_access_key: s.secret_access_key.expose().to_owned(),
            },
        ),
    };
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
            out
        }
    }
}
