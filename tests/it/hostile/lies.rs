//! Servers that lie: endless page tokens, false totals, answers without their data, bodies
//! that inflate to gigabytes, a census that would delete half the site. jira-sync believes
//! none of it: it stops with a clear error, bounds what it asks for, and deletes nothing it
//! has not seen confirmed.

use crate::support::{ALL, Env, deleted_issue_ids, sync, sync_succeeds};
use jira_sim::{Lies, SimConfig};
use jira_sync::engine::OutcomeStatus;
use jira_sync::jira::{JiraClient, JiraError};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_search_that_repeats_its_page_token_fails_the_run_instead_of_looping() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &["projects"], false).await;
    env.sim.set_lies(Lies {
        repeat_page_token: true,
        ..Lies::default()
    });
    let started = Instant::now();
    let outcomes = sync(&env, &["issues"], false).await;
    let OutcomeStatus::Failed(err) = &outcomes[0].status else {
        panic!("{}", outcomes[0].summary())
    };
    let message = format!("{err:#}");
    assert!(
        message.contains("the same page token again") && message.contains("does not page as Jira"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "it looped");
    // Told the truth again, the next run reads on from the last committed page.
    env.sim.set_lies(Lies::default());
    sync_succeeds(&env, &["issues"], false).await;
    assert_eq!(
        crate::support::stored_issues(&env.db.pool).await,
        crate::support::truth_issues(&env.sim)
    );
}

#[tokio::test]
async fn a_false_project_total_plans_a_bounded_number_of_requests() {
    let env = Env::start(SimConfig::small()).await;
    env.sim.set_lies(Lies {
        project_total: Some(1_000_000),
        ..Lies::default()
    });
    sync_succeeds(&env, &["projects"], false).await;
    // One page and at most 20 ahead of it, for live and for archived projects.
    let asked = env.sim.request_count("/rest/api/3/project/search");
    assert!(asked <= 2 * 21, "{asked} requests for a site of 4 projects");
    let stored: Vec<(i64,)> = sqlx::query_as("SELECT id FROM jira.projects ORDER BY id")
        .fetch_all(&env.db.pool)
        .await
        .expect("projects");
    let mut want: Vec<i64> = env.sim.truth().projects.iter().map(|p| p.id).collect();
    want.sort_unstable();
    assert_eq!(stored.into_iter().map(|(id,)| id).collect::<Vec<_>>(), want);
}

#[tokio::test]
async fn a_bulkfetch_answer_without_its_issues_confirms_no_deletion() {
    let env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &ALL, false).await;
    let gone = env.sim.truth().issues[7].id;
    env.sim.delete_issue(gone).expect("delete");
    env.sim.set_lies(Lies {
        bulkfetch_without_issues: true,
        ..Lies::default()
    });
    let outcomes = sync(&env, &["issues", "census"], false).await;
    let census = outcomes
        .iter()
        .find(|o| o.stream == "census")
        .expect("census");
    let OutcomeStatus::Failed(err) = &census.status else {
        panic!("{}", census.summary())
    };
    assert!(format!("{err:#}").contains("issues"), "{err:#}");
    assert!(deleted_issue_ids(&env.db.pool).await.is_empty());
    // Told the truth, the census confirms the deletion.
    env.sim.set_lies(Lies::default());
    sync_succeeds(&env, &["census"], false).await;
    assert_eq!(deleted_issue_ids(&env.db.pool).await, [gone].into());
}

#[tokio::test]
async fn one_census_marks_no_more_deletions_than_the_site_wide_limit() {
    let mut env = Env::start(SimConfig::small()).await;
    sync_succeeds(&env, &ALL, false).await;
    let truth = env.sim.truth();
    let mut by_project = std::collections::BTreeMap::<i64, Vec<i64>>::new();
    for issue in &truth.issues {
        by_project
            .entry(issue.project_id)
            .or_default()
            .push(issue.id);
    }
    let mut projects = by_project.values().filter(|ids| ids.len() >= 20);
    let many = projects.next().expect("a project of 20 issues");
    let few = projects.next().expect("another");
    // Three in one project, one in another; the site may lose two per census.
    let (three, one): (Vec<i64>, i64) = (many[..3].to_vec(), few[0]);
    for &id in three.iter().chain([&one]) {
        env.sim.delete_issue(id).expect("delete");
    }
    env.settings.sync.census_max_deletes = 2;
    sync_succeeds(&env, &["census"], false).await;
    assert_eq!(deleted_issue_ids(&env.db.pool).await, [one].into());
    env.settings.sync.census_max_deletes = 10;
    sync_succeeds(&env, &["census"], false).await;
    let want: BTreeSet<i64> = three.iter().copied().chain([one]).collect();
    assert_eq!(deleted_issue_ids(&env.db.pool).await, want);
}

/// A server that answers every request with `body` (already gzip-compressed) as JSON.
async fn gzip_server(body: Vec<u8>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let body = bytes::Bytes::from(body);
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ],
                body,
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_body_that_inflates_past_the_cap_is_refused_while_it_is_read() {
    // 64 MB of JSON in about 64 KB: `{"x":"000…"}`.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"{\"x\":\"").expect("gzip");
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).expect("gzip");
    }
    gz.write_all(b"\"}").expect("gzip");
    let bomb = gz.finish().expect("gzip");
    assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
    let base = gzip_server(bomb).await;
    let url = url::Url::parse(&base).expect("URL");
    let mut settings = jira_sync::settings::Settings::for_site(
        &url,
        "demo@example.com",
        secrecy::SecretString::from("token"),
    )
    .expect("settings");
    settings.rate_limit.max_response_mb = 8;
    settings.rate_limit.max_retries = 0;
    let client = JiraClient::new(&settings.jira, &settings.rate_limit).expect("client");
    let err = client
        .get::<serde_json::Value>("/rest/api/3/serverInfo", &[])
        .await
        .expect_err("the body passes the cap");
    assert!(
        matches!(err, JiraError::TooLarge { limit_mb: 8, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("rate_limit.max_response_mb"),
        "{err}"
    );
}
