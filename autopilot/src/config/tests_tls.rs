//! `store.etcd.tls`: a table of broken sections with the exact place and field of each
//! problem, the files read at load time (relative to the config directory), the key kept out
//! of `Debug`, messages and the effective YAML, and the round trip.

use super::tests::{parse_at, problems};
use super::tests_roles::HOOKS;
use super::*;

const KEY_MARKER: &str = "k3y-MARKER-material";
const JUNK_MARKER: &str = "junk-MARKER-content";

/// A config directory with PEM-looking files (contents are not parsed at load time).
struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        let pem = |kind: &str, body: &str| {
            format!("-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n")
        };
        write("ca.pem", pem("CERTIFICATE", "Y2E="));
        write("client.pem", pem("CERTIFICATE", "Y2xpZW50"));
        write("client-key.pem", pem("PRIVATE KEY", KEY_MARKER));
        write("notpem.txt", format!("{JUNK_MARKER}\n"));
        Self(dir)
    }
    fn file(&self) -> std::path::PathBuf {
        self.0.path().join("agent.yaml")
    }
}

/// A valid document whose line 5 is `    endpoints: [...]`, line 6 `    tls:` and lines 7.. the
/// `tls` fields (`tls` indented by six spaces).
fn doc(endpoints: &str, tls: &str) -> String {
    format!(
        "node: {{address: h}}\ncluster: {{namespace: a, project: b, name: c}}\nstore:\n  etcd:\n    endpoints: {endpoints}\n    tls:\n{tls}engine:\n  port: 6379\n{HOOKS}process: {{exec: [a]}}\n"
    )
}

const HTTPS: &str = "[\"https://h:2379\"]";

struct Case {
    name: &'static str,
    yaml: String,
    line: usize,
    column: usize,
    field: &'static str,
    says: &'static str,
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let c = |name, yaml, line, column, field, says| Case { name, yaml, line, column, field, says };
    vec![
        c("cert_file without key_file", doc(HTTPS, "      cert_file: client.pem\n"), 7, 7, "store.etcd.tls.key_file", "missing while cert_file is set; expected key_file: PATH"),
        c("key_file without cert_file", doc(HTTPS, "      key_file: client-key.pem\n"), 7, 7, "store.etcd.tls.cert_file", "missing while key_file is set; expected cert_file: PATH"),
        c("unreadable ca_file", doc(HTTPS, "      ca_file: missing/ca.pem\n"), 7, 16, "store.etcd.tls.ca_file", "missing/ca.pem (No such file or directory (os error 2)); expected a readable PEM certificate file"),
        c("unreadable key_file", doc(HTTPS, "      cert_file: client.pem\n      key_file: nokey.pem\n"), 8, 17, "store.etcd.tls.key_file", "nokey.pem (No such file or directory (os error 2)); expected a readable PEM private key file"),
        c("ca_file not PEM", doc(HTTPS, "      ca_file: notpem.txt\n"), 7, 16, "store.etcd.tls.ca_file", "notpem.txt is not PEM; expected a PEM certificate file"),
        c("empty cert_file", doc(HTTPS, "      cert_file: \"\"\n      key_file: client-key.pem\n"), 7, 18, "store.etcd.tls.cert_file", "is empty; expected the path of a PEM certificate file"),
        c("http endpoint with tls", doc("[\"https://h:2379\", \"http://g:2379\"]", "      ca_file: ca.pem\n"), 5, 35, "store.etcd.endpoints[1]", "\"http://g:2379\" is plain http but store.etcd.tls is set; use https:// endpoints with tls"),
        c("unknown tls field", doc(HTTPS, "      ca: ca.pem\n"), 7, 7, "store.etcd.tls.ca", "unknown field `ca`, expected one of `ca_file`, `cert_file`, `key_file`"),
    ]
}

