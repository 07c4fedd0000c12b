//! The package watch (issue 19), on a real MariaDB node with the real `dpkg-query`,
//! `apt-cache` and `apt-get`, pointed at a private package database and a local repository
//! through `packages.env` (`DPKG_ADMINDIR`, `APT_CONFIG`), so the machine's own packages are
//! not touched and no network is used:
//! - the operator's refresh handler (`apt-get update`) brings a newer version from a
//!   security archive into the index; the node document, the gauges and `autopilotctl
//!   packages` then report the update, marked security, with the date it was first seen;
//! - that date survives an agent restart;
//! - a failed refresh is reported (node document, failure counter) and keeps the versions;
//! - once the new version is "installed", no update is reported any more.

use std::path::Path;
use std::time::Duration;

use e2e::harness::coordinator::{ADMIN_TOKEN, Coordinator, ctl};
use e2e::harness::util::eventually;
use e2e::mariadb::cluster::{MariaCluster, MariaOpts};

const OLD: &str = "1:10.11.6-0+deb12u1";
const NEW: &str = "1:10.11.99-0+deb12u1";

fn status_entry(package: &str, version: &str) -> String {
    format!(
        "Package: {package}\nStatus: install ok installed\nPriority: optional\nSection: database\n\
         Installed-Size: 100\nMaintainer: Test <t@example.com>\nArchitecture: all\n\
         Version: {version}\nDescription: test\n test\n\n"
    )
}

fn repo_entry(package: &str, version: &str) -> String {
    format!(
        "Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.com>\n\
         Installed-Size: 100\nFilename: pool/{package}.deb\nSize: 1000\n\
         MD5sum: 00000000000000000000000000000000\nSection: database\nPriority: optional\n\
         Description: test\n test\n\n"
    )
}

/// A private dpkg database with `mariadb-server` at `installed` and `autopilot-tools` 1.0,
/// and a local repository (named like Debian's security archive) offering `offered`.
fn packages(dir: &Path, installed: &str, offered: &str) {
    std::fs::write(
        dir.join("dpkg/status"),
        status_entry("mariadb-server", installed) + &status_entry("autopilot-tools", "1.0"),
    )
    .expect("write the dpkg status");
    std::fs::write(
        dir.join("debian-security/Packages"),
        repo_entry("mariadb-server", offered),
    )
    .expect("write the repository");
}

fn setup(dir: &Path) -> String {
    for d in [
        "dpkg/updates",
        "dpkg/info",
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
        "debian-security",
    ] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    let d = dir.display();
    std::fs::write(
        dir.join("sources.list"),
        format!("deb [trusted=yes] file:{d}/debian-security ./\n"),
    )
    .expect("sources.list");
    std::fs::write(
        dir.join("apt.conf"),
        format!(
            "Dir::State::status \"{d}/dpkg/status\";\nDir::State::Lists \"{d}/lists\";\n\
             Dir::Cache \"{d}/cache\";\nDir::Etc::SourceList \"{d}/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/sources.list.d\";\nDir::Etc::Preferences \"{d}/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/preferences.d\";\nAPT::Sandbox::User \"root\";\n\
             Debug::NoLocking \"true\";\n"
        ),
    )
    .expect("apt.conf");
    packages(dir, OLD, OLD);
    format!(
        "packages:\n  watch: [mariadb-server, autopilot-tools, no-such-package]\n  interval: 2s\n  \
         timeout: 2s\n  env: {{APT_CONFIG: {d}/apt.conf, DPKG_ADMINDIR: {d}/dpkg}}\n  refresh:\n    \
         exec: [apt-get, update, -qq]\n    env: {{APT_CONFIG: {d}/apt.conf}}\n    timeout: 60s\n"
    )
}

/// The node document's `packages`, once `ok` holds for it.
fn wait_packages(
    c: &MariaCluster,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let key = format!("nodes/{}", c.name(0));
    eventually(Duration::from_secs(60), Duration::from_millis(300), || {
        let doc: serde_json::Value = serde_json::from_str(&c.key(&key)?).ok()?;
        let p = doc["packages"].clone();
        ok(&p).then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "{what}: not in the node document within 60 s: {}\n{}",
            c.key(&key).unwrap_or_default(),
            c.logs()
        )
    })
}

fn entry<'a>(p: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    p["list"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

