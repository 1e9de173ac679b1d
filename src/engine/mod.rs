//! The sync engine: [`Engine::run_once`] runs one stream once (one row in `jira.sync_runs`, an
//! outcome that says what happened); [`runner`] runs several at once, the follow-ups after
//! their leader. Loops around it (the `sync` command, the daemon's scheduler) stay trivial.
//! The engine keeps no process-global state: what a run shows of its progress is the
//! [`Observer`] its caller passes in. Also here, because commands and the daemon both need
//! them: connecting ([`connect`]), the connection check ([`check`]) and the status report
//! ([`status`]).

pub mod check;
pub mod connect;
pub mod progress;
pub mod runner;
pub mod status;

use crate::failure::Failure;
use crate::jira::JiraError;
use crate::jira::metrics::{RequestMetrics, RunScope};
use crate::jira::model::Myself;
use crate::settings::{ConfigError, Settings};
use crate::store::Store;
use crate::store::runs::{HttpRecord, RunRecord};
use crate::streams::{
    Mode, ProjectFilter, Registry, Run, RunCounters, Stream, StreamContext, StreamStatus,
};
use anyhow::Context;
use progress::Observer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The error of a run stopped by [`Engine::run_once_with`]'s token; recorded in
/// `jira.sync_runs` with this message.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by shutdown or by the loss of the writer lease; the cursor stays at the last \
     committed page"
)]
pub struct Interrupted;

/// Rows an incremental run writes to a table before its statistics are refreshed at once.
const BULK_ROWS: u64 = 1000;

/// How long a run may still take to record its end once the daemon stops.
const RECORD_GRACE: Duration = Duration::from_secs(5);

/// The result of one stream run.
#[derive(Debug)]
pub struct StreamOutcome {
    pub stream: &'static str,
    pub mode: Mode,
    pub status: OutcomeStatus,
    pub rows_seen: u64,
    pub rows_written: u64,
    /// Records the run set aside in `jira.quarantine`.
    pub set_aside: u64,
    /// Rows of other tables written with the stream's own (the records of issues): per
    /// table, rows read and rows written.
    pub tables: Vec<(&'static str, u64, u64)>,
    pub requests: u64,
    pub duration: Duration,
    /// What the run's HTTP requests did (retries, 429s, waits), by endpoint and status class.
    pub http: RequestMetrics,
}

#[derive(Debug)]
pub enum OutcomeStatus {
    Succeeded,
    Skipped(String),
    Failed(anyhow::Error),
}

impl StreamOutcome {
    pub fn failed(&self) -> bool {
        matches!(self.status, OutcomeStatus::Failed(_))
    }

    /// One line for people: `issues  full  succeeded  20000 rows (20000 written)  212 requests  8.1s`.
    pub fn summary(&self) -> String {
        let status = match &self.status {
            OutcomeStatus::Succeeded => "succeeded".to_string(),
            OutcomeStatus::Skipped(why) => format!("skipped: {why}"),
            OutcomeStatus::Failed(err) => format!("FAILED: {err:#}"),
        };
        let aside = match self.set_aside {
            0 => String::new(),
            n => format!(", {n} set aside in jira.quarantine"),
        };
        // The records of issues written with them: `; with them jira.comments 310 (310 written)`.
        let with = match self.tables.is_empty() {
            true => String::new(),
            false => {
                let tables: Vec<String> = self
                    .tables
                    .iter()
                    .map(|(table, rows, written)| format!("{table} {rows} ({written} written)"))
                    .collect();
                format!("; with them {}", tables.join(", "))
            }
        };
        format!(
            "{:<18} {:<11} {:>7} rows ({} written{aside}) {:>6} requests {:>7.1}s  {status}{with}",
            self.stream,
            self.mode.name(),
            self.rows_seen,
            self.rows_written,
            self.requests,
            self.duration.as_secs_f64(),
        )
    }

