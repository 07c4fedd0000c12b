//! `log:` outputs: defaults, syslog and journal, and every problem at its line and column.

use std::path::PathBuf;

use super::tests::{P, ok, problems};
use super::*;

#[test]
fn stderr_only_by_default() {
    let c = ok(P);
    assert!(c.log.stderr);
    assert!(!c.log.journal);
    assert_eq!(c.log.syslog, None);
}

#[test]
fn syslog_defaults_to_dev_log_daemon_autopilot() {
    let c = ok(&format!("{P}log: {{output: [stderr, syslog]}}\n"));
    assert!(c.log.stderr);
    assert_eq!(
        c.log.syslog,
        Some(SyslogConfig {
            transport: SyslogTransport::Unix(PathBuf::from("/dev/log")),
            facility: 3,
            app_name: "autopilot".into(),
        })
    );
}

#[test]
fn every_transport_facility_and_app_name() {
    for (address, transport) in [
        (
            "unix:/run/log.sock",
            SyslogTransport::Unix("/run/log.sock".into()),
        ),
        ("unix:///dev/log", SyslogTransport::Unix("/dev/log".into())),
        (
            "udp://127.0.0.1:514",
            SyslogTransport::Udp("127.0.0.1:514".into()),
        ),
        (
            "tcp://logs.example.net:601",
            SyslogTransport::Tcp("logs.example.net:601".into()),
        ),
        ("tcp://[::1]:601", SyslogTransport::Tcp("[::1]:601".into())),
    ] {
        let c = ok(&format!(
            "{P}log:\n  output: [syslog, journal]\n  syslog: {{address: \"{address}\", facility: local5, app_name: db-agent}}\n"
        ));
        assert!(!c.log.stderr);
        assert!(c.log.journal);
        let s = c.log.syslog.expect("syslog");
        assert_eq!(s.transport, transport, "{address}");
        assert_eq!(s.facility, 21);
        assert_eq!(s.app_name, "db-agent");
    }
}

#[test]
fn effective_yaml_shows_the_outputs() {
    let c = ok(&format!(
        "{P}log:\n  output: [stderr, syslog]\n  syslog: {{address: \"udp://127.0.0.1:514\", facility: local0}}\n"
    ));
    let y = c.to_effective_yaml();
    assert!(
        y.contains("  output:\n  - stderr\n  - syslog\n")
            || y.contains("  output:\n    - stderr\n    - syslog\n"),
        "{y}"
    );
    assert!(y.contains("    address: udp://127.0.0.1:514\n"), "{y}");
    assert!(y.contains("    facility: local0\n"), "{y}");
    assert!(y.contains("    app_name: autopilot\n"), "{y}");
    // And it parses back to the same.
    let again = ok(&y);
    assert_eq!(again.log.syslog, c.log.syslog);
}

#[rustfmt::skip]
#[test]
fn log_problems_name_line_column_and_field() {
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        ("log: {output: [stderr, kafka]}\n", 2, 24, "log.output[1]", "unknown variant `kafka`, expected one of `stderr`, `syslog`, `journal`"),
        ("log: {output: []}\n", 2, 15, "log.output", "is empty; expected one or more of stderr, syslog, journal"),
        ("log:\n  syslog: {address: \"udp://h:514\"}\n", 3, 3, "log.syslog", "log.output does not include syslog"),
        ("log:\n  output: [syslog]\n  syslog: {address: \"http://h:514\"}\n", 4, 21, "log.syslog.address", "unknown transport \"http\"; expected unix:/dev/log"),
        ("log:\n  output: [syslog]\n  syslog: {address: \"udp://h\"}\n", 4, 21, "log.syslog.address", "has no port; expected unix:/dev/log"),
        ("log:\n  output: [syslog]\n  syslog: {address: \"tcp://h:99999\"}\n", 4, 21, "log.syslog.address", "has no valid port"),
        ("log:\n  output: [syslog]\n  syslog: {address: \"tcp://:514\"}\n", 4, 21, "log.syslog.address", "has no valid host"),
        ("log:\n  output: [syslog]\n  syslog: {address: \"unix:dev/log\"}\n", 4, 21, "log.syslog.address", "is not an absolute socket path"),
        ("log:\n  output: [syslog]\n  syslog: {address: \"127.0.0.1:514\"}\n", 4, 21, "log.syslog.address", "names no transport"),
        ("log:\n  output: [syslog]\n  syslog: {facility: local9}\n", 4, 22, "log.syslog.facility", "unknown facility \"local9\"; expected one of kern, user"),
        ("log:\n  output: [syslog]\n  syslog: {app_name: \"my agent\"}\n", 4, 22, "log.syslog.app_name", "is not a syslog APP-NAME; expected 1 to 48 printable ASCII"),
        ("log:\n  output: [syslog]\n  syslog: {adress: x}\n", 4, 12, "log.syslog.adress", "unknown field `adress`, expected one of `address`, `facility`, `app_name`"),
    ];
    for (yaml, line, column, field, says) in cases {
        let ps = problems(&format!("{P}{yaml}"));
        let p = ps.iter().find(|p| p.field == *field).unwrap_or_else(|| panic!("no problem at {field} for {yaml}: {ps:?}"));
        assert!(p.message.contains(says), "{yaml}: {}", p.message);
        assert_eq!((p.line, p.column), (Some(*line), Some(*column)), "{yaml}: {p}");
    }
}
