//! What a run shows of its progress is up to its caller: an [`Observer`] hands each run a
//! [`Progress`]. [`LogLines`] logs a progress line at most every few seconds (containers, JSON
//! logs), with done/total and an estimate of the time left; the command line draws bars on a
//! terminal instead, and the daemon also notes each stream's activity for its stall check.

use crate::streams::Progress;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Gives each run the progress it reports to.
pub trait Observer: Send + Sync {
    /// The progress of a run of `stream` that starts now.
    fn start(&self, stream: &'static str) -> Box<dyn Progress>;
}

/// Shows nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn start(&self, _stream: &'static str) -> Box<dyn Progress> {
        Box::new(crate::streams::NoProgress)
    }
}

/// Logs a progress line per run at most every `every`.
#[derive(Debug, Clone, Copy)]
pub struct LogLines {
    pub every: Duration,
}

impl Observer for LogLines {
    fn start(&self, stream: &'static str) -> Box<dyn Progress> {
        Box::new(Counts::new(stream, Some(self.every)))
    }
}

/// A run's done and total, logged at most every `every` (never, without).
pub struct Counts {
    stream: &'static str,
    pub total: AtomicU64,
    pub done: AtomicU64,
    started: Instant,
    every: Option<Duration>,
    last_log: Mutex<Instant>,
}

impl Counts {
    pub fn new(stream: &'static str, every: Option<Duration>) -> Counts {
        Counts {
            stream,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            started: Instant::now(),
            every,
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// The total so far (never less than what is done).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn log(&self, done: u64) {
        let Some(every) = self.every else { return };
        let Ok(mut last) = self.last_log.lock() else {
            return;
        };
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
}

impl Progress for Counts {
    fn add_total(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.log(done);
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
}
