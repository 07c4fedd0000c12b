//! The package watch (`packages:`): every `interval` (jittered by up to a tenth, the first
//! check within a minute of start) the agent runs the operator's `refresh` handler if there
//! is one (`apt-get update`: the agent itself reaches no network), then reads the installed
//! versions with `dpkg-query` and the candidates with `apt-cache policy`, through the
//! handlers' process runner (timeouts, process groups, output capture).
//!
//! What it finds goes into the node document (`nodes/<id>.packages`, through a watch
//! channel the role actor reads) and into gauges per package:
//! `autopilot_package_update_available`, `autopilot_package_security_update_available`,
//! `autopilot_package_update_pending_since_timestamp_seconds` (when this node first saw the
//! pending candidate, kept in `<state_dir>/packages.json` across restarts, so the alert on a
//! security update pending too long survives agent restarts), with
//! `autopilot_package_last_check_timestamp_seconds` and
//! `autopilot_package_check_failures_total`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use cluster::wire::{PackageStatus, Packages, Timestamp};
use handlers::{ExecSpec, RunOutcome};
use metrics::{counter, gauge};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::PackagesConfig;

/// The first check runs at most this long after start (jittered).
const FIRST_CHECK_WITHIN: Duration = Duration::from_secs(60);

/// Start the watch; what it finds is published on the returned channel (`None` until the
/// first check, and always without a `packages` section).
pub fn spawn(
    config: Option<PackagesConfig>,
    state_dir: &Path,
) -> watch::Receiver<Option<Packages>> {
    let (tx, rx) = watch::channel(None);
    let Some(config) = config else {
        return rx;
    };
    let file = state_dir.join("packages.json");
    tokio::spawn(async move {
        let mut since = Since::load(&file);
        gauge!("autopilot_package_last_check_timestamp_seconds").set(0.0);
        tokio::time::sleep(jittered(config.interval.min(FIRST_CHECK_WITHIN), 1.0)).await;
        loop {
            let last = tx.borrow().clone();
            let found = check(&config, &mut since, last.as_ref()).await;
            since.save(&file);
            tx.send_replace(Some(found));
            tokio::time::sleep(
                config
                    .interval
                    .saturating_sub(jittered(config.interval, 0.1)),
            )
            .await;
        }
    });
    rx
}

/// A random part of `d`: up to `share` of it.
fn jittered(d: Duration, share: f64) -> Duration {
    let r = getrandom::u64().unwrap_or(0) as f64 / u64::MAX as f64;
    d.mul_f64(share * r)
}

