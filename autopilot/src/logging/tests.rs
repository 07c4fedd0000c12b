//! The forwarding layer end to end on loopback: events (with their spans' fields) become
//! RFC 5424 datagrams and journal entries at a real socket.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

fn recv_udp(rx: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65_536];
    let n = rx.recv(&mut buf).expect("a datagram within 5 s");
    String::from_utf8(buf[..n].to_vec()).expect("utf-8")
}

#[test]
fn syslog_over_udp_carries_span_and_event_fields() {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let cfg = SyslogConfig {
        transport: SyslogTransport::Udp(rx.local_addr().expect("addr").to_string()),
        facility: 16,
        app_name: "ap-test".into(),
    };
    let layer = syslog_layer(&cfg).expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("handler", process = "health");
        let _g = span.enter();
        tracing::error!(code = 2, "handler failed");
    });
    let line = recv_udp(&rx);
    // local0 (16) * 8 + err (3) = 131.
    let prefix = "<131>1 ";
    assert!(line.starts_with(prefix), "{line}");
    let parts: Vec<&str> = line[prefix.len()..].splitn(5, ' ').collect();
    assert_eq!(parts.len(), 5, "{line}");
    let (ts, host, app, pid, rest) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
    humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("timestamp {ts:?}: {e}"));
    assert!(ts.ends_with('Z'), "{ts}");
    let want_host = nix::unistd::gethostname().expect("hostname");
    assert_eq!(host, want_host.to_string_lossy());
    assert_eq!(app, "ap-test");
    assert_eq!(pid, std::process::id().to_string());
    assert_eq!(rest, "- - handler failed process=\"health\" code=2");
}

#[test]
fn journal_entries_reach_the_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.sock");
    let rx = UnixDatagram::bind(&path).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let layer = journal_layer(path, "autopilot", 3).expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(attempt = 3, "lease renewal failed");
    });
    let mut buf = vec![0u8; 65_536];
    let n = rx.recv(&mut buf).expect("an entry within 5 s");
    let entry = String::from_utf8(buf[..n].to_vec()).expect("utf-8");
    assert_eq!(
        entry,
        "MESSAGE=lease renewal failed\nPRIORITY=4\nSYSLOG_IDENTIFIER=autopilot\nSYSLOG_FACILITY=3\nAUTOPILOT_FIELDS=attempt=3\n"
    );
}
