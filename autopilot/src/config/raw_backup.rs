//! `backup:` as written (issue 17). See `validate_backup.rs` for the rules and the model.

use serde::Deserialize;
use serde::de;

use super::raw::{RawDuration, RawHandler};

/// `backup:`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawBackup {
    /// The local catalog file; default `<node.state_dir>/backup-catalog.db`.
    pub catalog: Option<String>,
    /// Where backups are stored; at least one.
    pub repositories: Vec<RawRepository>,
    /// Who can read them.
    pub encryption: Option<RawEncryption>,
    /// zstd settings.
    pub compression: Option<RawCompression>,
    /// Scheduled backups.
    pub jobs: Vec<RawBackupJob>,
    /// Scheduled verification and test restores.
    pub verification: Option<RawVerification>,
    /// An age private key file (`AGE-SECRET-KEY-1…`) that opens the backups: for test
    /// restores, `engine.seed` and `cluster.bootstrap.from_backup`.
    pub identity: Option<RawSecretRef>,
    /// Continuous archiving of the change stream (WAL) for point-in-time recovery.
    pub archive: Option<RawArchive>,
}

/// `backup.archive`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawArchive {
    /// Repositories the archive goes to; default every repository.
    pub destinations: Option<Vec<String>>,
    /// The longest a change waits before it is archived; default 60s.
    pub interval: Option<RawDuration>,
    /// The local spool; default `<node.state_dir>/archive-spool`.
    pub spool: Option<String>,
    /// The most the spool may hold, MiB; default 1024.
    pub spool_limit_mb: Option<u64>,
}

/// `backup.verification`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawVerification {
    /// Cron, as a job's; required.
    pub schedule: Option<String>,
    /// IANA time zone of the schedule; default `UTC`.
    pub time_zone: Option<String>,
    /// Moved to `backup.identity`: accepted only to say so.
    pub identity: Option<de::IgnoredAny>,
    /// `replica` (default), `primary` or `any`.
    pub run_on: Option<String>,
    /// Where scratch restores go; default `<node.state_dir>/backup-scratch`.
    pub scratch_dir: Option<String>,
}

/// One entry of `backup.repositories`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRepository {
    /// Unique name, used by jobs' `destinations`.
    pub name: Option<String>,
    /// A local directory (or a mounted file system).
    pub path: Option<String>,
    /// S3-compatible object storage.
    pub s3: Option<RawS3>,
}

/// `backup.repositories[].s3`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawS3 {
    /// Bucket; required.
    pub bucket: Option<String>,
    /// Key prefix inside the bucket.
    pub prefix: Option<String>,
    /// `https://…` (or `http://` for a server on this host); default AWS.
    pub endpoint: Option<String>,
    /// Default `us-east-1`.
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as most non-AWS servers want.
    pub path_style: Option<bool>,
    /// The access key id.
    pub access_key_id: Option<RawSecretRef>,
    /// The secret access key.
    pub secret_access_key: Option<RawSecretRef>,
}

/// Where a secret comes from: exactly one of the three.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawSecretRef {
    /// A file holding it.
    pub file: Option<String>,
    /// An environment variable holding it.
    pub env: Option<String>,
    /// A systemd credential: the file `$CREDENTIALS_DIRECTORY/<name>`.
    pub credential: Option<String>,
}

/// `backup.encryption`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawEncryption {
    /// age X25519 public keys (`age1…`).
    pub recipients: Vec<String>,
    /// A file of public keys, one per line (`#` comments allowed), as `age -R` reads.
    pub recipients_file: Option<String>,
}

/// `backup.compression`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawCompression {
    /// zstd level 1–19; default 3.
    pub level: Option<i64>,
    /// zstd worker threads; default 2.
    pub threads: Option<u32>,
}

/// One entry of `backup.jobs`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawBackupJob {
    /// Unique name.
    pub name: Option<String>,
    /// For people.
    pub description: Option<String>,
    /// Cron, 5 fields (or 6 with seconds); required.
    pub schedule: Option<String>,
    /// IANA time zone of the schedule; default `UTC`.
    pub time_zone: Option<String>,
    /// How long backups are kept; required.
    pub retention: Option<RawRetention>,
    /// Databases to back up; absent means all.
    pub databases: Option<Vec<String>>,
    /// Repository names; default all.
    pub destinations: Option<Vec<String>>,
    /// `physical` (default) or `logical`.
    pub method: Option<String>,
    /// `full` (default) or `incremental`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `replica` (default), `primary` or `any`.
    pub run_on: Option<String>,
    /// With `run_on: replica`: run on the primary when no replica is healthy; default true.
    pub fallback_to_primary: Option<bool>,
    /// `type: incremental`: a new full after this many backups in a chain; default 7.
    pub full_every: Option<u32>,
    /// The tool's path and extra parameters.
    pub tool: Option<RawTool>,
    /// Run before the backup (a handler, as preStart).
    pub pre_backup: Option<RawHandler>,
    /// Run after the backup, whatever its outcome.
    pub post_backup: Option<RawHandler>,
    /// Webhooks told of the outcome.
    pub notify: Vec<RawNotify>,
}

/// `backup.jobs[].retention`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRetention {
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep every backup younger than this.
    pub keep_within: Option<RawDuration>,
}

/// `backup.jobs[].tool`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawTool {
    /// The program; default the engine's tool from its bin directory.
    pub path: Option<String>,
    /// Extra parameters, appended.
    pub args: Vec<String>,
}

/// One entry of `backup.jobs[].notify`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawNotify {
    /// `http(s)://…`; required.
    pub url: Option<String>,
    /// `success`, `failure`; default both.
    pub on: Option<Vec<String>>,
    /// The key of the `Autopilot-Signature` HMAC header.
    pub secret: Option<RawSecretRef>,
}
