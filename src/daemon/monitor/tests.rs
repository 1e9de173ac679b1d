//! The stall rule, what a finished run books, and the families a scrape maps to, on a monitor
//! fed by hand.

use super::*;
use crate::jira::metrics::RequestMetrics;
use secrecy::SecretString;

fn monitor(stall_intervals: u32) -> Monitor {
    let url = url::Url::parse("http://127.0.0.1:8080").expect("url");
    let mut settings =
        Settings::for_site(&url, "demo@example.com", SecretString::from("t")).expect("settings");
    settings.server.stall_intervals = stall_intervals;
    Monitor::new(&settings)
}

/// Moves a stream's schedule start and last success `secs` into the past.
fn age(monitor: &Monitor, stream: &'static str, secs: i64) {
    let mut state = monitor.state();
    let s = state.streams.get_mut(&stream).expect("scheduled");
    s.scheduled_at -= chrono::Duration::seconds(secs);
    s.last_completed = s
        .last_completed
        .map(|t| t - chrono::Duration::seconds(secs));
}

fn outcome(stream: &'static str, status: OutcomeStatus) -> StreamOutcome {
    StreamOutcome {
        stream,
        mode: crate::streams::Mode::Incremental,
        status,
        rows_seen: 10,
        rows_written: 3,
        set_aside: 0,
        tables: Vec::new(),
        requests: 2,
        duration: Duration::from_millis(1500),
        http: Default::default(),
    }
}

#[test]
fn a_stream_stalls_after_its_allowance_and_recovers_with_a_success() {
    let m = monitor(3);
    let second = Duration::from_secs(1);
    m.schedule(&[("projects", second, None)]);
    assert!(m.stalls().is_empty(), "not before three intervals");
    age(&m, "projects", 4);
    let stalls = m.stalls();
    assert_eq!(stalls.len(), 1);
    assert!(
        stalls[0].reason.contains("stream projects is stalled"),
        "{}",
        stalls[0].reason
    );
    m.run_finished(&outcome("projects", OutcomeStatus::Succeeded));
    assert!(m.stalls().is_empty());
}

#[test]
fn a_long_success_before_the_schedule_started_does_not_count_against_it() {
    let m = monitor(3);
    let old = Utc::now() - chrono::Duration::days(2);
    m.schedule(&[("projects", Duration::from_secs(60), Some(old))]);
    assert!(m.stalls().is_empty(), "the daemon just took the lease");
}

#[test]
fn a_run_in_progress_stalls_only_when_it_stops_moving() {
    let m = monitor(2);
    m.schedule(&[("users", Duration::from_secs(1), None)]);
    m.run_started("users");
    age(&m, "users", 10);
    assert!(m.stalls().is_empty(), "a run that just started is moving");
    if let Some(s) = m.state().streams.get_mut("users") {
        s.running_since = Some(Instant::now() - Duration::from_secs(10));
    }
    assert_eq!(m.stalls().len(), 1, "a run with no progress for 10 s");
    m.note_activity("users");
    assert!(m.stalls().is_empty(), "the run read something just now");
}

#[test]
fn finished_runs_are_booked_and_a_rejected_credential_breaks_readiness_until_a_success() {
    let m = monitor(3);
    m.schedule(&[("issues", Duration::from_secs(300), None)]);
    m.run_finished(&outcome("issues", OutcomeStatus::Succeeded));
    let rejected = crate::jira::JiraError::Unauthorized { host: "h".into() };
    let failed = OutcomeStatus::Failed(anyhow::Error::new(rejected));
    m.run_finished(&outcome("issues", failed));
    assert!(m.jira_problem().is_some());
    let text = encode(m.scrape(false, None));
    for sample in [
        r#"jira_sync_runs_total{stream="issues",status="succeeded"} 1"#,
        r#"jira_sync_runs_total{stream="issues",status="failed"} 1"#,
        r#"jira_sync_runs_total{stream="issues",status="skipped"} 0"#,
        r#"jira_sync_rows_seen_total{stream="issues"} 20"#,
        r#"jira_sync_rows_written_total{stream="issues"} 6"#,
        r#"jira_sync_run_duration_seconds_count{stream="issues"} 2"#,
        r#"jira_sync_run_duration_seconds_sum{stream="issues"} 3.0"#,
        r#"jira_sync_run_duration_seconds_bucket{le="1.0",stream="issues"} 0"#,
        r#"jira_sync_run_duration_seconds_bucket{le="5.0",stream="issues"} 2"#,
        r#"jira_sync_run_duration_seconds_bucket{le="+Inf",stream="issues"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == sample), "{sample} not in\n{text}");
    }
    m.run_finished(&outcome("issues", OutcomeStatus::Succeeded));
    assert_eq!(m.jira_problem(), None);
}

