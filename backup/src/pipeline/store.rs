//! `store`: reader → SHA-256 → zstd → age → chunks in every repository, each checked after
//! upload.
//!
//! A chunk larger than a part goes up as one multipart upload per repository ([`Multipart`]).
//! Whatever fails — a part, the completion, another repository, another stage — every
//! upload still open is aborted (each abort bounded by [`ABORT_TIMEOUT`]) before `store`
//! returns, and the error returned is the first real one, never the abort's. An abort that
//! cannot reach the server (it died) is logged; `Repository::delete_backup` aborts what is
//! left once the server is back.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::Level;
use async_compression::tokio::bufread::ZstdEncoder;
use async_compression::zstd::CParameter;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::{join_all, try_join_all};
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{
    CHANNEL_DEPTH, ChunkSummary, Digest, IO_BUF, Msg, PARTS_IN_FLIGHT, PipelineError, Recipient,
    StoreOptions, StreamSummary, first_error,
};
use crate::repo::{Repository, StreamLocation};

/// How long one abort of a multipart upload may take (its requests' retries included) before
/// the pipeline gives up on it and reports the error that caused it.
pub const ABORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Stores one stream in every repository of `repos` and returns what was stored.
///
/// The plain stream is hashed while read, compressed, encrypted to every recipient and cut
/// into `options.chunk_size` objects under `location`; each chunk's SHA-256 is computed while
/// uploading and checked afterwards in each repository (`head` for the size, a full re-read
/// for the hash, independent of ETags). Memory stays bounded (module docs).
pub async fn store<R>(
    reader: R,
    repos: &[Repository],
    location: &StreamLocation,
    recipients: &[Recipient],
    options: &StoreOptions,
) -> Result<StreamSummary, PipelineError>
where
    R: AsyncRead + Unpin + Send,
{
    if recipients.is_empty() {
        return Err(PipelineError::NoKeys("age recipients"));
    }
    if repos.is_empty() {
        return Err(PipelineError::InvalidOptions("no repositories".into()));
    }
    if options.chunk_size == 0 || options.part_size == 0 {
        return Err(PipelineError::InvalidOptions(
            "chunk and part sizes must be positive".into(),
        ));
    }
    // Check every object name can be built before reading anything.
    Repository::chunk_name(&location.stream, 0).map_err(PipelineError::Repo)?;
    for repo in repos {
        repo.backup_dir(&location.cluster, &location.backup_id)
            .map_err(PipelineError::Repo)?;
    }

    let (plain_tx, plain_rx) = mpsc::channel(CHANNEL_DEPTH);
    let (sealed_tx, sealed_rx) = mpsc::channel(CHANNEL_DEPTH);
    let recipients = recipients.to_vec();
    // age is CPU work and its API is blocking: a thread of its own, fed through channels.
    let encrypt = tokio::task::spawn_blocking(move || encrypt(plain_rx, sealed_tx, &recipients));
    let encrypt = async move { encrypt.await.unwrap_or(Err(PipelineError::Panicked)) };

    let (read, encrypted, uploaded) = tokio::join!(
        compress(reader, plain_tx, options),
        encrypt,
        upload(sealed_rx, repos, location, options)
    );
    let ((plain_bytes, plain_sha256), chunks) = match (read, encrypted, uploaded) {
        (Ok(read), Ok(()), Ok(chunks)) => (read, chunks),
        (read, encrypted, uploaded) => {
            let error = first_error([read.map(drop), encrypted, uploaded.map(drop)]).err();
            return Err(error.unwrap_or(PipelineError::Cancelled));
        }
    };
    Ok(StreamSummary {
        plain_bytes,
        plain_sha256,
        stored_bytes: chunks.iter().map(|c| c.size).sum(),
        chunks,
    })
}

/// Stage 1: read, hash, compress; returns the plain length and SHA-256.
async fn compress<R: AsyncRead + Unpin>(
    reader: R,
    tx: mpsc::Sender<Msg>,
    options: &StoreOptions,
) -> Result<(u64, String), PipelineError> {
    let hashing = Hashing {
        inner: reader,
        digest: Digest::default(),
        failed: false,
    };
    let mut params = vec![];
    if options.zstd_threads > 0 {
        params.push(CParameter::nb_workers(options.zstd_threads));
    }
    let mut zstd = ZstdEncoder::with_quality_and_params(
        BufReader::with_capacity(IO_BUF, hashing),
        Level::Precise(options.zstd_level),
        &params,
    );
    loop {
        let mut buf = BytesMut::with_capacity(IO_BUF);
        let n = match zstd.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) if zstd.get_ref().get_ref().failed => return Err(PipelineError::Read(e)),
            Err(e) => return Err(PipelineError::Compress(e)),
        };
        if n == 0 {
            break;
        }
        tx.send(Msg::Data(buf.freeze()))
            .await
            .map_err(|_| PipelineError::Cancelled)?;
    }
    tx.send(Msg::End)
        .await
        .map_err(|_| PipelineError::Cancelled)?;
    Ok(zstd.into_inner().into_inner().digest.finish())
}

