//! Credentials under strain: a token short of one endpoint's scope, the OAuth refresh token at
//! rest (encrypted unless the operator opts out, warned about when its file is readable), and
//! a rotated refresh token whose commit failed.

use crate::support::cli::{expect_exit, run_with_config, site_toml, write_config};
use crate::support::{Env, stored_issues, sync, truth_issues};
use jira_sim::SimConfig;
use jira_sync::engine::progress::Quiet;
use jira_sync::engine::{Engine, OutcomeStatus};
use jira_sync::settings::AuthMode;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// The audit log, as the stream (`/rest/api/2`) and the check (`/rest/api/3`) ask for it.
const AUDIT: [&str; 2] = ["/rest/api/2/auditing", "/rest/api/3/auditing"];

#[tokio::test]
async fn a_401_for_a_missing_scope_skips_that_stream_and_holds_nothing_else() {
    let env = Env::start(SimConfig {
        unscoped_paths: AUDIT.map(str::to_owned).to_vec(),
        ..SimConfig::small()
    })
    .await;
    let started = Instant::now();
    let outcomes = sync(
        &env,
        &["audit_records", "projects", "issues", "users"],
        false,
    )
    .await;
    for outcome in &outcomes {
        match (outcome.stream, &outcome.status) {
            ("audit_records", OutcomeStatus::Skipped(why)) => {
                assert!(why.contains("lacks this endpoint's scope"), "{why}")
            }
            (_, OutcomeStatus::Succeeded) => {}
            _ => panic!("{}", outcome.summary()),
        }
    }
    // The other streams ran at once: a dead credential would have held the site for minutes.
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));

    // `check` says the same: the credentials work, audit records lack a scope.
    let config = env.sim.config();
    let file = write_config(&site_toml(
        &env.sim.base_url(),
        &config.email,
        &config.api_token,
    ));
    let output = run_with_config(&file, &["check", "--json"]).await;
    let (stdout, _) = expect_exit(&output, 0);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["streams"]["audit_records"]["available"], false);
    assert!(
        report["streams"]["audit_records"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("scope")),
        "{report}"
    );
    assert!(
        report["streams"]["audit_records"]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("scoped API token") && !f.contains("ADMINISTER")),
        "{report}"
    );
    assert_eq!(report["streams"]["issues"]["available"], true, "{report}");
}

#[tokio::test]
async fn a_revoked_token_is_still_a_dead_credential() {
    let env = Env::start(SimConfig::small()).await;
    env.sim.revoke_token(true);
    let config = env.sim.config();
    let toml = site_toml(&env.sim.base_url(), &config.email, &config.api_token).replace(
        "[rate_limit]",
        &format!("[database]\nurl = \"{}\"\n\n[rate_limit]", env.db.url),
    );
    let file = write_config(&toml);
    let output = run_with_config(&file, &["check"]).await;
    let (_, stderr) = expect_exit(&output, 3);
    assert!(!stderr.contains("lacks this endpoint's scope"), "{stderr}");
    let output = run_with_config(&file, &["sync", "--once", "--no-progress"]).await;
    let (_, stderr) = expect_exit(&output, 3);
    assert!(!stderr.contains("lacks this endpoint's scope"), "{stderr}");
}

/// An OAuth configuration for the simulator; `extra` is appended to `[jira]`.
fn oauth_toml(env: &Env, extra: &str) -> String {
    let base = env.sim.base_url();
    let c = env.sim.config();
    format!(
        r#"[jira]
base_url = "{base}"
auth = "oauth"
gateway_base_url = "{base}"
token_url = "{base}/oauth/token"
authorize_url = "{base}/authorize"
client_id = "{}"
client_secret = "{}"
refresh_token = "demo-refresh-token"
{extra}

[database]
url = "{}"
"#,
        c.oauth_client_id, c.oauth_client_secret, env.db.url
    )
}