/// One check: refresh, read, publish the gauges; on a failed read the previous versions
/// are kept with the error.
async fn check(config: &PackagesConfig, since: &mut Since, last: Option<&Packages>) -> Packages {
    let mut errors = Vec::new();
    if let Some(refresh) = &config.refresh {
        let spec = crate::node::specs::handler_spec(refresh);
        match handlers::run("packages:refresh", &spec, &[]).await {
            Ok(RunOutcome::Exited(s)) if s.success() => {}
            Ok(RunOutcome::Exited(s)) => errors.push(format!(
                "the refresh handler ({}) exited with {s}; the versions are those of the package index as it was",
                refresh.exec[0]
            )),
            Ok(RunOutcome::TimedOut) => errors.push(format!(
                "the refresh handler ({}) outlived its timeout {} and was killed; the versions are those of the package index as it was",
                refresh.exec[0],
                humantime::format_duration(refresh.timeout)
            )),
            Err(e) => errors.push(format!(
                "the refresh handler ({}) could not start: {}",
                refresh.exec[0],
                handlers::error_chain(&e)
            )),
        }
    }
    let read = read_versions(config).await;
    let now = SystemTime::now();
    let list = match read {
        Ok(list) => list,
        Err(e) => {
            warn!(cause = %e, "the package check failed");
            counter!("autopilot_package_check_failures_total").increment(1);
            errors.push(e);
            return Packages {
                checked: Timestamp::from(now),
                error: Some(errors.join("; ")),
                list: last.map(|p| p.list.clone()).unwrap_or_default(),
            };
        }
    };
    if !errors.is_empty() {
        counter!("autopilot_package_check_failures_total").increment(1);
        warn!(cause = %errors.join("; "), "the package index refresh failed");
    }
    let list: Vec<PackageStatus> = list
        .into_iter()
        .map(|v| {
            let update = v.update_available();
            let first = update.then(|| since.pending(&v.name, v.candidate.as_deref(), now));
            PackageStatus {
                update_available: update,
                security: update && v.security,
                since: first.map(Timestamp::from),
                name: v.name,
                installed: v.installed,
                candidate: v.candidate,
            }
        })
        .collect();
    since.keep_only(
        list.iter()
            .filter(|p| p.update_available)
            .map(|p| p.name.as_str()),
    );
    for p in &list {
        let was = last.and_then(|l| l.list.iter().find(|o| o.name == p.name));
        if p.update_available && was.is_none_or(|w| w.candidate != p.candidate) {
            info!(
                package = %p.name,
                installed = p.installed.as_deref().unwrap_or("none"),
                candidate = p.candidate.as_deref().unwrap_or("none"),
                security = p.security,
                "a package update is available"
            );
        }
        let name = p.name.clone();
        gauge!("autopilot_package_update_available", "package" => name.clone())
            .set(f64::from(u8::from(p.update_available)));
        gauge!("autopilot_package_security_update_available", "package" => name.clone())
            .set(f64::from(u8::from(p.security)));
        gauge!("autopilot_package_update_pending_since_timestamp_seconds", "package" => name)
            .set(p.since.map_or(0.0, |t| unix_seconds(t.system_time())));
    }
    gauge!("autopilot_package_last_check_timestamp_seconds").set(unix_seconds(now));
    Packages {
        checked: Timestamp::from(now),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        list,
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// One package as read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Versions {
    name: String,
    installed: Option<String>,
    candidate: Option<String>,
    /// The candidate comes from a security archive.
    security: bool,
}

impl Versions {
    fn update_available(&self) -> bool {
        self.installed.is_some() && self.candidate.is_some() && self.installed != self.candidate
    }
}

/// Run `dpkg-query` and `apt-cache policy` for every watched package.
async fn read_versions(config: &PackagesConfig) -> Result<Vec<Versions>, String> {
    let spec = |argv: Vec<String>| ExecSpec {
        env: config.env.iter().map(|v| v.pair()).collect(),
        timeout: Some(config.timeout),
        kill_grace: Duration::from_secs(5),
        ..ExecSpec::new(argv)
    };
    let mut dpkg = vec![
        "dpkg-query".to_owned(),
        "--show".to_owned(),
        "--showformat=${binary:Package}\\t${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"
            .to_owned(),
    ];
    dpkg.extend(config.watch.iter().cloned());
    let installed = run(&spec(dpkg), "dpkg-query", &[0, 1]).await?;
    let mut policy = vec!["apt-cache".to_owned(), "policy".to_owned()];
    policy.extend(config.watch.iter().cloned());
    let candidates = run(&spec(policy), "apt-cache policy", &[0]).await?;
    Ok(combine(
        &config.watch,
        &parse_dpkg(&installed),
        &parse_policy(&candidates),
    ))
}

/// Run a query; its stdout when it exits with one of `ok`.
async fn run(spec: &ExecSpec, what: &str, ok: &[i32]) -> Result<String, String> {
    let out = handlers::run_capture(&format!("packages:{what}"), spec, &[])
        .await
        .map_err(|e| format!("{what} could not start: {}", handlers::error_chain(&e)))?;
    match out.outcome {
        RunOutcome::Exited(s) if ok.contains(&s.exit_code()) => Ok(out.stdout),
        RunOutcome::Exited(s) => Err(format!(
            "{what} exited with {s}{}",
            out.failure.map(|l| format!(": {l}")).unwrap_or_default()
        )),
        RunOutcome::TimedOut => Err(format!(
            "{what} outlived packages.timeout {} and was killed",
            humantime::format_duration(spec.timeout.unwrap_or_default())
        )),
    }
}

/// `dpkg-query` lines (`binary:Package`, `Package`, `Version`, `db:Status-Abbrev`): the
/// installed version by both names (`libc6:amd64` and `libc6`). A package is installed when
/// the status letter (the abbreviation's second) is `i`, or a trigger state of an installed
/// package (`W`, `t`).
fn parse_dpkg(out: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let [binary, package, version, status] = f[..] else {
            continue;
        };
        let installed = matches!(status.chars().nth(1), Some('i' | 'W' | 't'));
        if installed && !version.is_empty() {
            found.insert(binary.to_owned(), version.to_owned());
            found.insert(package.to_owned(), version.to_owned());
        }
    }
    found
}

