//! The daemon's self-knowledge for operators: a [`Monitor`] that the scheduler feeds (role,
//! heartbeat, each stream's schedule and runs) and that the HTTP listener reads for `/healthz`,
//! `/readyz` and `/metrics`, plus the stall check that logs a stalled stream once.
//!
//! Counters that other parts keep anyway are read at scrape time, not mirrored: the Jira
//! clients' cumulative request counters, and the database's view of each stream (last success,
//! cursor lag, rows) from the queries of `jira-sync status`. Labels are bounded: streams are
//! the closed set of the registry's stream names, endpoints the fixed paths jira-sync calls with ids collapsed,
//! statuses are classes.
//!
//! The exposition is written by `prometheus-client` (the Prometheus org's crate) in the
//! OpenMetrics text format. It fits because the values are read at scrape time: each scrape
//! gathers them (some asynchronously), hands them to a `Collector` in a registry of its own and
//! encodes it, so there is no global recorder and several daemons can live in one test process.
//! Only the run counters and the run-duration histogram are live `prometheus-client` metrics,
//! owned by the monitor.

mod families;

use crate::engine::status::StatusReport;
use crate::engine::{OutcomeStatus, StreamOutcome, failure_of};
use crate::jira::JiraClient;
use crate::settings::Settings;
use crate::store::Store;
use chrono::{DateTime, Utc};
use families::{RunMetrics, Scrape};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The media type of the OpenMetrics text that [`Monitor::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long the database's view of the streams is reused between scrapes.
const STATUS_MAX_AGE: Duration = Duration::from_secs(10);

/// What the process is doing, as far as syncing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Checking the Jira connection, connecting to and migrating the database.
    Starting,
    /// Waiting for the site's writer lease, held by another process.
    Standby,
    /// Holding the lease and running the schedule.
    Writer,
    /// A signal came; runs are being stopped.
    Stopping,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Writer => "writer",
            Role::Stopping => "stopping",
        }
    }
}

/// What the listener reads besides the monitor's own state, known once start-up is done.
#[derive(Clone)]
pub struct Sources {
    /// The site's client, and the Admin API's when organization events are configured.
    pub clients: Vec<JiraClient>,
    pub store: Store,
}

/// Shared by the scheduler (writes) and the listener (reads).
pub struct Monitor {
    settings: Settings,
    stall_intervals: u32,
    started: Instant,
    /// Milliseconds from `started` to the scheduler's last heartbeat.
    heartbeat_ms: AtomicU64,
    state: Mutex<State>,
    /// Run counts, sizes and durations over the process's life.
    runs: RunMetrics,
    /// When each stream last read or wrote something, for the stall check.
    activity: Mutex<BTreeMap<&'static str, Instant>>,
    sources: OnceLock<Sources>,
    /// The last `jira-sync status` report (`None` when the database could not be read) and
    /// when it was taken.
    status: tokio::sync::Mutex<Option<(Instant, Option<StatusReport>)>>,
}

#[derive(Debug)]
struct State {
    role: Role,
    /// Why the last contact with Jira says the connection is broken; `None` while it works.
    jira_problem: Option<String>,
    /// The streams of the current lease holding, as the scheduler set them up.
    streams: BTreeMap<&'static str, StreamState>,
}

#[derive(Debug)]
struct StreamState {
    interval: Duration,
    /// When the schedule began; a stream never stalls sooner than its allowance after it.
    scheduled_at: DateTime<Utc>,
    /// The last run that succeeded or was skipped (it did all it could).
    last_completed: Option<DateTime<Utc>>,
    running_since: Option<Instant>,
    last_error: Option<String>,
    /// Whether the stall was already logged.
    stalled: bool,
}

/// A stream that has not succeeded for too long, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub stream: &'static str,
    pub reason: String,
}

impl Monitor {
    pub fn new(settings: &Settings) -> Monitor {
        Monitor {
            settings: settings.clone(),
            stall_intervals: settings.server.stall_intervals,
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            state: Mutex::new(State {
                role: Role::Starting,
                jira_problem: None,
                streams: BTreeMap::new(),
            }),
            runs: RunMetrics::default(),
            activity: Mutex::new(BTreeMap::new()),
            sources: OnceLock::new(),
            status: tokio::sync::Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A run of `stream` read or wrote something just now.
    pub fn note_activity(&self, stream: &'static str) {
        let mut activity = self.activity.lock().unwrap_or_else(PoisonError::into_inner);
        activity.insert(stream, Instant::now());
    }

    /// When a run of `stream` last read or wrote something, if one did in this process.
    pub fn last_activity(&self, stream: &str) -> Option<Instant> {
        let activity = self.activity.lock().unwrap_or_else(PoisonError::into_inner);
        activity.get(stream).copied()
    }

    /// The scheduler is alive.
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// How long ago the scheduler last beat.
    pub fn since_heartbeat(&self) -> Duration {
        let at = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(at)
    }

    pub fn role(&self) -> Role {
        self.state().role
    }

    pub fn set_role(&self, role: Role) {
        self.state().role = role;
    }

    /// Start-up is done: the clients and the database can be read from now on.
    pub fn attach(&self, sources: Sources) {
        let _ = self.sources.set(sources);
    }

    pub fn sources(&self) -> Option<&Sources> {
        self.sources.get()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Why the Jira connection is broken, if the last contact says so.
    pub fn jira_problem(&self) -> Option<String> {
        self.state().jira_problem.clone()
    }

    /// A new lease holding: these streams run from now on, each last done at `last_completed`.
    pub fn schedule(&self, streams: &[(&'static str, Duration, Option<DateTime<Utc>>)]) {
        let now = Utc::now();
        let mut state = self.state();
        state.streams = streams
            .iter()
            .map(|&(stream, interval, last_completed)| {
                let s = StreamState {
                    interval,
                    scheduled_at: now,
                    last_completed,
                    running_since: None,
                    last_error: None,
                    stalled: false,
                };
                (stream, s)
            })
            .collect();
    }

    pub fn run_started(&self, stream: &'static str) {
        if let Some(s) = self.state().streams.get_mut(&stream) {
            s.running_since = Some(Instant::now());
        }
    }

    /// Books a finished run, and what it says about the Jira connection.
    pub fn run_finished(&self, outcome: &StreamOutcome) {
        self.runs.book(outcome);
        let mut state = self.state();
        let error = match &outcome.status {
            OutcomeStatus::Succeeded | OutcomeStatus::Skipped(_) => None,
            OutcomeStatus::Failed(err) => Some(err),
        };
        match error {
            None => state.jira_problem = None,
            Some(err) if breaks_connection(err) => state.jira_problem = Some(format!("{err:#}")),
            Some(_) => {}
        }
        if let Some(s) = state.streams.get_mut(&outcome.stream) {
            s.running_since = None;
            match error {
                None => {
                    s.last_completed = Some(Utc::now());
                    s.last_error = None;
                }
                Some(err) => s.last_error = Some(format!("{err:#}")),
            }
        }
    }

    /// The streams that are stalled now.
    pub fn stalls(&self) -> Vec<Stall> {
        let now = Utc::now();
        let state = self.state();
        state
            .streams
            .iter()
            .filter_map(|(&stream, s)| {
                let reason = self.stall_of(stream, s, now)?;
                Some(Stall { stream, reason })
            })
            .collect()
    }

    /// Logs each stream that stalled since the last call at ERROR, once, and each that
    /// recovered at INFO.
    pub fn log_stall_changes(&self) {
        let now = Utc::now();
        let mut state = self.state();
        let streams: Vec<&'static str> = state.streams.keys().copied().collect();
        for stream in streams {
            let Some(s) = state.streams.get(&stream) else {
                continue;
            };
            let stall = self.stall_of(stream, s, now);
            let was = s.stalled;
            if let Some(s) = state.streams.get_mut(&stream) {
                s.stalled = stall.is_some();
            }
            match (was, stall) {
                (false, Some(reason)) => tracing::error!(
                    stream = %stream,
                    "{reason}; /readyz answers 503 until it succeeds again"
                ),
                (true, None) => tracing::info!(stream = %stream, "stream no longer stalled"),
                _ => {}
            }
        }
    }

    /// Why `stream` is stalled, or `None`: it completed a run within `stall_intervals` of its
    /// interval (counted from the schedule's start at the earliest), or a run is in progress
    /// and made progress within that time.
    fn stall_of(
        &self,
        stream: &'static str,
        s: &StreamState,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let allowed = s.interval.saturating_mul(self.stall_intervals);
        let since = s
            .last_completed
            .map_or(s.scheduled_at, |t| t.max(s.scheduled_at));
        let quiet = (now - since).to_std().unwrap_or_default();
        if quiet <= allowed {
            return None;
        }
        if let Some(running) = s.running_since {
            let moved = self
                .last_activity(stream)
                .is_some_and(|at| at.elapsed() <= allowed);
            if moved || running.elapsed() <= allowed {
                return None;
            }
        }
        let last = match s.last_completed {
            Some(at) => format!("last at {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
            None => "none since the daemon took the lease".to_owned(),
        };
        let error = s
            .last_error
            .as_deref()
            .map(|e| format!("; last error: {e}"))
            .unwrap_or_default();
        Some(format!(
            "stream {stream} is stalled: no successful run for {}s ({} intervals of {}s; {last}){error}",
            quiet.as_secs(),
            self.stall_intervals,
            s.interval.as_secs()
        ))
    }

    /// The database's view of the streams, at most [`STATUS_MAX_AGE`] old; `None` when the
    /// database cannot be read.
    pub async fn status(&self) -> Option<StatusReport> {
        let mut cached = self.status.lock().await;
        if let Some((at, report)) = cached.as_ref()
            && at.elapsed() < STATUS_MAX_AGE
        {
            return report.clone();
        }
        let read = crate::engine::status::collect(&self.settings);
        let report = match tokio::time::timeout(Duration::from_secs(5), read).await {
            Ok(Ok(report)) => Some(report),
            Ok(Err(err)) => {
                tracing::debug!(error = %format!("{err:#}"), "metrics: cannot read the streams' status");
                None
            }
            Err(_) => None,
        };
        *cached = Some((Instant::now(), report.clone()));
        report
    }

    /// The `/metrics` text, of media type [`CONTENT_TYPE`].
    pub async fn render(&self, ready: bool) -> String {
        let status = self.status().await;
        encode(self.scrape(ready, status))
    }

    /// What one scrape shows: `ready` and the database's view as read just before, the rest
    /// as it is now.
    fn scrape(&self, ready: bool, status: Option<StatusReport>) -> Scrape {
        let http = self
            .sources()
            .map(|sources| families::sum(sources.clients.iter().map(JiraClient::metrics)));
        let now = Utc::now();
        let state = self.state();
        let streams = state
            .streams
            .iter()
            .map(|(&stream, s)| {
                let stalled = self.stall_of(stream, s, now).is_some();
                (stream, s.running_since.is_some(), stalled)
            })
            .collect();
        Scrape {
            ready,
            writer: state.role == Role::Writer,
            http,
            runs: self.runs.clone(),
            streams,
            status,
        }
    }
}

/// The exposition of one scrape: its families in a registry of their own, then `# EOF`.
fn encode(scrape: Scrape) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!(error = %err, "metrics: cannot encode the exposition");
    }
    text
}

/// Whether a run's failure says the Jira connection itself is broken (credentials, permission,
/// the site unreachable), rather than one run going wrong.
fn breaks_connection(err: &anyhow::Error) -> bool {
    failure_of(err).breaks_connection()
}

#[cfg(test)]
mod tests;
