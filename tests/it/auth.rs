//! Authentication modes end to end against the simulator and a real PostgreSQL: `scoped`
//! through the gateway, `bearer` on a Data Center site, `oauth` with expiring access tokens
//! and rotating refresh tokens, `auth login`, and wrong secrets of every mode.

use crate::support::cli::{ConfigFile, jira_sync, run, run_with_config, text, write_config};
use crate::support::{
    Env, ProjectFacts, deleted_issue_ids, issue_key_and_project, stored_issues, sync,
    sync_succeeds, truth_issues, truth_projects,
};
use jira_sim::{SimConfig, Simulator};
use jira_sync::engine::OutcomeStatus;
use jira_sync::settings::AuthMode;
use secrecy::SecretString;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use url::Url;

const STREAMS: [&str; 2] = ["projects", "issues"];
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// One full sync, a change, one incremental sync: both equal to the ground truth.
async fn full_then_incremental(env: &Env) {
    for full in [true, false] {
        if !full {
            let project = env.sim.truth().projects[0].key.clone();
            env.sim.create_issue(&project).expect("create an issue");
            let id = env.sim.truth().issues[0].id;
            env.sim.update_issue(id).expect("update an issue");
        }
        sync_succeeds(env, &STREAMS, full).await;
        assert_eq!(
            stored_issues(&env.db.pool).await,
            truth_issues(&env.sim),
            "full = {full}"
        );
    }
}

fn gateway(env: &mut Env) {
    let url = Url::parse(&env.sim.base_url()).expect("url");
    env.settings.jira.gateway_base_url = url;
}

fn oauth(env: &mut Env, seed: Option<&str>) {
    gateway(env);
    let base = env.sim.base_url();
    let config = env.sim.config().clone();
    let jira = &mut env.settings.jira;
    jira.auth = AuthMode::Oauth;
    jira.api_token = None;
    jira.oauth.client_id = config.oauth_client_id;
    jira.oauth.client_secret = Some(SecretString::from(config.oauth_client_secret));
    jira.oauth.refresh_token = seed.map(|s| SecretString::from(s.to_owned()));
    jira.oauth.token_url = Url::parse(&format!("{base}/oauth/token")).expect("url");
    jira.oauth.authorize_url = Url::parse(&format!("{base}/authorize")).expect("url");
    jira.oauth.token_encryption_key = Some(SecretString::from(KEY));
}

#[tokio::test]
async fn scoped_tokens_sync_through_the_gateway_and_the_cloud_id_is_cached() {
    let mut env = Env::start(SimConfig::small()).await;
    gateway(&mut env);
    env.settings.jira.auth = AuthMode::Scoped;
    env.settings.jira.api_token = Some(SecretString::from(env.sim.config().scoped_token.clone()));
    full_then_incremental(&env).await;
    let log = env.sim.request_log();
    let rest: Vec<_> = log.iter().filter(|e| e.path.contains("/rest/")).collect();
    assert!(!rest.is_empty());
    assert!(
        rest.iter().all(|e| e.path.starts_with("/ex/jira/")),
        "{rest:?}"
    );
    assert_eq!(
        env.sim.request_count("/_edge/tenant_info"),
        1,
        "looked up once"
    );
    let (cached,): (Option<String>,) =
        sqlx::query_as("SELECT cloud_id FROM jira_secrets.credentials")
            .fetch_one(&env.db.pool)
            .await
            .expect("credentials row");
    assert_eq!(cached.as_deref(), Some(env.sim.config().cloud_id.as_str()));
}

/// A Data Center site and settings for a bearer personal access token.
async fn data_center() -> Env {
    data_center_with(SimConfig {
        data_center: true,
        ..SimConfig::small()
    })
    .await
}

async fn data_center_with(config: SimConfig) -> Env {
    let mut env = Env::start(config).await;
    env.settings.jira.auth = AuthMode::Bearer;
    env.settings.jira.email = String::new();
    env
}