    /// A run that did not happen, with the reason.
    pub fn skipped(stream: &'static str, why: String) -> StreamOutcome {
        StreamOutcome {
            stream,
            mode: Mode::Full,
            status: OutcomeStatus::Skipped(why),
            rows_seen: 0,
            rows_written: 0,
            set_aside: 0,
            tables: Vec::new(),
            requests: 0,
            duration: Duration::ZERO,
            http: RequestMetrics::default(),
        }
    }
}

/// What kind of failure `err` is: the first error in its chain that has a kind decides.
pub fn failure_of(err: &anyhow::Error) -> Failure {
    for cause in err.chain() {
        if cause.is::<ConfigError>() {
            return Failure::Config;
        }
        if let Some(jira) = cause.downcast_ref::<JiraError>() {
            return jira.failure();
        }
        if let Some(kind) = crate::store::failure_of(cause) {
            return kind;
        }
    }
    Failure::Other
}

/// Runs the streams of one site.
pub struct Engine {
    ctx: StreamContext,
    registry: Registry,
    observer: Arc<dyn Observer>,
}

impl Engine {
    /// Connects to the site (the client of the configured auth mode), reads the API user's
    /// time zone (JQL dates are read in it), and builds every stream.
    pub async fn new(
        settings: &Settings,
        store: Store,
        observer: Arc<dyn Observer>,
    ) -> anyhow::Result<Engine> {
        Engine::with_registry(settings, store, Registry::new(settings)?, observer).await
    }

    /// [`Engine::new`] with the streams of `registry`.
    pub async fn with_registry(
        settings: &Settings,
        store: Store,
        registry: Registry,
        observer: Arc<dyn Observer>,
    ) -> anyhow::Result<Engine> {
        let client = connect::client(settings, Some(&store)).await?;
        // Who we are, before any stream runs: a revoked credential fails here, and the
        // answer's `Date` tells the site's clock.
        let _: Myself = client
            .get(&client.rest("myself"), &[])
            .await
            .context("cannot read the API user's profile (/myself)")?;
        Ok(Engine {
            ctx: StreamContext {
                client,
                store,
                site: settings.site(),
                projects: ProjectFilter::from_settings(settings),
                max_in_flight: settings.rate_limit.max_in_flight,
            },
            registry,
            observer,
        })
    }

