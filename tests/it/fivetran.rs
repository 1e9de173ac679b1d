//! The Fivetran-compatible views (`jira_fivetran`): one issue row per issue, the status history
//! from creation on with the time in each status the simulator's truth implies, reference data
//! by id, and the views stay current with the tables.

use crate::support::{Env, sync_succeeds};
use jira_sim::SimConfig;
use std::collections::BTreeMap;

pub(crate) const STREAMS: [&str; 17] = [
    "projects",
    "issues",
    "users",
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
    "boards",
    "sprints",
    "audit_records",
    "census",
];

#[tokio::test]
async fn the_views_hold_every_issue_its_status_history_and_the_reference_data() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &STREAMS, false).await;
    let store = env.store();
    store
        .install_compat("jira_fivetran", &env.settings.site())
        .await
        .expect("the views");
    // Installing again replaces them in place.
    store
        .install_compat("jira_fivetran", &env.settings.site())
        .await
        .expect("the views again");
    let pool = &env.db.pool;
    let truth = env.sim.truth();
    let live: Vec<i64> = truth.issues.iter().map(|i| i.id).collect();
    let mut ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM jira_fivetran.issue WHERE NOT _fivetran_deleted")
            .fetch_all(pool)
            .await
            .expect("issues");
    ids.sort_unstable();
    let mut want = live.clone();
    want.sort_unstable();
    assert_eq!(ids, want, "one row per live issue");

    // Every issue has its status from creation on.
    let (without,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira_fivetran.issue i WHERE NOT EXISTS ( \
           SELECT 1 FROM jira_fivetran.issue_field_history h \
           WHERE h.issue_id = i.id AND h.field_id = 'status' AND h.time = i.created)",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!(without, 0, "issues without their first status");
    // One row per field, issue and time, as the package's tests require.
    let (duplicates,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM (SELECT field_id, issue_id, time FROM \
         jira_fivetran.issue_field_history GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!(duplicates, 0);

    // Time in each status from the history equals the truth.
    let rows: Vec<(i64, String, f64)> = sqlx::query_as(
        "WITH spans AS ( \
           SELECT issue_id, value, \
                  lead(time) OVER (PARTITION BY issue_id ORDER BY time) - time AS spent \
           FROM jira_fivetran.issue_field_history WHERE field_id = 'status') \
         SELECT issue_id, value, extract(epoch FROM sum(spent))::float8 * 1000 FROM spans \
         WHERE spent IS NOT NULL GROUP BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("time in status");
    let mut by_issue: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for (issue, status, ms) in rows {
        *by_issue
            .entry(issue)
            .or_default()
            .entry(status)
            .or_default() += ms.round() as i64;
    }
    let mut compared = 0;
    for &id in live.iter().step_by(5) {
        let want = env.sim.time_in_status(id);
        assert_eq!(by_issue.remove(&id).unwrap_or_default(), want, "issue {id}");
        compared += usize::from(!want.is_empty());
    }
    assert!(compared >= 5, "only {compared} issues ever changed status");

    // Every sprint an issue names is a sprint of the sprint view (but those of archived
    // projects, whose boards Jira no longer lists).
    let (unknown,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira_fivetran.issue_multiselect_history h \
         JOIN jira_fivetran.field f ON f.id = h.field_id AND f.name = 'Sprint' \
         JOIN jira.issues i ON i.id = h.issue_id \
         JOIN jira.projects p ON p.site = i.site AND p.id = i.project_id AND NOT p.archived \
         WHERE NOT EXISTS (SELECT 1 FROM jira_fivetran.sprint s WHERE s.id::text = h.value)",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    let (named,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira_fivetran.issue_multiselect_history h \
         JOIN jira_fivetran.field f ON f.id = h.field_id AND f.name = 'Sprint'",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert!(named > 0, "no issue is in a sprint");
    assert_eq!(
        unknown, 0,
        "sprints issues name that the Agile API does not list"
    );

    // Reference data by id, with the current names.
    env.sim.rename_status("3", "Doing").expect("rename");
    sync_succeeds(&env, &["statuses"], false).await;
    let name: String = sqlx::query_scalar("SELECT name FROM jira_fivetran.status WHERE id = 3")
        .fetch_one(pool)
        .await
        .expect("the status");
    assert_eq!(name, "Doing", "the views are as current as the tables");
    for (view, table) in [
        ("issue_type", "jira.issue_types"),
        ("priority", "jira.priorities"),
        ("resolution", "jira.resolutions"),
        ("status_category", "jira.status_categories"),
        ("component", "jira.components"),
        ("version", "jira.versions"),
        ("field", "jira.fields"),
        ("field_option", "jira.field_options"),
        ("project", "jira.projects"),
        ("comment", "jira.comments"),
        ("issue_link", "jira.issue_links"),
        ("sprint", "jira.sprints"),
    ] {
        let (in_view,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM jira_fivetran.{view}"
        )))
        .fetch_one(pool)
        .await
        .expect("count the view");
        let (in_table,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE deleted_at IS NULL"
        )))
        .fetch_one(pool)
        .await
        .expect("count the table");
        assert_eq!(in_view, in_table, "{view}");
        assert!(in_view > 0, "{view} is empty");
    }
}

