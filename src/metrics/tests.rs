//! The stall rule and what a finished run books, on a monitor fed by hand.

use super::*;
use crate::sync::progress::Progress;
use secrecy::SecretString;

fn monitor(stall_intervals: u32) -> Monitor {
    let url = url::Url::parse("http://127.0.0.1:8080").expect("url");
    let mut settings =
        Settings::for_site(&url, "demo@example.com", SecretString::from("t")).expect("settings");
    settings.server.stall_intervals = stall_intervals;
    Monitor::new(&settings)
}

/// Moves a stream's schedule start and last success `secs` into the past.
fn age(monitor: &Monitor, stream: StreamKind, secs: i64) {
    let mut state = monitor.state();
    let s = state.streams.get_mut(&stream).expect("scheduled");
    s.scheduled_at -= chrono::Duration::seconds(secs);
    s.last_completed = s
        .last_completed
        .map(|t| t - chrono::Duration::seconds(secs));
}

fn outcome(stream: StreamKind, status: OutcomeStatus) -> StreamOutcome {
    StreamOutcome {
        stream,
        mode: crate::streams::Mode::Incremental,
        status,
        rows_seen: 10,
        rows_written: 3,
        requests: 2,
        duration: Duration::from_millis(1500),
        http: Default::default(),
    }
}

#[test]
fn a_stream_stalls_after_its_allowance_and_recovers_with_a_success() {
    let m = monitor(3);
    let second = Duration::from_secs(1);
    m.schedule(&[(StreamKind::Projects, second, None)]);
    assert!(m.stalls().is_empty(), "not before three intervals");
    age(&m, StreamKind::Projects, 4);
    let stalls = m.stalls();
    assert_eq!(stalls.len(), 1);
    assert!(
        stalls[0].reason.contains("stream projects is stalled"),
        "{}",
        stalls[0].reason
    );
    m.run_finished(&outcome(StreamKind::Projects, OutcomeStatus::Succeeded));
    assert!(m.stalls().is_empty());
}

#[test]
fn a_long_success_before_the_schedule_started_does_not_count_against_it() {
    let m = monitor(3);
    let old = Utc::now() - chrono::Duration::days(2);
    m.schedule(&[(StreamKind::Projects, Duration::from_secs(60), Some(old))]);
    assert!(m.stalls().is_empty(), "the daemon just took the lease");
}

#[test]
fn a_run_in_progress_stalls_only_when_it_stops_moving() {
    let m = monitor(2);
    m.schedule(&[(StreamKind::Users, Duration::from_secs(1), None)]);
    m.run_started(StreamKind::Users);
    age(&m, StreamKind::Users, 10);
    assert!(m.stalls().is_empty(), "a run that just started is moving");
    if let Some(s) = m.state().streams.get_mut(&StreamKind::Users) {
        s.running_since = Some(Instant::now() - Duration::from_secs(10));
    }
    assert_eq!(m.stalls().len(), 1, "a run with no progress for 10 s");
    Progress::hidden("users").advance(1);
    assert!(m.stalls().is_empty(), "the run read something just now");
}

#[test]
fn finished_runs_are_booked_and_a_rejected_credential_breaks_readiness_until_a_success() {
    let m = monitor(3);
    m.schedule(&[(StreamKind::Issues, Duration::from_secs(300), None)]);
    m.run_finished(&outcome(StreamKind::Issues, OutcomeStatus::Succeeded));
    let rejected = crate::jira::JiraError::Unauthorized { host: "h".into() };
    let failed = OutcomeStatus::Failed(anyhow::Error::new(rejected));
    m.run_finished(&outcome(StreamKind::Issues, failed));
    assert!(m.jira_problem().is_some());
    {
        let state = m.state();
        let totals = &state.totals[&StreamKind::Issues];
        assert_eq!((totals.succeeded, totals.failed), (1, 1));
        assert_eq!((totals.rows_seen, totals.rows_written), (20, 6));
        assert_eq!(totals.durations.count(), 2);
    }
    m.run_finished(&outcome(StreamKind::Issues, OutcomeStatus::Succeeded));
    assert_eq!(m.jira_problem(), None);
}
