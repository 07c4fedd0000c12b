//! Log output: text or JSON on stderr, and optionally RFC 5424 syslog (Unix datagram socket,
//! UDP, or TCP with octet counting) and the systemd journal (native protocol). `RUST_LOG`
//! overrides the configured level for every output.
//!
//! - `record.rs`: an event as a syslog line or a journal entry;
//! - `sink.rs`: the bounded, non-blocking queue and the I/O thread behind each extra output;
//! - `text.rs`: the human text format on stderr (no span context, colours only on a terminal).
//!
//! A receiver that is slow, down or missing never blocks or stops the agent: its records are
//! dropped and counted (`autopilot_log_records_dropped_total{output}`).

mod record;
mod sink;
mod text;

use std::path::PathBuf;
use std::time::SystemTime;

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, SyslogConfig, SyslogTransport};

pub use record::{MAX_RECORD, SyslogHeader};
pub use sink::{Sink, Target};

/// The journal's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Install the global tracing subscriber. Call once, before anything logs. An extra output
/// whose I/O thread cannot start is reported on stderr and left out.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let stderr = log.stderr.then(|| {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(text::stderr_colours());
        match log.format {
            LogFormat::Text => fmt.event_format(text::Plain).boxed(),
            // The spans are the actor runtime's: nothing an operator or a log pipeline reads.
            LogFormat::Json => fmt
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .boxed(),
        }
    });
    let syslog = log.syslog.as_ref().and_then(|s| {
        syslog_layer(s)
            .inspect_err(|e| eprintln!("autopilot: cannot start the syslog output: {e}"))
            .ok()
    });
    let journal = log.journal.then(|| {
        let identifier = log.syslog.as_ref().map_or("autopilot", |s| &s.app_name);
        let facility = log.syslog.as_ref().map_or(3, |s| s.facility);
        journal_layer(PathBuf::from(JOURNAL_SOCKET), identifier, facility)
            .inspect_err(|e| eprintln!("autopilot: cannot start the journal output: {e}"))
            .ok()
    });
    // `try_init` fails only when a subscriber is already installed (tests); keep that one.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(syslog)
        .with(journal.flatten())
        .try_init();
}

/// Exports the drop counter of each configured extra output at 0, so the first drop is an
/// increase Prometheus sees. Call once the metrics recorder is installed.
pub fn export_metrics(log: &LogConfig) {
    for (on, output) in [(log.syslog.is_some(), "syslog"), (log.journal, "journal")] {
        if on {
            metrics::counter!("autopilot_log_records_dropped_total", "output" => output)
                .absolute(0);
        }
    }
}

/// The syslog output configured by `cfg`.
pub fn syslog_layer(cfg: &SyslogConfig) -> std::io::Result<ForwardLayer> {
    let target = match &cfg.transport {
        SyslogTransport::Unix(p) => Target::Unix(p.clone()),
        SyslogTransport::Udp(a) => Target::Udp(a.clone()),
        SyslogTransport::Tcp(a) => Target::Tcp(a.clone()),
    };
    Ok(ForwardLayer {
        encoding: Encoding::Syslog(SyslogHeader::new(cfg.facility, &cfg.app_name)),
        sink: Sink::spawn("syslog", target)?,
    })
}

/// The journal output, sending to `socket` (normally [`JOURNAL_SOCKET`]).
pub fn journal_layer(
    socket: PathBuf,
    identifier: &str,
    facility: u8,
) -> std::io::Result<ForwardLayer> {
    Ok(ForwardLayer {
        encoding: Encoding::Journal {
            identifier: identifier.to_owned(),
            facility,
        },
        sink: Sink::spawn("journal", Target::Unix(socket))?,
    })
}

/// How a [`ForwardLayer`] encodes events.
#[derive(Debug)]
enum Encoding {
    Syslog(SyslogHeader),
    Journal { identifier: String, facility: u8 },
}

/// A tracing layer that encodes every event it sees and queues it on a [`Sink`].
#[derive(Debug)]
pub struct ForwardLayer {
    /// Syslog line or journal entry.
    encoding: Encoding,
    /// Where the encoded records go.
    sink: Sink,
}

/// A span's fields as ` key=value …`, kept in the span's extensions.
struct SpanFields(record::Text);

impl<S> Layer<S> for ForwardLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // The actor runtime's spans (`Actor` with its id and name) say nothing to a reader.
        if attrs.metadata().target().starts_with("ractor") {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if ext.get_mut::<SpanFields>().is_none() {
            let mut text = record::Text::default();
            attrs.record(&mut record::Collect(&mut text));
            ext.insert(SpanFields(text));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
            values.record(&mut record::Collect(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut text = record::Text::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    text.fields.push_str(&f.0.fields);
                }
            }
        }
        event.record(&mut record::Collect(&mut text));
        let level = *event.metadata().level();
        let bytes = match &self.encoding {
            Encoding::Syslog(h) => h.format(level, SystemTime::now(), &text.line()),
            Encoding::Journal {
                identifier,
                facility,
            } => record::journal_entry(identifier, *facility, level, &text),
        };
        self.sink.send(bytes);
    }
}

#[cfg(test)]
mod tests;