/// Per (field id, epoch ms), the values `issue_multiselect_history` gives issue `id` at that
/// time (an empty set for a row with a null value).
async fn multiselect_rows(
    env: &Env,
    id: i64,
) -> BTreeMap<(String, i64), std::collections::BTreeSet<String>> {
    let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT field_id, (extract(epoch FROM time) * 1000)::int8, value \
         FROM jira_fivetran.issue_multiselect_history WHERE issue_id = $1 \
         AND field_id IN ('labels', 'components', 'fixVersions', 'customfield_10020')",
    )
    .bind(id)
    .fetch_all(&env.db.pool)
    .await
    .expect("multiselect history");
    let mut out: BTreeMap<(String, i64), std::collections::BTreeSet<String>> = BTreeMap::new();
    for (field, ms, value) in rows {
        let set = out.entry((field, ms)).or_default();
        set.extend(value);
    }
    out
}

#[tokio::test]
async fn multi_valued_fields_have_their_whole_history_from_the_changelogs() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &STREAMS, false).await;
    env.store()
        .install_compat("jira_fivetran", &env.settings.site())
        .await
        .expect("the views");
    // Edits change labels, sprints, components and fix versions as well; some issues are
    // edited twice, one is moved.
    let truth = env.sim.truth();
    let edited: Vec<i64> = truth.issues.iter().step_by(9).map(|i| i.id).collect();
    for (n, &id) in edited.iter().enumerate() {
        env.sim.update_issue(id).expect("update");
        if n % 2 == 0 {
            env.sim.advance_clock(std::time::Duration::from_secs(3600));
            env.sim.update_issue(id).expect("update again");
        }
    }
    let target = truth
        .projects
        .iter()
        .find(|p| !p.archived)
        .expect("a live project");
    let mover = truth
        .issues
        .iter()
        .find(|i| i.project_id != target.id)
        .expect("an issue elsewhere");
    env.sim.move_issue(mover.id, &target.key).expect("move");
    sync_succeeds(&env, &STREAMS, false).await;

    let mut changed = 0;
    for &id in edited.iter().chain([&mover.id]) {
        let want: BTreeMap<(String, i64), _> = env
            .sim
            .multiselect_history(id)
            .into_iter()
            .map(|((field, ms), set)| ((field.to_owned(), ms), set))
            .collect();
        changed += want.len();
        assert_eq!(multiselect_rows(&env, id).await, want, "issue {id}");
    }
    assert!(
        changed > edited.len() * 2,
        "the edits changed too few multi-valued fields ({changed})"
    );
    // An issue never edited: its values at creation only.
    let quiet = truth
        .issues
        .iter()
        .skip(1)
        .step_by(9)
        .find(|i| !edited.contains(&i.id) && i.id != mover.id)
        .expect("an issue not edited");
    let want: BTreeMap<(String, i64), _> = env
        .sim
        .multiselect_history(quiet.id)
        .into_iter()
        .map(|((field, ms), set)| ((field.to_owned(), ms), set))
        .collect();
    assert_eq!(
        multiselect_rows(&env, quiet.id).await,
        want,
        "issue {}",
        quiet.id
    );
    // Sprint changes are multi-valued: none of them is in issue_field_history.
    let (sprints_as_single,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira_fivetran.issue_field_history \
         WHERE field_id IN ('customfield_10020', 'labels', 'components', 'fixVersions')",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("count");
    assert_eq!(sprints_as_single, 0);
    // Other multi-valued custom fields: their current values (Platforms by option id).
    let (platforms,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira_fivetran.issue_multiselect_history h \
         JOIN jira.field_options o ON o.id::text = h.value \
         WHERE h.field_id = 'customfield_10016' AND o.field_id = 'customfield_10016'",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("count");
    assert!(platforms > 0, "multi-select values by option id");
}
