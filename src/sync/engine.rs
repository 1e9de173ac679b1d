//! `Engine::run_once`: one stream, one run, one row in `jira.sync_runs`, and an outcome that
//! says what happened. Loops around it (the `sync` command, later the scheduler) stay trivial.

use crate::config::Settings;
use crate::jira::JiraClient;
use crate::jira::model::Myself;
use crate::jira::time::parse_zone;
use crate::store::Store;
use crate::store::runs::RunRecord;
use crate::streams::{self, Mode, RunCounters, StreamContext, StreamKind, StreamStatus};
use crate::sync::progress::Progress;
use anyhow::Context;
use std::time::{Duration, Instant};

/// The result of one stream run.
#[derive(Debug)]
pub struct StreamOutcome {
    pub stream: StreamKind,
    pub mode: Mode,
    pub status: OutcomeStatus,
    pub rows_seen: u64,
    pub rows_written: u64,
    pub requests: u64,
    pub duration: Duration,
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
        format!(
            "{:<14} {:<11} {:>7} rows ({} written) {:>6} requests {:>7.1}s  {status}",
            self.stream.name(),
            self.mode.name(),
            self.rows_seen,
            self.rows_written,
            self.requests,
            self.duration.as_secs_f64(),
        )
    }
}

/// Runs streams for one site.
pub struct Engine {
    ctx: StreamContext,
}

impl Engine {
    /// Builds the client and reads the API user's time zone (JQL dates are read in it).
    pub async fn new(settings: &Settings, store: Store) -> anyhow::Result<Engine> {
        let client = JiraClient::new(&settings.jira, &settings.rate_limit)?;
        let myself: Myself = client
            .get("/rest/api/3/myself", &[])
            .await
            .context("cannot read the API user's profile (/rest/api/3/myself)")?;
        let zone_name = myself
            .time_zone
            .clone()
            .unwrap_or_else(|| "UTC".to_string());
        let user_zone = parse_zone(&zone_name).unwrap_or_else(|| {
            tracing::warn!(
                zone = %zone_name,
                "the API user's time zone is unknown to jira-sync; JQL dates will use UTC and an hour of extra overlap may be needed"
            );
            chrono_tz::UTC
        });
        Ok(Engine {
            ctx: StreamContext {
                client,
                store,
                site: settings.site(),
                user_zone,
                sync: settings.sync.clone(),
                max_in_flight: settings.rate_limit.max_in_flight,
            },
        })
    }

    pub fn context(&self) -> &StreamContext {
        &self.ctx
    }

    /// Runs `stream` once: full when asked or when it has no checkpoint, else incremental.
    #[tracing::instrument(skip_all, fields(site = %self.ctx.site, stream = %stream))]
    pub async fn run_once(
        &self,
        stream: StreamKind,
        force_full: bool,
        interactive: bool,
    ) -> StreamOutcome {
        let started = Instant::now();
        let counters = RunCounters::default();
        let progress = Progress::new(stream.name(), interactive);
        let mode = match self.mode(stream, force_full).await {
            Ok(mode) => mode,
            Err(err) => return self.outcome(stream, Mode::Full, Err(err), &counters, started),
        };
        let run_id = match self
            .ctx
            .store
            .start_run(&self.ctx.site, stream.name(), mode.name())
            .await
        {
            Ok(id) => id,
            Err(err) => return self.outcome(stream, mode, Err(err), &counters, started),
        };
        tracing::info!(mode = mode.name(), "stream run started");
        let result = match stream {
            StreamKind::Projects => streams::projects::run(&self.ctx, &counters, &progress).await,
            StreamKind::Issues => streams::issues::run(&self.ctx, mode, &counters, &progress).await,
            StreamKind::Users => streams::users::run(&self.ctx, &counters, &progress).await,
            StreamKind::AuditRecords => {
                streams::audit::run(&self.ctx, mode, &counters, &progress).await
            }
            StreamKind::Census => streams::census::run(&self.ctx, &counters, &progress).await,
        };
        progress.finish();
        let outcome = self.outcome(stream, mode, result, &counters, started);
        let (status, error) = match &outcome.status {
            OutcomeStatus::Succeeded => ("succeeded", None),
            OutcomeStatus::Skipped(why) => ("skipped", Some(why.clone())),
            OutcomeStatus::Failed(err) => ("failed", Some(format!("{err:#}"))),
        };
        let record = RunRecord {
            status,
            rows_seen: outcome.rows_seen,
            rows_written: outcome.rows_written,
            requests: outcome.requests,
            error: error.as_deref(),
        };
        if let Err(err) = self.ctx.store.finish_run(run_id, &record).await {
            tracing::error!(error = %format!("{err:#}"), "cannot record the end of the run in jira.sync_runs");
        }
        log_outcome(&outcome);
        outcome
    }

    async fn mode(&self, stream: StreamKind, force_full: bool) -> anyhow::Result<Mode> {
        match stream {
            // Full refreshes every run: they have no cursor.
            StreamKind::Projects | StreamKind::Users | StreamKind::Census => Ok(Mode::Full),
            StreamKind::Issues => streams::issues::mode(&self.ctx, force_full).await,
            StreamKind::AuditRecords => streams::audit::mode(&self.ctx, force_full).await,
        }
    }

    fn outcome(
        &self,
        stream: StreamKind,
        mode: Mode,
        result: anyhow::Result<StreamStatus>,
        counters: &RunCounters,
        started: Instant,
    ) -> StreamOutcome {
        let (requests, rows_seen, rows_written) = counters.get();
        let status = match result {
            Ok(StreamStatus::Done) => OutcomeStatus::Succeeded,
            Ok(StreamStatus::Skipped(why)) => OutcomeStatus::Skipped(why),
            Err(err) => OutcomeStatus::Failed(err),
        };
        StreamOutcome {
            stream,
            mode,
            status,
            rows_seen,
            rows_written,
            requests,
            duration: started.elapsed(),
        }
    }
}

fn log_outcome(outcome: &StreamOutcome) {
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
            requests = fields.3,
            duration_ms = fields.4,
            "stream run succeeded"
        ),
        OutcomeStatus::Skipped(why) => tracing::warn!(
            mode = fields.0, reason = %why, "stream skipped"
        ),
        OutcomeStatus::Failed(err) => tracing::error!(
            mode = fields.0, rows_seen = fields.1, rows_written = fields.2, requests = fields.3,
            error = %format!("{err:#}"), "stream run failed; its cursor stays at the last committed page"
        ),
    }
}