/// Projects (id, key, archived) and user ids stored, against the simulator's truth.
async fn assert_projects_and_users_match(env: &Env) {
    let stored: Vec<ProjectFacts> = sqlx::query_as(
        "SELECT id, key, archived FROM jira.projects WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("read projects");
    assert_eq!(stored, truth_projects(&env.sim.truth()));
    assert_users_match(env).await;
}

/// An issue's id with its assignee, reporter and creator ids.
type IssueUsers = (i64, Option<String>, Option<String>, Option<String>);

/// Assignee, reporter and creator stored for every issue equal the simulator's (on Data
/// Center, user keys), and every one of them joins to a row of `jira.users`.
async fn assert_issue_users_match(env: &Env) {
    let stored: Vec<IssueUsers> = sqlx::query_as(
        "SELECT id, assignee_account_id, reporter_account_id, creator_account_id \
         FROM jira.issues WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(&env.db.pool)
    .await
    .expect("read issue users");
    let want: Vec<_> = env
        .sim
        .issue_users()
        .into_iter()
        .map(|u| (u.id, u.assignee, Some(u.reporter), Some(u.creator)))
        .collect();
    assert_eq!(stored, want);
    assert!(
        stored.iter().any(|(_, a, _, _)| a.is_some()),
        "some issue is assigned"
    );
    let (unjoined,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jira.issues i, \
           unnest(array[i.assignee_account_id, i.reporter_account_id, i.creator_account_id]) u \
         WHERE u IS NOT NULL AND NOT EXISTS \
           (SELECT 1 FROM jira.users s WHERE s.site = i.site AND s.account_id = u)",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("join issue users");
    assert_eq!(unjoined, 0, "every issue user is a row of jira.users");
}

#[tokio::test]
async fn bearer_tokens_on_data_center_sync_projects_users_and_issues_equal_to_the_truth() {
    let env = data_center().await;
    let streams = ["projects", "issues", "users"];
    sync_succeeds(&env, &streams, true).await;
    assert_projects_and_users_match(&env).await;
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    assert_issue_users_match(&env).await;
    // Users are keyed by their Data Center key, and so are project leads.
    let leads: Vec<(Option<String>,)> = sqlx::query_as("SELECT lead_account_id FROM jira.projects")
        .fetch_all(&env.db.pool)
        .await
        .expect("read leads");
    assert!(
        leads
            .iter()
            .all(|(l,)| l.as_deref().is_some_and(|l| l.starts_with("JIRAUSER"))),
        "{leads:?}"
    );

    // Changes on the site, then an incremental run.
    let project = env.sim.truth().projects[0].key.clone();
    env.sim.create_issue(&project).expect("create an issue");
    let id = env.sim.truth().issues[0].id;
    env.sim.update_issue(id).expect("update an issue");
    let added = env.sim.add_user();
    assert!(added.starts_with("JIRAUSER"), "{added}");
    sync_succeeds(&env, &streams, false).await;
    assert_projects_and_users_match(&env).await;
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    assert_issue_users_match(&env).await;

    // Only Data Center's own endpoints were used, and none answered an error.
    let log = env.sim.request_log();
    assert!(env.sim.request_count("/rest/api/2/search") > 1);
    assert!(env.sim.request_count("/rest/api/2/project") >= 2);
    assert!(env.sim.request_count("/rest/api/2/user/search") >= 2);
    assert_eq!(
        env.sim.request_count("/rest/api/3/"),
        0,
        "no Cloud-only paths"
    );
    let failed: Vec<_> = log.iter().filter(|e| e.status >= 400).collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// The `username` of every user search the simulator answered, in order.
fn user_searches(sim: &Simulator) -> Vec<String> {
    sim.request_log()
        .iter()
        .filter(|e| e.path == "/rest/api/2/user/search")
        .filter_map(|e| {
            url::form_urlencoded::parse(e.query.as_bytes())
                .find(|(k, _)| k == "username")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[tokio::test]
async fn users_beyond_jira_10s_window_of_100_are_listed_by_username_prefix() {
    let env = data_center_with(SimConfig {
        data_center: true,
        dc_user_window: Some(100),
        users: 350,
        ..SimConfig::small()
    })
    .await;
    sync_succeeds(&env, &["users"], true).await;
    assert_users_match(&env).await;
    let searches = user_searches(&env.sim);
    assert_eq!(searches[0], ".");
    assert!(searches.iter().any(|u| u == "a"), "{searches:?}");
    assert!(
        searches.iter().any(|u| u.chars().count() >= 2),
        "some prefix was itself capped and split deeper: {searches:?}"
    );
    // Only look-ups of a username that does not exist may answer an error (404).
    let failed: Vec<_> = env
        .sim
        .request_log()
        .into_iter()
        .filter(|e| e.status >= 400 && !(e.status == 404 && e.path == "/rest/api/2/user"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");

    // A second run writes nothing new and still holds every user.
    sync_succeeds(&env, &["users"], false).await;
    assert_users_match(&env).await;
}

#[tokio::test]
async fn a_data_center_site_within_the_window_is_listed_without_prefix_searches() {
    for (users, window) in [(80, Some(100)), (350, None)] {
        let env = data_center_with(SimConfig {
            data_center: true,
            dc_user_window: window,
            users,
            ..SimConfig::small()
        })
        .await;
        sync_succeeds(&env, &["users"], true).await;
        assert_users_match(&env).await;
        let searches = user_searches(&env.sim);
        assert!(searches.iter().all(|u| u == "."), "{users}: {searches:?}");
        let lookups = env.sim.request_log().into_iter();
        assert_eq!(lookups.filter(|e| e.path == "/rest/api/2/user").count(), 0);
        assert_eq!(env.sim.truth().users.len(), users);
    }
}

/// User ids stored equal the simulator's, nothing more or less.
async fn assert_users_match(env: &Env) {
    let users: Vec<(String,)> = sqlx::query_as("SELECT account_id FROM jira.users ORDER BY 1")
        .fetch_all(&env.db.pool)
        .await
        .expect("read users");
    let mut want = env.sim.truth().users;
    want.sort();
    assert_eq!(users.into_iter().map(|(u,)| u).collect::<Vec<_>>(), want);
}

#[tokio::test]
async fn the_census_on_data_center_marks_deleted_issues_and_keeps_moved_ones() {
    let env = data_center().await;
    sync_succeeds(&env, &["projects", "issues"], true).await;
    let truth = env.sim.truth();
    let live: Vec<_> = truth.projects.iter().filter(|p| !p.archived).collect();
    let (from, to) = (live[0], live[1]);
    let mut issues = truth.issues.iter().filter(|i| i.project_id == from.id);
    let gone = issues.next().expect("an issue").id;
    let mover = issues.next().expect("another issue").id;
    env.sim.delete_issue(gone).expect("delete");
    let moved = env.sim.move_issue(mover, &to.key).expect("move");

    sync_succeeds(&env, &["census"], false).await;
    assert_eq!(
        deleted_issue_ids(&env.db.pool).await,
        BTreeSet::from([gone])
    );
    assert_eq!(
        issue_key_and_project(&env.db.pool, moved.id).await,
        (moved.key.clone(), to.id)
    );
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
    let (cursor,): (serde_json::Value,) =
        sqlx::query_as("SELECT checkpoint FROM jira.sync_state WHERE stream = 'census'")
            .fetch_one(&env.db.pool)
            .await
            .expect("census checkpoint");
    assert!(!cursor["last_completed"].is_null(), "{cursor}");
    // The deleted id was named in a search with validation off; none was refused.
    assert_eq!(env.sim.request_count("/rest/api/3/"), 0);
    let failed: Vec<_> = env
        .sim
        .request_log()
        .into_iter()
        .filter(|e| e.status >= 400)
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test]
async fn the_census_on_data_center_pages_its_confirmations_where_the_server_caps_search_pages() {
    // An admin capped search pages at 20 full issues: confirming 30 moved issues takes two
    // pages, and none of them may be taken for deleted for missing from the first.
    let env = data_center_with(SimConfig {
        data_center: true,
        dc_search_max: Some(20),
        ..SimConfig::small()
    })
    .await;
    sync_succeeds(&env, &["projects", "issues"], true).await;
    let truth = env.sim.truth();
    let live: Vec<_> = truth.projects.iter().filter(|p| !p.archived).collect();
    let (from, to) = live
        .iter()
        .map(|p| {
            (
                p,
                truth.issues.iter().filter(|i| i.project_id == p.id).count(),
            )
        })
        .max_by_key(|(_, n)| *n)
        .map(|(p, _)| {
            (
                *p,
                live.iter().find(|q| q.id != p.id).expect("two projects"),
            )
        })
        .expect("projects");
    let movers: Vec<i64> = truth
        .issues
        .iter()
        .filter(|i| i.project_id == from.id)
        .take(30)
        .map(|i| i.id)
        .collect();
    assert_eq!(movers.len(), 30, "the biggest project holds 30 issues");
    for &id in &movers {
        env.sim.move_issue(id, &to.key).expect("move");
    }

    sync_succeeds(&env, &["census"], false).await;
    assert_eq!(deleted_issue_ids(&env.db.pool).await, BTreeSet::new());
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
}

#[tokio::test]
async fn on_data_center_an_account_that_may_not_browse_users_has_them_skipped_with_the_fix() {
    // Data Center lists nobody, rather than answering 403, to such an account.
    let env = data_center_with(SimConfig {
        data_center: true,
        admin: false,
        ..SimConfig::small()
    })
    .await;
    let report = jira_sync::engine::check::run(&env.settings)
        .await
        .expect("check runs");
    let users = &report.streams["users"];
    assert!(!users.available, "{users:?}");
    assert!(
        users
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("Browse users")),
        "{users:?}"
    );
    let outcomes = sync(&env, &["users"], true).await;
    match &outcomes[0].status {
        OutcomeStatus::Skipped(why) => assert!(why.contains("Browse users"), "{why}"),
        other => panic!("users should be skipped, got {other:?}"),
    }
}

#[tokio::test]
async fn oauth_refreshes_expired_tokens_mid_sync_and_stores_the_rotated_token_encrypted() {
    let mut env = Env::start(SimConfig::small()).await;
    oauth(&mut env, Some("demo-refresh-token"));
    env.settings.jira.oauth.token_encryption_key = Some(SecretString::from(KEY.to_owned()));
    let sim = &env.sim;
    // Access tokens die while the first sync pages through the issues.
    let expirer = {
        let deadline = Instant::now() + Duration::from_secs(20);
        let pages = || sim.request_count("/ex/jira/");
        async move {
            while pages() < 5 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sim.expire_access_tokens();
        }
    };
    let ((), ()) = tokio::join!(full_then_incremental(&env), expirer);
    assert!(sim.oauth_refreshes() >= 2, "{}", sim.oauth_refreshes());
    let (token, encrypted): (String, bool) = sqlx::query_as(
        "SELECT refresh_token, refresh_token_encrypted FROM jira_secrets.credentials",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("credentials row");
    assert!(encrypted && !token.contains("sim-refresh"), "{token}");
}

#[tokio::test]
async fn an_old_refresh_token_stops_working_after_the_leeway_and_asks_for_consent() {
    let mut env = Env::start(SimConfig {
        oauth_refresh_leeway: Duration::from_millis(500),
        ..SimConfig::small()
    })
    .await;
    oauth(&mut env, Some("demo-refresh-token"));
    full_then_incremental(&env).await;
    // The seed was spent by the first sync; once the leeway passes it is refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let status = refresh_status(&env.sim, "demo-refresh-token").await;
        if status == 403 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused, 403);
    // A database that never stored a token starts again from the spent seed: exit 3.
    let db = crate::support::test_db().await;
    let file = oauth_config(&env.sim, &db.url, "demo-refresh-token", None);
    let out = run_with_config(
        &file,
        &["--log-level", "trace", "sync", "--once", "--no-progress"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("jira-sync auth login"), "{stderr}");
    assert_no_secret(&env.sim, &format!("{stdout}{stderr}"));
}

async fn refresh_status(sim: &Simulator, token: &str) -> u16 {
    let config = sim.config();
    let body = serde_json::json!({
        "grant_type": "refresh_token", "client_id": config.oauth_client_id,
        "client_secret": config.oauth_client_secret, "refresh_token": token,
    });
    reqwest::Client::new()
        .post(format!("{}/oauth/token", sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("token endpoint answers")
        .status()
        .as_u16()
}

fn oauth_config(sim: &Simulator, db: &str, seed: &str, secret: Option<&str>) -> ConfigFile {
    let base = sim.base_url();
    let c = sim.config();
    let secret = secret.unwrap_or(&c.oauth_client_secret);
    write_config(&format!(
        r#"[jira]
base_url = "{base}"
auth = "oauth"
gateway_base_url = "{base}"
token_url = "{base}/oauth/token"
authorize_url = "{base}/authorize"
client_id = "{}"
client_secret = "{secret}"
refresh_token = "{seed}"
token_encryption_key = "{KEY}"

[database]
url = "{db}"
"#,
        c.oauth_client_id
    ))
}

fn assert_no_secret(sim: &Simulator, output: &str) {
    let c = sim.config();
    for secret in [
        c.api_token.as_str(),
        c.scoped_token.as_str(),
        c.oauth_client_secret.as_str(),
        "demo-refresh-token",
        "sim-refresh-",
        "sim-access-",
        KEY,
    ] {
        assert!(!output.contains(secret), "{secret} leaked:\n{output}");
    }
}

#[tokio::test]
async fn auth_login_stores_a_refresh_token_that_then_syncs() {
    let env = Env::start(SimConfig::small()).await;
    let file = oauth_config(&env.sim, &env.db.url, "", None);
    let mut child = tokio::process::Command::new(assert_cmd::cargo::cargo_bin!("jira-sync"))
        .arg("--config")
        .arg(&file.path)
        .args(["auth", "login", "--port", "0", "--timeout-secs", "20"])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start auth login");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let url = loop {
        let line = lines.next_line().await.expect("read").expect("a URL line");
        if line.starts_with("http") {
            break line;
        }
    };
    assert!(
        url.contains("offline_access") && url.contains("read%3Ajira-work"),
        "{url}"
    );
    // The simulator's consent redirects straight to the command's loopback listener.
    let page = reqwest::get(&url).await.expect("follow the redirect");
    assert!(page.status().is_success());
    let status = child.wait().await.expect("auth login ends");
    assert!(status.success());
    let stored: (String,) = sqlx::query_as("SELECT refresh_token FROM jira_secrets.credentials")
        .fetch_one(&env.db.pool)
        .await
        .expect("stored token");
    assert!(!stored.0.is_empty() && !stored.0.contains("sim-refresh"));
    let out = run_with_config(&file, &["sync", "--once", "--no-progress"]).await;
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));
}

/// A small Cloud site and a small Data Center site, each on its own simulator.
async fn cloud_and_data_center_sites() -> (Simulator, Simulator) {
    let cloud = Simulator::start(SimConfig::small()).await.expect("sim");
    let dc = Simulator::start(SimConfig {
        data_center: true,
        ..SimConfig::small()
    })
    .await
    .expect("dc sim");
    (cloud, dc)
}

/// `check` with a wrong secret: exit 3 after one request to Jira, no secret in the output.
async fn assert_wrong_secret(sim: &Simulator, file: &ConfigFile, jira_requests: &str) {
    let before = sim.request_count(jira_requests);
    let out = run_with_config(file, &["--log-level", "trace", "check"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(sim.request_count(jira_requests) - before, 1, "{stderr}");
    assert_no_secret(sim, &format!("{stdout}{stderr}"));
}

#[tokio::test]
async fn wrong_secrets_of_every_mode_exit_3_after_one_request() {
    let (sim, dc) = cloud_and_data_center_sites().await;
    let base = sim.base_url();
    let email = &sim.config().email;
    let scoped = write_config(&format!(
        "[jira]\nbase_url = \"{base}\"\nauth = \"scoped\"\nemail = \"{email}\"\napi_token = \"wrong\"\ngateway_base_url = \"{base}\"\n"
    ));
    assert_wrong_secret(&sim, &scoped, "/ex/jira/").await;
    let bearer = write_config(&format!(
        "[jira]\nbase_url = \"{}\"\nauth = \"bearer\"\napi_token = \"wrong\"\n",
        dc.base_url()
    ));
    assert_wrong_secret(&dc, &bearer, "/rest/api/2/myself").await;
    let db = crate::support::test_db().await;
    let file = oauth_config(&sim, &db.url, "demo-refresh-token", Some("wrong"));
    assert_wrong_secret(&sim, &file, "/oauth/token").await;
    // basic with a scoped token: one try at the site, one at the gateway, then the advice.
    let basic = write_config(&format!(
        "[jira]\nbase_url = \"{base}\"\nemail = \"{email}\"\napi_token = \"{}\"\ngateway_base_url = \"{base}\"\n",
        sim.config().scoped_token
    ));
    let mut cmd = jira_sync();
    cmd.arg("--config")
        .arg(&basic.path)
        .args(["--log-level", "trace", "check"]);
    let out = run(cmd).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("jira.auth = \"scoped\""), "{stderr}");
    assert_eq!(sim.request_count("/rest/api/3/myself"), 1);
    assert_no_secret(&sim, &format!("{stdout}{stderr}"));
}

/// `sync --once` through the binary at trace level: it succeeds, trace logging is on, and none
/// of the mode's secrets (nor of any other mode, nor the organization API key) is printed.
async fn assert_quiet_trace_sync(sim: &Simulator, file: &ConfigFile, extra_secrets: &[&str]) {
    let mut cmd = jira_sync();
    cmd.env("RUST_LOG", "trace")
        .arg("--config")
        .arg(&file.path)
        .args(["--log-level", "trace", "sync", "--once", "--no-progress"]);
    let out = run(cmd).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("TRACE") || stderr.contains("\"level\":\"TRACE\""),
        "trace logging was not on: {stderr}"
    );
    let all = format!("{stdout}{stderr}");
    assert_no_secret(sim, &all);
    for secret in extra_secrets {
        assert!(!all.contains(secret), "{secret} leaked:\n{all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_level_sync_in_every_auth_mode_prints_none_of_its_secrets() {
    use base64::Engine;
    let (sim, dc) = cloud_and_data_center_sites().await;
    let c = sim.config().clone();
    let base = sim.base_url();
    let org = format!(
        "org_id = \"{}\"\norg_api_key = \"{}\"\nadmin_base_url = \"{base}\"\n",
        c.org_id, c.org_api_key
    );
    let basic_header =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.email, c.api_token));
    let scoped_header =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.email, c.scoped_token));
    let secrets = [
        c.org_api_key.as_str(),
        basic_header.as_str(),
        scoped_header.as_str(),
    ];

    let db = crate::support::test_db().await;
    let basic = write_config(&format!(
        "[jira]\nbase_url = \"{base}\"\nemail = \"{}\"\napi_token = \"{}\"\n{org}\n[database]\nurl = \"{}\"\n",
        c.email, c.api_token, db.url
    ));
    assert_quiet_trace_sync(&sim, &basic, &secrets).await;
    let (events,): (i64,) = sqlx::query_as("SELECT count(*) FROM jira.org_events")
        .fetch_one(&db.pool)
        .await
        .expect("count org events");
    assert!(events > 0, "the org stream ran with its key");

    let db = crate::support::test_db().await;
    let scoped = write_config(&format!(
        "[jira]\nbase_url = \"{base}\"\nauth = \"scoped\"\nemail = \"{}\"\napi_token = \"{}\"\ngateway_base_url = \"{base}\"\n\n[database]\nurl = \"{}\"\n",
        c.email, c.scoped_token, db.url
    ));
    assert_quiet_trace_sync(&sim, &scoped, &secrets).await;

    let db = crate::support::test_db().await;
    let oauth = oauth_config(&sim, &db.url, "demo-refresh-token", None);
    assert_quiet_trace_sync(&sim, &oauth, &secrets).await;
    assert!(sim.oauth_refreshes() >= 1);

    let db = crate::support::test_db().await;
    let bearer = write_config(&format!(
        "[jira]\nbase_url = \"{}\"\nauth = \"bearer\"\napi_token = \"{}\"\n\n[database]\nurl = \"{}\"\n",
        dc.base_url(),
        dc.config().api_token,
        db.url
    ));
    assert_quiet_trace_sync(&dc, &bearer, &secrets).await;
    assert_eq!(stored_issues(&db.pool).await, truth_issues(&dc));
}
