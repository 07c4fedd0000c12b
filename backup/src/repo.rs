//! Repositories: where backups are kept — a local directory or S3-compatible object storage,
//! both behind `object_store` — and the object layout every backup uses.
//!
//! # Layout
//!
//! Every object of a cluster lives under one root, so a repository can hold many clusters and
//! a new machine with only the repository and the key can find everything:
//!
//! ```text
//! <prefix>/<namespace>/<project>/<cluster>/
//!     backups/<backup id>/manifest.json                      what the backup is (manifest.rs)
//!     backups/<backup id>/data/<stream>/00000000.age         the stream's first chunk
//!     backups/<backup id>/data/<stream>/00000001.age         …cut every chunk_size bytes
//!     archive/…                                              reserved: WAL / binlog archive (issue 18)
//! ```
//!
//! - Backup ids start with their UTC start time (`20261203T153000Z-1a2b3c4d`, [`BackupId`]),
//!   so a plain listing is in time order; PITR picks "the newest backup before T" from it and
//!   then replays `archive/` from that backup's position.
//! - A stream is one tool output (`base`, `wal`, one per database for logical backups…); its
//!   chunks are zstd-compressed, age-encrypted bytes cut at fixed sizes, numbered with 8 digits
//!   so they sort by name. The manifest lists each chunk's size and SHA-256 (of the stored bytes).
//! - `manifest.json` is written last: a backup directory without one is unfinished or failed.
//!   Deleting removes the manifest first for the same reason.

pub mod id;

use std::fmt;
use std::sync::Arc;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody};
use object_store::local::LocalFileSystem;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::{SignedUrlOptions, Signer};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};

pub use id::{BackupId, InvalidBackupId, compact_utc, rfc3339};

use crate::manifest::{Manifest, ManifestError};

/// The name of a backup's manifest object inside its directory.
pub const MANIFEST: &str = "manifest.json";

/// S3: how long one HTTP request may take, sending or receiving. A part is at most
/// `part_size` (8 MiB by default), so this allows ~300 KB/s; object_store's own default.
pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// S3: how long connecting may take (a black-holed server fails here, not after the request
/// timeout).
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// S3: how often a failed request is retried (5xx, connection errors, timeouts of idempotent
/// requests; never 4xx such as a 403). object_store's default is 10 retries within 3 minutes,
/// which lets a dead server hold a backup for minutes; with these a dead server fails a
/// request after ~2 s of backoff (100 ms doubling, at most 1 s per wait) and a black-holed
/// one after at most 4 × [`S3_CONNECT_TIMEOUT`].
pub const S3_MAX_RETRIES: usize = 3;
/// S3: no retry starts later than this after a request's first attempt.
pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// Which cluster a backup belongs to: the three levels of the object layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterId {
    /// Top level, e.g. a tenant or environment; keeps unrelated fleets apart in one bucket.
    pub namespace: String,
    /// The project within the namespace.
    pub project: String,
    /// The cluster's name, as in the agent's configuration.
    pub name: String,
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.project, self.name)
    }
}

/// Where one stream of one backup goes: the part of an object name that is the same in every
/// repository (each repository adds its own prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLocation {
    /// The backup's cluster.
    pub cluster: ClusterId,
    /// The backup.
    pub backup_id: BackupId,
    /// The stream's name (`base`, `globals`, a database name…): a directory under `data/`.
    pub stream: String,
}

