//! Paging while the site changes. Search pages are computed anew for every request (Cloud's
//! page tokens and Data Center's `startAt` both behave as offsets), so an issue updated, moved
//! or deleted after its page was read shifts the issues behind it forward, and a scan that
//! trusted its pages would skip as many. Every scan of more than one page is squared with a
//! listing, so the run itself ends at the truth: no issue waits for a later run or the census.

use crate::support::{Env, deleted_issue_ids, stored_issues, sync_succeeds, truth_issues};
use jira_sim::{MidScan, SimConfig};
use jira_sync::settings::AuthMode;
use std::collections::BTreeSet;

/// The live project holding the most issues: its id and key.
fn biggest_project(env: &Env) -> (i64, String) {
    let truth = env.sim.truth();
    let project = truth
        .projects
        .iter()
        .filter(|p| !p.archived)
        .max_by_key(|p| truth.issues.iter().filter(|i| i.project_id == p.id).count())
        .expect("a project");
    (project.id, project.key.clone())
}

/// Ids that were in the truth before and are not now.
fn vanished(before: &BTreeSet<i64>, env: &Env) -> BTreeSet<i64> {
    let now: BTreeSet<i64> = env.sim.truth().issues.iter().map(|i| i.id).collect();
    before.difference(&now).copied().collect()
}

fn ids(env: &Env) -> BTreeSet<i64> {
    env.sim.truth().issues.iter().map(|i| i.id).collect()
}

/// A full sync during which, after the first page of the biggest project, three issues of
/// that page are updated, two deleted and two created; then the same within an incremental
/// scan of more than one page. Both runs end at the truth, deletions included.
async fn full_and_incremental_reach_the_truth_while_pages_shift(config: SimConfig) {
    let data_center = config.data_center;
    let mut env = Env::start(config).await;
    if data_center {
        env.settings.jira.auth = AuthMode::Bearer;
        env.settings.jira.email = String::new();
    }
    let (project, key) = biggest_project(&env);
    let scan = MidScan {
        jql_contains: format!("project = {project}"),
        after_page: 1,
        update_served: 3,
        delete_served: 2,
        create: 2,
        create_in: key.clone(),
    };
    env.sim.change_mid_scan(scan.clone());
    let before = ids(&env);
    sync_succeeds(&env, &["projects", "issues"], false).await;
    let gone = vanished(&before, &env);
    assert_eq!(gone.len(), 2, "the change did not land mid-scan");
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    assert_eq!(deleted_issue_ids(&env.db.pool).await, gone);

    // An incremental scan of more than one page: 150 issues of the project changed.
    let truth = env.sim.truth();
    for issue in truth
        .issues
        .iter()
        .filter(|i| i.project_id == project)
        .take(150)
    {
        env.sim.update_issue(issue.id).expect("update");
    }
    env.sim.change_mid_scan(MidScan {
        jql_contains: format!("project = {project} AND updated"),
        ..scan
    });
    let before = ids(&env);
    sync_succeeds(&env, &["issues"], false).await;
    let gone_now = vanished(&before, &env);
    assert_eq!(gone_now.len(), 2, "the change did not land mid-scan");
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    let all_gone: BTreeSet<i64> = gone.union(&gone_now).copied().collect();
    assert_eq!(deleted_issue_ids(&env.db.pool).await, all_gone);
}

#[tokio::test]
async fn cloud_scans_reach_the_truth_while_pages_shift() {
    full_and_incremental_reach_the_truth_while_pages_shift(SimConfig::small()).await;
}

#[tokio::test]
async fn data_center_scans_reach_the_truth_while_pages_shift() {
    full_and_incremental_reach_the_truth_while_pages_shift(SimConfig {
        data_center: true,
        ..SimConfig::small()
    })
    .await;
}

/// A project big enough to be read in ranges: its listing is made before the ranges, so the
/// issues a range skips are fetched by id after them.
#[tokio::test]
async fn a_split_scan_reaches_the_truth_while_pages_shift() {
    let env = Env::start(SimConfig {
        issues: 6_000,
        ..SimConfig::small()
    })
    .await;
    let (project, key) = biggest_project(&env);
    env.sim.change_mid_scan(MidScan {
        jql_contains: format!("project = {project}"),
        after_page: 2,
        update_served: 5,
        delete_served: 0,
        create: 3,
        create_in: key,
    });
    sync_succeeds(&env, &["projects", "issues"], false).await;
    let project_scope = format!("project = {project} AND");
    let ranges = env
        .sim
        .search_log()
        .iter()
        .filter(|jql| {
            jql.contains(&project_scope)
                && jql.contains("created <")
                && jql.ends_with("ORDER BY updated ASC, key ASC")
        })
        .count();
    assert!(ranges > 0, "the project was not split");
    // No issue is missing; one updated after its range was read may be stored as it was
    // (the next run reads it: its `updated` is past the mark)...
    let stored: BTreeSet<i64> = stored_issues(&env.db.pool)
        .await
        .iter()
        .map(|i| i.0)
        .collect();
    assert_eq!(stored, ids(&env));
    // ... and the next incremental run ends at the truth.
    sync_succeeds(&env, &["issues"], false).await;
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
}
