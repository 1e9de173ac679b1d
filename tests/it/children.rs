//! The records of issues (change histories, comments, worklogs, links) against the simulator's
//! truth: after a full sync, and after incremental rounds that add, edit and delete comments,
//! add, edit and delete worklogs, edit, move and link issues, the ids stored equal the ids the
//! API shows, exactly; time in status computed in SQL equals the simulator's.

use crate::support::{
    Env, assert_exact, child_ids as ids, stored_issues, sync, sync_succeeds, truth_issues,
};
use jira_sim::SimConfig;
use jira_sync::engine::OutcomeStatus;
use std::collections::BTreeMap;

/// Issues by what they hold: (histories, comments, worklogs).
fn issue_where(env: &Env, pick: impl Fn((usize, usize, usize)) -> bool) -> i64 {
    env.sim
        .truth()
        .issues
        .iter()
        .map(|i| i.id)
        .find(|&id| pick(env.sim.work_counts(id)))
        .expect("an issue of that kind")
}

fn quiet_feeds() -> SimConfig {
    SimConfig {
        // The worklog feeds answer at once: incremental runs read them.
        worklog_feed_quiet_ms: 0,
        // Enough issues with long worklog lists that the full sync reads them from the feeds.
        long_worklog_share: 0.05,
        ..SimConfig::small()
    }
}