#[tokio::test]
async fn oauth_without_a_key_is_refused_unless_the_operator_opts_out() {
    let env = Env::start(SimConfig::small()).await;
    let file = write_config(&oauth_toml(&env, ""));
    let output = run_with_config(&file, &["sync", "--once", "--no-progress"]).await;
    let (_, stderr) = expect_exit(&output, 2);
    assert!(
        stderr.contains("jira.token_encryption_key")
            && stderr.contains("jira.store_token_unencrypted = true"),
        "{stderr}"
    );

    let file = write_config(&oauth_toml(&env, "store_token_unencrypted = true"));
    let output = run_with_config(
        &file,
        &["sync", "--once", "--no-progress", "--stream", "projects"],
    )
    .await;
    expect_exit(&output, 0);
    let (token, encrypted): (String, bool) = sqlx::query_as(
        "SELECT refresh_token, refresh_token_encrypted FROM jira_secrets.credentials",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("credentials row");
    assert!(!encrypted && token.starts_with("sim-refresh"), "{token}");
    // Not in the schema BI roles are granted.
    let (in_jira,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = 'jira' AND table_name = 'credentials')",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("catalog");
    assert!(!in_jira);
}

#[tokio::test]
async fn a_secret_file_others_may_read_earns_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::start(SimConfig::small()).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let key_file = dir.path().join("token.key");
    std::fs::write(&key_file, KEY).expect("write the key");
    let toml = oauth_toml(
        &env,
        &format!("token_encryption_key_file = \"{}\"", key_file.display()),
    );
    let file = write_config(&toml);
    let args = ["sync", "--once", "--no-progress", "--stream", "projects"];
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let output = run_with_config(&file, &args).await;
        let (stdout, stderr) = expect_exit(&output, 0);
        let warning = "jira.token_encryption_key_file";
        assert_eq!(
            stderr.contains(warning) && stderr.contains("chmod 600"),
            warned,
            "mode {mode:o}:\n{stderr}"
        );
        assert!(!format!("{stdout}{stderr}").contains(KEY), "the key leaked");
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_whose_commit_failed_does_not_strand_the_process() {
    let mut env = Env::start(SimConfig {
        oauth_refresh_leeway: Duration::from_millis(300),
        ..SimConfig::small()
    })
    .await;
    let base = env.sim.base_url();
    let config = env.sim.config().clone();
    let jira = &mut env.settings.jira;
    jira.auth = AuthMode::Oauth;
    jira.api_token = None;
    jira.gateway_base_url = Url::parse(&base).expect("url");
    jira.oauth.client_id = config.oauth_client_id;
    jira.oauth.client_secret = Some(SecretString::from(config.oauth_client_secret));
    jira.oauth.refresh_token = Some(SecretString::from("demo-refresh-token"));
    jira.oauth.token_url = Url::parse(&format!("{base}/oauth/token")).expect("url");
    jira.oauth.authorize_url = Url::parse(&format!("{base}/authorize")).expect("url");
    jira.oauth.token_encryption_key = Some(SecretString::from(KEY));

    let engine = Engine::new(&env.settings, env.store(), Arc::new(Quiet))
        .await
        .expect("connects");
    let stored = || async {
        let (token,): (String,) =
            sqlx::query_as("SELECT refresh_token FROM jira_secrets.credentials")
                .fetch_one(&env.db.pool)
                .await
                .expect("credentials row");
        token
    };
    let first = stored().await;
    // From now on the database refuses to store a rotated token.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON jira_secrets.credentials \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&env.db.pool)
    .await
    .expect("install the trigger");
    let refresh_then_run = |stream: &'static str| {
        env.sim.expire_access_tokens();
        engine.run_once(stream, true)
    };
    let before = env.sim.oauth_refreshes();
    let outcome = refresh_then_run("projects").await;
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
    assert_eq!(env.sim.oauth_refreshes(), before + 1);
    assert_eq!(stored().await, first, "the trigger let the update through");
    // The stored token is spent and past its leeway: only the one held in memory works.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let outcome = refresh_then_run("issues").await;
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
    assert_eq!(stored_issues(&env.db.pool).await, truth_issues(&env.sim));

    // The database takes writes again: the next refresh stores the token held in memory's
    // successor, and a new process starts from it.
    sqlx::raw_sql("DROP TRIGGER refuse ON jira_secrets.credentials")
        .execute(&env.db.pool)
        .await
        .expect("drop the trigger");
    let outcome = refresh_then_run("projects").await;
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
    assert_ne!(stored().await, first);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let restarted = Engine::new(&env.settings, env.store(), Arc::new(Quiet))
        .await
        .expect("a new process starts from the stored token");
    let outcome = restarted.run_once("projects", false).await;
    assert!(
        matches!(outcome.status, OutcomeStatus::Succeeded),
        "{}",
        outcome.summary()
    );
}
