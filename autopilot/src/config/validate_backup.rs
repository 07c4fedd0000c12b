//! `backup:` (issue 17): repositories, encryption, compression and scheduled jobs, validated
//! into [`BackupConfig`]. Secrets (S3 keys, webhook keys, `identity`) are read now, from a file, an
//! environment variable or a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`), and shown
//! only by where they come from.

use std::path::PathBuf;
use std::time::Duration;

use cluster::secret::Secret;

use super::locate::{FieldPath, Target};
use super::model::HandlerConfig;
use super::raw_backup::{
    RawArchive, RawBackup, RawBackupJob, RawNotify, RawRepository, RawRetention, RawS3,
    RawSecretRef, RawVerification,
};
use super::validate::{Validator, root};
use super::validate_handlers::EngineKind;
use super::values;

/// The validated `backup:` section.
#[derive(Clone, Debug)]
pub struct BackupConfig {
    /// The local catalog (SQLite) file.
    pub catalog: PathBuf,
    /// Where backups go, in the order written.
    pub repositories: Vec<RepositoryConfig>,
    /// age X25519 public keys every backup is encrypted to (at least one).
    pub recipients: Vec<String>,
    /// zstd level (1–19).
    pub compression_level: i32,
    /// zstd worker threads.
    pub compression_threads: u32,
    /// Scheduled backups.
    pub jobs: Vec<BackupJobConfig>,
    /// Scheduled verification and test restores.
    pub verification: Option<VerificationConfig>,
    /// `backup.identity`: the age identity (secret key) this node opens backups with, for
    /// test restores, seeding (`engine.seed`) and `cluster.bootstrap.from_backup`.
    pub identity: Option<Secret>,
    /// `backup.archive`: continuous archiving of the change stream.
    pub archive: Option<ArchiveConfig>,
}

/// `backup.archive`: every node spools the change stream (PostgreSQL: each WAL segment, as
/// `archive_command`); the node holding the archive lock uploads its spool to the
/// repositories, the others keep their copies until the repository has them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// Repository names, in the order written.
    pub destinations: Vec<String>,
    /// The longest a committed change waits before it is archived (PostgreSQL
    /// `archive_timeout`).
    pub interval: Duration,
    /// The local spool directory.
    pub spool: PathBuf,
    /// The most the spool may hold, MiB; past it new files are dropped and a gap recorded.
    pub spool_limit_mb: u64,
}

/// `backup.archive.interval` by default.
pub const DEFAULT_ARCHIVE_INTERVAL: Duration = Duration::from_secs(60);
/// `backup.archive.spool_limit_mb` by default.
pub const DEFAULT_SPOOL_LIMIT_MB: u64 = 1024;

/// `backup.verification`: re-read and re-hash the newest backup on a schedule, and with a
/// key also restore it into a scratch server and run the engine's checks.
#[derive(Clone, Debug)]
pub struct VerificationConfig {
    /// Cron.
    pub schedule: String,
    /// IANA time zone of the schedule.
    pub time_zone: String,
    /// Where it runs.
    pub run_on: RunOn,
    /// Where scratch restores go.
    pub scratch_dir: PathBuf,
}

/// One repository.
#[derive(Clone, Debug)]
pub struct RepositoryConfig {
    /// Unique name.
    pub name: String,
    /// Where.
    pub location: RepositoryLocation,
}

/// A directory or a bucket.
#[derive(Clone, Debug)]
pub enum RepositoryLocation {
    /// A local directory (absolute).
    Path(PathBuf),
    /// S3-compatible object storage.
    S3(S3Config),
}

/// `backup.repositories[].s3`
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: String,
    /// Endpoint URL; `None` for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Path-style requests.
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_access_key: Secret,
}

/// Where a job runs.
pub use backup::placement::RunOn;

/// `jobs[].full_every` by default: a full and up to six incrementals.
pub const DEFAULT_FULL_EVERY: u32 = 7;

