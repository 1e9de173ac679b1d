//! Integration tests of the incremental rules: time zones, eventual consistency, moves,
//! deletes (the census), audit windows and request counts proportional to change.

use crate::support::{
    ALL, Env, IssueFacts, audit_ids, deleted_issue_ids, issue_key_and_project, stored_issues,
    sync_succeeds, truth_issues,
};
use jira_sim::{SimConfig, TruthIssue};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

async fn live_issues(env: &Env) -> Vec<IssueFacts> {
    stored_issues(&env.db.pool).await
}

fn expected(env: &Env) -> Vec<IssueFacts> {
    truth_issues(&env.sim)
}

/// Issues of the project holding the most issues.
fn biggest_project(env: &Env) -> (i64, Vec<TruthIssue>) {
    let truth = env.sim.truth();
    let id = truth
        .projects
        .iter()
        .filter(|p| !p.archived)
        .max_by_key(|p| truth.issues.iter().filter(|i| i.project_id == p.id).count())
        .expect("a project")
        .id;
    (
        id,
        truth
            .issues
            .into_iter()
            .filter(|i| i.project_id == id)
            .collect(),
    )
}

/// Two incremental cycles in the user's zone: the first sets a recent mark, the second must
/// still see a change made right after it. A JQL date written in UTC instead of the user's zone
/// is read hours late in a zone west of UTC and the change would be missed.
async fn changes_are_caught_when_the_user_lives_in(zone: &str) {
    let env = Env::start(SimConfig {
        user_time_zone: zone.to_string(),
        site_time_zone: zone.to_string(),
        ..SimConfig::small()
    })
    .await;
    sync_succeeds(&env, &ALL, false).await;
    let ids: Vec<i64> = env
        .sim
        .truth()
        .issues
        .iter()
        .map(|i| i.id)
        .take(3)
        .collect();
    env.sim.update_issue(ids[0]).expect("update");
    sync_succeeds(&env, &["issues"], false).await;
    env.sim.update_issue(ids[1]).expect("update");
    env.sim.update_issue(ids[2]).expect("update");
    let outcomes = sync_succeeds(&env, &["issues"], false).await;
    assert_eq!(outcomes[0].mode, jira_sync::streams::Mode::Incremental);
    assert_eq!(live_issues(&env).await, expected(&env), "zone {zone}");
}

#[tokio::test]
async fn changes_are_caught_for_a_user_in_pacific_kiritimati() {
    changes_are_caught_when_the_user_lives_in("Pacific/Kiritimati").await;
}

#[tokio::test]
async fn changes_are_caught_for_a_user_in_america_los_angeles() {
    changes_are_caught_when_the_user_lives_in("America/Los_Angeles").await;
}

#[tokio::test]
async fn a_change_not_yet_visible_to_search_is_caught_by_the_next_run() {
    let env = Env::start(SimConfig {
        search_lag_ms: 1_500,
        ..SimConfig::small()
    })
    .await;
    sync_succeeds(&env, &ALL, false).await;
    let id = env.sim.truth().issues[5].id;
    let changed = env.sim.update_issue(id).expect("update");
    // Search does not show the change yet: this run cannot see it.
    sync_succeeds(&env, &["issues"], false).await;
    // Once search catches up, the next run must, although its predecessor already ran after
    // the change was made.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sync_succeeds(&env, &["issues"], false).await;
        let (updated,): (chrono::DateTime<chrono::Utc>,) =
            sqlx::query_as("SELECT updated FROM jira.issues WHERE id = $1")
                .bind(id)
                .fetch_one(&env.db.pool)
                .await
                .expect("row");
        if updated == changed.updated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lagging change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(live_issues(&env).await, expected(&env));
}

#[tokio::test]
async fn the_census_marks_deleted_issues_and_keeps_moved_ones() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &ALL, false).await;
    let (project_id, issues) = biggest_project(&env);
    let truth = env.sim.truth();
    let other = truth
        .projects
        .iter()
        .find(|p| !p.archived && p.id != project_id)
        .expect("another project");
    env.sim.delete_issue(issues[0].id).expect("delete");
    env.sim.delete_issue(issues[1].id).expect("delete");
    let moved = env.sim.move_issue(issues[2].id, &other.key).expect("move");

    // The census alone, without an incremental run in between, sorts it out.
    let outcomes = sync_succeeds(&env, &["census"], false).await;
    assert!(outcomes[0].requests > 0);
    assert_eq!(
        deleted_issue_ids(&env.db.pool).await,
        BTreeSet::from([issues[0].id, issues[1].id])
    );
    assert_eq!(
        issue_key_and_project(&env.db.pool, moved.id).await,
        (moved.key.clone(), other.id)
    );
    assert_eq!(live_issues(&env).await, expected(&env));
}

#[tokio::test]
async fn the_census_marks_nothing_when_most_of_a_project_vanishes_at_once() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &ALL, false).await;
    let (_, issues) = biggest_project(&env);
    let vanish = issues.len() * 3 / 4;
    for issue in &issues[..vanish] {
        env.sim.delete_issue(issue.id).expect("delete");
    }
    sync_succeeds(&env, &["census"], false).await;
    assert!(
        deleted_issue_ids(&env.db.pool).await.is_empty(),
        "a mass vanish must look like lost permission, not deletion"
    );
}

#[tokio::test]
async fn an_issue_marked_deleted_that_reappears_is_restored_by_the_census() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &ALL, false).await;
    let id = env.sim.truth().issues[7].id;
    // As if an earlier census had seen it vanish (a permission blip).
    sqlx::query("UPDATE jira.issues SET deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(&env.db.pool)
        .await
        .expect("mark");
    sync_succeeds(&env, &["census"], false).await;
    assert!(deleted_issue_ids(&env.db.pool).await.is_empty());
    assert_eq!(live_issues(&env).await, expected(&env));
}

#[tokio::test]
async fn new_audit_records_arrive_once_each() {
    let mut env = Env::start(SimConfig::small()).await;
    env.settings.sync.audit_lag_secs = 0;
    sync_succeeds(&env, &ALL, false).await;
    let added: Vec<i64> = (0..5).map(|_| env.sim.add_audit_record()).collect();
    // Records newer than `now - lag` wait for a later window; poll until they are in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        sync_succeeds(&env, &["audit_records"], false).await;
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM jira.audit_records WHERE id = ANY($1)")
                .bind(&added)
                .fetch_one(&env.db.pool)
                .await
                .expect("count");
        if n == added.len() as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "new audit records never arrived");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (stored, want) = audit_ids(&env.db.pool, &env.sim).await;
    assert_eq!(stored, want);
}

#[tokio::test]
async fn an_incremental_run_costs_requests_in_proportion_to_what_changed() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &ALL, false).await;
    let truth = env.sim.truth();
    for issue in truth.issues.iter().step_by(25).take(10) {
        env.sim.update_issue(issue.id).expect("update");
    }
    let projects = truth.projects.len() as u64;
    let outcomes = sync_succeeds(&env, &["issues"], false).await;
    // Two project listings (live, archived), one count, one search page per project; then
    // for the records of issues one changelog bulk fetch and the two worklog feeds.
    assert!(
        outcomes[0].requests <= 3 + projects + 3,
        "{} requests for 10 changes over {projects} projects",
        outcomes[0].requests
    );
    assert!(outcomes[0].rows_seen < truth.issues.len() as u64 / 4);
    assert_eq!(live_issues(&env).await, expected(&env));
}
