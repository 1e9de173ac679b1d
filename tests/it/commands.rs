//! Integration tests of the `sync` and `demo` commands: the real binary, the simulator over
//! HTTP, a real PostgreSQL.

use crate::support::cli::{expect_exit, jira_sync, run, site_toml, text, write_config};
use crate::support::test_db;
use jira_sim::{SimConfig, Simulator};
use std::process::Output;

/// `jira-sync sync --once --no-progress` against `sim` with `token`, writing to `database_url`.
async fn sync_once(sim: &Simulator, token: &str, database_url: &str) -> Output {
    let file = write_config(&site_toml(&sim.base_url(), &sim.config().email, token));
    let mut cmd = jira_sync();
    cmd.arg("--config")
        .arg(&file.path)
        .args(["sync", "--once", "--no-progress"])
        .env("DATABASE_URL", database_url);
    run(cmd).await
}

#[tokio::test]
async fn sync_once_from_the_command_line_writes_the_site_and_prints_a_line_per_stream() {
    let sim = Simulator::start(SimConfig::small())
        .await
        .expect("simulator");
    let db = test_db().await;
    let output = sync_once(&sim, &sim.config().api_token, &db.url).await;
    let (stdout, _) = expect_exit(&output, 0);
    for stream in ["projects", "issues", "users", "audit_records"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(stream) && l.contains("succeeded")),
            "no summary line for {stream}:\n{stdout}"
        );
    }
    let (issues,): (i64,) = sqlx::query_as("SELECT count(*) FROM jira.issues")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(issues as usize, sim.truth().issues.len());
}

#[tokio::test]
async fn sync_without_a_database_url_exits_2_and_says_how_to_set_it() {
    let config = SimConfig::small();
    let sim = Simulator::start(config.clone()).await.expect("simulator");
    let file = write_config(&site_toml(
        &sim.base_url(),
        &config.email,
        &config.api_token,
    ));
    let mut cmd = jira_sync();
    cmd.arg("--config").arg(&file.path).args(["sync", "--once"]);
    let output = run(cmd).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("database.url") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sync_with_a_revoked_token_exits_3_without_writing_anything() {
    let sim = Simulator::start(SimConfig::small())
        .await
        .expect("simulator");
    let db = test_db().await;
    let output = sync_once(&sim, "revoked-token", &db.url).await;
    let (_, stderr) = expect_exit(&output, 3);
    assert!(stderr.contains("invalid credentials"), "{stderr}");
    assert_eq!(
        sim.request_count("/rest/api/3/myself"),
        1,
        "a 401 must not be retried"
    );
}

#[tokio::test]
async fn demo_run_as_a_new_user_would_ends_with_data_in_postgresql() {
    let mut cmd = jira_sync();
    cmd.args(["demo", "--size", "small", "--no-wait"]);
    let output = run(cmd).await;
    let (stdout, _) = expect_exit(&output, 0);
    let count = |table: &str| -> i64 {
        stdout
            .lines()
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next() == Some(table)).then(|| parts.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no row count for {table} in:\n{stdout}"))
    };
    let small = SimConfig::small();
    assert_eq!(count("jira.issues"), small.issues as i64);
    assert_eq!(count("jira.users"), small.users as i64);
    assert!(count("jira.projects") > 0);
    assert_eq!(count("jira.audit_records"), small.audit_records as i64);
    assert_eq!(count("jira.org_events"), small.org_events as i64);
    assert!(stdout.contains("psql 'postgres://"), "{stdout}");
}