impl RepositoryConfig {
    /// The repository this configures (the S3 client is built, nothing is contacted).
    pub fn open(&self) -> Result<backup::repo::Repository, backup::repo::RepoError> {
        use backup::repo::Repository;
        match &self.location {
            RepositoryLocation::Path(p) => Repository::local(&self.name, p),
            RepositoryLocation::S3(s) => Repository::s3(
                &self.name,
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
        }
    }
}

/// Physical or logical.
pub use backup::catalog::{Kind as BackupKind, Method as BackupMethod};

/// One scheduled backup job.
#[derive(Clone, Debug)]
pub struct BackupJobConfig {
    /// Unique name.
    pub name: String,
    /// For people.
    pub description: Option<String>,
    /// The cron expression as written.
    pub schedule: String,
    /// IANA time zone of the schedule.
    pub time_zone: String,
    /// Keep the newest N.
    pub keep_last: Option<u32>,
    /// Keep every backup younger than this.
    pub keep_within: Option<Duration>,
    /// Databases; empty means all.
    pub databases: Vec<String>,
    /// Repository names (all when not written).
    pub destinations: Vec<String>,
    /// Physical or logical.
    pub method: BackupMethod,
    /// Full or incremental.
    pub kind: BackupKind,
    /// Where it runs.
    pub run_on: RunOn,
    /// With `run_on: replica`, the primary when no replica is healthy.
    pub fallback_to_primary: bool,
    /// `type: incremental`: a chain (the full and its incrementals) holds at most this many
    /// backups; the next one is a full.
    pub full_every: u32,
    /// The tool's path; `None`: the engine's own.
    pub tool: Option<PathBuf>,
    /// Extra parameters for the tool.
    pub tool_args: Vec<String>,
    /// Before the backup.
    pub pre_backup: Option<HandlerConfig>,
    /// After the backup.
    pub post_backup: Option<HandlerConfig>,
    /// Webhooks told of the outcome.
    pub notify: Vec<NotifyConfig>,
}

/// A webhook told of a job's outcome.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// `http(s)://…`.
    pub url: String,
    /// On success.
    pub on_success: bool,
    /// On failure.
    pub on_failure: bool,
    /// The `Autopilot-Signature` HMAC key.
    pub secret: Option<Secret>,
}