/// An `AsyncRead` that hashes what it reads and remembers whether the source failed (so a
/// read error is not blamed on zstd).
struct Hashing<R> {
    inner: R,
    digest: Digest,
    failed: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &result {
            Poll::Ready(Ok(())) => this.digest.update(&buf.filled()[before..]),
            Poll::Ready(Err(_)) => this.failed = true,
            Poll::Pending => {}
        }
        result
    }
}

/// Stage 2, on a blocking thread: age-encrypt. Every error here is the downstream stage
/// having gone (age itself only fails through its writer), hence `Cancelled`.
fn encrypt(
    mut rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    recipients: &[Recipient],
) -> Result<(), PipelineError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| PipelineError::Encrypt(std::io::Error::other(e.to_string())))?;
    let sink = ChannelWriter {
        tx,
        buf: Vec::with_capacity(IO_BUF),
    };
    let mut writer = encryptor
        .wrap_output(sink)
        .map_err(|_| PipelineError::Cancelled)?;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Data(bytes) => writer
                .write_all(&bytes)
                .map_err(|_| PipelineError::Cancelled)?,
            Msg::End => {
                let mut sink = writer.finish().map_err(|_| PipelineError::Cancelled)?;
                sink.flush().map_err(|_| PipelineError::Cancelled)?;
                return sink
                    .tx
                    .blocking_send(Msg::End)
                    .map_err(|_| PipelineError::Cancelled);
            }
        }
    }
    // The reader stage stopped without an end: never finish the age stream.
    Err(PipelineError::Cancelled)
}

/// A blocking `Write` into a channel, in `IO_BUF` pieces.
struct ChannelWriter {
    tx: mpsc::Sender<Msg>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(IO_BUF - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == IO_BUF {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(IO_BUF));
        self.tx
            .blocking_send(Msg::Data(Bytes::from(full)))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// Stage 3: cut into chunks, upload each to every repository, check it. On any failure
/// (its own or another stage's) the chunk being written is aborted everywhere.
async fn upload(
    rx: mpsc::Receiver<Msg>,
    repos: &[Repository],
    location: &StreamLocation,
    options: &StoreOptions,
) -> Result<Vec<ChunkSummary>, PipelineError> {
    let mut current: Option<Chunk<'_>> = None;
    let result = upload_chunks(rx, repos, location, options, &mut current).await;
    if result.is_err()
        && let Some(chunk) = current.take()
    {
        chunk.abort().await;
    }
    result
}

/// The loop of [`upload`]; `current` is the chunk being written, for the abort.
async fn upload_chunks<'a>(
    mut rx: mpsc::Receiver<Msg>,
    repos: &'a [Repository],
    location: &StreamLocation,
    options: &StoreOptions,
    current: &mut Option<Chunk<'a>>,
) -> Result<Vec<ChunkSummary>, PipelineError> {
    let mut done = vec![];
    while let Some(msg) = rx.recv().await {
        let mut data = match msg {
            Msg::Data(data) => data,
            Msg::End => {
                if let Some(chunk) = current.take() {
                    done.push(chunk.finish().await?);
                }
                return Ok(done);
            }
        };
        while !data.is_empty() {
            let chunk = match current {
                Some(chunk) => chunk,
                None => current.insert(Chunk::new(repos, location, done.len(), options)?),
            };
            let room = usize::try_from(options.chunk_size - chunk.size).unwrap_or(usize::MAX);
            chunk.write(data.split_to(room.min(data.len()))).await?;
            if chunk.size == options.chunk_size {
                let full = current.take().expect("a chunk is being written");
                done.push(full.finish().await?);
            }
        }
    }
    // The encrypting stage stopped without an end: leave the last chunk unfinished.
    Err(PipelineError::Cancelled)
}

/// One repository's multipart upload of one chunk: at most [`PARTS_IN_FLIGHT`] parts being
/// sent at once. Unlike `object_store::WriteMultipart`, a failure leaves the decision to
/// abort with the caller and never replaces the part's error with the abort's.
struct Multipart {
    /// The upload (its id and part numbering live inside).
    upload: Box<dyn MultipartUpload>,
    /// Parts being sent.
    parts: JoinSet<object_store::Result<()>>,
}

impl Multipart {
    /// Sends one part, first waiting while [`PARTS_IN_FLIGHT`] are in flight.
    async fn put(&mut self, part: Bytes) -> object_store::Result<()> {
        while self.parts.len() >= PARTS_IN_FLIGHT {
            self.join_one().await?;
        }
        self.parts
            .spawn(self.upload.put_part(PutPayload::from(part)));
        Ok(())
    }