#[tokio::test]
async fn every_record_of_every_issue_is_exact_after_a_full_sync_and_incremental_rounds() {
    let env = Env::start(quiet_feeds()).await;
    let outcomes = sync_succeeds(&env, &["projects", "issues"], false).await;
    assert_exact(&env, "after the full sync").await;
    // The worklogs that truncated lists left out came from the feeds, not one request per
    // issue, as that took fewer requests here.
    let live: Vec<i64> = env.sim.truth().issues.iter().map(|i| i.id).collect();
    let truncated_worklogs = live
        .iter()
        .filter(|&&id| env.sim.work_counts(id).2 > 20)
        .count();
    let per_issue = (env.sim.request_count("/rest/api/3/issue/")
        - env.sim.request_count("/rest/api/3/issue/bulkfetch")) as usize;
    assert!(
        truncated_worklogs > 3,
        "the site needs issues with many worklogs"
    );
    assert!(env.sim.request_count("/rest/api/3/worklog/updated") > 0);
    assert!(env.sim.request_count("/rest/api/3/worklog/list") > 0);
    let comments_truncated = live
        .iter()
        .filter(|&&id| env.sim.work_counts(id).1 > 20)
        .count();
    assert_eq!(
        per_issue, comments_truncated,
        "only comments are read per issue: {per_issue} requests for {comments_truncated} \
         truncated comment lists and {truncated_worklogs} truncated worklog lists"
    );
    // An issue with more histories than any embedded list holds is complete.
    let long = issue_where(&env, |(histories, _, _)| histories > 100);
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira.changelogs WHERE issue_id = $1 AND deleted_at IS NULL",
    )
    .bind(long)
    .fetch_one(&env.db.pool)
    .await
    .expect("count");
    assert_eq!(stored as usize, env.sim.work_counts(long).0);
    let summary = outcomes[1].summary();
    assert!(summary.contains("jira.changelogs"), "{summary}");

    // Round one: comments added, edited and deleted (one on an issue whose list is
    // truncated), worklogs added and deleted, issues edited, moved and linked.
    let truncated = issue_where(&env, |(_, comments, _)| comments > 20);
    // Chosen before anything is added: their records were all stored by the full sync.
    let with_comments = issue_where(&env, |(_, comments, _)| (1..20).contains(&comments));
    let with_worklogs = issue_where(&env, |(_, _, worklogs)| (1..20).contains(&worklogs));
    let truth = env.sim.truth();
    let plain: Vec<i64> = truth.issues.iter().map(|i| i.id).take(12).collect();
    for &id in &plain[..3] {
        env.sim.add_comment(id).expect("comment");
    }
    let first_comments = env.sim.comment_ids(truncated);
    env.sim.delete_comment(first_comments[0]).expect("delete");
    env.sim.edit_comment(first_comments[1]).expect("edit");
    env.sim
        .delete_comment(env.sim.comment_ids(with_comments)[0])
        .expect("delete");
    for &id in &plain[3..5] {
        env.sim.add_worklog(id).expect("log work");
    }
    env.sim
        .delete_worklog(env.sim.worklog_ids(with_worklogs)[0])
        .expect("delete");
    for &id in &plain[5..10] {
        env.sim.update_issue(id).expect("update");
    }
    let target = truth
        .projects
        .iter()
        .find(|p| !p.archived && p.id != truth.issues[10].project_id)
        .expect("another project");
    env.sim.move_issue(plain[10], &target.key).expect("move");
    let link = env.sim.add_link(plain[11], plain[0]).expect("link");
    let old_link = env.sim.work_truth().link_ids[0];
    env.sim.delete_link(old_link).expect("unlink");
    sync_succeeds(&env, &["issues"], false).await;
    assert_exact(&env, "after round one").await;
    assert!(env.sim.work_truth().link_ids.contains(&link));

    // Round two: a worklog edited without its issue changing reaches the table through the
    // feed of changed worklogs; more worklogs on an issue than it embeds; a comment edited.
    let untouched = env
        .sim
        .truth()
        .issues
        .iter()
        .map(|i| i.id)
        .filter(|id| !plain.contains(id) && *id != with_worklogs)
        .find(|&id| env.sim.work_counts(id).2 > 0)
        .expect("an issue with worklogs");
    let worklog = env.sim.worklog_ids(untouched)[0];
    env.sim.edit_worklog(worklog).expect("edit worklog");
    while env.sim.work_counts(plain[4]).2 <= 20 {
        env.sim.add_worklog(plain[4]).expect("log work");
    }
    env.sim
        .delete_worklog(env.sim.worklog_ids(plain[4])[0])
        .expect("delete");
    env.sim.edit_comment(first_comments[2]).expect("edit");
    sync_succeeds(&env, &["issues"], false).await;
    assert_exact(&env, "after round two").await;
    let (updated, seconds) = env.sim.worklog_state(worklog).expect("the worklog");
    let stored: (chrono::DateTime<chrono::Utc>, i64) =
        sqlx::query_as("SELECT updated, time_spent_seconds FROM jira.worklogs WHERE id = $1")
            .bind(worklog)
            .fetch_one(&env.db.pool)
            .await
            .expect("the stored worklog");
    assert_eq!(stored, (updated, seconds), "the edited worklog");

    // A full sync again, after a worklog was deleted from a long list and another edited: the
    // feeds bring both.
    let long = env
        .sim
        .truth()
        .issues
        .iter()
        .map(|i| i.id)
        .find(|&id| id != plain[4] && env.sim.work_counts(id).2 > 20)
        .expect("an issue with a long worklog list");
    let listed = env.sim.worklog_ids(long);
    env.sim.delete_worklog(listed[3]).expect("delete");
    env.sim.edit_worklog(listed[5]).expect("edit");
    // Past the feeds' quiet minute: the issue is complete from the feeds, not read alone.
    env.sim.advance_clock(std::time::Duration::from_secs(600));
    let alone = env
        .sim
        .request_count(&format!("/rest/api/3/issue/{long}/worklog"));
    let feed_before = env.sim.request_count("/rest/api/3/worklog/deleted");
    sync_succeeds(&env, &["issues"], true).await;
    assert!(env.sim.request_count("/rest/api/3/worklog/deleted") > feed_before);
    let read_alone = env
        .sim
        .request_count(&format!("/rest/api/3/issue/{long}/worklog"));
    assert_eq!(read_alone, alone, "the feeds completed the issue");
    assert_exact(&env, "after a second full sync").await;

    // A deleted issue takes its records with it (the census marks them).
    let gone = plain[1];
    env.sim.delete_issue(gone).expect("delete issue");
    sync_succeeds(&env, &["issues", "census"], false).await;
    assert_exact(&env, "after an issue was deleted").await;
}

