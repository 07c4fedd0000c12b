//! The change archive (issue 18): PostgreSQL WAL segments and timeline history files, and
//! MariaDB binary logs,
//! stored one object per file under `<cluster>/archive/<kind>/<file name>.age`, each
//! compressed (zstd) and encrypted (age) like a backup's chunks. A file is at most
//! [`MAX_FILE`] (a WAL segment is 16 MiB by default), so it is sealed in memory. Integrity
//! rests on age's authentication (a flipped or cut object fails to open, naming it) and on
//! the stored size being checked after each upload.

pub mod binlog;
pub mod wal;

use std::io::{Read, Write};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::pipeline::{Identity, PipelineError, Recipient};
use crate::repo::{ClusterId, RepoError, Repository, segment};

/// The largest file the archive takes (a WAL segment is 16 MiB unless initdb chose more).
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// What an archive holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL WAL segments, `.partial` segments and timeline `.history` files.
    Wal,
    /// MariaDB binary logs, named as [`binlog::Binlog`] says.
    Binlog,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Wal => "wal",
            Kind::Binlog => "binlog",
        }
    }
}

/// One archived file, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedFile {
    /// The file's own name (`000000020000000000000005`, `00000002.history`).
    pub name: String,
    /// Stored (sealed) size.
    pub stored_bytes: u64,
}

/// Archiving or reading a file failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The repository refused or failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The file is larger than [`MAX_FILE`].
    #[error("{name} is {size} bytes; the archive takes files up to {MAX_FILE} bytes")]
    TooLarge { name: String, size: u64 },
    /// A stored object is not what was written.
    #[error("{object}: {reason}")]
    Corrupt { object: String, reason: String },
}

fn object(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
    name: &str,
) -> Result<Path, RepoError> {
    Ok(repo
        .archive_root(cluster)?
        .join(kind.dir())
        .join(format!("{}.age", segment("archived file name", name)?)))
}

/// Compresses and encrypts `plain` (CPU work: call from a blocking thread or accept the
/// cost). The sealed bytes.
pub fn seal(plain: &[u8], recipients: &[Recipient], level: i32) -> Result<Vec<u8>, PipelineError> {
    if recipients.is_empty() {
        return Err(PipelineError::NoKeys("age recipients"));
    }
    let compressed = zstd_compress(plain, level)?;
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| PipelineError::Encrypt(std::io::Error::other(e.to_string())))?;
    let mut out = Vec::with_capacity(compressed.len() + 512);
    let mut w = encryptor
        .wrap_output(&mut out)
        .map_err(PipelineError::Encrypt)?;
    w.write_all(&compressed).map_err(PipelineError::Encrypt)?;
    w.finish().map_err(PipelineError::Encrypt)?;
    Ok(out)
}

/// Decrypts and decompresses what [`seal`] made; `object` names it in errors.
pub fn open(
    sealed: &[u8],
    identities: &[Identity],
    object: &str,
) -> Result<Vec<u8>, PipelineError> {
    if identities.is_empty() {
        return Err(PipelineError::NoKeys("age identities"));
    }
    let decrypt_error = |e: String| PipelineError::Decrypt {
        object: object.to_owned(),
        source: std::io::Error::other(e),
    };
    let decryptor = age::Decryptor::new(sealed).map_err(|e| decrypt_error(e.to_string()))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => PipelineError::WrongKey {
                object: object.to_owned(),
            },
            e => decrypt_error(e.to_string()),
        })?;
    let mut compressed = Vec::new();
    reader
        .read_to_end(&mut compressed)
        .map_err(|e| decrypt_error(e.to_string()))?;
    zstd_decompress(&compressed).map_err(|e| decrypt_error(format!("zstd: {e}")))
}

fn zstd_compress(plain: &[u8], level: i32) -> Result<Vec<u8>, PipelineError> {
    zstd::bulk::compress(plain, level).map_err(PipelineError::Encrypt)
}

fn zstd_decompress(compressed: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    zstd::stream::decode_all(compressed)
}

/// Stores file `name` (its bytes `plain`) in `repo`, overwriting an object of that name (a
/// WAL file's name says what it holds: every copy is the same). Returns the stored size,
/// checked with a `head` after the upload.
pub async fn put(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
    name: &str,
    sealed: Vec<u8>,
) -> Result<u64, ArchiveError> {
    let path = object(repo, cluster, kind, name)?;
    let size = sealed.len() as u64;
    repo.store()
        .put(&path, PutPayload::from(sealed))
        .await
        .map_err(|e| RepoError::Object {
            op: "upload",
            object: repo.describe(&path),
            source: e,
        })?;
    let meta = repo
        .store()
        .head(&path)
        .await
        .map_err(|e| RepoError::Object {
            op: "check the size of",
            object: repo.describe(&path),
            source: e,
        })?;
    if meta.size != size {
        return Err(ArchiveError::Corrupt {
            object: repo.describe(&path),
            reason: format!("stored {} bytes, wrote {size}", meta.size),
        });
    }
    Ok(size)
}

