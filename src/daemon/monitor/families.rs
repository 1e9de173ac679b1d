//! The metric families of `/metrics`: the run counters this process keeps, and what one scrape
//! read (the monitor's state, the clients' counters, the database's view of the streams),
//! written through `prometheus-client`. The README's metrics reference lists the same names.
//!
//! `prometheus-client` writes a counter's samples as `<family>_total` and a family with a unit
//! as `<name>_<unit>`, so counters are declared here without `_total` and durations with
//! [`Unit::Seconds`]: the sample names stay the ones dashboards and alerts query.

use crate::engine::status::StatusReport;
use crate::engine::{OutcomeStatus, StreamOutcome};
use crate::jira::metrics::RequestMetrics;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use std::fmt;

/// Upper bounds of the run-duration buckets, in seconds: from a quiet incremental run to a
/// long initial sync.
const DURATION_BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct StreamLabel {
    stream: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RunLabels {
    stream: &'static str,
    status: &'static str,
}

/// What finished runs add up to over the process's life, by stream. Cloning shares the
/// counters.
#[derive(Debug, Clone)]
pub(super) struct RunMetrics {
    pub(super) runs: Family<RunLabels, Counter>,
    pub(super) rows_seen: Family<StreamLabel, Counter>,
    pub(super) rows_written: Family<StreamLabel, Counter>,
    pub(super) durations: Family<StreamLabel, Histogram>,
}

impl Default for RunMetrics {
    fn default() -> Self {
        RunMetrics {
            runs: Family::default(),
            rows_seen: Family::default(),
            rows_written: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS)),
        }
    }
}

impl RunMetrics {
    /// Books a finished run. Every status of a stream that ran is written, zeros included, so
    /// `rate()` sees a failure counter before the first failure.
    pub(super) fn book(&self, outcome: &StreamOutcome) {
        let stream = outcome.stream;
        let ran = match outcome.status {
            OutcomeStatus::Succeeded => "succeeded",
            OutcomeStatus::Failed(_) => "failed",
            OutcomeStatus::Skipped(_) => "skipped",
        };
        for status in ["succeeded", "failed", "skipped"] {
            let runs = self.runs.get_or_create(&RunLabels { stream, status });
            if status == ran {
                runs.inc();
            }
        }
        let label = StreamLabel { stream };
        self.rows_seen
            .get_or_create(&label)
            .inc_by(outcome.rows_seen);
        self.rows_written
            .get_or_create(&label)
            .inc_by(outcome.rows_written);
        self.durations
            .get_or_create(&label)
            .observe(outcome.duration.as_secs_f64());
    }
}

/// One scrape: everything `/metrics` shows, read before encoding (the database's view and
/// readiness are read asynchronously, which a [`Collector`] cannot do).
#[derive(Debug)]
pub(super) struct Scrape {
    pub ready: bool,
    pub writer: bool,
    /// The clients' counters summed; `None` before start-up attached them.
    pub http: Option<RequestMetrics>,
    pub runs: RunMetrics,
    /// Each scheduled stream: whether a run is in progress, whether it is stalled.
    pub streams: Vec<(&'static str, bool, bool)>,
    /// `None` when the database could not be read.
    pub status: Option<StatusReport>,
}

/// Families whose source is missing (no database, no run yet) are left out or have no
/// samples, never made up.
impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.process(&mut encoder)?;
        if let Some(http) = &self.http {
            requests(&mut encoder, http)?;
        }
        self.runs(&mut encoder)?;
        if let Some(status) = &self.status {
            database_view(&mut encoder, status)?;
        }
        Ok(())
    }
}