/// A scrape with every source present: runs booked, a stream running, the clients' counters
/// and the database's view.
fn full_scrape() -> Scrape {
    let m = monitor(3);
    m.set_role(Role::Writer);
    m.schedule(&[
        ("issues", Duration::from_secs(60), None),
        ("projects", Duration::from_secs(60), None),
    ]);
    m.run_finished(&outcome("issues", OutcomeStatus::Succeeded));
    m.run_started("issues");
    let mut http = RequestMetrics::default();
    http.attempt("POST /rest/api/3/search/jql", Some(200));
    http.attempt("POST /rest/api/3/search/jql", Some(429));
    http.attempt("GET /rest/api/3/project/search", None);
    http.retries = 2;
    http.retry_after_wait_ms = 1500;
    let stream =
        |rows, behind: Option<i64>, note: Option<&str>| crate::engine::status::StreamReport {
            enabled: true,
            last_success: Some(Utc::now()),
            since_last_success_secs: Some(0),
            last_run: None,
            cursor: None,
            cursor_behind_secs: behind,
            cursor_note: None,
            rows,
            rows_note: note.map(str::to_owned),
            set_aside: 0,
        };
    let status = StatusReport {
        ok: true,
        site: "example".to_owned(),
        database: "localhost/jira".to_owned(),
        checked_at: Utc::now(),
        writer_active: true,
        writer: None,
        streams: BTreeMap::from([
            ("issues".to_owned(), stream(40, Some(90), None)),
            ("projects".to_owned(), stream(3, None, None)),
            (
                "census".to_owned(),
                stream(2, Some(600), Some("issues marked deleted")),
            ),
        ]),
        order: vec!["projects", "issues", "census"],
        records: BTreeMap::from([(
            "comments".to_owned(),
            crate::engine::status::RecordsReport {
                table: "jira.comments".to_owned(),
                rows: 310,
                issues_behind: 4,
                set_aside: 1,
            },
        )]),
    };
    let mut scrape = m.scrape(true, Some(status));
    scrape.http = Some(families::sum([http.clone(), http]));
    scrape
}

/// Each sample name with its family's type and its label names (`le` left out), read from
/// the `# TYPE` lines and the samples of `text`.
fn shapes(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut types = BTreeMap::new();
    let mut shapes = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(family.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let series = line.rsplit_once(' ').expect("series value").0;
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_total", "_bucket", "_sum", "_count", ""]
            .iter()
            .find_map(|suffix| types.get(name.strip_suffix(suffix)?))
            .unwrap_or_else(|| panic!("no # TYPE for {line}"));
        let mut keys: Vec<String> = labels
            .split(',')
            .filter_map(|pair| Some(pair.split_once('=')?.0.to_owned()))
            .filter(|key| key != "le")
            .collect();
        keys.sort();
        shapes.insert(name.to_owned(), (family.clone(), keys));
    }
    shapes
}

