//! The streaming pipeline: a database tool's output to repositories ([`store`]) and back
//! ([`fetch`]), with every check, in bounded memory whatever the size of the backup.
//!
//! ```text
//! store:  reader ─▶ SHA-256 ─▶ zstd ─▶│ age (blocking thread) │─▶ cut into chunks ─▶ every repository
//!                  (plain)   (async)  │                       │   SHA-256 of the stored bytes,
//!                                                                  then head + re-read to check
//! fetch:  chunk k ─▶ size + SHA-256 ─▶│ age decrypt (blocking) │─▶ zstd ─▶ SHA-256 + length ─▶ writer
//! ```
//!
//! Stages are joined by bounded channels of [`IO_BUF`]-sized buffers, so nothing ever holds
//! the whole stream. What each direction holds at most:
//! - `store`: two channels of [`CHANNEL_DEPTH`] × 64 KiB, zstd's window and worker buffers
//!   (a few MiB per worker at the default levels), and per chunk the part being filled plus
//!   at most [`PARTS_IN_FLIGHT`] parts per repository being uploaded (`part_size`, 8 MiB by
//!   default; parts are shared between repositories, not copied). The check after upload
//!   re-reads as a stream.
//! - `fetch`: two stored chunks (one being decrypted, one downloaded and checked), because a
//!   chunk's SHA-256 is checked *before* any of it is decrypted — so `chunk_size` (64 MiB by
//!   default) bounds restore memory; plus the channels.
//!
//! A stage that fails drops its channel ends, the others stop with an internal "cancelled",
//! and the error reported is the first real one in stream order: the cause, not an echo.

mod fetch;
mod store;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use fetch::fetch;
pub use store::store;

use crate::repo::RepoError;

/// Size of the buffers passed between stages.
pub const IO_BUF: usize = 64 * 1024;
/// How many buffers each channel between stages holds.
pub const CHANNEL_DEPTH: usize = 4;
/// Multipart parts being uploaded at once per repository.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The default chunk size: large enough that object counts stay small, small enough that a
/// restore's memory (two chunks) and a retried upload stay cheap.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// The default multipart part size (S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// An age X25519 public key (`age1…`), what nodes hold.
pub type Recipient = age::x25519::Recipient;
/// An age X25519 private key (`AGE-SECRET-KEY-1…`), needed only to restore.
pub type Identity = age::x25519::Identity;

/// What one stored stream is: recorded in the manifest and the catalog, and all `fetch` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSummary {
    /// Length of the plain (tool output) stream.
    pub plain_bytes: u64,
    /// SHA-256 of the plain stream, lowercase hex; checked at the end of a restore.
    pub plain_sha256: String,
    /// Total size of the stored (compressed, encrypted) chunks.
    pub stored_bytes: u64,
    /// The chunks, in order.
    pub chunks: Vec<ChunkSummary>,
}

/// One stored chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSummary {
    /// Its object name relative to the backup's directory (`data/base/00000003.age`), so the
    /// same summary works in every repository whatever its prefix.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the stored (encrypted) bytes, lowercase hex: checkable without the key.
    pub sha256: String,
}

/// How to store a stream.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// zstd level (1–19 useful; 3 is zstd's default).
    pub zstd_level: i32,
    /// zstd worker threads; 0 compresses on the calling task's thread.
    pub zstd_threads: u32,
    /// Stored bytes per chunk object.
    pub chunk_size: u64,
    /// Multipart part size; a chunk smaller than this is written with one `put`.
    pub part_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            zstd_threads: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            part_size: DEFAULT_PART_SIZE,
        }
    }
}

