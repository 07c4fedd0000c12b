//! The human text format on stderr: `TIME LEVEL message key=value …`, one line per event.
//!
//! No span context: the spans around an event are the actor runtime's (`Actor{id="0.0"}`),
//! which mean nothing to an operator; every field worth reading is on the event itself.
//! Colours only on a terminal, and never with `NO_COLOR` set (<https://no-color.org>).

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether output to a stream that `is_terminal` may carry ANSI colours: only to a terminal,
/// and not when `NO_COLOR` is set to anything but the empty string.
pub fn colours(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// [`colours`] for this process's stderr.
pub fn stderr_colours() -> bool {
    colours(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The text format: timestamp (RFC 3339, UTC), level, message and the event's fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

/// The ANSI colour of a level, as the default tracing format has them.
fn colour(level: Level) -> &'static str {
    match level {
        Level::ERROR => "\x1b[31m",
        Level::WARN => "\x1b[33m",
        Level::INFO => "\x1b[32m",
        Level::DEBUG => "\x1b[34m",
        Level::TRACE => "\x1b[35m",
    }
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let ansi = writer.has_ansi_escapes();
        if ansi {
            write!(writer, "\x1b[2m")?;
        }
        SystemTime.format_time(&mut writer)?;
        if ansi {
            write!(writer, "\x1b[0m {}{level:>5}\x1b[0m ", colour(level))?;
        } else {
            write!(writer, " {level:>5} ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn logged(ansi: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || out.clone())
            .with_ansi(ansi)
            .event_format(Plain);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        let bytes = buf.0.lock().expect("buffer lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn a_line_has_time_level_message_and_fields_but_no_span() {
        let out = logged(false, || {
            let span = tracing::info_span!("Actor", id = "0.0");
            let _g = span.enter();
            tracing::warn!(
                lease = "694d8f1a2b3c4d5e",
                attempt = 3,
                "lease renewal failed"
            );
        });
        let (ts, rest) = out.split_once(' ').expect("a timestamp");
        humantime::parse_rfc3339(ts).unwrap_or_else(|e| panic!("timestamp {ts:?}: {e}"));
        assert_eq!(
            rest,
            " WARN lease renewal failed lease=\"694d8f1a2b3c4d5e\" attempt=3\n"
        );
        assert!(!out.contains("Actor"), "{out}");
        assert!(!out.contains('\x1b'), "{out}");
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some(OsStr::new(""))));
        assert!(!colours(true, Some(OsStr::new("1"))));
        assert!(!colours(false, None));
        let out = logged(true, || tracing::error!("boom"));
        assert!(out.contains("\x1b[31mERROR\x1b[0m"), "{out:?}");
    }
}
