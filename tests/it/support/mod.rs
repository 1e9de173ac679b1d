//! Shared helpers for the integration tests: a real PostgreSQL (one throwaway cluster per test
//! process unless `DATABASE_URL` names a server; a fresh database per test) and the built-in
//! Jira simulator over real HTTP.

#![allow(dead_code)]

pub mod cli;

use jira_sim::{SimConfig, Simulator, Truth};
use jira_sync::engine::progress::Quiet;
use jira_sync::engine::runner::sync_once;
use jira_sync::engine::{OutcomeStatus, StreamOutcome};
use jira_sync::settings::Settings;
use jira_sync::store::Store;
use secrecy::SecretString;
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use throwaway_pg::TempCluster;
use tokio::sync::OnceCell;

/// The cluster shared by the tests of this process; it removes itself when the process exits.
static CLUSTER: OnceCell<TempCluster> = OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub fn store(&self) -> Store {
        Store::from_pool(self.pool.clone())
    }
}

/// URL of a server where tests may create databases.
async fn admin_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        return url;
    }
    let cluster = CLUSTER
        .get_or_init(|| async {
            TempCluster::start()
                .await
                .expect("start a throwaway PostgreSQL for the tests (or set DATABASE_URL)")
        })
        .await;
    cluster.url().to_string()
}

/// Creates an empty database for one test.
pub async fn test_db() -> TestDb {
    let admin = admin_url().await;
    let name = format!(
        "jira_sync_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let pool = PgPool::connect(&admin)
        .await
        .expect("connect to the admin database");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&pool)
    .await
    .expect("drop an old test database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create the test database");
    pool.close().await;
    let mut url = url::Url::parse(&admin).expect("admin URL parses");
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let pool = PgPool::connect(&url)
        .await
        .expect("connect to the test database");
    TestDb { url, pool }
}

/// A simulator, a migrated database and settings pointing at both.
pub struct Env {
    pub sim: Simulator,
    pub db: TestDb,
    pub settings: Settings,
}

impl Env {
    pub async fn start(config: SimConfig) -> Env {
        let sim = Simulator::start(config.clone())
            .await
            .expect("simulator starts");
        let db = test_db().await;
        let mut settings = Settings::for_site(
            &url::Url::parse(&sim.base_url()).expect("simulator URL"),
            &config.email,
            SecretString::from(config.api_token.clone()),
        )
        .expect("settings for the simulator");
        settings.database.url = Some(SecretString::from(db.url.clone()));
        // The simulator has no rate limit unless a test sets one: pace fast, retry fast.
        settings.rate_limit.requests_per_second = 500.0;
        settings.rate_limit.burst = 100;
        settings.rate_limit.backoff_base_ms = 10;
        settings.rate_limit.backoff_max_ms = 100;
        db.store().migrate().await.expect("migrations apply");
        Env { sim, db, settings }
    }

    pub fn store(&self) -> Store {
        self.db.store()
    }

    pub fn site(&self) -> String {
        self.settings.site()
    }
}

/// The site's data streams (the census and organization events left out).
pub const ALL: [&str; 4] = ["projects", "issues", "users", "audit_records"];