impl Scrape {
    fn process(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let mut family = encoder.encode_descriptor(
            "jira_sync_build_info",
            "Always 1; the version of the running binary.",
            None,
            MetricType::Gauge,
        )?;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        ConstGauge::new(1).encode(family.encode_family(&version)?)?;
        let flags = [
            (
                "jira_sync_ready",
                "1 when /readyz answers 200 (database reachable and migrated, Jira connection working, no stalled stream).",
                self.ready,
            ),
            (
                "jira_sync_writer",
                "1 while this process holds the site's writer lease and syncs; 0 while it starts, waits as a standby or stops.",
                self.writer,
            ),
            (
                "jira_sync_database_up",
                "1 when the last read of the streams' status from PostgreSQL succeeded.",
                self.status.is_some(),
            ),
        ];
        for (name, help, value) in flags {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(i64::from(value)).encode(family)?;
        }
        Ok(())
    }

    fn runs(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let runs = &self.runs;
        let family = encoder.encode_descriptor(
            "jira_sync_runs",
            "Stream runs this process finished, by stream and status (succeeded, failed, skipped).",
            None,
            MetricType::Counter,
        )?;
        runs.runs.encode(family)?;
        let family = encoder.encode_descriptor(
            "jira_sync_rows_seen",
            "Rows read from Jira by finished runs, by stream.",
            None,
            MetricType::Counter,
        )?;
        runs.rows_seen.encode(family)?;
        let family = encoder.encode_descriptor(
            "jira_sync_rows_written",
            "Rows inserted or changed in PostgreSQL by finished runs, by stream (unchanged rows are not rewritten).",
            None,
            MetricType::Counter,
        )?;
        runs.rows_written.encode(family)?;
        let family = encoder.encode_descriptor(
            "jira_sync_run_duration",
            "Wall time of finished runs, by stream.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        runs.durations.encode(family)?;
        let running = self.streams.iter().map(|&(s, running, _)| (s, running));
        by_stream(
            encoder,
            "jira_sync_stream_running",
            "1 while a run of the stream is in progress.",
            running,
        )?;
        let stalled = self.streams.iter().map(|&(s, _, stalled)| (s, stalled));
        by_stream(
            encoder,
            "jira_sync_stream_stalled",
            "1 when the stream has had no successful run for server.stall_intervals of its intervals and no run in progress is moving.",
            stalled,
        )
    }
}

/// A 0/1 gauge by stream.
fn by_stream(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    flags: impl Iterator<Item = (&'static str, bool)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (stream, flag) in flags {
        let labels = [("stream", stream)];
        ConstGauge::new(i64::from(flag)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The clients' counters summed.
pub(super) fn sum(clients: impl IntoIterator<Item = RequestMetrics>) -> RequestMetrics {
    let mut total = RequestMetrics::default();
    for other in clients {
        total.requests += other.requests;
        total.retries += other.retries;
        total.throttled += other.throttled;
        total.transport_errors += other.transport_errors;
        total.pauses += other.pauses;
        total.limiter_wait_ms += other.limiter_wait_ms;
        total.pacing_wait_ms += other.pacing_wait_ms;
        total.retry_after_wait_ms += other.retry_after_wait_ms;
        total.backoff_wait_ms += other.backoff_wait_ms;
        for (endpoint, classes) in other.endpoints {
            let mine = total.endpoints.entry(endpoint).or_default();
            for (class, n) in classes {
                *mine.entry(class).or_default() += n;
            }
        }
    }
    total
}

fn requests(encoder: &mut DescriptorEncoder, http: &RequestMetrics) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "jira_sync_http_requests",
        "HTTP requests sent to Jira and the Admin API, retries included, by endpoint (ids collapsed) and status class (2xx, 3xx, 4xx, 429, 5xx, none when no response came).",
        None,
        MetricType::Counter,
    )?;
    for (endpoint, classes) in &http.endpoints {
        for (class, n) in classes {
            let labels = [
                ("endpoint", endpoint.as_str()),
                ("status_class", class.as_str()),
            ];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
    }
    let counters = [
        (
            "jira_sync_http_retries",
            "Requests sent again after a transient failure (429, 5xx, timeout, reset).",
            http.retries,
        ),
        (
            "jira_sync_http_throttled",
            "429 (Too Many Requests) responses.",
            http.throttled,
        ),
        (
            "jira_sync_http_transport_errors",
            "Requests that got no complete response (connection refused or reset, timeout).",
            http.transport_errors,
        ),
        (
            "jira_sync_http_pauses",
            "Times every request to a site was paused by a Retry-After or a quota reset.",
            http.pauses,
        ),
    ];
    for (name, help, value) in counters {
        let family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(family)?;
    }
    let mut family = encoder.encode_descriptor(
        "jira_sync_http_wait",
        "Time requests spent waiting before being sent, by reason: limiter (the steady rate), pacing (slowed down under pressure), retry_after (Jira asked), backoff (between retries).",
        Some(&Unit::Seconds),
        MetricType::Counter,
    )?;
    for (reason, ms) in [
        ("limiter", http.limiter_wait_ms),
        ("pacing", http.pacing_wait_ms),
        ("retry_after", http.retry_after_wait_ms),
        ("backoff", http.backoff_wait_ms),
    ] {
        let seconds = ConstCounter::new(ms as f64 / 1000.0);
        seconds.encode(family.encode_family(&[("reason", reason)])?)?;
    }
    Ok(())
}

/// What PostgreSQL holds, read with `jira-sync status`'s queries: the same numbers whichever
/// replica is scraped.
fn database_view(encoder: &mut DescriptorEncoder, status: &StatusReport) -> fmt::Result {
    let mut family = encoder.encode_descriptor(
        "jira_sync_last_success_timestamp",
        "Unix time the stream's last successful run finished (any process), by stream.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for (stream, s) in &status.streams {
        if let Some(at) = s.last_success {
            let labels = [("stream", stream.as_str())];
            ConstGauge::new(at.timestamp()).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "jira_sync_lag",
        "How far the stream's cursor is behind now, by stream (issues: the oldest project mark; audit_records, org_events: the high-water mark; census: its last completion). Full-refresh streams have none.",
        Some(&Unit::Seconds),
        MetricType::Gauge,
    )?;
    for (stream, s) in &status.streams {
        if let Some(behind) = s.cursor_behind_secs {
            let labels = [("stream", stream.as_str())];
            ConstGauge::new(behind).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "jira_sync_stored_rows",
        "Live rows held in PostgreSQL, by stream (org_events: those of jira.org_id).",
        None,
        MetricType::Gauge,
    )?;
    for (stream, s) in status.streams.iter().filter(|(_, s)| s.rows_note.is_none()) {
        let labels = [("stream", stream.as_str())];
        ConstGauge::new(s.rows).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "jira_sync_quarantined_records",
        "Records held in jira.quarantine because they cannot be stored as Jira sends them (retried every run), by stream.",
        None,
        MetricType::Gauge,
    )?;
    for (stream, s) in &status.streams {
        let labels = [("stream", stream.as_str())];
        ConstGauge::new(s.set_aside).encode(family.encode_family(&labels)?)?;
    }
    for (kind, r) in &status.records {
        let labels = [("stream", kind.as_str())];
        ConstGauge::new(r.set_aside).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "jira_sync_issue_records",
        "Live records of issues held in PostgreSQL, by kind (changelogs, comments, worklogs, issue_links).",
        None,
        MetricType::Gauge,
    )?;
    for (kind, r) in &status.records {
        let labels = [("kind", kind.as_str())];
        ConstGauge::new(r.rows).encode(family.encode_family(&labels)?)?;
    }
    let mut family = encoder.encode_descriptor(
        "jira_sync_issues_behind",
        "Live issues whose records of a kind are not read at their current version yet (the next issues run reads them), by kind.",
        None,
        MetricType::Gauge,
    )?;
    for (kind, r) in &status.records {
        let labels = [("kind", kind.as_str())];
        ConstGauge::new(r.issues_behind).encode(family.encode_family(&labels)?)?;
    }
    let family = encoder.encode_descriptor(
        "jira_sync_census_deleted_issues",
        "Issues the census found deleted in Jira and marked deleted (deleted_at set).",
        None,
        MetricType::Gauge,
    )?;
    if let Some(census) = status.streams.get("census") {
        ConstGauge::new(census.rows).encode(family)?;
    }
    Ok(())
}
