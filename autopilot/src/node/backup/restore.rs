//! Restoring a backup (its chain: the full, then each incremental) from a repository into a
//! new data directory through the engine's tools. Used by `autopilot backup restore` and by
//! the scheduled test restore.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;

use backup::manifest::{BackupType, Manifest, Method, Status};
use backup::pipeline::{Identity, fetch};
use backup::repo::{BackupId, ClusterId, Repository, StreamLocation};
use engines::Engine;
use engines::backups::{RestoreSink, RestoreSpec, StreamPlan};

/// What a restore did.
#[derive(Clone, Debug)]
pub(crate) struct Restored {
    /// The backups applied, full first.
    pub chain: Vec<String>,
    /// Plain bytes written into the engine's tools.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// The position the data is consistent at.
    pub position: Option<String>,
}

/// The longest chain followed (a loop in corrupt manifests ends here).
const MAX_CHAIN: usize = 1000;

/// Reads `id`'s manifest and those of its parents, full first, checking that each is a
/// complete backup of `cluster` that this version can restore.
pub(crate) async fn chain(
    repo: &Repository,
    cluster: &ClusterId,
    id: &BackupId,
) -> Result<Vec<Manifest>, String> {
    let mut out = Vec::new();
    let mut next = Some(id.clone());
    while let Some(id) = next {
        if out.len() >= MAX_CHAIN {
            return Err(format!(
                "the chain of {id} is longer than {MAX_CHAIN} backups (corrupt manifests?)"
            ));
        }
        let m = repo
            .read_manifest(cluster, &id)
            .await
            .map_err(|e| e.to_string())?;
        if &m.cluster != cluster {
            return Err(format!(
                "backup {id} in {} belongs to cluster {}, not {cluster}; pass the configuration of that cluster",
                repo.name(),
                m.cluster
            ));
        }
        if m.status != Status::Complete {
            return Err(format!(
                "backup {id} is not complete (status {:?}); choose a complete one (`autopilot backup list --repo {}`)",
                m.status,
                repo.name()
            ));
        }
        if m.method == Method::Unknown || m.backup_type == BackupType::Unknown {
            return Err(format!(
                "backup {id} was written by a newer version (unknown method or type); restore it with that version"
            ));
        }
        if m.backup_type == BackupType::Incremental && m.parent_id.is_none() {
            return Err(format!(
                "incremental backup {id} names no parent: its manifest is corrupt"
            ));
        }
        next = m.parent_id.clone();
        out.push(m);
    }
    out.reverse();
    Ok(out)
}

/// Which backup to restore, from where, with which keys.
pub(crate) struct Source<'a> {
    /// The repository to read.
    pub repo: &'a Repository,
    /// The backup's cluster.
    pub cluster: &'a ClusterId,
    /// The backup (its parents are found from the manifests).
    pub id: &'a BackupId,
    /// The age identities that open it.
    pub identities: &'a [Identity],
}

/// Progress callbacks: each stream as it starts (backup id, stream, plain bytes), and the
/// plain bytes written so far into the current stream.
pub(crate) struct Progress<'a, F> {
    /// Called as each stream starts.
    pub on_stream: F,
    /// Bytes of the current stream written so far.
    pub bytes: &'a Arc<AtomicU64>,
}

/// Restores `source.id` (and its parents) into `target`, which must not exist or be empty.
/// On failure, the directory is removed again (it was empty before).
pub(crate) async fn restore<E: Engine, F: FnMut(&str, &str, u64) + Send>(
    engine: &E,
    source: Source<'_>,
    target: &Path,
    progress: Progress<'_, F>,
) -> Result<Restored, String> {
    let Source {
        repo,
        cluster,
        id,
        identities,
    } = source;
    let Progress {
        mut on_stream,
        bytes: progress,
    } = progress;
    let started = Instant::now();
    if let Ok(mut entries) = std::fs::read_dir(target)
        && entries.next().is_some()
    {
        return Err(format!(
            "{} is not empty; a restore never writes into a directory that holds anything: pass a new or empty directory",
            target.display()
        ));
    }
    let chain = chain(repo, cluster, id).await?;
    let method = chain[0].method;
    if chain.iter().any(|m| m.method != method) {
        return Err(format!(
            "the chain of {id} mixes physical and logical backups: its manifests are corrupt"
        ));
    }
    let spec = RestoreSpec {
        method,
        target_dir: target.to_path_buf(),
        chain: chain
            .iter()
            .map(|m| {
                m.streams
                    .iter()
                    .map(|s| StreamPlan {
                        name: s.name.clone(),
                        database: s.name.strip_prefix("db-").map(str::to_owned),
                    })
                    .collect()
            })
            .collect(),
    };
    let existed = target.exists();
    let result = async {
        let mut restore = engine
            .begin_restore(&spec)
            .await
            .map_err(|e| e.to_string())?;
        let mut bytes = 0;
        for (step, m) in chain.iter().enumerate() {
            for s in &m.streams {
                on_stream(m.backup_id.as_str(), &s.name, s.summary.plain_bytes);
                let RestoreSink { input, finisher } = restore
                    .sink(step, &s.name)
                    .await
                    .map_err(|e| e.to_string())?;
                let location = StreamLocation {
                    cluster: cluster.clone(),
                    backup_id: m.backup_id.clone(),
                    stream: s.name.clone(),
                };
                progress.store(0, Ordering::Relaxed);
                let input = Counting {
                    inner: input,
                    count: progress.clone(),
                };
                let fetched = fetch(repo, &location, &s.summary, identities, input).await;
                let consumed = finisher.await;
                // A broken stream explains a failing tool; a tool that stopped reading
                // explains a broken pipe.
                match (fetched, consumed) {
                    (Ok(n), Ok(())) => bytes += n,
                    (Err(e), _) => {
                        return Err(format!("backup {} stream {}: {e}", m.backup_id, s.name));
                    }
                    (Ok(_), Err(e)) => {
                        return Err(format!("backup {} stream {}: {e}", m.backup_id, s.name));
                    }
                }
            }
        }
        restore.finish().await.map_err(|e| e.to_string())?;
        Ok(bytes)
    }
    .await;
    match result {
        Ok(bytes) => Ok(Restored {
            chain: chain.iter().map(|m| m.backup_id.to_string()).collect(),
            bytes,
            elapsed: started.elapsed(),
            position: chain.last().and_then(|m| m.position.clone()),
        }),
        Err(e) => {
            if existed {
                // It was empty: leave it empty.
                if let Ok(entries) = std::fs::read_dir(target) {
                    for entry in entries.flatten() {
                        let p = entry.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(target);
            }
            Err(e)
        }
    }
}

/// Counts the plain bytes written into a restore step (progress).
struct Counting {
    inner: engines::backups::BoxWrite,
    count: Arc<AtomicU64>,
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = self.inner.as_mut().poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.count.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}