/// Copies archived file `from` to `to` (the sealed bytes as they are); whether it did:
/// `false` when `from` is gone.
pub async fn copy(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
    from: &str,
    to: &str,
) -> Result<bool, ArchiveError> {
    let src = object(repo, cluster, kind, from)?;
    let dst = object(repo, cluster, kind, to)?;
    match repo.store().copy(&src, &dst).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(RepoError::Object {
            op: "copy",
            object: repo.describe(&src),
            source: e,
        }
        .into()),
    }
}

/// Renames archived file `from` to `to` (marks a binary log superseded): a copy, then the
/// old object removed; nothing when `from` is gone already (renamed by another node or an
/// earlier attempt).
pub async fn rename(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
    from: &str,
    to: &str,
) -> Result<(), ArchiveError> {
    if !copy(repo, cluster, kind, from, to).await? {
        return Ok(());
    }
    let src = object(repo, cluster, kind, from)?;
    repo.store()
        .delete(&src)
        .await
        .map_err(|e| RepoError::Object {
            op: "remove",
            object: repo.describe(&src),
            source: e,
        })?;
    Ok(())
}

/// Whether `repo` holds file `name`.
pub async fn exists(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
    name: &str,
) -> Result<bool, ArchiveError> {
    let path = object(repo, cluster, kind, name)?;
    match repo.store().head(&path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(RepoError::Object {
            op: "look for",
            object: repo.describe(&path),
            source: e,
        }
        .into()),
    }
}

/// Reads and opens file `name`.
pub async fn get(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
    name: &str,
    identities: &[Identity],
) -> Result<Vec<u8>, ArchiveError> {
    let path = object(repo, cluster, kind, name)?;
    let described = repo.describe(&path);
    let got = repo
        .store()
        .get(&path)
        .await
        .map_err(|e| RepoError::Object {
            op: "download",
            object: described.clone(),
            source: e,
        })?;
    if got.meta.size > MAX_FILE * 2 {
        return Err(ArchiveError::TooLarge {
            name: described,
            size: got.meta.size,
        });
    }
    let sealed = got.bytes().await.map_err(|e| RepoError::Object {
        op: "download",
        object: described.clone(),
        source: e,
    })?;
    let ids = identities.to_vec();
    tokio::task::spawn_blocking(move || open(&sealed, &ids, &described))
        .await
        .map_err(|_| PipelineError::Panicked)?
        .map_err(ArchiveError::from)
}

/// Every archived file of `kind`, sorted by name.
pub async fn list(
    repo: &Repository,
    cluster: &ClusterId,
    kind: Kind,
) -> Result<Vec<ArchivedFile>, ArchiveError> {
    let root = repo.archive_root(cluster)?.join(kind.dir());
    let mut out: Vec<ArchivedFile> = repo
        .store()
        .list(Some(&root))
        .try_filter_map(|meta| async move {
            Ok(meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".age"))
                .map(|name| ArchivedFile {
                    name: name.to_owned(),
                    stored_bytes: meta.size,
                }))
        })
        .try_collect()
        .await
        .map_err(|e| RepoError::Object {
            op: "list",
            object: repo.describe(&root),
            source: e,
        })?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_round_trip_and_refuse_a_flipped_byte_or_a_wrong_key() {
        let dir = tempfile::tempdir().expect("dir");
        let repo = Repository::local("local", dir.path()).expect("repo");
        let cluster = ClusterId {
            namespace: "n".into(),
            project: "p".into(),
            name: "c".into(),
        };
        let key = Identity::generate();
        let plain: Vec<u8> = (0..100_000u32)
            .flat_map(|n| (n % 251).to_le_bytes())
            .collect();
        let sealed = seal(&plain, &[key.to_public()], 3).expect("seal");
        put(
            &repo,
            &cluster,
            Kind::Wal,
            "000000010000000000000001",
            sealed,
        )
        .await
        .expect("put");
        assert!(
            exists(&repo, &cluster, Kind::Wal, "000000010000000000000001")
                .await
                .expect("head")
        );
        assert!(
            !exists(&repo, &cluster, Kind::Wal, "000000010000000000000002")
                .await
                .expect("head")
        );
        let back = get(
            &repo,
            &cluster,
            Kind::Wal,
            "000000010000000000000001",
            std::slice::from_ref(&key),
        )
        .await
        .expect("get");
        assert_eq!(back, plain);
        let listed = list(&repo, &cluster, Kind::Wal).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "000000010000000000000001");

        let wrong = Identity::generate();
        let e = get(
            &repo,
            &cluster,
            Kind::Wal,
            "000000010000000000000001",
            &[wrong],
        )
        .await
        .expect_err("a wrong key opens nothing");
        assert!(e.to_string().contains("wrong key"), "{e}");

        let file = dir
            .path()
            .join("n/p/c/archive/wal/000000010000000000000001.age");
        let mut bytes = std::fs::read(&file).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 1;
        std::fs::write(&file, bytes).expect("write");
        let e = get(
            &repo,
            &cluster,
            Kind::Wal,
            "000000010000000000000001",
            &[key],
        )
        .await
        .expect_err("a flipped byte is caught");
        assert!(e.to_string().contains("000000010000000000000001"), "{e}");
    }
}
