//! Progress of long work: a bar on a terminal, a log line at most every few seconds elsewhere
//! (containers, JSON logs), each with done/total and an estimate of the time left.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a progress line is logged when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    stream: &'static str,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// A bar when stderr is a terminal and `interactive` is allowed; log lines otherwise.
    pub fn new(stream: &'static str, interactive: bool) -> Progress {
        let bar = (interactive && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(stream);
            bar
        });
        Progress {
            stream,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            bar,
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// A progress that shows nothing (tests, nested work).
    pub fn hidden(stream: &'static str) -> Progress {
        Progress::new(stream, false)
    }

    pub fn add_total(&self, n: u64) {
        let total = self.total.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        if last.elapsed() < LOG_EVERY {
            return;
        }
        *last = Instant::now();
        let total = self.total.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = done as f64 / elapsed.max(0.001);
        let eta =
            (total > done && rate > 0.0).then(|| ((total - done) as f64 / rate).round() as u64);
        tracing::info!(
            stream = self.stream,
            done,
            total,
            per_sec = rate.round() as u64,
            eta_secs = eta,
            "progress"
        );
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