#[test]
fn every_family_keeps_the_sample_names_types_and_labels_that_dashboards_query() {
    let text = encode(full_scrape());
    assert!(text.ends_with("# EOF\n"), "{text}");
    let expected = [
        ("jira_sync_build_info", "gauge", "version"),
        ("jira_sync_ready", "gauge", ""),
        ("jira_sync_writer", "gauge", ""),
        ("jira_sync_database_up", "gauge", ""),
        (
            "jira_sync_http_requests_total",
            "counter",
            "endpoint status_class",
        ),
        ("jira_sync_http_retries_total", "counter", ""),
        ("jira_sync_http_throttled_total", "counter", ""),
        ("jira_sync_http_transport_errors_total", "counter", ""),
        ("jira_sync_http_pauses_total", "counter", ""),
        ("jira_sync_http_wait_seconds_total", "counter", "reason"),
        ("jira_sync_runs_total", "counter", "status stream"),
        ("jira_sync_rows_seen_total", "counter", "stream"),
        ("jira_sync_rows_written_total", "counter", "stream"),
        (
            "jira_sync_run_duration_seconds_bucket",
            "histogram",
            "stream",
        ),
        ("jira_sync_run_duration_seconds_sum", "histogram", "stream"),
        (
            "jira_sync_run_duration_seconds_count",
            "histogram",
            "stream",
        ),
        ("jira_sync_stream_running", "gauge", "stream"),
        ("jira_sync_stream_stalled", "gauge", "stream"),
        (
            "jira_sync_last_success_timestamp_seconds",
            "gauge",
            "stream",
        ),
        ("jira_sync_lag_seconds", "gauge", "stream"),
        ("jira_sync_stored_rows", "gauge", "stream"),
        ("jira_sync_quarantined_records", "gauge", "stream"),
        ("jira_sync_issue_records", "gauge", "kind"),
        ("jira_sync_issues_behind", "gauge", "kind"),
        ("jira_sync_census_deleted_issues", "gauge", ""),
    ];
    let expected: BTreeMap<String, (String, Vec<String>)> = expected
        .iter()
        .map(|(name, kind, labels)| {
            let labels = labels.split_whitespace().map(str::to_owned).collect();
            ((*name).to_owned(), ((*kind).to_owned(), labels))
        })
        .collect();
    assert_eq!(shapes(&text), expected, "{text}");
}

#[test]
fn a_scrape_maps_the_values_it_read_to_samples() {
    let text = encode(full_scrape());
    let version = env!("CARGO_PKG_VERSION");
    for sample in [
        format!(r#"jira_sync_build_info{{version="{version}"}} 1"#),
        "jira_sync_ready 1".to_owned(),
        "jira_sync_writer 1".to_owned(),
        "jira_sync_database_up 1".to_owned(),
        r#"jira_sync_http_requests_total{endpoint="POST /rest/api/3/search/jql",status_class="2xx"} 2"#.to_owned(),
        r#"jira_sync_http_requests_total{endpoint="POST /rest/api/3/search/jql",status_class="429"} 2"#.to_owned(),
        r#"jira_sync_http_requests_total{endpoint="GET /rest/api/3/project/search",status_class="none"} 2"#.to_owned(),
        "jira_sync_http_retries_total 4".to_owned(),
        "jira_sync_http_throttled_total 2".to_owned(),
        "jira_sync_http_transport_errors_total 2".to_owned(),
        r#"jira_sync_http_wait_seconds_total{reason="retry_after"} 3.0"#.to_owned(),
        r#"jira_sync_http_wait_seconds_total{reason="limiter"} 0.0"#.to_owned(),
        r#"jira_sync_stream_running{stream="issues"} 1"#.to_owned(),
        r#"jira_sync_stream_running{stream="projects"} 0"#.to_owned(),
        r#"jira_sync_stream_stalled{stream="issues"} 0"#.to_owned(),
        r#"jira_sync_lag_seconds{stream="issues"} 90"#.to_owned(),
        r#"jira_sync_lag_seconds{stream="census"} 600"#.to_owned(),
        r#"jira_sync_stored_rows{stream="issues"} 40"#.to_owned(),
        r#"jira_sync_issue_records{kind="comments"} 310"#.to_owned(),
        r#"jira_sync_issues_behind{kind="comments"} 4"#.to_owned(),
        r#"jira_sync_quarantined_records{stream="comments"} 1"#.to_owned(),
        "jira_sync_census_deleted_issues 2".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == sample), "{sample} not in\n{text}");
    }
    assert!(!text.contains(r#"jira_sync_lag_seconds{stream="projects"}"#));
    assert!(!text.contains(r#"jira_sync_stored_rows{stream="census"}"#));
}

#[test]
fn without_the_database_its_families_are_left_out_and_database_up_is_0() {
    let m = monitor(3);
    let text = encode(m.scrape(false, None));
    assert!(
        text.lines().any(|l| l == "jira_sync_database_up 0"),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "jira_sync_ready 0"), "{text}");
    assert!(text.lines().any(|l| l == "jira_sync_writer 0"), "{text}");
    for family in ["jira_sync_lag_seconds", "jira_sync_http_requests"] {
        assert!(!text.contains(family), "{family} in\n{text}");
    }
}