/// Access to a repository failed or found something it cannot accept.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A configuration value cannot be used.
    #[error("repository `{repo}`: {what}")]
    Config { repo: String, what: String },
    /// A name would not make a single, safe path segment.
    #[error(
        "`{value}` is not a valid {what}: use letters, digits, `.`, `_` and `-`, not starting with `.`"
    )]
    InvalidName { what: &'static str, value: String },
    /// Opening the store failed.
    #[error("open repository `{repo}`")]
    Open {
        repo: String,
        #[source]
        source: object_store::Error,
    },
    /// An object operation failed; `op` is a verb phrase, `object` the full object name.
    #[error("{op} {object}")]
    Object {
        op: &'static str,
        object: String,
        #[source]
        source: object_store::Error,
    },
    /// A manifest was read but cannot be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// S3-compatible object storage. Credentials are values: the caller reads them (files,
/// environment, `$CREDENTIALS_DIRECTORY`) so this crate never looks around for secrets.
#[derive(Clone)]
pub struct S3Config {
    /// The bucket; must exist.
    pub bucket: String,
    /// A prefix inside the bucket under which this repository lives ("" for the bucket root).
    pub prefix: String,
    /// The endpoint URL for non-AWS servers (`http://127.0.0.1:8333`); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region; most non-AWS servers accept any (`us-east-1`), Garage wants its own.
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted servers need.
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key; never printed (see the `Debug` impl).
    pub secret_access_key: String,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// One repository: a named object store and the prefix this repository owns in it.
#[derive(Debug, Clone)]
pub struct Repository {
    /// The name from the configuration; in messages and in records ("stored in s3-main").
    name: String,
    /// The store; shared, since `object_store` clients are cheap to share and pool connections.
    store: Arc<dyn ObjectStore>,
    /// Every object name of this repository starts with this (possibly empty) prefix.
    prefix: Path,
    /// Where it is, for people and for manual instructions: a directory path, or
    /// `s3://bucket/prefix` (empty for a store given to [`Self::new`]).
    hint: String,
    /// For S3 only: what the requests `object_store` does not offer need (listing and
    /// aborting open multipart uploads).
    s3: Option<S3Extras>,
}

/// The same S3 client as `store`, typed, and an HTTP client for presigned requests.
#[derive(Debug, Clone)]
struct S3Extras {
    /// Signs URLs and aborts multipart uploads.
    client: Arc<AmazonS3>,
    /// Sends the presigned ListMultipartUploads requests (same timeouts as the store).
    http: HttpClient,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    /// The object it would create.
    pub object: Path,
    /// The server's id of the upload.
    pub upload_id: String,
}

impl Repository {
    /// A repository over any store (tests, other backends).
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
    ) -> Result<Self, RepoError> {
        let name = name.into();
        let prefix = Path::parse(prefix).map_err(|e| RepoError::Config {
            repo: name.clone(),
            what: format!("prefix `{prefix}` is not a valid object path: {e}"),
        })?;
        Ok(Self {
            name,
            store,
            prefix,
            hint: String::new(),
            s3: None,
        })
    }

    /// A repository in a local directory (created if missing), e.g. a mounted NFS share.
    pub fn local(name: impl Into<String>, dir: &std::path::Path) -> Result<Self, RepoError> {
        let name = name.into();
        std::fs::create_dir_all(dir).map_err(|e| RepoError::Config {
            repo: name.clone(),
            what: format!("create directory {}: {e}", dir.display()),
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|source| RepoError::Open {
                repo: name.clone(),
                source,
            })?
            // A failed multipart write leaves no partial file behind.
            .with_automatic_cleanup(true);
        let mut repo = Self::new(name, Arc::new(store), "")?;
        repo.hint = dir.display().to_string();
        Ok(repo)
    }

    /// A repository in an S3-compatible bucket. Requests are bounded: see
    /// [`S3_REQUEST_TIMEOUT`], [`S3_CONNECT_TIMEOUT`], [`S3_MAX_RETRIES`] and
    /// [`S3_RETRY_TIMEOUT`].
    pub fn s3(name: impl Into<String>, config: &S3Config) -> Result<Self, RepoError> {
        let name = name.into();
        let client_options = ClientOptions::new()
            .with_timeout(S3_REQUEST_TIMEOUT)
            .with_connect_timeout(S3_CONNECT_TIMEOUT);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: S3_MAX_RETRIES,
            retry_timeout: S3_RETRY_TIMEOUT,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(client_options.clone())
            .with_retry(retry);
        let mut allow_http = false;
        if let Some(endpoint) = &config.endpoint {
            let http = endpoint.starts_with("http://");
            if !http && !endpoint.starts_with("https://") {
                return Err(RepoError::Config {
                    repo: name,
                    what: format!("endpoint `{endpoint}` must start with http:// or https://"),
                });
            }
            // Plain HTTP only when the endpoint asks for it explicitly (a loopback test server).
            builder = builder.with_endpoint(endpoint).with_allow_http(http);
            allow_http = http;
        }
        let store = Arc::new(builder.build().map_err(|source| RepoError::Open {
            repo: name.clone(),
            source,
        })?);
        let http = object_store::client::ReqwestConnector::default()
            .connect(&client_options.with_allow_http(allow_http))
            .map_err(|source| RepoError::Open {
                repo: name.clone(),
                source,
            })?;
        let mut repo = Self::new(name, store.clone(), &config.prefix)?;
        repo.hint = format!("s3://{}/{}", config.bucket, config.prefix.trim_matches('/'))
            .trim_end_matches('/')
            .to_owned();
        repo.s3 = Some(S3Extras {
            client: store,
            http,
        });
        Ok(repo)
    }

    /// Where the repository is: a directory path, or `s3://bucket/prefix`.
    pub fn location_hint(&self) -> String {
        self.hint.clone()
    }

    /// The repository's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `<prefix>/<namespace>/<project>/<cluster>`.
    pub fn cluster_root(&self, cluster: &ClusterId) -> Result<Path, RepoError> {
        Ok(self
            .prefix
            .clone()
            .join(segment("namespace", &cluster.namespace)?)
            .join(segment("project", &cluster.project)?)
            .join(segment("cluster name", &cluster.name)?))
    }

    /// `…/<cluster>/backups`.
    pub fn backups_root(&self, cluster: &ClusterId) -> Result<Path, RepoError> {
        Ok(self.cluster_root(cluster)?.join("backups"))
    }

    /// `…/<cluster>/archive`: reserved for the WAL / binlog archive (issue 18).
    pub fn archive_root(&self, cluster: &ClusterId) -> Result<Path, RepoError> {
        Ok(self.cluster_root(cluster)?.join("archive"))
    }

    /// `…/backups/<backup id>`.
    pub fn backup_dir(&self, cluster: &ClusterId, id: &BackupId) -> Result<Path, RepoError> {
        Ok(self.backups_root(cluster)?.join(id.as_str()))
    }

    /// `…/backups/<backup id>/manifest.json`.
    pub fn manifest_path(&self, cluster: &ClusterId, id: &BackupId) -> Result<Path, RepoError> {
        Ok(self.backup_dir(cluster, id)?.join(MANIFEST))
    }

    /// The name of a chunk relative to its backup's directory, as manifests record it:
    /// `data/<stream>/<8-digit index>.age`.
    pub fn chunk_name(stream: &str, index: u32) -> Result<String, RepoError> {
        Ok(format!(
            "data/{}/{index:08}.age",
            segment("stream name", stream)?
        ))
    }

    /// The full object name of something recorded relative to a backup's directory.
    pub fn object_in_backup(
        &self,
        cluster: &ClusterId,
        id: &BackupId,
        relative: &str,
    ) -> Result<Path, RepoError> {
        let mut path = self.backup_dir(cluster, id)?;
        for part in relative.split('/') {
            path = path.join(segment("object name", part)?);
        }
        Ok(path)
    }

    /// The ids of a cluster's backups (every backup with at least one object under
    /// `backups/`, finished or not), in time order. Names that are not backup ids are
    /// skipped. Listed object by object, not by "directory": object stores disagree on
    /// whether a prefix whose objects were all deleted still shows (SeaweedFS keeps it).
    pub async fn list_backups(&self, cluster: &ClusterId) -> Result<Vec<BackupId>, RepoError> {
        let root = self.backups_root(cluster)?;
        let depth = root.parts().count();
        let mut objects = self.store.list(Some(&root));
        let mut ids = std::collections::BTreeSet::new();
        while let Some(meta) = objects.next().await {
            let meta = meta.map_err(|source| RepoError::Object {
                op: "list",
                object: self.describe(&root),
                source,
            })?;
            if let Some(id) = meta
                .location
                .parts()
                .nth(depth)
                .and_then(|p| BackupId::parse(p.as_ref()).ok())
            {
                ids.insert(id);
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Writes (or replaces) a backup's manifest.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<(), RepoError> {
        let path = self.manifest_path(&manifest.cluster, &manifest.backup_id)?;
        let json = manifest.to_json();
        self.store
            .put(&path, PutPayload::from(json))
            .await
            .map_err(|source| RepoError::Object {
                op: "write",
                object: self.describe(&path),
                source,
            })?;
        Ok(())
    }

    /// Reads and checks a backup's manifest.
    pub async fn read_manifest(
        &self,
        cluster: &ClusterId,
        id: &BackupId,
    ) -> Result<Manifest, RepoError> {
        let path = self.manifest_path(cluster, id)?;
        let object = self.describe(&path);
        let bytes = async { self.store.get(&path).await?.bytes().await }
            .await
            .map_err(|source| RepoError::Object {
                op: "read",
                object: object.clone(),
                source,
            })?;
        Ok(Manifest::from_json(&bytes, &object)?)
    }

    /// Deletes every object of a backup, the manifest first (so a half-deleted backup never
    /// looks complete), then aborts the multipart uploads still open under it (S3: a store
    /// that failed while its server was down could not abort them). Returns how many objects
    /// were removed (aborted uploads are not counted).
    pub async fn delete_backup(
        &self,
        cluster: &ClusterId,
        id: &BackupId,
    ) -> Result<usize, RepoError> {
        let manifest = self.manifest_path(cluster, id)?;
        let mut removed = 0;
        match self.store.delete(&manifest).await {
            Ok(()) => removed += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => {
                return Err(RepoError::Object {
                    op: "delete",
                    object: self.describe(&manifest),
                    source,
                });
            }
        }
        let dir = self.backup_dir(cluster, id)?;
        let locations = self
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(RepoError::Object {
                        op: "delete objects under",
                        object: self.describe(&dir),
                        source,
                    });
                }
            }
        }
        drop(deleted);
        for upload in self.open_uploads(&dir).await? {
            self.abort_upload(&upload).await?;
        }
        Ok(removed)
    }

    /// The multipart uploads open under `dir` (S3 only: a local directory cleans up its own
    /// on failure, so this is empty). `object_store` does not list uploads, so this sends a
    /// presigned ListMultipartUploads request, page by page.
    pub async fn open_uploads(&self, dir: &Path) -> Result<Vec<OpenUpload>, RepoError> {
        let Some(s3) = &self.s3 else {
            return Ok(Vec::new());
        };
        let fail = |what: String| RepoError::Object {
            op: "list the multipart uploads under",
            object: self.describe(dir),
            source: object_store::Error::Generic {
                store: "S3",
                source: what.into(),
            },
        };
        let prefix = format!("{dir}/");
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        // At most 1000 uploads a page; 100 pages is far more than a backup ever leaves.
        for _ in 0..100 {
            let mut query = vec![
                ("uploads".to_owned(), String::new()),
                ("prefix".to_owned(), prefix.clone()),
            ];
            if let Some((key, id)) = &markers {
                query.push(("key-marker".to_owned(), key.clone()));
                query.push(("upload-id-marker".to_owned(), id.clone()));
            }
            let options = SignedUrlOptions::new().with_query(query);
            let url = s3
                .client
                .signed_url_opts(
                    Default::default(), // GET
                    &Path::default(),   // the bucket itself
                    Duration::from_secs(300),
                    &options,
                )
                .await
                .map_err(|source| RepoError::Object {
                    op: "sign the multipart upload listing of",
                    object: self.describe(dir),
                    source,
                })?;
            let mut request = HttpRequest::new(HttpRequestBody::empty());
            *request.uri_mut() = url
                .as_str()
                .parse()
                .map_err(|e| fail(format!("signed URL: {e}")))?;
            let response = s3
                .http
                .execute(request)
                .await
                .map_err(|e| fail(format!("request failed: {e}")))?;
            let status = response.status();
            let body = response
                .into_body()
                .bytes()
                .await
                .map_err(|e| fail(format!("read the response: {e}")))?;
            let body = String::from_utf8_lossy(&body);
            if !status.is_success() {
                return Err(fail(format!(
                    "ListMultipartUploads answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                )));
            }
            let page = parse_uploads(&body);
            found.extend(page.uploads.into_iter().filter_map(|(key, upload_id)| {
                Path::parse(&key)
                    .ok()
                    .map(|object| OpenUpload { object, upload_id })
            }));
            match page.next {
                Some(next) => markers = Some(next),
                None => break,
            }
        }
        Ok(found)
    }

    /// Aborts one open multipart upload (S3; a no-op elsewhere).
    pub async fn abort_upload(&self, upload: &OpenUpload) -> Result<(), RepoError> {
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        match s3
            .client
            .abort_multipart(&upload.object, &upload.upload_id)
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(RepoError::Object {
                op: "abort the multipart upload of",
                object: self.describe(&upload.object),
                source,
            }),
        }
    }

    /// `repo-name:full/object/name`, the form every message uses for an object.
    pub fn describe(&self, path: &Path) -> String {
        format!("{}:{path}", self.name)
    }
}

/// Checks that `value` is one safe path segment (no `/`, no `..`, nothing a shell or URL
/// would mangle), so names from configuration can never escape their directory.
pub fn segment<'a>(what: &'static str, value: &'a str) -> Result<&'a str, RepoError> {
    let ok = !value.is_empty()
        && !value.starts_with('.')
        && value.len() <= 128
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(value)
    } else {
        Err(RepoError::InvalidName {
            what,
            value: value.to_owned(),
        })
    }
}

/// One page of a ListMultipartUploads answer.
#[derive(Debug, Default, PartialEq)]
struct UploadsPage {
    /// (key, upload id) of each open upload.
    uploads: Vec<(String, String)>,
    /// The key and upload-id markers of the next page, when the answer is truncated.
    next: Option<(String, String)>,
}

/// Reads a ListMultipartUploads answer (S3 XML; only the fields needed, so no XML parser).
fn parse_uploads(xml: &str) -> UploadsPage {
    fn field(xml: &str, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let start = xml.find(&open)? + open.len();
        let end = xml[start..].find(&format!("</{name}>"))? + start;
        Some(unescape_xml(&xml[start..end]))
    }
    let mut page = UploadsPage::default();
    for upload in xml.split("<Upload>").skip(1) {
        let upload = upload.split("</Upload>").next().unwrap_or_default();
        if let (Some(key), Some(id)) = (field(upload, "Key"), field(upload, "UploadId")) {
            page.uploads.push((key, id));
        }
    }
    if field(xml, "IsTruncated").as_deref() == Some("true")
        && let (Some(key), Some(id)) = (
            field(xml, "NextKeyMarker"),
            field(xml, "NextUploadIdMarker"),
        )
    {
        page.next = Some((key, id));
    }
    page
}

/// The five predefined XML entities (keys and ids hold nothing else escaped).
fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Lowercase hex of `bytes` (sha2 0.11's output has no `{:x}`).
pub fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String cannot fail");
    }
    s
}

#[cfg(test)]
mod tests;