    /// Waits for every part, then completes the upload.
    async fn complete(&mut self) -> object_store::Result<()> {
        while !self.parts.is_empty() {
            self.join_one().await?;
        }
        self.upload.complete().await.map(drop)
    }

    async fn join_one(&mut self) -> object_store::Result<()> {
        match self.parts.join_next().await {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(object_store::Error::JoinError { source: e }),
        }
    }

    /// Stops the parts in flight and aborts the upload (bounded by [`ABORT_TIMEOUT`]); a
    /// failure is logged, as the error that led here is the one to report.
    async fn abort(mut self, object: String) {
        self.parts.shutdown().await;
        match tokio::time::timeout(ABORT_TIMEOUT, self.upload.abort()).await {
            Ok(Ok(())) => {
                tracing::debug!(%object, "aborted the multipart upload of a failed chunk");
            }
            Ok(Err(e)) => tracing::warn!(
                %object,
                cause = %e,
                "cannot abort the multipart upload of a failed chunk (deleting the backup aborts it later)"
            ),
            Err(_) => tracing::warn!(
                %object,
                "aborting the multipart upload of a failed chunk took over {ABORT_TIMEOUT:?} (deleting the backup aborts it later)"
            ),
        }
    }
}

/// One chunk being uploaded to every repository.
struct Chunk<'a> {
    /// Its name relative to the backup directory.
    name: String,
    /// Its full object name in each repository, in `repos` order.
    targets: Vec<(&'a Repository, Path)>,
    /// SHA-256 of the bytes written so far.
    hasher: sha2::Sha256,
    /// Bytes written so far.
    size: u64,
    /// Bytes not yet handed to an upload (less than a part).
    pending: BytesMut,
    /// Multipart uploads (in `targets` order), started once the chunk outgrows one part.
    multipart: Option<Vec<Multipart>>,
    /// The part size.
    part_size: usize,
}

impl<'a> Chunk<'a> {
    fn new(
        repos: &'a [Repository],
        location: &StreamLocation,
        index: usize,
        options: &StoreOptions,
    ) -> Result<Self, PipelineError> {
        let index = u32::try_from(index).map_err(|_| {
            PipelineError::InvalidOptions("more than 2^32 chunks: raise chunk_size".into())
        })?;
        let name = Repository::chunk_name(&location.stream, index).map_err(PipelineError::Repo)?;
        let targets = repos
            .iter()
            .map(|repo| {
                repo.object_in_backup(&location.cluster, &location.backup_id, &name)
                    .map(|path| (repo, path))
                    .map_err(PipelineError::Repo)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            name,
            targets,
            hasher: sha2::Sha256::default(),
            size: 0,
            pending: BytesMut::new(),
            multipart: None,
            part_size: options.part_size,
        })
    }

