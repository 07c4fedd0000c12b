//! `telemetry.tls`: a table of broken sections with the exact place and field of each
//! problem (missing halves, unreadable files, files that are not what they should be, a key
//! that is not the certificate's, a plain-http `advertise`), the files read relative to the
//! config directory, the key kept out of `Debug`, messages and the effective YAML, the
//! round trip, and the `https://` agent URL. Real certificates from `openssl`
//! ([`TlsFiles`]): the listener's files are parsed at load time.

use e2e::harness::tls::TlsFiles;

use super::tests::parse_at;
use super::*;

/// A config directory with a throw-away CA and certificates under `tls/`.
struct Dir {
    dir: tempfile::TempDir,
    tls: TlsFiles,
}

impl Dir {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = TlsFiles::generate(&dir.path().join("tls")).expect("openssl certificates");
        std::fs::write(dir.path().join("notpem.txt"), "junk\n").expect("write");
        Self { dir, tls }
    }
    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("agent.yaml")
    }
    /// The base64 lines of the private keys: must never show in a message.
    fn key_lines(&self) -> Vec<String> {
        [&self.tls.server_key, &self.tls.client_key]
            .iter()
            .flat_map(|k| {
                std::fs::read_to_string(k)
                    .expect("read key")
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A valid standalone document whose line 4 is `  tls:` and lines 5.. the `tls` fields
/// (indented by four spaces); `advertise` goes on line 3 when given.
fn doc(advertise: Option<&str>, tls: &str) -> String {
    let line3 = match advertise {
        Some(a) => format!("  advertise: \"{a}\"\n"),
        None => "  listen: \"127.0.0.1:9100\"\n".to_owned(),
    };
    format!("process: {{exec: [a]}}\ntelemetry:\n{line3}  tls:\n{tls}")
}

const CERT: &str = "    cert: tls/server.pem\n";
const KEY: &str = "    key: tls/server-key.pem\n";

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
        c("cert without key", doc(None, CERT), 5, 5, "telemetry.tls.key", "missing while cert is set; expected key: PATH"),
        c("key without cert", doc(None, KEY), 5, 5, "telemetry.tls.cert", "missing while key is set; expected cert: PATH"),
        c("unreadable cert", doc(None, &format!("    cert: missing/cert.pem\n{KEY}")), 5, 11, "telemetry.tls.cert", "missing/cert.pem (No such file or directory (os error 2)); expected a readable PEM certificate file"),
        c("unreadable key", doc(None, &format!("{CERT}    key: nokey.pem\n")), 6, 10, "telemetry.tls.key", "nokey.pem (No such file or directory (os error 2)); expected a readable PEM private key file"),
        c("cert not PEM", doc(None, &format!("    cert: notpem.txt\n{KEY}")), 5, 11, "telemetry.tls.cert", "notpem.txt is not PEM; expected a PEM certificate file"),
        c("cert is a key", doc(None, &format!("    cert: tls/server-key.pem\n{KEY}")), 5, 11, "telemetry.tls.cert", "server-key.pem holds no PEM CERTIFICATE block; expected a PEM file"),
        c("key is a certificate", doc(None, &format!("{CERT}    key: tls/ca.pem\n")), 6, 10, "telemetry.tls.key", "ca.pem holds no PEM private key"),
        c("key of another certificate", doc(None, &format!("{CERT}    key: tls/client-key.pem\n")), 6, 10, "telemetry.tls.key", "client-key.pem does not fit the certificate"),
        c("empty cert", doc(None, &format!("    cert: \"\"\n{KEY}")), 5, 11, "telemetry.tls.cert", "is empty; expected the path of a PEM certificate file"),
        c("unreadable ca", doc(None, "    ca: /nonexistent/ca.pem\n"), 5, 9, "telemetry.tls.ca", "cannot read /nonexistent/ca.pem"),
        c("ca holds no certificate", doc(None, "    ca: tls/client-key.pem\n"), 5, 9, "telemetry.tls.ca", "client-key.pem holds no PEM CERTIFICATE block"),
        c("plain http advertise with a certificate", doc(Some("http://10.0.0.5:9187"), &format!("{CERT}{KEY}")), 3, 14, "telemetry.advertise", "\"http://10.0.0.5:9187\" is plain http but telemetry.tls.cert is set (the listener serves HTTPS only); expected an https:// URL"),
        c("etcd-style field name", doc(None, "    cert_file: tls/server.pem\n"), 5, 5, "telemetry.tls.cert_file", "unknown field `cert_file`, expected one of `cert`, `key`, `ca`"),
    ]
}

#[test]
fn broken_listener_tls_sections_report_place_field_and_expectation() {
    let d = Dir::new();
    let secrets = d.key_lines();
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
            !secrets.iter().any(|s| all.contains(s.as_str())),
            "{}: file contents leaked: {all}",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_listener_certificate_makes_the_agent_url_https_and_round_trips() {
    let d = Dir::new();
    let yaml = doc(None, &format!("{CERT}{KEY}    ca: ./tls/ca.pem\n"));
    let c = parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.telemetry.https());
    assert_eq!(
        c.telemetry.agent_url("10.0.0.5").as_deref(),
        Some("https://127.0.0.1:9100")
    );
    let tls = c.telemetry.tls.as_ref().expect("tls");
    let id = tls.identity.as_ref().expect("identity");
    assert_eq!(id.cert.path, d.dir.path().join("tls/server.pem"));
    assert_eq!(id.key.path, d.dir.path().join("tls/server-key.pem"));
    assert_eq!(
        tls.ca.as_ref().expect("ca").path,
        d.dir.path().join("tls/ca.pem")
    );

    // The key shows only by its path; the effective YAML has paths only and round-trips.
    let debug = format!("{c:?}");
    let yaml = c.to_effective_yaml();
    for out in [&debug, &yaml] {
        assert!(
            !d.key_lines().iter().any(|l| out.contains(l.as_str())) && !out.contains("BEGIN"),
            "{out}"
        );
    }
    let key = d.dir.path().join("tls/server-key.pem");
    assert!(
        yaml.contains(&format!(
            "  tls:\n    cert: {}\n    key: {}  # <secret from file {}>\n    ca: {}\n",
            d.dir.path().join("tls/server.pem").display(),
            key.display(),
            key.display(),
            d.dir.path().join("tls/ca.pem").display(),
        )),
        "{yaml}"
    );
    let again = parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(format!("{again:?}"), debug);

    // An explicit https:// advertise is kept as written.
    let yaml = doc(Some("https://db1.example:9187"), &format!("{CERT}{KEY}"));
    let c = parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.telemetry.agent_url("10.0.0.5").as_deref(),
        Some("https://db1.example:9187")
    );
}

#[test]
fn a_ca_alone_or_an_empty_section_keeps_plain_http() {
    let d = Dir::new();
    let c =
        parse_at(&d.file(), &doc(None, "    ca: tls/ca.pem\n")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.telemetry.https());
    assert_eq!(
        c.telemetry.agent_url("10.0.0.5").as_deref(),
        Some("http://127.0.0.1:9100")
    );
    assert!(
        c.telemetry
            .tls
            .as_ref()
            .and_then(|t| t.ca.as_ref())
            .is_some()
    );

    let empty = doc(None, "").replace("  tls:\n", "  tls: {}\n");
    let c = parse_at(&d.file(), &empty).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.telemetry.https());
    let yaml = c.to_effective_yaml();
    assert!(yaml.contains("  tls: {}\n"), "{yaml}");
    parse_at(&d.file(), &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
}