/// Runs `streams` once against the environment (full or incremental), whatever the outcomes.
pub async fn sync(env: &Env, streams: &[&'static str], full: bool) -> Vec<StreamOutcome> {
    sync_once(&env.settings, env.store(), streams, full, Arc::new(Quiet))
        .await
        .expect("the sync starts")
}

/// Fails unless every outcome succeeded (a skip is a failure here).
pub fn assert_all_succeeded(outcomes: &[StreamOutcome]) {
    for o in outcomes {
        assert!(
            matches!(o.status, OutcomeStatus::Succeeded),
            "{} did not succeed: {}",
            o.stream,
            o.summary()
        );
    }
}

/// Runs `streams` once and fails unless every one succeeded; returns the outcomes.
pub async fn sync_succeeds(env: &Env, streams: &[&'static str], full: bool) -> Vec<StreamOutcome> {
    let outcomes = sync(env, streams, full).await;
    assert_all_succeeded(&outcomes);
    outcomes
}

/// Syncs every stream and the census once, incrementally, failing if any stream failed (a
/// skip is allowed): synced data for tests that look at the tables as a whole.
pub async fn sync_every_stream(env: &Env) {
    let streams = [ALL.as_slice(), &["census"]].concat();
    let outcomes = sync(env, &streams, false).await;
    assert!(outcomes.iter().all(|o| !o.failed()), "{outcomes:?}");
}

/// An issue as compared with the ground truth: id, key, project id, `updated`.
pub type IssueFacts = (i64, String, i64, chrono::DateTime<chrono::Utc>);

/// The issues stored and not marked deleted, ordered by id.
pub async fn stored_issues(pool: &PgPool) -> Vec<IssueFacts> {
    sqlx::query_as(
        "SELECT id, key, project_id, updated FROM jira.issues WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("read issues")
}

/// The issues the simulator's API shows, ordered by id.
pub fn truth_issues(sim: &Simulator) -> Vec<IssueFacts> {
    let mut want: Vec<IssueFacts> = sim
        .truth()
        .issues
        .iter()
        .map(|i| (i.id, i.key.clone(), i.project_id, i.updated))
        .collect();
    want.sort();
    want
}

/// The ids of the issues stored and marked deleted.
pub async fn deleted_issue_ids(pool: &PgPool) -> BTreeSet<i64> {
    let rows: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM jira.issues WHERE deleted_at IS NOT NULL")
            .fetch_all(pool)
            .await
            .expect("read deleted");
    rows.into_iter().map(|(id,)| id).collect()
}

/// The key and project id stored for the issue `id` (after a move, say).
pub async fn issue_key_and_project(pool: &PgPool, id: i64) -> (String, i64) {
    sqlx::query_as("SELECT key, project_id FROM jira.issues WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("the issue is one row")
}

/// A project as compared with the ground truth: id, key, archived.
pub type ProjectFacts = (i64, String, bool);

/// The projects `truth` shows, ordered by id.
pub fn truth_projects(truth: &Truth) -> Vec<ProjectFacts> {
    let mut want: Vec<ProjectFacts> = truth
        .projects
        .iter()
        .map(|p| (p.id, p.key.clone(), p.archived))
        .collect();
    want.sort();
    want
}

/// The audit record ids stored, and those the simulator shows, both sorted.
pub async fn audit_ids(pool: &PgPool, sim: &Simulator) -> (Vec<i64>, Vec<i64>) {
    let stored: Vec<(i64,)> = sqlx::query_as("SELECT id FROM jira.audit_records ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("read audit records");
    let mut want = sim.truth().audit_ids;
    want.sort();
    (stored.into_iter().map(|(i,)| i).collect(), want)
}

/// Polls `check` every 100 ms until it holds, failing with `context()` (a log, say) once
/// `within` has passed: tests wait for things this way, never by sleeping a fixed time.
pub async fn eventually<F, Fut>(
    within: std::time::Duration,
    what: &str,
    mut check: F,
    context: impl Fn() -> String,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            context()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A mix of changes on the simulated site: every `step`-th issue updated, `creates` new issues
/// in the first live project, and one issue moved there from another project.
pub fn change_site(sim: &Simulator, step: usize, creates: usize) {
    let truth = sim.truth();
    let target = truth
        .projects
        .iter()
        .find(|p| !p.archived)
        .expect("a live project");
    for issue in truth.issues.iter().step_by(step) {
        sim.update_issue(issue.id).expect("update");
    }
    for _ in 0..creates {
        sim.create_issue(&target.key).expect("create");
    }
    let mover = truth
        .issues
        .iter()
        .find(|i| i.project_id != target.id)
        .expect("an issue elsewhere");
    sim.move_issue(mover.id, &target.key).expect("move");
}

/// The ids of a table's live rows and of its rows marked deleted, both ascending.
pub async fn child_ids(env: &Env, table: &str) -> (Vec<i64>, Vec<i64>) {
    let live: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE deleted_at IS NULL ORDER BY id"
    )))
    .fetch_all(&env.db.pool)
    .await
    .expect("live ids");
    let deleted: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} WHERE deleted_at IS NOT NULL ORDER BY id"
    )))
    .fetch_all(&env.db.pool)
    .await
    .expect("deleted ids");
    (
        live.into_iter().map(|(id,)| id).collect(),
        deleted.into_iter().map(|(id,)| id).collect(),
    )
}

/// The issues and every table of records of issues equal the truth; `when` names the moment on failure.
pub async fn assert_exact(env: &Env, when: &str) {
    let truth = env.sim.work_truth();
    let (changelogs, _) = child_ids(env, "jira.changelogs").await;
    assert_eq!(changelogs, truth.changelog_ids, "{when}: changelogs");
    let (comments, deleted_comments) = child_ids(env, "jira.comments").await;
    assert_eq!(comments, truth.comment_ids, "{when}: comments");
    for id in &truth.deleted_comment_ids {
        assert!(
            deleted_comments.contains(id),
            "{when}: deleted comment {id} is not marked deleted"
        );
    }
    let (worklogs, deleted_worklogs) = child_ids(env, "jira.worklogs").await;
    assert_eq!(worklogs, truth.worklog_ids, "{when}: worklogs");
    for id in &truth.deleted_worklog_ids {
        assert!(
            deleted_worklogs.contains(id),
            "{when}: deleted worklog {id} is not marked deleted"
        );
    }
    let (links, _) = child_ids(env, "jira.issue_links").await;
    assert_eq!(links, truth.link_ids, "{when}: links");
    assert_eq!(
        stored_issues(&env.db.pool).await,
        truth_issues(&env.sim),
        "{when}: issues"
    );
}
