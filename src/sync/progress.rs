//! Progress of long work: a bar on a terminal, a log line at most every few seconds elsewhere
//! (containers, JSON logs), each with done/total and an estimate of the time left.
//!
//! Bars live in one process-wide [`MultiProgress`], and the log writer of
//! [`crate::telemetry`] prints through [`suspend_bars`], so a log line never tears a bar.
//! Every advance is also noted per stream ([`last_activity`]): the daemon's stall check reads
//! it to tell a long run that is moving from one that hangs.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a progress line is logged when there is no terminal, in seconds
/// (`log.progress_interval_secs`).
static LOG_EVERY_SECS: AtomicU64 = AtomicU64::new(10);

/// The bars on stderr; drawing is off by itself when stderr is not a terminal.
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// When each stream last advanced, for the stall check.
static ACTIVITY: Mutex<BTreeMap<&'static str, Instant>> = Mutex::new(BTreeMap::new());

/// Sets how often progress lines are logged without a terminal (at least every second).
pub fn set_log_interval(every: Duration) {
    LOG_EVERY_SECS.store(every.as_secs().max(1), Ordering::Relaxed);
}

/// Runs `write` with the bars hidden, then draws them again below what it printed.
pub fn suspend_bars<R>(write: impl FnOnce() -> R) -> R {
    BARS.suspend(write)
}

/// When a run of `stream` last read or wrote something, if one did in this process.
pub fn last_activity(stream: &str) -> Option<Instant> {
    let activity = ACTIVITY.lock().unwrap_or_else(PoisonError::into_inner);
    activity.get(stream).copied()
}

fn note_activity(stream: &'static str) {
    let mut activity = ACTIVITY.lock().unwrap_or_else(PoisonError::into_inner);
    activity.insert(stream, Instant::now());
}

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
            let bar = BARS.add(ProgressBar::new(0));
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
        note_activity(self.stream);
        let total = self.total.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn advance(&self, n: u64) {
        note_activity(self.stream);
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
        let every = Duration::from_secs(LOG_EVERY_SECS.load(Ordering::Relaxed));
        if last.elapsed() < every {
            return;
        }
        *last = Instant::now();
        let elapsed = self.started.elapsed();
        match known_total(self.total.load(Ordering::Relaxed), done) {
            Some(total) => {
                let (per_sec, eta_secs) = rate_and_eta(done, total, elapsed);
                tracing::info!(
                    stream = self.stream,
                    done,
                    total,
                    per_sec,
                    eta_secs,
                    "progress"
                );
            }
            // Some listings do not say how long they are (users): no total, no estimate.
            None => {
                let (per_sec, _) = rate_and_eta(done, 0, elapsed);
                tracing::info!(stream = self.stream, done, per_sec, "progress");
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            BARS.remove(bar);
        }
    }
}

/// The total to show beside `done`: none when no total was given; never less than `done`
/// (Jira's counts are estimates, and work found during a run adds to them).
fn known_total(total: u64, done: u64) -> Option<u64> {
    (total > 0).then(|| total.max(done))
}

/// Items per second so far, and the seconds left at that rate (none when the total is reached
/// or nothing is done yet).
fn rate_and_eta(done: u64, total: u64, elapsed: Duration) -> (u64, Option<u64>) {
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = (total > done && rate > 0.0).then(|| ((total - done) as f64 / rate).round() as u64);
    (rate.round() as u64, eta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_what_is_left_at_the_rate_so_far() {
        assert_eq!(
            rate_and_eta(50, 150, Duration::from_secs(10)),
            (5, Some(20))
        );
        assert_eq!(rate_and_eta(150, 150, Duration::from_secs(10)), (15, None));
        assert_eq!(rate_and_eta(0, 150, Duration::from_secs(10)), (0, None));
    }

    #[test]
    fn a_total_is_shown_only_when_known_and_never_below_what_is_done() {
        assert_eq!(known_total(0, 1100), None);
        assert_eq!(known_total(150, 50), Some(150));
        assert_eq!(known_total(150, 180), Some(180));
    }

    #[test]
    fn advancing_a_stream_notes_its_activity() {
        let before = Instant::now();
        Progress::hidden("progress-test").advance(3);
        assert!(last_activity("progress-test").is_some_and(|at| at >= before));
        assert_eq!(last_activity("progress-test-never"), None);
    }
}