    pub fn context(&self) -> &StreamContext {
        &self.ctx
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The stream named `name`, or an error listing the streams there are.
    pub fn stream(&self, name: &str) -> anyhow::Result<&Arc<dyn Stream>> {
        self.registry.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown stream `{name}`: the streams are {}",
                self.registry.names().join(", ")
            )
        })
    }

    /// Runs `stream` once: full when asked or when it has no checkpoint, else incremental.
    pub async fn run_once(&self, stream: &str, force_full: bool) -> StreamOutcome {
        self.run(stream, force_full, None).await
    }

    /// [`Engine::run_once`] for the daemon: when `cancel` fires, the stream's work is dropped
    /// where it stands, so an open page transaction rolls back and the checkpoint stays with
    /// the last committed page; the run is recorded as failed ([`Interrupted`]). Failures are
    /// logged as warnings, since the scheduler retries them, unless only the operator can fix
    /// them (credentials, permissions, configuration).
    pub async fn run_once_with(
        &self,
        stream: &str,
        force_full: bool,
        cancel: &CancellationToken,
    ) -> StreamOutcome {
        self.run(stream, force_full, Some(cancel)).await
    }

    async fn run(
        &self,
        name: &str,
        force_full: bool,
        cancel: Option<&CancellationToken>,
    ) -> StreamOutcome {
        let stream = match self.stream(name) {
            Ok(stream) => stream.clone(),
            Err(err) => {
                let mut outcome = StreamOutcome::skipped("unknown", String::new());
                outcome.status = OutcomeStatus::Failed(err);
                return outcome;
            }
        };
        self.run_stream(stream.as_ref(), force_full, cancel).await
    }

    #[tracing::instrument(skip_all, fields(site = %self.ctx.site, stream = %stream.name(), run_id = tracing::field::Empty))]
    async fn run_stream(
        &self,
        stream: &dyn Stream,
        force_full: bool,
        cancel: Option<&CancellationToken>,
    ) -> StreamOutcome {
        let started = Instant::now();
        let counters = RunCounters::default();
        let progress = self.observer.start(stream.name());
        let http = RunScope::new();
        let (mode, run_id, result) = match until(cancel, self.open_run(stream, force_full)).await {
            None => (Mode::Full, None, Err(Interrupted.into())),
            Some(Err((mode, err))) => (mode, None, Err(err)),
            Some(Ok((mode, run_id))) => {
                // Every line of the run, its summary included, carries the run's row id.
                tracing::Span::current().record("run_id", run_id);
                tracing::info!(mode = mode.name(), "stream run started");
                let run = Run {
                    mode,
                    counters: &counters,
                    progress: progress.as_ref(),
                };
                let work = http.scope(stream.run(&self.ctx, &run));
                let result = until(cancel, work)
                    .await
                    .unwrap_or_else(|| Err(Interrupted.into()));
                (mode, Some(run_id), result)
            }
        };
        progress.finish();
        let mut outcome = outcome(stream.name(), mode, result, &counters, started);
        outcome.http = http.snapshot();
        self.refresh_statistics(stream, &outcome).await;
        if let Some(run_id) = run_id {
            self.record(run_id, &outcome, cancel).await;
        }
        log_outcome(&outcome, cancel.is_some());
        outcome
    }

    /// After a run that loaded many rows (a full run, or a thousand rows and more), refreshes
    /// the planner's statistics of the tables it wrote, so that queries right after a first
    /// sync (dbt, dashboards) are planned on what the tables hold. Autovacuum would only get to
    /// them within a minute or so, and a query planned on tables never analyzed can take
    /// minutes instead of seconds. A failure only warns.
    async fn refresh_statistics(&self, stream: &dyn Stream, outcome: &StreamOutcome) {
        if !matches!(outcome.status, OutcomeStatus::Succeeded) {
            return;
        }
        let loaded = |written: u64| {
            written > 0 && (matches!(outcome.mode, Mode::Full) || written >= BULK_ROWS)
        };
        let mut tables: Vec<&'static str> = Vec::new();
        if let Some(count) = stream.rows(&self.ctx.site)
            && loaded(outcome.rows_written)
        {
            tables.push(count.table.name);
        }
        tables.extend(
            outcome
                .tables
                .iter()
                .filter(|(_, _, written)| loaded(*written))
                .map(|(table, _, _)| *table),
        );
        if tables.is_empty() {
            return;
        }
        match self.ctx.store.analyze(&tables).await {
            Ok(()) => tracing::debug!(tables = ?tables, "refreshed the planner's statistics"),
            Err(err) => tracing::warn!(
                tables = ?tables,
                "could not refresh the planner's statistics (autovacuum will): {err:#}"
            ),
        }
    }

    /// Chooses the mode and opens the run's row in `jira.sync_runs`.
    async fn open_run(
        &self,
        stream: &dyn Stream,
        force_full: bool,
    ) -> Result<(Mode, i64), (Mode, anyhow::Error)> {
        let mode = stream
            .mode(&self.ctx, force_full)
            .await
            .map_err(|err| (Mode::Full, err))?;
        let run_id = self
            .ctx
            .store
            .start_run(&self.ctx.site, stream.name(), mode.name())
            .await
            .map_err(|err| (mode, err))?;
        Ok((mode, run_id))
    }

    /// Closes the run's row; a failure to do so is logged, never fatal. Under a `cancel` token
    /// (the daemon), recording gives up [`RECORD_GRACE`] after the token fires: the process is
    /// stopping and must not wait out the pool's acquire timeout for a database that is gone.
    /// The daemon closes such rows as abandoned when it next takes the lease, so it only warns.
    async fn record(
        &self,
        run_id: i64,
        outcome: &StreamOutcome,
        cancel: Option<&CancellationToken>,
    ) {
        let (status, error) = match &outcome.status {
            OutcomeStatus::Succeeded => ("succeeded", None),
            OutcomeStatus::Skipped(why) => ("skipped", Some(why.clone())),
            OutcomeStatus::Failed(err) => ("failed", Some(format!("{err:#}"))),
        };
        let http = &outcome.http;
        let record = RunRecord {
            status,
            rows_seen: outcome.rows_seen,
            rows_written: outcome.rows_written,
            set_aside: outcome.set_aside,
            tables: &outcome.tables,
            requests: outcome.requests,
            error: error.as_deref(),
            http: HttpRecord {
                requests: http.requests,
                retries: http.retries,
                throttled: http.throttled,
                limiter_wait_ms: http.limiter_wait_ms + http.pacing_wait_ms,
                retry_after_wait_ms: http.retry_after_wait_ms,
                metrics: serde_json::to_value(http).ok(),
            },
        };
        let finish = self.ctx.store.finish_run(run_id, &record);
        let result = match cancel {
            None => finish.await,
            Some(token) => {
                let give_up = async {
                    token.cancelled().await;
                    tokio::time::sleep(RECORD_GRACE).await;
                };
                tokio::select! {
                    result = finish => result,
                    () = give_up => Err(anyhow::anyhow!("the database did not answer in time")),
                }
            }
        };
        match result {
            Ok(()) => {}
            Err(err) if cancel.is_some() => tracing::warn!(
                error = %format!("{err:#}"),
                "cannot record the end of the run in jira.sync_runs; it is closed as abandoned \
                 when the writer lease is next taken"
            ),
            Err(err) => tracing::error!(
                error = %format!("{err:#}"),
                "cannot record the end of the run in jira.sync_runs"
            ),
        }
    }
}