    async fn write(&mut self, data: Bytes) -> Result<(), PipelineError> {
        self.hasher.update(&data);
        self.size += data.len() as u64;
        self.pending.extend_from_slice(&data);
        while self.pending.len() >= self.part_size {
            let part = self.pending.split_to(self.part_size).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    /// Hands one part to every repository's multipart upload (starting them if needed),
    /// waiting while `PARTS_IN_FLIGHT` parts are still being sent.
    async fn send_part(&mut self, part: Bytes) -> Result<(), PipelineError> {
        if self.multipart.is_none() {
            let started = join_all(self.targets.iter().map(|(repo, path)| async move {
                let object = repo.describe(path);
                match repo.store().put_multipart(path).await {
                    Ok(upload) => Ok((
                        Multipart {
                            upload,
                            parts: JoinSet::new(),
                        },
                        object,
                    )),
                    Err(source) => Err(PipelineError::Object {
                        op: "start uploading",
                        object,
                        source,
                    }),
                }
            }))
            .await;
            let (opened, failed): (Vec<_>, Vec<_>) = started.into_iter().partition(Result::is_ok);
            if let Some(Err(e)) = failed.into_iter().next() {
                // Abort those that did start.
                join_all(
                    opened
                        .into_iter()
                        .flatten()
                        .map(|(u, object)| u.abort(object)),
                )
                .await;
                return Err(e);
            }
            let uploads = opened.into_iter().flatten().map(|(u, _)| u).collect();
            self.multipart = Some(uploads);
        }
        let uploads = self.multipart.as_mut().expect("started above");
        for (upload, (repo, path)) in uploads.iter_mut().zip(&self.targets) {
            upload
                .put(part.clone())
                .await
                .map_err(|source| PipelineError::Object {
                    op: "upload",
                    object: repo.describe(path),
                    source,
                })?;
        }
        Ok(())
    }

    /// Aborts every multipart upload still open (the chunk failed, or the pipeline did).
    async fn abort(mut self) {
        if let Some(uploads) = self.multipart.take() {
            join_all(
                uploads
                    .into_iter()
                    .zip(&self.targets)
                    .map(|(u, (repo, path))| u.abort(repo.describe(path))),
            )
            .await;
        }
    }

    /// Completes the uploads and checks the chunk in every repository. On a failure, the
    /// uploads not completed are aborted and the first failure is returned.
    async fn finish(mut self) -> Result<ChunkSummary, PipelineError> {
        let sha256 = crate::repo::hex(&self.hasher.clone().finalize());
        let rest = std::mem::take(&mut self.pending).freeze();
        match self.multipart.take() {
            Some(uploads) => {
                let results = join_all(uploads.into_iter().zip(&self.targets).map(
                    |(mut upload, (repo, path))| {
                        let rest = rest.clone();
                        async move {
                            let mut result = Ok(());
                            if !rest.is_empty() {
                                result = upload.put(rest).await;
                            }
                            if result.is_ok() {
                                result = upload.complete().await;
                            }
                            match result {
                                Ok(()) => Ok(()),
                                Err(source) => {
                                    let object = repo.describe(path);
                                    upload.abort(object.clone()).await;
                                    Err(PipelineError::Object {
                                        op: "finish uploading",
                                        object,
                                        source,
                                    })
                                }
                            }
                        }
                    },
                ))
                .await;
                results.into_iter().collect::<Result<Vec<()>, _>>()?;
            }
            None => {
                try_join_all(self.targets.iter().map(|(repo, path)| {
                    let payload = PutPayload::from(rest.clone());
                    async move {
                        repo.store().put(path, payload).await.map_err(|source| {
                            PipelineError::Object {
                                op: "upload",
                                object: repo.describe(path),
                                source,
                            }
                        })
                    }
                }))
                .await?;
            }
        }
        let size = self.size;
        try_join_all(
            self.targets
                .iter()
                .map(|(repo, path)| check_stored(repo, path, size, &sha256)),
        )
        .await?;
        Ok(ChunkSummary {
            name: self.name,
            size,
            sha256,
        })
    }
}

/// Checks an uploaded object: its size from `head`, then its SHA-256 by reading it back as a
/// stream (ETags are not content hashes for multipart uploads, so they prove nothing here).
pub(super) async fn check_stored(
    repo: &Repository,
    path: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), PipelineError> {
    let object = repo.describe(path);
    let meta = repo
        .store()
        .head(path)
        .await
        .map_err(|source| PipelineError::Object {
            op: "check",
            object: object.clone(),
            source,
        })?;
    if meta.size != size {
        return Err(PipelineError::Size {
            object,
            expected: size,
            found: meta.size,
        });
    }
    let read_error = |source| PipelineError::Object {
        op: "re-read",
        object: object.clone(),
        source,
    };
    let mut body = repo
        .store()
        .get(path)
        .await
        .map_err(read_error)?
        .into_stream();
    let mut hasher = sha2::Sha256::default();
    let mut found_size = 0u64;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(read_error)?;
        found_size += piece.len() as u64;
        hasher.update(&piece);
    }
    if found_size != size {
        return Err(PipelineError::Size {
            object,
            expected: size,
            found: found_size,
        });
    }
    let found = crate::repo::hex(&hasher.finalize());
    if found != sha256 {
        return Err(PipelineError::Checksum {
            object,
            expected: sha256.to_owned(),
            found,
        });
    }
    Ok(())
}