/// What `apt-cache policy` says of one package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Policy {
    candidate: Option<String>,
    /// A source of the candidate version is a security archive.
    security: bool,
}

/// `apt-cache policy` blocks: `name:` at the start of a line, `  Candidate: V` (`(none)`
/// when nothing offers it), then the version table: `     V PRIO` or ` *** V PRIO` lines,
/// each followed by its sources, indented deeper (`        500 http://… bookworm-security/main
/// amd64 Packages`). A source that names `security` (Debian's `debian-security`,
/// `bookworm-security`; Ubuntu's `jammy-security`) makes the version a security update.
fn parse_policy(out: &str) -> BTreeMap<String, Policy> {
    let mut found: BTreeMap<String, Policy> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_candidate = false;
    for line in out.lines() {
        if !line.starts_with(' ') {
            current = line
                .strip_suffix(':')
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            in_candidate = false;
            if let Some(n) = &current {
                found.entry(n.clone()).or_default();
            }
            continue;
        }
        let Some(name) = &current else { continue };
        let entry = found.entry(name.clone()).or_default();
        let trimmed = line.trim_start();
        if let Some(v) = trimmed.strip_prefix("Candidate:") {
            let v = v.trim();
            entry.candidate = (v != "(none)" && !v.is_empty()).then(|| v.to_owned());
            continue;
        }
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("Installed:") || trimmed.starts_with("Version table:") {
            continue;
        }
        if indent <= 5 {
            // A version line: `*** V PRIO` or `V PRIO`.
            let version = trimmed.trim_start_matches("***").split_whitespace().next();
            in_candidate = version.is_some() && version == entry.candidate.as_deref();
        } else if in_candidate
            && !trimmed
                .split_whitespace()
                .nth(1)
                .is_some_and(|s| s.starts_with('/'))
        {
            // (not dpkg's status file, `100 /var/lib/dpkg/status`)
            entry.security |= trimmed.contains("security");
        }
    }
    found
}

/// One entry per watched name, in the configured order.
fn combine(
    watch: &[String],
    installed: &BTreeMap<String, String>,
    policy: &BTreeMap<String, Policy>,
) -> Vec<Versions> {
    watch
        .iter()
        .map(|name| {
            let bare = name.split(':').next().unwrap_or(name);
            let p = policy
                .get(name)
                .or_else(|| policy.get(bare))
                .cloned()
                .unwrap_or_default();
            Versions {
                name: name.clone(),
                installed: installed.get(name).cloned(),
                candidate: p.candidate,
                security: p.security,
            }
        })
        .collect()
}

/// When this node first saw each pending candidate (`<state_dir>/packages.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Since {
    #[serde(flatten)]
    packages: BTreeMap<String, Pending>,
    #[serde(skip)]
    dirty: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    candidate: String,
    /// Unix milliseconds.
    since_ms: u64,
}