fn gauge(c: &MariaCluster, name: &str, package: &str) -> Option<f64> {
    let want = format!("{name}{{package=\"{package}\"}} ");
    c.metrics(0)
        .lines()
        .find_map(|l| l.strip_prefix(&want).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn the_package_watch_reports_updates_from_the_operators_refresh_and_their_age_survives_a_restart() {
    let apt = tempfile::tempdir().expect("temp dir");
    let yaml = setup(apt.path());
    let mut c = MariaCluster::start(
        1,
        MariaOpts {
            extra_yaml: yaml,
            ..MariaOpts::default()
        },
    )
    .expect("start the MariaDB node");
    c.wait_primary(Duration::from_secs(60));

    // Nothing newer offered: the versions are read, no update.
    let p = wait_packages(&c, "the first check", |p| {
        entry(p, "mariadb-server")["installed"] == OLD
    });
    assert_eq!(
        entry(&p, "mariadb-server")["update_available"],
        false,
        "{p:#}"
    );
    assert_eq!(entry(&p, "autopilot-tools")["installed"], "1.0", "{p:#}");
    assert!(entry(&p, "no-such-package")["installed"].is_null(), "{p:#}");
    assert!(p["error"].is_null(), "{p:#}");

    // The security archive offers a newer version: the refresh handler brings it in.
    packages(apt.path(), OLD, NEW);
    let p = wait_packages(&c, "the update", |p| {
        entry(p, "mariadb-server")["candidate"] == NEW
    });
    let m = entry(&p, "mariadb-server");
    assert_eq!(m["update_available"], true, "{p:#}");
    assert_eq!(m["security"], true, "{p:#}");
    let since = m["since"].as_str().expect("since").to_owned();
    assert_eq!(
        entry(&p, "autopilot-tools")["update_available"],
        false,
        "{p:#}"
    );
    let metric = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        (gauge(
            &c,
            "autopilot_package_security_update_available",
            "mariadb-server",
        ) == Some(1.0))
        .then_some(())
    });
    assert!(metric.is_some(), "{}", c.metrics(0));
    assert_eq!(
        gauge(&c, "autopilot_package_update_available", "mariadb-server"),
        Some(1.0)
    );
    assert_eq!(
        gauge(&c, "autopilot_package_update_available", "autopilot-tools"),
        Some(0.0)
    );
    assert!(
        gauge(
            &c,
            "autopilot_package_update_pending_since_timestamp_seconds",
            "mariadb-server"
        )
        .is_some_and(|t| t > 1.7e9),
        "{}",
        c.metrics(0)
    );

    // The coordinator lists which node of which cluster lags behind.
    let coord = Coordinator::start(&c.etcd_mut().endpoint(), &[]).expect("start the coordinator");
    let env = [
        ("AUTOPILOT_URL", coord.url()),
        ("AUTOPILOT_TOKEN", ADMIN_TOKEN),
    ];
    let (code, out, err) = ctl(&["packages"], &env, Duration::from_secs(30));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(c.name(0)) && out.contains("mariadb-server"),
        "{out}"
    );
    assert!(out.contains("security") && out.contains(NEW), "{out}");
    assert!(
        !out.contains("autopilot-tools"),
        "only updates by default:\n{out}"
    );
    let (code, out, err) = ctl(
        &["-o", "json", "packages", "--all"],
        &env,
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["packages"].as_array().map(Vec::len), Some(3), "{v:#}");

    // The date the update was first seen survives an agent restart.
    c.stop_agent(0);
    c.start_agent(0);
    c.wait_primary(Duration::from_secs(60));
    let key = format!("nodes/{}", c.name(0));
    let p = wait_packages(&c, "the check after the restart", |p| {
        p["checked"].is_string() && entry(p, "mariadb-server")["update_available"] == true
    });
    assert_eq!(
        entry(&p, "mariadb-server")["since"],
        since.as_str(),
        "{p:#}"
    );

    // A refresh that fails is said, and the versions are kept.
    let sources = apt.path().join("sources.list");
    let good = std::fs::read_to_string(&sources).expect("sources.list");
    std::fs::write(
        &sources,
        format!("{good}deb [trusted=yes] file:/nonexistent/autopilot-test ./\n"),
    )
    .expect("break sources.list");
    let p = wait_packages(&c, "the failed refresh", |p| p["error"].is_string());
    assert!(
        p["error"].as_str().is_some_and(|e| e.contains("refresh")),
        "{p:#}"
    );
    assert_eq!(
        entry(&p, "mariadb-server")["update_available"],
        true,
        "{p:#}"
    );

    // Installed: no update any more.
    packages(apt.path(), NEW, NEW);
    let p = wait_packages(&c, "the installed update", |p| {
        entry(p, "mariadb-server")["installed"] == NEW
    });
    assert_eq!(
        entry(&p, "mariadb-server")["update_available"],
        false,
        "{p:#}"
    );
    assert!(entry(&p, "mariadb-server")["since"].is_null(), "{p:#}");
    let cleared = eventually(Duration::from_secs(10), Duration::from_millis(200), || {
        (gauge(&c, "autopilot_package_update_available", "mariadb-server") == Some(0.0))
            .then_some(())
    });
    assert!(cleared.is_some(), "{}", c.metrics(0));
    assert!(c.key(&key).is_some());
}