#[test]
fn broken_tls_sections_report_place_field_and_expectation() {
    let d = Dir::new();
    let mut failures = Vec::new();
    for case in cases() {
        let err = parse_at(&d.file(), &case.yaml).expect_err(case.name);
        let ConfigError::Invalid { problems, .. } = &err else {
            panic!("{}: expected Invalid, got {err:?}", case.name);
        };
        let Some(p) = problems.iter().find(|p| p.field == case.field) else {
            failures.push(format!(
                "{}: no problem for {}; got {problems:#?}",
                case.name, case.field
            ));
            continue;
        };
        if (p.line, p.column) != (Some(case.line), Some(case.column))
            || !p.message.contains(case.says)
            || !p.message.contains("expected")
        {
            failures.push(format!(
                "{}: expected {}:{} {} containing {:?}, got {p:?}",
                case.name, case.line, case.column, case.field, case.says
            ));
        }
        let all = format!("{err} {err:?}");
        assert!(
            !all.contains("MARKER"),
            "{}: file contents leaked: {all}",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tls_files_are_read_relative_to_the_config_directory() {
    let d = Dir::new();
    let yaml = doc(
        HTTPS,
        "      ca_file: ca.pem\n      cert_file: ./client.pem\n      key_file: client-key.pem\n",
    );
    let c = parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}"));
    let tls = c.store.as_ref().and_then(|s| s.tls.as_ref()).expect("tls");
    let ca = tls.ca.as_ref().expect("ca");
    assert_eq!(ca.path, d.0.path().join("ca.pem"));
    assert!(ca.pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let id = tls.identity.as_ref().expect("identity");
    assert_eq!(id.cert.path, d.0.path().join("client.pem"));
    assert_eq!(id.key.path, d.0.path().join("client-key.pem"));
    assert!(String::from_utf8_lossy(id.key.expose()).contains(KEY_MARKER));

    // The key shows only by its path; the effective YAML has paths only and round-trips.
    let debug = format!("{c:?}");
    let yaml = c.to_effective_yaml();
    for out in [&debug, &yaml] {
        assert!(!out.contains(KEY_MARKER) && !out.contains("BEGIN"), "{out}");
    }
    let key = d.0.path().join("client-key.pem");
    assert!(
        yaml.contains(&format!(
            "    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}  # <secret from file {}>\n",
            d.0.path().join("ca.pem").display(),
            d.0.path().join("client.pem").display(),
            key.display(),
            key.display()
        )),
        "{yaml}"
    );
    let again = parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(format!("{again:?}"), debug);
    let again_tls = again.store.and_then(|s| s.tls).expect("tls");
    let again_id = again_tls.identity.expect("identity");
    assert_eq!(again_id.key.expose(), id.key.expose());
    assert_eq!(again_tls.ca.as_ref(), Some(ca));
}

#[test]
fn https_without_tls_and_an_empty_tls_section_are_valid() {
    let d = Dir::new();
    let plain = doc(HTTPS, "").replace("    tls:\n", "");
    let c = parse_at(&d.file(), &plain).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.store.expect("store").tls.is_none());

    let empty = doc(HTTPS, "").replace("    tls:\n", "    tls: {}\n");
    let c = parse_at(&d.file(), &empty).unwrap_or_else(|e| panic!("{e}"));
    let tls = c.store.as_ref().and_then(|s| s.tls.as_ref()).expect("tls");
    assert!(tls.ca.is_none() && tls.identity.is_none());
    let yaml = c.to_effective_yaml();
    assert!(yaml.contains("    tls: {}\n"), "{yaml}");
    parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}

#[test]
fn tls_problems_are_found_with_the_fixed_config_file_too() {
    // Absolute paths that do not exist, from the shared test file location.
    let found = problems(&doc(HTTPS, "      ca_file: /nonexistent/ca.pem\n"));
    assert!(
        found.iter().any(|p| p.field == "store.etcd.tls.ca_file"
            && p.message.contains("cannot read /nonexistent/ca.pem")),
        "{found:#?}"
    );
}