impl Since {
    /// The file's content; empty when there is none or it cannot be read (the dates then
    /// start again: said in the log).
    fn load(file: &Path) -> Self {
        match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(file = %file.display(), cause = %e, "the package watch's dates cannot be read; pending updates count from now");
                Self::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                warn!(file = %file.display(), cause = %e, "the package watch's dates cannot be read; pending updates count from now");
                Self::default()
            }
        }
    }

    /// Since when `candidate` of `name` is pending: the recorded time when it is the same
    /// candidate, else `now` (recorded).
    fn pending(&mut self, name: &str, candidate: Option<&str>, now: SystemTime) -> SystemTime {
        let candidate = candidate.unwrap_or_default();
        if let Some(p) = self.packages.get(name).filter(|p| p.candidate == candidate) {
            return SystemTime::UNIX_EPOCH + Duration::from_millis(p.since_ms);
        }
        let since_ms = u64::try_from(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        self.packages.insert(
            name.to_owned(),
            Pending {
                candidate: candidate.to_owned(),
                since_ms,
            },
        );
        self.dirty = true;
        SystemTime::UNIX_EPOCH + Duration::from_millis(since_ms)
    }

    /// Forget packages that no longer wait for an update.
    fn keep_only<'a>(&mut self, pending: impl Iterator<Item = &'a str>) {
        let keep: Vec<&str> = pending.collect();
        let before = self.packages.len();
        self.packages.retain(|n, _| keep.contains(&n.as_str()));
        self.dirty |= self.packages.len() != before;
    }

    /// Write the file when something changed (through a temporary file and a rename).
    fn save(&mut self, file: &Path) {
        if !self.dirty {
            return;
        }
        let tmp: PathBuf = file.with_extension("json.tmp");
        let r = serde_json::to_vec_pretty(&self.packages)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, file));
        match r {
            Ok(()) => self.dirty = false,
            Err(e) => {
                warn!(file = %file.display(), cause = %e, "the package watch's dates cannot be saved; they are kept in memory")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
mariadb-server:
  Installed: 1:10.11.6-0+deb12u1
  Candidate: 1:10.11.11-0+deb12u1
  Version table:
     1:10.11.11-0+deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 1:10.11.6-0+deb12u1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
libc6:
  Installed: 2.36-9+deb12u14
  Candidate: 2.36-9+deb12u14
  Version table:
 *** 2.36-9+deb12u14 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
     2.36-9+deb12u7 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
etcd-server:
  Installed: 3.4.23-4+b4
  Candidate: 3.4.30-1
  Version table:
     3.4.30-1 990
        990 http://deb.debian.org/debian bookworm-backports/main amd64 Packages
 *** 3.4.23-4+b4 500
        100 /var/lib/dpkg/status
pgbackrest:
  Installed: (none)
  Candidate: 2.54.2-1
  Version table:
     2.54.2-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
gone:
  Installed: 1.0
  Candidate: (none)
  Version table:
 *** 1.0 100
        100 /var/lib/dpkg/status
";

    const DPKG: &str = "\
libc6:amd64\tlibc6\t2.36-9+deb12u14\tii 
mariadb-server\tmariadb-server\t1:10.11.6-0+deb12u1\tii 
etcd-server\tetcd-server\t3.4.23-4+b4\thi 
gone\tgone\t1.0\tiW 
removed\tremoved\t2.0\trc 
";

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn installed_and_candidate_versions_and_security_are_read() {
        let got = combine(
            &names(&[
                "mariadb-server",
                "libc6:amd64",
                "etcd-server",
                "pgbackrest",
                "gone",
                "removed",
                "nosuch",
            ]),
            &parse_dpkg(DPKG),
            &parse_policy(POLICY),
        );
        let v = |name: &str, i: Option<&str>, c: Option<&str>, security| Versions {
            name: name.to_owned(),
            installed: i.map(str::to_owned),
            candidate: c.map(str::to_owned),
            security,
        };
        assert_eq!(
            got,
            vec![
                v(
                    "mariadb-server",
                    Some("1:10.11.6-0+deb12u1"),
                    Some("1:10.11.11-0+deb12u1"),
                    true
                ),
                // the older security version is not the candidate
                v(
                    "libc6:amd64",
                    Some("2.36-9+deb12u14"),
                    Some("2.36-9+deb12u14"),
                    false
                ),
                // held ("hi") is installed; backports is no security archive
                v("etcd-server", Some("3.4.23-4+b4"), Some("3.4.30-1"), false),
                v("pgbackrest", None, Some("2.54.2-1"), false),
                v("gone", Some("1.0"), None, false),
                v("removed", None, None, false),
                v("nosuch", None, None, false),
            ]
        );
        let updates: Vec<&str> = got
            .iter()
            .filter(|v| v.update_available())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(updates, ["mariadb-server", "etcd-server"]);
    }

    #[test]
    fn garbage_output_reads_as_nothing_known() {
        for junk in ["", "\n\n", "::::\n   \n\t\t\t", "x:\n  Candidate:\n *** \n"] {
            let got = combine(&names(&["x"]), &parse_dpkg(junk), &parse_policy(junk));
            assert!(!got[0].update_available(), "{junk:?}: {got:?}");
        }
    }

    #[test]
    fn a_pending_candidate_keeps_its_first_date_across_restarts_and_a_new_one_starts_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("packages.json");
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut since = Since::load(&file);
        assert_eq!(since.pending("a", Some("2"), t(100)), t(100));
        since.save(&file);
        let mut again = Since::load(&file);
        assert_eq!(again.pending("a", Some("2"), t(500)), t(100));
        assert_eq!(again.pending("a", Some("3"), t(600)), t(600));
        again.keep_only(std::iter::empty());
        again.save(&file);
        assert!(Since::load(&file).packages.is_empty());
        std::fs::write(&file, b"{not json").expect("write");
        assert!(Since::load(&file).packages.is_empty());
    }
}
