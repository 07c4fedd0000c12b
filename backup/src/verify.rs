//! `verify`: re-read every stored object of a backup and check it against its manifest —
//! without a key, each chunk's size and SHA-256 (what a repository can prove on its own); with
//! the age identities, also every stream decrypted, decompressed and checked end to end
//! ([`crate::pipeline::fetch`] into a sink).

use futures::StreamExt;
use object_store::ObjectStoreExt as _;
use sha2::Digest as _;

use crate::manifest::Manifest;
use crate::pipeline::{Identity, PipelineError, fetch};
use crate::repo::{Repository, StreamLocation};

/// What a verification read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Chunks re-read and re-hashed.
    pub chunks: u64,
    /// Stored bytes read.
    pub stored_bytes: u64,
    /// Plain bytes checked end to end (0 without identities).
    pub plain_bytes: u64,
}

/// Re-reads every chunk of `manifest`'s streams in `repo`; with `identities`, also restores
/// each stream into nothing and checks it. The first problem found is the error.
pub async fn verify(
    repo: &Repository,
    manifest: &Manifest,
    identities: &[Identity],
) -> Result<Verified, PipelineError> {
    let mut done = Verified::default();
    for stream in &manifest.streams {
        for chunk in &stream.summary.chunks {
            let path = repo
                .object_in_backup(&manifest.cluster, &manifest.backup_id, &chunk.name)
                .map_err(PipelineError::Repo)?;
            let object = repo.describe(&path);
            let mut body = match repo.store().get(&path).await {
                Ok(r) => r.into_stream(),
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(PipelineError::Missing { object });
                }
                Err(source) => {
                    return Err(PipelineError::Object {
                        op: "read",
                        object,
                        source,
                    });
                }
            };
            let mut hasher = sha2::Sha256::default();
            let mut size = 0u64;
            while let Some(piece) = body.next().await {
                let piece = piece.map_err(|source| PipelineError::Object {
                    op: "read",
                    object: object.clone(),
                    source,
                })?;
                size += piece.len() as u64;
                hasher.update(&piece);
            }
            if size != chunk.size {
                return Err(PipelineError::Size {
                    object,
                    expected: chunk.size,
                    found: size,
                });
            }
            let found = crate::repo::hex(&hasher.finalize());
            if found != chunk.sha256 {
                return Err(PipelineError::Checksum {
                    object,
                    expected: chunk.sha256.clone(),
                    found,
                });
            }
            done.chunks += 1;
            done.stored_bytes += size;
        }
        if !identities.is_empty() {
            let location = StreamLocation {
                cluster: manifest.cluster.clone(),
                backup_id: manifest.backup_id.clone(),
                stream: stream.name.clone(),
            };
            done.plain_bytes += fetch(
                repo,
                &location,
                &stream.summary,
                identities,
                tokio::io::sink(),
            )
            .await?;
        }
    }
    Ok(done)
}
