//! Logging: a `tracing` subscriber writing to stderr, human-readable or one JSON object a line.
//!
//! stdout is left to command output (the `check` report), so scripts can parse it.

use crate::config::{LogFormat, LogSettings};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter comes from `verbosity_override` (the
/// `--log-level` flag) if given, else `RUST_LOG` if set, else `log.level`. Calling it again is
/// harmless: the first subscriber stays.
pub fn init(log: &LogSettings, verbosity_override: Option<&str>) {
    let filter = verbosity_override
        .and_then(|level| EnvFilter::try_new(level).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .or_else(|| EnvFilter::try_new(&log.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The results are ignored on purpose: they only fail when a subscriber is already set,
    // as in tests that run several commands in one process.
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init(),
    };
}
