//! `fetch`: chunks from one repository → size and SHA-256 checks → age → zstd → SHA-256 and
//! length → writer.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use async_compression::tokio::bufread::ZstdDecoder;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

use super::{
    CHANNEL_DEPTH, Digest, IO_BUF, Identity, Msg, PipelineError, StreamSummary, first_error,
};
use crate::repo::{Repository, StreamLocation};

/// Restores one stream from `repo` into `writer` and returns its length.
///
/// Each chunk's size and SHA-256 are checked before any of it is decrypted, the age stream's
/// own authentication catches anything else, and the plain stream's length and SHA-256 are
/// compared with the summary at the end. On error, what was written so far must be discarded.
pub async fn fetch<W>(
    repo: &Repository,
    location: &StreamLocation,
    summary: &StreamSummary,
    identities: &[Identity],
    mut writer: W,
) -> Result<u64, PipelineError>
where
    W: AsyncWrite + Unpin + Send,
{
    if identities.is_empty() {
        return Err(PipelineError::NoKeys("age identities"));
    }
    let Some(first) = summary.chunks.first() else {
        return Err(PipelineError::Truncated(format!(
            "stream `{}` of backup {} lists no chunks",
            location.stream, location.backup_id
        )));
    };
    let first = repo
        .object_in_backup(&location.cluster, &location.backup_id, &first.name)
        .map_err(PipelineError::Repo)?;
    let first = repo.describe(&first);

    // One slot: with the permit taken before each download, at most two chunks are held.
    let (sealed_tx, sealed_rx) = mpsc::channel(1);
    let (plain_tx, plain_rx) = mpsc::channel(CHANNEL_DEPTH);
    let ids = identities.to_vec();
    let decrypt = tokio::task::spawn_blocking(move || decrypt(sealed_rx, plain_tx, &ids, &first));
    let decrypt = async move { decrypt.await.unwrap_or(Err(PipelineError::Panicked)) };

    let (downloaded, decrypted, written) = tokio::join!(
        download(repo, location, summary, sealed_tx),
        decrypt,
        decompress(plain_rx, summary, &mut writer)
    );
    match (downloaded, decrypted, written) {
        (Ok(()), Ok(()), Ok(n)) => Ok(n),
        (downloaded, decrypted, written) => {
            let error = first_error([downloaded, decrypted, written.map(drop)]).err();
            Err(error.unwrap_or(PipelineError::Cancelled))
        }
    }
}

/// Stage 1: download each chunk, check its size and SHA-256, pass it on whole.
async fn download(
    repo: &Repository,
    location: &StreamLocation,
    summary: &StreamSummary,
    tx: mpsc::Sender<Msg>,
) -> Result<(), PipelineError> {
    for chunk in &summary.chunks {
        let path = repo
            .object_in_backup(&location.cluster, &location.backup_id, &chunk.name)
            .map_err(PipelineError::Repo)?;
        let object = repo.describe(&path);
        // Wait for room before downloading, so memory holds at most two chunks.
        let permit = tx.reserve().await.map_err(|_| PipelineError::Cancelled)?;
        let read_error = |source| PipelineError::Object {
            op: "read",
            object: object.clone(),
            source,
        };
        let mut body = match repo.store().get(&path).await {
            Ok(result) => result.into_stream(),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(PipelineError::Missing { object });
            }
            Err(source) => return Err(read_error(source)),
        };
        let capacity = usize::try_from(chunk.size)
            .unwrap_or(0)
            .min(256 * 1024 * 1024);
        let mut data = BytesMut::with_capacity(capacity);
        let mut hasher = sha2::Sha256::default();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(read_error)?;
            if (data.len() + piece.len()) as u64 > chunk.size {
                // Never buffer more than the summary promised.
                let found = (data.len() + piece.len()) as u64;
                return Err(PipelineError::Size {
                    object,
                    expected: chunk.size,
                    found,
                });
            }
            hasher.update(&piece);
            data.extend_from_slice(&piece);
        }
        if data.len() as u64 != chunk.size {
            let found = data.len() as u64;
            return Err(PipelineError::Size {
                object,
                expected: chunk.size,
                found,
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
        permit.send(Msg::Data(data.freeze()));
    }
    tx.send(Msg::End)
        .await
        .map_err(|_| PipelineError::Cancelled)
}

/// Stage 2, on a blocking thread: age-decrypt. `first` names the stream's first object.
fn decrypt(
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    identities: &[Identity],
    first: &str,
) -> Result<(), PipelineError> {
    // Set once every listed chunk has been read: a failure then means the list stops early.
    let all_read = Rc::new(Cell::new(false));
    let input = ChannelReader {
        rx,
        current: Bytes::new(),
        ended: Rc::clone(&all_read),
    };
    let decrypt_error = |source| PipelineError::Decrypt {
        object: first.to_owned(),
        source,
    };
    let decryptor = age::Decryptor::new(input).map_err(|e| match e {
        age::DecryptError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            PipelineError::Truncated(format!("{first}: the age header ends early"))
        }
        age::DecryptError::Io(e) if is_cancel(&e) => PipelineError::Cancelled,
        e => decrypt_error(std::io::Error::other(e.to_string())),
    })?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => PipelineError::WrongKey {
                object: first.to_owned(),
            },
            e => decrypt_error(std::io::Error::other(e.to_string())),
        })?;
    loop {
        let mut buf = vec![0u8; IO_BUF];
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if is_cancel(&e) => return Err(PipelineError::Cancelled),
            // age cannot tell a missing final block from a damaged one; the chunks' SHA-256
            // were checked, so a failure at the very end is a chunk list that stops early.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof || all_read.get() => {
                return Err(PipelineError::Truncated(format!(
                    "the encrypted stream starting at {first} ends before its last block (chunks missing?)"
                )));
            }
            Err(e) => return Err(decrypt_error(e)),
        };
        if n == 0 {
            return tx
                .blocking_send(Msg::End)
                .map_err(|_| PipelineError::Cancelled);
        }
        buf.truncate(n);
        tx.blocking_send(Msg::Data(Bytes::from(buf)))
            .map_err(|_| PipelineError::Cancelled)?;
    }
}

