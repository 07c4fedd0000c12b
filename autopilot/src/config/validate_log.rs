//! `log:` — level, stderr format, and the outputs: stderr, syslog (RFC 5424 over a Unix
//! datagram socket, UDP or TCP) and the systemd journal.

use std::path::PathBuf;

use super::locate::Target;
use super::model::{LogConfig, LogFormat, SYSLOG_FACILITIES, SyslogConfig, SyslogTransport};
use super::raw::{RawLog, RawLogFormat, RawLogOutput, RawSyslog};
use super::validate::{Validator, root};

/// Where syslog goes without `log.syslog.address`: the local syslog daemon (or journald).
pub(crate) const DEFAULT_SYSLOG_ADDRESS: &str = "unix:/dev/log";

/// What a syslog address looks like; used in every address message.
const ADDRESS_EXPECTED: &str =
    "expected unix:/dev/log (an absolute socket path), udp://HOST:PORT or tcp://HOST:PORT";

impl Validator<'_> {
    pub(super) fn log(&mut self, raw: RawLog) -> LogConfig {
        let RawLog {
            level,
            format,
            output,
            syslog,
        } = raw;
        let level = level.unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&level) {
            self.problem(
                &root("log").key("level"),
                Target::Value,
                format!("{level:?} is not a log filter ({e}); expected a level like info or directives like autopilot=debug,info"),
            );
        }
        let format = match format {
            None | Some(RawLogFormat::Text) => LogFormat::Text,
            Some(RawLogFormat::Json) => LogFormat::Json,
        };
        let output = output.unwrap_or_else(|| vec![RawLogOutput::Stderr]);
        if output.is_empty() {
            self.problem(
                &root("log").key("output"),
                Target::Value,
                "is empty; expected one or more of stderr, syslog, journal",
            );
        }
        let wants_syslog = output.contains(&RawLogOutput::Syslog);
        let syslog = match (wants_syslog, syslog) {
            (true, raw) => Some(self.syslog(raw.unwrap_or_default())),
            (false, Some(_)) => {
                self.problem(
                    &root("log").key("syslog"),
                    Target::Key,
                    "is set but log.output does not include syslog; expected syslog in log.output, or no log.syslog",
                );
                None
            }
            (false, None) => None,
        };
        LogConfig {
            level,
            format,
            stderr: output.contains(&RawLogOutput::Stderr),
            syslog,
            journal: output.contains(&RawLogOutput::Journal),
        }
    }

    fn syslog(&mut self, raw: RawSyslog) -> SyslogConfig {
        let RawSyslog {
            address,
            facility,
            app_name,
        } = raw;
        let at = root("log").key("syslog");
        let address = address.unwrap_or_else(|| DEFAULT_SYSLOG_ADDRESS.to_owned());
        let transport = parse_address(&address).unwrap_or_else(|why| {
            self.problem(&at.key("address"), Target::Value, why);
            SyslogTransport::Unix(PathBuf::from("/dev/log"))
        });
        let facility = match facility {
            None => 3,
            Some(name) => SYSLOG_FACILITIES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| *f)
                .unwrap_or_else(|| {
                    let names: Vec<&str> = SYSLOG_FACILITIES.iter().map(|(n, _)| *n).collect();
                    self.problem(
                        &at.key("facility"),
                        Target::Value,
                        format!(
                            "unknown facility {name:?}; expected one of {}",
                            names.join(", ")
                        ),
                    );
                    3
                }),
        };
        let app_name = app_name.unwrap_or_else(|| "autopilot".to_owned());
        let printable = app_name.bytes().all(|b| (33..=126).contains(&b));
        if app_name.is_empty() || app_name.len() > 48 || !printable {
            self.problem(
                &at.key("app_name"),
                Target::Value,
                format!("{app_name:?} is not a syslog APP-NAME; expected 1 to 48 printable ASCII characters without spaces"),
            );
        }
        SyslogConfig {
            transport,
            facility,
            app_name,
        }
    }
}

/// `unix:/path`, `udp://host:port` or `tcp://host:port`; the error says what was expected.
pub(crate) fn parse_address(address: &str) -> Result<SyslogTransport, String> {
    if let Some(path) = address.strip_prefix("unix:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        return if path.starts_with('/') {
            Ok(SyslogTransport::Unix(PathBuf::from(path)))
        } else {
            Err(format!(
                "{address:?} is not an absolute socket path; {ADDRESS_EXPECTED}"
            ))
        };
    }
    let Some((scheme, rest)) = address.split_once("://") else {
        return Err(format!(
            "{address:?} names no transport; {ADDRESS_EXPECTED}"
        ));
    };
    host_port(rest).map_err(|why| format!("{address:?} {why}; {ADDRESS_EXPECTED}"))?;
    match scheme {
        "udp" => Ok(SyslogTransport::Udp(rest.to_owned())),
        "tcp" => Ok(SyslogTransport::Tcp(rest.to_owned())),
        other => Err(format!(
            "{address:?} has the unknown transport {other:?}; {ADDRESS_EXPECTED}"
        )),
    }
}

/// `host:port` or `[v6]:port`, port 1–65535.
fn host_port(s: &str) -> Result<(), &'static str> {
    let (host, port) = s.rsplit_once(':').ok_or("has no port")?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6
            .strip_suffix(']')
            .filter(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
            .ok_or("has a malformed IPv6 address")?,
        None => host,
    };
    let valid_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !valid_host {
        return Err("has no valid host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("has no valid port (1 to 65535)"),
    }
}