impl Validator<'_> {
    /// `backup:`; `state_dir` for the default catalog, `engine` for what the methods allow.
    pub(super) fn backup(
        &mut self,
        raw: RawBackup,
        state_dir: &std::path::Path,
        engine: EngineKind,
    ) -> BackupConfig {
        let at = root("backup");
        let RawBackup {
            catalog,
            repositories,
            encryption,
            compression,
            jobs,
            verification,
            identity,
            archive,
        } = raw;
        if !matches!(engine, EngineKind::Mariadb | EngineKind::Postgres) {
            self.problem(
                &at,
                Target::Key,
                "is only for engine.kind mariadb or postgres; expected no backup section with this engine",
            );
        }
        let catalog = match catalog {
            Some(c) if c.is_empty() => {
                self.problem(
                    &at.key("catalog"),
                    Target::Value,
                    "is empty; expected a file path",
                );
                state_dir.join("backup-catalog.db")
            }
            Some(c) => self.resolve(&c),
            None => state_dir.join("backup-catalog.db"),
        };
        let mut repos: Vec<RepositoryConfig> = Vec::new();
        if repositories.is_empty() {
            self.problem(
                &at,
                Target::Key,
                "has no repositories; expected repositories: [{name: local, path: /var/backups/autopilot}]",
            );
        }
        for (i, r) in repositories.into_iter().enumerate() {
            let field = at.key("repositories").index(i);
            if let Some(repo) = self.repository(&field, r) {
                if repos.iter().any(|x| x.name == repo.name) {
                    self.problem(
                        &field.key("name"),
                        Target::Value,
                        format!(
                            "{:?} is used twice; expected unique repository names",
                            repo.name
                        ),
                    );
                } else {
                    repos.push(repo);
                }
            }
        }
        let recipients = self.recipients(&at.key("encryption"), encryption);
        let (level, threads) = match compression {
            None => (3, 2),
            Some(c) => {
                let level = match c.level {
                    None => 3,
                    Some(l @ 1..=19) => i32::try_from(l).unwrap_or(3),
                    Some(l) => {
                        self.problem(
                            &at.key("compression").key("level"),
                            Target::Value,
                            format!("{l} is out of range; expected a zstd level from 1 to 19 (3 is a good default)"),
                        );
                        3
                    }
                };
                let threads = match c.threads {
                    None => 2,
                    Some(t @ 1..=64) => t,
                    Some(t) => {
                        self.problem(
                            &at.key("compression").key("threads"),
                            Target::Value,
                            format!("{t} is out of range; expected 1 to 64 zstd threads"),
                        );
                        2
                    }
                };
                (level, threads)
            }
        };
        let names: Vec<String> = repos.iter().map(|r| r.name.clone()).collect();
        let mut out_jobs: Vec<BackupJobConfig> = Vec::new();
        for (i, j) in jobs.into_iter().enumerate() {
            let field = at.key("jobs").index(i);
            if let Some(job) = self.backup_job(&field, j, &names, engine) {
                if out_jobs.iter().any(|x| x.name == job.name) {
                    self.problem(
                        &field.key("name"),
                        Target::Value,
                        format!("{:?} is used twice; expected unique job names", job.name),
                    );
                } else {
                    out_jobs.push(job);
                }
            }
        }
        let verification =
            verification.and_then(|v| self.verification(&at.key("verification"), v, state_dir));
        let identity = identity.and_then(|r| self.secret_ref(&at.key("identity"), r));
        let archive = archive.map(|a| self.archive(&at.key("archive"), a, &names, state_dir));
        BackupConfig {
            catalog,
            repositories: repos,
            recipients,
            compression_level: level,
            compression_threads: threads,
            jobs: out_jobs,
            verification,
            identity,
            archive,
        }
    }

    fn archive(
        &mut self,
        at: &FieldPath,
        raw: RawArchive,
        repositories: &[String],
        state_dir: &std::path::Path,
    ) -> ArchiveConfig {
        let RawArchive {
            destinations,
            interval,
            spool,
            spool_limit_mb,
        } = raw;
        let destinations = match destinations {
            None => repositories.to_vec(),
            Some(d) if d.is_empty() => {
                self.problem(
                    &at.key("destinations"),
                    Target::Value,
                    "is empty; expected repository names, or no destinations for all",
                );
                repositories.to_vec()
            }
            Some(d) => {
                for (i, n) in d.iter().enumerate() {
                    if !repositories.contains(n) {
                        self.problem(
                            &at.key("destinations").index(i),
                            Target::Value,
                            format!("{n:?} is no repository; expected one of {repositories:?}"),
                        );
                    }
                }
                d
            }
        };
        let interval = match interval {
            None => DEFAULT_ARCHIVE_INTERVAL,
            Some(d) if d.0 < Duration::from_secs(1) || d.0 > Duration::from_secs(3600) => {
                self.problem(
                    &at.key("interval"),
                    Target::Value,
                    format!(
                        "{:?} is out of range; expected 1s to 1h (60s is a good default)",
                        d.0
                    ),
                );
                DEFAULT_ARCHIVE_INTERVAL
            }
            Some(d) => d.0,
        };
        let spool = match spool {
            Some(d) if d.is_empty() => {
                self.problem(
                    &at.key("spool"),
                    Target::Value,
                    "is empty; expected a directory",
                );
                state_dir.join("archive-spool")
            }
            Some(d) => self.resolve(&d),
            None => state_dir.join("archive-spool"),
        };
        let spool_limit_mb = match spool_limit_mb {
            None => DEFAULT_SPOOL_LIMIT_MB,
            Some(n @ 64..) => n,
            Some(n) => {
                self.problem(
                    &at.key("spool_limit_mb"),
                    Target::Value,
                    format!("{n} is too small; expected at least 64 (four WAL segments)"),
                );
                DEFAULT_SPOOL_LIMIT_MB
            }
        };
        ArchiveConfig {
            destinations,
            interval,
            spool,
            spool_limit_mb,
        }
    }

    fn verification(
        &mut self,
        at: &FieldPath,
        raw: RawVerification,
        state_dir: &std::path::Path,
    ) -> Option<VerificationConfig> {
        let RawVerification {
            schedule,
            time_zone,
            identity,
            run_on,
            scratch_dir,
        } = raw;
        let time_zone = time_zone.unwrap_or_else(|| "UTC".to_owned());
        let schedule = self.schedule(at, schedule, &time_zone);
        let run_on = self.run_on(at, run_on.as_deref());
        if identity.is_some() {
            self.problem(
                &at.key("identity"),
                Target::Key,
                "has moved to backup.identity (it also opens backups for engine.seed and cluster.bootstrap.from_backup); expected identity: {file: PATH} directly under backup",
            );
        }
        let scratch_dir = match scratch_dir {
            Some(d) if d.is_empty() => {
                self.problem(
                    &at.key("scratch_dir"),
                    Target::Value,
                    "is empty; expected a directory",
                );
                state_dir.join("backup-scratch")
            }
            Some(d) => self.resolve(&d),
            None => state_dir.join("backup-scratch"),
        };
        Some(VerificationConfig {
            schedule: schedule?,
            time_zone,
            run_on,
            scratch_dir,
        })
    }

    /// A cron schedule in `time_zone`, with the problem on the field that is wrong.
    fn schedule(
        &mut self,
        at: &FieldPath,
        schedule: Option<String>,
        time_zone: &str,
    ) -> Option<String> {
        match schedule {
            None => {
                self.problem(at, Target::Key, "has no schedule; expected schedule: \"0 3 * * *\" (cron: minute hour day month weekday)");
                None
            }
            Some(s) => match backup::schedule::Schedule::parse(&s, time_zone) {
                Ok(_) => Some(s),
                Err(e @ backup::schedule::ScheduleError::Cron { .. }) => {
                    self.problem(&at.key("schedule"), Target::Value, e.to_string());
                    None
                }
                Err(e @ backup::schedule::ScheduleError::TimeZone(_)) => {
                    self.problem(&at.key("time_zone"), Target::Value, e.to_string());
                    None
                }
            },
        }
    }

    fn run_on(&mut self, at: &FieldPath, run_on: Option<&str>) -> RunOn {
        match run_on {
            None | Some("replica") => RunOn::Replica,
            Some("primary") => RunOn::Primary,
            Some("any") => RunOn::Any,
            Some(r) => {
                self.problem(
                    &at.key("run_on"),
                    Target::Value,
                    format!("{r:?} is not a placement; expected replica, primary or any"),
                );
                RunOn::Replica
            }
        }
    }

    fn repository(&mut self, at: &FieldPath, raw: RawRepository) -> Option<RepositoryConfig> {
        let RawRepository { name, path, s3 } = raw;
        let name = match name {
            None => {
                self.problem(
                    at,
                    Target::Key,
                    "has no name; expected name: local (or another unique name)",
                );
                None
            }
            Some(n) => match values::job_name(&n) {
                Ok(()) => Some(n),
                Err(e) => {
                    self.problem(&at.key("name"), Target::Value, e);
                    None
                }
            },
        };
        let location = match (path, s3) {
            (Some(_), Some(_)) => {
                self.problem(
                    at,
                    Target::Key,
                    "has both path and s3; expected one of them",
                );
                None
            }
            (None, None) => {
                self.problem(
                    at,
                    Target::Key,
                    "has neither path nor s3; expected path: /var/backups/autopilot or s3: {bucket: NAME, …}",
                );
                None
            }
            (Some(p), None) if p.is_empty() => {
                self.problem(
                    &at.key("path"),
                    Target::Value,
                    "is empty; expected a directory",
                );
                None
            }
            (Some(p), None) => Some(RepositoryLocation::Path(self.resolve(&p))),
            (None, Some(s3)) => self.s3(&at.key("s3"), s3).map(RepositoryLocation::S3),
        };
        Some(RepositoryConfig {
            name: name?,
            location: location?,
        })
    }

    fn s3(&mut self, at: &FieldPath, raw: RawS3) -> Option<S3Config> {
        let RawS3 {
            bucket,
            prefix,
            endpoint,
            region,
            path_style,
            access_key_id,
            secret_access_key,
        } = raw;
        let bucket = match bucket.filter(|b| !b.is_empty()) {
            Some(b) if b.len() >= 3 && b.len() <= 63 && !b.contains(['/', ' ']) => Some(b),
            Some(b) => {
                self.problem(
                    &at.key("bucket"),
                    Target::Value,
                    format!("{b:?} is not a bucket name; expected 3 to 63 characters without '/' or spaces"),
                );
                None
            }
            None => {
                self.problem(at, Target::Key, "has no bucket; expected bucket: NAME");
                None
            }
        };
        if let Some(e) = &endpoint
            && let Err(why) = s3_endpoint(e)
        {
            self.problem(&at.key("endpoint"), Target::Value, why);
        }
        let key = access_key_id.and_then(|r| self.secret_ref(&at.key("access_key_id"), r));
        let secret =
            secret_access_key.and_then(|r| self.secret_ref(&at.key("secret_access_key"), r));
        let (key, secret) = match (key, secret) {
            (Some(k), Some(s)) => (Some(k), Some(s)),
            (k, s) => {
                if k.is_none() && !self.has_problem_under(&at.key("access_key_id")) {
                    self.problem(
                        at,
                        Target::Key,
                        "has no access_key_id; expected access_key_id: {file: PATH} (or env: VAR, or credential: NAME)",
                    );
                }
                if s.is_none() && !self.has_problem_under(&at.key("secret_access_key")) {
                    self.problem(
                        at,
                        Target::Key,
                        "has no secret_access_key; expected secret_access_key: {file: PATH} (or env: VAR, or credential: NAME)",
                    );
                }
                (None, None)
            }
        };
        Some(S3Config {
            bucket: bucket?,
            prefix: prefix.unwrap_or_default().trim_matches('/').to_owned(),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            region: region
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "us-east-1".to_owned()),
            path_style: path_style.unwrap_or(false),
            access_key_id: key?,
            secret_access_key: secret?,
        })
    }

    /// Whether a problem was already recorded at `field` or below it.
    pub(super) fn has_problem_under(&self, field: &FieldPath) -> bool {
        self.problems
            .iter()
            .any(|(f, _, _, _)| f.0.starts_with(&field.0))
    }

    /// A secret from exactly one of a file, an environment variable or a systemd credential.
    fn secret_ref(&mut self, at: &FieldPath, raw: RawSecretRef) -> Option<Secret> {
        match (raw.file, raw.env, raw.credential) {
            (Some(f), None, None) => self.secret_file(&at.key("file"), &f),
            (None, Some(v), None) => self.secret_env(&at.key("env"), &v),
            (None, None, Some(name)) => {
                if name.is_empty() || name.contains('/') {
                    self.problem(
                        &at.key("credential"),
                        Target::Value,
                        format!("{name:?} is not a credential name; expected the name given to LoadCredential= or LoadCredentialEncrypted= (no '/')"),
                    );
                    return None;
                }
                match (self.env)("CREDENTIALS_DIRECTORY") {
                    Some(dir) if !dir.is_empty() => {
                        let path = PathBuf::from(dir).join(&name);
                        super::secrets::from_file(&path)
                            .map_err(|e| self.problem(&at.key("credential"), Target::Value, e))
                            .ok()
                    }
                    _ => {
                        self.problem(
                            &at.key("credential"),
                            Target::Value,
                            format!("{name:?} needs $CREDENTIALS_DIRECTORY, which is not set; expected the agent to run under systemd with LoadCredential={name}:… (or use file: or env:)"),
                        );
                        None
                    }
                }
            }
            _ => {
                self.problem(
                    at,
                    Target::Key,
                    "needs exactly one of file, env or credential; expected e.g. {file: /etc/autopilot/s3.secret}",
                );
                None
            }
        }
    }

    fn recipients(
        &mut self,
        at: &FieldPath,
        raw: Option<super::raw_backup::RawEncryption>,
    ) -> Vec<String> {
        let raw = raw.unwrap_or_default();
        let mut out = Vec::new();
        for (i, r) in raw.recipients.iter().enumerate() {
            match backup::keys::check_recipient(r.trim()) {
                Ok(()) => out.push(r.trim().to_owned()),
                Err(e) => self.problem(&at.key("recipients").index(i), Target::Value, e),
            }
        }
        if let Some(file) = raw.recipients_file {
            let path = self.resolve(&file);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        match backup::keys::check_recipient(line) {
                            Ok(()) => out.push(line.to_owned()),
                            Err(e) => self.problem(
                                &at.key("recipients_file"),
                                Target::Value,
                                format!("{}:{}: {e}", path.display(), n + 1),
                            ),
                        }
                    }
                }
                Err(e) => self.problem(
                    &at.key("recipients_file"),
                    Target::Value,
                    format!(
                        "cannot read {} ({e}); expected a file of age recipients, one per line",
                        path.display()
                    ),
                ),
            }
        }
        if out.is_empty() && !self.has_problem_under(at) {
            self.problem(
                &root("backup"),
                Target::Key,
                "has no encryption recipients; expected encryption: {recipients: [age1…]} (backups are always encrypted; make a key with age-keygen and keep its secret part off the nodes)",
            );
        }
        out
    }

    fn backup_job(
        &mut self,
        at: &FieldPath,
        raw: RawBackupJob,
        repositories: &[String],
        engine: EngineKind,
    ) -> Option<BackupJobConfig> {
        let RawBackupJob {
            name,
            description,
            schedule,
            time_zone,
            retention,
            databases,
            destinations,
            method,
            kind,
            run_on,
            fallback_to_primary,
            full_every,
            tool,
            pre_backup,
            post_backup,
            notify,
        } = raw;
        let name = match name {
            None => {
                self.problem(
                    at,
                    Target::Key,
                    "has no name; expected name: nightly (or another unique name)",
                );
                None
            }
            Some(n) => values::job_name(&n)
                .map_err(|e| self.problem(&at.key("name"), Target::Value, e))
                .ok()
                .map(|()| n),
        };
        let time_zone = time_zone.unwrap_or_else(|| "UTC".to_owned());
        let schedule = self.schedule(at, schedule, &time_zone);
        let (keep_last, keep_within) = self.retention(&at.key("retention"), at, retention);
        let destinations = match destinations {
            None => repositories.to_vec(),
            Some(d) if d.is_empty() => {
                self.problem(
                    &at.key("destinations"),
                    Target::Value,
                    "is empty; expected repository names, or no destinations for all",
                );
                repositories.to_vec()
            }
            Some(d) => {
                for (i, n) in d.iter().enumerate() {
                    if !repositories.contains(n) {
                        self.problem(
                            &at.key("destinations").index(i),
                            Target::Value,
                            format!("{n:?} is no repository; expected one of {repositories:?}"),
                        );
                    }
                }
                d
            }
        };
        let method = match method.as_deref() {
            None | Some("physical") => BackupMethod::Physical,
            Some("logical") => BackupMethod::Logical,
            Some(m) => {
                self.problem(
                    &at.key("method"),
                    Target::Value,
                    format!("{m:?} is not a method; expected physical or logical"),
                );
                BackupMethod::Physical
            }
        };
        let kind = match kind.as_deref() {
            None | Some("full") => BackupKind::Full,
            Some("incremental") => {
                if method == BackupMethod::Logical {
                    self.problem(
                        &at.key("type"),
                        Target::Value,
                        "incremental is for physical backups; expected full with method: logical",
                    );
                } else if engine == EngineKind::Postgres {
                    self.problem(&at.key("type"), Target::Value, "PostgreSQL 15 has no incremental base backups (they come with PostgreSQL 17); expected full, with point-in-time recovery from the archive between fulls");
                }
                BackupKind::Incremental
            }
            Some(t) => {
                self.problem(
                    &at.key("type"),
                    Target::Value,
                    format!("{t:?} is not a backup type; expected full or incremental"),
                );
                BackupKind::Full
            }
        };
        let run_on = self.run_on(at, run_on.as_deref());
        let databases = databases.unwrap_or_default();
        for (i, d) in databases.iter().enumerate() {
            if d.is_empty() || d.len() > 63 || d.contains(['/', '\0', '`', '"']) {
                self.problem(&at.key("databases").index(i), Target::Value, format!("{d:?} is not a database name; expected 1 to 63 characters without / ` \" or NUL"));
            }
        }
        let (tool, tool_args) = match tool {
            None => (None, Vec::new()),
            Some(t) => (
                t.path.filter(|p| !p.is_empty()).map(|p| self.resolve(&p)),
                t.args,
            ),
        };
        let secs = Duration::from_secs;
        let pre_backup = pre_backup.map(|h| self.handler(&at.key("pre_backup"), h, secs(300)));
        let post_backup = post_backup.map(|h| self.handler(&at.key("post_backup"), h, secs(300)));
        let notify = notify
            .into_iter()
            .enumerate()
            .filter_map(|(i, n)| self.notify(&at.key("notify").index(i), n))
            .collect();
        Some(BackupJobConfig {
            name: name?,
            description,
            schedule: schedule?,
            time_zone,
            keep_last,
            keep_within,
            databases,
            destinations,
            method,
            kind,
            run_on,
            fallback_to_primary: fallback_to_primary.unwrap_or(true),
            full_every: match full_every {
                None => DEFAULT_FULL_EVERY,
                Some(n @ 1..=1000) => n,
                Some(n) => {
                    self.problem(
                        &at.key("full_every"),
                        Target::Value,
                        format!("{n} is out of range; expected 1 to 1000 backups per chain (a full and its incrementals; 7 is the default)"),
                    );
                    DEFAULT_FULL_EVERY
                }
            },
            tool,
            tool_args,
            pre_backup,
            post_backup,
            notify,
        })
    }

    fn retention(
        &mut self,
        at: &FieldPath,
        job: &FieldPath,
        raw: Option<RawRetention>,
    ) -> (Option<u32>, Option<Duration>) {
        let Some(r) = raw else {
            self.problem(
                job,
                Target::Key,
                "has no retention; expected retention: {keep_last: 7} and/or {keep_within: 14d}",
            );
            return (None, None);
        };
        if r.keep_last.is_none() && r.keep_within.is_none() {
            self.problem(
                at,
                Target::Key,
                "keeps nothing; expected keep_last: N and/or keep_within: DURATION",
            );
        }
        if r.keep_last == Some(0) {
            self.problem(
                &at.key("keep_last"),
                Target::Value,
                "is 0; expected at least 1 (the newest verified backup is never removed)",
            );
        }
        let within = r
            .keep_within
            .map(|d| self.duration(&at.key("keep_within"), Some(d), Duration::from_secs(86_400)));
        (r.keep_last, within)
    }

    fn notify(&mut self, at: &FieldPath, raw: RawNotify) -> Option<NotifyConfig> {
        let url = match raw.url {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
            Some(u) => {
                let start: String = u.chars().take(12).collect();
                self.problem(&at.key("url"), Target::Value, format!("{start:?}… is not an http(s) URL; expected https://hooks.example.com/backup"));
                None
            }
            None => {
                self.problem(at, Target::Key, "has no url; expected url: https://…");
                None
            }
        };
        let (mut on_success, mut on_failure) = (true, true);
        if let Some(on) = raw.on {
            on_success = false;
            on_failure = false;
            for (i, o) in on.iter().enumerate() {
                match o.as_str() {
                    "success" => on_success = true,
                    "failure" => on_failure = true,
                    other => self.problem(
                        &at.key("on").index(i),
                        Target::Value,
                        format!("{other:?} is not an outcome; expected success or failure"),
                    ),
                }
            }
        }
        let secret = raw
            .secret
            .and_then(|s| self.secret_ref(&at.key("secret"), s));
        Some(NotifyConfig {
            url: url?,
            on_success,
            on_failure,
            secret,
        })
    }
}

/// An S3 endpoint: `http(s)://host[:port]`, optional trailing `/`, nothing else (never
/// echoing credentials in the URL).
fn s3_endpoint(url: &str) -> Result<(), String> {
    let expected = "expected a URL like https://s3.example.com or http://127.0.0.1:8333";
    if url.contains('@') {
        return Err(format!(
            "contains user info; expected no credentials in the URL (use access_key_id and secret_access_key), {expected}"
        ));
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(format!(
            "{url:?} does not start with http:// or https://; {expected}"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.starts_with(':')
        || authority.contains(['/', '?', '#'])
        || authority.contains(char::is_whitespace)
    {
        return Err(format!(
            "{url:?} is not a host with an optional port; {expected}"
        ));
    }
    Ok(())
}
