//! A tracing event as a record for syslog (RFC 5424) or the journal (native protocol): the
//! message and its fields (the event's and its spans', as `key=value`), the level and the time.

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use tracing::Level;
use tracing::field::{Field, Visit};

/// Longest record sent; longer messages are cut at a character boundary. A UDP datagram
/// holds up to 65,507 bytes, journald datagrams are limited by the socket buffer.
pub const MAX_RECORD: usize = 16 * 1024;

/// The text of one event.
#[derive(Debug, Default)]
pub struct Text {
    /// The `message` field.
    pub message: String,
    /// Every other field, ` key=value` each (span fields first, outermost span first).
    pub fields: String,
}

impl Text {
    /// `message key=value …`.
    pub fn line(&self) -> String {
        let mut s = self.message.clone();
        if !self.fields.is_empty() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(self.fields.trim_start());
        }
        s
    }
}

/// Collects fields into a [`Text`].
pub struct Collect<'a>(pub &'a mut Text);

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.message.push_str(value);
        } else {
            let _ = write!(self.0.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0.message, "{value:?}");
        } else {
            let _ = write!(self.0.fields, " {}={value:?}", field.name());
        }
    }
}

/// RFC 5424 severity of a tracing level: ERROR err (3), WARN warning (4), INFO
/// informational (6), DEBUG and TRACE debug (7).
pub fn severity(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The fixed parts of every syslog message.
#[derive(Clone, Debug)]
pub struct SyslogHeader {
    /// The facility's number.
    pub facility: u8,
    /// HOSTNAME, already made valid (printable ASCII, at most 255, `-` when unknown).
    pub hostname: String,
    /// APP-NAME (validated by the config).
    pub app_name: String,
    /// PROCID.
    pub pid: u32,
}

impl SyslogHeader {
    /// The header for this host and process.
    pub fn new(facility: u8, app_name: &str) -> Self {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            facility,
            hostname: header_field(&host, 255),
            app_name: header_field(app_name, 48),
            pid: std::process::id(),
        }
    }

    /// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG` (no MSGID, no structured data; the
    /// message is sent without a BOM, as RFC 5424's MSG-ANY).
    pub fn format(&self, level: Level, at: SystemTime, msg: &str) -> Vec<u8> {
        let pri = u16::from(self.facility) * 8 + u16::from(severity(level));
        let mut out = format!(
            "<{pri}>1 {} {} {} {} - - ",
            humantime::format_rfc3339_micros(at),
            self.hostname,
            self.app_name,
            self.pid
        );
        out.push_str(msg);
        truncate(&mut out, MAX_RECORD);
        out.into_bytes()
    }
}

/// A header field: printable ASCII only (others become `?`), at most `max` bytes, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// A journal entry in the native protocol (`systemd.journal-fields(7)`): `MESSAGE`,
/// `PRIORITY`, `SYSLOG_IDENTIFIER`, `SYSLOG_FACILITY`, and the fields as `AUTOPILOT_FIELDS`.
/// Values with a newline use the binary form (name, newline, 64-bit little-endian length, value).
pub fn journal_entry(identifier: &str, facility: u8, level: Level, text: &Text) -> Vec<u8> {
    let mut out = Vec::new();
    let mut message = text.message.clone();
    truncate(&mut message, MAX_RECORD);
    put(&mut out, "MESSAGE", &message);
    put(&mut out, "PRIORITY", &severity(level).to_string());
    put(&mut out, "SYSLOG_IDENTIFIER", identifier);
    put(&mut out, "SYSLOG_FACILITY", &facility.to_string());
    let mut fields = text.fields.trim_start().to_owned();
    truncate(&mut fields, MAX_RECORD);
    if !fields.is_empty() {
        put(&mut out, "AUTOPILOT_FIELDS", &fields);
    }
    out
}

fn put(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn header() -> SyslogHeader {
        SyslogHeader {
            facility: 19,
            hostname: "db-1".into(),
            app_name: "autopilot".into(),
            pid: 42,
        }
    }

    #[test]
    fn rfc5424_line() {
        let at = UNIX_EPOCH + Duration::from_micros(1_767_225_600_123_456);
        let line = header().format(Level::WARN, at, "lease renewal failed attempt=3");
        assert_eq!(
            String::from_utf8(line).expect("utf-8"),
            "<156>1 2026-01-01T00:00:00.123456Z db-1 autopilot 42 - - lease renewal failed attempt=3"
        );
    }

    #[test]
    fn pri_is_facility_times_8_plus_severity() {
        let h = SyslogHeader {
            facility: 3,
            ..header()
        };
        for (level, pri) in [
            (Level::ERROR, "<27>"),
            (Level::WARN, "<28>"),
            (Level::INFO, "<30>"),
            (Level::DEBUG, "<31>"),
            (Level::TRACE, "<31>"),
        ] {
            let line = h.format(level, SystemTime::now(), "m");
            assert!(line.starts_with(pri.as_bytes()), "{level}: {pri}");
        }
    }

    #[test]
    fn header_fields_are_printable_and_bounded() {
        assert_eq!(header_field("my host", 255), "my?host");
        assert_eq!(header_field("", 255), "-");
        assert_eq!(header_field(&"h".repeat(300), 255).len(), 255);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let line = header().format(Level::INFO, SystemTime::now(), &"é".repeat(MAX_RECORD));
        assert!(line.len() <= MAX_RECORD);
        assert!(String::from_utf8(line).is_ok());
    }

    #[test]
    fn journal_fields_plain_and_binary() {
        let text = Text {
            message: "two\nlines".into(),
            fields: " process=\"health\"".into(),
        };
        let entry = journal_entry("autopilot", 3, Level::ERROR, &text);
        let mut want = b"MESSAGE\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\nPRIORITY=3\nSYSLOG_IDENTIFIER=autopilot\nSYSLOG_FACILITY=3\nAUTOPILOT_FIELDS=process=\"health\"\n");
        assert_eq!(entry, want);
    }
}
