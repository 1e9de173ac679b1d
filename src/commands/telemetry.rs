//! Logging: a `tracing` subscriber writing to stderr, human-readable or one JSON object a line.
//!
//! stdout is left to command output (the `check` report), so scripts can parse it.
//!
//! JSON lines have the same top-level names whatever logged them, so collectors can index
//! them: `timestamp` (RFC 3339, UTC), `level`, `target`, `message`, then the fields of every
//! enclosing span (`site`, `stream`, `run_id`, `project`) and of the event (`rows_seen`,
//! `rows_written`, `requests`, `duration_ms`, `error`, …), inner ones winning.

use super::bars::Bars;
use crate::settings::{LogFormat, LogSettings};
use serde_json::{Map, Value};
use std::fmt;
use std::io::{IsTerminal, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// The keys every JSON line starts with, in this order.
const FIXED_KEYS: [&str; 4] = ["timestamp", "level", "target", "message"];

/// Installs the global subscriber. The filter comes from `verbosity_override` (the
/// `--log-level` flag) if given, else `RUST_LOG` if set, else `log.level`. Calling it again is
/// harmless: the first subscriber stays.
pub fn init(log: &LogSettings, verbosity_override: Option<&str>, bars: &Bars) {
    let filter = verbosity_override
        .and_then(|level| EnvFilter::try_new(level).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .or_else(|| EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr {
            bars: terminal.then(|| bars.clone()),
        });
    // The results are ignored on purpose: they only fail when a subscriber is already set,
    // as in tests that run several commands in one process.
    let _ = match log.format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .try_init(),
        LogFormat::Pretty => builder
            .compact()
            .with_ansi(terminal)
            .with_target(false)
            .try_init(),
    };
}

/// stderr; on a terminal each line is printed with the progress bars hidden, so the two do not
/// overwrite each other.
#[derive(Clone)]
struct Stderr {
    /// The bars to hide while a line is written, on a terminal.
    bars: Option<Bars>,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        self.clone()
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// The formatter hands over a whole line at once: one line, one suspension of the bars.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &self.bars {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// One JSON object per event: the fixed keys first, then span and event fields by name.
struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str(formatted.as_str()) {
                    fields.extend(span_fields);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));
        let message = fields
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let fixed = [
            Value::String(timestamp),
            Value::String(meta.level().to_string()),
            Value::String(meta.target().to_owned()),
            message,
        ];
        write!(writer, "{{")?;
        for (i, (key, value)) in FIXED_KEYS.iter().zip(fixed).enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(writer, "{comma}\"{key}\":{value}")?;
        }
        for (key, value) in fields
            .iter()
            .filter(|(k, _)| !FIXED_KEYS.contains(&k.as_str()))
        {
            write!(writer, ",{}:{value}", Value::String(key.clone()))?;
        }
        writeln!(writer, "}}")
    }
}

/// Collects an event's fields as JSON values, numbers and booleans kept as such.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}