/// Storing or fetching a stream failed. Object names are `repository:full/object/name`.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A recipient string is not an age X25519 public key.
    #[error("`{value}` is not an age X25519 recipient (age1…): {reason}")]
    InvalidRecipient { value: String, reason: &'static str },
    /// An identity is not an age X25519 private key (the key itself is never echoed).
    #[error("identity {index} is not an age X25519 identity (AGE-SECRET-KEY-1…): {reason}")]
    InvalidIdentity { index: usize, reason: &'static str },
    /// Nothing to encrypt to, or nothing to decrypt with.
    #[error("no {0} given")]
    NoKeys(&'static str),
    /// Options that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An object name could not be built.
    #[error("object name")]
    Repo(#[source] RepoError),
    /// Reading the stream to back up failed.
    #[error("read the stream to back up")]
    Read(#[source] std::io::Error),
    /// zstd failed.
    #[error("compress")]
    Compress(#[source] std::io::Error),
    /// age failed while encrypting.
    #[error("encrypt")]
    Encrypt(#[source] std::io::Error),
    /// An object operation failed.
    #[error("{op} {object}")]
    Object {
        op: &'static str,
        object: String,
        #[source]
        source: object_store::Error,
    },
    /// A chunk listed in the summary is not in the repository.
    #[error("{object}: missing")]
    Missing { object: String },
    /// A stored object has the wrong size.
    #[error("{object}: {expected} bytes expected, found {found}")]
    Size {
        object: String,
        expected: u64,
        found: u64,
    },
    /// A stored object has the wrong content.
    #[error("{object}: SHA-256 {expected} expected, found {found}")]
    Checksum {
        object: String,
        expected: String,
        found: String,
    },
    /// None of the identities opens the stream.
    #[error("wrong key: none of the given identities opens {object}")]
    WrongKey { object: String },
    /// The encrypted stream cannot be read (not age, corrupt header, failed authentication).
    #[error("decrypt the stream starting at {object}")]
    Decrypt {
        object: String,
        #[source]
        source: std::io::Error,
    },
    /// The stream ends early.
    #[error("truncated: {0}")]
    Truncated(String),
    /// zstd failed while decompressing.
    #[error("decompress")]
    Decompress(#[source] std::io::Error),
    /// Writing the restored stream failed.
    #[error("write the restored stream")]
    Write(#[source] std::io::Error),
    /// The restored plain stream is not the one that was stored.
    #[error("restored stream: {what} {expected} expected, found {found}")]
    PlainMismatch {
        what: &'static str,
        expected: String,
        found: String,
    },
    /// A pipeline thread panicked.
    #[error("pipeline thread panicked")]
    Panicked,
    /// Another stage failed first; never returned when that stage's error is known.
    #[error("pipeline stopped by another stage")]
    Cancelled,
}

/// Parses `age1…` public keys.
pub fn parse_recipients<S: AsRef<str>>(values: &[S]) -> Result<Vec<Recipient>, PipelineError> {
    values
        .iter()
        .map(|v| {
            let value = v.as_ref().trim();
            value
                .parse::<Recipient>()
                .map_err(|reason| PipelineError::InvalidRecipient {
                    value: value.to_owned(),
                    reason,
                })
        })
        .collect()
}

/// Parses `AGE-SECRET-KEY-1…` private keys; blank lines and `#` comments (as in an age
/// identity file) are skipped, so a key file's text can be passed line by line.
pub fn parse_identities<S: AsRef<str>>(values: &[S]) -> Result<Vec<Identity>, PipelineError> {
    values
        .iter()
        .map(|v| v.as_ref().trim())
        .enumerate()
        .filter(|(_, v)| !v.is_empty() && !v.starts_with('#'))
        .map(|(index, value)| {
            value
                .parse::<Identity>()
                .map_err(|reason| PipelineError::InvalidIdentity { index, reason })
        })
        .collect()
}

/// A message between stages: the end is explicit, so a channel closed without [`Msg::End`]
/// means "the sender failed" and never passes for a complete (shorter) stream.
#[derive(Debug)]
enum Msg {
    Data(bytes::Bytes),
    End,
}

/// The first real error of the stages, in stream order (see the module docs).
fn first_error<const N: usize>(
    results: [Result<(), PipelineError>; N],
) -> Result<(), PipelineError> {
    let mut cancelled = false;
    for result in results {
        match result {
            Ok(()) => {}
            Err(PipelineError::Cancelled) => cancelled = true,
            Err(e) => return Err(e),
        }
    }
    if cancelled {
        Err(PipelineError::Cancelled)
    } else {
        Ok(())
    }
}

/// SHA-256 and length of what passes through, for the plain stream on both sides.
#[derive(Default)]
struct Digest {
    hasher: sha2::Sha256,
    len: u64,
}

impl Digest {
    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest as _;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    fn finish(self) -> (u64, String) {
        use sha2::Digest as _;
        (self.len, crate::repo::hex(&self.hasher.finalize()))
    }
}
