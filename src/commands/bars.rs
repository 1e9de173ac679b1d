//! Progress on the command line: a bar per running stream on a terminal, a progress line every
//! `log.progress_interval_secs` otherwise ([`LogLines`]). The bars live in one
//! [`MultiProgress`]; the log writer ([`super::telemetry`]) prints through [`Bars::suspend`],
//! so a log line never tears a bar.

use crate::engine::progress::{Counts, LogLines, Observer};
use crate::streams::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// The terminal's bars; cheap to clone (clones draw into the same bars).
#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
    /// How often a progress line is logged where there are no bars.
    every: Duration,
}

impl Bars {
    /// Bars on stderr (drawing is off by itself when stderr is not a terminal).
    pub fn new(every: Duration) -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            every: every.max(Duration::from_secs(1)),
        }
    }

    /// Runs `write` with the bars hidden, then draws them again below what it printed.
    pub fn suspend<R>(&self, write: impl FnOnce() -> R) -> R {
        self.multi.suspend(write)
    }

    /// Bars when stderr is a terminal and `interactive` allows them; log lines otherwise.
    pub fn observer(&self, interactive: bool) -> Arc<dyn Observer> {
        if interactive && std::io::stderr().is_terminal() {
            Arc::new(self.clone())
        } else {
            Arc::new(LogLines { every: self.every })
        }
    }
}

impl Observer for Bars {
    fn start(&self, stream: &'static str) -> Box<dyn Progress> {
        let bar = self.multi.add(ProgressBar::new(0));
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(stream);
        Box::new(Bar {
            bar,
            multi: self.multi.clone(),
            counts: Counts::new(stream, None),
        })
    }
}

/// One run's bar.
struct Bar {
    bar: ProgressBar,
    multi: MultiProgress,
    counts: Counts,
}

impl Progress for Bar {
    fn add_total(&self, n: u64) {
        self.counts.add_total(n);
        self.bar.set_length(self.counts.total());
    }

    fn advance(&self, n: u64) {
        self.counts.advance(n);
        self.bar.inc(n);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        self.multi.remove(&self.bar);
    }
}
