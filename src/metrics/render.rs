//! The metric families of `/metrics`, written from the monitor, the clients' counters and the
//! database's view of the streams. The README's metrics reference lists the same names.

use super::exposition::{Exposition, Kind};
use super::{Monitor, RunTotals};
use crate::jira::metrics::RequestMetrics;
use crate::status::StatusReport;

/// Writes every family. Families whose source is missing (no database, no run yet) are left
/// out or have no samples, never made up.
pub(super) fn render(monitor: &Monitor, status: Option<&StatusReport>, ready: bool) -> String {
    let mut text = Exposition::default();
    process(&mut text, monitor, ready, status.is_some());
    if let Some(sources) = monitor.sources() {
        let mut http = RequestMetrics::default();
        for client in &sources.clients {
            add(&mut http, &client.metrics());
        }
        requests(&mut text, &http);
    }
    runs(&mut text, monitor);
    if let Some(status) = status {
        database_view(&mut text, status);
    }
    text.finish()
}

fn process(text: &mut Exposition, monitor: &Monitor, ready: bool, database_up: bool) {
    let role = monitor.role();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    text.family(
        "jira_sync_build_info",
        Kind::Gauge,
        "Always 1; the version of the running binary.",
    );
    text.sample(
        "jira_sync_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    text.family(
        "jira_sync_ready",
        Kind::Gauge,
        "1 when /readyz answers 200 (database reachable and migrated, Jira connection working, no stalled stream).",
    );
    text.sample("jira_sync_ready", &[], flag(ready));
    text.family(
        "jira_sync_writer",
        Kind::Gauge,
        "1 while this process holds the site's writer lease and syncs; 0 while it starts, waits as a standby or stops.",
    );
    text.sample("jira_sync_writer", &[], flag(role == super::Role::Writer));
    text.family(
        "jira_sync_database_up",
        Kind::Gauge,
        "1 when the last read of the streams' status from PostgreSQL succeeded.",
    );
    text.sample("jira_sync_database_up", &[], flag(database_up));
}

/// Sums another client's counters into `total`.
fn add(total: &mut RequestMetrics, other: &RequestMetrics) {
    total.requests += other.requests;
    total.retries += other.retries;
    total.throttled += other.throttled;
    total.transport_errors += other.transport_errors;
    total.pauses += other.pauses;
    total.limiter_wait_ms += other.limiter_wait_ms;
    total.pacing_wait_ms += other.pacing_wait_ms;
    total.retry_after_wait_ms += other.retry_after_wait_ms;
    total.backoff_wait_ms += other.backoff_wait_ms;
    for (endpoint, classes) in &other.endpoints {
        let mine = total.endpoints.entry(endpoint.clone()).or_default();
        for (class, n) in classes {
            *mine.entry(class.clone()).or_default() += n;
        }
    }
}

fn requests(text: &mut Exposition, http: &RequestMetrics) {
    text.family(
        "jira_sync_http_requests_total",
        Kind::Counter,
        "HTTP requests sent to Jira and the Admin API, retries included, by endpoint (ids collapsed) and status class (2xx, 3xx, 4xx, 429, 5xx, none when no response came).",
    );
    for (endpoint, classes) in &http.endpoints {
        for (class, n) in classes {
            let labels = [
                ("endpoint", endpoint.as_str()),
                ("status_class", class.as_str()),
            ];
            text.sample("jira_sync_http_requests_total", &labels, *n as f64);
        }
    }
    let counters = [
        (
            "jira_sync_http_retries_total",
            "Requests sent again after a transient failure (429, 5xx, timeout, reset).",
            http.retries,
        ),
        (
            "jira_sync_http_throttled_total",
            "429 (Too Many Requests) responses.",
            http.throttled,
        ),
        (
            "jira_sync_http_transport_errors_total",
            "Requests that got no complete response (connection refused or reset, timeout).",
            http.transport_errors,
        ),
        (
            "jira_sync_http_pauses_total",
            "Times every request to a site was paused by a Retry-After or a quota reset.",
            http.pauses,
        ),
    ];
    for (name, help, value) in counters {
        text.family(name, Kind::Counter, help);
        text.sample(name, &[], value as f64);
    }
    let name = "jira_sync_http_wait_seconds_total";
    text.family(
        name,
        Kind::Counter,
        "Time requests spent waiting before being sent, by reason: limiter (the steady rate), pacing (slowed down under pressure), retry_after (Jira asked), backoff (between retries).",
    );
    for (reason, ms) in [
        ("limiter", http.limiter_wait_ms),
        ("pacing", http.pacing_wait_ms),
        ("retry_after", http.retry_after_wait_ms),
        ("backoff", http.backoff_wait_ms),
    ] {
        text.sample(name, &[("reason", reason)], ms as f64 / 1000.0);
    }
}

