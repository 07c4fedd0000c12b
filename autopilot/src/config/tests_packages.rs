//! `packages:`: defaults, the effective YAML, and every problem at its line and column.

use std::time::Duration;

use super::tests::{P, ok, problems};

#[test]
fn no_section_watches_nothing_and_a_list_gets_the_defaults() {
    assert!(ok(P).packages.is_none());
    let c = ok(&format!(
        "{P}packages: {{watch: [mariadb-server, \"libc6:amd64\"]}}\n"
    ));
    let p = c.packages.expect("packages");
    assert_eq!(p.watch, ["mariadb-server", "libc6:amd64"]);
    assert_eq!(p.interval, Duration::from_secs(24 * 3600));
    assert_eq!(p.timeout, Duration::from_secs(60));
    assert!(p.refresh.is_none());
}

#[test]
fn effective_yaml_shows_the_section_and_reads_back() {
    let c = ok(&format!(
        "{P}packages:\n  watch: [mariadb-server]\n  interval: 12h\n  env: {{APT_CONFIG: /etc/apt/watch.conf}}\n  refresh: {{exec: [apt-get, update, -qq], timeout: 5m}}\n"
    ));
    let y = c.to_effective_yaml();
    assert!(y.contains("packages:\n"), "{y}");
    assert!(y.contains("  interval: 12h\n"), "{y}");
    assert!(y.contains("  refresh:\n"), "{y}");
    let again = ok(&y).packages.expect("packages");
    assert_eq!(again.watch, ["mariadb-server"]);
    assert_eq!(again.interval, Duration::from_secs(12 * 3600));
    assert_eq!(
        again.refresh.expect("refresh").timeout,
        Duration::from_secs(300)
    );
}

#[rustfmt::skip]
#[test]
fn package_problems_name_line_column_and_field() {
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        ("packages: {interval: 1h}\n", 2, 1, "packages.watch", "required; expected the Debian packages to watch"),
        ("packages: {watch: []}\n", 2, 19, "packages.watch", "is empty; expected at least one Debian package name"),
        ("packages: {watch: [Mariadb]}\n", 2, 20, "packages.watch[0]", "\"Mariadb\" is not a Debian package name"),
        ("packages: {watch: [\"a; rm -rf /\"]}\n", 2, 20, "packages.watch[0]", "is not a Debian package name"),
        ("packages: {watch: [x]}\n", 2, 20, "packages.watch[0]", "\"x\" is not a Debian package name"),
        ("packages: {watch: [\"libc6:\"]}\n", 2, 20, "packages.watch[0]", "is not a Debian package name"),
        ("packages: {watch: [ab, cd, ab]}\n", 2, 28, "packages.watch[2]", "duplicate package \"ab\" (also packages.watch[0])"),
        ("packages: {watch: [ab], interval: 1m, timeout: 2m}\n", 2, 48, "packages.timeout", "2m is longer than the interval 1m"),
        ("packages: {watch: [ab], interval: daily}\n", 2, 35, "packages.interval", "daily is not a duration"),
        ("packages: {watch: [ab], refresh: {timeout: 1m}}\n", 2, 25, "packages.refresh.exec", "required; expected a list like [prog, arg]"),
        ("packages: {watch: [ab], refresh: {exec: [apt-get], interval: 1h}}\n", 2, 52, "packages.refresh.interval", "is not allowed on refresh"),
        ("packages: {watch: [ab], every: 1h}\n", 2, 25, "packages.every", "unknown field `every`, expected one of `watch`, `interval`, `timeout`, `env`, `refresh`"),
    ];
    for (yaml, line, column, field, says) in cases {
        let ps = problems(&format!("{P}{yaml}"));
        let p = ps.iter().find(|p| p.field == *field).unwrap_or_else(|| panic!("no problem at {field} for {yaml}: {ps:?}"));
        assert!(p.message.contains(says), "{yaml}: {}", p.message);
        assert_eq!((p.line, p.column), (Some(*line), Some(*column)), "{yaml}: {p}");
    }
}
