//! A Jira server whose clock is hours away from this machine's: windows, marks and lags are
//! computed on the server's clock (its `Date` header), so nothing is lost and nothing is late.

use crate::support::{Env, audit_ids, eventually, stored_issues, sync_succeeds, truth_issues};
use jira_sim::SimConfig;
use std::time::Duration;

const HOURS_2: i64 = 2 * 3_600_000;

async fn skewed(offset_ms: i64) -> Env {
    let mut env = Env::start(SimConfig {
        clock_offset_ms: offset_ms,
        ..SimConfig::small()
    })
    .await;
    env.settings.sync.audit_lag_secs = 0;
    env
}

/// After a first sync, a new audit record arrives with the next runs: none lost (the window's
/// start is not past it) and none late (its end is not hours behind the server's now).
async fn audit_records_arrive_with_the_server_clock(offset_ms: i64) {
    let env = skewed(offset_ms).await;
    sync_succeeds(&env, &["audit_records"], false).await;
    let (stored, want) = audit_ids(&env.db.pool, &env.sim).await;
    assert_eq!(stored, want);
    let new = env.sim.add_audit_record();
    eventually(
        Duration::from_secs(15),
        "the new audit record",
        || async {
            sync_succeeds(&env, &["audit_records"], false).await;
            audit_ids(&env.db.pool, &env.sim).await.0.contains(&new)
        },
        || format!("clock offset {offset_ms} ms"),
    )
    .await;
    let (stored, want) = audit_ids(&env.db.pool, &env.sim).await;
    assert_eq!(stored, want);
}

#[tokio::test]
async fn audit_records_arrive_when_the_server_clock_is_two_hours_behind() {
    audit_records_arrive_with_the_server_clock(-HOURS_2).await;
}

#[tokio::test]
async fn audit_records_arrive_when_the_server_clock_is_two_hours_ahead() {
    audit_records_arrive_with_the_server_clock(HOURS_2).await;
}

/// The API user's zone is read at every run, not once per process: JQL dates are read by Jira
/// in it, so a zone changed while the daemon runs must change the dates written. A zone that
/// is not one stops the run with its name, rather than dates hours off.
#[tokio::test]
async fn the_user_zone_is_read_each_run_and_an_unknown_one_stops_the_run_naming_it() {
    use jira_sync::engine::progress::Quiet;
    use jira_sync::engine::{Engine, OutcomeStatus};
    let env = Env::start(SimConfig::small()).await;
    // One engine for every run, as in the daemon.
    let engine = Engine::new(&env.settings, env.store(), std::sync::Arc::new(Quiet))
        .await
        .expect("connects");
    let succeeds = |stream: &'static str| async {
        let outcome = engine.run_once(stream, false).await;
        assert!(
            matches!(outcome.status, OutcomeStatus::Succeeded),
            "{}",
            outcome.summary()
        );
    };
    succeeds("projects").await;
    succeeds("issues").await;
    // The user moves west of UTC: a date still written in UTC would be read hours late.
    env.sim.set_user_time_zone("America/Los_Angeles");
    // Two changes in one project, a run after each: the second run's date is recent.
    let truth = env.sim.truth();
    let first = &truth.issues[0];
    let second = truth
        .issues
        .iter()
        .find(|i| i.project_id == first.project_id && i.id != first.id)
        .expect("another issue of the project");
    env.sim.update_issue(first.id).expect("update");
    succeeds("issues").await;
    env.sim.update_issue(second.id).expect("update");
    succeeds("issues").await;
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));

    env.sim.set_user_time_zone("Mars/Olympus_Mons");
    let outcome = engine.run_once("issues", false).await;
    let OutcomeStatus::Failed(err) = &outcome.status else {
        panic!("{}", outcome.summary())
    };
    assert!(format!("{err:#}").contains("Mars/Olympus_Mons"), "{err:#}");
}