fn runs(text: &mut Exposition, monitor: &Monitor) {
    let state = monitor.state();
    let name = "jira_sync_runs_total";
    text.family(
        name,
        Kind::Counter,
        "Stream runs this process finished, by stream and status (succeeded, failed, skipped).",
    );
    for (stream, t) in &state.totals {
        for (status, n) in [
            ("succeeded", t.succeeded),
            ("failed", t.failed),
            ("skipped", t.skipped),
        ] {
            text.sample(
                name,
                &[("stream", stream.name()), ("status", status)],
                n as f64,
            );
        }
    }
    let counter = |text: &mut Exposition, name: &str, help: &str, value: fn(&RunTotals) -> u64| {
        text.family(name, Kind::Counter, help);
        for (stream, t) in &state.totals {
            text.sample(name, &[("stream", stream.name())], value(t) as f64);
        }
    };
    counter(
        text,
        "jira_sync_rows_seen_total",
        "Rows read from Jira by finished runs, by stream.",
        |t| t.rows_seen,
    );
    counter(
        text,
        "jira_sync_rows_written_total",
        "Rows inserted or changed in PostgreSQL by finished runs, by stream (unchanged rows are not rewritten).",
        |t| t.rows_written,
    );
    let name = "jira_sync_run_duration_seconds";
    text.family(
        name,
        Kind::Histogram,
        "Wall time of finished runs, by stream.",
    );
    for (stream, t) in &state.totals {
        text.histogram(name, &[("stream", stream.name())], &t.durations);
    }
    let name = "jira_sync_stream_running";
    text.family(
        name,
        Kind::Gauge,
        "1 while a run of the stream is in progress.",
    );
    for (stream, s) in &state.streams {
        let running = f64::from(u8::from(s.running_since.is_some()));
        text.sample(name, &[("stream", stream.name())], running);
    }
    let name = "jira_sync_stream_stalled";
    text.family(
        name,
        Kind::Gauge,
        "1 when the stream has had no successful run for server.stall_intervals of its intervals and no run in progress is moving.",
    );
    let now = chrono::Utc::now();
    for (stream, s) in &state.streams {
        let stalled = monitor.stall_of(*stream, s, now).is_some();
        text.sample(
            name,
            &[("stream", stream.name())],
            f64::from(u8::from(stalled)),
        );
    }
}

/// What PostgreSQL holds, read with `jira-sync status`'s queries: the same numbers whichever
/// replica is scraped.
fn database_view(text: &mut Exposition, status: &StatusReport) {
    let name = "jira_sync_last_success_timestamp_seconds";
    text.family(
        name,
        Kind::Gauge,
        "Unix time the stream's last successful run finished (any process), by stream.",
    );
    for (stream, s) in &status.streams {
        if let Some(at) = s.last_success {
            text.sample(name, &[("stream", stream)], at.timestamp() as f64);
        }
    }
    let name = "jira_sync_lag_seconds";
    text.family(
        name,
        Kind::Gauge,
        "How far the stream's cursor is behind now, by stream (issues: the oldest project mark; audit_records, org_events: the high-water mark; census: its last completion). Full-refresh streams have none.",
    );
    for (stream, s) in &status.streams {
        if let Some(behind) = s.cursor_behind_secs {
            text.sample(name, &[("stream", stream)], behind as f64);
        }
    }
    let name = "jira_sync_stored_rows";
    text.family(
        name,
        Kind::Gauge,
        "Live rows held in PostgreSQL, by stream (org_events: those of jira.org_id).",
    );
    for (stream, s) in status.streams.iter().filter(|(k, _)| *k != "census") {
        text.sample(name, &[("stream", stream)], s.rows as f64);
    }
    let name = "jira_sync_census_deleted_issues";
    text.family(
        name,
        Kind::Gauge,
        "Issues the census found deleted in Jira and marked deleted (deleted_at set).",
    );
    if let Some(census) = status.streams.get("census") {
        text.sample(name, &[], census.rows as f64);
    }
}
