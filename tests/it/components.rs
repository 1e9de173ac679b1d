//! Streams as components: records that belong to issues ride on the issues stream's pages
//! ([`IssueChild`]) and commit in the page's transaction, with the issues and the cursor.

use crate::support::{Env, stored_issues};
use jira_sim::SimConfig;
use jira_sync::engine::progress::Quiet;
use jira_sync::engine::{Engine, OutcomeStatus};
use jira_sync::store::table::{Kind, Owner, Table, col};
use jira_sync::store::{Batch, Cell, PageWrite};
use jira_sync::streams::{IssueChild, Registry, RunCounters, StreamContext};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A child record per issue, in a table of the test's own.
static MARKS: Table = Table {
    name: "jira_test.issue_marks",
    owner: Owner::Site,
    key: &["issue_id"],
    columns: &[
        col("issue_id", Kind::Int8),
        col("updated", Kind::Timestamptz),
        col("raw", Kind::Jsonb),
    ],
    version: Some("updated"),
    soft_delete: false,
};

/// Marks every issue of a page; fails the page that holds `fail_on`.
struct Marks {
    fail_on: Option<i64>,
}

#[async_trait::async_trait]
impl IssueChild for Marks {
    fn name(&self) -> &'static str {
        "marks"
    }

    async fn collect(
        &self,
        ctx: &StreamContext,
        _counters: &RunCounters,
        issues: &[Value],
        page: &mut PageWrite,
    ) -> anyhow::Result<()> {
        let mut batch = Batch::new(&MARKS, &ctx.site);
        for issue in issues {
            let id: i64 = issue["id"].as_str().unwrap_or_default().parse()?;
            if Some(id) == self.fail_on {
                anyhow::bail!("the child cannot read issue {id}");
            }
            let updated = issue["fields"]["updated"].as_str().unwrap_or_default();
            let updated = chrono::DateTime::parse_from_str(updated, "%Y-%m-%dT%H:%M:%S%.f%z")?;
            batch.push(vec![
                Cell::Int8(Some(id)),
                Cell::Timestamptz(Some(updated.to_utc())),
                Cell::Jsonb(Some(serde_json::json!({ "key": issue["key"] }))),
            ]);
        }
        page.batches.push(batch);
        Ok(())
    }
}

async fn marks_table(env: &Env) {
    for sql in [
        "CREATE SCHEMA jira_test",
        "CREATE TABLE jira_test.issue_marks (site text NOT NULL, issue_id bigint NOT NULL, \
         updated timestamptz NOT NULL, raw jsonb NOT NULL, synced_at timestamptz NOT NULL, \
         PRIMARY KEY (site, issue_id))",
    ] {
        sqlx::query(sql)
            .execute(&env.db.pool)
            .await
            .expect("the marks table");
    }
}

async fn engine(env: &Env, child: Marks) -> Engine {
    let registry =
        Registry::with_children(&env.settings, vec![Arc::new(child)]).expect("the registry");
    Engine::with_registry(&env.settings, env.store(), registry, Arc::new(Quiet))
        .await
        .expect("the engine connects")
}

async fn marked(env: &Env) -> BTreeSet<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT issue_id FROM jira_test.issue_marks")
        .fetch_all(&env.db.pool)
        .await
        .expect("read the marks");
    rows.into_iter().map(|(id,)| id).collect()
}

async fn issue_ids(env: &Env) -> BTreeSet<i64> {
    stored_issues(&env.db.pool)
        .await
        .into_iter()
        .map(|issue| issue.0)
        .collect()
}

#[tokio::test]
async fn child_records_of_every_issue_page_are_written_with_it() {
    let env = Env::start(SimConfig::small()).await;
    marks_table(&env).await;
    let outcome = engine(&env, Marks { fail_on: None })
        .await
        .run_once("issues", true)
        .await;
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
    let want: BTreeSet<i64> = env.sim.truth().issues.iter().map(|i| i.id).collect();
    assert_eq!(issue_ids(&env).await, want);
    assert_eq!(marked(&env).await, want);
}

#[tokio::test]
async fn a_child_that_fails_takes_its_page_back_and_the_next_run_completes_both() {
    let env = Env::start(SimConfig::small()).await;
    marks_table(&env).await;
    // The last issue of the big project, so earlier pages commit before the failing one.
    let truth = env.sim.truth();
    let big = truth
        .projects
        .iter()
        .max_by_key(|p| truth.issues.iter().filter(|i| i.project_id == p.id).count())
        .expect("a project");
    let failing = truth
        .issues
        .iter()
        .filter(|i| i.project_id == big.id)
        .max_by_key(|i| (i.updated, i.key.clone()))
        .expect("an issue");
    let outcome = engine(
        &env,
        Marks {
            fail_on: Some(failing.id),
        },
    )
    .await
    .run_once("issues", true)
    .await;
    assert!(outcome.failed(), "{}", outcome.summary());
    let issues = issue_ids(&env).await;
    assert!(
        !issues.contains(&failing.id),
        "the failing page's issues are not committed"
    );
    assert!(!issues.is_empty(), "pages before it are");
    assert_eq!(
        marked(&env).await,
        issues,
        "every committed issue has its child record"
    );

    let outcome = engine(&env, Marks { fail_on: None })
        .await
        .run_once("issues", false)
        .await;
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
    let want: BTreeSet<i64> = truth.issues.iter().map(|i| i.id).collect();
    assert_eq!(issue_ids(&env).await, want);
    assert_eq!(marked(&env).await, want);
}