#[tokio::test]
async fn time_in_status_computed_in_sql_from_the_changelogs_equals_the_truth() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &["projects", "issues"], false).await;
    // The query of docs/schema.md ("Time in status"), for every issue.
    let rows: Vec<(i64, String, f64)> = sqlx::query_as(
        "WITH changes AS ( \
           SELECT c.site, c.issue_id, c.created, c.id, item->>'from' AS from_status \
           FROM jira.changelogs c CROSS JOIN jsonb_array_elements(c.items) AS item \
           WHERE c.deleted_at IS NULL AND item->>'fieldId' = 'status' \
         ), spans AS ( \
           SELECT ch.issue_id, ch.from_status, \
                  ch.created - coalesce(lag(ch.created) OVER w, i.created) AS spent \
           FROM changes ch JOIN jira.issues i ON i.site = ch.site AND i.id = ch.issue_id \
           WINDOW w AS (PARTITION BY ch.issue_id ORDER BY ch.created, ch.id) \
         ) \
         SELECT issue_id, from_status, extract(epoch FROM sum(spent))::float8 * 1000 \
         FROM spans GROUP BY issue_id, from_status ORDER BY issue_id, from_status",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("time in status");
    let mut by_issue: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for (issue, status, ms) in rows {
        by_issue
            .entry(issue)
            .or_default()
            .insert(status, ms.round() as i64);
    }
    let long = issue_where(&env, |(histories, _, _)| histories > 100);
    let mut sample: Vec<i64> = env
        .sim
        .truth()
        .issues
        .iter()
        .map(|i| i.id)
        .step_by(7)
        .collect();
    sample.push(long);
    let mut compared = 0;
    for id in sample {
        let want = env.sim.time_in_status(id);
        let got = by_issue.remove(&id).unwrap_or_default();
        assert_eq!(got, want, "issue {id}");
        compared += usize::from(!want.is_empty());
    }
    assert!(compared >= 5, "only {compared} issues ever changed status");
}

#[tokio::test]
async fn records_synced_before_they_were_kept_are_read_in_the_next_run() {
    let mut env = Env::start(SimConfig::small()).await;
    for flag in [
        &mut env.settings.sync.changelogs,
        &mut env.settings.sync.comments,
        &mut env.settings.sync.worklogs,
        &mut env.settings.sync.issue_links,
    ] {
        *flag = false;
    }
    sync_succeeds(&env, &["projects", "issues"], false).await;
    let (comments, _) = ids(&env, "jira.comments").await;
    assert!(comments.is_empty());
    // An upgrade: the records are kept from now on, and an incremental run reads them for
    // every issue synced before, not only for the issues that changed.
    env.settings.sync.changelogs = true;
    env.settings.sync.comments = true;
    env.settings.sync.worklogs = true;
    env.settings.sync.issue_links = true;
    let before = env.sim.request_count("/rest/api/3/issue/bulkfetch");
    let outcomes = sync_succeeds(&env, &["issues"], false).await;
    assert_eq!(outcomes[0].mode, jira_sync::streams::Mode::Incremental);
    assert_exact(&env, "after the upgrade").await;
    let issues = env.sim.truth().issues.len() as u64;
    assert!(
        env.sim.request_count("/rest/api/3/issue/bulkfetch") - before <= issues.div_ceil(100),
        "issues read again one by one"
    );
}

#[tokio::test]
async fn a_failing_catch_up_fails_the_run_and_the_next_run_completes_it() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &["projects"], false).await;
    // Every bulk changelog request fails for good (a 400 is never retried).
    env.sim
        .fail_path("/rest/api/3/changelog/bulkfetch", Some(400));
    let outcomes = sync(&env, &["issues"], false).await;
    let OutcomeStatus::Failed(err) = &outcomes[0].status else {
        panic!("{}", outcomes[0].summary())
    };
    assert!(
        format!("{err:#}").contains("reading the changelogs of issues"),
        "{err:#}"
    );
    // The issues landed; their histories are owed, not lost.
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    env.sim.fail_path("/rest/api/3/changelog/bulkfetch", None);
    sync_succeeds(&env, &["issues"], false).await;
    assert_exact(&env, "after the failed catch-up was retried").await;
}
