//! Reference data (fields and their options, status categories, statuses, issue types,
//! priorities, resolutions, project categories, components, versions) against the simulator's
//! truth: after a full sync, after changes (a renamed status, a new version and a new option,
//! both removed again), and a second listing without changes writes nothing; boards and
//! sprints, before and after a sprint closes; a non-admin account skips the field options.

use crate::support::{Env, sync, sync_succeeds};
use jira_sim::SimConfig;
use jira_sync::engine::OutcomeStatus;
use std::collections::BTreeMap;

/// Each kind's table (named by `name`, but options by `value`).
const KINDS: [(&str, &str); 10] = [
    ("fields", "jira.fields"),
    ("field_options", "jira.field_options"),
    ("status_categories", "jira.status_categories"),
    ("statuses", "jira.statuses"),
    ("issue_types", "jira.issue_types"),
    ("priorities", "jira.priorities"),
    ("resolutions", "jira.resolutions"),
    ("project_categories", "jira.project_categories"),
    ("components", "jira.components"),
    ("versions", "jira.versions"),
];

/// Projects first: components and versions are listed per live project; fields before
/// their options.
const STREAMS: [&str; 11] = [
    "projects",
    "fields",
    "field_options",
    "status_categories",
    "statuses",
    "issue_types",
    "priorities",
    "resolutions",
    "project_categories",
    "components",
    "versions",
];

/// Every kind's live (id, name) pairs, sorted.
async fn stored(env: &Env) -> BTreeMap<&'static str, Vec<(String, String)>> {
    let mut all = BTreeMap::new();
    for (kind, table) in KINDS {
        let name = if kind == "field_options" {
            "value"
        } else {
            "name"
        };
        let mut rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id::text, {name} FROM {table} WHERE deleted_at IS NULL"
        )))
        .fetch_all(&env.db.pool)
        .await
        .expect("the stored rows");
        rows.sort();
        all.insert(kind, rows);
    }
    all
}

#[tokio::test]
async fn reference_data_equals_the_truth_after_a_sync_and_after_changes() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &STREAMS, false).await;
    let truth = env.sim.reference_truth();
    assert_eq!(stored(&env).await, truth, "after the first sync");
    assert!(truth.values().all(|kind| !kind.is_empty()));

    // Nothing changed: a second listing writes nothing.
    let again = sync_succeeds(&env, &STREAMS, false).await;
    for outcome in &again {
        assert_eq!(outcome.rows_written, 0, "{}", outcome.summary());
    }

    // A renamed status, a new version, then that version removed.
    env.sim
        .rename_status("10001", "Code Review")
        .expect("rename");
    let project = env.sim.truth().projects[0].key.clone();
    let version = env.sim.add_version(&project, "9.0").expect("version");
    let option = env.sim.add_field_option("Blocker");
    let outcomes = sync_succeeds(&env, &STREAMS, false).await;
    assert_eq!(
        stored(&env).await,
        env.sim.reference_truth(),
        "after changes"
    );
    let written: BTreeMap<&str, u64> = outcomes
        .iter()
        .map(|o| (o.stream, o.rows_written))
        .collect();
    assert_eq!(written["statuses"], 1, "only the renamed status is written");
    assert_eq!(written["versions"], 1, "only the new version is written");
    assert_eq!(
        written["field_options"], 1,
        "only the new option is written"
    );
    assert_eq!(written["priorities"], 0);

    // Boards and every scrum board's sprints; a sprint closes and the next one starts.
    let agile = ["boards", "sprints"];
    sync_succeeds(&env, &agile, false).await;
    assert_eq!(
        agile_stored(&env).await,
        env.sim.agile_truth(),
        "boards and sprints"
    );
    env.sim
        .advance_clock(std::time::Duration::from_secs(14 * 86_400));
    sync_succeeds(&env, &agile, false).await;
    let (_, sprints) = env.sim.agile_truth();
    assert!(sprints.iter().any(|s| s.2 == "active") && sprints.iter().any(|s| s.2 == "future"));
    assert_eq!(
        agile_stored(&env).await,
        env.sim.agile_truth(),
        "after a sprint closed"
    );

    env.sim.remove_version(version).expect("remove");
    env.sim.remove_field_option(option).expect("remove");
    sync_succeeds(&env, &STREAMS, false).await;
    assert_eq!(
        stored(&env).await,
        env.sim.reference_truth(),
        "after a removal"
    );
    let (deleted,): (bool,) =
        sqlx::query_as("SELECT deleted_at IS NOT NULL FROM jira.versions WHERE id = $1")
            .bind(version)
            .fetch_one(&env.db.pool)
            .await
            .expect("the removed version's row stays");
    assert!(deleted, "a version Jira no longer lists is marked deleted");
    let (deleted,): (bool,) =
        sqlx::query_as("SELECT deleted_at IS NOT NULL FROM jira.field_options WHERE id = $1")
            .bind(option)
            .fetch_one(&env.db.pool)
            .await
            .expect("the removed option's row stays");
    assert!(deleted, "an option Jira no longer lists is marked deleted");

    // A cascading field's child options name their parent; the options name field and context.
    let children: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT id, parent_id, field_id, context_id FROM jira.field_options \
         WHERE parent_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("child options");
    assert_eq!(children.len(), 4, "{children:?}");
    assert!(
        children.iter().all(|c| c.2 == "customfield_10017"
            && c.3 == 10_317
            && (10_220..=10_222).contains(&c.1)),
        "{children:?}"
    );
}