fn outcome(
    stream: &'static str,
    mode: Mode,
    result: anyhow::Result<StreamStatus>,
    counters: &RunCounters,
    started: Instant,
) -> StreamOutcome {
    let counted = counters.get();
    let status = match result {
        Ok(StreamStatus::Done) => OutcomeStatus::Succeeded,
        Ok(StreamStatus::Skipped(why)) => OutcomeStatus::Skipped(why),
        Err(err) => OutcomeStatus::Failed(err),
    };
    StreamOutcome {
        stream,
        mode,
        status,
        rows_seen: counted.rows_seen,
        rows_written: counted.rows_written,
        set_aside: counted.set_aside,
        tables: counted.tables.clone(),
        requests: counted.requests,
        duration: started.elapsed(),
        http: RequestMetrics::default(),
    }
}

/// Runs `work` to its end, or until `cancel` fires (then `None`, and `work` is dropped).
async fn until<F: Future>(cancel: Option<&CancellationToken>, work: F) -> Option<F::Output> {
    match cancel {
        Some(token) => token.run_until_cancelled(work).await,
        None => Some(work.await),
    }
}

/// Logs the end of a run. `retried`: the caller runs the stream again later, so a failure
/// that a retry may cure is a warning, not an error.
fn log_outcome(outcome: &StreamOutcome, retried: bool) {
    let fields = (
        outcome.mode.name(),
        outcome.rows_seen,
        outcome.rows_written,
        outcome.requests,
        outcome.duration.as_millis() as u64,
    );
    match &outcome.status {
        OutcomeStatus::Succeeded => tracing::info!(
            mode = fields.0,
            rows_seen = fields.1,
            rows_written = fields.2,
            set_aside = outcome.set_aside,
            requests = fields.3,
            duration_ms = fields.4,
            http = %outcome.http.summary(),
            "stream run succeeded"
        ),
        OutcomeStatus::Skipped(why) => tracing::warn!(
            mode = fields.0, reason = %why, "stream skipped"
        ),
        OutcomeStatus::Failed(err) if err.is::<Interrupted>() => tracing::info!(
            mode = fields.0,
            rows_seen = fields.1,
            rows_written = fields.2,
            requests = fields.3,
            "stream run interrupted; its cursor stays at the last committed page"
        ),
        OutcomeStatus::Failed(err) if retried && !failure_of(err).needs_operator() => {
            tracing::warn!(
                mode = fields.0, rows_seen = fields.1, rows_written = fields.2, requests = fields.3,
                error = %format!("{err:#}"), http = %outcome.http.summary(),
                "stream run failed; its cursor stays at the last committed page"
            )
        }
        OutcomeStatus::Failed(err) => tracing::error!(
            mode = fields.0, rows_seen = fields.1, rows_written = fields.2, requests = fields.3,
            error = %format!("{err:#}"), http = %outcome.http.summary(),
            "stream run failed; its cursor stays at the last committed page"
        ),
    }
}