/// The marker inside the `io::Error` a channel reader returns when its sender failed.
#[derive(Debug, thiserror::Error)]
#[error("upstream stage stopped")]
struct UpstreamStopped;

fn is_cancel(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<UpstreamStopped>())
}

/// A blocking `Read` over a channel; a channel closed without [`Msg::End`] is an error.
struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    current: Bytes,
    ended: Rc<Cell<bool>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() && !self.ended.get() {
            match self.rx.blocking_recv() {
                Some(Msg::Data(data)) => self.current = data,
                Some(Msg::End) => self.ended.set(true),
                None => return Err(std::io::Error::other(UpstreamStopped)),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Stage 3: decompress, hash, write; checks length and SHA-256 against the summary.
async fn decompress<W: AsyncWrite + Unpin>(
    rx: mpsc::Receiver<Msg>,
    summary: &StreamSummary,
    writer: &mut W,
) -> Result<u64, PipelineError> {
    let pieces = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Msg::Data(data)) => Some((Ok(data), Some(rx))),
            Some(Msg::End) => None,
            None => Some((Err(std::io::Error::other(UpstreamStopped)), None)),
        }
    });
    let mut zstd = ZstdDecoder::new(StreamReader::new(Box::pin(pieces)));
    let mut digest = Digest::default();
    let mut buf = vec![0u8; IO_BUF];
    loop {
        let n = match zstd.read(&mut buf).await {
            Ok(n) => n,
            Err(e) if is_cancel(&e) => return Err(PipelineError::Cancelled),
            Err(e) => return Err(PipelineError::Decompress(e)),
        };
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        writer
            .write_all(&buf[..n])
            .await
            .map_err(PipelineError::Write)?;
    }
    // zstd stops at the end of its frame: read on to the upstream's end (so the decrypting
    // stage can deliver its end marker) and refuse anything after the frame.
    let mut rest = zstd.into_inner();
    match rest.read(&mut buf).await {
        Ok(0) => {}
        Ok(_) => {
            let e = std::io::Error::other("data after the end of the zstd frame");
            return Err(PipelineError::Decompress(e));
        }
        Err(e) if is_cancel(&e) => return Err(PipelineError::Cancelled),
        Err(e) => return Err(PipelineError::Decompress(e)),
    }
    writer.flush().await.map_err(PipelineError::Write)?;
    let (len, sha256) = digest.finish();
    if len != summary.plain_bytes {
        return Err(PipelineError::PlainMismatch {
            what: "length",
            expected: summary.plain_bytes.to_string(),
            found: len.to_string(),
        });
    }
    if sha256 != summary.plain_sha256 {
        return Err(PipelineError::PlainMismatch {
            what: "SHA-256",
            expected: summary.plain_sha256.clone(),
            found: sha256,
        });
    }
    Ok(len)
}