#[tokio::test]
async fn an_account_that_may_not_list_field_contexts_or_groups_skips_them_and_syncs_the_rest() {
    let env = Env::start(SimConfig::small()).await;
    env.sim.set_admin(false);
    let streams = ["fields", "field_options", "user_groups", "statuses"];
    let outcomes = sync(&env, &streams, false).await;
    for o in &outcomes {
        match (o.stream, &o.status) {
            ("field_options", OutcomeStatus::Skipped(why)) => {
                assert!(why.contains("Administer Jira"), "{why}");
            }
            ("user_groups", OutcomeStatus::Skipped(why)) => {
                assert!(why.contains("Browse users and groups"), "{why}");
            }
            ("fields" | "statuses", OutcomeStatus::Succeeded) => {}
            _ => panic!("unexpected: {}", o.summary()),
        }
    }
    for table in ["jira.field_options", "jira.user_groups"] {
        let (rows,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&env.db.pool)
                .await
                .expect("count");
        assert_eq!(rows, 0, "{table}");
    }
}

/// The live memberships: (group id, group name, account id), sorted.
async fn memberships(env: &Env) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT group_id, group_name, account_id FROM jira.user_groups \
         WHERE deleted_at IS NULL ORDER BY 1, 2, 3",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("memberships")
}

#[tokio::test]
async fn group_memberships_equal_the_truth_after_a_sync_a_new_user_and_a_removal() {
    // More users than a page of members (50), so the member listing pages.
    let env = Env::start(SimConfig {
        users: 120,
        ..SimConfig::small()
    })
    .await;
    sync_succeeds(&env, &["user_groups"], false).await;
    let truth = env.sim.group_truth();
    assert!(truth.len() > 120, "every user is in jira-software-users");
    assert_eq!(memberships(&env).await, truth, "after the first sync");
    // Inactive users are members too.
    let (inactive,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira.user_groups WHERE (raw->>'active')::boolean IS FALSE",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("count");
    assert!(inactive > 0, "inactive members are listed");

    let again = sync_succeeds(&env, &["user_groups"], false).await;
    assert_eq!(
        again[0].rows_written, 0,
        "an unchanged listing writes nothing"
    );

    let (group, _, account) = truth
        .iter()
        .find(|m| m.1 == "developers")
        .cloned()
        .expect("an engineer");
    env.sim
        .remove_group_member("developers", &account)
        .expect("remove");
    env.sim.add_user();
    sync_succeeds(&env, &["user_groups"], false).await;
    assert_eq!(
        memberships(&env).await,
        env.sim.group_truth(),
        "after changes"
    );
    let (deleted,): (bool,) = sqlx::query_as(
        "SELECT deleted_at IS NOT NULL FROM jira.user_groups WHERE group_id = $1 \
         AND account_id = $2",
    )
    .bind(&group)
    .bind(&account)
    .fetch_one(&env.db.pool)
    .await
    .expect("the membership's row stays");
    assert!(
        deleted,
        "a membership Jira no longer lists is marked deleted"
    );
}

type Agile = (Vec<(i64, String, String)>, Vec<(i64, String, String)>);

/// The live boards (id, name, type) and sprints (id, name, state), sorted as the truth is.
async fn agile_stored(env: &Env) -> Agile {
    let boards: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, name, type FROM jira.boards WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("boards");
    let mut sprints: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, name, state FROM jira.sprints WHERE deleted_at IS NULL")
            .fetch_all(&env.db.pool)
            .await
            .expect("sprints");
    let (_, truth) = env.sim.agile_truth();
    let order: Vec<i64> = truth.iter().map(|s| s.0).collect();
    sprints.sort_by_key(|s| order.iter().position(|&id| id == s.0));
    (boards, sprints)
}
